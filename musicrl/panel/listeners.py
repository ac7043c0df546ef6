"""Simulated listeners: hidden, noisy tastes over audible features, and their calibration.

A listener's utility of a clip is linear in its standardised features z (``hearing.FEATURES``,
z = clip((raw − center) / scale, ±3), NaN -> 0 = "average")::

    u(clip) = (w_shared + w_individual) · z          w_individual ~ N(0, individual_sd² I), drawn from the seed

and for a pair (A, B), with Δ = u_A − u_B::

    P(both_bad) = both_bad_max · σ((both_bad_below − max(u_A, u_B)) / 0.25)      both clips poor
    P(tie)      = (1 − P(both_bad)) · tie_max · exp(−(Δ / (tie_width · τ))²)     clips hard to tell apart
    P(a)        = (1 − P(both_bad) − P(tie)) · σ(Δ / τ),   P(b) = the rest

Calibration (``calibrate``): τ is set by bisection so that two different listeners agree on
``target`` (default 65 %) of the pairs both judged decisively, in expectation over the pairs of a
calibration set and over listener pairs of a fixed sample of listeners. MusicRL's raters agreed ~60 %
(arXiv:2402.04229). The individual spread is a fixed constant (``individual_sd``): it caps the agreement
reachable at τ -> 0 (listeners then differ only in taste), which ``calibrate`` reports.

Determinism: listener i of seed s draws its taste and its votes from two streams spawned from
``SeedSequence([s, i])`` (no global RNG), so the same seed gives the same votes on the same clips.
Shapes: z [..., F]; pairs [P, 2, F].
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from itertools import combinations
from pathlib import Path

import numpy as np
from scipy.special import expit

from musicrl.panel.hearing import FEATURES

CHOICES = ("a", "b", "tie", "both_bad")
# The population's shared taste, one weight per FEATURES entry (judges first, then signal features).
SHARED_TASTE: dict[str, float] = {"attribute_match": 1.0, "judge_confidence": 0.5, "level": 0.4, "clipping": -0.5,
                                  "noisiness": -0.7, "brightness": 0.0, "silence": -0.6, "pulse": 0.4,
                                  "key_clarity": 0.5}
# Where features typically lie and how far they spread (z = (raw - center) / scale); measured with
# ``musicrl panel calibrate`` on the embedded default model's clips (docs/PANEL.md).
DEFAULT_CENTER: dict[str, float] = {"attribute_match": 0.45, "judge_confidence": 0.68, "level": -2.0, "clipping": 0.0,
                                    "noisiness": 0.015, "brightness": 9.7, "silence": 0.0, "pulse": 0.23,
                                    "key_clarity": 0.72}
DEFAULT_SCALE: dict[str, float] = {"attribute_match": 0.3, "judge_confidence": 0.1, "level": 1.8, "clipping": 0.005,
                                   "noisiness": 0.015, "brightness": 0.45, "silence": 0.05, "pulse": 0.08,
                                   "key_clarity": 0.1}
DEFAULT_TAU = 1.1  # 65 % agreement on the calibration set (tests/data/panel_calibration.json)
Z_LIMIT = 3.0


def _vector(table: dict[str, float]) -> tuple[float, ...]:
    return tuple(float(table[name]) for name in FEATURES)


@dataclass(frozen=True)
class PanelConfig:
    """The listener population: shared taste, individual spread, noise, and the feature scale.

    Vectors are in ``hearing.FEATURES`` order. ``tau``: choice temperature (utility units);
    ``tie_max``: P(tie) of two equal clips; ``tie_width``: how fast ties fade with Δ (units of τ);
    ``both_bad_max``/``both_bad_below``: "both are bad" when even the better clip's utility is low.
    """

    shared: tuple[float, ...] = _vector(SHARED_TASTE)
    individual_sd: float = 0.35
    tau: float = DEFAULT_TAU
    tie_max: float = 0.10
    tie_width: float = 0.5
    both_bad_max: float = 0.5
    both_bad_below: float = -2.5
    center: tuple[float, ...] = _vector(DEFAULT_CENTER)
    scale: tuple[float, ...] = _vector(DEFAULT_SCALE)
    features: tuple[str, ...] = field(default=FEATURES)

    def __post_init__(self) -> None:
        if self.features != FEATURES:
            raise ValueError(f"panel config is for features {self.features}, this version hears {FEATURES}")
        for name in ("shared", "center", "scale"):
            if len(getattr(self, name)) != len(FEATURES):
                raise ValueError(f"{name} needs {len(FEATURES)} values (one per feature)")
        if not (self.tau > 0 and self.individual_sd >= 0 and min(self.scale) > 0):
            raise ValueError("tau and every scale must be > 0, individual_sd >= 0")
        if not (0 <= self.tie_max < 1 and 0 <= self.both_bad_max < 1 and self.tie_width > 0):
            raise ValueError("tie_max and both_bad_max must be in [0, 1), tie_width > 0")

    def standardise(self, raw: np.ndarray) -> np.ndarray:
        """raw [..., F] -> z [..., F]: centred, scaled, clipped to ±Z_LIMIT; NaN (not heard) -> 0."""
        z = (np.asarray(raw, np.float64) - np.array(self.center)) / np.array(self.scale)
        return np.clip(np.nan_to_num(z, nan=0.0), -Z_LIMIT, Z_LIMIT)

    def to_json(self) -> dict:
        return {k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(self).items()}

    @classmethod
    def from_json(cls, data: dict) -> PanelConfig:
        known = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in data.items() if k in known})

    def save(self, path: str | Path, **extra) -> Path:
        path = Path(path)
        path.write_text(json.dumps({"panel_config": self.to_json(), **extra}, indent=1) + "\n")
        return path

    @classmethod
    def load(cls, path: str | Path) -> PanelConfig:
        return cls.from_json(json.loads(Path(path).read_text())["panel_config"])


def choice_probabilities(u_a: np.ndarray, u_b: np.ndarray, cfg: PanelConfig) -> np.ndarray:
    """Utilities [...] of sides A and B -> [..., 4] probabilities of CHOICES (the module docstring).

    Example (tie_max 0.1, both_bad far away): u_a = u_b -> [0.45, 0.45, 0.1, 0]; Δ = τ·ln 3 with a
    wide tie band gone -> P(a) / P(b) = 3.
    """
    u_a, u_b = np.asarray(u_a, np.float64), np.asarray(u_b, np.float64)
    delta = u_a - u_b
    both_bad = cfg.both_bad_max * expit((cfg.both_bad_below - np.maximum(u_a, u_b)) / 0.25)
    tie = (1 - both_bad) * cfg.tie_max * np.exp(-((delta / (cfg.tie_width * cfg.tau)) ** 2))
    decisive = 1 - both_bad - tie
    p_a = decisive * expit(delta / cfg.tau)
    return np.stack([p_a, decisive - p_a, tie, both_bad], axis=-1)


@dataclass
class Listener:
    """One simulated rater: a taste (``weights`` [F]) and its own vote stream (``rng``)."""

    rater_id: str
    weights: np.ndarray
    config: PanelConfig
    rng: np.random.Generator

    def utility(self, z: np.ndarray) -> np.ndarray:
        """z [..., F] (standardised features) -> [...]."""
        return np.asarray(z, np.float64) @ self.weights

    def probabilities(self, z_a: np.ndarray, z_b: np.ndarray) -> np.ndarray:
        """[..., 4] probabilities of CHOICES for clips with features z_a, z_b [..., F]."""
        return choice_probabilities(self.utility(z_a), self.utility(z_b), self.config)

    def choose(self, z_a: np.ndarray, z_b: np.ndarray) -> str:
        """Listen to one pair (z [F] each) and vote: one of CHOICES, drawn from this listener's stream."""
        p = self.probabilities(z_a, z_b)
        return CHOICES[int(self.rng.choice(len(CHOICES), p=p / p.sum()))]


