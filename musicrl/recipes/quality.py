"""Recipe ``quality``: train the quality model (clean corpus clips vs degraded ones), resumable.

    musicrl train quality --config configs/quality.yaml [key=value ...]

Reads top to bottom: load train clips -> build a negative pool (``pool_per_type`` random
``pool_crop_s`` crops of training clips per degradation type, see ``models.quality``; plus WAVs from
``extra_negatives`` directories, e.g. codec reconstructions or LM generations) -> cache log
features -> model -> (resume) -> loop: balanced batches (half clean crops, half negatives with the
degradation type drawn uniformly), random 4 s crops and gain, binary cross-entropy -> save
``out/model`` -> evaluate on the TEST split: every test clip clean (positive) and once per
degradation type with fresh random severities (negatives) -> ROC AUC overall and per type ->
``out/metrics.json``. In code: ``setup`` (the data above, model, optimiser, resume) ->
``next_batch`` -> ``step`` -> ``main``; under ``torchrun`` each rank takes its share of the clean and
of the degraded half of the global batch.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import soundfile as sf
import torch
import torch.nn.functional as F
from torch import nn
from tqdm import tqdm

from evaluation.scorer_metrics import roc_auc
from models.errors import InputError
from models.quality import DEGRADATIONS, QualityConfig, QualityModel, degrade
from musicrl import distributed
from musicrl.clip_features import crop_batch, log_features, map_clips, param_groups
from musicrl.corpus_data import check_split, load_split_audio
from musicrl.train_state import JsonlLog, Loop, lr_at, optimizer_step, resume_or_start, start_run


@dataclass
class Config:
    corpus: Path = Path("data/corpus")
    out: Path = Path("runs/quality")
    model: QualityConfig = field(default_factory=QualityConfig)
    degradations: list[str] = field(default_factory=lambda: list(DEGRADATIONS))
    pool_per_type: int = 240  # degraded training crops per degradation type
    pool_crop_s: float = 5.0
    extra_negatives: list[Path] = field(default_factory=list)  # directories of WAVs of generated audio
    extra_test_fraction: float = 0.2  # of extra files (by a hash of their path) kept for the test
    steps: int = 1000
    batch_size: int = 64
    lr: float = 2e-3
    weight_decay: float = 0.01
    warmup: int = 50
    min_lr_ratio: float = 0.05
    gain_db: float = 6.0
    grad_clip: float = 1.0
    log_every: int = 25
    save_every: int = 250
    max_clips: int = 0  # 0 = every training clip
    eval_clips: int = 0  # 0 = the whole test split
    threads: int = 0  # torch CPU threads; 0 = torch's default (all cores)
    time_limit_min: float = 0.0
    seed: int = 0
    device: str = "auto"


# ----------------------------------------------------------------------------- data


def _other_clip(i: int, records: list[dict], rng: np.random.Generator) -> int | None:
    """A random clip of a different composition than clip ``i`` (None if there is none)."""
    others = [j for j, r in enumerate(records) if r["composition_id"] != records[i]["composition_id"]]
    return int(rng.choice(others)) if others else None


def _mix_partner(clips: list[np.ndarray], records: list[dict], i: int, rng: np.random.Generator) -> torch.Tensor:
    j = _other_clip(i, records, rng)
    # With a single composition there is no other clip: mix with the clip played backwards.
    return torch.from_numpy(clips[j] if j is not None else clips[i][::-1].copy())


def negative_pool(
    clips: list[np.ndarray], records: list[dict], kinds: list[str], per_type: int, crop_s: float, sr: int, seed: int
) -> tuple[list[np.ndarray], list[str]]:
    """``per_type`` degraded random crops per degradation kind: (waveforms, kinds)."""
    rng = np.random.default_rng(seed)
    crop = int(crop_s * sr)
    wavs, labels = [], []
    bar = tqdm(total=per_type * len(kinds), desc="negatives", unit="clip", disable=None)
    for k, kind in enumerate(kinds):
        for j in range(per_type):
            i = int(rng.integers(len(clips)))
            start = int(rng.integers(0, max(1, len(clips[i]) - crop + 1)))
            x = torch.from_numpy(clips[i][start : start + crop])
            other = _mix_partner(clips, records, i, rng)[start : start + crop] if kind == "mix" else None
            wavs.append(degrade(x, kind, sr, seed=seed * 1_000_003 + k * 100_000 + j, other=other).numpy())
            labels.append(kind)
            bar.update(1)
    bar.close()
    return wavs, labels


def resample(x: np.ndarray, sr_in: int, sr_out: int) -> np.ndarray:
    """Band-limited resampling by FFT truncation / zero-padding (whole clip at once)."""
    if sr_in == sr_out:
        return x
    n_out = int(round(len(x) * sr_out / sr_in))
    return np.fft.irfft(np.fft.rfft(x), n=n_out).astype(np.float32) * (n_out / len(x))


def load_extra_negatives(dirs: list[Path], sr: int, test_fraction: float) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Every ``*.wav`` under the directories, mono at ``sr``, split train/test by a hash of the path."""
    train, test = [], []
    for d in dirs:
        if not Path(d).is_dir():
            raise InputError(f"extra negatives directory {d} does not exist")
        for path in sorted(Path(d).rglob("*.wav")):
            data, file_sr = sf.read(str(path), dtype="float32", always_2d=True)
            wav = resample(data.mean(1), file_sr, sr)
            if len(wav) < sr // 4:
                continue  # under 0.25 s: not a clip
            u = int(hashlib.sha256(str(path.relative_to(d)).encode()).hexdigest()[:8], 16) / 16**8
            (test if u < test_fraction else train).append(wav)
    return train, test


