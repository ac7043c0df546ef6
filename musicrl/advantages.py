"""Advantage estimators and return computations for sequence-level rewards (pure functions).

Shape letters: B prompts (or sequences), G generations per prompt, K codebooks, T steps.
Grouped samples are laid out either as [B, G] or flattened prompt-major as [B*G]
(index ``b*G + g``: the G samples of one prompt are contiguous).

References: leave-one-out REINFORCE (Kool et al. 2019, "Buy 4 REINFORCE samples, get a baseline
for free"; RLOO, Ahmadian et al. 2024) used for the diversity reward of CFG distillation (arXiv:2410.06084); per-step
returns for MusicRL's value baseline (arXiv:2402.04229).
"""

from __future__ import annotations

import torch
from torch import Tensor

__all__ = ["discounted_returns", "leave_one_out_advantages", "whiten"]


def leave_one_out_advantages(rewards: Tensor, group_size: int) -> Tensor:
    """Each sample's reward minus the mean reward of its G−1 siblings (same prompt).

    rewards: [B, G] or [B*G] (prompt-major); group_size: G ≥ 2. Returns the same shape::

        A_i = r_i − (Σ_{j≠i} r_j) / (G−1) = G/(G−1) · (r_i − mean_j r_j)

    Example: [1, 2, 3] -> [1 − 2.5, 2 − 2, 3 − 1.5] = [−1.5, 0, 1.5]. The baseline does not depend
    on r_i, so the policy-gradient estimate stays unbiased. Result is detached from ``rewards``.
    """
    if group_size < 2:
        raise ValueError(f"leave-one-out needs group_size >= 2, got {group_size}")
    if rewards.dim() == 2:
        if rewards.shape[1] != group_size:
            raise ValueError(f"rewards [B, G] has G={rewards.shape[1]} but group_size={group_size}")
        grouped = rewards
    elif rewards.dim() == 1:
        if rewards.numel() % group_size != 0:
            raise ValueError(f"rewards [B*G] has {rewards.numel()} entries, not a multiple of G={group_size}")
        grouped = rewards.view(-1, group_size)
    else:
        raise ValueError(f"rewards must be [B, G] or [B*G], got shape {tuple(rewards.shape)}")
    grouped = grouped.detach()
    if not grouped.is_floating_point():
        grouped = grouped.float()
    baseline = (grouped.sum(dim=1, keepdim=True) - grouped) / (group_size - 1)
    return (grouped - baseline).reshape(rewards.shape)


def whiten(values: Tensor, mask: Tensor | None = None, shift_mean: bool = True, eps: float = 1e-8) -> Tensor:
    """Normalise to zero mean and unit standard deviation over the (valid) entries.

    values: any shape; mask: optional bool of the same shape (statistics use only valid entries;
    invalid entries are returned as 0). Uses the population variance (divide by N, not N−1).
    ``shift_mean=False`` only rescales (keeps the mean, as PPO implementations do for rewards).
    Result: ``(x − μ) / sqrt(σ² + eps)`` (or ``x / sqrt(σ² + eps)`` without shifting).
    """
    x = values if values.is_floating_point() else values.float()
    if mask is None:
        mask = torch.ones_like(x, dtype=torch.bool)
    if mask.dtype != torch.bool or mask.shape != x.shape:
        raise ValueError(f"mask must be bool with shape {tuple(x.shape)}, got {mask.dtype} {tuple(mask.shape)}")
    m = mask.to(x.dtype)
    n = m.sum().clamp_min(1.0)
    mean = (x * m).sum() / n
    var = (((x - mean) * m) ** 2).sum() / n
    out = (x - mean) if shift_mean else x
    return out * torch.rsqrt(var + eps) * m


def discounted_returns(rewards: Tensor, mask: Tensor, gamma: float = 1.0) -> Tensor:
    """Per-step returns G_t of a terminal sequence-level reward.

    rewards: [B] (one scalar per sequence, received after its last valid step); mask: bool
    [B, K, T] or [B, T]. With t_last(b) the last step holding any valid position of sequence b::

        G_{b,t} = γ^(t_last(b) − t) · R_b   for valid positions, 0 elsewhere.

    γ = 1 broadcasts R_b to every valid position. All codebooks of one step share the same return
    (the K codes of a step are emitted together). Returns the shape of ``mask``.
    """
    if not 0.0 <= gamma <= 1.0:
        raise ValueError(f"gamma must lie in [0, 1], got {gamma}")
    if mask.dtype != torch.bool or mask.dim() not in (2, 3):
        raise ValueError(f"mask must be bool [B, K, T] or [B, T], got {mask.dtype} {tuple(mask.shape)}")
    if rewards.shape != mask.shape[:1]:
        raise ValueError(f"rewards must be [B]={tuple(mask.shape[:1])}, got {tuple(rewards.shape)}")
    r = rewards.detach()
    if not r.is_floating_point():
        r = r.float()
    step_valid = mask if mask.dim() == 2 else mask.any(dim=1)  # [B, T]
    t = torch.arange(mask.shape[-1], device=mask.device)
    t_last = torch.where(step_valid, t, torch.full_like(t, -1)).amax(dim=1)  # [B]; -1 if empty
    exponent = (t_last[:, None] - t[None, :]).clamp_min(0).to(r.dtype)  # [B, T]
    per_step = r[:, None] * torch.pow(torch.tensor(gamma, dtype=r.dtype, device=r.device), exponent)
    if mask.dim() == 3:
        per_step = per_step[:, None, :].expand(mask.shape)
    return per_step * mask.to(r.dtype)
