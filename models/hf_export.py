"""Back to Hugging Face: a ``MusicGenerator`` written as a transformers MusicGen directory.

The inverse of ``models.hf_musicgen.lm_from_hf``: our ``AudioLM`` (fused q/k/v and k/v, stacked
embeddings and heads) is split back into ``MusicgenForCausalLM`` weights; the T5 encoder, its
tokenizer and EnCodec are written as they are. The directory then loads with
``MusicgenForConditionalGeneration.from_pretrained(OUT)`` and ``AutoProcessor.from_pretrained(OUT)``.

Only models whose parts exist in that layout can be exported: a T5 conditioner, a mono EnCodec with
the LM's codebooks, LayerNorm eps 1e-5 (transformers' MusicGen has no eps setting). The embedded
default (MiniLM + spectral codec) and the debug stack are refused with one line saying why.

    OUT/config.json, generation_config.json   MusicgenConfig (text_encoder / audio_encoder / decoder)
    OUT/model.safetensors                     weights (sharded with an index for big models)
    OUT/tokenizer.json, tokenizer_config.json the T5 tokenizer (+ its other files)
    OUT/processor_config.json, preprocessor_config.json   MusicgenProcessor / EncodecFeatureExtractor
    OUT/musicrl_lineage.json                  where it came from and the verification result
"""

from __future__ import annotations

import contextlib
import copy
import json
import os
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from models.audio_io import atomic_directory
from models.delay import build_delayed, lm_inputs
from models.errors import InputError
from models.generator import MusicGenerator
from models.lm import AudioLM, LMConfig, TextStates
from models.module_io import read_header

HF_LAYER_NORM_EPS = 1e-5  # nn.LayerNorm's default, which MusicgenDecoder uses (no config field)
VERIFY_PROMPTS = ("calm ambient piano", "upbeat techno with a synth lead and drums")
VERIFY_FRAMES = 12
VERIFY_TOLERANCE = 1e-4


@dataclass
class ExportResult:
    """path: the written directory; max_abs_diff: the largest |logit ours - transformers'| over the
    verification input (None when verification was skipped)."""

    path: Path
    max_abs_diff: float | None


def layout_problems(conditioner: dict, codec: dict, cfg: LMConfig) -> list[str]:
    """Why a model with these parts (their ``describe()`` dicts) has no MusicGen layout ([] = it has one)."""
    problems = []
    if conditioner.get("type") != "t5":
        problems.append(f"its text conditioner is {conditioner.get('type')!r} (MusicGen's is a T5 encoder)")
    if codec.get("type") != "encodec":
        problems.append(f"its codec is {codec.get('type')!r} (MusicGen's is EnCodec)")
    elif codec.get("num_codebooks") != cfg.num_codebooks or codec.get("cardinality") != cfg.cardinality:
        problems.append("its codec's codebooks do not match the LM's")
    if cfg.layer_norm_eps != HF_LAYER_NORM_EPS:
        problems.append(f"its LayerNorm eps is {cfg.layer_norm_eps:g} (MusicGen's is fixed at {HF_LAYER_NORM_EPS:g})")
    return problems


def checkpoint_problems(path: Path) -> list[str]:
    """``layout_problems`` of a musicrl checkpoint read from its musicrl.json alone (nothing loaded)."""
    config = read_header(path / "musicrl.json", "generator").config
    try:
        return layout_problems(config["conditioner"], config["codec"], LMConfig(**config["lm"]))
    except (KeyError, TypeError, ValueError) as err:
        raise InputError(f"{path}/musicrl.json is malformed: {err!r}") from None


def hf_export_problems(gen: MusicGenerator) -> list[str]:
    """Why ``gen`` cannot be written in transformers' MusicGen layout ([] = it can)."""
    cfg = gen.lm.cfg
    problems = layout_problems(gen.conditioner.describe(), gen.codec.describe(), cfg)
    if not problems and getattr(gen.codec, "channels", 1) != 1:
        problems.append("its EnCodec is not mono (only mono MusicGen is supported)")
    if not problems and getattr(gen.conditioner, "dim", cfg.cond_dim) != cfg.cond_dim:
        problems.append(f"its text encoder gives {gen.conditioner.dim}-d states but the LM reads {cfg.cond_dim}-d")
    return problems


def refuse_unexportable(name: str, problems: list[str]) -> None:
    """One InputError line naming every reason, if there is any."""
    if problems:
        raise InputError(f"cannot export {name} to the Hugging Face MusicGen layout: {'; '.join(problems)}")


