"""Recipe ``cfg-distill``: diversity-rewarded CFG distillation (Cideron et al. 2024, arXiv:2410.06084).

    musicrl train cfg-distill --config configs/cfg_distill_beta0.yaml [key=value ...]
    torchrun --nproc-per-node 4 -m musicrl.cli train cfg-distill --config ...   # same run, 4 processes

Each step: the student samples G sequences per prompt on-policy WITHOUT guidance (``rollouts``); the
frozen initial model scores the same sequences WITH guidance (the rollout's teacher logits); the loss
is the per-token divergence student -> teacher (reverse KL by default) plus beta x REINFORCE on the
diversity reward (``rewards.Diversity``: each sample's mean 1 - cos to its siblings, leave-one-out
baseline). The result runs without CFG: half the forward passes of base + CFG.

Distributed: the step's prompts and seeds are drawn for the whole run (every rank alike); each rank
samples and scores its share of the prompts (all G samples of a prompt stay on one rank, so the
diversity reward and its baseline are local), and DDP averages the gradients.
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
from models.registry import ASSETS_DIR, load_generator
from models.sampling import SamplingParams
from musicrl import distributed, rewards
from musicrl.advantages import leave_one_out_advantages
from musicrl.config import to_dict
from musicrl.corpus_data import check_split, split_records
from musicrl.losses import cfg_distillation_loss, policy_gradient_loss
from musicrl.rollouts import draw_batch, sample_rollout, score_rollout
from musicrl.train_state import JsonlLog, Loop, optimizer_step, resume_or_start, start_run


@dataclass
class Config:
    model: str = "default"  # initial checkpoint: the student starts here, the frozen teacher stays here
    corpus: Path = Path("data/corpus")  # prompts: captions of its train split
    out: Path = Path("runs/cfg_distill")
    steps: int = 300
    prompts_per_step: int = 4  # the global batch: divides by the number of processes
    samples_per_prompt: int = 4  # G >= 3 when beta > 0 (see setup)
    duration: float = 4.0
    teacher_cfg: float = 3.0
    beta: float = 0.0  # diversity weight (configs for 0, 5, 10, 15)
    divergence: str = "reverse_kl"  # or forward_kl, gjsd
    temperature: float = 1.0
    top_k: int = 0  # 0 = sample from the full distribution (on-policy)
    lr: float = 1e-5
    dropout: bool = False  # False: the loss sees the same policy that sampled (the LM's dropout off)
    grad_clip: float = 1.0
    embedder: str = ""  # music embedding for the diversity reward; "" = the shipped one
    log_every: int = 5
    save_every: int = 50
    time_limit_min: float = 0.0
    seed: int = 0
    device: str = "cpu"  # the generator stack (conditioner, LM, codec) runs here; the CPU is what is tested


@dataclass
class State:
    cfg: Config
    dist: distributed.Dist
    gen: MusicGenerator  # gen.lm is the student, trained in place
    policy: nn.Module  # gen.lm, or its DDP wrapper: the training forward
    teacher: AudioLM  # the frozen initial LM
    diversity: rewards.Diversity | None
    opt: torch.optim.Optimizer
    captions: list[str]
    step: int
    log: JsonlLog


@dataclass
class Batch:
    """This rank's share of a step: prompts (B / world) and one seed per row (B / world x G)."""

    prompts: list[str]
    seeds: list[int]


