"""Recipe ``embedder``: train the text–audio embedder contrastively on the corpus (resumable).

    musicrl train embedder --config configs/embedder.yaml [key=value ...]

Reads top to bottom: ``setup`` (train/valid clips -> cached log features and frozen MiniLM sentence
embeddings of their captions -> model, optimiser, resume) -> ``next_batch`` (random 4 s crops with
random gain) -> ``step`` (symmetric InfoNCE with a learned temperature) -> ``main`` (the loop; save
``out/model``; evaluate on the TEST split through the public API (full clips, per-segment averaging):
text->audio retrieval R@1/R@10, style-matching R@10, with chance levels -> ``out/metrics.json``).

Under ``torchrun`` each rank embeds its share of the batch and InfoNCE is computed over the GLOBAL
batch (embeddings gathered from every rank), so the loss does not change with the number of processes.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file, save_file
from torch import nn
from tqdm import tqdm

from evaluation.scorer_metrics import retrieval_metrics
from models.embedder import EmbedderConfig, TextAudioEmbedder
from models.errors import InputError
from musicrl import distributed
from musicrl.clip_features import crop_batch, log_features, map_clips, param_groups
from musicrl.corpus_data import check_split, load_split_audio
from musicrl.losses import info_nce_loss
from musicrl.train_state import JsonlLog, Loop, lr_at, optimizer_step, resume_or_start, start_run


@dataclass
class Config:
    corpus: Path = Path("data/corpus")
    out: Path = Path("runs/embedder")
    model: EmbedderConfig = field(default_factory=EmbedderConfig)
    steps: int = 1000
    batch_size: int = 64
    lr: float = 2e-3
    weight_decay: float = 0.01
    warmup: int = 50
    min_lr_ratio: float = 0.05
    gain_db: float = 6.0  # random gain in [-gain_db, +gain_db] per training crop
    grad_clip: float = 1.0
    log_every: int = 25
    eval_every: int = 250  # valid-split retrieval, logged
    save_every: int = 250
    max_clips: int = 0  # 0 = every training clip
    eval_clips: int = 0  # 0 = the whole test split
    threads: int = 0  # torch CPU threads; 0 = torch's default (all cores)
    time_limit_min: float = 0.0  # stop (and save) after this many minutes; 0 = no limit
    seed: int = 0
    device: str = "auto"


# ----------------------------------------------------------------------------- text cache


def sentence_cache(model: TextAudioEmbedder, captions: list[str], path: Path) -> dict[str, torch.Tensor]:
    """Frozen sentence embeddings of the unique captions, cached in ``path`` (safetensors)."""
    unique = sorted(set(captions))
    digest = hashlib.sha256("\n".join(unique + [model.cfg.text_encoder]).encode()).hexdigest()
    if path.is_file():
        from safetensors import safe_open

        with safe_open(str(path), "pt") as fh:
            if (fh.metadata() or {}).get("digest") == digest:
                feats = load_file(str(path))["features"]
                return dict(zip(unique, feats, strict=True))
    chunks = []
    for i in tqdm(range(0, len(unique), 64), desc="captions", unit="batch", disable=None):
        chunks.append(model.sentence_features(unique[i : i + 64]).cpu())
    feats = torch.cat(chunks)
    save_file({"features": feats.contiguous()}, str(path), metadata={"digest": digest})
    return dict(zip(unique, feats, strict=True))


def embed_clips(model: TextAudioEmbedder, clips: list[np.ndarray], batch: int = 16) -> torch.Tensor:
    """Full clips through the public API (per-segment averaging): [N, D] on the CPU."""
    return torch.cat([e.cpu() for e in map_clips(model.embed_audio, clips, batch)])


# ----------------------------------------------------------------------------- training


@dataclass
class State:
    cfg: Config
    dist: distributed.Dist
    model: TextAudioEmbedder
    ddp: nn.Module  # model, or its DDP wrapper: the training forward
    opt: torch.optim.Optimizer
    feats: list[torch.Tensor]  # raw log features [C, T] of the training clips (fp16)
    text: torch.Tensor  # their captions' frozen sentence features [N, text_dim]
    valid: tuple[list[torch.Tensor], torch.Tensor | None, list[dict]]  # valid features, sentences, records
    g: torch.Generator  # the global batch stream (every rank alike)
    step: int
    log: JsonlLog


@dataclass
class Batch:
    """This rank's share: raw log-feature crops [b, C, frames] and sentence features [b, text_dim]."""

    crops: torch.Tensor
    text: torch.Tensor


