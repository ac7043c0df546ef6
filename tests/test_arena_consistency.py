"""Simulated votes kept apart from people's, and rater consistency repeats (app/repeats.py), on the services.

Debug models and 0.2 s clips, as in test_app_service; the listening gate is each clip's whole length.
"""

from __future__ import annotations

import io
import json
import math
import wave
from datetime import datetime, timedelta, timezone
from random import Random

import pytest

from app.admin import AdminService
from app.arena import ArenaService
from app.generation import GenerationService
from app.leaderboard import LeaderboardService
from app.limits import Caller, RateLimiter, RateLimits
from app.registry import ModelRegistry
from app.repeats import (
    RepeatVote,
    consistency_summary,
    repeat_candidates,
    repeat_votes,
    self_agreement,
    unswap,
    with_junk_chunk,
)
from app.store import VoteRejected, open_store
from app.transfer import export_preferences, import_preferences
from models.errors import InputError

DUR = 0.2
S1, S2 = Caller("session-1", "10.0.0.1"), Caller("session-2", "10.0.0.2")
REGISTRY_YAML = """
models:
  - {id: a, name: Model A, path: debug}
  - {id: b, name: Model B, path: "debug:1"}
"""


class Clock:
    def __init__(self) -> None:
        self.offset = 0.0

    def __call__(self) -> datetime:
        return datetime.now(timezone.utc) + timedelta(seconds=self.offset)

    def advance(self, seconds: float) -> None:
        self.offset += seconds


@pytest.fixture(scope="module")
def registry(tmp_path_factory) -> ModelRegistry:
    path = tmp_path_factory.mktemp("registry") / "registry.yaml"
    path.write_text(REGISTRY_YAML)
    return ModelRegistry.from_file(path)


@pytest.fixture
def store(tmp_path):
    with open_store(None, tmp_path / "data") as s:
        yield s


@pytest.fixture
def clock():
    return Clock()


@pytest.fixture
def arena(registry, store, clock):
    generation = GenerationService(registry, store, max_batch_rows=8)
    yield ArenaService(registry, generation, store, min_listen_s=5.0, duration=DUR, rng=Random(0),
                       limiter=RateLimiter(RateLimits.unlimited()), clock=clock, repeat_share=1.0)
    generation.close()


def cast(arena, clock, caller, prompt, rater, choice, simulated=False):
    """A pair for ``rater`` and its vote (the clock moved past the gate); returns the pair."""
    pair = arena.new_pair(caller, prompt, rater)
    clock.advance(1.0)
    arena.vote(caller, pair.token, choice, rater, DUR, DUR, "", simulated)
    return pair


def samples(path) -> bytes:
    with wave.open(str(path)) as w:
        return w.readframes(w.getnframes())


# ----------------------------------------------------------------------------- pure scoring


def test_unswap_maps_a_and_b_and_keeps_tie_and_both_bad():
    assert [unswap(c, True) for c in ("a", "b", "tie", "both_bad")] == ["b", "a", "tie", "both_bad"]
    assert [unswap(c, False) for c in ("a", "b", "tie", "both_bad")] == ["a", "b", "tie", "both_bad"]
    with pytest.raises(ValueError, match="unknown choice"):
        unswap("maybe", True)


def test_self_agreement_on_hand_examples():
    """r1 (people): a then b on the swapped repeat = a (agrees); tie, tie (agrees); a then a = b (disagrees):
    2/3. Wilson 95 % (z = 1.96, z² = 3.8415): centre (2/3 + z²/6) / (1 + z²/3) = 1.30691 / 2.28049 = 0.57308,
    half-width z / 2.28049 · sqrt((2/9)/3 + z²/36) = 0.85944 · 0.42519 = 0.36543 -> [0.2077, 0.9385].
    r2 (people): b then a (agrees): 1/1. Pooled people: 3/4, Wilson [0.3006, 0.9544]. s1 (simulated):
    a then a (disagrees): 0/1, [0, 0.7935]. Every repeat weighs the same in the pooled figure."""
    votes = [RepeatVote("r1", False, "a", "b"), RepeatVote("r1", False, "tie", "tie"),
             RepeatVote("r1", False, "a", "a"), RepeatVote("r2", False, "b", "a"),
             RepeatVote("s1", True, "a", "a")]
    report = self_agreement(votes)
    r1, r2 = report["people"].raters
    assert (r1.rater_id, r1.agreements, r1.repeats) == ("r1", 2, 3) and r1.rate == pytest.approx(2 / 3)
    assert (r1.low, r1.high) == (pytest.approx(0.2077, abs=1e-4), pytest.approx(0.9385, abs=1e-4))
    assert (r2.agreements, r2.repeats, r2.rate) == (1, 1, 1.0)
    pooled = report["people"].pooled
    assert (pooled.rater_id, pooled.agreements, pooled.repeats) == (None, 3, 4)
    assert (pooled.low, pooled.high) == (pytest.approx(0.3006, abs=1e-4), pytest.approx(0.9544, abs=1e-4))
    (s1,) = report["simulated"].raters
    assert (s1.agreements, s1.repeats, s1.low) == (0, 1, 0.0) and s1.high == pytest.approx(0.7935, abs=1e-4)
    empty = self_agreement([])["simulated"]
    assert empty.raters == () and empty.pooled.repeats == 0 and math.isnan(empty.pooled.rate)
    summary = consistency_summary(self_agreement(votes[:1]))
    assert json.loads(json.dumps(summary, allow_nan=False)) == summary  # no NaN in the JSON
    assert summary["simulated"]["pooled"] == {"rater_id": None, "agreements": 0, "repeats": 0, "rate": None,
                                              "ci_low": None, "ci_high": None}
    assert summary["people"]["raters"][0]["rate"] == 1.0


