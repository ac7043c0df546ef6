"""The procedural corpus: pure composition, captions, splits, build/resume, and labels that are
true in the audio (tempo in the onset periodicity, drums in high-frequency onsets, key in chroma).

Audio features are plain numpy STFTs (no librosa: its numba cold start costs ~30 s).
"""

from __future__ import annotations

import dataclasses
import io
import json
import wave
from pathlib import Path

import mido
import numpy as np
import pretty_midi
import pytest

from models.errors import InputError
from musicrl.corpus.attributes import (
    KEYS,
    LEAD_PROGRAMS,
    MANIFEST_FIELDS,
    MOODS,
    STYLES,
    TEMPO_BANDS,
    load_manifest,
    tempo_band,
)
from musicrl.corpus.build import build_corpus, clip_attributes, plan_clips, split_of
from musicrl.corpus.captions import make_caption, parse_caption
from musicrl.corpus.compose import Composition, compose
from musicrl.corpus.render import (
    SUPPORTED_SAMPLE_RATES,
    _synthesize,
    midi_file_bytes,
    render_midi,
    renderer_version,
)
from musicrl.corpus.styles import STYLE_TABLE, parse_chord

SR = 16000


# ---------------------------------------------------------------------------------------------
# Features (numpy only)


def _stft_mag(x: np.ndarray, n_fft: int, hop: int) -> np.ndarray:
    """|STFT| as (T frames, F bins), Hann window."""
    frames = 1 + (len(x) - n_fft) // hop
    index = np.arange(n_fft)[None, :] + hop * np.arange(frames)[:, None]
    return np.abs(np.fft.rfft(x[index] * np.hanning(n_fft), axis=1))


def _onset_envelope(x: np.ndarray, fmin: float = 0.0, hop: int = 160) -> tuple[np.ndarray, float]:
    """Half-wave rectified log-spectral flux above ``fmin`` Hz, local mean removed; frame rate."""
    mag = _stft_mag(x, 1024, hop)
    freqs = np.fft.rfftfreq(1024, 1 / SR)
    flux = np.maximum(0.0, np.diff(np.log1p(100 * mag[:, freqs >= fmin]), axis=0)).sum(1)
    flux -= np.convolve(flux, np.ones(16) / 16, mode="same")
    return np.maximum(flux, 0.0), SR / hop


def _autocorrelation(x: np.ndarray) -> tuple[np.ndarray, float]:
    env, rate = _onset_envelope(x)
    env = env - env.mean()
    ac = np.correlate(env, env, "full")[len(env) - 1 :]
    return ac / ac[0], rate


def _local_max(ac: np.ndarray) -> np.ndarray:
    """m[i] = max(ac[i-1 : i+3]): the autocorrelation at a fractional lag i.x, best within a frame."""
    padded = np.concatenate([[-np.inf], ac, [-np.inf, -np.inf]])
    return np.max(np.stack([padded[j : j + len(ac)] for j in range(4)]), axis=0)


def _ac_at(ac: np.ndarray, lag: float) -> float:
    return float(_local_max(ac)[int(lag)]) if int(lag) < len(ac) else 0.0


def _tempo_estimate(x: np.ndarray) -> float:
    """BPM in [50, 200] whose pulse train (beats 1-4 apart) best matches the onset periodicity:
    a comb over the autocorrelation, so a syncopated figure repeating every 1.5 beats does not win."""
    ac, rate = _autocorrelation(x)
    peak = np.append(_local_max(ac), 0.0)  # index len(ac): lags beyond the clip score 0
    candidates = np.arange(50.0, 200.5, 0.5)
    scores = sum(peak[np.minimum((k * 60 / candidates * rate).astype(int), len(ac))] / np.sqrt(k) for k in range(1, 5))
    return float(candidates[int(np.argmax(scores))])


def _periodicity(x: np.ndarray, bpm: float) -> float:
    """Onset autocorrelation at the beat period of ``bpm``."""
    ac, rate = _autocorrelation(x)
    return _ac_at(ac, 60 / bpm * rate)


