"""Recipe ``clp``: one steerable policy for every reward trade-off (CLP, Wang et al. 2024, arXiv:2407.15762).

    musicrl train clp objectives=adherence,quality steps=200
    musicrl train clp objectives=adherence,quality,diversity,preference reward_model=runs/rm/model
    musicrl generate "calm piano" --model runs/clp/model --weights adherence=0.7,quality=0.3

One policy, conditioned on a weight vector w over the objectives, trained multi-task: every step draws one w
from the uniform distribution on the simplex (Dirichlet(1, ..., 1), from (seed, step) alone so every rank
draws the same), sets the policy to θ(w) and runs KL-regularised REINFORCE (arXiv:2402.04229, leave-one-out
baseline over the prompt's G samples, exact KL to the base) on the reward Σ_i w_i r_i. At inference any w
picks a point of the trade-off with one model and one sample's cost.

Conditioning (``scope``; ``models.steerable``): in parameter space, as in the CLP paper — the conditioned
parameters are θ(w) = Σ_i w_i θ_i with one set θ_i per objective, trained through θ(w) (the gradient on θ_i
is w_i times the gradient on θ(w)); ``all`` (default) conditions every parameter, ``attention`` only the
attention projections, ``logits`` only the output heads. ``all`` is the default because it is the
rewarded-soups parametrisation: the comparison with soups (one RL run per reward, interpolated) then
isolates what multi-task training adds, and θ(w) is a plain ``AudioLM`` (one sampling path, no extra cost
per step). The checkpoint records the scope and the objectives (``steerable.json``).

Validation every ``eval_every`` steps at each vertex of the simplex and at uniform w: every reward component
and the KL to the base, one record per (step, w) in ``validation.jsonl``. ``out/model`` is the last
checkpoint (``lm.safetensors`` at uniform w: any tool loads it as a plain model) with its steerable parts.
"""

from __future__ import annotations

import copy
import json
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from models.checkpoint import save_checkpoint
from models.errors import InputError
from models.generator import MusicGenerator
from models.lm import AudioLM
from models.registry import load_generator
from models.sampling import SamplingParams
from models.steerable import SCOPES, SteerableLM
from musicrl import distributed, rewards
from musicrl.advantages import leave_one_out_advantages
from musicrl.config import to_dict
from musicrl.losses import kl_regularised_reinforce_loss, kl_to_reference
from musicrl.policy_training import Validator, load_judges, train, training_prompts, validation_records
from musicrl.rollouts import draw_batch, sample_rollout, score_rollout
from musicrl.train_state import JsonlLog, optimizer_step, resume_or_start, start_run


@dataclass
class Config:
    model: str = "default"  # the init of every θ_i (and the base of the KL)
    reward_model: str = ""  # a preference reward model directory, when "preference" is an objective
    objectives: str = "adherence,quality,diversity"  # comma-separated names of musicrl.rewards (2 or more)
    scope: str = "all"  # all | attention | logits: which parameters are conditioned on w
    corpus: Path = Path("data/corpus")
    prompts: Path | None = None
    out: Path = Path("runs/clp")
    steps: int = 200
    prompts_per_step: int = 4
    samples_per_prompt: int = 3  # G >= 2: the leave-one-out baseline and the diversity reward's siblings
    duration: float = 4.0
    temperature: float = 0.99
    alpha: float = 0.1  # KL weight
    lr: float = 1e-5
    grad_clip: float = 1.0
    eval_every: int = 20
    eval_prompts: int = 8
    embedder: str = ""
    quality_model: str = ""
    judges: str = ""  # "" = the shipped judges in the validation log, "none" = off
    log_every: int = 5
    save_every: int = 20
    time_limit_min: float = 0.0
    seed: int = 0
    threads: int = 0
    device: str = "cpu"

    @property
    def objective_names(self) -> list[str]:
        return [name.strip() for name in self.objectives.split(",") if name.strip()]


