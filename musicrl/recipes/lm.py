"""Recipe ``lm``: train the MusicGen-architecture LM on pre-tokenised corpus clips (resumable).

    musicrl train lm --config configs/lm.yaml [key=value ...]

Teacher forcing on the delay pattern, cross-entropy over real (non-padding) positions, condition
dropout (the null condition for a fraction of rows, so classifier-free guidance has a meaningful
unconditional branch). Validation reports NLL per codebook with the true and the null condition:
their gap is how much the model uses the text. The best checkpoint (validation NLL) is exported as
a ``musicrl`` checkpoint (LM + MiniLM conditioner reference + spectral codec) when ``codec`` is set.
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.nn.functional as F
from safetensors.torch import save_file
from tqdm import tqdm

from models.delay import build_delayed, delay_valid_mask, lm_inputs
from models.lm import AudioLM, LMConfig, TextStates
from musicrl.config import dump_config, to_dict
from musicrl.lm_data import TokenData
from musicrl.train_state import StepBudget, end_step, optimizer_step, out_of_time, resume_or_start


def default_lm() -> LMConfig:
    return LMConfig(
        num_codebooks=4,
        cardinality=256,
        dim=384,
        num_layers=8,
        num_heads=6,
        ffn_dim=1536,
        cond_dim=384,
        max_positions=512,
        dropout=0.1,
    )


@dataclass
class Config:
    data: Path = Path("data/lm_tokens")
    out: Path = Path("runs/lm")
    lm: LMConfig = field(default_factory=default_lm)
    steps: int = 6000
    batch_size: int = 32
    lr: float = 6e-4
    min_lr_ratio: float = 0.1
    warmup: int = 200
    weight_decay: float = 0.05
    grad_clip: float = 1.0
    cond_dropout: float = 0.3
    eval_every: int = 500
    eval_batches: int = 8
    log_every: int = 25
    save_every: int = 500
    amp: bool = True  # bf16 autocast on CUDA (fp32 on CPU: bf16 matmuls are slow there)
    time_limit_min: float = 0.0
    time_budget_min: float = 0.0  # > 0: after 30 timed steps, set `steps` so training ends within this budget
    seed: int = 0
    device: str = "auto"
    codec: str = ""  # spectral codec dir: export a full musicrl checkpoint at the end
    max_duration: float = 8.0


def masked_cross_entropy(logits: torch.Tensor, targets: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    """Per-codebook mean NLL over valid positions.

    Args:
        logits: [B, K, S, V]; targets: [B, K, S]; valid: [K, S] bool.
    Returns:
        [K] mean negative log-likelihood per codebook (nats).
    """
    targets = torch.where(valid[None], targets, 0)  # padding positions hold the special id V; weighted 0 below
    nll = F.cross_entropy(logits.float().permute(0, 3, 1, 2), targets, reduction="none")  # [B, K, S]
    w = valid[None].float().expand_as(nll)
    return (nll * w).sum(dim=(0, 2)) / w.sum(dim=(0, 2))


def drop_condition(text: TextStates, p: float, g: torch.Generator) -> TextStates:
    """Condition dropout: each row becomes the null condition (all-False mask) with probability p."""
    keep = (torch.rand(text.mask.shape[0], generator=g) >= p).to(text.mask.device)
    return TextStates(text.states, text.mask & keep[:, None])


def lr_at(cfg: Config, step: int) -> float:
    warm = min(1.0, (step + 1) / cfg.warmup)
    progress = min(1.0, step / max(1, cfg.steps))
    return cfg.lr * warm * (cfg.min_lr_ratio + (1 - cfg.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * progress)))


def lm_loss(lm: AudioLM, codes: torch.Tensor, text: TextStates) -> torch.Tensor:
    """codes [B, K, T] -> per-codebook NLL [K] of teacher-forced prediction."""
    special = lm.cfg.special_token
    delayed = build_delayed(codes, special)
    logits = lm(lm_inputs(delayed, special), text)
    valid = delay_valid_mask(codes.shape[1], delayed.shape[-1], device=codes.device)
    return masked_cross_entropy(logits, delayed, valid)


@torch.no_grad()
def evaluate(lm: AudioLM, data: TokenData, indices: list[int], cfg: Config, device, autocast) -> dict:
    """Validation NLL per codebook with the true and with the null condition."""
    lm.eval()
    true_nll, null_nll, n = torch.zeros(cfg.lm.num_codebooks), torch.zeros(cfg.lm.num_codebooks), 0
    for start in range(0, min(len(indices), cfg.eval_batches * cfg.batch_size), cfg.batch_size):
        idx = indices[start : start + cfg.batch_size]
        codes = data.codes[idx].to(device)
        text = data.text_states(idx, device)
        null = TextStates(text.states, torch.zeros_like(text.mask))
        with autocast():
            true_nll += lm_loss(lm, codes, text).float().cpu() * len(idx)
            null_nll += lm_loss(lm, codes, null).float().cpu() * len(idx)
        n += len(idx)
    lm.train()
    true_nll, null_nll = true_nll / n, null_nll / n
    return {
        "val_nll": float(true_nll.mean()),
        "val_nll_per_codebook": [round(float(x), 4) for x in true_nll],
        "val_nll_null": float(null_nll.mean()),
        "val_null_minus_true": float((null_nll - true_nll).mean()),
        "val_clips": n,
    }


def export(cfg: Config, lm: AudioLM, metrics: dict, step: int) -> None:
    """Weights in fp16 safetensors shards of <= 15 MiB (so they travel back from a GPU machine) and,
    when a codec is given, a full musicrl checkpoint at out/model."""
    best = cfg.out / "best"
    best.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().cpu().half().contiguous() for k, v in lm.state_dict().items()}
    limit, shard, size, n = 15 * 2**20, {}, 0, 0
    for key, value in state.items():
        nbytes = value.numel() * value.element_size()
        if shard and size + nbytes > limit:  # flush before a shard would pass the limit
            save_file(shard, str(best / f"lm-{n:02d}.safetensors"))
            shard, size, n = {}, 0, n + 1
        shard[key] = value
        size += nbytes
    if shard:
        save_file(shard, str(best / f"lm-{n:02d}.safetensors"))
    (best / "lm.json").write_text(
        json.dumps({"lm": cfg.lm.to_dict(), "step": step, "metrics": metrics, "config": to_dict(cfg)}, indent=2)
    )
    if cfg.codec:
        from musicrl.default_model import assemble_default

        assemble_default(best, Path(cfg.codec), cfg.out / "model", cfg.max_duration)


def main(cfg: Config) -> dict:
    device = torch.device(
        "cuda"
        if cfg.device == "auto" and torch.cuda.is_available()
        else ("cpu" if cfg.device == "auto" else cfg.device)
    )
    use_amp = cfg.amp and device.type == "cuda"
    autocast = lambda: torch.autocast(device.type, dtype=torch.bfloat16, enabled=use_amp)  # noqa: E731
    cfg.out.mkdir(parents=True, exist_ok=True)
    dump_config(cfg, cfg.out / "config.yaml")
    torch.manual_seed(cfg.seed)
    data = TokenData.load(cfg.data)
    train_idx, val_idx = data.split("train"), data.split("valid")
    lm = AudioLM(cfg.lm).to(device)
    decay = [p for n, p in lm.named_parameters() if p.dim() >= 2 and "embeddings" not in n]
    no_decay = [p for n, p in lm.named_parameters() if not (p.dim() >= 2 and "embeddings" not in n)]
    opt = torch.optim.AdamW(
        [{"params": decay, "weight_decay": cfg.weight_decay}, {"params": no_decay, "weight_decay": 0.0}],
        lr=cfg.lr,
        betas=(0.9, 0.95),
        fused=device.type == "cuda",
    )
    step, extra, log = resume_or_start(cfg.out, {"lm": lm}, {"opt": opt})
    best = extra.get("best", {"val_nll": float("inf")})
    g = torch.Generator().manual_seed(cfg.seed * 7919 + step)
    print(
        f"LM {lm.num_parameters / 1e6:.1f}M parameters on {device}; {len(train_idx)} train / {len(val_idx)} valid clips"
    )
    start, bar = time.time(), tqdm(total=cfg.steps, initial=step, desc="lm", unit="step", disable=None)
    budget = StepBudget(cfg.time_budget_min, sync=torch.cuda.synchronize if device.type == "cuda" else None)
    lm.train()
    while step < cfg.steps:
        idx = torch.randint(0, len(train_idx), (cfg.batch_size,), generator=g).tolist()
        idx = [train_idx[i] for i in idx]
        codes = data.codes[idx].to(device, non_blocking=True)
        text = drop_condition(data.text_states(idx, device), cfg.cond_dropout, g)
        with autocast():
            nll = lm_loss(lm, codes, text)
            loss = nll.mean()
        grad_norm = optimizer_step(opt, loss, lm.parameters(), cfg.grad_clip, lr_at(cfg, step))
        step += 1
        bar.update(1)
        cfg.steps = bar.total = budget.update(step, cfg.steps)
        if step % cfg.log_every == 0:
            log.write(
                {
                    "step": step,
                    "loss": loss.item(),
                    "nll_per_codebook": [round(x, 4) for x in nll.tolist()],
                    "grad_norm": float(grad_norm),
                    "lr": lr_at(cfg, step - 1),
                    "elapsed_s": time.time() - start,
                }
            )
            bar.set_postfix(loss=f"{loss.item():.3f}")
        stop = out_of_time(start, cfg.time_limit_min)
        if step % cfg.eval_every == 0 or step == cfg.steps or stop:
            metrics = {"step": step, **evaluate(lm, data, val_idx, cfg, device, autocast)}
            log.write(metrics)
            print(json.dumps(metrics))
            if metrics["val_nll"] < best["val_nll"]:
                best = metrics
                export(cfg, lm, metrics, step)
        if end_step(cfg.out, {"lm": lm}, {"opt": opt}, step, cfg.steps, cfg.save_every, stop, {"best": best}):
            break
    bar.close()
    (cfg.out / "metrics.json").write_text(
        json.dumps({"best": best, "last_step": step, "params": lm.num_parameters}, indent=2)
    )
    return best
