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


def hypervolume(points: np.ndarray, reference: np.ndarray) -> float:
    """Area dominated by 2-D points (both metrics larger = better) above a reference point.

    points [P, 2]; reference [2]. A point contributes only where it beats the reference in both metrics;
    dominated points add nothing. Example: points (1, 3), (2, 2), (3, 1), reference (0, 0): the union of
    the three rectangles = 3·1 + 2·1 + 1·1 = 6."""
    p = np.asarray(points, dtype=float).reshape(-1, 2)
    ref = np.asarray(reference, dtype=float).reshape(2)
    p = p[np.all(p > ref, axis=1) & np.all(np.isfinite(p), axis=1)]
    if not len(p):
        return 0.0
    p = p[np.argsort(-p[:, 0])]  # sweep from the largest x: each point adds the strip above the best y so far
    area, best_y = 0.0, ref[1]
    for x, y in p:
        if y > best_y:
            area += (x - ref[0]) * (y - best_y)
            best_y = y
    return float(area)


def hypervolumes(
    curves: dict[str, list[dict]],
    metrics: tuple[str, str],
    reference: tuple[float, float] | None = None,
    n_boot: int = 1000,
    seed: int = 0,
) -> dict[str, tuple[float, tuple[float, float]]]:
    """Each curve's hypervolume of its settings' mean (metrics[0], metrics[1]), with a 95 % interval that
    resamples the prompts jointly for every setting of every curve; plus ``"A − B"`` for each pair of curves
    (a paired interval). ``reference``: the point the volume is measured from; None = the smallest mean of
    each metric over all the settings (recomputed per resample)."""
    names = list(curves)
    settings = [s for name in names for s in curves[name]]
    per_prompt = [[np.asarray(s["per_prompt"][m], dtype=float) for m in metrics] for s in settings]
    n = {len(v) for pair in per_prompt for v in pair}
    if len(n) != 1:
        raise ValueError("every setting needs per-prompt values of both metrics on the same prompts")
    num_prompts = n.pop()
    bounds = np.cumsum([0] + [len(curves[name]) for name in names])

    def volumes(idx: np.ndarray) -> np.ndarray:
        means = np.array([[np.nanmean(v[idx]) for v in pair] for pair in per_prompt])  # [S, 2]
        ref = np.asarray(reference, dtype=float) if reference is not None else means.min(axis=0)
        hv = [hypervolume(means[bounds[i] : bounds[i + 1]], ref) for i in range(len(names))]
        diffs = [hv[i] - hv[j] for i in range(len(names)) for j in range(i + 1, len(names))]
        return np.array(hv + diffs)

    point = volumes(np.arange(num_prompts))
    rng = np.random.default_rng(seed)
    boots = np.stack([volumes(rng.integers(0, num_prompts, num_prompts)) for _ in range(n_boot)])
    keys = names + [f"{names[i]} − {names[j]}" for i in range(len(names)) for j in range(i + 1, len(names))]
    return {
        key: (float(point[k]), (float(np.percentile(boots[:, k], 2.5)), float(np.percentile(boots[:, k], 97.5))))
        for k, key in enumerate(keys)
    }
