"""Weight-space merging of state dicts: LERP, SLERP of task vectors, LITI, uniform averaging.

All functions take ``dict[str, Tensor]`` state dicts sharing one architecture and return a new
state dict (the inputs are never modified) with the keys in the order of the first argument.

Validation (``ValueError`` naming the first offending key): the same key set everywhere, the same
shape per key, and a floating tensor in one dict must be floating in all. Non-floating tensors
(step counters, index buffers) are not interpolated: they must be equal in every input and are
copied. Floating tensors are combined in float32 (float64 stays float64) and cast back to the
dtype of the first argument's tensor.

Coefficients (λ, η) outside [0, 1] extrapolate and are refused unless ``extrapolate=True``.

References: θ_λ = (1−λ)θ_q + λθ_d (Cideron et al. 2024, arXiv:2410.06084), WARM's uniform weight
average (Ramé et al. 2024, arXiv:2401.12187), rewarded soups (Ramé et al. 2023, arXiv:2306.04488) and
WARP's per-layer SLERP of task vectors and LITI (Ramé et al. 2024, arXiv:2406.16768). WARP's EMA anchor update
θ_ema ← (1−μ)θ_ema + μθ is ``lerp(ema, current, mu)``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import torch
from torch import Tensor

StateDict = Mapping[str, Tensor]

__all__ = ["average", "lerp", "liti", "slerp_task_vectors"]


# ----------------------------------------------------------------------------- validation


def _validate(named: Sequence[tuple[str, StateDict]]) -> None:
    """Check keys, shapes and floating-ness of several state dicts against the first one."""
    ref_name, ref = named[0]
    for name, sd in named[1:]:
        for key in ref:
            if key not in sd:
                raise ValueError(f"key {key!r} is in {ref_name} but missing from {name}")
        for key in sd:
            if key not in ref:
                raise ValueError(f"key {key!r} is in {name} but missing from {ref_name}")
    for key, t in ref.items():
        for name, sd in named[1:]:
            other = sd[key]
            if other.shape != t.shape:
                raise ValueError(
                    f"shape mismatch at key {key!r}: {ref_name} has {tuple(t.shape)}, {name} has {tuple(other.shape)}"
                )
            if other.is_floating_point() != t.is_floating_point():
                raise ValueError(f"dtype mismatch at key {key!r}: {ref_name} has {t.dtype}, {name} has {other.dtype}")
            if not t.is_floating_point() and not torch.equal(other.to(t.device), t):
                raise ValueError(
                    f"non-floating tensor at key {key!r} differs between {ref_name} and {name}; "
                    "integer/bool buffers cannot be interpolated"
                )


def _check_coef(value: float, name: str, extrapolate: bool) -> float:
    value = float(value)
    if not math.isfinite(value):
        raise ValueError(f"{name} must be finite, got {value}")
    if not extrapolate and not 0.0 <= value <= 1.0:
        raise ValueError(f"{name}={value} lies outside [0, 1]; pass extrapolate=True to extrapolate")
    return value


def _fp(t: Tensor, device: torch.device) -> Tensor:
    return t.to(device=device, dtype=torch.promote_types(t.dtype, torch.float32))


# ----------------------------------------------------------------------------- merges


def lerp(a: StateDict, b: StateDict, lam: float, *, extrapolate: bool = False) -> dict[str, Tensor]:
    """Linear interpolation θ_λ = (1−λ)·a + λ·b, per tensor.

    λ = 0 returns a, λ = 1 returns b (exactly, up to the dtype cast). Used for the quality/diversity
    trade-off θ_λ = (1−λ)θ_q + λθ_d (Cideron et al. 2024, arXiv:2410.06084) and rewarded soups (arXiv:2306.04488).
    """
    lam = _check_coef(lam, "lam", extrapolate)
    _validate([("a", a), ("b", b)])
    out: dict[str, Tensor] = {}
    for key, ta in a.items():
        if not ta.is_floating_point():
            out[key] = ta.clone()
            continue
        fa, fb = _fp(ta, ta.device), _fp(b[key], ta.device)
        out[key] = ((1.0 - lam) * fa + lam * fb).to(ta.dtype)
    return out


def liti(init: StateDict, merged: StateDict, eta: float, *, extrapolate: bool = False) -> dict[str, Tensor]:
    """LITI (WARP, Ramé et al. 2024, arXiv:2406.16768): θ_η = (1−η)·θ_init + η·θ_merged.

    Sliding η from 0 (the init) to 1 (the merged policy) traces a reward–KL front.
    """
    eta = _check_coef(eta, "eta", extrapolate)
    _validate([("init", init), ("merged", merged)])
    return lerp(init, merged, eta, extrapolate=True)


def _slerp_coefficients(u: Tensor, v: Tensor, lam: float, angle_eps: float) -> tuple[Tensor, Tensor]:
    """Coefficients (c_u, c_v) with slerp = c_u·u + c_v·v; LERP's (1−λ, λ) when SLERP is ill-posed.

    The angle uses Ω = 2·atan2(‖û − v̂‖, ‖û + v̂‖), accurate at every angle (arccos of the cosine
    loses all precision near 0 and π).
    """
    nu, nv = u.norm(), v.norm()
    degenerate = (nu == 0) | (nv == 0)
    uh = u / torch.where(nu == 0, torch.ones_like(nu), nu)
    vh = v / torch.where(nv == 0, torch.ones_like(nv), nv)
    omega = 2.0 * torch.atan2((uh - vh).norm(), (uh + vh).norm())
    # Nearly parallel: SLERP -> LERP anyway. Nearly antiparallel: the arc is not unique.
    use_lerp = degenerate | (omega < angle_eps) | (math.pi - omega < angle_eps)
    sin_omega = torch.where(use_lerp, torch.ones_like(omega), torch.sin(omega))
    c_u = torch.where(use_lerp, torch.full_like(omega, 1.0 - lam), torch.sin((1.0 - lam) * omega) / sin_omega)
    c_v = torch.where(use_lerp, torch.full_like(omega, lam), torch.sin(lam * omega) / sin_omega)
    return c_u, c_v


def slerp_task_vectors(
    init: StateDict,
    a: StateDict,
    b: StateDict,
    lam: float,
    *,
    extrapolate: bool = False,
    angle_eps: float = 1e-4,
) -> dict[str, Tensor]:
    """Per-tensor SLERP of the task vectors δ_a = a − init and δ_b = b − init, added back to init.

    WARP (arXiv:2406.16768). For each floating tensor, with Ω the angle between δ_a and δ_b
    (flattened)::

        θ = init + sin((1−λ)Ω)/sin Ω · δ_a + sin(λΩ)/sin Ω · δ_b

    λ = 0 gives a, λ = 1 gives b. Unlike LERP, merging two orthogonal task vectors of equal norm
    at λ = ½ keeps that norm (LERP shrinks it by 1/√2). Falls back to LERP of the task vectors
    (= LERP of a and b) for a tensor whose task vectors are nearly parallel (Ω < angle_eps, where
    both coincide to O(Ω²)), nearly antiparallel (π − Ω < angle_eps, where the great circle is
    not unique), or where either task vector is exactly zero. "Per layer" here means per tensor
    of the state dict.
    """
    lam = _check_coef(lam, "lam", extrapolate)
    _validate([("init", init), ("a", a), ("b", b)])
    out: dict[str, Tensor] = {}
    for key, ti in init.items():
        if not ti.is_floating_point():
            out[key] = ti.clone()
            continue
        fi = _fp(ti, ti.device)
        u = _fp(a[key], ti.device) - fi
        v = _fp(b[key], ti.device) - fi
        c_u, c_v = _slerp_coefficients(u.flatten(), v.flatten(), lam, angle_eps)
        out[key] = (fi + c_u * u + c_v * v).to(ti.dtype)
    return out


def average(
    state_dicts: Sequence[StateDict],
    weights: Sequence[float] | None = None,
    *,
    extrapolate: bool = False,
) -> dict[str, Tensor]:
    """Weight average Σ_i w_i·θ_i of M state dicts (WARM, arXiv:2401.12187: uniform, w_i = 1/M).

    weights: optional, length M, must sum to 1 (tolerance 1e-6); negative weights only with
    ``extrapolate=True``. The result has the keys and dtypes of ``state_dicts[0]``.
    """
    if len(state_dicts) == 0:
        raise ValueError("average needs at least one state dict")
    m = len(state_dicts)
    if weights is None:
        w = [1.0 / m] * m
    else:
        if len(weights) != m:
            raise ValueError(f"got {len(weights)} weights for {m} state dicts")
        w = [float(x) for x in weights]
        if not all(math.isfinite(x) for x in w):
            raise ValueError(f"weights must be finite, got {w}")
        if abs(sum(w) - 1.0) > 1e-6:
            raise ValueError(f"weights must sum to 1, got sum {sum(w)}")
        if not extrapolate and any(x < 0 for x in w):
            raise ValueError(f"negative weights {w} extrapolate; pass extrapolate=True to allow them")
    _validate([(f"state_dicts[{i}]", sd) for i, sd in enumerate(state_dicts)])
    first = state_dicts[0]
    out: dict[str, Tensor] = {}
    for key, t0 in first.items():
        if not t0.is_floating_point():
            out[key] = t0.clone()
            continue
        acc = w[0] * _fp(t0, t0.device)
        for wi, sd in zip(w[1:], state_dicts[1:], strict=True):
            acc = acc + wi * _fp(sd[key], t0.device)
        out[key] = acc.to(t0.dtype)
    return out
