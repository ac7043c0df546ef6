"""The embedded default shipped in models/assets loads and generates."""

import json

import torch

from models.registry import DEFAULT_DIR, load_generator
from models.sampling import SamplingParams


def test_default_loads_and_generates():
    gen = load_generator(None)
    assert gen.name == "default" and gen.sample_rate == 16000 and gen.frame_rate == 50
    out = gen.generate(["calm ambient piano"], 0.2, SamplingParams(cfg=3.0), seeds=0)
    assert out.codes.shape == (1, 4, 10) and out.codes.max() < 256
    assert out.audio.shape == (1, 1, 3200) and torch.isfinite(out.audio).all() and out.audio.abs().max() > 0


def test_default_weights_are_compact_safetensors():
    files = [p for p in DEFAULT_DIR.rglob("*") if p.is_file()]
    assert all(p.suffix in (".safetensors", ".json") for p in files)
    assert sum(p.stat().st_size for p in files) < 60 * 2**20
    meta = json.loads((DEFAULT_DIR / "musicrl.json").read_text())
    assert meta["conditioner"]["type"] == "minilm" and meta["codec"]["type"] == "spectral"