# ----------------------------------------------------------------------------- metrics


def score_clips(model: QualityModel, clips: list[np.ndarray], batch: int = 16) -> np.ndarray:
    return torch.cat([s.cpu() for s in map_clips(model.score, clips, batch)]).numpy()


def evaluate(model: QualityModel, cfg: Config, extra_test: list[np.ndarray]) -> dict:
    """Clean test clips vs each degradation of them (fresh seeds), full clips through ``score``."""
    sr = model.sample_rate
    clips, records = load_split_audio(cfg.corpus, "test", sr, cfg.eval_clips)
    if not clips:
        return {"test": "no test clips"}
    rng = np.random.default_rng(cfg.seed + 777)
    pos = score_clips(model, clips)
    per_type, negatives = {}, []
    for k, kind in enumerate(tqdm(cfg.degradations, desc="eval", unit="type", disable=None)):
        deg = [
            degrade(
                torch.from_numpy(c),
                kind,
                sr,
                seed=10**9 + cfg.seed * 1_000_003 + k * 100_000 + i,
                other=_mix_partner(clips, records, i, rng) if kind == "mix" else None,
            ).numpy()
            for i, c in enumerate(clips)
        ]
        s = score_clips(model, deg)
        negatives.append(s)
        per_type[kind] = {"auc": roc_auc(pos, s), "mean_score": float(s.mean()), "N": len(s)}
    if extra_test:
        s = score_clips(model, extra_test)
        per_type["extra"] = {"auc": roc_auc(pos, s), "mean_score": float(s.mean()), "N": len(s)}
    neg = np.concatenate(negatives)
    return {
        "test": {
            "N_clean": len(pos),
            "N_degraded": int(len(neg)),
            "auc": roc_auc(pos, neg),
            "chance_auc": 0.5,
            "clean_mean_score": float(pos.mean()),
            "accuracy_at_0.5": float(((pos > 0.5).sum() + (neg <= 0.5).sum()) / (len(pos) + len(neg))),
            "per_degradation": per_type,
        }
    }


# ----------------------------------------------------------------------------- training


@dataclass
class State:
    cfg: Config
    dist: distributed.Dist
    model: QualityModel
    ddp: nn.Module  # model, or its DDP wrapper: the training forward
    opt: torch.optim.Optimizer
    pos: list[torch.Tensor]  # raw log features [C, T] of clean clips (fp16)
    neg: list[torch.Tensor]  # ... of degraded crops and extra negatives
    by_kind: dict[str, list[int]]  # degradation -> indices into neg
    extra_test: list[np.ndarray]  # held-out extra negatives (waveforms), for the evaluation
    g: torch.Generator  # the global batch stream (every rank alike)
    step: int
    log: JsonlLog


@dataclass
class Batch:
    """This rank's share: raw log-feature crops [b, C, frames] (clean first) and labels [b] (1 = clean)."""

    crops: torch.Tensor
    labels: torch.Tensor


def build_model(cfg: Config) -> QualityModel:
    torch.manual_seed(cfg.seed)
    return QualityModel(cfg.model)


