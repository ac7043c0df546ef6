"""Self-describing checkpoints: a directory that rebuilds a ``MusicGenerator`` from itself alone.

Layout: the ``models.module_io`` header with kind ``generator``::

    musicrl.json        {"format": "musicrl", "kind": "generator", "version": 2,
                         "config": {"lm": LMConfig, "conditioner": {...}, "codec": {...},
                                    "max_duration": s, "cfg_free": bool},
                         "lineage": {"parents": [...], "step": n, "recipe": "...", ...}}
    lm.safetensors      the audio LM
    conditioner/ codec/ components that carry weights (safetensors: a spectral codec is itself a
                        module_io directory; transformers' save_pretrained for T5 / EnCodec)

Version-1 files (the same fields at the top level, as the shipped default has) load unchanged.

Only safetensors are ever read; a directory with pickle weights is refused. A directory in the
Hugging Face MusicGen layout loads through ``models.hf_musicgen``.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from pathlib import Path

import torch
from safetensors.torch import save_file

from models.audio_io import atomic_directory
from models.codecs import EncodecCodec
from models.conditioners import DebugConditioner, MiniLMConditioner, T5Conditioner
from models.errors import InputError
from models.generator import MusicGenerator
from models.lm import AudioLM, LMConfig
from models.module_io import FORMAT, read_header, read_tensors, write_header
from models.spectral_codec import SpectralCodec

PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".ckpt", ".pkl", ".pickle")


# Component (de)serialisers, keyed by the "type" of the component's description in musicrl.json.
def _save_conditioner(cond, path: Path) -> dict:
    """Weights of conditioners that carry their own (debug table, a checkpoint's T5); packaged
    encoders (MiniLM) are stored by description only."""
    desc = cond.describe()
    if desc["type"] == "debug":
        save_file({"table": cond.table.contiguous()}, str(path / "conditioner.safetensors"))
    elif desc["type"] == "t5":
        cond.encoder.save_pretrained(path / "conditioner")
        cond.tokenizer.save_pretrained(path / "conditioner")
    return desc


def _load_debug_conditioner(desc: dict, path: Path):
    cond = DebugConditioner(dim=desc["dim"], buckets=desc["buckets"], max_tokens=desc["max_tokens"], seed=desc["seed"])
    cond.table.copy_(read_tensors(path / "conditioner.safetensors")["table"])
    return cond


def _load_t5_conditioner(desc: dict, path: Path):
    from transformers import AutoTokenizer, T5EncoderModel

    sub = path / "conditioner"
    encoder = T5EncoderModel.from_pretrained(sub, use_safetensors=True, local_files_only=True)
    return T5Conditioner(
        encoder, AutoTokenizer.from_pretrained(sub, local_files_only=True), desc.get("max_tokens", 512)
    )


CONDITIONER_LOADERS: dict[str, Callable[[dict, Path], object]] = {
    "debug": _load_debug_conditioner,
    "minilm": lambda desc, path: MiniLMConditioner(desc.get("max_tokens", 64)),
    "t5": _load_t5_conditioner,
}


def _save_encodec(codec: EncodecCodec, path: Path) -> dict:
    codec.model.save_pretrained(path / "codec")
    return codec.describe()


def _load_encodec(desc: dict, path: Path):
    from transformers import EncodecModel

    model = EncodecModel.from_pretrained(path / "codec", use_safetensors=True, local_files_only=True)
    return EncodecCodec(model, num_codebooks=desc["num_codebooks"])


def _save_spectral(codec: SpectralCodec, path: Path) -> dict:
    codec.save(path / "codec")
    return codec.describe()


CODEC_SAVERS: dict[str, Callable] = {"encodec": _save_encodec, "spectral": _save_spectral}
CODEC_LOADERS: dict[str, Callable[[dict, Path], object]] = {
    "encodec": _load_encodec,
    "spectral": lambda desc, path: SpectralCodec.load(path / "codec"),
}


def file_hash(file: Path) -> str:
    h = hashlib.sha256()
    with open(file, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()[:16]


def save_checkpoint(
    gen: MusicGenerator, path: str | Path, lineage: dict | None = None, weights_dtype: torch.dtype | None = None
) -> Path:
    """Write ``gen`` to ``path`` atomically (a temp dir renamed into place).

    lineage: e.g. {"parents": ["<hash>"], "step": 1200, "recipe": "cfg-distill", "config": {...}}.
    weights_dtype: store the LM's floating weights in this dtype (e.g. torch.float16 for shipping);
    they are computed in float32 after loading.
    """
    path = Path(path)
    with atomic_directory(path) as tmp:
        state = {k: v.detach().cpu().contiguous() for k, v in gen.lm.state_dict().items()}
        if weights_dtype is not None:
            state = {k: v.to(weights_dtype) if v.is_floating_point() else v for k, v in state.items()}
        save_file(state, str(tmp / "lm.safetensors"))
        codec_desc = gen.codec.describe()
        if codec_desc["type"] not in CODEC_SAVERS:
            raise ValueError(f"no saver for codec type {codec_desc['type']!r}")
        codec_desc = CODEC_SAVERS[codec_desc["type"]](gen.codec, tmp)
        config = {
            "lm": gen.lm.cfg.to_dict(),
            "conditioner": _save_conditioner(gen.conditioner, tmp),
            "codec": codec_desc,
            "max_duration": gen.max_duration,
            "cfg_free": gen.cfg_free,
        }
        write_header(tmp / "musicrl.json", "generator", config, {"parents": [], "step": 0, **(lineage or {})})
    return path


def load_checkpoint(path: str | Path) -> MusicGenerator:
    """Rebuild a ``MusicGenerator`` from a ``musicrl`` checkpoint directory."""
    path = Path(path)
    header = read_header(path / "musicrl.json", "generator")
    meta = header.config
    if not (path / "lm.safetensors").is_file():
        pickles = [p.name for p in path.iterdir() if p.suffix in PICKLE_SUFFIXES]
        if pickles:
            raise InputError(f"{path} holds only pickle weights ({', '.join(pickles)}); pickle is refused")
        raise InputError(f"{path} has no lm.safetensors")
    try:
        cfg = LMConfig(**meta["lm"])
        cond_desc, codec_desc = meta["conditioner"], meta["codec"]
        cond_loader = CONDITIONER_LOADERS[cond_desc["type"]]
        codec_loader = CODEC_LOADERS[codec_desc["type"]]
    except (KeyError, TypeError, ValueError) as err:
        raise InputError(f"{path}/musicrl.json is malformed: {err!r}") from None
    lm = AudioLM(cfg)
    state = {k: v.float() if v.is_floating_point() else v for k, v in read_tensors(path / "lm.safetensors").items()}
    try:
        lm.load_state_dict(state, strict=True)
    except RuntimeError as err:
        first = str(err).splitlines()[1].strip() if len(str(err).splitlines()) > 1 else str(err)
        raise InputError(f"{path}/lm.safetensors does not match its config: {first}") from None
    return MusicGenerator(
        lm=lm.eval(),
        conditioner=cond_loader(cond_desc, path),
        codec=codec_loader(codec_desc, path),
        name=str(path),
        checkpoint_hash=file_hash(path / "lm.safetensors"),
        max_duration=float(meta.get("max_duration", 30.0)),
        cfg_free=bool(meta.get("cfg_free", False)),
        meta={"format": FORMAT, "lineage": header.lineage},
    )
