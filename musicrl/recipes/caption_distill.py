"""Recipe ``caption-distill``: teach a model to read free phrasing as it reads its template captions.

    musicrl train caption-distill --config configs/caption_distill.yaml [key=value ...]
    torchrun --nproc-per-node 4 -m musicrl.cli train caption-distill --config ...   # same run, 4 processes

A model trained on template captions ("A fast techno track at 138 BPM in F# minor") follows them, but
a visitor writes "a sweaty 6am warehouse set, roughly 138 beats per minute, dark minor-key synths".
Finetuning on new clips with free captions moves the model toward those clips and away from what it
followed (docs/MODELS.md, issue 15). This recipe moves nothing but how the text is read: for a clip of
the token data, ``phrasing.caption_pair`` writes a free caption and a template caption stating the same
labels; the frozen initial model, conditioned on the template, predicts the clip's next tokens (teacher
forcing); the student, conditioned on the free caption, learns to predict the same distribution
(forward KL per token, exact over the codebook). Only LoRA adapters on the cross-attention's query and
key/value projections train, so the null condition (no text: no cross-attention) is exactly the
teacher's, and classifier-free guidance amplifies the same direction it amplified for templates. A
share of pairs (``template_share``) give the student another template of the same labels, which keeps
template captions where they were.

The teacher sees each clip, not its own samples: the contexts are the clips the captions describe
(the first ``frames`` frames, where the text matters most), so the pair never disagrees with its audio.
Validation: the same divergence on fixed pairs of validation clips, for free and template pairs (the
initial model's values are logged before the first step); the best export is out/model (merged
weights, a musicrl checkpoint with the init's conditioner and codec) and out/adapter.

Shape: ``setup`` -> ``next_batch`` (clip indices and caption pairs from (seed, step), this rank's
share) -> ``step`` (one update) -> ``main`` (loop, validation and export on rank 0, the train state).
"""

from __future__ import annotations

import copy
import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from models.checkpoint import save_checkpoint
from models.delay import build_delayed, delay_valid_mask, lm_inputs
from models.errors import InputError
from models.generator import MusicGenerator
from models.lm import AudioLM, TextStates
from models.registry import load_generator
from musicrl import distributed
from musicrl.config import to_dict
from musicrl.corpus.phrasing import caption_pair
from musicrl.lm_data import TokenData, check_data_model
from musicrl.lora import AdapterWeights, LoraSettings, apply_lora, merged_state, save_adapter
from musicrl.losses import masked_mean, per_token_divergence
from musicrl.train_state import JsonlLog, Loop, lr_at, optimizer_step, resume_or_start, start_run

DIVERGENCES = ("forward_kl", "reverse_kl", "gjsd")  # musicrl.losses.per_token_divergence
NEEDED_LABELS = ("style", "tempo", "key", "mode", "lead_instrument", "drums", "mood", "energy")


def text_adapter() -> LoraSettings:
    return LoraSettings(rank=16, alpha=32.0, dropout=0.0, target_modules=["q", "kv"])


@dataclass
class Config:
    model: str = "default"  # the init: the student starts here, the frozen teacher stays here
    data: Path = Path("data/lm_tokens_mix")  # token data (musicrl train lm-data) with every clip's labels
    out: Path = Path("runs/caption_distill")
    lora: LoraSettings = field(default_factory=text_adapter)  # target q/kv: the text's way in
    steps: int = 400
    batch_size: int = 16  # the global batch of caption pairs
    frames: int = 200  # teacher-forced frames of each clip (from its start)
    template_share: float = 0.25  # pairs whose student caption is another template
    divergence: str = "forward_kl"  # KL(teacher || student); or reverse_kl, gjsd
    lr: float = 5e-4
    min_lr_ratio: float = 0.1
    warmup: int = 20
    grad_clip: float = 1.0
    val_pairs: int = 64  # fixed validation pairs (free and template each)
    eval_every: int = 50
    log_every: int = 5
    save_every: int = 25
    keep_every: int = 100  # > 0: also keep out/model_step{N} every N steps (to choose by a prompt set)
    time_limit_min: float = 0.0
    seed: int = 0
    device: str = "auto"
    threads: int = 0  # > 0: CPU threads


@dataclass
class State:
    cfg: Config
    dist: distributed.Dist
    init: MusicGenerator  # its conditioner encodes both captions; its LM is the frozen teacher
    teacher: AudioLM
    student: AudioLM  # a copy of the init's LM with adapters
    policy: torch.nn.Module  # student, or its DDP wrapper
    opt: torch.optim.Optimizer
    data: TokenData
    train_idx: list[int]
    val_idx: list[int]
    step: int
    log: JsonlLog
    best: dict
    first_val: dict | None
    last_val: dict | None = None


