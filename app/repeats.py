"""Rater consistency repeats: a pair a rater already judged, served to that rater again with the sides swapped.

Choosing (``ArenaService.new_pair``, probability ``repeat_share``): for a caller that gives a rater id,
:func:`repeat_candidates` lists that rater's earlier votes of a, b or tie on ordinary (non-repeat) pairs
that have no repeat yet — and, when the caller typed a prompt, only pairs of that prompt, since a pair
answering with a prompt the listener did not ask for would give the repeat away. One is drawn at random
and :func:`issue_repeat` serves it as a NEW pair (new token) recorded with ``repeat_of`` = the original
pair's id and ``swapped`` = True. Its clips are copies (:func:`copy_clip`): the same samples in a WAV
with a ``JUNK`` chunk of random bytes, so the file, its sha256 and therefore the served path (and
gradio's content-hashed cache URL) all differ from the original's; the prompt is the original's.

Scoring: a repeat agrees when its choice mapped back through the swap (a <-> b; tie and both_bad
unchanged) equals the original choice. :func:`self_agreement` (pure) gives per-rater and pooled
agreement with Wilson 95 % intervals, separately for people's and simulated votes; a repeat counts for
a rater only when both votes carry that rater id and are of the same kind. :func:`repeat_votes` reads
the (original, repeat) vote pairs from a store; :func:`consistency_summary` is the JSON the admin
export and ``musicrl prefs consistency`` write.
"""

from __future__ import annotations

import math
import secrets
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from sqlalchemy import exists, select
from sqlalchemy.orm import aliased

from app.schema import PairRow, VoteRow
from app.store import ClipRecord, IssuedPair, PairRecord, Store, pair_record
from evaluation.ratings import win_rate_with_ci

__all__ = ["Agreement", "KindAgreement", "RepeatVote", "consistency_summary", "copy_clip", "issue_repeat",
           "repeat_candidates", "repeat_votes", "self_agreement", "unswap", "with_junk_chunk"]

REPEATABLE_CHOICES = ("a", "b", "tie")  # an original voted "both bad" is not repeated
_SWAP = {"a": "b", "b": "a", "tie": "tie", "both_bad": "both_bad"}


# ----------------------------------------------------------------------------- scoring (pure)


def unswap(choice: str, swapped: bool) -> str:
    """A repeat's choice in the original pair's sides: a <-> b when swapped; tie and both_bad unchanged."""
    if choice not in _SWAP:
        raise ValueError(f"unknown choice {choice!r}")
    return _SWAP[choice] if swapped else choice


@dataclass(frozen=True)
class RepeatVote:
    """One voted repeat: the rater, the kind of both votes, the original's choice and the repeat's."""

    rater_id: str
    simulated: bool
    original: str
    repeat: str
    swapped: bool = True

    @property
    def agrees(self) -> bool:
        return unswap(self.repeat, self.swapped) == self.original


@dataclass(frozen=True)
class Agreement:
    """agreements / repeats with a Wilson 95 % interval (NaN when there are no repeats). ``rater_id``
    None = pooled over every rater."""

    rater_id: str | None
    agreements: int
    repeats: int
    rate: float
    low: float
    high: float

    def as_dict(self) -> dict[str, Any]:
        finite = lambda x: x if math.isfinite(x) else None  # noqa: E731 - JSON has no NaN
        return {"rater_id": self.rater_id, "agreements": self.agreements, "repeats": self.repeats,
                "rate": finite(self.rate), "ci_low": finite(self.low), "ci_high": finite(self.high)}


@dataclass(frozen=True)
class KindAgreement:
    """Per-rater agreement (sorted by rater id) and the panel-wide figure pooled over every repeat."""

    raters: tuple[Agreement, ...]
    pooled: Agreement


def _agreement(rater_id: str | None, votes: list[RepeatVote], confidence: float) -> Agreement:
    agreed = sum(v.agrees for v in votes)
    ci = win_rate_with_ci(agreed, len(votes) - agreed, confidence=confidence, method="wilson")
    return Agreement(rater_id, agreed, len(votes), ci.rate, ci.low, ci.high)


def self_agreement(repeats: Iterable[RepeatVote], confidence: float = 0.95) -> dict[str, KindAgreement]:
    """{"people": ..., "simulated": ...}: per rater, agreements / repeats voted with a Wilson interval,
    and the pooled agreement over all raters of that kind (every repeat weighs the same).

    Example: a rater voted a, then on the swapped repeat b -> agrees; tie then tie -> agrees; a then a
    -> disagrees: 2 / 3.
    """
    repeats = list(repeats)
    report = {}
    for kind, simulated in (("people", False), ("simulated", True)):
        mine = [r for r in repeats if r.simulated == simulated]
        raters = sorted({r.rater_id for r in mine})
        per_rater = tuple(_agreement(rater, [r for r in mine if r.rater_id == rater], confidence) for rater in raters)
        report[kind] = KindAgreement(per_rater, _agreement(None, mine, confidence))
    return report


