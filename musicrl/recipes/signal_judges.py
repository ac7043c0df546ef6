"""Recipe ``signal-judges``: calibrate the signal judges (``evaluation.signal_judges``) on rendered clips of
known truth and measure how far they can be trusted, next to the learned judges on the same clips.

    musicrl train signal-judges corpus=data/corpus_judge3k out=runs/signal_judges \\
        ship=models/assets/judges/signal_judges.json

Reads top to bottom: load the corpus's train and test clips -> pass both through the shipped codec
(encode -> decode: what generated clips sound like) -> raw measures of every clip (tempo salience,
chroma frames, percussive spectrum) -> fit on the TRAIN split, original and codec clips together (one
calibration serves both): the tempo prior, the opening weight and key profiles, the drums band and
threshold -> judge the TEST split, original and codec: per attribute accuracy with a 95 % interval
resampling compositions -> the learned judges' accuracy on the same clips -> ``out/signal_judges.json``
(the calibration with its accuracy; also written to ``ship`` when given), ``out/accuracy.md`` (the table)
and ``out/metrics.json`` (the table's numbers, and the percussive share of every drum and no-drum test
clip before and after the codec). No loop, no weights: ``Config`` -> ``setup`` -> ``measure`` -> ``fit``
-> ``score`` -> ``main``.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from evaluation.judges import Judges, label_of
from evaluation.signal_calibration import accuracy_ci, fit_drums, fit_key, fit_tempo_prior
from evaluation.signal_judges import (
    SIGNAL_ATTRIBUTES,
    RawMeasures,
    SignalCalibration,
    judge_measures,
    raw_measures,
    signal_matches,
    tempo_grid,
)
from models.errors import InputError
from models.spectral_codec import SpectralCodec
from musicrl.corpus.attributes import FAST_FROM_BPM, SLOW_BELOW_BPM
from musicrl.corpus_data import check_split, load_split_audio
from musicrl.train_state import start_run

AUDIO = ("original", "codec")


@dataclass
class Config:
    corpus: Path = Path("data/corpus_judge3k")
    out: Path = Path("runs/signal_judges")
    codec: Path = Path("models/assets/default/codec")
    judges: str = "models/assets/judges"  # the learned judges to compare with ("" = none)
    ship: str = ""  # also write the calibration here (e.g. models/assets/judges/signal_judges.json)
    max_train: int = 0  # 0 = every train clip
    max_test: int = 0
    batch_size: int = 16
    n_boot: int = 2000
    threads: int = 1
    device: str = "cpu"
    seed: int = 0


@dataclass
class Split:
    """One split's clips: waveforms {audio: list of [S]} for original and codec audio, and records."""

    audio: dict[str, list[np.ndarray]]
    records: list[dict]


@dataclass
class State:
    cfg: Config
    sample_rate: int
    train: Split
    test: Split
    judges: Judges | None


def through_codec(codec: SpectralCodec, clips: list[np.ndarray], batch_size: int, desc: str) -> list[np.ndarray]:
    """Each clip [S] encoded and decoded by the codec (length kept: trimmed or zero-padded back to S)."""
    out = []
    with torch.no_grad():
        for i in tqdm(range(0, len(clips), batch_size), desc=desc, unit="batch", disable=None):
            group = clips[i : i + batch_size]
            n = max(len(c) for c in group)
            wav = torch.stack([torch.from_numpy(np.pad(c, (0, n - len(c)))) for c in group])[:, None]
            decoded = codec.decode(codec.encode(wav))[:, 0].numpy()
            for c, d in zip(group, decoded, strict=True):
                out.append(np.pad(d[: len(c)], (0, max(0, len(c) - d.shape[-1]))).astype(np.float32))
    return out


def setup(cfg: Config) -> State:
    check_split(cfg.corpus, "train")
    check_split(cfg.corpus, "test")
    if cfg.judges and not Path(cfg.judges).is_dir():
        raise InputError(f"judges={cfg.judges} is not a directory")
    start_run(cfg)
    codec = SpectralCodec.load(cfg.codec)
    splits = {}
    for name, limit in (("train", cfg.max_train), ("test", cfg.max_test)):
        clips, records = load_split_audio(cfg.corpus, name, codec.sample_rate, limit)
        coded = through_codec(codec, clips, cfg.batch_size, f"{name} through the codec")
        splits[name] = Split({"original": clips, "codec": coded}, records)
    judges = Judges.load(cfg.judges) if cfg.judges else None
    return State(cfg, codec.sample_rate, splits["train"], splits["test"], judges)


def measure(clips: list[np.ndarray], sample_rate: int, desc: str) -> list[RawMeasures]:
    return [raw_measures(c, sample_rate) for c in tqdm(clips, desc=desc, unit="clip", disable=None)]


def fit(raw: list[RawMeasures], records: list[dict], sample_rate: int) -> SignalCalibration:
    """The calibration fitted on labelled clips: tempo prior (strict ±8 % accuracy), opening weight and key
    profiles (key + mode accuracy), drums band and threshold (balanced accuracy). Where the clips lack a mode
    or a drums class (a tiny corpus) the defaults stay."""
    calib = SignalCalibration(
        sample_rate=sample_rate, tempo_bands={"slow_below": float(SLOW_BELOW_BPM), "fast_from": float(FAST_FROM_BPM)}
    )
    truth = np.array([float(r["tempo"]) for r in records])
    calib.tempo_prior_bpm, calib.tempo_prior_octaves = fit_tempo_prior(
        np.stack([m.salience for m in raw]), tempo_grid(), truth
    )
    modes, drums = [r["mode"] for r in records], np.array([bool(r["drums"]) for r in records])
    if len(set(modes)) == 2:
        calib.key_opening_s, calib.key_profiles = fit_key([m.chroma for m in raw], [r["key"] for r in records], modes)
    if drums.any() and not drums.all():
        calib.drums_min_hz, calib.drums_threshold = fit_drums([m.percussive for m in raw], drums)
    if len(set(modes)) < 2 or drums.all() or not drums.any():
        print("note: the train split lacks a mode or a drums class; default profiles / threshold kept there")
    calib.drums_threshold = round(calib.drums_threshold, 6)
    return calib


