"""Sliding-window rate limits (app/limits.py) on a hand-driven clock."""

import pytest

from app.limits import Caller, Rate, RateLimited, RateLimiter, RateLimits


class Clock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


def test_three_per_ten_seconds_per_session_then_the_window_slides():
    """Hits at t = 0, 1, 2 fill a 3-per-10 s window; the 4th at t = 3 waits until the first leaves (t = 10)."""
    clock = Clock()
    limiter = RateLimiter(RateLimits(vote=(Rate(3, 10.0), Rate(0, 1.0))), clock=clock)
    me = Caller("s1", "1.2.3.4")
    for _ in range(3):
        limiter.hit("vote", me)
        clock.t += 1
    with pytest.raises(RateLimited) as info:
        limiter.hit("vote", me)
    assert info.value.retry_after_s == pytest.approx(7.0) and "try again in 7 s" in str(info.value)
    limiter.hit("vote", Caller("s2", "1.2.3.4"))  # another session: its own window (no address limit here)
    clock.t += 7.0  # t = 10: the hit at t = 0 has left the window
    limiter.hit("vote", me)
    with pytest.raises(RateLimited):
        limiter.hit("vote", me)


def test_the_address_window_spans_sessions_and_refused_hits_are_not_recorded():
    clock = Clock()
    limiter = RateLimiter(RateLimits(pair=(Rate(5, 60.0), Rate(2, 60.0))), clock=clock)
    limiter.hit("pair", Caller("a", "9.9.9.9"))
    limiter.hit("pair", Caller("b", "9.9.9.9"))
    for _ in range(3):  # refused: nothing recorded, so the window still ends 60 s after the first hit
        with pytest.raises(RateLimited, match="your network address"):
            limiter.hit("pair", Caller("c", "9.9.9.9"))
    clock.t += 60.0
    limiter.hit("pair", Caller("c", "9.9.9.9"))


def test_check_records_nothing_and_unlimited_admits_everything():
    clock = Clock()
    limiter = RateLimiter(RateLimits(admin=(Rate(0, 1.0), Rate(1, 600.0))), clock=clock)
    me = Caller("s", "5.5.5.5")
    for _ in range(10):
        limiter.check("admin", me)
    limiter.hit("admin", me)
    with pytest.raises(RateLimited, match="wrong admin tokens"):
        limiter.check("admin", me)
    free = RateLimiter(RateLimits.unlimited(), clock=clock)
    for _ in range(1000):
        free.hit("generate", me)
    with pytest.raises(ValueError, match="unknown action"):
        free.hit("dance", me)


def test_memory_stays_bounded(monkeypatch):
    """Past MAX_KEYS tracked keys, expired ones are forgotten first, then the oldest."""
    import app.limits as limits

    monkeypatch.setattr(limits, "MAX_KEYS", 10)
    clock = Clock()
    limiter = RateLimiter(RateLimits(vote=(Rate(5, 10.0), Rate(0, 1.0))), clock=clock)
    for i in range(25):
        limiter.hit("vote", Caller(f"s{i}", "x"))
        clock.t += 1.0
    assert len(limiter._log) <= 10
