"""Quality model: the degradations really degrade, AUC arithmetic, model files, recipe smoke run."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import soundfile as sf
import torch

from models.audio_features import stft_magnitude
from models.audio_tower import FrontendConfig, TowerConfig
from models.quality import DEGRADATIONS, QualityConfig, QualityModel, degrade

SR = 16000


def music_like(seconds: float = 2.0, seed: int = 0) -> torch.Tensor:
    """Harmonic notes (C major arpeggio) with decays: energy spread from ~130 Hz to ~6 kHz."""
    g = torch.Generator().manual_seed(seed)
    t = torch.arange(int(seconds * SR)) / SR
    wav = torch.zeros_like(t)
    for i, midi in enumerate([48, 52, 55, 60, 64, 67, 72, 76]):
        f0 = 440 * 2 ** ((midi - 69) / 12)
        start = i * seconds / 8
        env = torch.where(t >= start, torch.exp(-(t - start) * 3), torch.zeros_like(t))
        wav += env * sum(torch.sin(2 * math.pi * f0 * h * t) / h for h in range(1, 12) if f0 * h < SR / 2)
    wav += 0.01 * torch.randn(t.shape, generator=g)
    return 0.9 * wav / wav.abs().max()


def band_energy(wav: torch.Tensor, lo: float, hi: float) -> float:
    spec = torch.fft.rfft(wav).abs().pow(2)
    f = torch.fft.rfftfreq(wav.shape[-1], 1 / SR)
    return float(spec[(f >= lo) & (f < hi)].sum())


def tiny_config() -> QualityConfig:
    return QualityConfig(
        frontend=FrontendConfig(n_mels=16, fine_n_fft=128, fine_n_mels=8),
        tower=TowerConfig(widths=[8, 12], blocks=1, stem_stride=2, out=8),
        segment_s=1.0,
    )


@pytest.mark.parametrize("kind", DEGRADATIONS)
def test_every_degradation_is_deterministic_finite_and_peak_matched(kind):
    x, other = music_like(seed=0), music_like(seed=1).flip(0)
    a = degrade(x, kind, SR, seed=3, other=other)
    b = degrade(x, kind, SR, seed=3, other=other)
    assert torch.equal(a, b) and a.shape == x.shape and bool(torch.isfinite(a).all())
    assert a.abs().max().item() == pytest.approx(x.abs().max().item(), rel=1e-4)
    assert (a - x).pow(2).mean().sqrt() > 0.005  # it changed the clip


def test_lowpass_removes_high_frequencies_and_highpass_low_ones():
    from models.quality import fft_filter

    x = music_like()
    low = fft_filter(x, SR, 1000.0, "lowpass")
    assert band_energy(low, 1200, 8000) < 1e-6 * band_energy(x, 1200, 8000)
    assert band_energy(low, 0, 800) == pytest.approx(band_energy(x, 0, 800), rel=1e-3)
    high = fft_filter(x, SR, 1000.0, "highpass")
    assert band_energy(high, 0, 800) < 1e-6 * band_energy(x, 0, 800)
    assert band_energy(high, 1200, 8000) == pytest.approx(band_energy(x, 1200, 8000), rel=1e-3)


def test_noise_has_the_requested_snr():
    from models.quality import add_noise

    x = music_like()
    y = add_noise(x, 10.0, torch.Generator().manual_seed(0))
    snr = 10 * math.log10(x.pow(2).mean() / (y - x).pow(2).mean())
    assert snr == pytest.approx(10.0, abs=1e-3)


def test_clipping_flattens_peaks_and_shuffle_keeps_length():
    from models.quality import saturate, shuffle_segments

    x = music_like()
    y = saturate(x, 12.0, soft=False)
    assert (y.abs() >= 0.999).float().mean() > 0.01  # many samples sit at full scale
    s = shuffle_segments(x, SR, torch.Generator().manual_seed(0))
    assert s.shape == x.shape and not torch.allclose(s, x)


def test_griffin_lim_keeps_the_magnitude_but_not_the_waveform():
    from models.audio_features import griffin_lim
    from models.quality import griffin_lim_phase

    x = music_like()
    y = degrade(x, "griffin_lim", SR, seed=0)
    # the fast phasor z/|z| gives the reference implementation's result
    reference = griffin_lim(stft_magnitude(x[None], 1024, 256), 1024, 256, iters=5, length=x.shape[-1], seed=4)[0]
    assert torch.allclose(griffin_lim_phase(x, 5, seed=4), reference, atol=1e-4)
    mx, my = stft_magnitude(x[None], 1024, 256), stft_magnitude(y[None], 1024, 256)
    assert ((mx - my).norm() / mx.norm()).item() < 0.6  # magnitudes still close
    assert torch.corrcoef(torch.stack([x, y]))[0, 1].abs() < 0.5  # phases (waveform) are new


def test_mix_needs_another_clip_and_unknown_kinds_fail():
    with pytest.raises(ValueError):
        degrade(music_like(), "mix", SR, seed=0)
    with pytest.raises(ValueError):
        degrade(music_like(), "reverb", SR, seed=0)


def test_roc_auc_hand_values():
    """pos {0.9, 0.8} vs neg {0.1, 0.85}: 3 of 4 pairs ranked right -> 0.75; a tie counts 1/2."""
    from evaluation.scorer_metrics import roc_auc

    assert roc_auc(np.array([0.9, 0.8]), np.array([0.1, 0.85])) == pytest.approx(0.75)
    assert roc_auc(np.array([0.5]), np.array([0.5])) == pytest.approx(0.5)
    assert roc_auc(np.array([1.0, 2.0]), np.array([0.0])) == 1.0


def test_model_scores_are_probabilities_and_files_round_trip(tmp_path):
    torch.manual_seed(0)
    model = QualityModel(tiny_config()).eval()
    wav = torch.randn(3, int(2.5 * SR)) * 0.1
    s = model.score(wav)
    assert s.shape == (3,) and bool(((s >= 0) & (s <= 1)).all())
    assert model.segment_scores(wav).shape == (3, 3)
    model.save(tmp_path / "q")
    assert sorted(p.name for p in (tmp_path / "q").iterdir()) == ["quality.json", "quality.safetensors"]
    assert torch.equal(QualityModel.load(tmp_path / "q").score(wav), s)


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    from musicrl.corpus.build import build_corpus

    out = tmp_path_factory.mktemp("corpus6")
    build_corpus(out, num_clips=6, seed=0, duration=2.0, progress=False)
    return out


def test_recipe_smoke_run_with_extra_negatives_and_resume(corpus, tmp_path, capsys):
    from musicrl.recipes import quality as recipe

    extra = tmp_path / "generated"
    extra.mkdir()
    for i in range(4):  # 8 kHz files: the recipe resamples them to 16 kHz
        sf.write(str(extra / f"gen{i}.wav"), np.random.default_rng(i).normal(0, 0.1, 8000).astype(np.float32), 8000)
    out = tmp_path / "run"

    def cfg(steps):
        return recipe.Config(
            corpus=corpus,
            out=out,
            model=tiny_config(),
            pool_per_type=2,
            pool_crop_s=1.5,
            extra_negatives=[extra],
            extra_test_fraction=0.5,
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
    assert set(DEGRADATIONS) <= set(test["per_degradation"]) and test["N_clean"] == 1
    n_extra = metrics["trained_on"]["negatives"].get("extra", 0) + test["per_degradation"].get("extra", {}).get("N", 0)
    assert n_extra == 4
    trained, fresh = QualityModel.load(out / "model"), recipe.build_model(cfg(3))
    assert not torch.equal(trained.head[1].weight, fresh.head[1].weight)
    recipe.main(cfg(4))
    assert "resumed at step 3" in capsys.readouterr().out
    assert [json.loads(line)["step"] for line in (out / "log.jsonl").read_text().splitlines()] == [1, 2, 3, 4]
