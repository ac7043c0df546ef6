"""Recipe ``bond``: J-BOND, Best-of-N distillation with a Jeffreys divergence (Sessa et al. 2024, arXiv:2407.14622).

    musicrl train bond adherence=1 steps=100                       # distil best-of-N on the MuLan-style score
    musicrl train bond preference=1 reward_model=runs/rm/model     # ... on the votes' WARM reward model
    torchrun --nproc-per-node 4 -m musicrl.cli train bond adherence=1 prompts_per_step=16

Best-of-N sampling keeps the best of N samples by a reward; its distribution is the reference reweighted by
the reward's quantile, π_BoN(y) ∝ π_ref(y) p≤(y)^(N−1). BOND trains the policy to BE that distribution, so
one sample costs what one sample costs (``musicrl.best_of_n`` is the N-times-dearer baseline). J-BOND (the
paper's practical variant, arXiv:2407.14622) per prompt x and step:

1. sample one policy sample y ~ π and two anchor samples y'_1, y'_2 ~ π_anchor (the EMA of the policy);
2. score all three with the reward r (any mix of ``musicrl.rewards``; rows [y, y'_1, y'_2] per prompt, the
   diversity reward's sibling group);
3. forward part: SFT on the better anchor sample (``losses.better_anchor``; a tie keeps y'_1);
4. backward part: policy gradient with reward r_bw = −log 16 where r(y) < min(r(y'_1), r(y'_2)) else 0
   (``losses.jbond_reward``: a tie is not "worse", so the signal vanishes on ties — use a reward with a
   strict ordering), return R = r_bw − (log π(y) − log π_anchor(y)) (``losses.jbond_returns``) and
   baseline = the mean return of the OTHER policy samples of the global batch (leave-one-out);
5. loss ``(1 − β)·forward + β·backward + γ·KL(π ‖ π_anchor)`` (``losses.jbond_loss``), one optimiser step,
   then the anchor moves: θ_a ← (1 − η) θ_a + η θ (``value_model.ema_update``).

Defaults are the paper's: β = 0.5, η = 0.02, γ = 0 (γ ∈ {0, 0.5, 1, 2} in its sweeps). Samples are drawn at
temperature 1 from the full codebook with no guidance (J-BOND distils the policy's own best-of-N). The KL to
the base (``reference``, default the init) is measured at every validation — the x-axis of the reward/KL
plot — and the best checkpoint (``out/best``) has the highest validation reward among validations with
KL ≤ ``kl_budget`` (0 = any); ``out/model`` is the last. Checkpoints carry lineage (recipe, β, γ, η, reward
weights, the reward model's hash and votes).

Distributed: the global batch of prompts and seeds is drawn from (seed, step); each rank samples its share;
the returns are gathered so every rank uses the same whole-batch leave-one-out baseline; DDP averages the
gradients; the anchor's EMA is the same on every rank (it follows identical weights).
"""

from __future__ import annotations

import copy
import dataclasses
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import torch
from torch import nn

from models.errors import InputError
from models.generator import MusicGenerator
from models.lm import AudioLM
from models.registry import load_generator
from models.sampling import SamplingParams
from musicrl import distributed, rewards
from musicrl.advantages import leave_one_out_advantages
from musicrl.config import to_dict
from musicrl.losses import better_anchor, jbond_loss, jbond_returns, jbond_reward, kl_to_reference
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
from musicrl.rollouts import draw_batch, sample_rollout
from musicrl.train_state import JsonlLog, optimizer_step, resume_or_start, start_run
from musicrl.value_model import ema_update

GROUP = 3  # rows per prompt: the policy sample y, then the anchor samples y'_1, y'_2


@dataclass
class Config:
    model: str = "default"  # the policy's init (and the anchor's)
    reference: str = ""  # the base the KL is measured against (plot, kl_budget); "" = model
    reward_model: str = ""  # a preference reward model directory, for preference > 0
    adherence: float = 0.0  # reward weights: r = Σ weight · reward (BOND ranks samples by r)
    quality: float = 0.0
    diversity: float = 0.0
    preference: float = 0.0
    corpus: Path = Path("data/corpus")  # prompts: its train split; validation: its valid split
    prompts: Path | None = None  # or a text file of training prompts, one per line
    out: Path = Path("runs/bond")
    steps: int = 200
    prompts_per_step: int = 4  # the global batch B (one policy + two anchor samples each); divides by processes
    duration: float = 4.0
    temperature: float = 1.0
    beta: float = 0.5  # weight of the backward (policy-gradient) part; 1 − β on the forward (SFT) part
    eta: float = 0.02  # the anchor's EMA rate
    gamma: float = 0.0  # extra KL(π ‖ π_anchor) weight
    lr: float = 1e-5
    grad_clip: float = 1.0
    eval_every: int = 20
    eval_prompts: int = 8
    kl_budget: float = 0.0  # best checkpoint only among validations with KL to the reference <= this (0 = any)
    embedder: str = ""  # scorers; "" = the shipped ones
    quality_model: str = ""
    judges: str = ""  # held-out measure in the validation log; "" = the shipped judges, "none" = off
    log_every: int = 5
    save_every: int = 20
    time_limit_min: float = 0.0
    seed: int = 0
    threads: int = 0
    device: str = "cpu"

    @property
    def samples_per_prompt(self) -> int:
        """Rows per prompt in a step: 1 policy + 2 anchor samples (the diversity reward's sibling group)."""
        return GROUP