def hf_decoder_config(cfg: LMConfig):
    """The ``MusicgenDecoderConfig`` of our LM (the start/pad token is code V, as in MusicGen)."""
    from transformers import MusicgenDecoderConfig

    v = cfg.cardinality
    return MusicgenDecoderConfig(
        vocab_size=v,
        max_position_embeddings=cfg.max_positions,
        num_hidden_layers=cfg.num_layers,
        ffn_dim=cfg.ffn_dim,
        num_attention_heads=cfg.num_heads,
        hidden_size=cfg.dim,
        dropout=cfg.dropout,
        activation_function="gelu",
        scale_embedding=cfg.scale_embedding,
        num_codebooks=cfg.num_codebooks,
        audio_channels=1,
        pad_token_id=v,
        bos_token_id=v,
        decoder_start_token_id=v,
        tie_word_embeddings=False,
    )


@torch.no_grad()
def hf_decoder_state(lm: AudioLM) -> dict[str, torch.Tensor]:
    """Our LM's weights under ``MusicgenForCausalLM`` names (``lm_from_hf`` read backwards).

    Embeddings [K * (V + 1), D] -> K tables [V + 1, D]; heads [K * V, D] -> K heads [V, D]; fused
    self-attention qkv [3D, D] -> q, k, v [D, D]; cross-attention kv [2D, D] -> k, v [D, D].
    """
    cfg = lm.cfg
    v = cfg.cardinality
    state: dict[str, torch.Tensor] = {}
    pre = "model.decoder."
    for i, table in enumerate(lm.embeddings.weight.split(v + 1)):
        state[f"{pre}embed_tokens.{i}.weight"] = table
    for i, layer in enumerate(lm.layers):
        p = f"{pre}layers.{i}."
        q_w, k_w, v_w = layer.self_attn.qkv.weight.chunk(3)
        ck_w, cv_w = layer.cross_attn.kv.weight.chunk(2)
        state.update({
            f"{p}self_attn.q_proj.weight": q_w,
            f"{p}self_attn.k_proj.weight": k_w,
            f"{p}self_attn.v_proj.weight": v_w,
            f"{p}self_attn.out_proj.weight": layer.self_attn.out.weight,
            f"{p}encoder_attn.q_proj.weight": layer.cross_attn.q.weight,
            f"{p}encoder_attn.k_proj.weight": ck_w,
            f"{p}encoder_attn.v_proj.weight": cv_w,
            f"{p}encoder_attn.out_proj.weight": layer.cross_attn.out.weight,
            f"{p}fc1.weight": layer.fc1.weight,
            f"{p}fc2.weight": layer.fc2.weight,
        })
        for theirs, ours in (
            ("self_attn_layer_norm", layer.self_norm),
            ("encoder_attn_layer_norm", layer.cross_norm),
            ("final_layer_norm", layer.mlp_norm),
        ):
            state[f"{p}{theirs}.weight"] = ours.weight
            state[f"{p}{theirs}.bias"] = ours.bias
    state[f"{pre}layer_norm.weight"] = lm.final_norm.weight
    state[f"{pre}layer_norm.bias"] = lm.final_norm.bias
    for i, head in enumerate(lm.heads.weight.split(v)):
        state[f"lm_heads.{i}.weight"] = head
    return {name: t.detach().float().contiguous() for name, t in state.items()}  # views: load_state_dict copies


@torch.no_grad()
def hf_musicgen_for_saving(gen: MusicGenerator) -> nn.Module:
    """A ``MusicgenForConditionalGeneration`` holding (copies of) ``gen``'s weights, to ``save_pretrained``.

    Run the saved directory reloaded, not this object: transformers settles the attention
    implementation of a composite model when it loads one, and this in-memory one gives other logits."""
    from transformers import MusicgenForCausalLM, MusicgenForConditionalGeneration

    refuse_unexportable(gen.name, hf_export_problems(gen))
    cfg = gen.lm.cfg
    # Copies: the wrapper rewrites its parts' configs (attention implementation), which would change ours.
    # No random init (every weight is overwritten below): 0.14 s instead of 9.9 s at musicgen-small's size.
    with torch.random.fork_rng(), _no_init_weights():
        hf = MusicgenForConditionalGeneration(
            text_encoder=copy.deepcopy(gen.conditioner.encoder),
            audio_encoder=copy.deepcopy(gen.codec.model),
            decoder=MusicgenForCausalLM._from_config(hf_decoder_config(cfg)),
        )
    hf.decoder.load_state_dict(hf_decoder_state(gen.lm), strict=True)
    projected = getattr(hf, "enc_to_dec_proj", None)
    if isinstance(gen.lm.cond_proj, nn.Linear) != (projected is not None):
        raise AssertionError("enc_to_dec_proj does not match the LM's cond_proj")
    if projected is not None:
        projected.weight.copy_(gen.lm.cond_proj.weight)
        projected.bias.copy_(gen.lm.cond_proj.bias)
    gc = hf.generation_config
    v = cfg.cardinality
    gc.decoder_start_token_id = gc.pad_token_id = gc.bos_token_id = v
    gc.do_sample = True
    gc.guidance_scale = 1.0 if gen.cfg_free else 3.0  # MusicGen's default; a CFG-distilled model needs none
    gc.max_length = min(int(gen.max_duration * gen.codec.frame_rate), cfg.max_positions)
    return hf.eval()