def build_model(cfg: Config) -> TextAudioEmbedder:
    torch.manual_seed(cfg.seed)
    return TextAudioEmbedder(cfg.model)


def setup(cfg: Config) -> State:
    check_split(cfg.corpus)  # inputs are checked before the run directory is written to
    dist = start_run(cfg)
    model = build_model(cfg)
    sr = cfg.model.frontend.sample_rate
    train_clips, train_meta = load_split_audio(cfg.corpus, "train", sr, cfg.max_clips)
    if len(train_clips) < 2:
        raise InputError(f"the embedder needs at least 2 training clips in {cfg.corpus}")
    valid_clips, valid_meta = load_split_audio(cfg.corpus, "valid", sr)
    feats = log_features(model.frontend, train_clips, "train features")
    del train_clips  # the cached features are all training needs (the waveforms are ~2 GB at 4.5k clips)
    model.frontend.fit_stats(torch.cat([f.float() for f in feats[:1000]], -1)[None])
    valid_feats = log_features(model.frontend, valid_clips, "valid features") if valid_clips else []
    cache = cfg.out / ("sentences.safetensors" if dist.is_main else f".sentences-rank{dist.rank}.safetensors")
    sentences = sentence_cache(model, [r["caption"] for r in train_meta + valid_meta], cache)
    train_text = torch.stack([sentences[r["caption"]] for r in train_meta])
    valid_text = torch.stack([sentences[r["caption"]] for r in valid_meta]) if valid_meta else None
    model.to(dist.device)
    opt = torch.optim.AdamW(param_groups(model, cfg.weight_decay), lr=cfg.lr)
    step, _, log = resume_or_start(cfg.out, {"model": model}, {"opt": opt}, dist)
    g = torch.Generator().manual_seed(cfg.seed * 1000 + step)  # a resumed run continues a fresh, seeded stream
    valid = (valid_feats, valid_text, valid_meta)
    return State(cfg, dist, model, distributed.wrap(model, dist), opt, feats, train_text, valid, g, step, log)


def next_batch(state: State) -> Batch:
    """The step's global batch (distinct clips, random crops and gains), this rank's share."""
    cfg, shard = state.cfg, state.dist.shard
    batch = min(cfg.batch_size, len(state.feats))
    idx = torch.randperm(len(state.feats), generator=state.g)[:batch].tolist()
    crops = crop_batch(state.feats, idx, cfg.model.frontend.frames(cfg.model.segment_s), cfg.gain_db, state.g)
    device = state.dist.device
    return Batch(shard(crops, "batch_size").to(device), shard(state.text[idx], "batch_size").to(device))


def step(state: State, batch: Batch) -> dict:
    """One InfoNCE update over the global batch."""
    cfg, dist, model = state.cfg, state.dist, state.model
    model.train()
    text, audio, scale = state.ddp(batch.text, model.frontend.normalise(batch.crops))
    if dist.world > 1:
        # Every rank computes the GLOBAL loss from gathered embeddings, its own rows carrying gradient.
        # DDP averages, so the loss is scaled by world; the scale (whose gradient every rank sees in
        # full) enters with gradient 1/world, so it too receives exactly the global gradient.
        text, audio = dist.gather_rows(text), dist.gather_rows(audio)
        scale = scale / dist.world + scale.detach() * (1 - 1 / dist.world)
    logits = scale * text @ audio.t()
    loss = info_nce_loss(logits)
    lr = lr_at(state.step, cfg.steps, cfg.lr, cfg.warmup, cfg.min_lr_ratio)
    optimizer_step(state.opt, loss * dist.world, model.parameters(), cfg.grad_clip, lr)
    distributed.average_buffers(model, dist)
    target = torch.arange(logits.shape[0], device=logits.device)
    return {
        "loss": loss.item(),
        "batch_t2a_acc": float((logits.argmax(1) == target).float().mean()),
        "temperature": 1 / model.logit_scale.exp().clamp(max=cfg.model.max_logit_scale).item(),
        "lr": lr,
    }