@dataclass
class State:
    cfg: Config
    dist: distributed.Dist
    gen: MusicGenerator  # gen.lm is the policy, trained in place
    anchor_gen: MusicGenerator  # the same stack sampling with the anchor LM
    policy: nn.Module  # gen.lm or its DDP wrapper
    anchor: AudioLM  # EMA of the policy, frozen between updates
    reference: AudioLM  # the base of the measured KL
    reward: rewards.WeightedReward
    reward_info: dict
    validator: Validator
    opt: torch.optim.Optimizer
    captions: list[str]
    step: int
    best: dict
    log: JsonlLog
    val_log: JsonlLog
    modules: dict[str, nn.Module]  # the train state: lm, anchor


@dataclass
class Batch:
    """This rank's prompts (B / world) and seeds: policy seed seeds[3b], anchor seeds seeds[3b+1:3b+3]."""

    prompts: list[str]
    seeds: list[int]


def resolve(cfg: Config) -> Config:
    """Check the config's inputs (InputError, before anything is written)."""
    weights = {name: getattr(cfg, name) for name in rewards.TRAINING_REWARDS}
    if not any(weights.values()):
        raise InputError("no reward: give reward weights, e.g. adherence=1 or preference=1 reward_model=DIR")
    if any(w < 0 for w in weights.values()):
        raise InputError("reward weights must be >= 0")
    if not 0.0 <= cfg.beta <= 1.0:
        raise InputError(f"beta must lie in [0, 1], got {cfg.beta}")
    if not 0.0 < cfg.eta <= 1.0:
        raise InputError(f"eta (the anchor's EMA rate) must lie in (0, 1], got {cfg.eta}")
    if cfg.gamma < 0:
        raise InputError(f"gamma must be >= 0, got {cfg.gamma}")
    if not cfg.temperature > 0:
        raise InputError(f"temperature must be > 0, got {cfg.temperature}")
    if cfg.steps < 1 or cfg.eval_every < 1 or cfg.eval_prompts < 1:
        raise InputError("steps, eval_every and eval_prompts must be >= 1")
    if cfg.prompts_per_step < 2:
        raise InputError("prompts_per_step must be >= 2: the baseline is the mean return of the batch's other samples")
    return cfg


def setup(cfg: Config) -> State:
    cfg = resolve(cfg)
    captions = training_prompts(cfg)
    gen = load_generator(cfg.model)
    reference_gen = gen if not cfg.reference or cfg.reference == cfg.model else load_generator(cfg.reference)
    if reference_gen.lm.cfg != gen.lm.cfg:
        raise InputError(f"reference {cfg.reference} has another LM architecture than {cfg.model}")
    reward, reward_info = reward_from(cfg, gen.sample_rate)
    validator = Validator(reward, validation_records(cfg), load_judges(cfg, gen.sample_rate), cfg.duration,
                          cfg.temperature, GROUP)
    dist = start_run(cfg)
    torch.manual_seed(cfg.seed + dist.rank)
    for part in (gen.conditioner, gen.lm, gen.codec):
        if isinstance(part, nn.Module):
            part.to(dist.device)
    reference = copy.deepcopy(reference_gen.lm).to(dist.device).eval().requires_grad_(False)
    anchor = copy.deepcopy(gen.lm).eval().requires_grad_(False)
    anchor_gen = dataclasses.replace(gen, lm=anchor, name=f"{gen.name} (anchor)")
    opt = torch.optim.AdamW([p for p in gen.lm.parameters() if p.requires_grad], lr=cfg.lr, weight_decay=0.0)
    modules = {"lm": gen.lm, "anchor": anchor}
    step, extra, log = resume_or_start(cfg.out, modules, {"opt": opt}, dist)
    best = extra.get("best", {}) if isinstance(extra, dict) else {}
    val_log = JsonlLog(cfg.out / "validation.jsonl", enabled=dist.is_main)
    val_log.truncate_after(step)
    return State(cfg, dist, gen, anchor_gen, distributed.wrap(gen.lm, dist), anchor, reference, reward, reward_info,
                 validator, opt, captions, step, best, log, val_log, modules)


def next_batch(state: State) -> Batch:
    cfg = state.cfg
    return Batch(*draw_batch(state.captions, cfg.seed, state.step, cfg.prompts_per_step, GROUP, state.dist.shard))


