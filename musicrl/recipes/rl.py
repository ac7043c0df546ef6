"""Recipe ``rl``: MusicRL's KL-regularised REINFORCE (Cideron et al. 2024, arXiv:2402.04229).

    musicrl train rl preset=musicrl-r steps=200                                # adherence + quality
    musicrl train rl preset=musicrl-u reward_model=runs/rm/model               # the votes' reward model
    musicrl train rl preset=musicrl-ru model=runs/rl_r/best reward_model=...   # R, then U, KL against R
    torchrun --nproc-per-node 4 -m musicrl.cli train rl preset=musicrl-r ...   # same run, 4 processes

Objective (MusicRL, arXiv:2402.04229), per sampled sequence y of the delayed codes, t its valid steps::

    J = (1 − α) Σ_t log π(a_t | s_t) (G_t − V(s_t))  −  α Σ_t Σ_{a ∈ codebook} π(a|s_t) log(π(a|s_t) / π_0(a|s_t))

G_t = r(x, y) (one sequence-level reward, undiscounted, for every step); the KL is exact over the whole
codebook at every step (``losses.kl_regularised_reinforce_loss``). Baselines: ``value`` — a learned
V(s_t) whose trunk is a copy of the LM (``value_model.ValueModel``), fitted by MSE; ``loo`` — the mean
reward of the prompt's other samples (needs samples_per_prompt >= 2). Sampling: the policy alone (no
guidance: REINFORCE must sample the distribution it differentiates), temperature 0.99, full codebook.

Rewards are any mix of ``musicrl.rewards`` (``adherence``, ``quality``, ``diversity``, ``preference``:
weights in the config); the judges are never a training reward (they measure reward hacking in the
validation log). Presets fix the mix: ``musicrl-r`` adherence + quality (MusicRL-R: MuLan + quality),
``musicrl-u`` the preference reward model, ``musicrl-ru`` = U started from a musicrl-r checkpoint with
the KL measured against that checkpoint (MusicRL's sequential RU, which beat joint training).
``kl_anchor=ema`` regularises toward the policy's own EMA instead (WARP, μ = ``ema_rate``); the KL to
π_0 is still measured and is what the KL budget reads.

Validation every ``eval_every`` steps on held-out prompts (the corpus's valid split, fixed seeds): every
reward component, the exact KL to π_0 on the policy's own samples and, where the judges are installed,
the fraction of the prompts' stated attributes they hear (held out: never trained on). The best
checkpoint (``out/best``) has the highest validation reward among those with KL ≤ ``kl_budget``
(0 = no budget); ``out/model`` is the last. Checkpoints carry lineage: init, reference, preset,
reward weights, the reward model's directory, hash and the votes it was trained on.

Distributed: prompts and seeds are drawn for the whole run; each rank samples and scores its share of
the prompts (a prompt's G samples stay on one rank, so leave-one-out is local); DDP averages gradients.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, replace
from functools import partial
from pathlib import Path

import torch
from torch import nn

from models.errors import InputError
from models.generator import MusicGenerator
from models.lm import AudioLM
from models.module_io import read_header
from models.registry import load_generator
from models.sampling import SamplingParams
from musicrl import distributed, rewards
from musicrl.advantages import leave_one_out_advantages
from musicrl.config import to_dict
from musicrl.losses import kl_regularised_reinforce_loss, kl_to_reference
from musicrl.policy_training import (
    Validator,
    best_summary,
    load_judges,
    reward_from,
    save_last,
    train,
    training_prompts,
    validate_keeping_best,
    validation_records,
)
from musicrl.rollouts import draw_batch, sample_rollout, score_rollout
from musicrl.train_state import JsonlLog, optimizer_step, resume_or_start, start_run
from musicrl.value_model import ValueModel, ema_update

PRESETS: dict[str, dict[str, float]] = {
    "musicrl-r": {"adherence": 1.0, "quality": 1.0},
    "musicrl-u": {"preference": 1.0},
    "musicrl-ru": {"preference": 1.0},
}
BASELINES = ("value", "loo")
ANCHORS = ("reference", "ema")


@dataclass
class Config:
    preset: str = ""  # musicrl-r | musicrl-u | musicrl-ru: fixes the reward weights below (leave them 0)
    model: str = "default"  # the policy's init (musicrl-ru: a musicrl-r checkpoint)
    reference: str = ""  # π_0 of the KL and of the KL budget; "" = model
    reward_model: str = ""  # a preference reward model directory (``musicrl train reward-model``)
    adherence: float = 0.0  # reward weights: r = Σ weight · reward
    quality: float = 0.0
    diversity: float = 0.0
    preference: float = 0.0
    corpus: Path = Path("data/corpus")  # prompts: captions of its train split; validation: its valid split
    prompts: Path | None = None  # or a text file of training prompts, one per line
    out: Path = Path("runs/rl")
    steps: int = 200
    prompts_per_step: int = 4  # the global batch: divides by the number of processes
    samples_per_prompt: int = 2  # G (>= 2 for the leave-one-out baseline and the diversity reward)
    duration: float = 4.0
    temperature: float = 0.99
    alpha: float = 0.1  # KL weight α (MusicRL does not publish it)
    baseline: str = "value"  # value | loo
    value_coef: float = 1.0
    value_lr: float = 1e-4
    kl_anchor: str = "reference"  # reference | ema (WARP: KL toward the policy's EMA)
    ema_rate: float = 0.01
    lr: float = 1e-5
    grad_clip: float = 1.0
    eval_every: int = 20  # validation (and the best checkpoint) every N steps and at the end
    eval_prompts: int = 8
    kl_budget: float = 0.0  # best checkpoint only among validations with KL to π_0 <= this (0 = any)
    embedder: str = ""  # scorers; "" = the shipped ones
    quality_model: str = ""
    judges: str = ""  # held-out measure in the validation log; "" = the shipped judges, "none" = off
    log_every: int = 5
    save_every: int = 20
    time_limit_min: float = 0.0
    seed: int = 0
    threads: int = 0
    device: str = "cpu"


@dataclass
class State:
    cfg: Config
    dist: distributed.Dist
    gen: MusicGenerator  # gen.lm is the policy, trained in place
    policy: nn.Module  # gen.lm or its DDP wrapper
    reference: AudioLM  # frozen π_0
    anchor: AudioLM  # what the loss's KL points to: the reference, or the policy's EMA
    value: nn.Module | None  # ValueModel (or its DDP wrapper) when baseline = value
    reward: rewards.WeightedReward
    reward_info: dict  # the preference model's directory, hash and lineage (for the checkpoints')
    validator: Validator
    opt: torch.optim.Optimizer
    captions: list[str]
    step: int
    best: dict  # {"step", "reward", "kl"} of out/best
    log: JsonlLog
    val_log: JsonlLog  # validation.jsonl: one record per validation
    modules: dict[str, nn.Module]  # what the train state holds: lm, value (unwrapped), ema


@dataclass
class Batch:
    """This rank's share of a step: prompts (B / world) and one seed per row (B / world × G)."""

    prompts: list[str]
    seeds: list[int]


