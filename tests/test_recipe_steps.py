"""Each training recipe's ``step`` on its own: a tiny State from ``setup``, one step, finite metrics, the
trained parameters changed (and, where the recipe freezes something, that it stayed)."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import soundfile as sf
import torch

from models.audio_tower import FrontendConfig, TowerConfig
from models.debug import tiny_embedder_config
from musicrl.config import load_config
from musicrl.lm_data import write_token_data
from musicrl.recipes import cfg_distill, codec, embedder, judges, lm, quality


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    from musicrl.corpus.build import build_corpus

    out = tmp_path_factory.mktemp("corpus6")
    build_corpus(out, num_clips=6, seed=0, duration=2.0, progress=False)
    return out


def run_one_step(recipe, cfg) -> tuple[object, dict, dict]:
    """setup -> one step; returns (state, parameters before, metrics)."""
    state = recipe.setup(cfg)
    module = next(getattr(state, m) for m in ("model", "lm", "codec") if hasattr(state, m))
    before = {n: p.detach().clone() for n, p in module.named_parameters()}
    metrics = recipe.step(state, recipe.next_batch(state))
    flat = [v for v in metrics.values() if isinstance(v, float | int)]
    assert flat and all(math.isfinite(v) for v in flat), metrics
    changed = [n for n, p in module.named_parameters() if not torch.equal(p.detach(), before[n])]
    assert changed, "no parameter changed"
    return state, before, metrics


def test_lm_step(tmp_path):
    g = torch.Generator().manual_seed(0)
    meta = {"ids": ["a", "b", "c", "d"], "splits": ["train"] * 4, "captions": ["x"] * 4, "attributes": [{}] * 4}
    write_token_data(tmp_path / "tok", torch.randint(0, 16, (4, 4, 10), generator=g), [torch.randn(3, 384)] * 4, meta)
    args = [f"data={tmp_path / 'tok'}", f"out={tmp_path / 'run'}", "batch_size=2", "lm.dim=16", "lm.num_layers=1"]
    args += ["lm.num_heads=2", "lm.ffn_dim=32", "lm.cardinality=16", "lm.max_positions=32", "warmup=1"]
    state, _, metrics = run_one_step(lm, load_config(lm.Config, None, args))
    assert len(metrics["nll_per_codebook"]) == 4 and metrics["rank_rows"] == 2


def test_cfg_distill_step_moves_the_student_not_the_teacher(tmp_path):
    corpus = tmp_path / "c"
    corpus.mkdir()
    row = {"id": "a", "path": "a.wav", "caption": "calm", "split": "train"}
    (corpus / "manifest.jsonl").write_text(json.dumps(row))
    args = ["model=debug", f"corpus={corpus}", f"out={tmp_path / 'run'}", "prompts_per_step=1", "samples_per_prompt=2"]
    state = cfg_distill.setup(load_config(cfg_distill.Config, None, [*args, "duration=0.2", "lr=1e-2"]))
    teacher = {n: p.clone() for n, p in state.teacher.named_parameters()}
    student = {n: p.detach().clone() for n, p in state.gen.lm.named_parameters()}
    metrics = cfg_distill.step(state, cfg_distill.next_batch(state))
    assert math.isfinite(metrics["loss"]) and metrics["distill"] >= 0 and metrics["rank_rows"] == 2
    assert all(torch.equal(p, teacher[n]) for n, p in state.teacher.named_parameters())
    assert any(not torch.equal(p.detach(), student[n]) for n, p in state.gen.lm.named_parameters())


def test_codec_step(tmp_path):
    (tmp_path / "c" / "audio").mkdir(parents=True)
    t = np.arange(16000) / 16000
    for i in range(2):
        wav = (0.3 * np.sin(2 * np.pi * 220 * (i + 1) * t)).astype(np.float32)
        sf.write(tmp_path / "c" / "audio" / f"{i}.wav", wav, 16000)
    rows = [{"id": f"{i}", "path": f"audio/{i}.wav", "caption": "x", "split": "train"} for i in range(2)]
    (tmp_path / "c" / "manifest.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    args = [f"corpus={tmp_path / 'c'}", f"out={tmp_path / 'run'}", "batch_size=2", "crop_frames=16", "quantize_after=0"]
    args += ["codec.width=16", "codec.latent_dim=8", "codec.num_blocks=1", "codec.codebook_size=8"]
    state, _, metrics = run_one_step(codec, load_config(codec.Config, None, args))
    assert bool(state.codec.quantizer.initialized) and "commit" in metrics  # quantised from step 0: k-means ran


def test_embedder_step(corpus, tmp_path):
    cfg = embedder.Config(corpus=corpus, out=tmp_path, model=tiny_embedder_config(), batch_size=4, warmup=1)
    _, _, metrics = run_one_step(embedder, cfg)
    assert 0 <= metrics["batch_t2a_acc"] <= 1 and metrics["temperature"] > 0


def test_quality_step(corpus, tmp_path):
    model = quality.QualityConfig(
        frontend=FrontendConfig(n_mels=16, fine_n_fft=128, fine_n_mels=8),
        tower=TowerConfig(widths=[8, 12], blocks=1, stem_stride=2, out=8),
        segment_s=1.0,
    )
    cfg = quality.Config(corpus=corpus, out=tmp_path, model=model, pool_per_type=1, pool_crop_s=1.0, batch_size=4)
    _, _, metrics = run_one_step(quality, cfg)
    assert 0 <= metrics["acc"] <= 1


def test_judges_step(corpus, tmp_path):
    model = judges.JudgesConfig(
        frontend=FrontendConfig(hop=160, n_mels=16),
        tower=TowerConfig(widths=[8, 12], blocks=1, stem_stride=4, out=8),
        segment_s=1.0,
        tempo_bins=12,
        hand_hidden=8,
    )
    cfg = judges.Config(corpus=corpus, out=tmp_path, model=model, batch_size=4, warmup=1)
    _, _, metrics = run_one_step(judges, cfg)
    assert {f"loss_{a}" for a in cfg.attributes} <= set(metrics)