def truth_of(record: dict) -> dict[str, str]:
    """Everything a corpus clip is, as a prompt would state it."""
    return {a: str(record[a]) for a in ("tempo", "tempo_band", "mode", "key", "drums")}


def score(calib: SignalCalibration, raw: list[RawMeasures], records: list[dict], n_boot: int, seed: int) -> dict:
    """{attribute: accuracy_ci} of the signal judges on labelled clips."""
    rows = [
        signal_matches(judge_measures(m, calib), truth_of(r), calib.tempo_tolerance)
        for m, r in zip(raw, records, strict=True)
    ]
    groups = [r["composition_id"] for r in records]
    return {a: accuracy_ci(np.array([row[a] for row in rows]), groups, n_boot, seed) for a in SIGNAL_ATTRIBUTES}


def score_learned(judges: Judges, clips: list[np.ndarray], records: list[dict], n_boot: int, seed: int) -> dict:
    """{attribute: accuracy_ci} of the learned judges on the same clips (the attributes both judge)."""
    n = min(len(c) for c in clips)
    pred = judges.predict(torch.stack([torch.from_numpy(c[:n]) for c in clips]))
    groups = [r["composition_id"] for r in records]
    right = lambda a: np.array([p == label_of(r, a) for p, r in zip(pred[a], records, strict=True)])  # noqa: E731
    return {a: accuracy_ci(right(a), groups, n_boot, seed) for a in ("tempo_band", "mode", "drums") if a in pred}


def share_table(test: dict[str, list[RawMeasures]], records: list[dict], calib: SignalCalibration) -> dict:
    """The percussive-energy share of the test clips with and without drums, original vs codec: the whole
    spectrum and the band the drums judge reads (per clip, and the medians)."""
    out: dict = {}
    for drums in (False, True):
        idx = [i for i, r in enumerate(records) if bool(r["drums"]) == drums]
        part: dict = {"ids": [records[i]["id"] for i in idx]}
        for audio in AUDIO:
            for name, hz in (("all", 0.0), (f"from_{calib.drums_min_hz:g}_hz", calib.drums_min_hz)):
                values = [round(test[audio][i].percussive.share(hz), 4) for i in idx]
                part[f"{audio}_{name}"] = values
                part[f"{audio}_{name}_median"] = float(np.median(values)) if values else float("nan")
        out["drums" if drums else "no_drums"] = part
    return out


def table(metrics: dict) -> str:
    """The markdown accuracy table: rows = attributes, columns = judge x audio."""
    head = "| attribute | signal, original | signal, codec | learned, original | learned, codec |"
    lines = [head, "|---|---:|---:|---:|---:|"]
    fmt = lambda c: f"{100 * c['accuracy']:.1f} % [{100 * c['ci'][0]:.0f}, {100 * c['ci'][1]:.0f}]"  # noqa: E731
    for a, name in SIGNAL_ATTRIBUTES.items():
        cells = [
            fmt(metrics[judge][audio][a]) if a in metrics.get(judge, {}).get(audio, {}) else "–"
            for judge in ("signal", "learned")
            for audio in AUDIO
        ]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def main(cfg: Config) -> dict:
    state = setup(cfg)
    sr = state.sample_rate
    train = {a: measure(state.train.audio[a], sr, f"train {a}") for a in AUDIO}
    calib = fit(train["original"] + train["codec"], state.train.records * 2, sr)
    test = {a: measure(state.test.audio[a], sr, f"test {a}") for a in AUDIO}
    recs = state.test.records
    metrics: dict = {"corpus": str(cfg.corpus), "train_clips": len(state.train.records), "test_clips": len(recs)}
    metrics["signal"] = {a: score(calib, test[a], recs, cfg.n_boot, cfg.seed) for a in AUDIO}
    if state.judges is not None:
        metrics["learned"] = {
            a: score_learned(state.judges, state.test.audio[a], recs, cfg.n_boot, cfg.seed) for a in AUDIO
        }
    metrics["percussive_share"] = share_table(test, recs, calib)
    calib.accuracy = metrics["signal"]
    calib.provenance = {
        "recipe": "signal-judges",
        "corpus": str(cfg.corpus),
        "codec": str(cfg.codec),
        "fit_on": f"train split, original + codec audio ({len(state.train.records)} clips each)",
        "scored_on": f"test split ({len(recs)} clips, {len({r['composition_id'] for r in recs})} compositions)",
    }
    calib.save(cfg.out / "signal_judges.json")
    if cfg.ship:
        calib.save(cfg.ship)
    metrics["calibration"] = {k: v for k, v in asdict(calib).items() if k not in ("accuracy", "provenance")}
    (cfg.out / "metrics.json").write_text(json.dumps(metrics, indent=1))
    (cfg.out / "accuracy.md").write_text(table(metrics))
    print(table(metrics))
    return metrics
