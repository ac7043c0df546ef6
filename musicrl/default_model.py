"""Assemble the embedded default checkpoint from its trained parts (LM shards + spectral codec)."""

from __future__ import annotations

from pathlib import Path

import torch
from safetensors.torch import load_file

from models.checkpoint import load_checkpoint, save_checkpoint
from models.conditioners import ConditionerRef
from models.errors import InputError
from models.generator import MusicGenerator
from models.lm import AudioLM, LMConfig
from models.module_io import read_header
from models.spectral_codec import SpectralCodec


def load_lm_shards(best: Path) -> tuple[AudioLM, dict]:
    """An AudioLM (float32) from ``lm-NN.safetensors`` shards + ``lm.json`` written by the lm recipe;
    returns it and the header's lineage (step, metrics, config)."""
    header = read_header(best / "lm.json", "lm-shards")
    lm = AudioLM(LMConfig(**header.config))
    state = {}
    for shard in sorted(best.glob("lm-*.safetensors")):
        state.update({k: v.float() for k, v in load_file(str(shard)).items()})
    lm.load_state_dict(state)
    return lm.eval(), header.lineage


def assemble_default(
    best: Path, codec_dir: Path, out: Path, max_duration: float = 8.0, max_text_tokens: int = 32
) -> Path:
    lm, info = load_lm_shards(best)
    gen = MusicGenerator(
        lm=lm,
        conditioner=ConditionerRef({"type": "minilm", "max_tokens": max_text_tokens}),
        codec=SpectralCodec.load(codec_dir),
        name="default",
        max_duration=max_duration,
    )
    lineage = {"parents": [], "step": info["step"], "recipe": "lm", "metrics": info["metrics"]}
    return save_checkpoint(gen, out, lineage=lineage, weights_dtype=torch.float16)


def ship_checkpoint(model: Path, out: Path) -> Path:
    """A finetuned musicrl checkpoint (its LM, conditioner and codec) as the embedded default at ``out``: the LM's
    weights in fp16, its lineage kept (the parents name the model it was finetuned from)."""
    gen = load_checkpoint(model)
    if gen.conditioner.describe().get("type") != "minilm":
        raise InputError(f"{model} does not read text with the packaged MiniLM; the default must")
    gen.name = "default"
    lineage = {**gen.meta["lineage"], "shipped_from": str(model)}
    return save_checkpoint(gen, out, lineage=lineage, weights_dtype=torch.float16)