def resolve(cfg: Config) -> Config:
    """The config with its preset applied and its inputs checked (InputError, before anything is written)."""
    weights = {name: getattr(cfg, name) for name in rewards.TRAINING_REWARDS}
    if cfg.preset:
        if cfg.preset not in PRESETS:
            raise InputError(f"unknown preset {cfg.preset!r}; choose from {', '.join(PRESETS)}")
        if any(weights.values()):
            raise InputError(f"preset {cfg.preset} sets the reward weights; drop the explicit weights")
        cfg = replace(cfg, **PRESETS[cfg.preset])
        weights = {name: getattr(cfg, name) for name in rewards.TRAINING_REWARDS}
    if not any(weights.values()):
        raise InputError("no reward: give a preset (musicrl-r, musicrl-u, musicrl-ru) or reward weights")
    if any(w < 0 for w in weights.values()):
        raise InputError("reward weights must be >= 0")
    if cfg.preference and not cfg.reward_model:
        raise InputError("the preference reward needs reward_model=DIR (musicrl train reward-model)")
    if cfg.reward_model and not Path(cfg.reward_model).is_dir():
        raise InputError(f"reward_model {cfg.reward_model} is not a directory")
    if cfg.preset == "musicrl-ru":
        if checkpoint_lineage(cfg.model).get("preset") != "musicrl-r":
            raise InputError("musicrl-ru continues a musicrl-r checkpoint: set model=<its directory>")
    if cfg.baseline not in BASELINES:
        raise InputError(f"baseline must be one of {', '.join(BASELINES)}, got {cfg.baseline!r}")
    if cfg.kl_anchor not in ANCHORS:
        raise InputError(f"kl_anchor must be one of {', '.join(ANCHORS)}, got {cfg.kl_anchor!r}")
    if (cfg.baseline == "loo" or cfg.diversity) and cfg.samples_per_prompt < 2:
        raise InputError("the leave-one-out baseline and the diversity reward need samples_per_prompt >= 2")
    if not 0.0 <= cfg.alpha <= 1.0:
        raise InputError(f"alpha must lie in [0, 1], got {cfg.alpha}")
    if not 0.0 < cfg.temperature:
        raise InputError(f"temperature must be > 0, got {cfg.temperature}")
    if cfg.steps < 1 or cfg.prompts_per_step < 1 or cfg.eval_every < 1 or cfg.eval_prompts < 1:
        raise InputError("steps, prompts_per_step, eval_every and eval_prompts must be >= 1")
    return cfg


