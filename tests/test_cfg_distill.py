"""Smoke run of the cfg-distill recipe on the shipped default (tiny: 0.2 s clips, 2 steps)."""

import json
import math

import torch

from models.checkpoint import load_checkpoint
from models.errors import InputError
from models.registry import load_generator
from musicrl.config import load_config
from musicrl.recipes import cfg_distill


def test_cfg_distill_with_diversity_trains_saves_and_resumes(tmp_path):
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    rows = [
        {"id": f"c{i}", "path": f"audio/c{i}.wav", "caption": c, "split": "train"}
        for i, c in enumerate(["calm ambient piano", "fast techno with drums", "sad jazz trumpet"])
    ]
    (corpus / "manifest.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    out = tmp_path / "run"
    args = [
        f"corpus={corpus}",
        f"out={out}",
        "steps=2",
        "prompts_per_step=2",
        "samples_per_prompt=3",
        "duration=0.2",
        "beta=5",
        "lr=1e-3",
        "log_every=1",
        "save_every=1",
    ]
    summary = cfg_distill.main(load_config(cfg_distill.Config, None, args))
    assert summary["step"] == 2
    log = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]
    assert all(math.isfinite(r["loss"]) and math.isfinite(r["distill"]) and r["distill"] >= 0 for r in log)
    assert all(0 <= r["diversity"] <= 2 for r in log)
    assert any(r["adv_abs"] > 0 and r["pg"] != 0 for r in log)  # the diversity term reaches the gradient
    base = load_generator("default").lm.state_dict()
    tuned = load_checkpoint(out / "model")
    assert tuned.cfg_free and tuned.meta["lineage"]["recipe"] == "cfg-distill"
    assert any(not torch.equal(v, base[k]) for k, v in tuned.lm.state_dict().items())
    summary = cfg_distill.main(load_config(cfg_distill.Config, None, [*args[:2], "steps=3", *args[3:]]))
    steps = [json.loads(line)["step"] for line in (out / "log.jsonl").read_text().splitlines()]
    assert summary["step"] == 3 and steps == [1, 2, 3]


def test_diversity_term_refuses_two_samples_per_prompt(tmp_path):
    """With G = 2 both siblings share 1 - cos(e1, e2): leave-one-out advantages are all 0, beta is inert."""
    cfg = load_config(cfg_distill.Config, None, [f"out={tmp_path}", "beta=5", "samples_per_prompt=2"])
    with __import__("pytest").raises(InputError, match="samples_per_prompt >= 3"):
        cfg_distill.main(cfg)


TRAJECTORY = __import__("pathlib").Path(__file__).parent / "data" / "cfg_distill_trajectory.json"


def _debug_run(tmp_path):
    corpus = tmp_path / "c"
    corpus.mkdir()
    captions = ["calm ambient piano", "fast techno with drums", "sad jazz trumpet", "happy folk guitar"]
    rows = [{"id": f"c{i}", "path": f"a/c{i}.wav", "caption": c, "split": "train"} for i, c in enumerate(captions)]
    (corpus / "manifest.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    out = tmp_path / "traj"
    cfg_distill.main(
        load_config(
            cfg_distill.Config,
            None,
            [
                "model=debug",
                f"corpus={corpus}",
                f"out={out}",
                "steps=4",
                "prompts_per_step=2",
                "samples_per_prompt=2",
                "duration=0.3",
                "beta=0",
                "lr=3e-3",
                "log_every=1",
                "save_every=100",
                "seed=7",
            ],
        )
    )
    return [json.loads(line)["distill"] for line in (out / "log.jsonl").read_text().splitlines()]


def test_fixed_seed_trajectory_matches_the_stored_one(tmp_path):
    """Same seed -> the same prompts, samples and updates: the distillation losses of 4 steps on the debug
    model equal the stored ones (regenerate tests/data/cfg_distill_trajectory.json only on purpose)."""
    losses = _debug_run(tmp_path)
    stored = json.loads(TRAJECTORY.read_text())["distill"]
    assert len(losses) == len(stored) == 4
    for got, want in zip(losses, stored, strict=True):
        assert math.isclose(got, want, rel_tol=1e-4, abs_tol=1e-6), (losses, stored)


def test_shipped_configs_parse():
    """Every β config loads into the recipe's Config (G >= 3 where β > 0); the app registry example for
    the distilled pair parses (nothing is loaded before a request asks for a model)."""
    from pathlib import Path

    from app.registry import ModelRegistry

    root = Path(__file__).parent.parent / "configs"
    for beta in (0, 5, 10, 15):
        cfg = load_config(cfg_distill.Config, root / f"cfg_distill_beta{beta}.yaml", [])
        assert cfg.beta == beta and cfg.samples_per_prompt >= 3 and cfg.out.name == f"cfg_distill_beta{beta}"
    registry = ModelRegistry.from_file(root / "app_registry_distilled.yaml")
    assert [e.id for e in registry.entries if e.cfg_free] == ["distilled-b0", "distilled-b15"]
    assert registry.get("quality-diversity").merge.a == "distilled-b0"