def setup(cfg: Config) -> State:
    if cfg.beta > 0 and cfg.samples_per_prompt < 3:
        # With G = 2 both siblings get the same reward 1 - cos(e1, e2), so every leave-one-out
        # advantage is exactly 0 and beta would do nothing.
        raise InputError("the diversity term needs samples_per_prompt >= 3 (with 2 its advantages are all 0)")
    check_split(cfg.corpus)  # inputs are checked before the run directory is written to
    dist = start_run(cfg)
    torch.manual_seed(cfg.seed + dist.rank)
    gen = load_generator(cfg.model)
    captions = [r["caption"] for r in split_records(cfg.corpus, "train")]
    if not captions:
        raise InputError(f"no training captions in {cfg.corpus}")
    diversity = None
    if cfg.beta > 0:
        from models.embedder import TextAudioEmbedder

        embedder = TextAudioEmbedder.load(cfg.embedder or ASSETS_DIR / "embedder")
        if embedder.sample_rate != gen.sample_rate:
            raise InputError(
                f"the embedder expects {embedder.sample_rate} Hz audio; the model makes {gen.sample_rate} Hz"
            )
        diversity = rewards.Diversity(embedder, cfg.samples_per_prompt)
    teacher = copy.deepcopy(gen.lm).eval().requires_grad_(False)
    opt = torch.optim.AdamW(gen.lm.parameters(), lr=cfg.lr, weight_decay=0.0)
    step, _, log = resume_or_start(cfg.out, {"lm": gen.lm}, {"opt": opt}, dist)
    policy = distributed.wrap(gen.lm, dist)
    return State(cfg, dist, gen, policy, teacher, diversity, opt, captions, step, log)


def next_batch(state: State) -> Batch:
    """The global batch of step ``state.step`` depends on (seed, step) alone; this rank takes its share."""
    cfg = state.cfg
    return Batch(*draw_batch(state.captions, cfg.seed, state.step, cfg.prompts_per_step, cfg.samples_per_prompt,
                             state.dist.shard))


def step(state: State, batch: Batch) -> dict[str, float]:
    """One update: rollouts without guidance, teacher scoring with guidance, QD = distill + beta x PG."""
    cfg, g_size = state.cfg, state.cfg.samples_per_prompt
    params = SamplingParams(cfg=1.0, temperature=cfg.temperature, top_k=cfg.top_k)
    rollout = sample_rollout(state.gen, batch.prompts, batch.seeds, cfg.duration, params, g_size)
    state.gen.lm.train(cfg.dropout)
    rollout = score_rollout(rollout, policy=state.policy, teacher=state.teacher, teacher_cfg=cfg.teacher_cfg)
    distill = cfg_distillation_loss(rollout.policy_logits, rollout.teacher_logits, rollout.mask, cfg.divergence)
    loss, metrics = distill, {"distill": distill.item()}
    if state.diversity is not None:
        reward = state.diversity(rollout.prompts, state.gen.decode(rollout.codes)[:, 0])
        advantages = leave_one_out_advantages(reward, g_size)
        # QD = Q + beta * D with both terms per sequence (KL summed over its tokens; REINFORCE on
        # A * sum log pi). The distillation loss is that sum divided by the token count, so the
        # policy gradient is divided by the same count ("tokens") to keep beta's meaning.
        pg = policy_gradient_loss(rollout.policy_logprobs, advantages, rollout.mask, normalize="tokens")
        loss = distill + cfg.beta * pg
        metrics.update(diversity=reward.mean().item(), pg=pg.item(), adv_abs=advantages.abs().mean().item())
    grad_norm = optimizer_step(state.opt, loss, state.gen.lm.parameters(), cfg.grad_clip)
    state.gen.lm.eval()
    return {"loss": loss.item(), **metrics, "grad_norm": grad_norm, "rank_rows": len(rollout.prompts)}


def main(cfg: Config) -> dict:
    state = setup(cfg)
    modules, optimizers = {"lm": state.gen.lm}, {"opt": state.opt}
    with Loop("cfg-distill", cfg, state.log, state.dist, modules, optimizers, state.step) as loop:
        while state.step < cfg.steps:
            metrics = step(state, next_batch(state))
            state.step += 1
            if loop.after_step(state.step, metrics):
                break
        summary = {"step": state.step, "model": str(cfg.out / "model")}
        if state.dist.is_main:
            state.gen.cfg_free = True
            lineage = {"parents": [state.gen.checkpoint_hash], "step": state.step, "recipe": "cfg-distill"}
            save_checkpoint(state.gen, cfg.out / "model", lineage={**lineage, "config": to_dict(cfg)})
            (cfg.out / "metrics.json").write_text(json.dumps(summary, indent=2))
    return summary