def rater_id(seed: int, index: int) -> str:
    return f"panel-s{seed}-l{index}"


def make_listeners(n: int, seed: int, config: PanelConfig | None = None) -> list[Listener]:
    """Listeners 0..n−1 of panel ``seed``; listener i is the same whatever n is."""
    config = config or PanelConfig()
    if n < 1:
        raise ValueError(f"a panel needs at least one listener, got {n}")
    listeners = []
    for i in range(n):
        taste, votes = (np.random.default_rng(s) for s in np.random.SeedSequence([seed, i]).spawn(2))
        weights = np.array(config.shared) + config.individual_sd * taste.standard_normal(len(FEATURES))
        listeners.append(Listener(rater_id(seed, i), weights, config, votes))
    return listeners


def expected_agreement(listeners: list[Listener], z_pairs: np.ndarray) -> float:
    """P(two different listeners vote the same side | both voted decisively), averaged over listener
    pairs and the pairs z_pairs [P, 2, F]: Σ (pa_i pa_j + pb_i pb_j) / Σ (pa_i + pb_i)(pa_j + pb_j)."""
    if len(listeners) < 2:
        raise ValueError("agreement needs at least two listeners")
    probs = [ls.probabilities(z_pairs[:, 0], z_pairs[:, 1]) for ls in listeners]  # each [P, 4]
    same = decisive = 0.0
    for p, q in combinations(probs, 2):
        same += float((p[:, 0] * q[:, 0] + p[:, 1] * q[:, 1]).sum())
        decisive += float(((p[:, 0] + p[:, 1]) * (q[:, 0] + q[:, 1])).sum())
    return same / decisive if decisive else float("nan")


