"""Sampling from per-codebook logits: the one CFG formula, temperature, top-k, top-p, greedy.

Every path that needs guided logits (generation, CFG distillation's teacher, evaluation) calls
``apply_cfg``; nothing else writes the formula.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch


def apply_cfg(cond_logits: torch.Tensor, uncond_logits: torch.Tensor, gamma: float) -> torch.Tensor:
    """Classifier-free guidance (MusicGen): ``uncond + gamma * (cond - uncond)``.

    gamma = 1 returns the conditional logits; gamma = 0 the unconditional ones. Any shape, e.g.
    [B, K, V] or [B, K, T, V]; both inputs must match.
    """
    if cond_logits.shape != uncond_logits.shape:
        raise ValueError(f"cfg shapes differ: {tuple(cond_logits.shape)} vs {tuple(uncond_logits.shape)}")
    return uncond_logits + gamma * (cond_logits - uncond_logits)


@dataclass(frozen=True)
class SamplingParams:
    """How to turn logits into codes.

    cfg: guidance scale gamma (1 = no guidance; the unconditional pass is then skipped).
    temperature: divides the logits (> 0). top_k: keep the k most likely codes (0 = all).
    top_p: nucleus mass in (0, 1] (1 = off). greedy: argmax, ignoring temperature/top-k/top-p.
    """

    cfg: float = 3.0
    temperature: float = 1.0
    top_k: int = 250
    top_p: float = 1.0
    greedy: bool = False

    def validate(self) -> SamplingParams:
        if not self.cfg >= 0:
            raise ValueError(f"cfg must be >= 0, got {self.cfg}")
        if not self.temperature > 0:
            raise ValueError(f"temperature must be > 0, got {self.temperature}")
        if self.top_k < 0:
            raise ValueError(f"top-k must be >= 1 (or 0 for no limit), got {self.top_k}")
        if not 0 < self.top_p <= 1:
            raise ValueError(f"top-p must be in (0, 1], got {self.top_p}")
        return self

    @property
    def uses_cfg(self) -> bool:
        return self.cfg != 1.0


def filter_logits(logits: torch.Tensor, params: SamplingParams) -> torch.Tensor:
    """Temperature, then top-k, then top-p (transformers' order); removed codes get -inf.

    Args:
        logits: [..., V].
    Returns:
        [..., V] processed logits.
    """
    logits = logits / params.temperature if params.temperature != 1.0 else logits
    vocab = logits.shape[-1]
    if 0 < params.top_k < vocab:
        kth = torch.topk(logits, params.top_k, dim=-1).values[..., -1:]
        logits = logits.masked_fill(logits < kth, float("-inf"))
    if params.top_p < 1.0:
        sorted_logits, order = torch.sort(logits, dim=-1, descending=False)
        cum = sorted_logits.softmax(dim=-1).cumsum(dim=-1)
        drop_sorted = cum <= 1 - params.top_p
        drop_sorted[..., -1] = False  # always keep the most likely code
        drop = drop_sorted.scatter(-1, order, drop_sorted)
        logits = logits.masked_fill(drop, float("-inf"))
    return logits


def make_generators(seeds: list[int], device: torch.device | str = "cpu") -> list[torch.Generator]:
    """One generator per batch row, so a row's sample depends only on its own seed."""
    gens = []
    for seed in seeds:
        g = torch.Generator(device=device)
        g.manual_seed(int(seed))
        gens.append(g)
    return gens


def sample_next(
    logits: torch.Tensor, params: SamplingParams, generators: list[torch.Generator] | None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Draw one code per (row, codebook).

    Sampling uses the exponential race (argmax p / E, E ~ Exp(1)), equivalent to a categorical draw,
    with each row's noise from its own generator: a row's draw does not depend on its batch mates.

    Args:
        logits: [B, K, V] (already CFG-combined).
        generators: B generators (ignored when greedy).
    Returns:
        codes [B, K] int64; logprobs [B, K] = log-probability of each code under the distribution it
        was drawn from (after temperature/top-k/top-p; for greedy, under temperature-1 logits).
    """
    if params.greedy:
        logp = logits.float().log_softmax(dim=-1)
        codes = logits.argmax(dim=-1)
        return codes, logp.gather(-1, codes[..., None])[..., 0]
    logp = filter_logits(logits.float(), params).log_softmax(dim=-1)
    probs = logp.exp()
    if generators is None or len(generators) != logits.shape[0]:
        raise ValueError("sampling needs one generator per batch row")
    noise = torch.stack([torch.empty_like(probs[0]).exponential_(generator=g) for g in generators])
    codes = (probs / noise).argmax(dim=-1)
    return codes, logp.gather(-1, codes[..., None])[..., 0]
