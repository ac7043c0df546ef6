"""Recipe ``judges``: train the evaluation-only attribute classifiers on the corpus labels (resumable).

    musicrl train judges --config configs/judges.yaml [key=value ...]

Reads top to bottom: load train clips -> cache raw log features (100 frames/s) and labels -> model
(label vocabularies from ``musicrl.corpus.attributes``) -> (resume) -> loop: random 4 s crops with
random gain, the sum of per-attribute cross-entropies -> save ``out/model`` -> evaluate on the TEST
split with ``Judges.accuracy`` on full clips: per-attribute accuracy with chance (1/K) and majority
baselines (the most frequent training label), confusion matrices, ``style_confusion.png`` ->
``out/metrics.json``. The judges never serve as a training reward. In code: ``setup`` -> ``next_batch``
-> ``step`` -> ``main``; under ``torchrun`` each rank takes its share of the global batch.
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from evaluation.judges import ATTRIBUTES, Judges, JudgesConfig, confusion_matrix, label_of, plot_confusion
from models.errors import InputError
from musicrl import distributed
from musicrl.clip_features import crop_batch, log_features, map_clips, param_groups
from musicrl.corpus.attributes import LEAD_INSTRUMENTS, MODES, STYLES, TEMPO_BANDS
from musicrl.corpus_data import check_split, load_split_audio
from musicrl.train_state import JsonlLog, Loop, lr_at, optimizer_step, resume_or_start, start_run

VOCABULARIES: dict[str, list[str]] = {
    "style": list(STYLES),
    "tempo_band": list(TEMPO_BANDS),
    "mode": list(MODES),
    "lead_instrument": list(LEAD_INSTRUMENTS),
    "drums": ["False", "True"],
}


@dataclass
class Config:
    corpus: Path = Path("data/corpus")
    out: Path = Path("runs/judges")
    model: JudgesConfig = field(default_factory=JudgesConfig)
    attributes: list[str] = field(default_factory=lambda: list(ATTRIBUTES))
    steps: int = 1000
    batch_size: int = 64
    lr: float = 2e-3
    weight_decay: float = 0.01
    warmup: int = 50
    min_lr_ratio: float = 0.05
    label_smoothing: float = 0.05
    gain_db: float = 6.0
    grad_clip: float = 1.0
    log_every: int = 25
    save_every: int = 250
    max_clips: int = 0
    eval_clips: int = 0
    threads: int = 0  # torch CPU threads; 0 = torch's default (all cores)
    time_limit_min: float = 0.0
    seed: int = 0
    device: str = "auto"


def build_model(cfg: Config) -> Judges:
    unknown = sorted(set(cfg.attributes) - set(VOCABULARIES))
    if unknown or not cfg.attributes:
        raise InputError(f"unknown attribute {unknown[0]!r}" if unknown else "attributes is empty")
    cfg.model.labels = {a: VOCABULARIES[a] for a in cfg.attributes}
    torch.manual_seed(cfg.seed)
    return Judges(cfg.model)


def label_tensor(records: list[dict], vocab: dict[str, list[str]]) -> dict[str, torch.Tensor]:
    return {a: torch.tensor([v.index(label_of(r, a)) for r in records]) for a, v in vocab.items()}


def evaluate(model: Judges, cfg: Config, train_records: list[dict]) -> dict:
    """Per-attribute test accuracy on full clips, with chance and majority baselines."""
    clips, records = load_split_audio(cfg.corpus, "test", model.sample_rate, cfg.eval_clips)
    if not clips:
        return {"test": "no test clips"}
    preds: dict[str, list[str]] = {a: [] for a in model.cfg.labels}
    for part in map_clips(model.predict, clips, desc="eval"):
        for a in preds:
            preds[a] += part[a]
    out: dict = {"N": len(records)}
    for attr, vocab in model.cfg.labels.items():
        truth = [label_of(r, attr) for r in records]
        majority = Counter(label_of(r, attr) for r in train_records).most_common(1)[0][0]
        matrix = confusion_matrix(truth, preds[attr], vocab)
        out[attr] = {
            "accuracy": float(np.mean([p == t for p, t in zip(preds[attr], truth, strict=True)])),
            "chance": 1 / len(vocab),
            "majority_label": majority,
            "majority_baseline": float(np.mean([t == majority for t in truth])),
            "confusion": {"labels": vocab, "rows_true_cols_pred": matrix.tolist()},
        }
        if attr == "style":
            plot_confusion(matrix, vocab, cfg.out / "style_confusion.png", f"style judge, test split (N={len(truth)})")
    return {"test": out}


@dataclass
class State:
    cfg: Config
    dist: distributed.Dist
    model: Judges
    ddp: nn.Module  # model, or its DDP wrapper: the training forward
    opt: torch.optim.Optimizer
    feats: list[torch.Tensor]  # raw log features [C, T] of the training clips (fp16)
    labels: dict[str, torch.Tensor]  # attribute -> label index per clip [N]
    records: list[dict]  # the training records (majority baselines)
    g: torch.Generator  # the global batch stream (every rank alike)
    step: int
    log: JsonlLog


@dataclass
class Batch:
    """This rank's share: raw log-feature crops [b, C, frames] and label indices {attribute: [b]}."""

    crops: torch.Tensor
    labels: dict[str, torch.Tensor]