def test_a_junk_chunk_keeps_the_samples_and_changes_the_bytes():
    buffer = io.BytesIO()
    with wave.open(buffer, "wb") as w:
        w.setnchannels(1), w.setsampwidth(2), w.setframerate(8000)
        w.writeframes(bytes(range(200)))
    original = buffer.getvalue()
    padded = with_junk_chunk(original, b"x" * 16)
    assert padded != original and len(padded) == len(original) + 24
    assert int.from_bytes(padded[4:8], "little") == len(padded) - 8  # the RIFF size covers the new chunk
    with wave.open(io.BytesIO(padded)) as w:
        assert w.readframes(w.getnframes()) == bytes(range(200))
    import soundfile

    assert (soundfile.read(io.BytesIO(padded))[0] == soundfile.read(io.BytesIO(original))[0]).all()
    with pytest.raises(ValueError, match="even"):
        with_junk_chunk(original, b"odd")


# ----------------------------------------------------------------------------- repeats in the arena


def test_a_repeat_replays_a_judged_pair_swapped_under_new_file_names(arena, store, clock):
    original = cast(arena, clock, S1, "calm piano", "r-1", "a")  # nothing to repeat yet: generated
    first = store.get_pair(original.token.split(".")[0])
    assert first.repeat_of is None and not first.swapped
    other = arena.new_pair(S2, "", "r-2")  # another rater has nothing to repeat
    assert store.get_pair(other.token.split(".")[0]).repeat_of is None
    assert arena.new_pair(S1, "fast techno", "r-1").prompt == "fast techno"  # a typed prompt of no pair of theirs
    assert store.get_pair(arena.new_pair(S1, "", "").token.split(".")[0]).repeat_of is None  # anonymous

    repeat = arena.new_pair(Caller("session-3", "10.0.0.1"), "", "r-1")  # another session, the same rater id
    record = store.get_pair(repeat.token.split(".")[0])
    assert (record.repeat_of, record.swapped, record.session_id) == (first.id, True, "session-3")
    assert repeat.prompt == original.prompt == "calm piano" and repeat.token != original.token
    assert {repeat.audio_a, repeat.audio_b}.isdisjoint({original.audio_a, original.audio_b})
    assert samples(repeat.audio_a) == samples(original.audio_b)  # the same sound, sides swapped
    assert samples(repeat.audio_b) == samples(original.audio_a)
    clip_a, orig_b = store.get_clip(record.clip_a), store.get_clip(first.clip_b)
    assert (clip_a.model_id, clip_a.seed, clip_a.params["copy_of"]) == (orig_b.model_id, orig_b.seed, orig_b.id)
    assert clip_a.audio_file.name == f"{clip_a.audio_sha256}.wav" != orig_b.audio_file.name

    with pytest.raises(VoteRejected, match="listen to both clips"):  # a normal vote: every rule applies
        arena.vote(Caller("session-3", "10.0.0.1"), repeat.token, "b", "r-1", 0.1, DUR)
    with pytest.raises(VoteRejected, match="another session"):
        arena.vote(S1, repeat.token, "b", "r-1", DUR, DUR)
    arena.vote(Caller("session-3", "10.0.0.1"), repeat.token, "b", "r-1", DUR, DUR)  # b swapped back = a: agrees
    assert repeat_votes(store) == [RepeatVote("r-1", False, "a", "b", True)]
    assert repeat_candidates(store, "r-1") == []  # repeated once; a repeat is never repeated
    again = arena.new_pair(S1, "", "r-1")
    assert store.get_pair(again.token.split(".")[0]).repeat_of is None

    board = LeaderboardService(store, arena.registry, min_votes=1, n_boot=50).view()
    assert board.total_votes == 1 and board.repeats_left_out == 1  # the repeat is not in the fit
    assert len(store.battles(repeats=True)) == 2
    summary = AdminService(store, "t").consistency()
    assert summary["people"]["pooled"]["agreements"] == 1 and summary["people"]["raters"][0]["rater_id"] == "r-1"


