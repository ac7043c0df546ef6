"""Rate limits per browser session and per network address, for every action that costs the server.

A sliding-window log per (action, key): a request is admitted when fewer than ``count`` requests of
that action came from the same session — and from the same address — in the last ``per_s`` seconds.
A request may cost more than one: a best-of-N generation request counts as N (``hit(..., cost=N)``),
and is admitted when the window has room for all N.
The address is the TCP peer, or with ``trust_forwarded_for`` the first ``X-Forwarded-For`` entry
(only behind a reverse proxy that sets it; otherwise clients could choose their own address).

Admin attempts are limited per address on FAILED token checks only (:meth:`RateLimiter.check` before,
:meth:`RateLimiter.hit` after a wrong token), so guessing the token is slow while the admin's own
exports are not counted. Everything lives in this process's memory: a restart clears it.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

ACTIONS = ("generate", "pair", "vote", "admin")
MAX_KEYS = 100_000  # bound on tracked sessions + addresses; the oldest are forgotten first


class RateLimited(RuntimeError):
    """Too many requests; ``retry_after_s`` says when the next one would be admitted."""

    def __init__(self, message: str, retry_after_s: float) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s


@dataclass(frozen=True)
class Rate:
    """At most ``count`` requests per ``per_s`` seconds (count 0 = unlimited)."""

    count: int
    per_s: float


@dataclass(frozen=True)
class RateLimits:
    """Per action: (per session, per address). The defaults suit one human per browser: a pair takes
    listening time, so 10 pairs a minute is already a rater skipping through them."""

    generate: tuple[Rate, Rate] = (Rate(20, 60.0), Rate(60, 60.0))
    pair: tuple[Rate, Rate] = (Rate(10, 60.0), Rate(40, 60.0))
    vote: tuple[Rate, Rate] = (Rate(20, 60.0), Rate(60, 60.0))
    admin: tuple[Rate, Rate] = (Rate(5, 600.0), Rate(5, 600.0))  # failed token checks

    @classmethod
    def unlimited(cls) -> RateLimits:
        off = (Rate(0, 1.0), Rate(0, 1.0))
        return cls(generate=off, pair=off, vote=off, admin=off)


@dataclass(frozen=True)
class Caller:
    """Who is asking: the browser (or gradio_client) session and the network address."""

    session: str
    address: str


_WHAT = {"generate": "generation requests", "pair": "new pairs", "vote": "votes", "admin": "wrong admin tokens"}


@dataclass
class RateLimiter:
    """Thread-safe sliding-window limiter over :class:`RateLimits` (``clock`` for tests)."""

    limits: RateLimits = field(default_factory=RateLimits)
    clock: Callable[[], float] = time.monotonic
    _log: dict[tuple[str, str, str], deque] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def _windows(self, action: str, caller: Caller) -> list[tuple[tuple[str, str, str], Rate]]:
        if action not in ACTIONS:
            raise ValueError(f"unknown action {action!r}")
        by_session, by_address = getattr(self.limits, action)
        scopes = [(("session", caller.session), by_session), (("address", caller.address), by_address)]
        return [((action, scope, key), rate) for (scope, key), rate in scopes if rate.count > 0]

    def _refuse_if_full(self, action: str, caller: Caller, now: float, cost: int = 1) -> None:
        for key, rate in self._windows(action, caller):
            log = self._log.get(key)
            while log and log[0] <= now - rate.per_s:
                log.popleft()
            who = "this session" if key[1] == "session" else "your network address"
            if cost > rate.count:
                raise RateLimited(f"this request counts as {cost} {_WHAT[action]}, more than {who} may make "
                                  f"({rate.count} per {rate.per_s:g} s); ask for less", rate.per_s)
            used = len(log) if log else 0
            if used + cost > rate.count:
                assert log  # used > rate.count - cost >= 0
                wait = log[used + cost - rate.count - 1] + rate.per_s - now  # when enough have left the window
                raise RateLimited(f"too many {_WHAT[action]} from {who} ({rate.count} per {rate.per_s:g} s); "
                                  f"try again in {max(1, round(wait))} s", wait)

    def check(self, action: str, caller: Caller) -> None:
        """Raise :class:`RateLimited` if ``caller`` is at its limit for ``action``; record nothing."""
        with self._lock:
            self._refuse_if_full(action, caller, self.clock())

    def hit(self, action: str, caller: Caller, cost: int = 1) -> None:
        """Admit and record one request counting as ``cost``, or raise :class:`RateLimited` (recording nothing)."""
        if isinstance(cost, bool) or not isinstance(cost, int) or cost < 1:
            raise ValueError(f"cost must be a whole number >= 1, got {cost!r}")
        with self._lock:
            now = self.clock()
            self._refuse_if_full(action, caller, now, cost)
            for key, _ in self._windows(action, caller):
                self._log.setdefault(key, deque()).extend([now] * cost)
            if len(self._log) > MAX_KEYS:
                self._forget(now)

    def _forget(self, now: float) -> None:
        """Drop keys with nothing left in their window; then, if still too many, the oldest keys."""
        longest = max(max(r.per_s for r in getattr(self.limits, a)) for a in ACTIONS)
        for key in [k for k, log in self._log.items() if not log or log[-1] <= now - longest]:
            del self._log[key]
        while len(self._log) > MAX_KEYS:
            del self._log[next(iter(self._log))]
