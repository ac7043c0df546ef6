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


def test_a_finetuned_checkpoint_ships_as_the_default_in_fp16(tmp_path, capsys):
    """``musicrl train assemble-default model=RUN/model``: fp32 weights in, fp16 out, lineage kept; a model that
    does not read text with the packaged MiniLM is refused with one line and nothing written."""
    from models.checkpoint import load_checkpoint, save_checkpoint
    from models.debug import debug_generator
    from musicrl.cli import main as cli

    tuned = load_generator(None)
    with torch.no_grad():
        tuned.lm.heads.weight.add_(0.01)  # a "finetuned" default, stored in fp32 as recipes write it
    save_checkpoint(tuned, tmp_path / "run", lineage={"parents": ["abc"], "recipe": "caption-distill", "step": 7})
    assert cli(["train", "assemble-default", f"model={tmp_path / 'run'}", f"out={tmp_path / 'ship'}"]) == 0
    shipped = load_checkpoint(tmp_path / "ship")
    lineage = json.loads((tmp_path / "ship" / "musicrl.json").read_text())["lineage"]
    assert lineage["recipe"] == "caption-distill" and lineage["parents"] == ["abc"] and lineage["step"] == 7
    size = lambda d: (tmp_path / d / "lm.safetensors").stat().st_size  # noqa: E731
    assert size("ship") < 0.55 * size("run")
    want = tuned.lm.heads.weight.half().float()
    assert torch.equal(shipped.lm.heads.weight, want)
    save_checkpoint(debug_generator(), tmp_path / "debug")
    assert cli(["train", "assemble-default", f"model={tmp_path / 'debug'}", f"out={tmp_path / 'bad'}"]) == 2
    assert "packaged MiniLM" in capsys.readouterr().err and not (tmp_path / "bad").exists()