def _same_tempo_up_to_octave(estimate: float, bpm: float, tolerance: float = 0.04) -> bool:
    return any(abs(estimate / (bpm * m) - 1) < tolerance for m in (0.5, 1.0, 2.0))


def _median_filter(a: np.ndarray, size: int, axis: int) -> np.ndarray:
    pad = [(0, 0), (0, 0)]
    pad[axis] = (size // 2, size // 2)
    windows = np.lib.stride_tricks.sliding_window_view(np.pad(a, pad, mode="reflect"), size, axis=axis)
    return np.median(windows, axis=-1)


def _percussive_treble(x: np.ndarray) -> float:
    """Share of the energy above 2 kHz that is percussive, by median-filtering separation
    (Fitzgerald 2010): a bin is percussive where the spectrum is smoother across frequency
    (a broadband click: hats, snares, cymbals) than across time (a sustained partial)."""
    power = _stft_mag(x, 1024, 256) ** 2
    power = power[:, np.fft.rfftfreq(1024, 1 / SR) >= 2000]
    harmonic = _median_filter(power, 17, axis=0)
    percussive = _median_filter(power, 17, axis=1)
    return float((power * (percussive > harmonic)).sum() / power.sum())


def _chroma(x: np.ndarray) -> np.ndarray:
    """Magnitude energy per pitch class from 100 Hz to 1 kHz (index 0 = C)."""
    mag = _stft_mag(x, 4096, 512)
    freqs = np.fft.rfftfreq(4096, 1 / SR)
    keep = (freqs > 100) & (freqs < 1000)
    pcs = np.round(69 + 12 * np.log2(freqs[keep] / 440)).astype(int) % 12
    return np.bincount(pcs, weights=mag[:, keep].sum(0), minlength=12)


def _tonic_rank(x: np.ndarray, key: str) -> int:
    """0 when the tonic is the strongest pitch class."""
    chroma = _chroma(x)
    return int((chroma > chroma[KEYS.index(key)]).sum())


# Krumhansl-Kessler key profiles (C major / C minor), for correlation key finding.
KK_MAJOR = np.array([6.35, 2.23, 3.48, 2.33, 4.38, 4.09, 2.52, 5.19, 2.39, 3.66, 2.29, 2.88])
KK_MINOR = np.array([6.33, 2.68, 3.52, 5.38, 2.60, 3.53, 2.54, 4.75, 3.98, 2.69, 3.34, 3.17])


def _key_rank(x: np.ndarray, key: str, mode: str) -> int:
    """Rank of (key, mode) among the 24 keys by chroma / key-profile correlation (0 = best)."""
    chroma = _chroma(x)
    scores = {
        (KEYS[t], m): np.corrcoef(chroma, np.roll(profile, t))[0, 1]
        for t in range(12)
        for m, profile in (("major", KK_MAJOR), ("minor", KK_MINOR))
    }
    return sorted(scores, key=scores.get, reverse=True).index((key, mode))


def _read_wav(path: str | Path) -> tuple[np.ndarray, int, int, int]:
    with wave.open(str(path)) as f:
        data = np.frombuffer(f.readframes(f.getnframes()), "<i2")
        return data.astype(np.float64) / 32768, f.getframerate(), f.getnchannels(), f.getsampwidth()


def _render(composition: Composition, duration: float = 4.0) -> np.ndarray:
    return render_midi(compose(composition, composition.leads[0], duration), duration, SR).astype(np.float64)


def _files(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


# ---------------------------------------------------------------------------------------------
# Pure parts: vocabularies, harmony, composition, captions, plan and splits


def test_vocabularies_and_tempo_bands():
    assert len(STYLES) >= 10 and tuple(STYLE_TABLE) == STYLES
    assert TEMPO_BANDS == ("slow", "medium", "fast")
    assert [tempo_band(b) for b in (60, 89, 90, 119, 120, 180)] == ["slow", "slow", "medium", "medium", "fast", "fast"]
    for style in STYLE_TABLE.values():
        assert len(style.leads) >= 2 and set(style.moods) <= set(MOODS)


def test_parse_chord_hand_values():
    """In C: bVII = Bb major (10; 0,4,7); ii7 = D minor 7th (2; 0,3,7,10). In A minor (tonic 9):
    V7 = E dominant 7th (4; 0,4,7,10), iihd7 = B half-diminished (11; 0,3,6,10)."""
    assert parse_chord("bVII", 0).root == 10 and parse_chord("bVII", 0).intervals == (0, 4, 7)
    assert (parse_chord("ii7", 0).root, parse_chord("ii7", 0).intervals) == (2, (0, 3, 7, 10))
    assert (parse_chord("V7", 9).root, parse_chord("V7", 9).intervals) == (4, (0, 4, 7, 10))
    assert (parse_chord("iihd7", 9).root, parse_chord("iihd7", 9).intervals) == (11, (0, 3, 6, 10))
    with pytest.raises(ValueError):
        parse_chord("H7", 0)


def test_compose_is_pure_and_variants_share_their_notes():
    item = next(i for i in plan_clips(0, 60) if len(i.composition.leads) == 2 and i.composition.drums)
    c = item.composition
    a, b = compose(c, c.leads[0], 6.0), compose(c, c.leads[0], 6.0)
    notes = lambda pm: {i.name: [(n.start, n.end, n.pitch, n.velocity) for n in i.notes] for i in pm.instruments}
    assert notes(a) == notes(b)
    other = compose(c, c.leads[1], 6.0)
    for name in notes(a):
        if name != "lead":
            assert notes(a)[name] == notes(other)[name], name
    lead_a = [n[2] for n in notes(a)["lead"]]
    lead_b = [n[2] for n in notes(other)["lead"]]
    assert len(lead_a) == len(lead_b) > 4
    assert len({pb - pa for pa, pb in zip(lead_a, lead_b, strict=True)}) == 1  # same tune, octave-shifted at most
    programs = {i.name: i.program for i in other.instruments}
    assert programs["lead"] == LEAD_PROGRAMS[c.leads[1]]
    assert any(i.is_drum for i in a.instruments)
    no_drums = compose(dataclasses.replace(c, drums=False), c.leads[0], 6.0)
    assert not any(i.is_drum for i in no_drums.instruments)
    assert all(n.end <= 6.0 for i in a.instruments for n in i.notes)


def test_captions_vary_and_state_only_true_values():
    captions, first_words, mentioned_counts = set(), set(), []
    style_positions = set()
    for item in plan_clips(7, 400):
        attrs = clip_attributes(item)
        rng = np.random.default_rng([7, item.index])
        caption, mentioned = make_caption(attrs, rng)
        # The caption states exactly the attributes it claims to mention, each with its true value.
        assert parse_caption(caption) == {k: attrs[k] for k in mentioned}, caption
        captions.add(caption)
        first_words.add(caption.split()[0].lower())
        mentioned_counts.append(len(mentioned))
        if "style" in mentioned:
            style_positions.add(min(len(caption.split(",")[0].split()), 6))
    assert len(captions) >= 390  # essentially never repeated
    assert len(first_words) >= 20  # many openings: forms, synonyms, attribute order
    assert min(mentioned_counts) <= 2 and max(mentioned_counts) >= 7  # partial and full captions
    assert len(style_positions) >= 3


def test_parse_caption_examples():
    assert parse_caption("an energetic techno track at 128 bpm with a synth lead") == {
        "mood": "energetic",
        "style": "techno",
        "tempo": 128,
        "lead_instrument": "synth lead",
    }
    assert parse_caption("Calm ambient piece in D minor, no drums, featuring strings") == {
        "mood": "calm",
        "style": "ambient",
        "key": "D",
        "mode": "minor",
        "drums": False,
        "lead_instrument": "strings",
    }
    assert parse_caption("A jazzy tune in a minor key with an electric piano melody") == {
        "style": "jazz",
        "mode": "minor",
        "lead_instrument": "electric piano",
    }
    assert parse_caption("bossa nova, E-flat major, drums")["key"] == "Eb"


def test_plan_is_balanced_prefix_stable_and_split_by_composition():
    plan = plan_clips(3, 300)
    assert plan_clips(3, 120) == plan[:120]  # growing a corpus keeps its first clips
    assert len({p.clip_id for p in plan}) == 300
    styles = [p.composition.style for p in plan if p.variant == 0]
    counts = [styles.count(s) for s in STYLES]
    assert max(counts) - min(counts) <= 1  # styles cycle through permutations
    by_comp: dict[str, set[str]] = {}
    for p in plan:
        by_comp.setdefault(p.composition.composition_id, set()).add(split_of(p.composition.composition_id))
    assert all(len(s) == 1 for s in by_comp.values())
    assert any(sum(p.composition.composition_id == cid for p in plan) == 2 for cid in by_comp)
    splits = [split_of(f"s0-c{j:06d}") for j in range(20000)]
    fractions = {s: splits.count(s) / len(splits) for s in ("train", "valid", "test")}
    assert abs(fractions["train"] - 0.90) < 0.01 and abs(fractions["valid"] - 0.05) < 0.01


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"num_clips": 0}, "--num-clips"),
        ({"duration": 0.0}, "--duration"),
        ({"duration": -2.0}, "--duration"),
        ({"duration": 61.0}, "--duration"),
        ({"duration": float("nan")}, "--duration"),
        ({"sample_rate": 12345}, "--sample-rate"),
        ({"workers": 0}, "--workers"),
    ],
)
def test_bad_input_raises_and_writes_nothing(tmp_path, kwargs, message):
    out = tmp_path / "corpus"
    args = {"num_clips": 2, "seed": 0, "duration": 2.0, "sample_rate": SR, "workers": 1, "progress": False}
    with pytest.raises(InputError, match=message):
        build_corpus(out, **{**args, **kwargs})
    assert not out.exists()


