"""Durable preference store: generated clips, blind A/B pairs and append-only votes (SQLAlchemy 2).

Imports nothing from gradio: the app, the CLI (``musicrl prefs export|import``) and the reward-model
recipes all use it. One :class:`Store` wraps one engine; every method opens its own short session,
so a Store is safe to share between the threads of gradio's worker pool.

Backends
- SQLite (default, a file under ``data_dir``) in WAL mode with ``synchronous=FULL``: every commit
  appends to the WAL and fsyncs it before returning. Surviving ``kill -9`` of the server only needs
  the WAL write to reach the OS (``NORMAL`` would do); ``FULL`` also keeps acknowledged votes through
  an OS crash or power loss, and votes are a few per second at most, so the fsync costs nothing
  that matters. Write transactions use ``BEGIN IMMEDIATE`` (take the write lock up front, so the
  30 s busy timeout applies instead of a read-to-write upgrade failing at once) and are retried
  on "database is locked".
- PostgreSQL via ``postgresql+psycopg://user:pass@host:port/db`` (plain ``postgresql://`` is mapped
  to the psycopg 3 driver).

Integrity of a vote (:meth:`Store.record_vote`): the pair exists, was issued to the voting session,
has no vote yet (a UNIQUE constraint on ``votes.pair_id``, so concurrent duplicates are refused by
the database, not by a racy check), both clips were listened to for ``min_listen_s``, the choice
is valid (also a CHECK constraint) and the feedback is short. Anything else raises
:class:`VoteRejected` and writes nothing. Votes are append-only (triggers refuse UPDATE/DELETE).

Audio is content-addressed: ``data_dir/audio/ab/abcdef….wav`` is named by the sha256 of its bytes,
written atomically (temp file, fsync, rename) before the row that refers to it; identical audio is
stored once. Audio always lives on the local disk, also with PostgreSQL.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import random
import secrets
import tempfile
import time
import uuid
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from datetime import datetime, timezone
from functools import partial
from pathlib import Path
from typing import Any, TypeVar

from sqlalchemy import (
    DDL,
    JSON,
    BigInteger,
    CheckConstraint,
    DateTime,
    Engine,
    ForeignKey,
    String,
    Text,
    create_engine,
    event,
    func,
    select,
)
from sqlalchemy.engine import make_url
from sqlalchemy.exc import IntegrityError, OperationalError
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, aliased, mapped_column, sessionmaker

from evaluation.ratings import OUTCOMES, Battle

__all__ = [
    "CHOICES",
    "DEFAULT_MIN_LISTEN_S",
    "FEEDBACK_MAX_CHARS",
    "ClipRecord",
    "ImportSummary",
    "PairRecord",
    "Store",
    "VoteRecord",
    "VoteRejected",
    "open_store",
]

CHOICES: tuple[str, ...] = OUTCOMES  # "a", "b", "tie", "both_bad"
DEFAULT_MIN_LISTEN_S = 5.0  # Music Arena gates voting on ≥ 5 s of each clip (ALGORITHMS §8)
FEEDBACK_MAX_CHARS = 2000  # hard cap, also a CHECK constraint; a Store may choose a lower limit
SQLITE_FILENAME = "musicrl.sqlite3"
_ID_MAX = 128  # session, rater, model ids
_BUSY_TIMEOUT_S = 30.0
_LOCK_RETRIES = 8

T = TypeVar("T")


class VoteRejected(Exception):
    """A vote that must not be stored. ``code`` is machine-readable, ``reason`` is for the listener."""

    def __init__(self, code: str, reason: str) -> None:
        super().__init__(reason)
        self.code = code
        self.reason = reason


# ----------------------------------------------------------------------------- schema


class Base(DeclarativeBase):
    type_annotation_map = {dict[str, Any]: JSON, datetime: DateTime(timezone=True)}


class ClipRow(Base):
    __tablename__ = "clips"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    prompt: Mapped[str] = mapped_column(Text)
    model_id: Mapped[str] = mapped_column(String(_ID_MAX), index=True)
    checkpoint_hash: Mapped[str] = mapped_column(String(128))
    params: Mapped[dict[str, Any]]
    seed: Mapped[int | None] = mapped_column(BigInteger)
    audio_sha256: Mapped[str] = mapped_column(String(64), index=True)
    audio_path: Mapped[str] = mapped_column(String(256))  # relative to data_dir
    sample_rate: Mapped[int]
    duration: Mapped[float]
    created_at: Mapped[datetime]


class PairRow(Base):
    __tablename__ = "pairs"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)  # random, unguessable
    clip_a: Mapped[str] = mapped_column(ForeignKey("clips.id"))
    clip_b: Mapped[str] = mapped_column(ForeignKey("clips.id"))
    session_id: Mapped[str] = mapped_column(String(_ID_MAX), index=True)
    issued_at: Mapped[datetime]
    prompt: Mapped[str] = mapped_column(Text)


class VoteRow(Base):
    __tablename__ = "votes"
    __table_args__ = (
        CheckConstraint("choice IN ('a', 'b', 'tie', 'both_bad')", name="ck_votes_choice"),
        CheckConstraint(f"length(feedback) <= {FEEDBACK_MAX_CHARS}", name="ck_votes_feedback_length"),
    )

    id: Mapped[int] = mapped_column(primary_key=True, autoincrement=True)
    pair_id: Mapped[str] = mapped_column(ForeignKey("pairs.id"), unique=True)
    choice: Mapped[str] = mapped_column(String(8))
    rater_id: Mapped[str | None] = mapped_column(String(_ID_MAX))
    listened_a_s: Mapped[float]
    listened_b_s: Mapped[float]
    feedback: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime]


# Append-only votes, enforced by the database itself.
for _ddl in (
    "CREATE TRIGGER votes_no_update BEFORE UPDATE ON votes "
    "BEGIN SELECT RAISE(ABORT, 'votes are append-only'); END",
    "CREATE TRIGGER votes_no_delete BEFORE DELETE ON votes "
    "BEGIN SELECT RAISE(ABORT, 'votes are append-only'); END",
):
    event.listen(VoteRow.__table__, "after_create", DDL(_ddl).execute_if(dialect="sqlite"))
for _ddl in (
    "CREATE OR REPLACE FUNCTION musicrl_votes_append_only() RETURNS trigger LANGUAGE plpgsql AS "
    "$$ BEGIN RAISE EXCEPTION 'votes are append-only'; END $$",
    "CREATE TRIGGER votes_append_only BEFORE UPDATE OR DELETE ON votes "
    "FOR EACH ROW EXECUTE FUNCTION musicrl_votes_append_only()",
):
    event.listen(VoteRow.__table__, "after_create", DDL(_ddl).execute_if(dialect="postgresql"))


# ----------------------------------------------------------------------------- records


@dataclass(frozen=True)
class ClipRecord:
    id: str
    prompt: str
    model_id: str
    checkpoint_hash: str
    params: dict[str, Any]
    seed: int | None
    audio_sha256: str
    audio_file: Path  # absolute path of the WAV
    sample_rate: int
    duration: float
    created_at: datetime


@dataclass(frozen=True)
class PairRecord:
    id: str
    clip_a: str
    clip_b: str
    session_id: str
    issued_at: datetime
    prompt: str


@dataclass(frozen=True)
class VoteRecord:
    id: int
    pair_id: str
    choice: str
    rater_id: str | None
    listened_a_s: float
    listened_b_s: float
    feedback: str
    created_at: datetime
    model_a: str  # revealed to the listener after the vote
    model_b: str


@dataclass(frozen=True)
class ImportSummary:
    imported: int  # new votes written
    skipped: int  # pair id already present (import is idempotent)
    missing_audio: int  # clips created whose WAV was not found at the given path


def _utc(value: datetime) -> datetime:
    """SQLite returns naive datetimes; everything we store is UTC."""
    return value.replace(tzinfo=timezone.utc) if value.tzinfo is None else value.astimezone(timezone.utc)


def _now() -> datetime:
    return datetime.now(timezone.utc)


# ----------------------------------------------------------------------------- opening


def open_store(
    url: str | None, data_dir: Path | str, *, feedback_max_chars: int = FEEDBACK_MAX_CHARS
) -> Store:
    """Open (creating tables if missing) the store at ``url``; ``None`` = SQLite file in ``data_dir``.

    ``data_dir`` also holds the content-addressed audio (``data_dir/audio``). Raises ValueError for
    an unsupported URL (anything but SQLite files and PostgreSQL).
    """
    data_dir = Path(data_dir).expanduser().resolve()
    data_dir.mkdir(parents=True, exist_ok=True)
    parsed = make_url(url if url is not None else f"sqlite:///{data_dir / SQLITE_FILENAME}")
    backend = parsed.get_backend_name()
    if backend == "sqlite":
        if parsed.database in (None, "", ":memory:") or "mode=memory" in str(parsed):
            raise ValueError("the preference store needs a SQLite file, not an in-memory database")
        engine = create_engine(
            parsed,
            connect_args={"timeout": _BUSY_TIMEOUT_S, "check_same_thread": False},
            pool_size=8,
            max_overflow=56,
            pool_timeout=_BUSY_TIMEOUT_S,
        )
        _configure_sqlite(engine)
    elif backend == "postgresql":
        if parsed.drivername == "postgresql":
            parsed = parsed.set(drivername="postgresql+psycopg")
        engine = create_engine(parsed, pool_pre_ping=True, pool_size=8, max_overflow=24)
    else:
        raise ValueError(f"unsupported database URL {parsed.render_as_string(hide_password=True)!r}: "
                         "use sqlite:///FILE or postgresql+psycopg://USER:PASS@HOST:PORT/DB")
    store = Store(engine, data_dir, feedback_max_chars=feedback_max_chars)
    store._run_write(lambda s: Base.metadata.create_all(s.connection()))
    return store


def _configure_sqlite(engine: Engine) -> None:
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None  # we emit BEGIN ourselves (see _on_begin)
        cursor = dbapi_connection.cursor()
        mode = cursor.execute("PRAGMA journal_mode=WAL").fetchone()[0]
        if str(mode).lower() != "wal":
            raise RuntimeError(f"could not put the SQLite store in WAL mode (got {mode!r})")
        cursor.execute("PRAGMA synchronous=FULL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute(f"PRAGMA busy_timeout={int(_BUSY_TIMEOUT_S * 1000)}")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Any) -> None:
        write = conn.get_execution_options().get("musicrl_write", False)
        conn.exec_driver_sql("BEGIN IMMEDIATE" if write else "BEGIN")


def _is_locked(exc: OperationalError) -> bool:
    message = str(exc.orig).lower()
    return "database is locked" in message or "database is busy" in message or "table is locked" in message


# ----------------------------------------------------------------------------- store


class Store:
    """Clips, pairs and votes. Build with :func:`open_store`; thread-safe; close with :meth:`close`."""

    def __init__(
        self, engine: Engine, data_dir: Path, *, feedback_max_chars: int = FEEDBACK_MAX_CHARS
    ) -> None:
        if not 0 <= feedback_max_chars <= FEEDBACK_MAX_CHARS:
            raise ValueError(f"feedback_max_chars must be in [0, {FEEDBACK_MAX_CHARS}]: {feedback_max_chars}")
        self.engine = engine
        self.data_dir = data_dir
        self.audio_dir = data_dir / "audio"
        self.feedback_max_chars = feedback_max_chars
        self._read = sessionmaker(engine, expire_on_commit=False)
        self._write = sessionmaker(engine.execution_options(musicrl_write=True), expire_on_commit=False)

    @property
    def url(self) -> str:
        return self.engine.url.render_as_string(hide_password=True)

    def close(self) -> None:
        self.engine.dispose()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _run_write(self, work: Callable[[Session], T]) -> T:
        """Run ``work`` in one write transaction, retrying when SQLite reports a lock."""
        for attempt in range(_LOCK_RETRIES):
            try:
                with self._write() as session, session.begin():
                    return work(session)
            except OperationalError as exc:
                if not _is_locked(exc) or attempt == _LOCK_RETRIES - 1:
                    raise
                time.sleep(min(1.0, 0.02 * 2**attempt) * (0.5 + random.random()))
        raise AssertionError("unreachable")

    # -- clips -------------------------------------------------------------------------------

    def _store_audio(self, wav_bytes: bytes) -> tuple[str, str]:
        """Write the WAV under its sha256 (atomically; once). Returns (sha256, path relative to data_dir)."""
        sha = hashlib.sha256(wav_bytes).hexdigest()
        rel = f"audio/{sha[:2]}/{sha}.wav"
        target = self.data_dir / rel
        if target.is_file() and target.stat().st_size == len(wav_bytes):
            return sha, rel
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=".tmp-", suffix=".wav")
        try:
            with os.fdopen(fd, "wb") as handle:
                handle.write(wav_bytes)
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(tmp, target)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        dir_fd = os.open(target.parent, os.O_RDONLY)
        try:
            os.fsync(dir_fd)  # make the rename itself durable
        finally:
            os.close(dir_fd)
        return sha, rel

    def add_clip(
        self,
        prompt: str,
        model_id: str,
        checkpoint_hash: str,
        params: Mapping[str, Any],
        seed: int | None,
        wav_bytes: bytes,
        sample_rate: int,
        duration: float,
    ) -> ClipRecord:
        """Store a generated clip: the WAV file first (content-addressed), then its row."""
        wav_bytes = bytes(wav_bytes)
        if wav_bytes[:4] != b"RIFF" or wav_bytes[8:12] != b"WAVE":
            raise ValueError("wav_bytes must be the bytes of a RIFF/WAVE file")
        _check_id("model_id", model_id)
        if not isinstance(checkpoint_hash, str) or len(checkpoint_hash) > 128:
            raise ValueError("checkpoint_hash must be a string of at most 128 characters")
        if not isinstance(sample_rate, int) or sample_rate <= 0:
            raise ValueError(f"sample_rate must be a positive int, got {sample_rate!r}")
        if not (isinstance(duration, int | float) and math.isfinite(duration) and duration >= 0):
            raise ValueError(f"duration must be a finite number of seconds >= 0, got {duration!r}")
        if seed is not None and not isinstance(seed, int):
            raise ValueError(f"seed must be an int or None, got {seed!r}")
        try:
            params = json.loads(json.dumps(dict(params), allow_nan=False))
        except (TypeError, ValueError) as exc:
            raise ValueError(f"params must be JSON-serialisable (finite numbers): {exc}") from None
        sha, rel = self._store_audio(wav_bytes)
        row = ClipRow(id=uuid.uuid4().hex, prompt=str(prompt), model_id=model_id,
                      checkpoint_hash=checkpoint_hash, params=params, seed=seed, audio_sha256=sha,
                      audio_path=rel, sample_rate=sample_rate,
                      duration=float(duration), created_at=_now())
        self._run_write(lambda s: s.add(row))
        return self._clip_record(row)

    def _clip_record(self, row: ClipRow) -> ClipRecord:
        return ClipRecord(id=row.id, prompt=row.prompt, model_id=row.model_id,
                          checkpoint_hash=row.checkpoint_hash, params=dict(row.params), seed=row.seed,
                          audio_sha256=row.audio_sha256,
                          audio_file=self.data_dir / row.audio_path, sample_rate=row.sample_rate,
                          duration=row.duration, created_at=_utc(row.created_at))

    def get_clip(self, clip_id: str) -> ClipRecord:
        with self._read() as session:
            row = session.get(ClipRow, clip_id)
            if row is None:
                raise LookupError(f"unknown clip id {clip_id!r}")
            return self._clip_record(row)

    # -- pairs -------------------------------------------------------------------------------

    def issue_pair(self, clip_a_id: str, clip_b_id: str, session_id: str) -> PairRecord:
        """Record that ``session_id`` was shown clip_a as "A" and clip_b as "B" (the caller randomises sides).

        The pair id is a 192-bit random token: only the session it was issued to can vote on it.
        """
        _check_id("session_id", session_id)
        if clip_a_id == clip_b_id:
            raise ValueError("a pair needs two different clips")

        def work(session: Session) -> PairRow:
            clip_a, clip_b = session.get(ClipRow, clip_a_id), session.get(ClipRow, clip_b_id)
            for clip_id, clip in ((clip_a_id, clip_a), (clip_b_id, clip_b)):
                if clip is None:
                    raise LookupError(f"unknown clip id {clip_id!r}")
            row = PairRow(id=secrets.token_urlsafe(24), clip_a=clip_a_id, clip_b=clip_b_id,
                          session_id=session_id, issued_at=_now(), prompt=clip_a.prompt)
            session.add(row)
            return row

        return _pair_record(self._run_write(work))

    def get_pair(self, pair_id: str) -> PairRecord:
        with self._read() as session:
            row = session.get(PairRow, pair_id)
            if row is None:
                raise LookupError(f"unknown pair id {pair_id!r}")
            return _pair_record(row)

    # -- votes -------------------------------------------------------------------------------

    def record_vote(
        self,
        pair_id: str,
        session_id: str,
        choice: str,
        rater_id: str | None = None,
        listened_a_s: float = 0.0,
        listened_b_s: float = 0.0,
        feedback: str = "",
        min_listen_s: float = DEFAULT_MIN_LISTEN_S,
    ) -> VoteRecord:
        """Store one vote, or raise :class:`VoteRejected` and store nothing (see the module docstring)."""
        if choice not in CHOICES:
            raise VoteRejected("invalid_choice", f"choice must be one of {', '.join(CHOICES)}: {choice!r}")
        if not isinstance(feedback, str):
            raise VoteRejected("invalid_feedback", "feedback must be text")
        if len(feedback) > self.feedback_max_chars:
            raise VoteRejected(
                "feedback_too_long",
                f"feedback is limited to {self.feedback_max_chars} characters (got {len(feedback)})",
            )
        listened = []
        for value in (listened_a_s, listened_b_s):
            ok = isinstance(value, int | float) and math.isfinite(value) and value >= 0
            listened.append(float(value) if ok else -1.0)
        if min(listened) < min_listen_s:
            raise VoteRejected(
                "not_listened",
                f"listen to both clips for at least {min_listen_s:g} s before voting "
                f"(A: {max(listened[0], 0):.1f} s, B: {max(listened[1], 0):.1f} s)",
            )
        if rater_id is not None and (not isinstance(rater_id, str) or len(rater_id) > _ID_MAX):
            raise VoteRejected("invalid_rater", f"rater id must be text of at most {_ID_MAX} characters")
        if not isinstance(pair_id, str) or not 0 < len(pair_id) <= 64:
            raise VoteRejected("unknown_pair", "this pair does not exist")

        def work(session: Session) -> VoteRecord:
            pair = session.get(PairRow, pair_id)
            if pair is None:
                raise VoteRejected("unknown_pair", "this pair does not exist")
            if pair.session_id != session_id:
                raise VoteRejected("wrong_session", "this pair was issued to another session")
            row = VoteRow(pair_id=pair_id, choice=choice, rater_id=rater_id, listened_a_s=listened[0],
                          listened_b_s=listened[1], feedback=feedback, created_at=_now())
            session.add(row)
            session.flush()  # the UNIQUE(pair_id) constraint decides here, also between concurrent voters
            clip_a, clip_b = session.get(ClipRow, pair.clip_a), session.get(ClipRow, pair.clip_b)
            return VoteRecord(id=row.id, pair_id=pair_id, choice=choice, rater_id=rater_id,
                              listened_a_s=listened[0], listened_b_s=listened[1], feedback=feedback,
                              created_at=_utc(row.created_at), model_a=clip_a.model_id,
                              model_b=clip_b.model_id)

        try:
            return self._run_write(work)
        except IntegrityError:
            with self._read() as session:
                if session.scalar(select(VoteRow.id).where(VoteRow.pair_id == pair_id)) is not None:
                    raise VoteRejected("already_voted", "this pair has already been voted on") from None
            raise

    def vote_count(self) -> int:
        with self._read() as session:
            return int(session.scalar(select(func.count()).select_from(VoteRow)) or 0)

    def battles(self) -> list[Battle]:
        """Every vote as a :class:`~evaluation.ratings.Battle` of model ids, in vote order."""
        clip_a, clip_b = aliased(ClipRow), aliased(ClipRow)
        query = (
            select(clip_a.model_id, clip_b.model_id, VoteRow.choice)
            .join(PairRow, VoteRow.pair_id == PairRow.id)
            .join(clip_a, PairRow.clip_a == clip_a.id)
            .join(clip_b, PairRow.clip_b == clip_b.id)
            .order_by(VoteRow.id)
        )
        with self._read() as session:
            return [Battle(a, b, choice) for a, b, choice in session.execute(query)]

    # -- export / import ---------------------------------------------------------------------

    def export_preferences(self, include_ties: bool = True, page_size: int = 500) -> Iterator[dict[str, Any]]:
        """Votes as rows in TRL's preference layout, in vote order (JSON-serialisable dicts).

        ``prompt``, ``chosen``, ``rejected`` (clip ids), ``label`` (1.0 = chosen preferred, 0.5 = tie or
        both bad) and ``outcome`` (the raw choice: "a", "b", "tie", "both_bad"); per side (``chosen_*``,
        ``rejected_*``): audio (absolute path), audio_sha256, model_id, checkpoint_hash, seed,
        params, sample_rate, duration, created_at; and pair_id, session_id, issued_at, rater_id,
        listened_a_s, listened_b_s, feedback, created_at. For ties and both-bad the chosen side is
        clip A by convention; ``include_ties=False`` leaves them out. Reads page by page (keyset on
        the vote id), so no session stays open while the caller consumes rows.
        """
        clip_a, clip_b = aliased(ClipRow), aliased(ClipRow)
        last_id = 0
        while True:
            query = (
                select(VoteRow, PairRow, clip_a, clip_b)
                .join(PairRow, VoteRow.pair_id == PairRow.id)
                .join(clip_a, PairRow.clip_a == clip_a.id)
                .join(clip_b, PairRow.clip_b == clip_b.id)
                .where(VoteRow.id > last_id)
                .order_by(VoteRow.id)
                .limit(page_size)
            )
            if not include_ties:
                query = query.where(VoteRow.choice.in_(("a", "b")))
            with self._read() as session:
                page = [(vote.id, self._export_row(vote, *rest)) for vote, *rest in session.execute(query)]
            if not page:
                return
            last_id = page[-1][0]
            yield from (row for _, row in page)

    def _export_row(self, vote: VoteRow, pair: PairRow, clip_a: ClipRow, clip_b: ClipRow) -> dict[str, Any]:
        chosen, rejected = (clip_b, clip_a) if vote.choice == "b" else (clip_a, clip_b)
        row: dict[str, Any] = {"pair_id": pair.id, "prompt": pair.prompt,
                               "chosen": chosen.id, "rejected": rejected.id,
                               "label": 1.0 if vote.choice in ("a", "b") else 0.5, "outcome": vote.choice}
        for side, clip in (("chosen", chosen), ("rejected", rejected)):
            fields = {
                "audio": str(self.data_dir / clip.audio_path), "audio_sha256": clip.audio_sha256,
                "model_id": clip.model_id, "checkpoint_hash": clip.checkpoint_hash, "seed": clip.seed,
                "params": clip.params, "sample_rate": clip.sample_rate, "duration": clip.duration,
                "created_at": _utc(clip.created_at).isoformat(),
            }
            row.update({f"{side}_{key}": value for key, value in fields.items()})
        row.update({"session_id": pair.session_id, "issued_at": _utc(pair.issued_at).isoformat(),
                    "rater_id": vote.rater_id, "listened_a_s": vote.listened_a_s,
                    "listened_b_s": vote.listened_b_s, "feedback": vote.feedback,
                    "created_at": _utc(vote.created_at).isoformat()})
        return row

    def import_preferences(self, rows: Iterable[Mapping[str, Any]]) -> ImportSummary:
        """Write rows produced by :meth:`export_preferences` (idempotent: known pair ids are skipped).

        Clips are matched by id; a new clip's WAV is copied into this store's content-addressed
        audio when the row's path exists (its sha256 must match), otherwise the clip row is still
        written and counted in ``missing_audio``. Imported votes were gated when cast, so the
        listening gate is not applied again; the choice and feedback length are checked. Raises
        ValueError naming the row for malformed input (rows before it stay imported).
        """
        imported = skipped = missing = 0
        for number, raw in enumerate(rows, start=1):
            try:
                pair_id, outcome = str(raw["pair_id"]), str(raw["outcome"])
                if outcome not in CHOICES:
                    raise ValueError(f"outcome must be one of {CHOICES}, got {outcome!r}")
                feedback = str(raw.get("feedback") or "")
                if len(feedback) > self.feedback_max_chars:
                    raise ValueError(f"feedback longer than {self.feedback_max_chars} characters")
                with self._read() as session:
                    if session.get(PairRow, pair_id) is not None:
                        skipped += 1
                        continue
                chosen = self._import_clip_row(raw, "chosen")
                rejected = self._import_clip_row(raw, "rejected")
            except (KeyError, TypeError, ValueError) as exc:
                raise ValueError(f"preference row {number}: {exc}") from None
            clip_a, clip_b = (rejected, chosen) if outcome == "b" else (chosen, rejected)
            pair = PairRow(id=pair_id, clip_a=clip_a.id, clip_b=clip_b.id,
                           session_id=str(raw.get("session_id") or "imported"),
                           issued_at=_parse_time(raw.get("issued_at")), prompt=str(raw["prompt"]))
            vote = VoteRow(pair_id=pair_id, choice=outcome, rater_id=raw.get("rater_id"),
                           listened_a_s=float(raw.get("listened_a_s") or 0.0),
                           listened_b_s=float(raw.get("listened_b_s") or 0.0),
                           feedback=feedback, created_at=_parse_time(raw.get("created_at")))
            write = partial(_write_imported, clips=(clip_a, clip_b), pair=pair, vote=vote)
            new_clips = self._run_write(write)
            if new_clips is None:  # another importer got there first
                skipped += 1
                continue
            imported += 1
            missing += sum(not (self.data_dir / c.audio_path).is_file() for c in new_clips)
        return ImportSummary(imported=imported, skipped=skipped, missing_audio=missing)

    def _import_clip_row(self, raw: Mapping[str, Any], side: str) -> ClipRow:
        """A (detached) row for the side's clip; copies its audio in when the file is found."""
        clip_id = str(raw[side])
        sha = str(raw[f"{side}_audio_sha256"])
        if len(sha) != 64 or any(c not in "0123456789abcdef" for c in sha):
            raise ValueError(f"{side}_audio_sha256 is not a sha256 hex digest")
        rel = f"audio/{sha[:2]}/{sha}.wav"
        source = raw.get(f"{side}_audio")
        if source and Path(source).is_file() and not (self.data_dir / rel).is_file():
            data = Path(source).read_bytes()
            if hashlib.sha256(data).hexdigest() != sha:
                raise ValueError(f"{side}_audio {source} does not match its sha256")
            self._store_audio(data)
        model_id = str(raw[f"{side}_model_id"])
        _check_id("model_id", model_id)
        row = ClipRow(id=clip_id, prompt=str(raw["prompt"]), model_id=model_id,
                      checkpoint_hash=str(raw.get(f"{side}_checkpoint_hash") or ""),
                      params=dict(raw.get(f"{side}_params") or {}), seed=raw.get(f"{side}_seed"),
                      audio_sha256=sha, audio_path=rel, sample_rate=int(raw.get(f"{side}_sample_rate") or 0),
                      duration=float(raw.get(f"{side}_duration") or 0.0),
                      created_at=_parse_time(raw.get(f"{side}_created_at")))
        return row


def _pair_record(row: PairRow) -> PairRecord:
    return PairRecord(id=row.id, clip_a=row.clip_a, clip_b=row.clip_b, session_id=row.session_id,
                      issued_at=_utc(row.issued_at), prompt=row.prompt)


def _check_id(name: str, value: object) -> None:
    if not isinstance(value, str) or not 0 < len(value) <= _ID_MAX:
        raise ValueError(f"{name} must be a non-empty string of at most {_ID_MAX} characters, got {value!r}")


def _write_imported(
    session: Session, clips: tuple[ClipRow, ClipRow], pair: PairRow, vote: VoteRow
) -> list[ClipRow] | None:
    """One imported vote in one transaction; returns the clips that were new, None if the pair exists."""
    if session.get(PairRow, pair.id) is not None:
        return None
    new = [c for c in {c.id: c for c in clips}.values() if session.get(ClipRow, c.id) is None]
    session.add_all(new)
    session.flush()
    session.add(pair)
    session.flush()
    session.add(vote)
    return new


def _parse_time(value: object) -> datetime:
    if value is None or value == "":
        return _now()
    if isinstance(value, datetime):
        return _utc(value)
    return _utc(datetime.fromisoformat(str(value)))