def test_repeats_follow_the_share_and_skip_both_bad(registry, store, clock):
    generation = GenerationService(registry, store, max_batch_rows=8)
    never = ArenaService(registry, generation, store, duration=DUR, rng=Random(1), min_listen_s=5.0, clock=clock,
                         limiter=RateLimiter(RateLimits.unlimited()), repeat_share=0.0)
    cast(never, clock, S1, "calm piano", "r-1", "both_bad")
    cast(never, clock, S1, "calm piano", "r-1", "tie")
    assert len(repeat_candidates(store, "r-1")) == 1  # both-bad votes are not repeated
    assert store.get_pair(never.new_pair(S1, "", "r-1").token.split(".")[0]).repeat_of is None
    half = ArenaService(registry, generation, store, duration=DUR, rng=Random(2), repeat_share=0.5,
                        limiter=RateLimiter(RateLimits.unlimited()))
    served = [store.get_pair(half.new_pair(S1, "calm piano", "r-1").token.split(".")[0]).repeat_of is not None
              for _ in range(10)]
    assert sum(served) == 1  # one original: one repeat (drawn with p = 1 - 2**-10), however often the draw says yes
    with pytest.raises(ValueError, match="repeat_share"):
        ArenaService(registry, generation, store, repeat_share=1.5)
    generation.close()


# ----------------------------------------------------------------------------- simulated votes


def test_simulated_votes_are_kept_off_the_peoples_board_and_export(arena, store, clock):
    arena.repeat_share = 0.0
    people = cast(arena, clock, S1, "calm piano", "r-1", "a")
    for choice in ("b", "tie"):
        cast(arena, clock, S2, "calm piano", "panel-1", choice, simulated=True)
    with pytest.raises(InputError, match="simulated must be true or false"):
        arena.vote(S1, arena.new_pair(S1, "x", "r-1").token, "a", "r-1", DUR, DUR, "", "yes")
    assert store.vote_count() == 3
    assert len(store.battles()) == len(store.battles("people")) == 1 and len(store.battles("simulated")) == 2
    assert len(store.battles("all")) == 3
    assert (store.count_votes("people"), store.count_votes("simulated"), store.count_votes("all")) == (1, 2, 3)
    assert store.count_votes("simulated", include_ties=False) == 1
    with pytest.raises(ValueError, match="votes must be one of"):
        store.battles("robots")  # type: ignore[arg-type]

    board = LeaderboardService(store, arena.registry, min_votes=1, n_boot=50)
    assert board.view().total_votes == 1 and board.view("simulated").total_votes == 2
    assert board.view("simulated").win_rate_png.name == "win_rate_simulated_2.png"
    assert board.view("people").win_rate_png.is_file()  # each kind keeps its own picture
    with pytest.raises(InputError, match="'people' or 'simulated'"):
        board.view("all")

    rows = {kind: list(export_preferences(store, votes=kind)) for kind in ("people", "simulated", "all")}
    assert [r["pair_id"] for r in rows["people"]] == [people.token.split(".")[0]]
    assert [r["simulated"] for r in rows["all"]] == [False, True, True] and rows["simulated"] == rows["all"][1:]
    assert list(export_preferences(store)) == rows["people"]  # the default is people's only

    with open_store(None, store.data_dir.parent / "copy") as target:  # import keeps the marks
        import_preferences(target, rows["all"], audio_root=store.data_dir)
        assert list(export_preferences(target, votes="all")) == rows["all"]
        assert target.battles("simulated") == store.battles("simulated")


def test_a_repeat_counts_only_for_the_same_rater_and_kind(arena, store, clock):
    original = cast(arena, clock, S1, "calm piano", "r-1", "b")
    repeat = arena.new_pair(S1, "calm piano", "r-1")
    assert store.get_pair(repeat.token.split(".")[0]).repeat_of == original.token.split(".")[0]
    clock.advance(1.0)
    arena.vote(S1, repeat.token, "a", "someone-else", DUR, DUR)  # another rater id: says nothing about r-1
    assert repeat_votes(store) == []
    rows = list(export_preferences(store))
    assert (rows[1]["repeat_of"], rows[1]["swapped"]) == (original.token.split(".")[0], True)
    assert (rows[0]["repeat_of"], rows[0]["swapped"]) == (None, False)
