"""Durable preference store: generated clips, blind A/B pairs and append-only votes (SQLAlchemy 2).

Imports nothing from gradio: the app, the CLI (``musicrl prefs export|import``) and training all use
it. One :class:`Store` wraps one engine; every method opens its own short session, so a Store is
safe to share between the threads of gradio's worker pool. Tables: ``app/schema.py``; TRL-layout
export and import: ``app/transfer.py``; the rules a vote must pass: ``app/vote_rules.py``.

Backends
- SQLite (default, a file under ``data_dir``) in WAL mode with ``synchronous=FULL``: every commit
  appends to the WAL and fsyncs it before returning, so an acknowledged vote survives ``kill -9``
  of the server, an OS crash or power loss. Write transactions use ``BEGIN IMMEDIATE`` (take the
  write lock up front, so the 30 s busy timeout applies instead of a read-to-write upgrade failing
  at once) and are retried on "database is locked".
- PostgreSQL via ``postgresql+psycopg://user:pass@host:port/db`` (plain ``postgresql://`` is mapped
  to the psycopg 3 driver, the optional extra ``musicrl[postgres]``; without it opening fails with
  one line saying so).

Who opens the store (``access``), and why it matters for SQLite (docs/SECURITY.md, "No acknowledged
vote is lost"): the last connection to close a WAL database checkpoints it and deletes the WAL
file. SQLite decides "last" from POSIX locks, which belong to a process and are all dropped when
that process closes ANY descriptor of the database file — so if anything inside the server ever
opened and closed the file, another process closing its connection would delete the WAL the
server is still appending to, and the votes written there vanish with the server. Hence:

- ``"server"``: the app's process, the only one that writes during normal operation;
- ``"read"``: any other process that reads (``prefs export``, training from ``--db``). SQLite is
  opened read-only (``mode=ro``): such a connection cannot take the exclusive lock, so it never
  checkpoints or deletes the WAL, whatever state the server's locks are in;
- ``"write"``: another process that writes (``prefs import``). Its read-write connections are
  outlived by a read-only guard connection of the same process, so none of them is ever the last
  one (SQLite refuses the exclusive lock while the guard holds its shared one), and the guard
  itself, being read-only, cannot delete the WAL either.

Votes are of two kinds (``VoteKind``): people's and simulated listeners' (``simulated`` = True,
claimed by the client). Ratings are only ever computed from one kind (:meth:`Store.battles`).

Audio is content-addressed: ``data_dir/audio/ab/abcdef….wav`` is named by the sha256 of its bytes,
written atomically (temp file, fsync, rename) before the row that refers to it; identical audio is
stored once. Audio always lives on the local disk, also with PostgreSQL.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import math
import os
import random
import secrets
import sqlite3
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Literal, TypeVar

from sqlalchemy import Engine, create_engine, event, func, or_, select, true
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import IntegrityError, OperationalError
from sqlalchemy.orm import Session, aliased, sessionmaker

from app.schema import FEEDBACK_MAX_CHARS, ID_MAX, ClipRow, PairRow, VoteRow, migrate
from app.vote_rules import CHOICES, DEFAULT_MIN_LISTEN_S, VoteRejected, check_listening
from evaluation.ratings import Battle

__all__ = ["CHOICES", "DEFAULT_MIN_LISTEN_S", "FEEDBACK_MAX_CHARS", "SQLITE_FILENAME", "VOTE_KINDS", "Access",
           "ClipRecord", "IssuedPair", "PairRecord", "Store", "VoteKind", "VoteRecord", "VoteRejected", "open_store"]

SQLITE_FILENAME = "musicrl.sqlite3"
Access = Literal["server", "read", "write"]
VoteKind = Literal["people", "simulated", "all"]
VOTE_KINDS: tuple[str, ...] = ("people", "simulated", "all")
_BUSY_TIMEOUT_S = 30.0
_LOCK_RETRIES = 8

T = TypeVar("T")


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
    repeat_of: str | None = None  # a rater consistency repeat of this pair id (app/repeats.py)
    swapped: bool = False


@dataclass(frozen=True)
class IssuedPair:
    """A new pair and its vote token ``"<pair id>.<secret>"``: returned once, never stored (only the
    secret's sha256 is), so a copy of the database cannot vote."""

    pair: PairRecord
    token: str


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
    simulated: bool = False


def utc(value: datetime) -> datetime:
    """SQLite returns naive datetimes; everything we store is UTC."""
    return value.replace(tzinfo=timezone.utc) if value.tzinfo is None else value.astimezone(timezone.utc)


def now_utc() -> datetime:
    return datetime.now(timezone.utc)


def _sha256(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def check_vote_kind(votes: object) -> str:
    """"people", "simulated" or "all"; ValueError otherwise."""
    if votes not in VOTE_KINDS:
        raise ValueError(f"votes must be one of {', '.join(VOTE_KINDS)}, got {votes!r}")
    return str(votes)


def vote_kind_filter(votes: str) -> Any:
    """The WHERE clause selecting one kind of vote (NULL, from older stores, is a person's)."""
    kind = check_vote_kind(votes)
    if kind == "people":
        return or_(VoteRow.simulated.is_(None), VoteRow.simulated.is_(False))
    if kind == "simulated":
        return VoteRow.simulated.is_(True)
    return true()


def split_token(token: object) -> tuple[str, str] | None:
    """``"<pair id>.<secret>"`` -> (pair id, secret), or None when it cannot be a token."""
    if not isinstance(token, str) or not 0 < len(token) <= 200 or token.count(".") != 1:
        return None
    pair_id, secret = token.split(".")
    return (pair_id, secret) if pair_id and secret else None


# ----------------------------------------------------------------------------- opening


def open_store(
    url: str | URL | None,
    data_dir: Path | str,
    *,
    access: Access = "server",
    feedback_max_chars: int = FEEDBACK_MAX_CHARS,
) -> Store:
    """Open the store at ``url`` (``None`` = the SQLite file in ``data_dir``); see the module docstring
    for ``access``. "server" and "write" create missing tables and columns; "read" needs an existing
    store. ``data_dir`` also holds the content-addressed audio (``data_dir/audio``). Raises ValueError
    for an unsupported URL (anything but SQLite files and PostgreSQL) or a missing store to read.
    """
    if access not in ("server", "read", "write"):
        raise ValueError(f"access must be 'server', 'read' or 'write', got {access!r}")
    data_dir = Path(data_dir).expanduser().resolve()
    parsed = make_url(url) if url is not None else URL.create("sqlite", database=str(data_dir / SQLITE_FILENAME))
    backend = parsed.get_backend_name()
    guard: Path | None = None
    if backend == "sqlite":
        if parsed.database in (None, "", ":memory:") or "mode=memory" in str(parsed):
            raise ValueError("the preference store needs a SQLite file, not an in-memory database")
        db_file = Path(parsed.database).expanduser().resolve()
        if access == "read":
            if not db_file.is_file():
                raise ValueError(f"there is no preference store at {db_file}")
            parsed = parsed.set(database=f"{db_file.as_uri()}?mode=ro", query={"uri": "true"})
        else:
            data_dir.mkdir(parents=True, exist_ok=True)
            db_file.parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(parsed, connect_args={"timeout": _BUSY_TIMEOUT_S, "check_same_thread": False},
                               pool_size=8, max_overflow=56, pool_timeout=_BUSY_TIMEOUT_S)
        _configure_sqlite(engine, read_only=access == "read")
        guard = db_file if access == "write" else None
    elif backend == "postgresql":
        if parsed.drivername == "postgresql":
            parsed = parsed.set(drivername="postgresql+psycopg")
        try:  # the driver is the optional extra `postgres` (SQLite, the default, needs nothing)
            engine = create_engine(parsed, pool_pre_ping=True, pool_size=8, max_overflow=24)
        except ImportError as err:
            raise ValueError(f"PostgreSQL needs its driver ({err.name or 'psycopg'} is not installed): "
                             "pip install 'musicrl[postgres]'") from None
        if access == "read":
            event.listen(engine, "connect", _postgres_read_only)
    else:
        raise ValueError(f"unsupported database URL {parsed.render_as_string(hide_password=True)!r}: "
                         "use sqlite:///FILE or postgresql+psycopg://USER:PASS@HOST:PORT/DB")
    store = Store(engine, data_dir, feedback_max_chars=feedback_max_chars)
    try:
        if access == "read":
            store.vote_count()  # fail now, with the open error, rather than at the first query
        else:
            store.run_write(lambda s: migrate(s.connection()))  # also puts a new SQLite file in WAL mode
        if guard is not None:  # before any read-write connection of this process can close
            store._guard = _ReadOnlyGuard(guard)
    except BaseException:
        store.close()
        raise
    return store


def _postgres_read_only(dbapi_connection: Any, _record: Any) -> None:
    with dbapi_connection.cursor() as cursor:
        cursor.execute("SET SESSION CHARACTERISTICS AS TRANSACTION READ ONLY")
    dbapi_connection.commit()


def _configure_sqlite(engine: Engine, read_only: bool) -> None:
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None  # we emit BEGIN ourselves (see _on_begin)
        cursor = dbapi_connection.cursor()
        if not read_only:  # a read-only connection cannot change the journal mode (the server set it)
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


class _ReadOnlyGuard:
    """A read-only connection kept open until the writer's engine is gone,
    so that none of this process's read-write connections is ever the last one to close."""

    def __init__(self, db_file: Path) -> None:
        self.connection = sqlite3.connect(f"{db_file.as_uri()}?mode=ro", uri=True, timeout=_BUSY_TIMEOUT_S)
        self.connection.execute("PRAGMA schema_version").fetchone()  # opens the WAL: holds the shared lock

    def close(self) -> None:
        self.connection.close()


def _is_locked(exc: OperationalError) -> bool:
    message = str(exc.orig).lower()
    return "database is locked" in message or "database is busy" in message or "table is locked" in message


# ----------------------------------------------------------------------------- store


class Store:
    """Clips, pairs and votes. Build with :func:`open_store`; thread-safe; close with :meth:`close`."""

    def __init__(self, engine: Engine, data_dir: Path, *, feedback_max_chars: int = FEEDBACK_MAX_CHARS) -> None:
        if not 0 <= feedback_max_chars <= FEEDBACK_MAX_CHARS:
            raise ValueError(f"feedback_max_chars must be in [0, {FEEDBACK_MAX_CHARS}]: {feedback_max_chars}")
        self.engine = engine
        self.data_dir = data_dir
        self.audio_dir = data_dir / "audio"
        self.feedback_max_chars = feedback_max_chars
        self._guard: _ReadOnlyGuard | None = None  # set by open_store for access="write"
        self._read = sessionmaker(engine, expire_on_commit=False)
        self._write = sessionmaker(engine.execution_options(musicrl_write=True), expire_on_commit=False)

    @property
    def url(self) -> str:
        return self.engine.url.render_as_string(hide_password=True)

    @property
    def database_file(self) -> Path | None:
        """The SQLite file (None on PostgreSQL)."""
        if self.engine.url.get_backend_name() != "sqlite":
            return None
        name = str(self.engine.url.database)
        if name.startswith("file:"):  # a read-only store's URI (Path.as_uri: percent-encoded)
            from urllib.parse import unquote, urlparse

            return Path(unquote(urlparse(name).path)).resolve()
        return Path(name).resolve()

    def close(self) -> None:
        self.engine.dispose()
        if self._guard is not None:  # only after every read-write connection is closed
            self._guard.close()
            self._guard = None

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @contextmanager
    def read_session(self) -> Iterator[Session]:
        """A short read-only session (the caller must not write through it)."""
        with self._read() as session:
            yield session

    def run_write(self, work: Callable[[Session], T]) -> T:
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

    def store_audio(self, wav_bytes: bytes) -> tuple[str, str]:
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
        check_id("model_id", model_id)
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
        sha, rel = self.store_audio(wav_bytes)
        row = ClipRow(id=uuid.uuid4().hex, prompt=str(prompt), model_id=model_id,
                      checkpoint_hash=checkpoint_hash, params=params, seed=seed, audio_sha256=sha,
                      audio_path=rel, sample_rate=sample_rate,
                      duration=float(duration), created_at=now_utc())
        self.run_write(lambda s: s.add(row))
        return self.clip_record(row)

    def clip_record(self, row: ClipRow) -> ClipRecord:
        return ClipRecord(id=row.id, prompt=row.prompt, model_id=row.model_id,
                          checkpoint_hash=row.checkpoint_hash, params=dict(row.params), seed=row.seed,
                          audio_sha256=row.audio_sha256,
                          audio_file=self.data_dir / row.audio_path, sample_rate=row.sample_rate,
                          duration=row.duration, created_at=utc(row.created_at))

    def get_clip(self, clip_id: str) -> ClipRecord:
        with self._read() as session:
            row = session.get(ClipRow, clip_id)
            if row is None:
                raise LookupError(f"unknown clip id {clip_id!r}")
            return self.clip_record(row)

    # -- pairs -------------------------------------------------------------------------------

    def issue_pair(self, clip_a_id: str, clip_b_id: str, session_id: str, *, repeat_of: str | None = None,
                   swapped: bool = False) -> IssuedPair:
        """Record that ``session_id`` was shown clip_a as "A" and clip_b as "B" (the caller randomises
        sides), now. Returns the pair and its vote token (see :class:`IssuedPair`). ``repeat_of``/``swapped``
        mark a rater consistency repeat (``app/repeats.py``)."""
        check_id("session_id", session_id)
        if clip_a_id == clip_b_id:
            raise ValueError("a pair needs two different clips")
        secret = secrets.token_urlsafe(24)

        def work(session: Session) -> PairRow:
            clip_a, clip_b = session.get(ClipRow, clip_a_id), session.get(ClipRow, clip_b_id)
            for clip_id, clip in ((clip_a_id, clip_a), (clip_b_id, clip_b)):
                if clip is None:
                    raise LookupError(f"unknown clip id {clip_id!r}")
            row = PairRow(id=secrets.token_urlsafe(12), clip_a=clip_a_id, clip_b=clip_b_id, session_id=session_id,
                          issued_at=now_utc(), prompt=clip_a.prompt, secret_sha256=_sha256(secret),
                          repeat_of=repeat_of, swapped=bool(swapped) if repeat_of is not None else None)
            session.add(row)
            return row

        row = self.run_write(work)
        return IssuedPair(pair_record(row), f"{row.id}.{secret}")

    def get_pair(self, pair_id: str) -> PairRecord:
        with self._read() as session:
            row = session.get(PairRow, pair_id)
            if row is None:
                raise LookupError(f"unknown pair id {pair_id!r}")
            return pair_record(row)

    # -- votes -------------------------------------------------------------------------------

    def record_vote(
        self,
        token: str,
        session_id: str,
        choice: str,
        rater_id: str | None = None,
        listened_a_s: float = 0.0,
        listened_b_s: float = 0.0,
        feedback: str = "",
        min_listen_s: float = DEFAULT_MIN_LISTEN_S,
        now: datetime | None = None,
        simulated: bool = False,
    ) -> VoteRecord:
        """Store one vote, or raise :class:`VoteRejected` and store nothing.

        The vote must carry the pair's token (issued to ``session_id``; compared in constant time),
        be the pair's first vote (a UNIQUE constraint decides, also between concurrent voters), and
        pass :func:`app.vote_rules.check_listening` against the time since the pair was issued and
        the clips' lengths (``now``: the server's clock unless a test fixes it). ``choice``, feedback
        and rater id are checked again here, as the last line behind the service's cleaning.
        ``simulated`` marks a simulated listener's vote (kept off the people's leaderboard and export).
        """
        if not isinstance(simulated, bool):
            raise VoteRejected("invalid_simulated", f"simulated must be true or false, got {simulated!r}")
        if choice not in CHOICES:
            raise VoteRejected("invalid_choice", f"choice must be one of {', '.join(CHOICES)}: {choice!r}")
        if not isinstance(feedback, str) or len(feedback) > self.feedback_max_chars:
            raise VoteRejected("feedback_too_long", f"feedback is limited to {self.feedback_max_chars} characters")
        if rater_id is not None and (not isinstance(rater_id, str) or not 0 < len(rater_id) <= ID_MAX):
            raise VoteRejected("invalid_rater", f"rater id must be text of at most {ID_MAX} characters")
        parts = split_token(token)
        if parts is None:
            raise VoteRejected("unknown_pair", "this pair does not exist")
        pair_id, secret = parts

        def work(session: Session) -> VoteRecord:
            pair = session.get(PairRow, pair_id)
            if pair is None or pair.secret_sha256 is None or not hmac.compare_digest(
                    _sha256(secret), pair.secret_sha256):
                raise VoteRejected("unknown_pair", "this pair does not exist")
            if pair.session_id != session_id:
                raise VoteRejected("wrong_session", "this pair was issued to another session")
            clip_a, clip_b = session.get(ClipRow, pair.clip_a), session.get(ClipRow, pair.clip_b)
            elapsed = ((now or now_utc()) - utc(pair.issued_at)).total_seconds()
            listened = check_listening(listened_a_s, listened_b_s, (clip_a.duration, clip_b.duration), elapsed,
                                       min_listen_s)
            row = VoteRow(pair_id=pair_id, choice=choice, rater_id=rater_id, listened_a_s=listened[0],
                          listened_b_s=listened[1], feedback=feedback, created_at=now_utc(), simulated=simulated)
            session.add(row)
            session.flush()  # the UNIQUE(pair_id) constraint decides here, also between concurrent voters
            return VoteRecord(id=row.id, pair_id=pair_id, choice=choice, rater_id=rater_id,
                              listened_a_s=listened[0], listened_b_s=listened[1], feedback=feedback,
                              created_at=utc(row.created_at), model_a=clip_a.model_id, model_b=clip_b.model_id,
                              simulated=simulated)

        try:
            return self.run_write(work)
        except IntegrityError:
            with self._read() as session:
                if session.scalar(select(VoteRow.id).where(VoteRow.pair_id == pair_id)) is not None:
                    raise VoteRejected("already_voted", "this pair has already been voted on") from None
            raise

    def vote_count(self) -> int:
        with self._read() as session:
            return int(session.scalar(select(func.count()).select_from(VoteRow)) or 0)

    def counts(self) -> dict[str, int]:
        """Rows per table: {"clips": n, "pairs": n, "votes": n}."""
        with self._read() as session:
            return {row.__tablename__: int(session.scalar(select(func.count()).select_from(row)) or 0)
                    for row in (ClipRow, PairRow, VoteRow)}

    def count_votes(self, votes: VoteKind = "all", *, include_ties: bool = True, repeats: bool | None = None) -> int:
        """Votes of one kind ("people", "simulated", "all"); ``include_ties=False`` counts a/b only;
        ``repeats``: None = any pair, True = consistency repeats only, False = ordinary pairs only."""
        query = select(func.count()).select_from(VoteRow).join(PairRow, VoteRow.pair_id == PairRow.id)
        query = query.where(vote_kind_filter(votes))
        if not include_ties:
            query = query.where(VoteRow.choice.in_(("a", "b")))
        if repeats is not None:
            query = query.where(PairRow.repeat_of.is_not(None) if repeats else PairRow.repeat_of.is_(None))
        with self._read() as session:
            return int(session.scalar(query) or 0)

    def battles(self, votes: VoteKind = "people", *, repeats: bool = False) -> list[Battle]:
        """The votes of one kind as :class:`~evaluation.ratings.Battle` s of model ids, in vote order.

        ``votes``: "people" (default), "simulated" or "all" — ratings never mix the kinds unless asked.
        Consistency repeats are left out unless ``repeats``: they replay a pair the same rater already
        judged, so counting them would weigh that rater's comparison twice (docs/SECURITY.md).
        """
        clip_a, clip_b = aliased(ClipRow), aliased(ClipRow)
        query = (
            select(clip_a.model_id, clip_b.model_id, VoteRow.choice)
            .join(PairRow, VoteRow.pair_id == PairRow.id)
            .join(clip_a, PairRow.clip_a == clip_a.id)
            .join(clip_b, PairRow.clip_b == clip_b.id)
            .where(vote_kind_filter(votes))
            .order_by(VoteRow.id)
        )
        if not repeats:
            query = query.where(PairRow.repeat_of.is_(None))
        with self._read() as session:
            return [Battle(a, b, choice) for a, b, choice in session.execute(query)]


def pair_record(row: PairRow) -> PairRecord:
    return PairRecord(id=row.id, clip_a=row.clip_a, clip_b=row.clip_b, session_id=row.session_id,
                      issued_at=utc(row.issued_at), prompt=row.prompt, repeat_of=row.repeat_of,
                      swapped=bool(row.swapped))


def check_id(name: str, value: object) -> None:
    if not isinstance(value, str) or not 0 < len(value) <= ID_MAX:
        raise ValueError(f"{name} must be a non-empty string of at most {ID_MAX} characters, got {value!r}")