def consistency_summary(report: dict[str, KindAgreement]) -> dict[str, Any]:
    """The JSON form: ``{"kind": "consistency", "people": {"pooled": {...}, "raters": [{...}]}, "simulated":
    {...}}``, each figure ``{rater_id, agreements, repeats, rate, ci_low, ci_high}`` (null rate and
    interval when there are no repeats; rater_id null in "pooled")."""
    return {"kind": "consistency", "interval": "Wilson 95 %",
            **{kind: {"pooled": agreement.pooled.as_dict(), "raters": [a.as_dict() for a in agreement.raters]}
               for kind, agreement in report.items()}}


# ----------------------------------------------------------------------------- store


def repeat_votes(store: Store) -> list[RepeatVote]:
    """Every voted repeat whose original was voted too, by the same rater id with the same kind of vote,
    in vote order (a repeat voted under another rater id, or anonymously, says nothing about one rater)."""
    original = aliased(VoteRow)
    query = (
        select(VoteRow.rater_id, VoteRow.simulated, VoteRow.choice, PairRow.swapped, original.rater_id,
               original.simulated, original.choice)
        .join(PairRow, VoteRow.pair_id == PairRow.id)
        .join(original, original.pair_id == PairRow.repeat_of)
        .where(PairRow.repeat_of.is_not(None))
        .order_by(VoteRow.id)
    )
    with store.read_session() as session:
        rows = session.execute(query).all()
    return [RepeatVote(rater, bool(sim), first, choice, bool(swapped))
            for rater, sim, choice, swapped, first_rater, first_sim, first in rows
            if rater is not None and rater == first_rater and bool(sim) == bool(first_sim)]


def repeat_candidates(store: Store, rater_id: str, prompt: str | None = None, limit: int = 200) -> list[PairRecord]:
    """Pairs ``rater_id`` voted a, b or tie on, that are not repeats and have none yet (newest first, at
    most ``limit``); with ``prompt``, only pairs of that prompt."""
    repeated = aliased(PairRow)
    query = (
        select(PairRow)
        .join(VoteRow, VoteRow.pair_id == PairRow.id)
        .where(VoteRow.rater_id == rater_id, VoteRow.choice.in_(REPEATABLE_CHOICES), PairRow.repeat_of.is_(None),
               ~exists().where(repeated.repeat_of == PairRow.id))
        .order_by(VoteRow.id.desc())
        .limit(limit)
    )
    if prompt is not None:
        query = query.where(PairRow.prompt == prompt)
    with store.read_session() as session:
        return [pair_record(row) for row in session.scalars(query)]


def with_junk_chunk(wav: bytes, payload: bytes) -> bytes:
    """The same RIFF/WAVE file with a ``JUNK`` chunk (which every reader skips) appended: same samples,
    different bytes. ``payload`` of even length keeps the chunks word-aligned."""
    if wav[:4] != b"RIFF" or wav[8:12] != b"WAVE":
        raise ValueError("not a RIFF/WAVE file")
    if len(payload) % 2:
        raise ValueError("the payload must have an even length")
    body = wav + (b"\0" if len(wav) % 2 else b"") + b"JUNK" + len(payload).to_bytes(4, "little") + payload
    return body[:4] + (len(body) - 8).to_bytes(4, "little") + body[8:]


def copy_clip(store: Store, clip: ClipRecord) -> ClipRecord:
    """A new clip row with ``clip``'s prompt, model and parameters (plus ``copy_of``: its id) whose WAV holds
    the same samples under a fresh content name (:func:`with_junk_chunk`)."""
    data = with_junk_chunk(clip.audio_file.read_bytes(), secrets.token_bytes(16))
    return store.add_clip(clip.prompt, clip.model_id, clip.checkpoint_hash, {**clip.params, "copy_of": clip.id},
                          clip.seed, data, clip.sample_rate, clip.duration)


def issue_repeat(store: Store, original: PairRecord,
                 session_id: str) -> tuple[IssuedPair, ClipRecord, ClipRecord] | None:
    """Issue ``original`` again to ``session_id`` with the sides swapped: (pair, clip A, clip B), or None
    when one of its WAVs is not on this disk (an imported pair without its audio)."""
    clip_a, clip_b = store.get_clip(original.clip_a), store.get_clip(original.clip_b)
    if not (clip_a.audio_file.is_file() and clip_b.audio_file.is_file()):
        return None
    new_a, new_b = copy_clip(store, clip_b), copy_clip(store, clip_a)
    issued = store.issue_pair(new_a.id, new_b.id, session_id, repeat_of=original.id, swapped=True)
    return issued, new_a, new_b