def test_out_dir_that_is_a_file_or_foreign_dir_is_refused(tmp_path):
    target = tmp_path / "afile"
    target.write_text("x")
    with pytest.raises(InputError, match="not a directory"):
        build_corpus(target, num_clips=1, seed=0, progress=False)
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("mine")
    with pytest.raises(InputError, match="without corpus.json"):
        build_corpus(foreign, num_clips=1, seed=0, progress=False)
    assert sorted(p.name for p in foreign.iterdir()) == ["notes.txt"]


def test_cli_reports_bad_input_in_one_line(tmp_path, capsys):
    from musicrl.cli import main

    code = main(["data", "build", "--out", str(tmp_path / "c"), "--num-clips", "2", "--duration", "0"])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and "--duration" in err
    assert not (tmp_path / "c").exists()


# ---------------------------------------------------------------------------------------------
# Rendering and building (the synthesiser is a wheel: these run everywhere)


def _score(
    notes: list[tuple[float, float, int, int]], program: int = 0, is_drum: bool = False
) -> pretty_midi.PrettyMIDI:
    """One part playing (start, end, pitch, velocity) notes, with a CC 7 = 100 at 0 s."""
    pm = pretty_midi.PrettyMIDI()
    inst = pretty_midi.Instrument(program=program, is_drum=is_drum)
    inst.control_changes.append(pretty_midi.ControlChange(7, 100, 0.0))
    inst.notes += [pretty_midi.Note(velocity=v, pitch=p, start=a, end=b) for a, b, p, v in notes]
    pm.instruments.append(inst)
    return pm


