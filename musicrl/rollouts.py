"""On-policy rollouts: sample through the one sampling path, then score the same sequences in one place.

    rollout = sample_rollout(gen, prompts, seeds, duration=4.0, params=SamplingParams(cfg=1.0), samples_per_prompt=4)
    rollout = score_rollout(rollout, policy=ddp_lm, reference=frozen_lm, teacher=frozen_lm, teacher_cfg=3.0)
    rollout.policy_logits      # [N, K, S, V] with grad: distillation / exact-KL losses
    rollout.policy_logprobs    # [N, K, S] log π(a_t|s_t) of the sampled codes, 0 at padding: REINFORCE
    rollout.teacher_logits     # apply_cfg(l_cond, l_null, γ) of the frozen teacher (arXiv:2306.05284, 2410.06084)

Sampling goes ONLY through ``MusicGenerator.generate_codes`` (the app, evaluation and best-of-N use the
same path). Scoring re-runs the sampled sequences teacher-forced on the delay pattern: policy (with
gradient, through its DDP wrapper when distributed), reference π_0 and the CFG-guided teacher (no
gradient). The null condition is ``TextStates.null`` and the CFG formula is ``models.sampling.apply_cfg``.

Shapes: N = B * G rows, prompt-major (row b*G + g is sample g of prompt b); K codebooks; T frames;
S = T + K − 1 delayed steps; V codebook size.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor

from models.delay import build_delayed, delay_valid_mask, lm_inputs
from models.generator import MusicGenerator
from models.lm import AudioLM, TextStates
from models.sampling import SamplingParams, apply_cfg
from musicrl.losses import kl_to_reference, token_logprobs

# policy / reference / teacher: anything called like AudioLM.forward (the module, or its DDP wrapper)
LogitsFn = Callable[[Tensor, TextStates], Tensor]  # (inputs [N, K, S], text) -> logits [N, K, S, V]


@dataclass
class Rollout:
    """G sampled sequences per prompt and, once scored, their logits under each model.

    codes [N, K, T]; delayed [N, K, S] (the targets: codes on the delay pattern, the special id at
    padding); inputs [N, K, S] (what the LM reads: delayed shifted right); mask [N, K, S] bool (valid
    positions); text: the rows' conditioning (states [N, L, C], mask [N, L]); *_logits [N, K, S, V]."""

    prompts: list[str]
    seeds: list[int]
    samples_per_prompt: int
    codes: Tensor
    delayed: Tensor
    inputs: Tensor
    mask: Tensor
    text: TextStates
    policy_logits: Tensor | None = None
    reference_logits: Tensor | None = None
    teacher_logits: Tensor | None = None

    @property
    def num_prompts(self) -> int:
        return len(self.prompts) // self.samples_per_prompt

    @property
    def targets(self) -> Tensor:
        """[N, K, S] the sampled codes on the delay pattern with padding set to 0 (a valid id, masked out of
        every sum): what the losses index the logits with."""
        return torch.where(self.mask, self.delayed, 0)

    def logprobs(self, logits: Tensor) -> Tensor:
        """[N, K, S, V] -> log-probabilities of the sampled codes [N, K, S], 0 at padding."""
        lp = token_logprobs(logits, self.targets)
        return lp * self.mask.to(lp.dtype)

    @property
    def policy_logprobs(self) -> Tensor:
        return self.logprobs(_scored(self.policy_logits, "policy"))

    @property
    def reference_logprobs(self) -> Tensor:
        return self.logprobs(_scored(self.reference_logits, "reference"))

    @property
    def teacher_logprobs(self) -> Tensor:
        return self.logprobs(_scored(self.teacher_logits, "teacher"))


def _scored(logits: Tensor | None, name: str) -> Tensor:
    if logits is None:
        raise ValueError(f"the rollout was not scored under the {name} (score_rollout({name}=...))")
    return logits


