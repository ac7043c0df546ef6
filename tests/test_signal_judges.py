"""Signal judges (evaluation/signal_judges.py): synthetic clips of known tempo, key and drums; the fitting
helpers on hand-computed values; the calibration file; ``musicrl eval --signal-judges`` end to end."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from evaluation.signal_calibration import accuracy_ci, fit_drums, fit_key, fit_tempo_prior, fit_threshold
from evaluation.signal_judges import (
    KEYS,
    ChromaFrames,
    ClipMeasures,
    PercussiveSpectrum,
    SignalCalibration,
    SignalMatch,
    clip_chroma,
    default_profiles,
    estimate_key,
    estimate_tempo,
    fit_profiles,
    key_scores,
    percussive_share,
    rotate_to_tonic,
    signal_matches,
    summarise_chroma,
    tempo_grid,
    tempo_matches,
)
from models.errors import InputError

SR = 16000


def click_track(bpm: float, seconds: float = 8.0, sr: int = SR) -> np.ndarray:
    """A 1 kHz blip (10 ms, decaying) on every beat."""
    wav = np.zeros(int(seconds * sr), dtype=np.float32)
    t = np.arange(int(0.01 * sr)) / sr
    blip = np.sin(2 * np.pi * 1000 * t) * np.exp(-t / 0.002)
    for start in np.arange(0, seconds, 60.0 / bpm):
        i = int(start * sr)
        wav[i : i + blip.size] += blip[: wav.size - i]
    return wav


def note(midi: int, seconds: float, sr: int = SR) -> np.ndarray:
    """A harmonic tone (3 partials) at a MIDI pitch."""
    t = np.arange(int(seconds * sr)) / sr
    f = 440.0 * 2 ** ((midi - 69) / 12)
    return sum(np.sin(2 * np.pi * k * f * t) / k for k in (1, 2, 3)).astype(np.float32)


def progression(chords: list[tuple[int, ...]], seconds: float = 1.5) -> np.ndarray:
    """Triads (MIDI notes, the lowest doubled two octaves down as a bass), one after another."""
    return np.concatenate([sum(note(m, seconds) for m in (*c, c[0] - 24)) * 0.1 for c in chords])


@pytest.mark.parametrize("bpm", [120.0, 90.0])
def test_click_track_tempo(bpm):
    est = estimate_tempo(click_track(bpm), SR)
    assert abs(est.bpm - bpm) <= 2 and 0 < est.confidence <= 1


def test_silence_gives_the_prior_with_zero_confidence():
    est = estimate_tempo(np.zeros(SR * 2, dtype=np.float32), SR, prior_bpm=100.0)
    assert est.bpm == 100.0 and est.confidence == 0.0


def test_tempo_matches_with_and_without_octaves():
    """61 vs 120: |61 - 60| = 1 <= 0.08 * 60 = 4.8 (half allowed) but |61 - 120| > 9.6 strictly."""
    assert tempo_matches(61, 120) and not tempo_matches(61, 120, octave=False)
    assert tempo_matches(129, 120, octave=False) and not tempo_matches(130, 120, octave=False)  # 9.6 BPM


def test_chords_give_the_key_and_mode():
    c_major = progression([(60, 64, 67), (65, 69, 72), (67, 71, 74), (60, 64, 67)])  # C F G C
    a_minor = progression([(57, 60, 64), (62, 65, 69), (64, 68, 71), (57, 60, 64)])  # Am Dm E Am
    for wav, key, mode in ((c_major, "C", "major"), (a_minor, "A", "minor")):
        est = estimate_key(clip_chroma(wav, SR), default_profiles())
        assert (est.key, est.mode) == (key, mode)


def test_key_scores_peak_at_the_profile_itself():
    """A clip whose chroma IS the minor profile rotated to E correlates 1 with (minor, E)."""
    profiles = default_profiles()
    minor = np.asarray(profiles["minor"])
    e = KEYS.index("E")
    features = rotate_to_tonic(minor, -e)  # tonic moved from index 0 to E
    scores = key_scores(features, profiles)
    assert scores.shape == (2, 12) and scores[1, e] == pytest.approx(1.0)
    assert estimate_key(features, profiles).key == "E"


def test_fitted_profiles_undo_the_rotation():
    """Two clips with the same shape in different keys fit to that shape, tonic first."""
    shape = np.arange(24, dtype=np.float64)
    clips = np.stack([rotate_to_tonic(shape, -3), rotate_to_tonic(shape, -7)])
    fitted = fit_profiles(np.concatenate([clips, clips]), [3, 7, 3, 7], ["major", "major", "minor", "minor"])
    unit = (shape - shape.mean()) / np.linalg.norm(shape - shape.mean())
    assert np.allclose(fitted["major"], unit, atol=1e-5)
    with pytest.raises(InputError):
        fit_profiles(clips, [3, 7], ["major", "major"])


def test_percussive_share_sine_chord_vs_noise_bursts():
    chord = (note(60, 2.0) + note(64, 2.0) + note(67, 2.0)) * 0.1
    rng = np.random.default_rng(0)
    bursts = np.zeros(2 * SR, dtype=np.float32)
    for start in range(0, 2 * SR, SR // 4):
        n = SR // 50
        bursts[start : start + n] = rng.standard_normal(n) * np.exp(-np.arange(n) / (n / 5))
    low, high = percussive_share(chord, SR), percussive_share(bursts, SR)
    assert low < 0.1 and high > 0.5
    assert percussive_share(np.zeros(SR, dtype=np.float32), SR) == 0.0


def test_fit_key_names_every_key_it_was_fitted_on():
    """Each clip opens (first 1 s) on its tonic triad and then sits on the relative key's triad, a little
    louder: whatever opening weight wins, the fitted profiles name all 24 keys."""

    def clip(tonic: int, mode: str) -> ChromaFrames:
        third, relative = (4, tonic + 9) if mode == "major" else (3, tonic + 3)
        frames = np.zeros((24, 16))
        for pc in (tonic, tonic + third, tonic + 7):
            frames[pc % 12, :4] = 1.0
        for pc in (relative, relative + 7 - third, relative + 7):
            frames[pc % 12, 4:] = 1.2
        frames[12 + tonic % 12, :4], frames[12 + relative % 12, 4:] = 1.0, 1.2
        return ChromaFrames(frames, 0.25)

    keys = [(t, m) for t in range(12) for m in ("major", "minor")]
    clips = [clip(t, m) for t, m in keys]
    opening, profiles = fit_key(clips, [KEYS[t] for t, _ in keys], [m for _, m in keys])
    assert opening in (0, 1, 1.5, 2, 3, 4)
    for c, (t, m) in zip(clips, keys, strict=True):
        est = estimate_key(summarise_chroma(c, opening), profiles)
        assert (est.key, est.mode) == (KEYS[t], m)


def test_fit_drums_picks_the_band_that_separates():
    """Above 1 kHz drums are 0.8 percussive and no drums 0.1; below it (ten times the energy) the other way
    round (0.1 vs 0.9), so the whole-spectrum share says the opposite -> an edge of at least 1 kHz and a
    threshold between 0.1 and 0.8."""
    freqs = np.array([500.0, 1500.0, 4500.0])

    def spectrum(low: float, high: float) -> PercussiveSpectrum:
        return PercussiveSpectrum(np.array([10 * low, high, high]), np.array([10.0, 1.0, 1.0]), freqs)

    drums, none = spectrum(0.1, 0.8), spectrum(0.9, 0.1)
    edge, threshold = fit_drums([drums, drums, none], np.array([True, True, False]))
    assert edge >= 1000 and 0.1 < threshold < 0.8
    assert drums.share() == pytest.approx(2.6 / 12) and drums.share(99_000) == drums.share()  # no band up there


def test_fit_threshold_balanced():
    """Values [0.1, 0.2, 0.6, 0.9], labels [F, F, T, T]: the cut between 0.2 and 0.6 -> 0.4."""
    assert fit_threshold(np.array([0.1, 0.2, 0.6, 0.9]), np.array([False, False, True, True])) == pytest.approx(0.4)
    with pytest.raises(InputError):
        fit_threshold(np.array([0.1, 0.2]), np.array([True, True]))


def test_fit_tempo_prior_prefers_the_true_octave():
    """Salience peaks equally at 60 and 120 BPM; the truth is 120 for every clip -> a prior centred
    at or above 90 (the geometric midpoint), which makes every pick 120."""
    bpms = tempo_grid()
    sal = np.zeros((3, bpms.size))
    sal[:, bpms == 60] = 1.0
    sal[:, bpms == 120] = 1.0
    centre, _ = fit_tempo_prior(sal, bpms, np.full(3, 120.0))
    assert centre > 60 * np.sqrt(2)


def test_accuracy_ci_by_group():
    """All right -> 1 with interval [1, 1]; 2 of 4 right in two groups of (right, right) and
    (wrong, wrong) -> 0.5, and a resample draws group means 0, 0.5 or 1."""
    assert accuracy_ci(np.ones(5, bool), list("abcde")) == {"accuracy": 1.0, "ci": [1.0, 1.0], "n": 5, "groups": 5}
    out = accuracy_ci(np.array([1, 1, 0, 0], bool), ["a", "a", "b", "b"])
    assert out["accuracy"] == 0.5 and out["groups"] == 2 and 0.0 <= out["ci"][0] <= 0.5 <= out["ci"][1] <= 1.0


def test_calibration_round_trip_and_bad_files(tmp_path):
    calib = SignalCalibration(sample_rate=8000, tempo_prior_bpm=105.0, drums_threshold=0.07,
                              accuracy={"codec": {"mode": {"accuracy": 0.8, "ci": [0.7, 0.9], "n": 10}}})
    path = calib.save(tmp_path / "s.json")
    assert json.loads(path.read_text())["format"] == "musicrl-signal-judges"
    assert SignalCalibration.load(path) == calib
    assert calib.tempo_band(89.9) == "slow" and calib.tempo_band(90) == "medium" and calib.tempo_band(120) == "fast"
    (tmp_path / "bad.json").write_text('{"format": "other"}')
    for bad in (tmp_path / "bad.json", tmp_path / "missing.json"):
        with pytest.raises(InputError):
            SignalCalibration.load(bad)


def test_signal_matches_only_what_is_stated():
    m = ClipMeasures(61.0, 0.5, "slow", "A", "minor", 0.1, 0.3, True)
    stated = {"tempo": "120", "tempo_band": "fast", "key": "A", "mode": "minor", "drums": "True"}
    assert signal_matches(m, stated) == {
        "tempo": True, "tempo_strict": False, "tempo_band": False, "mode": True, "key": True, "drums": True
    }
    assert signal_matches(m, {"key": "A", "mode": "major"}) == {"key": False, "mode": False}
    assert signal_matches(m, {"style": "rock"}) == {}


def test_signal_match_judges_a_batch():
    calib = SignalCalibration()
    truth = {"clicks": {"tempo": "120", "drums": "True"}, "silent prompt": {}}
    audio = torch.from_numpy(np.stack([click_track(120.0, 4.0), np.zeros(4 * SR, np.float32)]))
    rows = SignalMatch(calib, truth).judge(["clicks", "silent prompt"], audio)
    assert rows[0]["tempo"] and rows[0]["tempo_strict"] and rows[1] == {}


def test_eval_reports_signal_columns_with_the_measure_accuracy(tmp_path):
    """The 8 kHz debug model with a calibration for 8 kHz: every stated attribute is judged and the report
    header carries the calibration's accuracy."""
    from musicrl.cli import main

    accuracy = {"mode": {"accuracy": 0.81, "ci": [0.7, 0.9], "n": 100}}
    calib = SignalCalibration(sample_rate=8000, accuracy={"codec": accuracy}).save(tmp_path / "sig.json")
    prompts = tmp_path / "p.jsonl"
    prompts.write_text(
        '{"caption": "fast rock in A minor", "attributes": {"mode": "minor", "tempo": "130", "drums": "True"}}\n'
        '{"caption": "calm piano"}\n'
    )
    out = tmp_path / "eval"
    common = ["--prompts", str(prompts), "--samples-per-prompt", "2", "--duration", "0.4", "--reference", "none"]
    common += ["--out", str(out)]
    assert main(["eval", "--models", "dbg=debug", "--cfg", "3", *common, "--signal-judges", str(calib)]) == 0
    rows = [json.loads(line) for line in (out / "results.jsonl").read_text().splitlines()]
    assert set(rows[0]["signal_correct"]) == {"mode", "tempo", "tempo_strict", "drums"}
    assert rows[2]["signal_correct"] == {}
    summary = json.loads((out / "summary.jsonl").read_text().splitlines()[0])
    mode = summary["signal_accuracy"]["mode"]
    assert mode["n"] == 2 and mode["measure"] == accuracy["mode"]
    assert "signal: mode (measure 81 %)" in (out / "report.md").read_text()
    assert main(["eval", "--models", "debug", *common, "--signal-judges", str(tmp_path / "no.json")]) == 2


