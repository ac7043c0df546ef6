"""Recipe ``embedder``: train the text–audio embedder contrastively on the corpus (resumable).

    musicrl train embedder --config configs/embedder.yaml [key=value ...]

Reads top to bottom: load train/valid clips -> cache their log features (and the frozen MiniLM
sentence embeddings of their captions) -> model -> (resume) -> loop: random 4 s crops with random
gain, symmetric InfoNCE with a learned temperature -> save ``out/model`` -> evaluate on the TEST
split through the public API (full clips, per-segment averaging): text->audio retrieval R@1/R@10,
style-matching R@10, with chance levels -> ``out/metrics.json``.

The small helpers here (feature caching, random crops with gain, LR schedule, time limit) are
reused by the ``quality`` and ``judges`` recipes.
"""

from __future__ import annotations

import hashlib
import json
import math
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file, save_file
from tqdm import tqdm

from models.embedder import EmbedderConfig, LogMelFrontend, TextAudioEmbedder, info_nce_loss, pick_device
from models.errors import InputError
from musicrl.config import dump_config
from musicrl.corpus_data import load_split_audio
from musicrl.train_state import end_step, optimizer_step, out_of_time, resume_or_start


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


# ----------------------------------------------------------------------------- shared helpers


@torch.no_grad()
def log_features(frontend: LogMelFrontend, clips: list[np.ndarray], desc: str = "features") -> list[torch.Tensor]:
    """Raw log features [C, T] (fp16, to halve memory) of every clip, computed on the CPU."""
    frontend = frontend.cpu()
    out: list[torch.Tensor] = []
    i = 0
    bar = tqdm(total=len(clips), desc=desc, unit="clip", disable=None)
    while i < len(clips):
        j = i + 1  # batch consecutive clips of equal length
        while j < len(clips) and j - i < 32 and len(clips[j]) == len(clips[i]):
            j += 1
        batch = torch.from_numpy(np.stack(clips[i:j]).astype(np.float32))
        out += list(frontend.log_features(batch).half())
        bar.update(j - i)
        i = j
    bar.close()
    return out


def crop_batch(
    feats: list[torch.Tensor], idx: list[int], frames: int, gain_db: float, g: torch.Generator
) -> torch.Tensor:
    """Random ``frames``-long crops of the chosen clips' raw log features, each with a random gain
    (a gain of x dB adds x·ln(10)/10 to log power): [B, C, frames] float32."""
    crops = []
    for i in idx:
        f = feats[i]
        if f.shape[-1] < frames:  # short clip: loop it
            f = f.repeat(1, math.ceil(frames / f.shape[-1]))
        start = int(torch.randint(0, f.shape[-1] - frames + 1, (1,), generator=g))
        crops.append(f[:, start : start + frames].float())
    x = torch.stack(crops)
    db = (torch.rand(len(idx), 1, 1, generator=g) * 2 - 1) * gain_db
    return x + db * math.log(10) / 10


def lr_at(step: int, steps: int, lr: float, warmup: int, min_ratio: float) -> float:
    """Linear warm-up then cosine decay to ``min_ratio``·lr."""
    warm = min(1.0, (step + 1) / max(1, warmup))
    progress = min(1.0, step / max(1, steps))
    return lr * warm * (min_ratio + (1 - min_ratio) * 0.5 * (1 + math.cos(math.pi * progress)))


# ----------------------------------------------------------------------------- text cache and metrics


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


def retrieval_metrics(text: torch.Tensor, audio: torch.Tensor, records: list[dict], k: int = 10) -> dict:
    """Text->audio retrieval on N matched pairs (text_i describes audio_i), unit-norm [N, D] each.

    R@1, R@k (and audio->text) with chance min(k, N)/N; style hit@k = the top k clips retrieved for
    a caption include one of the caption's clip's style (chance: 1 - C(N-m, k)/C(N, k) for m clips
    of that style), style precision@k (chance m/N); both also over the captions that name the style."""
    n = len(records)
    k = min(k, n)
    sim = text.float() @ audio.float().t()
    diag = sim.diag()
    rank_t2a = (sim > diag[:, None]).sum(1)
    rank_a2t = (sim.t() > diag[:, None]).sum(1)
    styles = np.array([r["style"] for r in records])
    top = sim.topk(k, dim=1).indices.numpy()
    same = styles[top] == styles[:, None]  # [N, k]
    m = np.array([(styles == s).sum() for s in styles])
    chance_hit = 1 - np.array([math.comb(n - mi, k) / math.comb(n, k) for mi in m])
    named = np.array(["style" in r.get("mentioned", ["style"]) for r in records])
    off = ~torch.eye(n, dtype=torch.bool)
    out = {
        "N": n,
        "R@1": float((rank_t2a < 1).float().mean()),
        f"R@{k}": float((rank_t2a < k).float().mean()),
        "chance_R@1": 1 / n,
        f"chance_R@{k}": k / n,
        "audio_to_text_R@1": float((rank_a2t < 1).float().mean()),
        f"audio_to_text_R@{k}": float((rank_a2t < k).float().mean()),
        "median_rank": float(rank_t2a.float().median() + 1),
        f"style_hit@{k}": float(same.any(1).mean()),
        f"chance_style_hit@{k}": float(chance_hit.mean()),
        f"style_precision@{k}": float(same.mean()),
        f"chance_style_precision@{k}": float((m / n).mean()),
        "cos_matched": float(diag.mean()),
        "cos_unmatched": float(sim[off].mean()) if n > 1 else float("nan"),
    }
    if named.any():
        out[f"style_hit@{k}_style_named"] = float(same[named].any(1).mean())
        out[f"chance_style_hit@{k}_style_named"] = float(chance_hit[named].mean())
        out["style_named_queries"] = int(named.sum())
    return out


