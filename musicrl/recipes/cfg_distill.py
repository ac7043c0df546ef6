"""Recipe ``cfg-distill``: diversity-rewarded CFG distillation (Cideron et al. 2024; ALGORITHMS §2).

    musicrl train cfg-distill --config configs/cfg_distill_beta0.yaml [key=value ...]

Each step: the student samples G sequences per prompt on-policy WITHOUT guidance; the frozen initial
model scores the same sequences WITH guidance (teacher logits = apply_cfg(cond, null, gamma)); the loss
is the per-token divergence student -> teacher (reverse KL by default) plus beta x REINFORCE on the
diversity reward (each sample's mean 1 - cos to its siblings in the embedder's space, leave-one-out
baseline). The result runs without CFG: half the forward passes of base + CFG.
"""

from __future__ import annotations

import copy
import json
import time
from dataclasses import dataclass
from pathlib import Path

import torch
from tqdm import tqdm

from evaluation.reward_math import diversity_rewards
from models.checkpoint import save_checkpoint
from models.delay import build_delayed, delay_valid_mask, lm_inputs
from models.errors import InputError
from models.lm import TextStates
from models.registry import ASSETS_DIR, load_generator
from models.sampling import SamplingParams, apply_cfg
from musicrl.advantages import leave_one_out_advantages
from musicrl.config import dump_config, to_dict
from musicrl.corpus_data import split_records
from musicrl.losses import cfg_distillation_loss, policy_gradient_loss, token_logprobs
from musicrl.train_state import end_step, optimizer_step, out_of_time, resume_or_start


@dataclass
class Config:
    model: str = "default"  # initial checkpoint: the student starts here, the frozen teacher stays here
    corpus: Path = Path("data/corpus")  # prompts: captions of its train split
    out: Path = Path("runs/cfg_distill")
    steps: int = 300
    prompts_per_step: int = 4
    samples_per_prompt: int = 4  # G >= 3 when beta > 0 (see main)
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


def teacher_logits(teacher, inputs: torch.Tensor, text: TextStates, gamma: float) -> torch.Tensor:
    """CFG-guided logits of the frozen teacher on the student's sequences: [N, K, S, V]."""
    null = TextStates(text.states, torch.zeros_like(text.mask))
    with torch.no_grad():
        return apply_cfg(teacher(inputs, text), teacher(inputs, null), gamma)


def main(cfg: Config) -> dict:
    if cfg.beta > 0 and cfg.samples_per_prompt < 3:
        # With G = 2 both siblings get the same reward 1 - cos(e1, e2), so every leave-one-out
        # advantage is exactly 0 and beta would do nothing.
        raise InputError("the diversity term needs samples_per_prompt >= 3 (with 2 its advantages are all 0)")
    cfg.out.mkdir(parents=True, exist_ok=True)
    dump_config(cfg, cfg.out / "config.yaml")
    torch.manual_seed(cfg.seed)
    gen = load_generator(cfg.model)
    captions = [r["caption"] for r in split_records(cfg.corpus, "train")]
    if not captions:
        raise InputError(f"no training captions in {cfg.corpus}")
    embedder = None
    if cfg.beta > 0:
        from models.embedder import TextAudioEmbedder

        embedder = TextAudioEmbedder.load(cfg.embedder or ASSETS_DIR / "embedder")
        if embedder.sample_rate != gen.sample_rate:
            raise InputError(
                f"the embedder expects {embedder.sample_rate} Hz audio; the model makes {gen.sample_rate} Hz"
            )
    student, teacher = gen.lm, copy.deepcopy(gen.lm).eval().requires_grad_(False)
    opt = torch.optim.AdamW(student.parameters(), lr=cfg.lr, weight_decay=0.0)
    step, _, log = resume_or_start(cfg.out, {"lm": student}, {"opt": opt})
    k, g_size, special = student.cfg.num_codebooks, cfg.samples_per_prompt, student.cfg.special_token
    params = SamplingParams(cfg=1.0, temperature=cfg.temperature, top_k=cfg.top_k)
    start, bar = time.time(), tqdm(total=cfg.steps, initial=step, desc="cfg-distill", unit="step", disable=None)
    while step < cfg.steps:
        g = torch.Generator().manual_seed(cfg.seed * 100_003 + step)  # a step's prompts and seeds depend on it alone
        prompts = [captions[i] for i in torch.randint(0, len(captions), (cfg.prompts_per_step,), generator=g)]
        seeds = torch.randint(0, 2**31 - 1, (len(prompts) * g_size,), generator=g).tolist()
        student.eval()
        # on-policy rollouts without guidance, G per prompt (rows prompt-major), through the generator
        codes = gen.generate_codes(prompts, cfg.duration, params, seeds, samples_per_prompt=g_size).codes
        text = gen.encode_text(prompts)
        text = TextStates(text.states.repeat_interleave(g_size, 0), text.mask.repeat_interleave(g_size, 0))
        delayed = build_delayed(codes, special)
        inputs = lm_inputs(delayed, special)
        mask = delay_valid_mask(k, delayed.shape[-1])[None].expand(codes.shape[0], -1, -1)
        student.train(cfg.dropout)
        logits = student(inputs, text)
        distill = cfg_distillation_loss(
            logits, teacher_logits(teacher, inputs, text, cfg.teacher_cfg), mask, divergence=cfg.divergence
        )
        loss, record = distill, {"distill": distill.item()}
        if embedder is not None:
            with torch.no_grad():
                emb = embedder.embed_audio(gen.decode(codes)[:, 0]).view(len(prompts), g_size, -1)
                reward = diversity_rewards(emb)
            advantages = leave_one_out_advantages(reward, g_size).reshape(-1)
            logp = token_logprobs(logits, torch.where(mask, delayed, 0))
            # QD = Q + beta * D with both terms per sequence (KL summed over its tokens; REINFORCE on
            # A * sum log pi). The distillation loss is that sum divided by the token count, so the
            # policy gradient is divided by the same count ("tokens") to keep beta's meaning.
            pg = policy_gradient_loss(logp, advantages, mask, normalize="tokens")
            loss = distill + cfg.beta * pg
            record.update(diversity=reward.mean().item(), pg=pg.item(), adv_abs=advantages.abs().mean().item())
        grad_norm = optimizer_step(opt, loss, student.parameters(), cfg.grad_clip)
        step += 1
        bar.update(1)
        if step % cfg.log_every == 0 or step == cfg.steps:
            log.write(
                {
                    "step": step,
                    "loss": loss.item(),
                    **record,
                    "grad_norm": float(grad_norm),
                    "elapsed_s": time.time() - start,
                }
            )
        stop = out_of_time(start, cfg.time_limit_min)
        if end_step(cfg.out, {"lm": student}, {"opt": opt}, step, cfg.steps, cfg.save_every, stop):
            break
    bar.close()
    student.eval()
    gen.cfg_free = True
    lineage = {"parents": [gen.checkpoint_hash], "step": step, "recipe": "cfg-distill", "config": to_dict(cfg)}
    save_checkpoint(gen, cfg.out / "model", lineage=lineage)
    summary = {"step": step, "model": str(cfg.out / "model")}
    (cfg.out / "metrics.json").write_text(json.dumps(summary, indent=2))
    return summary