def setup(cfg: Config) -> State:
    model = build_model(cfg)  # fills cfg.model.labels: the written config.yaml carries them
    check_split(cfg.corpus)  # inputs are checked before the run directory is written to
    dist = start_run(cfg)
    clips, records = load_split_audio(cfg.corpus, "train", model.sample_rate, cfg.max_clips)
    if not clips:
        raise InputError(f"no training clips in {cfg.corpus}")
    feats = log_features(model.frontend, clips, "train features")
    del clips
    labels = label_tensor(records, model.cfg.labels)
    model.frontend.fit_stats(torch.cat([f.float() for f in feats[:1000]], -1)[None])
    model.to(dist.device)
    opt = torch.optim.AdamW(param_groups(model, cfg.weight_decay), lr=cfg.lr)
    step, _, log = resume_or_start(cfg.out, {"model": model}, {"opt": opt}, dist)
    g = torch.Generator().manual_seed(cfg.seed * 1000 + step)
    return State(cfg, dist, model, distributed.wrap(model, dist), opt, feats, labels, records, g, step, log)


def next_batch(state: State) -> Batch:
    """The step's global batch (distinct clips, random 4 s crops and gains), this rank's share."""
    cfg, shard, device = state.cfg, state.dist.shard, state.dist.device
    idx = torch.randperm(len(state.feats), generator=state.g)[: min(cfg.batch_size, len(state.feats))].tolist()
    crops = crop_batch(state.feats, idx, cfg.model.frontend.frames(cfg.model.segment_s), cfg.gain_db, state.g)
    labels = {a: shard(v[idx], "batch_size").to(device) for a, v in state.labels.items()}
    return Batch(shard(crops, "batch_size").to(device), labels)


def step(state: State, batch: Batch) -> dict:
    """One update: the sum over attributes of label-smoothed cross-entropies."""
    cfg = state.cfg
    state.model.train()
    logits = state.ddp(batch.crops)
    losses = {a: F.cross_entropy(x, batch.labels[a], label_smoothing=cfg.label_smoothing) for a, x in logits.items()}
    loss = sum(losses.values())
    lr = lr_at(state.step, cfg.steps, cfg.lr, cfg.warmup, cfg.min_lr_ratio)
    optimizer_step(state.opt, loss, state.model.parameters(), cfg.grad_clip, lr)
    distributed.average_buffers(state.model, state.dist)
    out = {"loss": loss.item(), "lr": lr}
    for a, x in logits.items():
        out[f"loss_{a}"] = losses[a].item()
        out[f"acc_{a}"] = float((x.argmax(-1) == batch.labels[a]).float().mean())
    return out


def main(cfg: Config) -> dict:
    state = setup(cfg)
    dist, model = state.dist, state.model
    with Loop("judges", cfg, state.log, dist, {"model": model}, {"opt": state.opt}, state.step) as loop:
        while state.step < cfg.steps:
            metrics = step(state, next_batch(state))
            state.step += 1
            if loop.after_step(state.step, metrics):
                break
        metrics = {"step": state.step}
        if dist.is_main:
            model.eval()
            model.save(cfg.out / "model", lineage={"step": state.step, "recipe": "judges", "corpus": str(cfg.corpus)})
            params = sum(p.numel() for p in model.parameters())
            metrics = {"step": state.step, "params": params, **evaluate(model, cfg, state.records)}
            (cfg.out / "metrics.json").write_text(json.dumps(metrics, indent=2))
            test = metrics["test"]
            if isinstance(test, dict):
                print(json.dumps({a: test[a]["accuracy"] for a in model.cfg.labels} | {"N": test["N"]}))
    return metrics
