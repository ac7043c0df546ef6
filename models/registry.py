"""Resolve ``--model`` values: a registry name (``debug``, ``default``) or a checkpoint directory."""

from __future__ import annotations

from pathlib import Path

from models.errors import InputError
from models.generator import MusicGenerator

# The embedded default and its scorers are shipped inside the package (see docs/MODELS.md).
ASSETS_DIR = Path(__file__).resolve().parent / "assets"
DEFAULT_DIR = ASSETS_DIR / "default"
NAMES = ("default", "debug")


def load_generator(spec: str | Path | None = None) -> MusicGenerator:
    """``None``/"default" -> the embedded default; "debug" -> tiny random stack; else a directory:
    a musicrl checkpoint (musicrl.json) or a Hugging Face MusicGen checkpoint (config.json).
    ``int8:SPEC``: SPEC with int8 LM weights for CPU serving (``models.quantize``)."""
    from models.checkpoint import load_checkpoint
    from models.hf_musicgen import is_hf_musicgen_dir, load_hf_musicgen
    from models.quantize import quantize_int8, split_spec

    spec = "default" if spec is None else str(spec)
    kind, inner = split_spec(spec)
    if kind:
        gen = load_generator(inner)
        gen.lm = quantize_int8(gen.lm)
        gen.name, gen.checkpoint_hash = spec, f"{gen.checkpoint_hash}+{kind}"
        gen.meta = {**gen.meta, "quantized": kind}
        return gen
    if spec == "debug":
        from models.debug import debug_generator

        return debug_generator()
    if spec == "default":
        if not (DEFAULT_DIR / "musicrl.json").is_file():
            raise InputError(
                "the embedded default model is not installed in this checkout; "
                "use --model debug or a checkpoint directory"
            )
        gen = load_checkpoint(DEFAULT_DIR)
        gen.name = "default"
        return gen
    path = Path(spec)
    if not path.exists():
        raise InputError(f"model {spec!r} is neither a known name ({', '.join(NAMES)}) nor an existing directory")
    if not path.is_dir():
        raise InputError(f"model path {spec} is not a directory")
    if (path / "musicrl.json").is_file():
        return load_checkpoint(path)
    if is_hf_musicgen_dir(path):
        return load_hf_musicgen(path)
    if (path / "config.json").is_file():
        raise InputError(f"{path}/config.json is not a MusicGen config (model_type must be 'musicgen')")
    raise InputError(f"{path} is not a model directory (no musicrl.json or MusicGen config.json)")
