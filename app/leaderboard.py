"""The arena leaderboard: Bradley–Terry ratings on the Elo scale with 1,000-sample bootstrap 95 % CIs
(``evaluation.ratings``), a model ranked once it has ``min_votes`` votes, and the win-rate matrix.

Each board is computed from ONE kind of vote: people's (the default) or simulated listeners'
(``Store.battles``); the two are never pooled. Rater consistency repeats are left out of the fit:
they replay a comparison the same rater already made, so counting them would weigh it twice.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from pathlib import Path

from app.registry import ModelRegistry
from app.store import Store
from evaluation.ratings import bootstrap_ratings, plot_win_rate_matrix, win_rate_matrix
from models.errors import InputError

__all__ = ["BOARD_KINDS", "LeaderboardService", "LeaderboardView"]

BOARD_KINDS = ("people", "simulated")


@dataclass(frozen=True)
class LeaderboardView:
    """Ranked rows (models with >= min_votes votes), provisional rows, and the win-rate picture."""

    rows: list[dict]
    provisional: list[dict]
    total_votes: int
    min_votes: int
    win_rate_png: Path | None
    votes: str = "people"  # which kind of vote the board is computed from
    repeats_left_out: int = 0  # voted consistency repeats of that kind, not in the fit


class LeaderboardService:
    """Bradley–Terry ratings on the Elo scale with 1,000-sample bootstrap 95 % CIs (evaluation.ratings)."""

    def __init__(self, store: Store, registry: ModelRegistry, *, min_votes: int = 30, n_boot: int = 1000,
                 seed: int = 0) -> None:
        self.store = store
        self.registry = registry
        self.min_votes = min_votes
        self.n_boot = n_boot
        self.seed = seed
        self.out_dir = store.data_dir / "pictures" / "leaderboard"
        self._lock = threading.Lock()
        self._cached: dict[str, tuple[tuple, LeaderboardView]] = {}

    def view(self, votes: object = "people") -> LeaderboardView:
        """The board of ``votes`` ("people" or "simulated"); recomputed only when its number of votes changed."""
        if votes not in BOARD_KINDS:
            raise InputError(f"the leaderboard is of 'people' or 'simulated' votes, got {str(votes)[:40]!r}")
        kind = str(votes)
        with self._lock:
            battles = self.store.battles(kind)  # type: ignore[arg-type]
            repeats = self.store.count_votes(kind, repeats=True)  # type: ignore[arg-type]
            key = (len(battles), repeats, tuple(self.registry.ids))  # a reloaded registry lists new models
            if kind in self._cached and self._cached[kind][0] == key:
                return self._cached[kind][1]
            voted = {m for b in battles for m in (b.model_a, b.model_b)}
            models = self.registry.ids + sorted(voted - set(self.registry.ids))
            table = bootstrap_ratings(battles, n_boot=self.n_boot, seed=self.seed, models=models,
                                      min_votes=self.min_votes)
            rows = [{"model": r.model, "name": self.registry.display_name(r.model), "rating": r.rating,
                     "ci_low": r.ci_low, "ci_high": r.ci_high, "votes": r.votes} for r in table.rows]
            ranked = [dict(row, rank=i + 1) for i, row in enumerate(r for r in rows if r["votes"] >= self.min_votes)]
            provisional = [r for r in rows if r["votes"] < self.min_votes]
            png = None
            if battles:
                models = [r.model for r in table.rows if r.model in voted]
                matrix = win_rate_matrix(battles, models)
                self.out_dir.mkdir(parents=True, exist_ok=True)
                for old in self.out_dir.glob(f"win_rate_{kind}_*.png"):
                    old.unlink(missing_ok=True)
                who = "" if kind == "people" else "simulated "
                png = plot_win_rate_matrix(matrix, [self.registry.display_name(m) for m in models],
                                           self.out_dir / f"win_rate_{kind}_{len(battles)}.png",
                                           title=f"Win rates ({len(battles)} {who}votes)")
            view = LeaderboardView(ranked, provisional, len(battles), self.min_votes, png, kind, repeats)
            self._cached[kind] = (key, view)
            return view