def checkpoint_lineage(model: str) -> dict:
    """The lineage recorded in a checkpoint directory ({} for built-in names and foreign formats)."""
    header = Path(model) / "musicrl.json"
    if not header.is_file():
        return {}
    try:
        return read_header(header, "generator").lineage
    except (InputError, ValueError, KeyError):
        return {}


def setup(cfg: Config) -> State:
    # every input is checked (and every model loaded) before the run directory is written to
    cfg = resolve(cfg)
    captions = training_prompts(cfg)
    gen = load_generator(cfg.model)
    reference_gen = gen if not cfg.reference or cfg.reference == cfg.model else load_generator(cfg.reference)
    if reference_gen.lm.cfg != gen.lm.cfg:
        raise InputError(f"reference {cfg.reference} has another LM architecture than {cfg.model}")
    reward, reward_info = reward_from(cfg, gen.sample_rate)
    validator = Validator(reward, validation_records(cfg), load_judges(cfg, gen.sample_rate), cfg.duration,
                          cfg.temperature, cfg.samples_per_prompt)
    dist = start_run(cfg)
    torch.manual_seed(cfg.seed + dist.rank)
    for part in (gen.conditioner, gen.lm, gen.codec):  # the sampling stack on this process's device
        if isinstance(part, nn.Module):
            part.to(dist.device)
    reference = copy.deepcopy(reference_gen.lm).to(dist.device).eval().requires_grad_(False)
    anchor = reference if cfg.kl_anchor == "reference" else copy.deepcopy(gen.lm).eval().requires_grad_(False)
    value = ValueModel.from_lm(gen.lm) if cfg.baseline == "value" else None
    groups = [{"params": [p for p in gen.lm.parameters() if p.requires_grad], "lr": cfg.lr}]
    if value is not None:
        groups.append({"params": [p for p in value.parameters() if p.requires_grad], "lr": cfg.value_lr})
    opt = torch.optim.AdamW(groups, weight_decay=0.0)
    modules = _modules(gen.lm, value, anchor if cfg.kl_anchor == "ema" else None)
    step, extra, log = resume_or_start(cfg.out, modules, {"opt": opt}, dist)
    policy = distributed.wrap(gen.lm, dist)
    value_fn = distributed.wrap(value, dist) if value is not None else None
    best = extra.get("best", {}) if isinstance(extra, dict) else {}
    val_log = JsonlLog(cfg.out / "validation.jsonl", enabled=dist.is_main)
    val_log.truncate_after(step)
    return State(cfg, dist, gen, policy, reference, anchor, value_fn, reward, reward_info, validator, opt,
                 captions, step, best, log, val_log, modules)