def setup(cfg: Config) -> State:
    unknown = sorted(set(cfg.degradations) - set(DEGRADATIONS))
    if unknown or not cfg.degradations:
        raise InputError(f"unknown degradation {unknown[0]!r}" if unknown else "degradations is empty")
    check_split(cfg.corpus)  # inputs are checked before the run directory is written to
    dist = start_run(cfg)
    model = build_model(cfg)
    sr = model.sample_rate
    clips, records = load_split_audio(cfg.corpus, "train", sr, cfg.max_clips)
    if not clips:
        raise InputError(f"no training clips in {cfg.corpus}")
    pos = log_features(model.frontend, clips, "clean features")
    neg_wavs, kinds = negative_pool(clips, records, cfg.degradations, cfg.pool_per_type, cfg.pool_crop_s, sr, cfg.seed)
    del clips
    extra_train, extra_test = load_extra_negatives(cfg.extra_negatives, sr, cfg.extra_test_fraction)
    neg_wavs, kinds = neg_wavs + extra_train, kinds + ["extra"] * len(extra_train)
    neg = log_features(model.frontend, neg_wavs, "degraded features")
    del neg_wavs
    by_kind = {k: [i for i, x in enumerate(kinds) if x == k] for k in dict.fromkeys(kinds)}
    model.frontend.fit_stats(torch.cat([f.float() for f in pos[:1000]], -1)[None])
    model.to(dist.device)
    opt = torch.optim.AdamW(param_groups(model, cfg.weight_decay), lr=cfg.lr)
    step, _, log = resume_or_start(cfg.out, {"model": model}, {"opt": opt}, dist)
    g = torch.Generator().manual_seed(cfg.seed * 1000 + step)
    ddp = distributed.wrap(model, dist)
    return State(cfg, dist, model, ddp, opt, pos, neg, by_kind, extra_test, g, step, log)


def next_batch(state: State) -> Batch:
    """Half clean crops, half degraded ones (the degradation type drawn uniformly), random crops and
    gain; this rank's share of each half."""
    cfg, g, shard = state.cfg, state.g, state.dist.shard
    half = max(1, cfg.batch_size // 2)
    frames = cfg.model.frontend.frames(cfg.model.segment_s)
    pos_idx = torch.randint(0, len(state.pos), (half,), generator=g).tolist()
    names, neg_idx = list(state.by_kind), []
    for kind_i in torch.randint(0, len(names), (half,), generator=g).tolist():
        items = state.by_kind[names[kind_i]]
        neg_idx.append(items[int(torch.randint(0, len(items), (1,), generator=g))])
    pos = shard(crop_batch(state.pos, pos_idx, frames, cfg.gain_db, g), "batch_size / 2")
    neg = shard(crop_batch(state.neg, neg_idx, frames, cfg.gain_db, g), "batch_size / 2")
    labels = torch.cat([torch.ones(len(pos)), torch.zeros(len(neg))])
    return Batch(torch.cat([pos, neg]).to(state.dist.device), labels.to(state.dist.device))


def step(state: State, batch: Batch) -> dict:
    """One binary cross-entropy update (clean = 1)."""
    cfg, model = state.cfg, state.model
    model.train()
    logits = state.ddp(model.frontend.normalise(batch.crops))
    loss = F.binary_cross_entropy_with_logits(logits, batch.labels)
    lr = lr_at(state.step, cfg.steps, cfg.lr, cfg.warmup, cfg.min_lr_ratio)
    optimizer_step(state.opt, loss, model.parameters(), cfg.grad_clip, lr)
    distributed.average_buffers(model, state.dist)
    return {"loss": loss.item(), "acc": float(((logits > 0).float() == batch.labels).float().mean()), "lr": lr}


def main(cfg: Config) -> dict:
    state = setup(cfg)
    dist, model = state.dist, state.model
    with Loop("quality", cfg, state.log, dist, {"model": model}, {"opt": state.opt}, state.step) as loop:
        while state.step < cfg.steps:
            metrics = step(state, next_batch(state))
            state.step += 1
            if loop.after_step(state.step, metrics):
                break
        metrics = {"step": state.step}
        if dist.is_main:
            model.eval()
            trained_on = {
                "positives": f"{len(state.pos)} clean train-split corpus clips (random {cfg.model.segment_s} s crops)",
                "negatives": {k: len(v) for k, v in state.by_kind.items()},
                "negative_crop_s": cfg.pool_crop_s,
                "extra_negative_dirs": [str(d) for d in cfg.extra_negatives],
            }
            model.save(cfg.out / "model", lineage={"step": state.step, "recipe": "quality", "trained_on": trained_on})
            params = sum(p.numel() for p in model.parameters())
            metrics = {"step": state.step, "params": params, "trained_on": trained_on}
            metrics.update(evaluate(model, cfg, state.extra_test))
            (cfg.out / "metrics.json").write_text(json.dumps(metrics, indent=2))
            print(json.dumps(metrics))
    return metrics