def test_midi_file_has_one_tick_per_sample_and_releases_overlaps():
    """Two notes of key 60 overlap (0.5-1.0 s, 0.75-1.25 s): one release, at the later end. One tick
    is one 48 kHz sample (24,000 ticks per beat at the default 120 BPM): 0.5 s -> 24,000, 0.75 s ->
    36,000, 1.25 s -> 60,000; a note ending past 2 s is cut at 96,000; the track ends 480 ticks
    (10 ms) after 2 s, at 96,480. At tick 0: program, CC 11 = 127 (full level), then the score's CC 7."""
    pm = _score([(0.5, 1.0, 60, 90), (0.75, 1.25, 60, 80), (1.5, 2.5, 64, 70)], program=40)
    midi = mido.MidiFile(file=io.BytesIO(midi_file_bytes(pm, 2.0)))
    assert midi.ticks_per_beat == 24000 and len(midi.tracks) == 1
    tick, seen = 0, []
    for msg in midi.tracks[0]:
        tick += msg.time
        seen.append((tick, msg.type, getattr(msg, "note", getattr(msg, "control", getattr(msg, "program", None)))))
    assert seen == [
        (0, "program_change", 40),
        (0, "control_change", 11),
        (0, "control_change", 7),
        (24000, "note_on", 60),
        (36000, "note_on", 60),
        (60000, "note_off", 60),
        (72000, "note_on", 64),
        (96000, "note_off", 64),
        (96480, "end_of_track", None),
    ]