def step(state: State, batch: Batch) -> dict[str, float]:
    """One J-BOND update (the module docstring's steps 1–5)."""
    cfg, gen = state.cfg, state.gen
    params = SamplingParams(cfg=1.0, temperature=cfg.temperature, top_k=0)
    b = len(batch.prompts)
    policy_seeds = batch.seeds[0::GROUP]
    anchor_seeds = [s for i in range(b) for s in batch.seeds[GROUP * i + 1 : GROUP * i + GROUP]]
    ys = sample_rollout(gen, batch.prompts, policy_seeds, cfg.duration, params)  # [B] policy samples
    anchors = sample_rollout(state.anchor_gen, batch.prompts, anchor_seeds, cfg.duration, params, 2)  # [2B]

    # rewards of the B groups [y, y'_1, y'_2] (prompt-major, one call: the diversity reward compares the three)
    codes = torch.stack([ys.codes, *anchors.codes.view(b, 2, *anchors.codes.shape[1:]).unbind(1)], dim=1)
    codes = codes.flatten(0, 1)  # [3B, K, T]
    audio = gen.decode(codes)[:, 0].cpu()
    parts = state.reward.components([p for p in batch.prompts for _ in range(GROUP)], audio, codes.cpu())
    r = rewards.mix_rewards(parts, state.reward.weights).view(b, GROUP).to(codes.device)
    r_policy, r_anchor = r[:, 0], r[:, 1:]

    pick = torch.arange(b, device=codes.device) * 2 + better_anchor(r_anchor).to(codes.device)  # [B] rows of anchors
    chosen_inputs, chosen_targets, chosen_mask = anchors.inputs[pick], anchors.targets[pick], anchors.mask[pick]
    gen.lm.eval()  # the loss sees the policy that sampled (no dropout)
    # one policy forward over [y_0, y'_0, y_1, y'_1, ...]: row b's two sequences share prompt b's text
    both = state.policy(torch.stack([ys.inputs, chosen_inputs], 1).flatten(0, 1), ys.text.repeat_rows(2))
    policy_logits, forward_logits = both.unflatten(0, (b, 2)).unbind(1)
    with torch.no_grad():
        anchor_logits = state.anchor(ys.inputs, ys.text)
        reference_logits = state.reference(ys.inputs, ys.text)
        policy_lp = ys.logprobs(policy_logits.detach()).flatten(1).sum(1)
    anchor_lp = ys.logprobs(anchor_logits).flatten(1).sum(1)
    r_bw = jbond_reward(r_policy, r_anchor)
    returns = jbond_returns(r_bw, policy_lp, anchor_lp)
    everyone = state.dist.gather_rows(returns)  # the global batch's returns, in rank order
    mine = slice(state.dist.rank * b, (state.dist.rank + 1) * b)
    advantages = leave_one_out_advantages(everyone, everyone.numel())[mine]
    out = jbond_loss(policy_logits, anchor_logits, ys.targets, ys.mask, advantages, forward_logits, chosen_targets,
                     chosen_mask, cfg.beta, cfg.gamma)
    grad_norm = optimizer_step(state.opt, out.loss, [p for p in gen.lm.parameters() if p.requires_grad],
                               cfg.grad_clip)
    ema_update(state.anchor, gen.lm, cfg.eta)
    kl_ref = kl_to_reference(policy_logits.detach(), reference_logits, ys.mask)
    metrics = {"loss": out.loss.item(), "forward": out.forward.item(), "backward": out.backward.item(),
               "kl_anchor": out.regulariser.item(), "kl": kl_ref.mean().item(), "grad_norm": grad_norm,
               "reward": r_policy.mean().item(), "reward_anchor": r_anchor.mean().item(),
               "worse_than_both": (r_bw < 0).float().mean().item(),
               "ties": (r_policy[:, None] == r_anchor).any(dim=1).float().mean().item(),
               "log_ratio": (policy_lp - anchor_lp).mean().item(), "return": returns.mean().item()}
    metrics.update({f"reward_{name}": value.view(b, GROUP)[:, 0].mean().item() for name, value in parts.items()})
    return metrics


def _lineage_of(state: State) -> dict:
    cfg = state.cfg
    return {"parents": [state.gen.checkpoint_hash], "recipe": "bond", "step": state.step, "init": cfg.model,
            "reference": cfg.reference or cfg.model, "rewards": dict(state.reward.weights),
            "beta": cfg.beta, "gamma": cfg.gamma, "eta": cfg.eta, **state.reward_info, "config": to_dict(cfg)}


def main(cfg: Config) -> dict:
    state = setup(cfg)
    train("bond", state, step, next_batch, partial(validate_keeping_best, lineage_of=_lineage_of),
          partial(save_last, lineage_of=_lineage_of))
    return best_summary(state)