def measured_agreement(votes: dict[str, dict[str, str]]) -> tuple[float, int]:
    """votes {pair key: {rater: choice}} -> (share of decisive listener pairs voting the same side, how
    many such listener pairs); NaN when none. Choices are relative to each pair's own sides."""
    same = total = 0
    for by_rater in votes.values():
        decisive = [c for c in by_rater.values() if c in ("a", "b")]
        for x, y in combinations(decisive, 2):
            same += x == y
            total += 1
    return (same / total if total else float("nan")), total


@dataclass(frozen=True)
class Calibration:
    """What ``calibrate`` found: the config, the agreement it gives, and the most any τ could give."""

    config: PanelConfig
    agreement: float
    ceiling: float
    pairs: int


def fit_scale(raw: np.ndarray, config: PanelConfig) -> PanelConfig:
    """Center = median, scale = 1.4826 × MAD (a robust s.d.) of raw clip features [N, F]; a feature
    the clips do not vary in (or never have) keeps the config's own center and scale."""
    raw = np.asarray(raw, np.float64).reshape(-1, len(FEATURES))
    center, scale = list(config.center), list(config.scale)
    for j in range(len(FEATURES)):
        col = raw[:, j][np.isfinite(raw[:, j])]
        if col.size < 4:
            continue
        med = float(np.median(col))
        mad = 1.4826 * float(np.median(np.abs(col - med)))
        if mad > 1e-9:
            center[j], scale[j] = med, mad
    return dataclasses.replace(config, center=tuple(center), scale=tuple(scale))


def calibrate(raw_pairs: np.ndarray, config: PanelConfig | None = None, target: float = 0.65,
              listeners: int = 16, seed: int = 0, fit_features: bool = True, tol: float = 1e-3) -> Calibration:
    """Set τ (by bisection on log τ) so that ``expected_agreement`` on the pairs ``raw_pairs``
    [P, 2, F] (raw features) equals ``target``; with ``fit_features`` the feature center and scale are
    first fitted to the pairs' clips (``fit_scale``). Agreement falls from its ceiling at τ -> 0 (taste
    differences only) to 0.5 at τ -> ∞; a target above the ceiling is a ValueError (lower
    individual_sd)."""
    config = config or PanelConfig()
    raw_pairs = np.asarray(raw_pairs, np.float64)
    if raw_pairs.ndim != 3 or raw_pairs.shape[1:] != (2, len(FEATURES)) or len(raw_pairs) == 0:
        raise ValueError(f"raw_pairs must be [P, 2, {len(FEATURES)}], got {raw_pairs.shape}")
    if not 0.5 < target < 1:
        raise ValueError(f"target agreement must be in (0.5, 1), got {target}")
    if fit_features:
        config = fit_scale(raw_pairs.reshape(-1, len(FEATURES)), config)
    z = config.standardise(raw_pairs)

    def agreement(log_tau: float) -> float:
        cfg = dataclasses.replace(config, tau=float(np.exp(log_tau)))
        return expected_agreement(make_listeners(listeners, seed, cfg), z)

    lo, hi = np.log(1e-4), np.log(1e4)
    ceiling = agreement(lo)
    if ceiling < target:
        raise ValueError(f"listeners agree on at most {ceiling:.1%} of these pairs even without noise; "
                         f"target {target:.0%} needs a smaller individual_sd than {config.individual_sd}")
    for _ in range(80):
        mid = (lo + hi) / 2
        value = agreement(mid)
        if abs(value - target) < tol:
            break
        lo, hi = (mid, hi) if value > target else (lo, mid)
    tuned = dataclasses.replace(config, tau=float(np.exp(mid)))
    return Calibration(tuned, value, ceiling, len(raw_pairs))