@dataclass
class Batch:
    """This rank's share: clip codes [b, K, frames] and the conditions of the student and the teacher."""

    codes: torch.Tensor
    asked: TextStates
    template: TextStates


def _check_labels(data: TokenData, path: Path) -> None:
    attributes = data.meta.get("attributes")
    if not attributes or any(not all(k in a for k in NEEDED_LABELS) for a in attributes):
        raise InputError(f"{path} lacks clip labels ({', '.join(NEEDED_LABELS)}); tokenise a corpus built by "
                         f"`musicrl data build` with `musicrl train lm-data`")


def setup(cfg: Config) -> State:
    if not cfg.lora.rank:
        raise InputError("caption-distill trains adapters only: lora.rank must be > 0")
    if cfg.divergence not in DIVERGENCES:
        raise InputError(f"divergence must be one of {', '.join(DIVERGENCES)}, got {cfg.divergence!r}")
    if not 0.0 <= cfg.template_share < 1.0:
        raise InputError(f"template_share must be in [0, 1), got {cfg.template_share}")
    data = TokenData.load(cfg.data)
    _check_labels(data, cfg.data)
    init = load_generator(cfg.model)
    check_data_model(data.meta, init, cfg.data)
    if not data.split("train") or not data.split("valid"):
        raise InputError(f"{cfg.data} needs train and valid clips")
    if not 0 < cfg.frames <= data.codes.shape[-1]:
        raise InputError(f"frames must be in 1..{data.codes.shape[-1]} (the clips' length), got {cfg.frames}")
    dist = start_run(cfg)
    torch.manual_seed(cfg.seed + dist.rank)
    teacher = init.lm.to(dist.device).eval().requires_grad_(False)
    student = apply_lora(copy.deepcopy(teacher), cfg.lora).eval()  # dropout off: match, not regularise
    opt = torch.optim.AdamW([p for p in student.parameters() if p.requires_grad], lr=cfg.lr, betas=(0.9, 0.95),
                            weight_decay=0.0)
    step, extra, log = resume_or_start(cfg.out, {"adapter": AdapterWeights(student)}, {"opt": opt}, dist)
    return State(cfg, dist, init, teacher, student, distributed.wrap(student, dist), opt, data,
                 data.split("train"), data.split("valid"), step, log,
                 extra.get("best", {"val_kl": float("inf")}), extra.get("first_val"), extra.get("last_val"))


Pair = tuple[str, str, list[str]]  # (asked caption, template caption, mentioned labels)


def draw_pairs(state: State, idx: list[int], seed: list[int], template_share: float) -> list[Pair]:
    """A caption pair per clip of ``idx``; pair j depends on (``seed``, j) alone."""
    attributes = state.data.meta["attributes"]
    return [caption_pair(attributes[i], np.random.default_rng([*seed, j]), template_share) for j, i in enumerate(idx)]


def make_batch(state: State, idx: list[int], pairs: list[Pair]) -> Batch:
    """Clips ``idx`` with their caption pairs, both captions encoded by the init's conditioner."""
    device, n = state.dist.device, len(idx)
    text = state.init.conditioner.encode([a for a, _, _ in pairs] + [t for _, t, _ in pairs])
    states, mask = text.states.to(device), text.mask.to(device)
    codes = state.data.codes[idx, :, : state.cfg.frames].to(device)
    return Batch(codes, TextStates(states[:n], mask[:n]), TextStates(states[n:], mask[n:]))


def next_batch(state: State) -> Batch:
    """The global batch of step ``state.step`` depends on (seed, step) alone; this rank takes its share."""
    cfg = state.cfg
    rng = np.random.default_rng([cfg.seed, state.step])
    idx = [state.train_idx[i] for i in rng.integers(0, len(state.train_idx), cfg.batch_size)]
    pairs = draw_pairs(state, idx, [cfg.seed, state.step, 1], cfg.template_share)
    rows = state.dist.shard(list(range(cfg.batch_size)), "batch_size")
    return make_batch(state, [idx[j] for j in rows], [pairs[j] for j in rows])