@dataclass
class State:
    cfg: Config
    dist: distributed.Dist
    gen: MusicGenerator  # gen.lm is steer.lm: θ(w) of the current step
    steer: SteerableLM
    policy: nn.Module  # steer.lm or its DDP wrapper
    reference: AudioLM
    reward: rewards.WeightedReward  # every objective with weight 1 (the step's w replaces the weights)
    reward_info: dict
    validator: Validator
    opt: torch.optim.Optimizer
    captions: list[str]
    step: int
    log: JsonlLog
    val_log: JsonlLog
    modules: dict[str, nn.Module]


@dataclass
class Batch:
    prompts: list[str]
    seeds: list[int]
    weights: dict[str, float]  # w of the step, the same on every rank


def resolve(cfg: Config) -> Config:
    names = cfg.objective_names
    rewards.check_trainable(names)
    if len(names) < 2 or len(set(names)) != len(names):
        raise InputError(f"objectives needs 2 or more distinct rewards, got {cfg.objectives!r}")
    if "preference" in names and not cfg.reward_model:
        raise InputError("the preference objective needs reward_model=DIR (musicrl train reward-model)")
    if cfg.scope not in SCOPES:
        raise InputError(f"scope must be one of {', '.join(SCOPES)}, got {cfg.scope!r}")
    if cfg.samples_per_prompt < 2:
        raise InputError("samples_per_prompt must be >= 2 (the leave-one-out baseline)")
    if not 0.0 <= cfg.alpha <= 1.0:
        raise InputError(f"alpha must lie in [0, 1], got {cfg.alpha}")
    if not cfg.temperature > 0:
        raise InputError(f"temperature must be > 0, got {cfg.temperature}")
    if cfg.steps < 1 or cfg.prompts_per_step < 1 or cfg.eval_every < 1 or cfg.eval_prompts < 1:
        raise InputError("steps, prompts_per_step, eval_every and eval_prompts must be >= 1")
    return cfg


def draw_weights(objectives: list[str], seed: int, step: int) -> dict[str, float]:
    """w ~ Dirichlet(1, ..., 1) (uniform on the simplex) from (seed, step) alone: normalised −log U."""
    g = torch.Generator().manual_seed(seed * 7_919 + step + 1)
    e = -torch.log(torch.rand(len(objectives), generator=g, dtype=torch.float64).clamp_min(1e-12))
    return {obj: float(v) for obj, v in zip(objectives, (e / e.sum()).tolist(), strict=True)}


def validation_weights(objectives: list[str]) -> list[dict[str, float]]:
    """The simplex's vertices and its centre."""
    n = len(objectives)
    vertices = [{obj: float(i == j) for j, obj in enumerate(objectives)} for i in range(n)]
    return [*vertices, {obj: 1.0 / n for obj in objectives}]


def setup(cfg: Config) -> State:
    cfg = resolve(cfg)
    names = cfg.objective_names
    captions = training_prompts(cfg)
    gen = load_generator(cfg.model)
    reward, reward_info = rewards.build_reward({n: 1.0 for n in names}, gen.sample_rate, cfg.samples_per_prompt,
                                               cfg.embedder, cfg.quality_model, cfg.reward_model)
    validator = Validator(reward, validation_records(cfg), load_judges(cfg, gen.sample_rate), cfg.duration,
                          cfg.temperature, cfg.samples_per_prompt)
    dist = start_run(cfg)
    torch.manual_seed(cfg.seed + dist.rank)
    for part in (gen.conditioner, gen.lm, gen.codec):
        if isinstance(part, nn.Module):
            part.to(dist.device)
    reference = copy.deepcopy(gen.lm).eval().requires_grad_(False)
    steer = SteerableLM(gen.lm, names, cfg.scope)
    opt = torch.optim.AdamW(steer.trainable_parameters(), lr=cfg.lr, weight_decay=0.0)
    modules = {"steerable": steer}
    step, _, log = resume_or_start(cfg.out, modules, {"opt": opt}, dist)
    val_log = JsonlLog(cfg.out / "validation.jsonl", enabled=dist.is_main)
    val_log.truncate_after(step)
    return State(cfg, dist, gen, steer, distributed.wrap(steer.lm, dist), reference, reward, reward_info, validator,
                 opt, captions, step, log, val_log, modules)