def test_render_is_exact_deterministic_and_fresh_per_clip():
    """The same score renders to byte-identical float32 twice, also after another score (a fresh
    synthesiser per clip); N = round(duration * rate) at every rate (2.5 s at 22,050 Hz: 55,125);
    the peak is -1 dBFS (10^(-1/20) = 0.8913) and the 50 ms fade ends on 0."""
    pm = _score([(0.1, 1.0, 60, 100), (0.6, 2.4, 67, 90), (1.2, 2.5, 72, 110)])
    first = render_midi(pm, 2.5, SR)
    render_midi(_score([(0.0, 2.5, 48, 127)], program=30), 2.5, SR)
    again = render_midi(pm, 2.5, SR)
    assert first.dtype == np.float32 and first.tobytes() == again.tobytes()
    assert abs(float(np.abs(first).max()) - 10 ** (-1 / 20)) < 1e-6 and first[-1] == 0.0
    for rate in SUPPORTED_SAMPLE_RATES:
        assert len(render_midi(pm, 2.5, rate)) == round(2.5 * rate)
    assert len(render_midi(pm, 2.5, 22050)) == 55125
    with pytest.raises(InputError, match="sample rate"):
        render_midi(pm, 1.0, 12345)


def test_onset_lands_on_time():
    """A note's onset (first sample above 1 % of the peak) moves with its start: started at 0.5 s
    (375 whole 64-sample synthesis blocks at 48 kHz) it comes exactly 8,000 samples (0.5 s at 16 kHz)
    later than when started at 0 s; started at 0.3 s (14,400 / 64 = 225 blocks) exactly 4,800 later;
    at 0.3007 s it waits for the next block: 64 / 3 = 21.3 samples at 16 kHz at most. Silence before."""

    def onset(start: float) -> int:
        audio = np.abs(render_midi(_score([(start, start + 0.5, 69, 100)]), 1.5, SR))
        return int(np.argmax(audio > 0.01 * audio.max()))

    at_zero = onset(0.0)
    assert onset(0.5) - at_zero == 8000 and onset(0.3) - at_zero == 4800
    assert 4811 <= onset(0.3007) - at_zero <= 4800 + 22


def test_missing_drum_kit_falls_back_to_the_standard_kit():
    """Channel 10 plays bank 128: kit 99 (absent from TimGM6mb) sounds exactly like kit 0, and a
    drum part differs from the same keys on a melodic piano."""
    hits = [(0.25 * k, 0.25 * k + 0.1, 38, 100) for k in range(4)]
    kit0 = render_midi(_score(hits, 0, is_drum=True), 1.0, SR)
    assert kit0.tobytes() == render_midi(_score(hits, 99, is_drum=True), 1.0, SR).tobytes()
    assert np.abs(kit0 - render_midi(_score(hits, 0), 1.0, SR)).max() > 0.1


def test_loud_mix_is_turned_down_instead_of_clipping():
    """15 parts of 18 keys at velocity 127 reach the 16-bit ceiling at the synthesiser's own level;
    the render is taken 6 dB (or more) lower, so its raw level stays below full scale."""
    loud = _score([(0.0, 1.0, p, 127) for p in range(36, 90, 3)], program=30)
    loud.instruments *= 15
    assert np.abs(_synthesize(midi_file_bytes(loud, 1.0)).astype(np.int32)).max() == 32768
    raw = render_midi(loud, 1.0, SR, normalize=False)
    assert 0.05 < float(np.abs(raw).max()) < 0.99


