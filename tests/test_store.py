"""Preference store (app/store.py) on SQLite and PostgreSQL.

The PostgreSQL cases need a server: set MUSICRL_TEST_POSTGRES_URL (CI does, with
``eval "$(bash .ci/postgres.sh)"``); each test gets its own schema, dropped afterwards.
"""

from __future__ import annotations

import io
import os
import signal
import sqlite3
import subprocess
import sys
import threading
import time
import uuid
import wave
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError

from app.store import FEEDBACK_MAX_CHARS, Store, VoteRejected, open_store
from evaluation.ratings import Battle, fit_bradley_terry

REPO_ROOT = Path(__file__).resolve().parents[1]
POSTGRES_URL = os.environ.get("MUSICRL_TEST_POSTGRES_URL")


def wav_bytes(tag: int) -> bytes:
    """A tiny distinct WAV per tag (0.05 s of 8 kHz mono)."""
    buffer = io.BytesIO()
    with wave.open(buffer, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(8000)
        w.writeframes(tag.to_bytes(2, "little") * 400)
    return buffer.getvalue()


@pytest.fixture(params=["sqlite", "postgresql"])
def make_store(request, tmp_path):
    """Factory: each call opens a fresh, empty store (own data dir; own schema on PostgreSQL)."""
    opened: list[Store] = []
    schemas: list[str] = []
    if request.param == "postgresql" and not POSTGRES_URL:
        pytest.skip("MUSICRL_TEST_POSTGRES_URL is not set (CI sets it: eval \"$(bash .ci/postgres.sh)\")")
    admin = create_engine(POSTGRES_URL) if request.param == "postgresql" else None

    def factory() -> Store:
        data_dir = tmp_path / f"store{len(opened)}"
        url = None
        if admin is not None:
            schema = f"t_{uuid.uuid4().hex[:12]}"
            with admin.begin() as conn:
                conn.execute(text(f"CREATE SCHEMA {schema}"))
            schemas.append(schema)
            url = make_url(POSTGRES_URL).update_query_dict({"options": f"-csearch_path={schema}"})
            url = url.render_as_string(hide_password=False)
        opened.append(open_store(url, data_dir))
        return opened[-1]

    yield factory
    for store in opened:
        store.close()
    if admin is not None:
        with admin.begin() as conn:
            for schema in schemas:
                conn.execute(text(f"DROP SCHEMA {schema} CASCADE"))
        admin.dispose()


@pytest.fixture
def store(make_store) -> Store:
    return make_store()


def two_clips(store: Store, prompt: str = "calm piano", models: tuple[str, str] = ("base", "rl")):
    a = store.add_clip(prompt, models[0], "ck-a", {"cfg": 3.0}, 1, wav_bytes(1), 8000, 0.05)
    b = store.add_clip(prompt, models[1], "ck-b", {"cfg": 1.0}, 2, wav_bytes(2), 8000, 0.05)
    return a, b


def test_add_clip_is_content_addressed(store):
    first = store.add_clip("p", "m", "ck", {"temperature": 1.0}, 7, wav_bytes(5), 8000, 0.05)
    again = store.add_clip("p", "m2", "ck", {}, None, wav_bytes(5), 8000, 0.05)
    other = store.add_clip("p", "m", "ck", {}, 8, wav_bytes(6), 8000, 0.05)
    assert first.id != again.id and first.audio_file == again.audio_file != other.audio_file
    sha = first.audio_sha256
    assert first.audio_file == store.data_dir / "audio" / sha[:2] / f"{sha}.wav"
    assert first.audio_file.read_bytes() == wav_bytes(5)
    assert sorted(p.name for p in (store.data_dir / "audio").rglob("*")) == sorted(
        [sha[:2], f"{sha}.wav", other.audio_sha256[:2], f"{other.audio_sha256}.wav"]
    )  # two files, no temp files left behind
    assert store.get_clip(first.id) == first
    with pytest.raises(ValueError, match="WAVE"):
        store.add_clip("p", "m", "ck", {}, 1, b"not audio", 8000, 0.05)


def test_vote_accepted_and_feeds_ratings(store):
    a, b = two_clips(store)
    pair = store.issue_pair(a.id, b.id, "session-1")
    assert len(pair.id) >= 32 and pair.prompt == "calm piano"
    vote = store.record_vote(pair.id, "session-1", "b", "rater-9", 6.0, 7.5, "nicer drums")
    assert (vote.choice, vote.model_a, vote.model_b, vote.feedback) == ("b", "base", "rl", "nicer drums")
    assert store.vote_count() == 1
    assert store.battles() == [Battle("base", "rl", "b")]
    ratings = fit_bradley_terry(store.battles())
    assert ratings["rl"] > ratings["base"]


REFUSALS = {
    "forged pair id": (dict(pair_id="forged-0123456789abcdef"), "unknown_pair"),
    "other session": (dict(session_id="session-2"), "wrong_session"),
    "clip A not listened": (dict(listened_a_s=4.9), "not_listened"),
    "clip B not listened": (dict(listened_b_s=0.0), "not_listened"),
    "NaN listening time": (dict(listened_b_s=float("nan")), "not_listened"),
    "invalid choice": (dict(choice="c"), "invalid_choice"),
    "feedback too long": (dict(feedback="x" * (FEEDBACK_MAX_CHARS + 1)), "feedback_too_long"),
}


@pytest.mark.parametrize("case", list(REFUSALS))
def test_vote_refusals_write_nothing(store, case):
    overrides, code = REFUSALS[case]
    a, b = two_clips(store)
    pair = store.issue_pair(a.id, b.id, "session-1")
    args = dict(pair_id=pair.id, session_id="session-1", choice="a", rater_id=None,
                listened_a_s=5.0, listened_b_s=5.0, feedback="", min_listen_s=5.0) | overrides
    with pytest.raises(VoteRejected) as info:
        store.record_vote(**args)
    assert info.value.code == code and str(info.value)
    assert store.vote_count() == 0
    store.record_vote(pair.id, "session-1", "a", None, 5.0, 5.0)  # the honest vote still goes through
    assert store.vote_count() == 1


def test_replay_refused(store):
    a, b = two_clips(store)
    pair = store.issue_pair(a.id, b.id, "s")
    store.record_vote(pair.id, "s", "a", None, 9, 9)
    for choice in ("a", "b"):
        with pytest.raises(VoteRejected, match="already") as info:
            store.record_vote(pair.id, "s", choice, None, 9, 9)
        assert info.value.code == "already_voted"
    assert store.battles() == [Battle("base", "rl", "a")]


def test_database_enforces_unique_vote_and_append_only(store):
    """The guarantees hold below the Python API too: UNIQUE(pair_id), CHECK(choice), no UPDATE."""
    a, b = two_clips(store)
    pair = store.issue_pair(a.id, b.id, "s")
    store.record_vote(pair.id, "s", "a", None, 9, 9)
    insert = (
        "INSERT INTO votes (pair_id, choice, rater_id, listened_a_s, listened_b_s, feedback, created_at) "
        "VALUES (:p, :c, NULL, 9, 9, '', CURRENT_TIMESTAMP)"
    )
    for statement, params in [(insert, {"p": pair.id, "c": "b"}),
                              (insert, {"p": store.issue_pair(a.id, b.id, "s").id, "c": "maybe"}),
                              ("UPDATE votes SET choice = 'b'", {}),
                              ("DELETE FROM votes", {})]:
        with pytest.raises(DBAPIError), store.engine.begin() as conn:
            conn.execute(text(statement), params)
    assert store.battles() == [Battle("base", "rl", "a")]


def test_concurrent_votes_on_one_pair_store_exactly_one(store):
    a, b = two_clips(store)
    pair = store.issue_pair(a.id, b.id, "s")
    barrier = threading.Barrier(8)
    results: list[str] = []

    def vote(i: int) -> None:
        barrier.wait()
        try:
            store.record_vote(pair.id, "s", "ab"[i % 2], f"rater-{i}", 6, 6)
            results.append("ok")
        except VoteRejected as exc:
            results.append(exc.code)

    threads = [threading.Thread(target=vote, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(results) == ["already_voted"] * 7 + ["ok"]
    assert store.vote_count() == 1


def test_concurrent_votes_on_different_pairs_all_stored(store):
    a, b = two_clips(store)
    pairs = [store.issue_pair(a.id, b.id, f"s{i}") for i in range(16)]
    barrier = threading.Barrier(8)
    errors: list[BaseException] = []

    def worker(k: int) -> None:
        barrier.wait()
        try:
            for pair in pairs[k::8]:
                store.record_vote(pair.id, pair.session_id, "tie", None, 6, 6)
        except BaseException as exc:  # reported by the assert below
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(k,)) for k in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors and store.vote_count() == 16


def test_export_import_round_trip(make_store):
    source = make_store()
    a, b = two_clips(source, models=("base", "rl"))
    c = source.add_clip("calm piano", "merged", "ck-c", {"alpha": 0.5}, 3, wav_bytes(3), 8000, 0.05)
    for clips, choice in [((a, b), "a"), ((b, c), "b"), ((a, c), "tie"), ((c, b), "both_bad")]:
        pair = source.issue_pair(clips[0].id, clips[1].id, "s")
        source.record_vote(pair.id, "s", choice, "r1", 5.5, 6.5, f"vote {choice}")
    rows = list(source.export_preferences())
    assert [r["outcome"] for r in rows] == ["a", "b", "tie", "both_bad"]
    assert [r["label"] for r in rows] == [1.0, 1.0, 0.5, 0.5]
    assert (rows[1]["chosen"], rows[1]["rejected"]) == (c.id, b.id)  # "b" won: chosen is clip B
    assert rows[1]["chosen_model_id"] == "merged" and rows[1]["chosen_checkpoint_hash"] == "ck-c"
    assert Path(rows[0]["chosen_audio"]).read_bytes() == wav_bytes(1)
    assert [r["outcome"] for r in source.export_preferences(include_ties=False)] == ["a", "b"]

    target = make_store()
    summary = target.import_preferences(rows)
    assert (summary.imported, summary.skipped, summary.missing_audio) == (4, 0, 0)
    assert target.battles() == source.battles()
    strip = lambda r: {k: v for k, v in r.items() if not k.endswith("_audio")}
    assert [strip(r) for r in target.export_preferences()] == [strip(r) for r in rows]
    assert target.get_clip(c.id).audio_file.read_bytes() == wav_bytes(3)
    again = target.import_preferences(rows)  # idempotent by pair id
    assert (again.imported, again.skipped) == (0, 4) and target.vote_count() == 4
    with pytest.raises(ValueError, match="row 1"):
        target.import_preferences([{**rows[0], "pair_id": "new", "outcome": "maybe"}])


def test_sqlite_pragmas_and_bad_urls(tmp_path):
    store = open_store(None, tmp_path)
    with store.engine.connect() as conn:
        assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
        assert conn.exec_driver_sql("PRAGMA synchronous").scalar() == 2  # FULL
        assert conn.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1
    store.close()
    with pytest.raises(ValueError, match="in-memory"):
        open_store("sqlite://", tmp_path)
    with pytest.raises(ValueError, match="unsupported"):
        open_store("mysql://u:p@localhost/db", tmp_path)


def test_sqlite_vote_waits_for_another_writer(tmp_path):
    """Another process holding the write lock delays a vote (busy timeout); it does not fail it."""
    store = open_store(None, tmp_path)
    a, b = two_clips(store)
    pair = store.issue_pair(a.id, b.id, "s")
    other = sqlite3.connect(tmp_path / "musicrl.sqlite3", isolation_level=None)
    other.execute("BEGIN IMMEDIATE")
    result: list[object] = []
    voter = threading.Thread(target=lambda: result.append(store.record_vote(pair.id, "s", "a", None, 6, 6)))
    voter.start()
    time.sleep(0.3)
    assert not result  # still waiting for the lock
    other.execute("COMMIT")
    voter.join(timeout=30)
    other.close()
    assert len(result) == 1 and store.vote_count() == 1
    store.close()


CHILD = """
import sys, io, wave
from app.store import open_store

def wav(tag):
    buffer = io.BytesIO()
    with wave.open(buffer, "wb") as w:
        w.setnchannels(1); w.setsampwidth(2); w.setframerate(8000); w.writeframes(bytes([tag, 0]) * 400)
    return buffer.getvalue()

store = open_store(None, sys.argv[1])
a = store.add_clip("p", "base", "ck", {}, 1, wav(1), 8000, 0.05)
b = store.add_clip("p", "rl", "ck", {}, 2, wav(2), 8000, 0.05)
while True:
    pair = store.issue_pair(a.id, b.id, "s")
    store.record_vote(pair.id, "s", "a", None, 6, 6)
    print("ACK", pair.id, flush=True)
"""


def test_acknowledged_votes_survive_kill_9(tmp_path):
    """A server process is SIGKILLed while voting; every vote it acknowledged is in the database."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO_ROOT), os.environ.get("PYTHONPATH", "")])}
    child = subprocess.Popen([sys.executable, "-c", CHILD, str(tmp_path)], stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True, env=env, cwd=REPO_ROOT)
    acked: list[str] = []
    try:
        for line in child.stdout:
            acked.append(line.split()[1])
            if len(acked) == 25:
                break
        os.kill(child.pid, signal.SIGKILL)
        rest, err = child.communicate(timeout=30)
    finally:
        if child.poll() is None:
            child.kill()
    assert child.returncode == -signal.SIGKILL, err
    acked += [line.split()[1] for line in rest.splitlines() if line.startswith("ACK ")]
    assert len(acked) >= 25

    store = open_store(None, tmp_path)
    stored = {row["pair_id"] for row in store.export_preferences()}
    store.close()
    assert set(acked) <= stored