def test_recipe_smoke_run(tmp_path, capsys):
    """Six 2 s clips (one in the test split): calibration, both audio versions scored, files written."""
    from musicrl.corpus.build import build_corpus
    from musicrl.recipes import signal_judges as recipe

    corpus = build_corpus(tmp_path / "corpus", num_clips=6, seed=0, duration=2.0, progress=False).parent
    out = tmp_path / "run"
    ship = tmp_path / "assets" / "signal_judges.json"
    metrics = recipe.main(recipe.Config(corpus=corpus, out=out, ship=str(ship), n_boot=50))
    assert metrics["test_clips"] == 1 and metrics["train_clips"] >= 1
    for judge, attrs in (("signal", {"tempo", "tempo_strict", "tempo_band", "mode", "key", "drums"}),
                         ("learned", {"tempo_band", "mode", "drums"})):
        for audio in ("original", "codec"):
            assert set(metrics[judge][audio]) == attrs
            assert all(0.0 <= c["accuracy"] <= 1.0 and c["n"] == 1 for c in metrics[judge][audio].values())
    calib = SignalCalibration.load(ship)
    assert calib.accuracy == metrics["signal"] and calib.sample_rate == 16000
    assert SignalCalibration.load(out / "signal_judges.json") == calib
    assert "| mode |" in (out / "accuracy.md").read_text() and "| mode |" in capsys.readouterr().out
