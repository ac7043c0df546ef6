"""Real MusicGen checkpoints in the Hugging Face layout (e.g. a local copy of facebook/musicgen-small).

A directory holds config.json (model_type "musicgen"), safetensors weights and the T5 tokenizer
files. We load it with transformers (safetensors only: pickle weights are refused), then move the
decoder's weights into our ``AudioLM`` (q/k/v fused) so it samples through our one decoding path;
the T5 encoder and EnCodec are used as they are.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import torch
from torch import nn

from models.codecs import EncodecCodec
from models.conditioners import T5Conditioner
from models.errors import InputError
from models.generator import MusicGenerator
from models.lm import AudioLM, LMConfig


def is_hf_musicgen_dir(path: Path) -> bool:
    cfg = path / "config.json"
    if not cfg.is_file():
        return False
    try:
        return json.loads(cfg.read_text()).get("model_type") == "musicgen"
    except (json.JSONDecodeError, UnicodeDecodeError, AttributeError):
        return False


def lm_config_from_hf(hf_model: nn.Module) -> LMConfig:
    """Our LMConfig for the decoder of a ``MusicgenForConditionalGeneration``."""
    dec = hf_model.config.decoder
    text_dim = hf_model.config.text_encoder.hidden_size
    projected = getattr(hf_model, "enc_to_dec_proj", None) is not None
    return LMConfig(
        num_codebooks=dec.num_codebooks,
        cardinality=dec.vocab_size,
        dim=dec.hidden_size,
        num_layers=dec.num_hidden_layers,
        num_heads=dec.num_attention_heads,
        ffn_dim=dec.ffn_dim,
        cond_dim=text_dim if projected else dec.hidden_size,
        max_positions=dec.max_position_embeddings,
        scale_embedding=bool(dec.scale_embedding),
    )


@torch.no_grad()
def lm_from_hf(hf_model: nn.Module) -> AudioLM:
    """Copy the decoder (+ enc_to_dec_proj) of a transformers MusicGen into an ``AudioLM``."""
    dec_cfg = hf_model.config.decoder
    if getattr(dec_cfg, "audio_channels", 1) != 1:
        raise InputError("stereo MusicGen checkpoints are not supported (mono only)")
    if dec_cfg.activation_function != "gelu":
        raise InputError(f"unsupported decoder activation {dec_cfg.activation_function!r} (MusicGen uses gelu)")
    lm = AudioLM(lm_config_from_hf(hf_model))
    src = hf_model.decoder.model.decoder
    lm.embeddings.weight.copy_(torch.cat([table.weight for table in src.embed_tokens]))
    for ours, theirs in zip(lm.layers, src.layers, strict=True):
        sa, ca = theirs.self_attn, theirs.encoder_attn
        ours.self_attn.qkv.weight.copy_(torch.cat([sa.q_proj.weight, sa.k_proj.weight, sa.v_proj.weight]))
        ours.self_attn.out.weight.copy_(sa.out_proj.weight)
        ours.cross_attn.q.weight.copy_(ca.q_proj.weight)
        ours.cross_attn.kv.weight.copy_(torch.cat([ca.k_proj.weight, ca.v_proj.weight]))
        ours.cross_attn.out.weight.copy_(ca.out_proj.weight)
        for a, b in (
            (ours.self_norm, theirs.self_attn_layer_norm),
            (ours.cross_norm, theirs.encoder_attn_layer_norm),
            (ours.mlp_norm, theirs.final_layer_norm),
        ):
            a.weight.copy_(b.weight)
            a.bias.copy_(b.bias)
        ours.fc1.weight.copy_(theirs.fc1.weight)
        ours.fc2.weight.copy_(theirs.fc2.weight)
    lm.final_norm.weight.copy_(src.layer_norm.weight)
    lm.final_norm.bias.copy_(src.layer_norm.bias)
    lm.heads.weight.copy_(torch.cat([head.weight for head in hf_model.decoder.lm_heads]))
    if isinstance(lm.cond_proj, nn.Linear):
        lm.cond_proj.weight.copy_(hf_model.enc_to_dec_proj.weight)
        lm.cond_proj.bias.copy_(hf_model.enc_to_dec_proj.bias)
    return lm.eval()


def _check_safetensors(path: Path) -> None:
    names = {p.name for p in path.iterdir()}
    if "model.safetensors" in names or "model.safetensors.index.json" in names:
        return
    if names & {"pytorch_model.bin", "pytorch_model.bin.index.json"} or any(
        n.endswith((".bin", ".pt", ".pth", ".ckpt")) for n in names
    ):
        raise InputError(f"{path} holds only pickle weights (.bin/.pt); they are refused, convert them to safetensors")
    raise InputError(f"{path} has a MusicGen config.json but no model.safetensors")


def weights_hash(path: Path) -> str:
    """sha256 (first 16 hex digits) of the safetensors files in ``path``, in name order."""
    import hashlib

    h = hashlib.sha256()
    for f in sorted(path.glob("*.safetensors")):
        with open(f, "rb") as fh:
            for chunk in iter(lambda: fh.read(1 << 20), b""):
                h.update(chunk)
    return h.hexdigest()[:16]


def load_hf_musicgen(path: str | Path, max_duration: float = 30.0) -> MusicGenerator:
    """A ``MusicGenerator`` from a local Hugging Face MusicGen directory (no network)."""
    from transformers import AutoTokenizer, MusicgenForConditionalGeneration

    path = Path(path)
    _check_safetensors(path)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    try:
        hf = MusicgenForConditionalGeneration.from_pretrained(path, use_safetensors=True, local_files_only=True)
        tokenizer = AutoTokenizer.from_pretrained(path, local_files_only=True)
    except (OSError, ValueError, KeyError, json.JSONDecodeError) as err:
        raise InputError(f"cannot load the MusicGen checkpoint in {path}: {str(err).splitlines()[0]}") from None
    hf.eval()
    return MusicGenerator(
        lm=lm_from_hf(hf),
        conditioner=T5Conditioner(hf.text_encoder, tokenizer),
        codec=EncodecCodec(hf.audio_encoder, num_codebooks=hf.config.decoder.num_codebooks),
        name=str(path),
        checkpoint_hash=weights_hash(path),
        max_duration=max_duration,
        meta={"format": "huggingface-musicgen"},
    )
