"""Evaluation judges: hand features on synthetic audio, shapes, files, recipe smoke run."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

from evaluation.judges import (
    Judges,
    JudgesConfig,
    confusion_matrix,
    key_profile_correlations,
    label_of,
    onset_autocorrelation,
)
from models.audio_tower import FrontendConfig, LogMelFrontend, TowerConfig

SR = 16000
LABELS = {"style": ["jazz", "rock", "techno"], "mode": ["major", "minor"], "drums": ["False", "True"]}


def tiny_config(labels=LABELS) -> JudgesConfig:
    return JudgesConfig(
        frontend=FrontendConfig(hop=160, n_mels=16),
        tower=TowerConfig(widths=[8, 12], blocks=1, stem_stride=4, out=8),
        labels=labels,
        segment_s=1.0,
        tempo_bins=12,
        hand_hidden=8,
    )


def click_track(bpm: float, seconds: float = 6.0) -> torch.Tensor:
    wav = torch.zeros(int(seconds * SR))
    burst = torch.randn(200, generator=torch.Generator().manual_seed(0)) * torch.exp(-torch.arange(200) / 40)
    for k in range(int(seconds * bpm / 60)):
        s = int(k * 60 / bpm * SR)
        wav[s : s + 200] += burst[: len(wav) - s]
    return wav


def chord(midis: list[int], seconds: float = 2.0) -> torch.Tensor:
    t = torch.arange(int(seconds * SR)) / SR
    return sum(torch.sin(2 * math.pi * 440 * 2 ** ((m - 69) / 12) * t) for m in midis) / len(midis)


def test_onset_autocorrelation_peaks_at_the_click_tempo():
    frontend = LogMelFrontend(FrontendConfig(hop=160, n_mels=32, chroma=False))
    bpms = torch.exp(torch.linspace(math.log(40), math.log(240), 96))
    for bpm in (80.0, 128.0):
        hist = onset_autocorrelation(frontend.log_features(click_track(bpm)[None]), SR / 160, bpms)[0]
        assert bpms[hist.argmax()].item() == pytest.approx(bpm, rel=0.04)


def test_key_profiles_tell_major_from_minor_triads():
    frontend = LogMelFrontend(FrontendConfig(hop=160, n_mels=16))
    for midis, is_major, tonic in (([60, 64, 67, 72], True, 3), ([57, 60, 64, 69], False, 0)):  # C major, A minor
        feats = key_profile_correlations(frontend.log_features(chord(midis)[None])[:, 16:])[0]
        major, minor = feats[:12], feats[12:24]
        assert (feats[24] > feats[25]) == is_major
        assert int((major if is_major else minor).argmax()) == tonic  # chroma index: A = 0, C = 3


def test_labels_and_confusion_matrix():
    assert label_of({"drums": True}, "drums") == "True" and label_of({"drums": False}, "drums") == "False"
    assert label_of({"style": "jazz"}, "style") == "jazz"
    m = confusion_matrix(["a", "a", "b"], ["a", "b", "b"], ["a", "b"])
    assert m.tolist() == [[1, 1], [0, 1]]


def test_predict_accuracy_and_round_trip(tmp_path):
    torch.manual_seed(0)
    judges = Judges(tiny_config()).eval()
    wav = torch.randn(3, int(2.5 * SR)) * 0.1
    pred = judges.predict(wav)
    assert set(pred) == set(LABELS)
    assert all(len(v) == 3 and set(v) <= set(LABELS[a]) for a, v in pred.items())
    records = [{"style": p, "mode": "major", "drums": True} for p in pred["style"]]
    acc = judges.accuracy(wav, records)
    assert acc["style"] == 1.0 and 0.0 <= acc["mode"] <= 1.0
    judges.save(tmp_path / "j")
    assert json.loads((tmp_path / "j" / "judges.json").read_text())["config"]["labels"] == LABELS
    loaded = Judges.load(tmp_path / "j")
    for a, lp in judges.log_probs(wav).items():
        assert torch.equal(loaded.log_probs(wav)[a], lp)
    assert torch.allclose(lp.exp().sum(-1), torch.ones(3), atol=1e-5)


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    from musicrl.corpus.build import build_corpus

    out = tmp_path_factory.mktemp("corpus6")
    build_corpus(out, num_clips=6, seed=0, duration=2.0, progress=False)
    return out


def test_recipe_smoke_run_and_resume(corpus, tmp_path, capsys):
    from musicrl.recipes import judges as recipe

    out = tmp_path / "run"

    def cfg(steps):
        return recipe.Config(
            corpus=corpus,
            out=out,
            model=tiny_config({}),
            steps=steps,
            batch_size=4,
            warmup=1,
            log_every=1,
            save_every=2,
            device="cpu",
        )

    metrics = recipe.main(cfg(3))
    log = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in log] == [1, 2, 3] and all(math.isfinite(r["loss"]) for r in log)
    test = metrics["test"]
    assert test["N"] == 1
    for attr in ("style", "tempo_band", "mode", "lead_instrument", "drums"):
        assert 0.0 <= test[attr]["accuracy"] <= 1.0
        assert test[attr]["chance"] == pytest.approx(1 / len(test[attr]["confusion"]["labels"]))
    assert test["style"]["chance"] == pytest.approx(1 / 14)
    assert (out / "style_confusion.png").stat().st_size > 1000
    trained = Judges.load(out / "model")
    fresh = recipe.build_model(cfg(3))
    assert not torch.equal(trained.heads["style"].weight, fresh.heads["style"].weight)
    assert np.allclose(fresh.frontend.mean.numpy(), 0)  # stats were fitted on the corpus
    assert not np.allclose(trained.frontend.mean.numpy(), 0)
    recipe.main(cfg(4))
    assert "resumed at step 3" in capsys.readouterr().out
    assert [json.loads(line)["step"] for line in (out / "log.jsonl").read_text().splitlines()] == [1, 2, 3, 4]


def test_judge_gives_correctness_and_a_probability_profile_per_clip():
    from evaluation.reward_math import mean_pairwise_diversity

    judges = Judges(tiny_config()).eval()
    wav = torch.randn(4, SR, generator=torch.Generator().manual_seed(0)) * 0.1
    stated = [{"style": "rock"}, {}, {"style": "jazz"}, {}]
    judgement = judges.judge(wav, stated, batch_size=3)  # two batches
    rows, profile = judgement.matches, judgement.profiles
    predicted = judges.predict(wav)
    assert rows[0] == {"style": predicted["style"][0] == "rock"} and rows[1] == {}
    assert profile.shape == (4, sum(len(v) for v in LABELS.values()))
    sizes = [len(LABELS[a]) for a in sorted(LABELS)]  # each attribute's block sums to 1
    block_sums = torch.stack([b.sum(-1) for b in profile.split(sizes, -1)], -1)
    torch.testing.assert_close(block_sums, torch.ones(4, len(sizes)))
    same = mean_pairwise_diversity(torch.stack([profile[:1], profile[:1]], 1))
    assert same.abs().max() < 1e-6  # identical clips: no attribute diversity
