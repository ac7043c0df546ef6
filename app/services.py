"""Everything the UI needs, built once per server: the store, the registry and the services.

Nothing here is global: one :func:`build_services` call builds one independent set (tests build
several). The UI (``app/ui.py``) only wires these objects to components.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

from app.admin import AdminService
from app.arena import ArenaService
from app.best_of import BestOfScorers
from app.extend import ContinuationService
from app.generation import GenerationService
from app.leaderboard import LeaderboardService
from app.limits import RateLimiter, RateLimits
from app.registry import ModelRegistry, registry_from
from app.store import Store
from app.transfer import open_prefs_store
from models.errors import InputError

DEFAULT_DATA_DIR = Path("data/app")
log = logging.getLogger(__name__)


@dataclass
class AppServices:
    """The services of one server, and which of its files the web server may send."""

    registry: ModelRegistry
    store: Store
    limiter: RateLimiter
    generation: GenerationService
    arena: ArenaService
    leaderboard: LeaderboardService
    admin: AdminService
    trust_forwarded_for: bool = False  # take the client address from X-Forwarded-For (behind a proxy)
    continuation: ContinuationService | None = None  # "Extend this clip" and uploads (app/extend.py)
    stream_audio: bool = True  # the Generate tab plays clip 1 while it is made (app/page.py LIVE_JS)

    @property
    def public_dirs(self) -> list[Path]:
        """The only folders served over HTTP: clip audio and the pictures drawn from it."""
        return [self.store.audio_dir, self.store.data_dir / "pictures"]

    @property
    def private_paths(self) -> list[Path]:
        """Never served, whatever else is configured: the database and anything else in the data dir
        that is not a clip (blocked even if a folder above them were allowed)."""
        db = self.store.database_file
        paths = [self.store.data_dir / name for name in ("exports", "browser_secret")]
        if db is not None:
            paths += [db, db.with_name(db.name + "-wal"), db.with_name(db.name + "-shm"),
                      db.with_name(db.name + "-journal")]
        return paths

    def close(self) -> None:
        self.generation.close()
        self.admin.close()
        self.store.close()


def build_services(
    db: str | None = None,
    registry: str | Path | ModelRegistry | None = None,
    data_dir: str | Path = DEFAULT_DATA_DIR,
    *,
    min_listen: float = 5.0,
    admin_token: str | None = None,
    max_batch: int = 16,
    min_votes: int = 30,
    arena_duration: float = 6.0,
    limits: RateLimits | None = None,
    trust_forwarded_for: bool = False,
    repeat_share: float = 0.1,
    scorers: BestOfScorers | None = None,
    stream: bool = True,
) -> AppServices:
    """Open the store (SQLite in ``data_dir`` unless ``db`` is a URL) and build the services.

    ``repeat_share``: the probability that a new pair for a rater id is a consistency repeat of a pair
    that rater already judged (``app/repeats.py``; 0 = never). ``scorers``: the best-of-N rewards and the
    largest N (``app/best_of.py``; default: the shipped scorers, N up to 8); a best-of-N request counts
    as N generation requests, so N is capped at the generation rate limits. ``stream``: play clip 1 in the
    Generate tab while it is made."""
    if not min_listen >= 0:
        raise InputError(f"--min-listen must be >= 0 seconds, got {min_listen}")
    if max_batch < 1:
        raise InputError(f"--max-batch must be >= 1, got {max_batch}")
    if min_votes < 0:
        raise InputError(f"--min-votes must be >= 0, got {min_votes}")
    if not arena_duration > 0:
        raise InputError(f"--arena-duration must be > 0 seconds, got {arena_duration}")
    if not 0 <= repeat_share <= 1:
        raise InputError(f"--repeat-share must be in [0, 1], got {repeat_share}")
    limits = limits or RateLimits()
    scorers = scorers or BestOfScorers()
    allowed = min((rate.count for rate in limits.generate if rate.count > 0), default=scorers.max_n)
    if scorers.max_n > allowed:  # a best-of-N request counts as N: a larger N could never be admitted
        log.warning("best-of-N capped at %d, the generation rate limit (--max-best-of %d)", allowed, scorers.max_n)
        scorers.max_n = allowed
    models = registry if isinstance(registry, ModelRegistry) else registry_from(registry)
    store = open_prefs_store(db, Path(data_dir).expanduser().resolve(), access="server")
    limiter = RateLimiter(limits)
    generation = GenerationService(models, store, limiter=limiter, scorers=scorers, max_batch_rows=max_batch)
    return AppServices(
        registry=models,
        store=store,
        limiter=limiter,
        generation=generation,
        arena=ArenaService(models, generation, store, limiter=limiter, min_listen_s=min_listen,
                           duration=arena_duration, repeat_share=repeat_share),
        leaderboard=LeaderboardService(store, models, min_votes=min_votes),
        admin=AdminService(store, admin_token, limiter=limiter),
        trust_forwarded_for=trust_forwarded_for,
        continuation=ContinuationService(generation),
        stream_audio=stream,
    )