@torch.no_grad()
def sample_rollout(
    gen: MusicGenerator,
    prompts: list[str],
    seeds: list[int],
    duration: float,
    params: SamplingParams,
    samples_per_prompt: int = 1,
) -> Rollout:
    """G = ``samples_per_prompt`` sequences for each of B prompts from ``gen`` (its LM in eval mode, so
    sampling sees no dropout), seeds one per row (B * G). Nothing is scored yet."""
    lm = gen.lm
    was_training = lm.training
    lm.eval()
    try:
        out = gen.generate_codes(prompts, duration, params, seeds, samples_per_prompt=samples_per_prompt)
    finally:
        lm.train(was_training)
    delayed, inputs, mask = teacher_forcing(out.codes, lm.cfg.special_token)
    return Rollout(
        prompts=out.prompts,
        seeds=out.seeds,
        samples_per_prompt=samples_per_prompt,
        codes=out.codes,
        delayed=delayed,
        inputs=inputs,
        mask=mask,
        text=out.text,
    )


def teacher_forcing(codes: Tensor, special: int) -> tuple[Tensor, Tensor, Tensor]:
    """codes [N, K, T] -> (delayed targets [N, K, S], LM inputs [N, K, S], valid mask [N, K, S] bool)."""
    delayed = build_delayed(codes, special)
    mask = delay_valid_mask(codes.shape[1], delayed.shape[-1], device=codes.device)[None].expand(codes.shape[0], -1, -1)
    return delayed, lm_inputs(delayed, special), mask


def teacher_logits(teacher: LogitsFn, inputs: Tensor, text: TextStates, gamma: float) -> Tensor:
    """CFG-guided logits of a frozen model on given sequences: apply_cfg(l(text), l(null), γ) [N, K, S, V];
    γ = 1 is the conditional pass alone (no unconditional pass is run)."""
    with torch.no_grad():
        cond = teacher(inputs, text)
        if gamma == 1.0:
            return cond
        return apply_cfg(cond, teacher(inputs, text.null()), gamma)


def score_rollout(
    rollout: Rollout,
    policy: LogitsFn | None = None,
    reference: LogitsFn | None = None,
    teacher: LogitsFn | None = None,
    teacher_cfg: float = 3.0,
) -> Rollout:
    """The rollout with its logits under the given models: policy with gradient (call it in the mode
    the loss wants, e.g. dropout off), reference π_0 and the CFG teacher (γ = ``teacher_cfg``) without."""
    out = {}
    if policy is not None:
        out["policy_logits"] = policy(rollout.inputs, rollout.text)
    if reference is not None:
        with torch.no_grad():
            out["reference_logits"] = reference(rollout.inputs, rollout.text)
    if teacher is not None:
        out["teacher_logits"] = teacher_logits(teacher, rollout.inputs, rollout.text, teacher_cfg)
    return dataclasses.replace(rollout, **out)


def draw_batch(
    captions: list[str], seed: int, step: int, prompts_per_step: int, samples_per_prompt: int, shard
) -> tuple[list[str], list[int]]:
    """An on-policy recipe's batch of step ``step``: ``prompts_per_step`` prompts drawn from ``captions``
    and one seed per row (B × G), from (seed, step) alone — every rank draws the same global batch and
    ``shard`` (``Dist.shard``) keeps this rank's prompts and their rows (a prompt's G samples stay together)."""
    g = torch.Generator().manual_seed(seed * 100_003 + step)
    idx = torch.randint(0, len(captions), (prompts_per_step,), generator=g)
    seeds = torch.randint(0, 2**31 - 1, (prompts_per_step * samples_per_prompt,), generator=g).tolist()
    return shard([captions[i] for i in idx], "prompts_per_step"), shard(seeds, "prompts_per_step")


@torch.no_grad()
def sequence_kl(policy: AudioLM, reference: AudioLM, text: TextStates, codes: Tensor, batch: int = 16) -> Tensor:
    """Exact KL(π‖π_ref) of each code sequence, summed over its valid steps and the codebook
    (``losses.kl_to_reference``), teacher-forced on the delay pattern: the same quantity as the recipes'
    ``kl``/``val_kl``, for any given sequences (e.g. ``musicrl eval --kl-reference``).

    codes [N, K, T]; text: the N rows' conditioning. Returns [N] float32 on the CPU."""
    out = []
    for i in range(0, codes.shape[0], batch):
        rows = torch.arange(i, min(i + batch, codes.shape[0]), device=codes.device)
        _, inputs, mask = teacher_forcing(codes[rows], policy.cfg.special_token)
        part = TextStates(text.states[rows], text.mask[rows])
        out.append(kl_to_reference(policy(inputs, part), reference(inputs, part), mask).float().cpu())
    return torch.cat(out)
