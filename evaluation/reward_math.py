"""Reward and metric arithmetic on embeddings (pure; the embedding models live elsewhere).

Shape letters: B prompts, G generations per prompt, D embedding dim, S segments of one clip.
The same functions serve as RL rewards and as evaluation metrics (STYLE principle 7): the
diversity optimised in training is exactly the diversity reported.

Cosine similarity uses L2-normalised embeddings (``F.normalize`` with eps 1e-12), so an all-zero
embedding has cosine 0 with everything.

References: diversity-rewarded CFG distillation (diversity reward r_D = 1 − cos, Cideron et al. 2024,
arXiv:2410.06084), MusicRL (MuLan score, MOS rescaling, linear reward mix; arXiv:2402.04229),
the evaluation metrics of MusicGen (Copet et al. 2023, arXiv:2306.05284).
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = [
    "cosine_adherence",
    "diversity_rewards",
    "mean_pairwise_diversity",
    "mix_rewards",
    "quality_from_mos",
]


def _check_group_embeddings(embeddings: Tensor) -> None:
    if embeddings.dim() != 3:
        raise ValueError(f"embeddings must be [B, G, D], got shape {tuple(embeddings.shape)}")
    if embeddings.shape[1] < 2:
        raise ValueError(f"diversity needs at least G=2 generations per prompt, got G={embeddings.shape[1]}")
    if not embeddings.is_floating_point():
        raise TypeError(f"embeddings must be floating point, got dtype {embeddings.dtype}")


def _pairwise_dissimilarity(embeddings: Tensor) -> Tensor:
    """[B, G, D] -> [B, G, G] matrix of 1 − cos(e_i, e_j)."""
    e = F.normalize(embeddings.to(torch.promote_types(embeddings.dtype, torch.float32)), dim=-1)
    return 1.0 - e @ e.transpose(1, 2)


def diversity_rewards(embeddings: Tensor) -> Tensor:
    """Per-sample diversity reward: mean dissimilarity to the G−1 siblings of the same prompt.

    embeddings: [B, G, D] (G ≥ 2) -> [B, G]::

        r_{b,i} = 1/(G−1) · Σ_{j≠i} (1 − cos(e_{b,i}, e_{b,j}))

    For G = 2 this is the paper's pairwise r_D = 1 − cos(E(y1), E(y2)) for both samples.
    Identical embeddings give 0, orthogonal ones 1, opposite ones 2. Differentiable in the
    embeddings (useful for tests; in REINFORCE the reward is a constant).
    """
    _check_group_embeddings(embeddings)
    g = embeddings.shape[1]
    dissim = _pairwise_dissimilarity(embeddings)
    # Exclude the diagonal explicitly: 1 − cos(e, e) is 0 only up to rounding.
    off_diag = ~torch.eye(g, dtype=torch.bool, device=embeddings.device)
    return (dissim * off_diag).sum(dim=2) / (g - 1)


def mean_pairwise_diversity(embeddings: Tensor) -> Tensor:
    """Evaluation metric: mean over unordered pairs i < j of 1 − cos(e_i, e_j), per prompt.

    embeddings: [B, G, D] (G ≥ 2) -> [B]. Each pair appears twice among the G(G−1) ordered pairs
    summed by :func:`diversity_rewards`, so this equals ``diversity_rewards(e).mean(dim=1)``.
    """
    _check_group_embeddings(embeddings)
    g = embeddings.shape[1]
    dissim = _pairwise_dissimilarity(embeddings)
    i, j = torch.triu_indices(g, g, offset=1, device=embeddings.device)
    return dissim[:, i, j].mean(dim=1)


def cosine_adherence(text_emb: Tensor, audio_emb: Tensor, segment_mask: Tensor | None = None) -> Tensor:
    """Text adherence (MuLan/CLAP score): cosine of a joint text and audio embedding.

    text_emb: [B, D]. audio_emb: [B, D], or [B, S, D] for a long clip embedded per segment, in
    which case the score is the mean cosine over its segments (MusicRL scores long clips per
    segment and averages); ``segment_mask`` [B, S] bool then marks the real segments.
    Returns [B] in [−1, 1].
    """
    if text_emb.dim() != 2:
        raise ValueError(f"text_emb must be [B, D], got shape {tuple(text_emb.shape)}")
    dtype = torch.promote_types(text_emb.dtype, torch.float32)
    t = F.normalize(text_emb.to(dtype), dim=-1)
    if audio_emb.dim() == 2:
        if audio_emb.shape != text_emb.shape:
            raise ValueError(f"audio_emb {tuple(audio_emb.shape)} must match text_emb {tuple(text_emb.shape)}")
        if segment_mask is not None:
            raise ValueError("segment_mask only applies to per-segment audio_emb [B, S, D]")
        return (t * F.normalize(audio_emb.to(dtype), dim=-1)).sum(dim=-1)
    b, d = text_emb.shape
    if audio_emb.dim() != 3 or audio_emb.shape[0] != b or audio_emb.shape[2] != d:
        raise ValueError(
            f"audio_emb must be [B, D] or [B, S, D] with B={text_emb.shape[0]}, D={text_emb.shape[1]}, "
            f"got {tuple(audio_emb.shape)}"
        )
    cos = (t[:, None, :] * F.normalize(audio_emb.to(dtype), dim=-1)).sum(dim=-1)  # [B, S]
    if segment_mask is None:
        return cos.mean(dim=1)
    if segment_mask.dtype != torch.bool or segment_mask.shape != cos.shape:
        raise ValueError(
            f"segment_mask must be bool {tuple(cos.shape)}, got {segment_mask.dtype} {tuple(segment_mask.shape)}"
        )
    if not bool(segment_mask.any(dim=1).all()):
        raise ValueError("every clip needs at least one valid segment")
    m = segment_mask.to(dtype)
    return (cos * m).sum(dim=1) / m.sum(dim=1)


def quality_from_mos(mos: Tensor, low: float = 1.0, high: float = 5.0) -> Tensor:
    """Rescale a predicted MOS in [low, high] (default 1–5) to [0, 1]: (mos − low) / (high − low).

    Values outside the range are clamped (a MOS predictor may overshoot). MusicRL (Cideron et al. 2024,
    arXiv:2402.04229).
    """
    if not high > low:
        raise ValueError(f"need high > low, got low={low}, high={high}")
    return ((mos - low) / (high - low)).clamp(0.0, 1.0)


def mix_rewards(rewards: Mapping[str, Tensor], weights: Mapping[str, float]) -> Tensor:
    """Linear combination Σ_name weights[name] · rewards[name].

    rewards: name -> tensor, all of one shape (typically [B]); weights: name -> finite float,
    with exactly the same names (a missing or extra name is an error, never silently zero).
    Returns a tensor of that shape. MusicRL-R mixes MuLan and quality scores this way.
    """
    if not rewards:
        raise ValueError("rewards is empty")
    missing = sorted(set(rewards) - set(weights))
    extra = sorted(set(weights) - set(rewards))
    if missing or extra:
        raise ValueError(f"reward/weight names differ: no weight for {missing}, no reward for {extra}")
    names = list(rewards)
    shape = rewards[names[0]].shape
    total: Tensor | None = None
    for name in names:
        r = rewards[name]
        if r.shape != shape:
            raise ValueError(f"reward {name!r} has shape {tuple(r.shape)}, expected {tuple(shape)} (as {names[0]!r})")
        w = float(weights[name])
        if not math.isfinite(w):
            raise ValueError(f"weight for {name!r} is not finite: {w}")
        term = w * (r if r.is_floating_point() else r.float())
        total = term if total is None else total + term
    assert total is not None
    return total
