"""Fitting the signal judges on labelled clips, and their accuracy with honest intervals.

Everything here is a pure function of measured values and the clips' true labels (the recipe
``musicrl train signal-judges`` measures and orchestrates): fit on a corpus's train split, score on its
test split. Intervals resample *compositions* (a corpus renders each composition several times with
other lead instruments; those clips share tempo, key and drums, so they are not independent draws).

Shapes: N clips; G tempo candidates.
"""

from __future__ import annotations

import numpy as np

from evaluation.signal_judges import (
    KEYS,
    ChromaFrames,
    PercussiveSpectrum,
    estimate_key,
    fit_profiles,
    log_normal_prior,
    summarise_chroma,
)
from models.errors import InputError


def fit_tempo_prior(
    salience: np.ndarray,
    bpms: np.ndarray,
    truth: np.ndarray,
    tolerance: float = 0.08,
    centres: np.ndarray | None = None,
    widths: np.ndarray | None = None,
) -> tuple[float, float]:
    """The log-normal prior (centre BPM, width in octaves) under which the argmax of salience x prior is
    within ``tolerance`` of the true tempo (no octave allowance) most often, over a grid.

    salience [N, G] (``tempo_salience``, clipped at 0), bpms [G], truth [N] -> (centre, octaves). Ties go to
    the widest prior (the least assumption)."""
    centres = np.arange(70.0, 161.0, 2.5) if centres is None else centres
    widths = np.array([0.4, 0.5, 0.6, 0.75, 0.9, 1.0, 1.25, 1.5, 2.0]) if widths is None else widths
    if salience.shape != (len(truth), len(bpms)):
        raise ValueError(f"salience must be [N, G] = [{len(truth)}, {len(bpms)}], got {salience.shape}")
    best = (-1.0, 0.0, 120.0, 1.0)
    for width in widths:
        for centre in centres:
            est = bpms[(salience * log_normal_prior(bpms, centre, width)).argmax(1)]
            acc = float(np.mean(np.abs(est - truth) <= tolerance * truth))
            if (acc, width) > best[:2]:
                best = (acc, float(width), float(centre), float(width))
    return best[2], best[3]


def fit_threshold(values: np.ndarray, labels: np.ndarray) -> float:
    """The threshold t maximising balanced accuracy of ``values >= t`` as the label (mean of the true-
    positive and true-negative rates, so a rare class counts as much as a common one): [N], [N] bool ->
    t, the midpoint between the best cut's neighbouring values. values [0.1, 0.2, 0.6, 0.9] with labels
    [F, F, T, T] -> 0.4."""
    labels = np.asarray(labels, dtype=bool)
    if labels.all() or not labels.any():
        raise InputError("fitting a threshold needs clips of both classes")
    order = np.argsort(values)
    v, y = np.asarray(values, dtype=np.float64)[order], labels[order]
    # cut k: the k lowest values say "no"; rates of every cut at once
    neg_below = np.concatenate([[0], np.cumsum(~y)])  # negatives correctly below the cut
    pos_above = y.sum() - np.concatenate([[0], np.cumsum(y)])
    balanced = 0.5 * neg_below / (~y).sum() + 0.5 * pos_above / y.sum()
    cuts = np.concatenate([[v[0] - 1e-6], 0.5 * (v[1:] + v[:-1]), [v[-1] + 1e-6]])
    return float(cuts[int(np.argmax(balanced))])


def accuracy_ci(correct: np.ndarray, groups: list[str] | np.ndarray, n_boot: int = 2000, seed: int = 0) -> dict:
    """Accuracy of N judged clips and its 95 % interval from resampling groups (compositions) with
    replacement: correct [N] bool, groups [N] -> {"accuracy", "ci": [lo, hi], "n", "groups"}. With every
    clip its own group this is the ordinary percentile bootstrap of a proportion."""
    correct = np.asarray(correct, dtype=np.float64)
    if correct.size == 0:
        return {"accuracy": float("nan"), "ci": [float("nan"), float("nan")], "n": 0, "groups": 0}
    _, index = np.unique(np.asarray(groups), return_inverse=True)
    hits = np.bincount(index, weights=correct)
    sizes = np.bincount(index).astype(np.float64)
    rng = np.random.default_rng(seed)
    draws = rng.integers(0, hits.size, size=(n_boot, hits.size))
    means = hits[draws].sum(1) / sizes[draws].sum(1)
    lo, hi = np.percentile(means, [2.5, 97.5])
    return {"accuracy": float(correct.mean()), "ci": [float(lo), float(hi)], "n": int(correct.size),
            "groups": int(hits.size)}


def fit_key(
    chroma: list[ChromaFrames], keys: list[str], modes: list[str], openings: tuple[float, ...] = (0, 1, 1.5, 2, 3, 4)
) -> tuple[float, dict[str, list[float]]]:
    """The opening weight (seconds; 0 = flat) and the profiles fitted under it (``fit_profiles``) that name
    the key and mode of the most clips: N chroma frames with their true keys and modes -> (opening_s,
    profiles)."""
    best: tuple[float, float, dict] = (-1.0, 0.0, {})
    for opening in openings:
        feats = np.stack([summarise_chroma(c, opening) for c in chroma])
        profiles = fit_profiles(feats, [KEYS.index(k) for k in keys], modes)
        hits = [
            (e.key, e.mode) == (k, m)
            for e, k, m in zip((estimate_key(f, profiles) for f in feats), keys, modes, strict=True)
        ]
        if np.mean(hits) > best[0]:
            best = (float(np.mean(hits)), float(opening), profiles)
    return best[1], best[2]


def fit_drums(
    spectra: list[PercussiveSpectrum], drums: np.ndarray, edges: tuple[float, ...] = (0, 1000, 2000, 3000, 4000, 5000)
) -> tuple[float, float]:
    """The band (energy at or above ``min_hz``) whose percussive share, thresholded (``fit_threshold``),
    tells drums from none with the best balanced accuracy: N spectra, [N] bool -> (min_hz, threshold)."""
    drums = np.asarray(drums, dtype=bool)
    best = (-1.0, 0.0, 0.0)
    for edge in edges:
        shares = np.array([s.share(edge) for s in spectra])
        t = fit_threshold(shares, drums)
        said = shares >= t
        balanced = 0.5 * said[drums].mean() + 0.5 * (~said[~drums]).mean()
        if balanced > best[0]:
            best = (float(balanced), float(edge), t)
    return best[1], best[2]
