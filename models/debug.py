"""Tiny debug builders: every part of the model stack in seconds, from configs, with no files.

``debug_generator`` is our own tiny stack (hashed-word conditioner, tiny LM, tiny EnCodec).
``tiny_hf_musicgen`` builds a random transformers ``MusicgenForConditionalGeneration`` (T5 +
EnCodec + decoder) with a word-level tokenizer, to test and benchmark real-checkpoint loading.
"""

from __future__ import annotations

from pathlib import Path

import torch

from models.codecs import debug_encodec, debug_encodec_config, randomize_codebooks
from models.conditioners import DebugConditioner
from models.generator import MusicGenerator
from models.lm import AudioLM, LMConfig


def debug_lm_config(**overrides) -> LMConfig:
    base = dict(
        num_codebooks=4, cardinality=64, dim=32, num_layers=2, num_heads=2, ffn_dim=64, cond_dim=16, max_positions=1024
    )
    return LMConfig(**{**base, **overrides})


def seeded_lm(cfg: LMConfig, seed: int = 0) -> AudioLM:
    """An AudioLM with deterministic random weights (the global RNG is left untouched)."""
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        return AudioLM(cfg)


def debug_generator(seed: int = 0) -> MusicGenerator:
    """The ``--model debug`` stack: random weights, so it makes noise, fast; for tests and smoke runs."""
    cfg = debug_lm_config()
    return MusicGenerator(
        lm=seeded_lm(cfg, seed),
        conditioner=DebugConditioner(dim=cfg.cond_dim, seed=seed),
        codec=debug_encodec(seed=seed, codebook_size=cfg.cardinality, num_codebooks=cfg.num_codebooks),
        name="debug",
        checkpoint_hash=f"debug-{seed}",
        max_duration=10.0,
    )


WORDS = (
    "upbeat techno with a synth lead calm ambient piano jazz rock guitar drums slow fast "
    "happy sad bass strings violin flute trumpet bpm in a minor major key energetic dark"
).split()


def tiny_embedder_config(sample_rate: int = 16000):
    """A text/audio embedder small enough for tests (untrained; debug text encoder)."""
    from models.audio_tower import FrontendConfig, TowerConfig
    from models.embedder import EmbedderConfig

    return EmbedderConfig(
        frontend=FrontendConfig(sample_rate=sample_rate, n_mels=16),
        tower=TowerConfig(widths=[8, 12], blocks=1, stem_stride=2, out=16),
        dim=8,
        text_encoder="debug",
        text_dim=16,
        text_hidden=16,
        segment_s=1.0,
    )


def word_tokenizer(words=WORDS):
    """A word-level fast tokenizer (T5-style special tokens) built in code, saveable with save_pretrained."""
    from tokenizers import Tokenizer, models, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    vocab = {"<pad>": 0, "</s>": 1, "<unk>": 2}
    for w in words:
        vocab.setdefault(w, len(vocab))
    tok = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    tok.post_processor = processors.TemplateProcessing(single="$A </s>", special_tokens=[("</s>", 1)])
    return PreTrainedTokenizerFast(tokenizer_object=tok, pad_token="<pad>", eos_token="</s>", unk_token="<unk>")


def tiny_hf_musicgen(
    seed: int = 0,
    dim: int = 32,
    num_layers: int = 2,
    num_heads: int = 2,
    ffn_dim: int = 64,
    cardinality: int = 64,
    num_codebooks: int = 4,
    text_dim: int = 24,
):
    """A random transformers MusicGen (T5 encoder + EnCodec + decoder) and its tokenizer."""
    from transformers import (
        EncodecConfig,
        MusicgenConfig,
        MusicgenDecoderConfig,
        MusicgenForConditionalGeneration,
        T5Config,
    )

    tokenizer = word_tokenizer()
    text_cfg = T5Config(
        vocab_size=len(tokenizer),
        d_model=text_dim,
        d_kv=8,
        d_ff=48,
        num_layers=1,
        num_heads=2,
        decoder_start_token_id=0,
        pad_token_id=0,
        eos_token_id=1,
    )
    codec_cfg = EncodecConfig(**debug_encodec_config(codebook_size=cardinality, num_codebooks=num_codebooks))
    dec_cfg = MusicgenDecoderConfig(
        vocab_size=cardinality,
        hidden_size=dim,
        num_hidden_layers=num_layers,
        num_attention_heads=num_heads,
        ffn_dim=ffn_dim,
        num_codebooks=num_codebooks,
        max_position_embeddings=512,
        pad_token_id=cardinality,
        bos_token_id=cardinality,
        decoder_start_token_id=cardinality,
    )
    config = MusicgenConfig(
        text_encoder=text_cfg.to_dict(), audio_encoder=codec_cfg.to_dict(), decoder=dec_cfg.to_dict()
    )
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        model = MusicgenForConditionalGeneration(config).eval()
    randomize_codebooks(model.audio_encoder, seed)
    model.generation_config.pad_token_id = cardinality
    model.generation_config.decoder_start_token_id = cardinality
    return model, tokenizer


def save_tiny_hf_musicgen(path: str | Path, **kwargs) -> Path:
    """Write a tiny random MusicGen in the Hugging Face layout (config.json, model.safetensors, tokenizer)."""
    path = Path(path)
    model, tokenizer = tiny_hf_musicgen(**kwargs)
    model.save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path