def test_missing_soundfont_is_one_clear_error(monkeypatch, tmp_path):
    monkeypatch.setenv("MUSICRL_SOUNDFONT", str(tmp_path / "none.sf2"))
    with pytest.raises(InputError, match="soundfont not found"):
        render_midi(_score([(0.0, 0.5, 60, 100)]), 1.0, SR)


@pytest.fixture(scope="module")
def small_corpus(tmp_path_factory) -> Path:
    """One clip of every style (14 compositions), 3 s each."""
    out = tmp_path_factory.mktemp("corpus") / "c"
    plan = plan_clips(11, 20)
    n = next(k for k in range(1, 21) if len({p.composition.style for p in plan[:k]}) == len(STYLES))
    build_corpus(out, num_clips=n, seed=11, duration=3.0, progress=False)
    return out


def test_manifest_rows_and_wav_format(small_corpus):
    rows = load_manifest(small_corpus)
    assert {r["style"] for r in rows} == set(STYLES)
    info = json.loads((small_corpus / "corpus.json").read_text())
    assert info["complete"] and info["num_clips"] == len(rows) and info["seed"] == 11
    assert info["renderer"] == renderer_version() and info["renderer"].startswith("midirenderer ")
    for row in rows:
        assert set(MANIFEST_FIELDS) <= set(row), set(MANIFEST_FIELDS) - set(row)
        assert row["path"] == f"audio/{row['id']}.wav" and row["tempo_band"] == tempo_band(row["tempo"])
        assert parse_caption(row["caption"]) == {k: row[k] for k in row["mentioned"]}
        audio, sr, channels, width = _read_wav(row["audio_path"])
        assert (sr, channels, width, len(audio)) == (SR, 1, 2, 3 * SR)
        assert 0.85 < np.abs(audio).max() < 0.9  # peak-normalised to -1 dBFS
        assert ("drums" in row["programs"]) == row["drums"]


def test_build_is_deterministic_and_parallel_equals_serial(tmp_path):
    common = {"num_clips": 3, "duration": 2.0, "progress": False}
    build_corpus(tmp_path / "a", seed=5, **common)
    build_corpus(tmp_path / "b", seed=5, **common)
    build_corpus(tmp_path / "p", seed=5, workers=2, **common)
    build_corpus(tmp_path / "other", seed=6, **common)
    a = _files(tmp_path / "a")
    assert len(a) == 5 and a == _files(tmp_path / "b") == _files(tmp_path / "p")
    other = _files(tmp_path / "other")
    assert a["audio/s5-000000.wav"] != other["audio/s6-000000.wav"]
    assert a["manifest.jsonl"] != other["manifest.jsonl"]


def test_interrupted_build_resumes_to_the_clean_result(tmp_path):
    common = {"num_clips": 4, "seed": 2, "duration": 2.0, "progress": False}
    clean = build_corpus(tmp_path / "clean", **common).parent
    broken = build_corpus(tmp_path / "broken", **common).parent
    # Simulate a crash: the manifest stops mid-line, one listed clip lost its WAV, a temp file
    # was left behind, corpus.json says incomplete.
    manifest = broken / "manifest.jsonl"
    lines = manifest.read_text().splitlines(keepends=True)
    manifest.write_text("".join(lines[:3]) + lines[3][:25])
    (broken / "audio" / "s2-000001.wav").unlink()
    (broken / "audio" / "s2-000003.wav.tmp").write_bytes(b"partial")
    info = json.loads((broken / "corpus.json").read_text())
    (broken / "corpus.json").write_text(json.dumps({**info, "complete": False}))
    assert len(load_manifest(broken)) == 3  # the reader drops the truncated line too
    build_corpus(broken, **common)
    assert _files(broken) == _files(clean)
    with pytest.raises(InputError, match="other parameters"):
        build_corpus(broken, **{**common, "seed": 3})
    assert _files(broken) == _files(clean)


