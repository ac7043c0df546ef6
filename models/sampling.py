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


def make_generators(seeds: list[int], device: torch.device | str = "cpu") -> list[torch.Generator]:
    """One generator per batch row, so a row's sample depends only on its own seed."""
    gens = []
    for seed in seeds:
        g = torch.Generator(device=device)
        g.manual_seed(int(seed))
        gens.append(g)
    return gens


def candidate_logprobs(logits: torch.Tensor, params: SamplingParams) -> tuple[torch.Tensor, torch.Tensor | None]:
    """The distribution codes are drawn from: top-k, then temperature, then top-p (transformers' order).

    Top-k narrows each distribution to its k best candidates (the rest would get probability zero
    anyway), so everything after it works on C = k columns instead of V.

    Args:
        logits: [..., V].
    Returns:
        logp [..., C] log-probabilities of the candidates (-inf where top-p drops one);
        index [..., C] their codes in V, or None when the candidates are all V codes in order.
    """
    logits = logits.float()
    vocab = logits.shape[-1]
    if 0 < params.top_k < vocab:
        # top-p needs the candidates sorted; a plain draw does not (unsorted top-k is ~1.5x cheaper)
        cand, index = torch.topk(logits, params.top_k, dim=-1, sorted=params.top_p < 1.0)
    elif params.top_p < 1.0:
        cand, index = torch.sort(logits, dim=-1, descending=True)
    else:
        cand, index = logits, None
    if params.temperature != 1.0:
        cand = cand / params.temperature
    logp = cand.log_softmax(dim=-1)
    if params.top_p < 1.0:
        # candidates are sorted: drop those lying wholly beyond the nucleus (the first always stays)
        probs = logp.exp()
        logp = logp.masked_fill(probs.cumsum(dim=-1) - probs >= params.top_p, float("-inf")).log_softmax(dim=-1)
    return logp, index


def sample_next(
    logits: torch.Tensor, params: SamplingParams, generators: list[torch.Generator] | None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Draw one code per (row, codebook).

    The draw is the exponential race argmax(p / E), E = -log(1 - U), U ~ Uniform(0, 1) — a categorical
    draw — with each row's noise from that row's own generator, so a row's draw does not depend on its
    batch mates.

    Args:
        logits: [B, K, V] (already CFG-combined).
        generators: B generators (ignored when greedy).
    Returns:
        codes [B, K] int64; logprobs [B, K] = log-probability of each code under the distribution it
        was drawn from (``candidate_logprobs``; for greedy, under the temperature-1 logits).
    """
    if params.greedy:
        logits = logits.float()
        codes = logits.argmax(dim=-1)
        return codes, logits.log_softmax(dim=-1).gather(-1, codes[..., None])[..., 0]
    if generators is None or len(generators) != logits.shape[0]:
        raise ValueError("sampling needs one generator per batch row")
    logp, index = candidate_logprobs(logits, params)
    uniform = torch.stack([torch.rand(logp.shape[1:], generator=g, device=logp.device) for g in generators])
    choice = (logp.exp() / -torch.log1p(-uniform)).argmax(dim=-1, keepdim=True)
    codes = choice if index is None else index.gather(-1, choice)
    return codes[..., 0], logp.gather(-1, choice)[..., 0]
