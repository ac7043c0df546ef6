"""How well a preference reward model predicts held-out votes: accuracy, calibration, intervals.

    report = preference_report(diff, labels, groups)       # diff [N] = r(A) − r(B); labels [N] = P(A ≻ B)
    plot_reliability(report["reliability"], "run/reliability.png")

Every vote is taken in the orientation the rater saw it (clip A, clip B: the app's random blind
sides), so a model's predicted probability p = σ(r_A − r_B) meets outcomes of both kinds and its
calibration can be measured. labels: 1 = A preferred, 0 = B preferred, ½ = a tie (ties count in the
Bradley–Terry loss, which the recipe computes with ``musicrl.losses``; accuracy and calibration use
the decisive votes only).

- pairwise accuracy: the fraction of decisive votes whose preferred clip gets the higher reward
  (an exact reward tie counts ½); 95 % interval by a bootstrap over ``groups`` (the prompts: the
  split is by prompt, so prompts are the sampled unit and votes of one prompt are not independent);
- expected calibration error over ``bins`` equal-width bins of p: Σ_b (n_b / N) |mean p_b − mean y_b|
  (Guo et al. 2017); p = 0.5 everywhere on a 50/50 outcome set gives 0.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from evaluation.plots import _figure


def _arrays(diff, labels) -> tuple[np.ndarray, np.ndarray]:
    d = np.asarray(diff, dtype=np.float64).reshape(-1)
    y = np.asarray(labels, dtype=np.float64).reshape(-1)
    if d.shape != y.shape:
        raise ValueError(f"diff {d.shape} and labels {y.shape} must both be [N]")
    return d, y


def decisive_correct(diff, labels) -> np.ndarray:
    """Per decisive vote (label 0 or 1): 1 if the preferred clip has the higher reward, ½ on an exact
    reward tie, else 0. diff, labels [N] -> [M], M = number of decisive votes."""
    d, y = _arrays(diff, labels)
    keep = y != 0.5
    d, y = d[keep], y[keep]
    return np.where(d == 0, 0.5, ((d > 0) == (y == 1)).astype(np.float64))


def cluster_bootstrap_ci(
    values: np.ndarray, groups: Sequence, n_boot: int = 1000, seed: int = 0
) -> tuple[float, float]:
    """95 % percentile interval of the mean of ``values`` [M] when whole ``groups`` [M] are resampled
    (the mean is over the votes of the drawn groups). NaN for no values."""
    values = np.asarray(values, dtype=np.float64)
    if values.size == 0:
        return float("nan"), float("nan")
    _, inverse = np.unique(np.asarray(groups, dtype=object).astype(str), return_inverse=True)
    sums = np.bincount(inverse, weights=values)
    counts = np.bincount(inverse).astype(np.float64)
    rng = np.random.default_rng(seed)
    draws = rng.integers(0, sums.size, size=(n_boot, sums.size))
    means = sums[draws].sum(1) / counts[draws].sum(1)
    return float(np.percentile(means, 2.5)), float(np.percentile(means, 97.5))


def expected_calibration_error(probs, outcomes, bins: int = 10) -> tuple[float, list[dict]]:
    """ECE of predicted probabilities [N] against 0/1 outcomes [N] over ``bins`` equal-width bins of
    [0, 1] (p = 1 falls in the last). Returns (ece, one row per non-empty bin: lo, hi, n,
    mean_prob, frequency). Example: p = [0.9, 0.9], y = [1, 0] -> one bin, |0.9 − 0.5| = 0.4."""
    p, y = _arrays(probs, outcomes)
    if p.size == 0:
        return float("nan"), []
    index = np.minimum((p * bins).astype(int), bins - 1)
    table, ece = [], 0.0
    for b in range(bins):
        sel = index == b
        n = int(sel.sum())
        if not n:
            continue
        mean_p, freq = float(p[sel].mean()), float(y[sel].mean())
        ece += n / p.size * abs(mean_p - freq)
        table.append({"lo": b / bins, "hi": (b + 1) / bins, "n": n, "mean_prob": mean_p, "frequency": freq})
    return float(ece), table


def preference_report(diff, labels, groups: Sequence, bins: int = 10, n_boot: int = 1000, seed: int = 0) -> dict:
    """Held-out numbers of one reward model: diff [N] = r(A) − r(B), labels [N] = P(A ≻ B), groups [N]
    (the prompt of each vote). Keys: votes, decisive, accuracy, accuracy_ci, ece, reliability."""
    d, y = _arrays(diff, labels)
    groups = np.asarray(groups, dtype=object)
    keep = y != 0.5
    correct = decisive_correct(d, y)
    probs = 1.0 / (1.0 + np.exp(-d[keep]))
    ece, table = expected_calibration_error(probs, y[keep], bins)
    return {
        "votes": int(d.size),
        "decisive": int(keep.sum()),
        "accuracy": float(correct.mean()) if correct.size else float("nan"),
        "accuracy_ci": list(cluster_bootstrap_ci(correct, groups[keep], n_boot, seed)),
        "ece": ece,
        "reliability": table,
    }


def plot_reliability(curves: dict[str, list[dict]], path: str | Path, title: str = "") -> Path:
    """Reliability diagram: per model, the observed frequency of "A preferred" against the mean
    predicted probability in each bin, and the diagonal."""
    fig = _figure(5.0, 5.0)
    ax = fig.add_subplot(1, 1, 1)
    ax.plot([0, 1], [0, 1], color="0.6", linestyle="--", linewidth=1, label="perfectly calibrated")
    for name, table in curves.items():
        if not table:
            continue
        x = [r["mean_prob"] for r in table]
        ax.plot(x, [r["frequency"] for r in table], marker="o", linewidth=1, label=name)
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.set_xlabel("predicted P(A preferred) = σ(r_A − r_B)")
    ax.set_ylabel("observed frequency of A preferred")
    ax.set_title(title or "held-out calibration")
    ax.legend(loc="upper left", fontsize=8)
    path = Path(path)
    fig.savefig(path, bbox_inches="tight")
    return path