def _no_init_weights():
    try:
        from transformers.initialization import no_init_weights
    except ImportError:  # older transformers: initialise (slower, same result)
        return contextlib.nullcontext()
    return no_init_weights()


def _write_processor(gen: MusicGenerator, path: Path) -> None:
    """Tokenizer files, processor_config.json (MusicgenProcessor) and preprocessor_config.json."""
    from transformers import EncodecFeatureExtractor, MusicgenProcessor

    fe = EncodecFeatureExtractor(feature_size=gen.codec.channels, sampling_rate=gen.codec.sample_rate)
    gen.conditioner.tokenizer.save_pretrained(path)
    MusicgenProcessor(feature_extractor=fe, tokenizer=gen.conditioner.tokenizer).save_pretrained(path)
    fe.save_pretrained(path)


@torch.no_grad()
def compare_logits(gen: MusicGenerator, hf: nn.Module, tokenizer) -> float:
    """max |logit ours - transformers'| on fixed prompts and fixed codes, conditioned and null (CFG's
    other branch); transformers tokenizes with ``tokenizer`` (the exported one)."""
    cfg = gen.lm.cfg
    b, k, v = len(VERIFY_PROMPTS), cfg.num_codebooks, cfg.cardinality
    frames = min(VERIFY_FRAMES, cfg.max_positions - k + 1)
    codes = torch.randint(0, v, (b, k, frames), generator=torch.Generator().manual_seed(0))
    inputs = lm_inputs(build_delayed(codes, v), v)  # [B, K, S]
    enc = tokenizer(list(VERIFY_PROMPTS), padding=True, return_tensors="pt")
    flat = inputs.reshape(b * k, -1)
    theirs = hf(**enc, decoder_input_ids=flat).logits.reshape(b, k, -1, v)
    theirs_null = hf(
        input_ids=enc.input_ids, attention_mask=torch.zeros_like(enc.attention_mask), decoder_input_ids=flat
    ).logits.reshape(b, k, -1, v)
    text = gen.encode_text(list(VERIFY_PROMPTS))
    ours = gen.lm(inputs, text)
    ours_null = gen.lm(inputs, TextStates(torch.zeros_like(text.states[:, :1]), torch.zeros(b, 1, dtype=torch.bool)))
    return max((ours - theirs).abs().max().item(), (ours_null - theirs_null).abs().max().item())


def check_export_dir(out: Path, overwrite: bool) -> None:
    """Refuse an ``out`` that is a file, or a non-empty directory unless ``overwrite``."""
    if out.exists() and not out.is_dir():
        raise InputError(f"--out {out} exists and is not a directory")
    if out.is_dir() and any(out.iterdir()) and not overwrite:
        raise InputError(f"--out {out} exists and is not empty; pass --overwrite to replace it")


def export_hf_musicgen(
    gen: MusicGenerator, out: str | Path, lineage: dict | None = None, overwrite: bool = False, verify: bool = True
) -> ExportResult:
    """Write ``gen`` to ``out`` in transformers' MusicGen layout, atomically (a temp dir next to ``out``,
    renamed into place only after it was written and, with ``verify``, reloaded by transformers and found
    to give our logits within ``VERIFY_TOLERANCE``); a failure leaves ``out`` as it was."""
    from transformers import AutoTokenizer, MusicgenForConditionalGeneration

    out = Path(out)
    check_export_dir(out, overwrite)
    hf = hf_musicgen_for_saving(gen)
    with atomic_directory(out) as tmp:
        hf.save_pretrained(tmp)
        del hf  # the check below reloads from disk: hold two copies of the model, not three
        _write_processor(gen, tmp)
        diff = None
        if verify:
            os.environ.setdefault("HF_HUB_OFFLINE", "1")
            reloaded = MusicgenForConditionalGeneration.from_pretrained(
                tmp, use_safetensors=True, local_files_only=True
            ).eval()
            diff = compare_logits(gen, reloaded, AutoTokenizer.from_pretrained(tmp, local_files_only=True))
            if not diff <= VERIFY_TOLERANCE:
                raise InputError(
                    f"export check failed: transformers' logits differ from ours by {diff:.3g} "
                    f"(> {VERIFY_TOLERANCE:g}); nothing was written"
                )
        record = {
            "format": "musicrl-hf-export",
            "source": gen.name,
            "source_format": gen.meta.get("format", "musicrl"),
            "source_hash": gen.checkpoint_hash,
            "cfg_free": gen.cfg_free,
            "max_duration": gen.max_duration,
            "source_lineage": gen.meta.get("lineage", {}),
            "export": dict(lineage or {}),
            "verify": None if diff is None else {
                "prompts": list(VERIFY_PROMPTS), "frames": VERIFY_FRAMES, "max_abs_logit_diff": diff
            },
        }
        (tmp / "musicrl_lineage.json").write_text(json.dumps(record, indent=2))
    return ExportResult(out, diff)
