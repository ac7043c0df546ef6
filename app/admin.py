"""The admin's export behind the admin token: the votes as TRL-layout JSONL (``app.transfer``) and the
raters' self-agreement on consistency repeats as a second JSON file (``app.repeats``).

Which votes: ``votes="all"`` by default — the admin sees everything, each row marked with
``simulated`` (and ``repeat_of``/``swapped``), so nothing is mixed unmarked; "people" or "simulated"
export one kind. The consistency summary always reports both kinds, separately.

The token is compared in constant time; wrong tokens are rate-limited per address
(``app.limits``). The file is written to a private temporary directory outside the app's data
directory (nothing under ``--data-dir`` is ever served) and handed to the admin as the response's
download; the previous export file is removed when the next one is made and on shutdown.
"""

from __future__ import annotations

import hmac
import shutil
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from app.limits import Caller, RateLimiter
from app.repeats import consistency_summary, repeat_votes, self_agreement
from app.store import VOTE_KINDS, Store
from app.transfer import write_preferences_jsonl, write_private_json
from models.errors import InputError

__all__ = ["AdminExport", "AdminService"]


@dataclass(frozen=True)
class AdminExport:
    """The two files of one export (in one private folder), the number of votes exported, and the
    consistency summary (``app.repeats.consistency_summary``)."""

    preferences: Path
    consistency: Path
    count: int
    summary: dict[str, Any]


class AdminService:
    """``export`` for whoever holds ``token`` (None: export is off)."""

    def __init__(self, store: Store, token: str | None, *, limiter: RateLimiter | None = None) -> None:
        self.store = store
        self.token = token or None
        self.limiter = limiter or RateLimiter()
        self._lock = threading.Lock()
        self._last_dir: Path | None = None

    @property
    def enabled(self) -> bool:
        return self.token is not None

    def export(self, caller: Caller, token: object, votes: object = "all", include_ties: bool = True) -> AdminExport:
        """Fresh private copies of the votes of kind ``votes`` ("all", "people" or "simulated") and of the
        consistency summary; InputError or RateLimited otherwise."""
        self.check_token(caller, token)
        if votes not in VOTE_KINDS:
            raise InputError(f"votes must be one of {', '.join(VOTE_KINDS)}")
        folder = Path(tempfile.mkdtemp(prefix="musicrl-export-"))  # mode 0700: this user's only
        stamp = time.strftime("%Y%m%d-%H%M%S")
        path, summary_path = folder / f"preferences-{votes}-{stamp}.jsonl", folder / f"consistency-{stamp}.json"
        try:
            count = write_preferences_jsonl(self.store, path, include_ties=include_ties, votes=str(votes))
            summary = self.consistency()
            write_private_json(summary_path, summary)
        except BaseException:
            shutil.rmtree(folder, ignore_errors=True)
            raise
        with self._lock:
            previous, self._last_dir = self._last_dir, folder
        if previous is not None:
            shutil.rmtree(previous, ignore_errors=True)
        return AdminExport(path, summary_path, count, summary)

    def check_token(self, caller: Caller, token: object) -> None:
        """Raise InputError unless ``token`` is the admin token (wrong ones count against the address's limit)."""
        if self.token is None:
            raise InputError("export is disabled: start the app with --admin-token (or MUSICRL_ADMIN_TOKEN)")
        self.limiter.check("admin", caller)
        if not isinstance(token, str) or not hmac.compare_digest(token.encode(), self.token.encode()):
            self.limiter.hit("admin", caller)
            raise InputError("wrong admin token")

    def consistency(self) -> dict[str, Any]:
        """The raters' self-agreement on consistency repeats, people and simulated apart (JSON form)."""
        return consistency_summary(self_agreement(repeat_votes(self.store)))

    def close(self) -> None:
        with self._lock:
            if self._last_dir is not None:
                shutil.rmtree(self._last_dir, ignore_errors=True)
                self._last_dir = None
