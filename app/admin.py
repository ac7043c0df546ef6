"""The admin's export: every vote as TRL-layout JSONL (``app.transfer``), behind the admin token.

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
from pathlib import Path

from app.limits import Caller, RateLimiter
from app.store import Store
from app.transfer import write_preferences_jsonl
from models.errors import InputError

__all__ = ["AdminService"]


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

    def export(self, caller: Caller, token: object, include_ties: bool = True) -> tuple[Path, int]:
        """The export file (a fresh private copy) and its vote count; InputError or RateLimited otherwise."""
        if self.token is None:
            raise InputError("export is disabled: start the app with --admin-token (or MUSICRL_ADMIN_TOKEN)")
        self.limiter.check("admin", caller)
        if not isinstance(token, str) or not hmac.compare_digest(token.encode(), self.token.encode()):
            self.limiter.hit("admin", caller)
            raise InputError("wrong admin token")
        folder = Path(tempfile.mkdtemp(prefix="musicrl-export-"))  # mode 0700: this user's only
        path = folder / f"preferences-{time.strftime('%Y%m%d-%H%M%S')}.jsonl"
        count = write_preferences_jsonl(self.store, path, include_ties=include_ties)
        with self._lock:
            previous, self._last_dir = self._last_dir, folder
        if previous is not None:
            shutil.rmtree(previous, ignore_errors=True)
        return path, count

    def close(self) -> None:
        with self._lock:
            if self._last_dir is not None:
                shutil.rmtree(self._last_dir, ignore_errors=True)
                self._last_dir = None
