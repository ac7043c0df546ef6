"""What a vote must satisfy besides its token: the choices, and the listening gate as the server sees it.

The page measures how long each clip actually played (``app/page.py``) and sends the seconds with
the vote; the server holds those claims against what it knows (``check_listening``): when it issued
the pair and how long each clip is. A client can lie about what it heard, but not about time: a vote
0.04 s after the pair was issued claiming 1e9 s of listening is refused.
"""

from __future__ import annotations

import math

from evaluation.ratings import OUTCOMES

CHOICES: tuple[str, ...] = OUTCOMES  # "a", "b", "tie", "both_bad"
DEFAULT_MIN_LISTEN_S = 5.0  # Music Arena (the 2025 live text-to-music arena) gates voting on >= 5 s of each clip
LISTEN_SLACK_S = 1.0  # clock granularity and rounding between the page's timer and the server's


class VoteRejected(Exception):
    """A vote that must not be stored. ``code`` is machine-readable, ``reason`` is for the listener."""

    def __init__(self, code: str, reason: str) -> None:
        super().__init__(reason)
        self.code = code
        self.reason = reason


def check_listening(
    listened_a_s: object,
    listened_b_s: object,
    durations: tuple[float, float],
    elapsed_s: float,
    min_listen_s: float,
    slack_s: float = LISTEN_SLACK_S,
) -> tuple[float, float]:
    """The claimed seconds of listening to clips A and B, checked; raises :class:`VoteRejected`.

    Each clip's gate is ``min(min_listen_s, its duration)`` (a clip shorter than the gate is heard in
    full). Refused, in this order:

    - ``invalid_listening``: a claim that is not a finite number >= 0 (NaN, inf, -1, "six");
    - ``not_listened``: a claim under its clip's gate;
    - ``too_soon``: the vote arrived sooner after the pair was issued than the longer gate (the clips
      may play at the same time, so that is the least time listening can take);
    - ``implausible_listening``: a claim longer than its clip or than the time since issue (each
      plus ``slack_s``). The page reports at most a clip's length, however often it was replayed.

    Example: clips of 6 s and 4 s, gate 5 s -> gates 5 and 4; (5.5, 4.0) after 7 s passes; the same
    claims after 3 s are "too_soon"; (8.0, 4.0) after 9 s is implausible (A lasts 6 s).
    """
    claims = []
    for value in (listened_a_s, listened_b_s):
        if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value) or value < 0:
            raise VoteRejected("invalid_listening", "listening times must be finite, non-negative numbers of seconds")
        claims.append(float(value))
    gates = [min(float(min_listen_s), float(d)) for d in durations]
    if any(c < g for c, g in zip(claims, gates, strict=True)):
        shown = f"{min_listen_s:g} s" + ("" if min(gates) >= min_listen_s else " (or the whole clip when shorter)")
        raise VoteRejected(
            "not_listened",
            f"listen to both clips for at least {shown} before voting (A: {claims[0]:.1f} s, B: {claims[1]:.1f} s)",
        )
    if elapsed_s < max(gates):
        raise VoteRejected(
            "too_soon",
            f"this vote came {max(elapsed_s, 0.0):.1f} s after the pair was sent; listening takes at least "
            f"{max(gates):g} s",
        )
    for side, claim, duration in zip("AB", claims, durations, strict=True):
        if claim > duration + slack_s or claim > elapsed_s + slack_s:
            raise VoteRejected(
                "implausible_listening",
                f"{claim:g} s of listening to clip {side} is not possible: it lasts {duration:g} s and the pair "
                f"was sent {elapsed_s:.1f} s ago",
            )
    return claims[0], claims[1]
