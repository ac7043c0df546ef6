"""Shared fixtures: tiny models built from configs, never downloaded."""

from __future__ import annotations

import os

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")


@pytest.fixture(scope="session")
def tiny_hf_dir(tmp_path_factory):
    """A random transformers MusicGen (T5 + EnCodec + decoder) saved with save_pretrained."""
    from models.debug import save_tiny_hf_musicgen

    return save_tiny_hf_musicgen(tmp_path_factory.mktemp("tiny_musicgen") / "model", seed=0)


@pytest.fixture(scope="session")
def tiny_hf_model():
    from models.debug import tiny_hf_musicgen

    return tiny_hf_musicgen(seed=0)


@pytest.fixture(scope="session")
def debug_gen():
    from models.debug import debug_generator

    return debug_generator(seed=0)


@pytest.fixture(scope="session")
def embedder_dir(tmp_path_factory):
    """An untrained tiny text-audio embedder at the debug model's 8 kHz (adherence and diversity rewards)."""
    from models.debug import tiny_embedder_config
    from models.embedder import TextAudioEmbedder

    path = tmp_path_factory.mktemp("emb")
    TextAudioEmbedder(tiny_embedder_config(sample_rate=8000)).save(path)
    return path