def next_batch(state: State) -> Batch:
    cfg = state.cfg
    prompts, seeds = draw_batch(state.captions, cfg.seed, state.step, cfg.prompts_per_step, cfg.samples_per_prompt,
                                state.dist.shard)
    return Batch(prompts, seeds, draw_weights(cfg.objective_names, cfg.seed, state.step))


def step(state: State, batch: Batch) -> dict[str, float]:
    """One multi-task update at the batch's w: θ(w) samples, reward Σ w_i r_i, REINFORCE-LOO + exact KL."""
    cfg, gen = state.cfg, state.gen
    w = state.steer.set_weights(batch.weights)
    params = SamplingParams(cfg=1.0, temperature=cfg.temperature, top_k=0)
    rollout = sample_rollout(gen, batch.prompts, batch.seeds, cfg.duration, params, cfg.samples_per_prompt)
    audio = gen.decode(rollout.codes)[:, 0].cpu()
    parts = state.reward.components(rollout.prompts, audio, rollout.codes.cpu())
    reward = rewards.mix_rewards(parts, w).to(rollout.codes.device)
    gen.lm.eval()
    rollout = score_rollout(rollout, policy=state.policy, reference=state.reference)
    baseline = reward - leave_one_out_advantages(reward, cfg.samples_per_prompt)
    values = baseline[:, None, None].expand(rollout.mask.shape).float()
    out = kl_regularised_reinforce_loss(rollout.policy_logits, rollout.reference_logits, rollout.targets, reward,
                                        values, rollout.mask, cfg.alpha, 0.0)
    grad_norm = optimizer_step(state.opt, out.loss, state.steer.trainable_parameters(), cfg.grad_clip,
                               after_backward=state.steer.route_gradients)
    with torch.no_grad():
        kl = kl_to_reference(rollout.policy_logits.detach(), rollout.reference_logits, rollout.mask)
    metrics = {"loss": out.loss.item(), "reward": reward.mean().item(), "kl": kl.mean().item(), "grad_norm": grad_norm}
    metrics.update({f"w_{name}": value for name, value in w.items()})
    metrics.update({f"reward_{name}": value.mean().item() for name, value in parts.items()})
    return metrics


def _lineage_of(state: State) -> dict:
    cfg = state.cfg
    return {"parents": [state.gen.checkpoint_hash], "recipe": "clp", "step": state.step, "init": cfg.model,
            "reference": cfg.model, "objectives": cfg.objective_names, "scope": cfg.scope, **state.reward_info,
            "config": to_dict(cfg)}


def validate(state: State) -> None:
    """Rank 0: validation at each vertex and the centre of the simplex (then the training w is restored
    by the next step's ``set_weights``)."""
    if not state.dist.is_main:
        return
    for w in validation_weights(state.cfg.objective_names):
        state.steer.set_weights(w)
        scores = state.validator(state.gen, state.reference, rewards.WeightedReward(state.reward.rewards, w))
        state.val_log.write({"step": state.step, "weights": w, **scores})


def save(state: State) -> None:
    """Rank 0, at the end: ``out/model`` at uniform w (a plain model for any tool) with the steerable parts
    beside it, and ``metrics.json``."""
    path = state.cfg.out / "model"
    state.steer.set_weights({obj: 1.0 for obj in state.steer.objectives})
    lineage = _lineage_of(state)
    save_checkpoint(state.gen, path, lineage=lineage)
    state.steer.save(path, lineage)
    (state.cfg.out / "metrics.json").write_text(json.dumps(summary_of(state), indent=2))


def summary_of(state: State) -> dict:
    cfg = state.cfg
    return {"step": state.step, "model": str(cfg.out / "model"), "objectives": cfg.objective_names,
            "scope": cfg.scope}


def main(cfg: Config) -> dict:
    state = setup(cfg)
    train("clp", state, step, next_batch, validate, save)
    return summary_of(state)
