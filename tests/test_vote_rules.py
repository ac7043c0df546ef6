"""The listening gate as the server sees it (app/vote_rules.py), on hand-computed cases."""

import math

import pytest

from app.vote_rules import LISTEN_SLACK_S, VoteRejected, check_listening


def code(*args, **kwargs) -> str:
    with pytest.raises(VoteRejected) as info:
        check_listening(*args, **kwargs)
    return info.value.code


def test_honest_claims_pass_and_come_back_as_floats():
    """Clips of 6 s and 4 s, gate 5 s -> gates 5 and 4; 5.5 and 4 s heard, vote 7 s after issue."""
    assert check_listening(5.5, 4, (6.0, 4.0), elapsed_s=7.0, min_listen_s=5.0) == (5.5, 4.0)


def test_a_clip_shorter_than_the_gate_is_heard_in_full():
    """Clips of 0.5 s with a 1 s gate: the gate is 0.5 s each; 0.5 s heard after 0.6 s passes."""
    assert check_listening(0.5, 0.5, (0.5, 0.5), elapsed_s=0.6, min_listen_s=1.0) == (0.5, 0.5)
    assert code(0.4, 0.5, (0.5, 0.5), elapsed_s=0.6, min_listen_s=1.0) == "not_listened"


@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf, -0.1, "6", None, True, [6]])
def test_claims_that_are_not_finite_non_negative_numbers(bad):
    assert code(bad, 6.0, (6.0, 6.0), elapsed_s=60.0, min_listen_s=5.0) == "invalid_listening"
    assert code(6.0, bad, (6.0, 6.0), elapsed_s=60.0, min_listen_s=5.0) == "invalid_listening"


def test_under_the_gate():
    """4.9 s of a 6 s clip against a 5 s gate."""
    assert code(4.9, 6.0, (6.0, 6.0), elapsed_s=60.0, min_listen_s=5.0) == "not_listened"


def test_sooner_than_listening_can_take():
    """Both clips can play at once, so 5 s is the least time two 5 s gates take: 4.9 s after issue is too soon,
    even with claims of 1e9 s (the API probe: a vote 0.04 s after issue)."""
    assert code(5.0, 5.0, (6.0, 6.0), elapsed_s=4.9, min_listen_s=5.0) == "too_soon"
    assert code(1e9, 1e9, (6.0, 6.0), elapsed_s=0.04, min_listen_s=5.0) == "too_soon"
    assert check_listening(5.0, 5.0, (6.0, 6.0), elapsed_s=5.0, min_listen_s=5.0) == (5.0, 5.0)


def test_more_than_the_clip_or_the_time_since_issue():
    """A 6 s clip: up to 6 + slack (1 s) passes, 7.01 s does not; 30 s clips heard 20 s after 10 s does not,
    11 s after 10 s passes (slack)."""
    assert LISTEN_SLACK_S == 1.0
    assert check_listening(7.0, 6.0, (6.0, 6.0), elapsed_s=60.0, min_listen_s=5.0) == (7.0, 6.0)
    assert code(7.01, 6.0, (6.0, 6.0), elapsed_s=60.0, min_listen_s=5.0) == "implausible_listening"
    assert code(1e308, 6.0, (6.0, 6.0), elapsed_s=60.0, min_listen_s=5.0) == "implausible_listening"
    assert code(20.0, 6.0, (30.0, 30.0), elapsed_s=10.0, min_listen_s=5.0) == "implausible_listening"
    assert check_listening(11.0, 6.0, (30.0, 30.0), elapsed_s=10.0, min_listen_s=5.0) == (11.0, 6.0)


def test_messages_say_what_to_do():
    with pytest.raises(VoteRejected, match=r"at least 5 s before voting \(A: 1.0 s, B: 6.0 s\)"):
        check_listening(1.0, 6.0, (6.0, 6.0), elapsed_s=60.0, min_listen_s=5.0)
    with pytest.raises(VoteRejected, match="came 0.0 s after the pair was sent; listening takes at least 5 s"):
        check_listening(6.0, 6.0, (6.0, 6.0), elapsed_s=0.04, min_listen_s=5.0)
