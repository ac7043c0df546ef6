"""Pre-tokenised LM training data: codec codes and text states of every corpus clip, in one directory.

    tokens.safetensors  codes [N, K, T] (uint8 when the codebooks have <= 256 codes, else int16);
                        text_q [L_total, C] int8, text_scale [L_total] fp16, text_offsets [N + 1] int64
                        (caption i's token states are text_q[o_i:o_i+1] * text_scale, 8-bit absmax per token)
    meta.json           clip ids, splits, captions, attributes, codec description, frame rate

Small enough to carry to a GPU machine (4,000 clips of 8 s: ~40 MB), and read without the corpus,
the codec or the text encoder.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from models.errors import InputError
from models.lm import TextStates


def quantize_states(states: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """[L, C] float -> int8 [L, C] and per-token scale [L] (absmax / 127)."""
    scale = states.abs().amax(dim=1).clamp_min(1e-8) / 127.0
    return torch.round(states / scale[:, None]).to(torch.int8), scale.half()


def dequantize_states(q: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    return q.float() * scale.float()[:, None]


def write_token_data(path: Path, codes: torch.Tensor, text_states: list[torch.Tensor], meta: dict) -> None:
    """codes [N, K, T]; text_states: N tensors [L_i, C] (real tokens only)."""
    path.mkdir(parents=True, exist_ok=True)
    qs, scales = zip(*(quantize_states(s.float()) for s in text_states), strict=True)
    offsets = torch.tensor([0] + [s.shape[0] for s in text_states]).cumsum(0)
    dtype = torch.uint8 if int(codes.max()) < 256 else torch.int16
    save_file(
        {
            "codes": codes.to(dtype).contiguous(),
            "text_q": torch.cat(qs),
            "text_scale": torch.cat(scales),
            "text_offsets": offsets,
        },
        str(path / "tokens.safetensors"),
    )
    (path / "meta.json").write_text(json.dumps(meta))


@dataclass
class TokenData:
    codes: torch.Tensor  # [N, K, T] int64
    text: torch.Tensor  # [L_total, C] float32
    offsets: torch.Tensor  # [N + 1]
    meta: dict

    @classmethod
    def load(cls, path: str | Path) -> TokenData:
        path = Path(path)
        if not (path / "tokens.safetensors").is_file():
            raise InputError(f"{path} holds no tokens.safetensors; run: musicrl train lm-data")
        t = load_file(str(path / "tokens.safetensors"))
        meta = json.loads((path / "meta.json").read_text())
        return cls(t["codes"].long(), dequantize_states(t["text_q"], t["text_scale"]), t["text_offsets"], meta)

    def split(self, name: str) -> list[int]:
        return [i for i, s in enumerate(self.meta["splits"]) if s == name]

    def text_states(self, indices: list[int], device: torch.device | str = "cpu") -> TextStates:
        """Padded states [B, L, C] and mask [B, L] of the captions of ``indices``."""
        spans = [self.text[self.offsets[i] : self.offsets[i + 1]] for i in indices]
        length = max(s.shape[0] for s in spans)
        states = torch.zeros(len(spans), length, self.text.shape[1])
        mask = torch.zeros(len(spans), length, dtype=torch.bool)
        for j, s in enumerate(spans):
            states[j, : s.shape[0]] = s
            mask[j, : s.shape[0]] = True
        return TextStates(states.to(device), mask.to(device))


def component_fingerprint(component) -> str:
    """sha256 (16 hex digits) of a codec's or text conditioner's weights (its state dict, keys in order), or
    of its description when it carries none (a packaged encoder known by name): two codecs with one
    configuration but other weights make other codes."""
    import hashlib

    h = hashlib.sha256(json.dumps(component.describe(), sort_keys=True).encode())
    if isinstance(component, torch.nn.Module):
        for key, value in sorted(component.state_dict().items()):
            h.update(key.encode())
            h.update(value.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()[:16]


def model_identity(gen) -> dict:
    """What token data records of the ``MusicGenerator`` that made it (``musicrl data import``): the model's
    name and checkpoint hash (provenance) and its codec and text encoder (what the tokens depend on)."""
    return {
        "name": gen.name,
        "checkpoint_hash": gen.checkpoint_hash,
        "codec": gen.codec.describe(),
        "codec_fingerprint": component_fingerprint(gen.codec),
        "text_encoder": gen.conditioner.describe(),
        "text_encoder_fingerprint": component_fingerprint(gen.conditioner),
    }


def check_data_model(meta: dict, gen, data_path: str | Path = "the data") -> None:
    """Refuse (InputError) token data that ``gen`` cannot train on: made with another codec or text encoder
    (described in ``meta["model"]`` by ``musicrl data import``; ``musicrl train lm-data`` data by the
    descriptions alone). The LM weights may differ: a finetuned model keeps its init's codec and encoder."""
    made = meta.get("model") or {"codec": meta.get("codec"), "text_encoder": meta.get("text_encoder")}
    mine = model_identity(gen)
    keys = [k for k in ("codec", "codec_fingerprint", "text_encoder", "text_encoder_fingerprint") if k in made]
    differs = [k for k in keys if made[k] != mine[k]]
    if not keys or made.get("codec") is None or differs:
        what = f"{differs[0].replace('_', ' ')} differs" if differs else "it records no codec"
        source = made.get("name", "another model")
        raise InputError(f"{data_path} was tokenised with {source} and cannot train {gen.name} ({what}); "
                         f"import the audio again with --model {gen.name}")