@pytest.mark.parametrize(
    "style, tempo", [("techno", 132), ("rock", 104), ("reggae", 76), ("jazz", 120), ("hip-hop", 90)]
)
def test_tempo_and_drums_are_audible(style, tempo):
    """The onset autocorrelation peaks at the labelled beat (up to an octave), is stronger there
    than at tempos 10-20 % off, and drums make the treble far more percussive."""
    base = Composition(
        f"test-{style}",
        1234,
        style,
        tempo,
        "D",
        "minor",
        STYLE_TABLE[style].moods[0],
        True,
        (STYLE_TABLE[style].leads[0],),
    )
    with_drums = _render(base)
    without = _render(dataclasses.replace(base, drums=False))
    assert _same_tempo_up_to_octave(_tempo_estimate(with_drums), tempo)
    at_beat = _periodicity(with_drums, tempo)
    for off in (0.8, 0.9, 1.1, 1.2):
        assert at_beat > _periodicity(with_drums, tempo * off)
    assert _percussive_treble(with_drums) > 2 * _percussive_treble(without)


@pytest.mark.parametrize(
    "style, key, mode",
    [
        ("folk", "G", "major"),
        ("ambient", "F#", "minor"),
        ("house", "F", "minor"),
        ("jazz", "Bb", "major"),
        ("rock", "D", "major"),
    ],
)
def test_key_shows_in_chroma(style, key, mode):
    """For most of three compositions (seeds 1-3) the labelled key is among the 3 best of 24
    Krumhansl-Kessler profiles for the clip's chroma, and its tonic among the 3 strongest pitch
    classes. (A single 6 s clip can be ambiguous: a melody dwelling on iv, a bass's overtones.)"""
    mood = next(m for m in STYLE_TABLE[style].moods if m in ("calm", "relaxed", "happy", "dark", "energetic"))
    key_ok, tonic_ok = 0, 0
    for seed in (1, 2, 3):
        tempo = 100 if style != "ambient" else 70
        comp = Composition(f"test-{style}", seed, style, tempo, key, mode, mood, False, (STYLE_TABLE[style].leads[0],))
        audio = _render(comp, 6.0)
        key_ok += _key_rank(audio, key, mode) < 3
        tonic_ok += _tonic_rank(audio, key) < 3
    assert key_ok >= 2 and tonic_ok >= 2, (key_ok, tonic_ok)


def test_corpus_labels_hold_in_the_audio(small_corpus):
    """Across one clip of every style: drum clips show their tempo (up to an octave); for most
    clips the tonic ranks in the top 3 pitch classes and the key in the top 3 of 24 key profiles
    (measured on 200 clips of 4 s: 90 % and 91 %); drum clips have a more percussive treble."""
    rows = load_manifest(small_corpus)
    audio = {r["id"]: _read_wav(r["audio_path"])[0] for r in rows}
    drum_rows = [r for r in rows if r["drums"]]
    tempo_ok = [_same_tempo_up_to_octave(_tempo_estimate(audio[r["id"]]), r["tempo"]) for r in drum_rows]
    assert np.mean(tempo_ok) >= 0.75, tempo_ok
    tonic_ok = [_tonic_rank(audio[r["id"]], r["key"]) < 3 for r in rows]
    assert np.mean(tonic_ok) >= 0.7, tonic_ok
    key_ok = [_key_rank(audio[r["id"]], r["key"], r["mode"]) < 3 for r in rows]
    assert np.mean(key_ok) >= 0.75, key_ok
    treble = {r["id"]: _percussive_treble(audio[r["id"]]) for r in rows}
    quiet = [treble[r["id"]] for r in rows if not r["drums"]]
    if quiet:
        assert np.median([treble[r["id"]] for r in drum_rows]) > 2 * np.median(quiet)


def test_cli_builds_a_corpus(tmp_path, capsys):
    from musicrl.cli import main

    out = tmp_path / "cli"
    args = ["--out", str(out), "--num-clips", "2", "--duration", "1.5", "--seed", "4", "--no-progress"]
    assert main(["data", "build", *args]) == 0
    assert len(load_manifest(out)) == 2 and len(list((out / "audio").glob("*.wav"))) == 2