def divergence(student, teacher: AudioLM, batch: Batch, kind: str) -> torch.Tensor:
    """Mean per-token divergence of student(asked) from teacher(template) over the valid positions of the clips'
    delay pattern: codes [B, K, T] -> logits [B, K, T + K - 1, V] each -> a scalar (gradient to the student only)."""
    special = teacher.cfg.special_token
    delayed = build_delayed(batch.codes, special)
    inputs = lm_inputs(delayed, special)
    with torch.no_grad():
        target = teacher(inputs, batch.template)
    logits = student(inputs, batch.asked)
    valid = delay_valid_mask(batch.codes.shape[1], delayed.shape[-1], device=batch.codes.device)
    return masked_mean(per_token_divergence(logits, target, kind), valid[None].expand(logits.shape[:3]))


def step(state: State, batch: Batch) -> dict:
    """One update of the adapters at the scheduled learning rate."""
    cfg = state.cfg
    lr = lr_at(state.step, cfg.steps, cfg.lr, cfg.warmup, cfg.min_lr_ratio)
    loss = divergence(state.policy, state.teacher, batch, cfg.divergence)
    trainable = [p for p in state.student.parameters() if p.requires_grad]
    grad_norm = optimizer_step(state.opt, loss, trainable, cfg.grad_clip, lr)
    return {"loss": loss.item(), "grad_norm": grad_norm, "lr": lr, "rank_rows": batch.codes.shape[0]}


@torch.no_grad()
def validate(state: State) -> dict:
    """The divergence on fixed validation pairs: free captions (``val_kl``, what is trained) and template
    captions (``val_kl_template``: a template against another of the same labels, what must stay)."""
    cfg, out = state.cfg, {}
    idx = state.val_idx[: cfg.val_pairs]
    for name, share in (("val_kl", 0.0), ("val_kl_template", 1.0)):
        pairs, total = draw_pairs(state, idx, [cfg.seed, 999_999_999], share), 0.0
        for start in range(0, len(idx), cfg.batch_size):
            part = slice(start, start + cfg.batch_size)
            batch = make_batch(state, idx[part], pairs[part])
            total += divergence(state.student, state.teacher, batch, cfg.divergence).item() * len(idx[part])
        out[name] = total / len(idx)
    return {"step": state.step, **out, "val_pairs": len(idx)}


def export(state: State, metrics: dict, out: Path) -> None:
    """A musicrl checkpoint at ``out``: the merged student with the init's conditioner and codec."""
    cfg, init = state.cfg, state.init
    lineage = {"parents": [init.checkpoint_hash], "step": state.step, "recipe": "caption-distill",
               "metrics": metrics, "init": cfg.model, "lora": to_dict(cfg.lora), "config": to_dict(cfg)}
    save_checkpoint(init.with_lm_weights(merged_state(state.student), str(out)), out, lineage=lineage)


def main(cfg: Config) -> dict:
    state = setup(cfg)
    dist = state.dist
    if dist.is_main:
        trained = sum(p.numel() for p in state.student.parameters() if p.requires_grad)
        print(f"caption-distill: {trained / 1e6:.3f}M adapter parameters on {dist.device} x {dist.world}; "
              f"{len(state.train_idx)} train / {len(state.val_idx)} valid clips")

    def run_validation() -> dict:
        val = validate(state)
        state.log.write(val)
        print(json.dumps(val))
        return val

    if state.first_val is None and dist.is_main:
        state.first_val = run_validation()  # the init: the gap the run closes

    def before_save(stop: bool) -> dict:
        if dist.is_main and (state.step % cfg.eval_every == 0 or state.step == cfg.steps or stop):
            val = state.last_val = run_validation()
            if val["val_kl"] < state.best["val_kl"]:
                state.best = val
                export(state, val, cfg.out / "model")
                extra = {"step": state.step, "metrics": val, "init": cfg.model}
                save_adapter(state.student, cfg.lora, cfg.out / "adapter", state.init.name,
                             state.init.checkpoint_hash, extra)
            if cfg.keep_every and state.step % cfg.keep_every == 0:
                export(state, val, cfg.out / f"model_step{state.step}")
        return {"best": state.best, "first_val": state.first_val, "last_val": state.last_val}

    modules = {"adapter": AdapterWeights(state.student)}
    with Loop("caption-distill", cfg, state.log, dist, modules, {"opt": state.opt}, state.step) as loop:
        while state.step < cfg.steps:
            metrics = step(state, next_batch(state))
            state.step += 1
            if loop.after_step(state.step, metrics, before_save=before_save):
                break
        summary = {"best": state.best, "first_val": state.first_val, "last_val": state.last_val,
                   "last_step": state.step, "model": str(cfg.out / "model")}
        if dist.is_main:
            (cfg.out / "metrics.json").write_text(json.dumps(summary, indent=2))
    return summary
