"""Is one quality–diversity front above another? Gaps to a piecewise-linear front, with intervals.

A front is a list of evaluated settings (e.g. the base model's CFG γ-sweep), each with per-prompt
values of a metric and of diversity on the same prompts (``summary["per_prompt"]``). The gap of a
point is ``metric(point) − front(diversity(point))``, the front interpolated linearly between its
settings ordered by diversity; outside the front's diversity range it is undefined (NaN), never
extrapolated. Intervals resample prompts jointly for all settings, so they carry the shared
prompt-to-prompt spread only once.
"""

from __future__ import annotations

import numpy as np


def front_value(xs: np.ndarray, ys: np.ndarray, x: float) -> float:
    """Linear interpolation of the front (xs, ys) at x; NaN outside [min xs, max xs].

    Example: xs = [0.1, 0.3], ys = [1, 2]: x = 0.2 -> 1.5; x = 0.4 -> NaN."""
    order = np.argsort(xs)
    xs, ys = np.asarray(xs, dtype=float)[order], np.asarray(ys, dtype=float)[order]
    if not xs[0] <= x <= xs[-1]:
        return float("nan")
    return float(np.interp(x, xs, ys))


def _means(per_prompt: list[dict], metric: str, idx: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """[S] mean metric and mean diversity of each setting over the prompts ``idx`` (a resample)."""
    y = np.array([np.nanmean(np.asarray(p[metric], dtype=float)[idx]) for p in per_prompt])
    x = np.array([np.nanmean(np.asarray(p["diversity"], dtype=float)[idx]) for p in per_prompt])
    return x, y


def front_gaps(
    points: list[dict], front: list[dict], metric: str, n_boot: int = 1000, seed: int = 0
) -> list[tuple[float, tuple[float, float]]]:
    """For each point: (gap, 95 % interval) of ``metric`` above the front at the point's diversity.

    points, front: summaries with ``per_prompt`` holding ``metric`` and ``diversity`` over the same
    prompts. A resample where the point falls outside the front's range does not count toward the
    interval; the interval is NaN if fewer than half of the resamples count.
    """
    settings = points + front
    per_prompt = [s["per_prompt"] for s in settings]
    n = {len(p[k]) for p in per_prompt for k in (metric, "diversity")}
    if len(n) != 1:
        raise ValueError("every setting needs per-prompt values on the same prompts")
    num_prompts, k = n.pop(), len(points)

    def gaps(idx: np.ndarray) -> np.ndarray:
        x, y = _means(per_prompt, metric, idx)
        return np.array([y[i] - front_value(x[k:], y[k:], x[i]) for i in range(k)])

    point = gaps(np.arange(num_prompts))
    rng = np.random.default_rng(seed)
    boots = np.stack([gaps(rng.integers(0, num_prompts, num_prompts)) for _ in range(n_boot)])
    out = []
    for i in range(k):
        b = boots[:, i][~np.isnan(boots[:, i])]
        ci = (float(np.percentile(b, 2.5)), float(np.percentile(b, 97.5))) if b.size >= n_boot / 2 else (np.nan,) * 2
        out.append((float(point[i]), ci))
    return out