def _modules(lm: nn.Module, value: nn.Module | None, ema: nn.Module | None) -> dict[str, nn.Module]:
    modules = {"lm": lm}
    if value is not None:
        modules["value"] = value
    if ema is not None:
        modules["ema"] = ema
    return modules


def next_batch(state: State) -> Batch:
    """The global batch of step ``state.step`` depends on (seed, step) alone; this rank takes its share."""
    cfg = state.cfg
    return Batch(*draw_batch(state.captions, cfg.seed, state.step, cfg.prompts_per_step, cfg.samples_per_prompt,
                             state.dist.shard))


def step(state: State, batch: Batch) -> dict[str, float]:
    """One update: on-policy samples at temperature 0.99, rewards, exact KL, value (or LOO) baseline."""
    cfg, gen = state.cfg, state.gen
    params = SamplingParams(cfg=1.0, temperature=cfg.temperature, top_k=0)
    rollout = sample_rollout(gen, batch.prompts, batch.seeds, cfg.duration, params, cfg.samples_per_prompt)
    audio = gen.decode(rollout.codes)[:, 0].cpu()
    parts = state.reward.components(rollout.prompts, audio, rollout.codes.cpu())
    reward = rewards.mix_rewards(parts, state.reward.weights).to(rollout.codes.device)
    gen.lm.eval()  # the loss sees the policy that sampled (no dropout)
    rollout = score_rollout(rollout, policy=state.policy, reference=state.reference)
    anchor_logits = rollout.reference_logits
    if state.anchor is not state.reference:
        with torch.no_grad():
            anchor_logits = state.anchor(rollout.inputs, rollout.text)
    if state.value is not None:
        if state.step == 0:  # V starts at the first batch's mean reward (ValueModel's docstring)
            state.modules["value"].head.bias.data.fill_(state.dist.mean({"r": reward.mean().item()})["r"])
        values, value_coef = state.value(rollout.inputs, rollout.text), cfg.value_coef
    else:
        baseline = reward - leave_one_out_advantages(reward, cfg.samples_per_prompt)
        values, value_coef = baseline[:, None, None].expand(rollout.mask.shape).float(), 0.0
    out = kl_regularised_reinforce_loss(rollout.policy_logits, anchor_logits, rollout.targets, reward, values,
                                        rollout.mask, cfg.alpha, value_coef)
    params_ = [p for group in state.opt.param_groups for p in group["params"]]
    grad_norm = optimizer_step(state.opt, out.loss, params_, cfg.grad_clip)
    if cfg.kl_anchor == "ema":
        ema_update(state.anchor, gen.lm, cfg.ema_rate)
    with torch.no_grad():
        kl_ref = kl_to_reference(rollout.policy_logits.detach(), rollout.reference_logits, rollout.mask)
    metrics = {"loss": out.loss.item(), "reward": reward.mean().item(), "kl": kl_ref.mean().item(),
               "kl_anchor": out.kl.item(), "pg": out.policy_loss.item(), "value_loss": out.value_loss.item(),
               "adv_abs": out.advantages.abs().sum().item() / rollout.mask.sum().item(), "grad_norm": grad_norm}
    metrics.update({f"reward_{name}": value.mean().item() for name, value in parts.items()})
    return metrics


def _lineage_of(state: State) -> dict:
    cfg = state.cfg
    return {"parents": [state.gen.checkpoint_hash], "recipe": "rl", "preset": cfg.preset or None,
            "step": state.step, "init": cfg.model, "reference": cfg.reference or cfg.model,
            "rewards": dict(state.reward.weights), **state.reward_info, "config": to_dict(cfg)}


def main(cfg: Config) -> dict:
    state = setup(cfg)
    train("rl", state, step, next_batch, partial(validate_keeping_best, lineage_of=_lineage_of),
          partial(save_last, lineage_of=_lineage_of))
    return best_summary(state)