@torch.no_grad()
def map_clips(fn, clips: list[np.ndarray], batch: int = 16, desc: str | None = None) -> list:
    """``fn`` on batches of clips ([B, S] tensors): equal-length groups in one call, others one by one.
    Returns the results in clip order (one per call)."""
    out = []
    for i in tqdm(range(0, len(clips), batch), desc=desc, unit="batch", disable=None if desc else True):
        group = clips[i : i + batch]
        if len({len(c) for c in group}) == 1:
            out.append(fn(torch.from_numpy(np.stack(group))))
        else:
            out += [fn(torch.from_numpy(c)[None]) for c in group]
    return out


def embed_clips(model: TextAudioEmbedder, clips: list[np.ndarray], batch: int = 16) -> torch.Tensor:
    """Full clips through the public API (per-segment averaging): [N, D] on the CPU."""
    return torch.cat([e.cpu() for e in map_clips(model.embed_audio, clips, batch)])


# ----------------------------------------------------------------------------- training


def param_groups(model: torch.nn.Module, weight_decay: float) -> list[dict]:
    """Weight decay on matrices and kernels only; none on biases, norms and the temperature (CLIP)."""
    params = [p for p in model.parameters() if p.requires_grad]
    return [
        {"params": [p for p in params if p.dim() >= 2], "weight_decay": weight_decay},
        {"params": [p for p in params if p.dim() < 2], "weight_decay": 0.0},
    ]


def build_model(cfg: Config) -> TextAudioEmbedder:
    torch.manual_seed(cfg.seed)
    return TextAudioEmbedder(cfg.model)


def main(cfg: Config) -> dict:
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    device = pick_device(cfg.device)
    cfg.out.mkdir(parents=True, exist_ok=True)
    dump_config(cfg, cfg.out / "config.yaml")
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
    sentences = sentence_cache(
        model, [r["caption"] for r in train_meta + valid_meta], cfg.out / "sentences.safetensors"
    )
    train_text = torch.stack([sentences[r["caption"]] for r in train_meta])
    valid_text = torch.stack([sentences[r["caption"]] for r in valid_meta]) if valid_meta else None

    model.to(device)
    opt = torch.optim.AdamW(param_groups(model, cfg.weight_decay), lr=cfg.lr)
    step, _, log = resume_or_start(cfg.out, {"model": model}, {"opt": opt})
    g = torch.Generator().manual_seed(cfg.seed * 1000 + step)  # a resumed run continues a fresh, seeded stream
    frames = cfg.model.frontend.frames(cfg.model.segment_s)
    batch = min(cfg.batch_size, len(feats))
    start, bar = time.time(), tqdm(total=cfg.steps, initial=step, desc="embedder", unit="step", disable=None)
    while step < cfg.steps:
        model.train()
        idx = torch.randperm(len(feats), generator=g)[:batch].tolist()
        x = model.frontend.normalise(crop_batch(feats, idx, frames, cfg.gain_db, g).to(device))
        logits = model.logits(model.project_text(train_text[idx].to(device)), model.embed_features(x))
        loss = info_nce_loss(logits)
        lr = lr_at(step, cfg.steps, cfg.lr, cfg.warmup, cfg.min_lr_ratio)
        optimizer_step(opt, loss, model.parameters(), cfg.grad_clip, lr)
        step += 1
        bar.update(1)
        if step % cfg.log_every == 0 or step == cfg.steps:
            target = torch.arange(batch, device=device)
            rec = {
                "step": step,
                "loss": loss.item(),
                "batch_t2a_acc": float((logits.argmax(1) == target).float().mean()),
                "temperature": 1 / model.logit_scale.exp().clamp(max=cfg.model.max_logit_scale).item(),
                "lr": lr,
                "elapsed_s": time.time() - start,
            }
            if valid_text is not None and (step % cfg.eval_every == 0 or step == cfg.steps):
                rec.update({f"valid_{k}": v for k, v in validate(model, valid_feats, valid_text, valid_meta).items()})
            log.write(rec)
            bar.set_postfix(loss=f"{loss.item():.3f}")
        stop = out_of_time(start, cfg.time_limit_min)
        if end_step(cfg.out, {"model": model}, {"opt": opt}, step, cfg.steps, cfg.save_every, stop):
            break
    bar.close()
    model.eval()
    model.save(cfg.out / "model", extra={"step": step, "recipe": "embedder", "corpus": str(cfg.corpus)})
    metrics = {"step": step, "params": count_params(model), **evaluate(model, cfg)}
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
    model.train()
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