def main(cfg: Config) -> dict:
    state = setup(cfg)
    dist, model = state.dist, state.model

    def with_validation(record: dict) -> dict:
        """Every ``eval_every`` steps and at the end, retrieval on the valid split joins the log line."""
        if state.valid[1] is not None and (state.step % cfg.eval_every == 0 or state.step == cfg.steps):
            record.update({f"valid_{k}": v for k, v in validate(model, *state.valid).items()})
        return record

    with Loop("embedder", cfg, state.log, dist, {"model": model}, {"opt": state.opt}, state.step) as loop:
        while state.step < cfg.steps:
            metrics = step(state, next_batch(state))
            state.step += 1
            if loop.after_step(state.step, metrics, on_log=with_validation if dist.is_main else None):
                break
        metrics = {"step": state.step}
        if dist.is_main:
            model.eval()
            model.save(cfg.out / "model", lineage={"step": state.step, "recipe": "embedder", "corpus": str(cfg.corpus)})
            metrics = {"step": state.step, "params": count_params(model), **evaluate(model, cfg)}
            (cfg.out / "metrics.json").write_text(json.dumps(metrics, indent=2))
            print(json.dumps(metrics))
    return metrics



def count_params(model: TextAudioEmbedder) -> dict:
    audio = sum(p.numel() for n, p in model.named_parameters() if not n.startswith("text_proj"))
    return {"audio_tower": audio, "text_projection": sum(p.numel() for p in model.text_proj.parameters())}


@torch.no_grad()
def validate(model: TextAudioEmbedder, feats: list[torch.Tensor], text: torch.Tensor, records: list[dict]) -> dict:
    """Retrieval on cached valid features: each clip's first segment (cheap, for the log)."""
    model.eval()
    frames = model.cfg.frontend.frames(model.cfg.segment_s)
    x = torch.stack([f[:, :frames].float() for f in feats]) if len({f.shape for f in feats}) == 1 else None
    if x is None:
        return {}
    audio = model.embed_features(model.frontend.normalise(x.to(model.device))).cpu()
    m = retrieval_metrics(model.project_text(text.to(model.device)).cpu(), audio, records)
    return {k: v for k, v in m.items() if k.startswith(("R@", "style_hit"))}


def evaluate(model: TextAudioEmbedder, cfg: Config) -> dict:
    """Test split, full clips through ``embed_audio`` / ``embed_text`` (the reward's own path)."""
    clips, records = load_split_audio(cfg.corpus, "test", model.sample_rate, cfg.eval_clips)
    if not clips:
        return {"test": "no test clips"}
    audio = embed_clips(model, clips)
    text = torch.cat(
        [model.embed_text([r["caption"] for r in records[i : i + 64]]).cpu() for i in range(0, len(records), 64)]
    )
    metrics = retrieval_metrics(text, audio, records)
    styles = np.array([r["style"] for r in records])
    cos = (audio @ audio.t()).numpy()
    same = styles[:, None] == styles[None, :]
    np.fill_diagonal(same, False)
    other = styles[:, None] != styles[None, :]
    if same.any() and other.any():  # the diversity embedding should place one style's clips closer
        metrics["audio_cos_same_style"] = float(cos[same].mean())
        metrics["audio_cos_other_style"] = float(cos[other].mean())
    return {"test": metrics}
