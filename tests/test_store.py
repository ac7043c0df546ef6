"""Preference store (app/store.py) on SQLite and PostgreSQL.

The PostgreSQL cases need a server: set MUSICRL_TEST_POSTGRES_URL (CI does, with
``eval "$(bash .ci/postgres.sh)"``); each test gets its own schema, dropped afterwards.
"""

from __future__ import annotations

import io
import json
import os
import signal
import sqlite3
import subprocess
import sys
import threading
import time
import uuid
import wave
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError

from app.store import FEEDBACK_MAX_CHARS, IssuedPair, Store, VoteRejected, open_store
from app.transfer import export_preferences, import_preferences
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


def vote(store: Store, issued: IssuedPair, choice: str, rater_id: str | None = None, feedback: str = "",
         session: str | None = None, listened: tuple[float, float] = (0.05, 0.05)):
    """A vote cast 10 s after the pair was issued, having heard both 0.05 s clips in full."""
    return store.record_vote(issued.token, session or issued.pair.session_id, choice, rater_id, *listened, feedback,
                             now=issued.pair.issued_at + timedelta(seconds=10))


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
    issued = store.issue_pair(a.id, b.id, "session-1")
    pair_id, secret = issued.token.split(".")
    assert pair_id == issued.pair.id and len(secret) >= 32 and issued.pair.prompt == "calm piano"
    vote_ = vote(store, issued, "b", "rater-9", "nicer drums")
    assert (vote_.choice, vote_.model_a, vote_.model_b, vote_.feedback) == ("b", "base", "rl", "nicer drums")
    assert store.vote_count() == 1
    assert store.battles() == [Battle("base", "rl", "b")]
    ratings = fit_bradley_terry(store.battles())
    assert ratings["rl"] > ratings["base"]


def test_the_token_secret_is_stored_only_as_its_hash(store):
    """A copy of the database cannot vote: it holds the pair id and the secret's sha256, not the secret."""
    a, b = two_clips(store)
    issued = store.issue_pair(a.id, b.id, "session-1")
    secret = issued.token.split(".")[1]
    with store.engine.connect() as conn:
        row = conn.execute(text("SELECT * FROM pairs")).mappings().one()
    assert secret not in str(dict(row)) and row["secret_sha256"] == __import__("hashlib").sha256(
        secret.encode()).hexdigest()
    with pytest.raises(VoteRejected, match="does not exist"):  # what a leaked database offers
        store.record_vote(f"{row['id']}.{row['secret_sha256']}", row["session_id"], "a", None, 0.05, 0.05)


REFUSALS = {
    "forged token": (dict(token="forged.0123456789abcdef"), "unknown_pair"),
    "pair id without its secret": (dict(token="{pair_id}"), "unknown_pair"),
    "wrong secret": (dict(token="{pair_id}.AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"), "unknown_pair"),
    "other session": (dict(session_id="session-2"), "wrong_session"),
    "clip A not listened": (dict(listened_a_s=0.04), "not_listened"),
    "clip B not listened": (dict(listened_b_s=0.0), "not_listened"),
    "NaN listening time": (dict(listened_b_s=float("nan")), "invalid_listening"),
    "infinite listening time": (dict(listened_a_s=float("inf")), "invalid_listening"),
    "negative listening time": (dict(listened_a_s=-1.0), "invalid_listening"),
    "text listening time": (dict(listened_a_s="6"), "invalid_listening"),
    "more than the clip": (dict(listened_a_s=1e9), "implausible_listening"),
    "1e308 seconds": (dict(listened_b_s=1e308), "implausible_listening"),
    "too soon": (dict(after_s=0.01), "too_soon"),
    "invalid choice": (dict(choice="c"), "invalid_choice"),
    "feedback too long": (dict(feedback="x" * (FEEDBACK_MAX_CHARS + 1)), "feedback_too_long"),
    "rater id too long": (dict(rater_id="r" * 129), "invalid_rater"),
}


@pytest.mark.parametrize("case", list(REFUSALS))
def test_vote_refusals_write_nothing(store, case):
    overrides, code = REFUSALS[case]
    overrides = dict(overrides)  # popped below: the table is shared by both backends
    a, b = two_clips(store)
    issued = store.issue_pair(a.id, b.id, "session-1")
    after = timedelta(seconds=overrides.pop("after_s", 10.0))
    args = dict(token=issued.token, session_id="session-1", choice="a", rater_id=None, listened_a_s=0.05,
                listened_b_s=0.05, feedback="", min_listen_s=5.0, now=issued.pair.issued_at + after) | overrides
    args["token"] = args["token"].format(pair_id=issued.pair.id)
    with pytest.raises(VoteRejected) as info:
        store.record_vote(**args)
    assert info.value.code == code and str(info.value)
    assert store.vote_count() == 0
    vote(store, issued, "a")  # the honest vote still goes through
    assert store.vote_count() == 1


def test_replay_refused(store):
    a, b = two_clips(store)
    issued = store.issue_pair(a.id, b.id, "s")
    vote(store, issued, "a")
    for choice in ("a", "b"):
        with pytest.raises(VoteRejected, match="already") as info:
            vote(store, issued, choice)
        assert info.value.code == "already_voted"
    assert store.battles() == [Battle("base", "rl", "a")]


def test_database_enforces_unique_vote_and_append_only(store):
    """The guarantees hold below the Python API too: UNIQUE(pair_id), CHECK(choice), no UPDATE."""
    a, b = two_clips(store)
    issued = store.issue_pair(a.id, b.id, "s")
    vote(store, issued, "a")
    insert = (
        "INSERT INTO votes (pair_id, choice, rater_id, listened_a_s, listened_b_s, feedback, created_at) "
        "VALUES (:p, :c, NULL, 9, 9, '', CURRENT_TIMESTAMP)"
    )
    for statement, params in [(insert, {"p": issued.pair.id, "c": "b"}),
                              (insert, {"p": store.issue_pair(a.id, b.id, "s").pair.id, "c": "maybe"}),
                              ("UPDATE votes SET choice = 'b'", {}),
                              ("DELETE FROM votes", {})]:
        with pytest.raises(DBAPIError), store.engine.begin() as conn:
            conn.execute(text(statement), params)
    assert store.battles() == [Battle("base", "rl", "a")]


def test_concurrent_votes_on_one_pair_store_exactly_one(store):
    a, b = two_clips(store)
    issued = store.issue_pair(a.id, b.id, "s")
    barrier = threading.Barrier(8)
    results: list[str] = []

    def cast(i: int) -> None:
        barrier.wait()
        try:
            vote(store, issued, "ab"[i % 2], f"rater-{i}")
            results.append("ok")
        except VoteRejected as exc:
            results.append(exc.code)

    threads = [threading.Thread(target=cast, args=(i,)) for i in range(8)]
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
            for issued in pairs[k::8]:
                vote(store, issued, "tie")
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
        vote(source, source.issue_pair(clips[0].id, clips[1].id, "s"), choice, "r1", f"vote {choice}")
    rows = list(export_preferences(source))
    assert [r["outcome"] for r in rows] == ["a", "b", "tie", "both_bad"]
    assert [r["label"] for r in rows] == [1.0, 1.0, 0.5, 0.5]
    assert (rows[1]["chosen"], rows[1]["rejected"]) == (c.id, b.id)  # "b" won: chosen is clip B
    assert rows[1]["chosen_model_id"] == "merged" and rows[1]["chosen_checkpoint_hash"] == "ck-c"
    assert rows[0]["chosen_audio"] == f"audio/{a.audio_sha256[:2]}/{a.audio_sha256}.wav"  # relative: no host paths
    assert str(source.data_dir) not in json.dumps(rows)
    assert (source.data_dir / rows[0]["chosen_audio"]).read_bytes() == wav_bytes(1)
    assert [r["outcome"] for r in export_preferences(source, include_ties=False)] == ["a", "b"]

    target = make_store()
    summary = import_preferences(target, rows, audio_root=source.data_dir)
    assert (summary.imported, summary.skipped, summary.missing_audio) == (4, 0, 0)
    assert target.battles() == source.battles()
    assert list(export_preferences(target)) == rows
    assert target.get_clip(c.id).audio_file.read_bytes() == wav_bytes(3)
    again = import_preferences(target, rows)  # idempotent by pair id
    assert (again.imported, again.skipped) == (0, 4) and target.vote_count() == 4
    with pytest.raises(ValueError, match="row 1"):
        import_preferences(target, [{**rows[0], "pair_id": "new", "outcome": "maybe"}])
    with pytest.raises(VoteRejected, match="does not exist"):  # imported pairs carry no token
        target.record_vote(f"{rows[0]['pair_id']}.anything", "s", "a", None, 0.05, 0.05)


def test_import_follows_no_path_outside_the_audio_root(make_store, tmp_path):
    source = make_store()
    a, b = two_clips(source)
    vote(source, source.issue_pair(a.id, b.id, "s"), "a")
    (tmp_path / "secret.wav").write_bytes(wav_bytes(1))  # the right bytes, outside the root
    row = next(export_preferences(source))
    for path in ("../secret.wav", str(tmp_path / "secret.wav")):
        target = make_store()
        summary = import_preferences(target, [{**row, "chosen_audio": path}], audio_root=tmp_path / "root")
        assert summary.missing_audio == 2


def test_an_older_store_gains_the_new_columns(tmp_path):
    """A store written before vote tokens (and simulated votes, repeats) existed opens, keeps its votes as
    people's and takes new ones."""
    db = tmp_path / "musicrl.sqlite3"
    old = sqlite3.connect(db)
    old.executescript("""
        CREATE TABLE clips (id VARCHAR(32) PRIMARY KEY, prompt TEXT, model_id VARCHAR(128), checkpoint_hash
            VARCHAR(128), params JSON, seed BIGINT, audio_sha256 VARCHAR(64), audio_path VARCHAR(256),
            sample_rate INTEGER, duration FLOAT, created_at DATETIME);
        CREATE TABLE pairs (id VARCHAR(64) PRIMARY KEY, clip_a VARCHAR(32), clip_b VARCHAR(32),
            session_id VARCHAR(128), issued_at DATETIME, prompt TEXT);
        CREATE TABLE votes (id INTEGER PRIMARY KEY AUTOINCREMENT, pair_id VARCHAR(64) UNIQUE, choice VARCHAR(8),
            rater_id VARCHAR(128), listened_a_s FLOAT, listened_b_s FLOAT, feedback TEXT, created_at DATETIME);
        INSERT INTO clips VALUES ('c1', 'p', 'base', '', '{}', 1, 'x', 'audio/x.wav', 8000, 1.0, '2026-11-01 10:00:00');
        INSERT INTO clips VALUES ('c2', 'p', 'rl', '', '{}', 2, 'y', 'audio/y.wav', 8000, 1.0, '2026-11-01 10:00:00');
        INSERT INTO pairs VALUES ('old-pair', 'c1', 'c2', 's', '2026-11-01 10:00:00', 'p');
        INSERT INTO votes VALUES (1, 'old-pair', 'b', 'r', 6, 6, '', '2026-11-01 10:00:09');
    """)
    old.close()
    with open_store(None, tmp_path) as store:
        assert store.battles() == store.battles("people") == [Battle("base", "rl", "b")]  # old votes: people's
        assert store.battles("simulated") == [] and store.count_votes("simulated") == 0
        old_row = next(export_preferences(store))
        assert (old_row["simulated"], old_row["repeat_of"], old_row["swapped"]) == (False, None, False)
        a, b = two_clips(store)
        vote(store, store.issue_pair(a.id, b.id, "s"), "a")
        assert store.vote_count() == 2
    with sqlite3.connect(db) as conn:  # the additive migration added the new columns
        assert {"simulated"} <= {r[1] for r in conn.execute("PRAGMA table_info(votes)")}
        assert {"repeat_of", "swapped"} <= {r[1] for r in conn.execute("PRAGMA table_info(pairs)")}


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
    issued = store.issue_pair(a.id, b.id, "s")
    other = sqlite3.connect(tmp_path / "musicrl.sqlite3", isolation_level=None)
    other.execute("BEGIN IMMEDIATE")
    result: list[object] = []
    voter = threading.Thread(target=lambda: result.append(vote(store, issued, "a")))
    voter.start()
    time.sleep(0.3)
    assert not result  # still waiting for the lock
    other.execute("COMMIT")
    voter.join(timeout=30)
    other.close()
    assert len(result) == 1 and store.vote_count() == 1
    store.close()


# A server process for the durability tests: the app's store (access "server") holding two clips.
SERVER_PREAMBLE = """
import sys, io, wave
from datetime import timedelta
from app.store import open_store

def wav(tag):
    buffer = io.BytesIO()
    with wave.open(buffer, "wb") as w:
        w.setnchannels(1); w.setsampwidth(2); w.setframerate(8000); w.writeframes(bytes([tag, 0]) * 400)
    return buffer.getvalue()

store = open_store(None, sys.argv[1], access="server")
a = store.add_clip("p", "base", "ck", {}, 1, wav(1), 8000, 0.05)
b = store.add_clip("p", "rl", "ck", {}, 2, wav(2), 8000, 0.05)
"""

CHILD = SERVER_PREAMBLE + """
while True:
    issued = store.issue_pair(a.id, b.id, "s")
    store.record_vote(issued.token, "s", "a", None, 0.05, 0.05, now=issued.pair.issued_at + timedelta(seconds=9))
    print("ACK", issued.pair.id, flush=True)
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
    stored = {row["pair_id"] for row in export_preferences(store)}
    store.close()
    assert set(acked) <= stored


SERVER = SERVER_PREAMBLE + """
for line in sys.stdin:
    if line.strip() == "vote":
        issued = store.issue_pair(a.id, b.id, "s")
        store.record_vote(issued.token, "s", "a", None, 0.05, 0.05, now=issued.pair.issued_at + timedelta(seconds=9))
        print("ACK", issued.pair.id, flush=True)
    elif line.strip() == "touch":  # what serving the database file over HTTP did: open and close it in-process
        open(store.database_file, "rb").close()
        print("DONE", flush=True)
"""


@pytest.mark.parametrize("outsider", ["export", "import"])
def test_no_acknowledged_vote_is_lost_to_outside_readers_and_writers(tmp_path, outsider):
    """The issue's sequence: vote, outside `prefs export`, an in-process open/close of the database file (which
    drops the server's POSIX locks), vote, outside export, vote, restart (here: kill -9). Every acknowledged vote
    must be stored. Before the fix the outside reader, believing itself the last connection, checkpointed and
    deleted the WAL the server was still appending to, and the votes written after it vanished."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO_ROOT), os.environ.get("PYTHONPATH", "")])}
    data = tmp_path / "data"
    server = subprocess.Popen([sys.executable, "-c", SERVER, str(data)], stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, text=True, env=env, cwd=REPO_ROOT)
    acked: list[str] = []

    def send(command: str) -> str:
        server.stdin.write(command + "\n")
        server.stdin.flush()
        return server.stdout.readline().split()[-1]

    def outside() -> None:
        if outsider == "export":
            argv = ["prefs", "export", "--data-dir", str(data), "--out", str(tmp_path / "export.jsonl")]
        else:  # a writer: import an unrelated vote from another store
            argv = ["prefs", "import", "--data-dir", str(data), "--in", str(extra)]
        cli = subprocess.run([sys.executable, "-m", "musicrl.cli", *argv], env=env, cwd=REPO_ROOT,
                             capture_output=True, text=True, timeout=120)
        assert cli.returncode == 0, cli.stderr

    if outsider == "import":
        extra = tmp_path / "extra.jsonl"
        with open_store(None, tmp_path / "other") as other:
            a, b = two_clips(other)
            vote(other, other.issue_pair(a.id, b.id, "x"), "b")
            extra.write_text("".join(json.dumps(row) + "\n" for row in export_preferences(other)))
    try:
        acked.append(send("vote"))
        outside()
        send("touch")
        acked.append(send("vote"))
        outside()
        acked.append(send("vote"))
        os.kill(server.pid, signal.SIGKILL)
        server.wait(timeout=30)
    finally:
        if server.poll() is None:
            server.kill()
    with open_store(None, data) as store:  # the restart
        stored = {row["pair_id"] for row in export_preferences(store)}
    assert set(acked) <= stored, f"lost {sorted(set(acked) - stored)}"


def test_every_access_opens_a_store_whose_path_has_uri_characters(tmp_path):
    """'?', '#', '%' and spaces in the data directory stay part of the file name (the read-only and guard
    connections open SQLite by URI; the default URL is built, not parsed)."""
    data = tmp_path / "odd dir ?#%"
    with open_store(None, data) as store:
        a, b = two_clips(store)
        vote(store, store.issue_pair(a.id, b.id, "s"), "a")
        assert store.database_file == data / "musicrl.sqlite3"
    for access in ("read", "write"):
        with open_store(None, data, access=access) as store:
            assert store.vote_count() == 1 and store.database_file == data / "musicrl.sqlite3"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["odd dir ?#%"]


def test_vote_kinds_and_repeats_on_every_backend(make_store):
    """The queries behind the people/simulated boards and consistency repeats, on SQLite and PostgreSQL."""
    from app.repeats import RepeatVote, repeat_candidates, repeat_votes

    store = make_store()
    a, b = two_clips(store)
    people = store.issue_pair(a.id, b.id, "s")
    vote(store, people, "a", "r-1")
    sim = store.issue_pair(a.id, b.id, "s")
    store.record_vote(sim.token, "s", "b", "panel-1", 0.05, 0.05, now=sim.pair.issued_at + timedelta(seconds=10),
                      simulated=True)
    with pytest.raises(VoteRejected, match="simulated must be true or false"):
        store.record_vote(store.issue_pair(a.id, b.id, "s").token, "s", "a", None, 0.05, 0.05, simulated="yes")
    assert [p.id for p in repeat_candidates(store, "r-1")] == [people.pair.id]
    repeat = store.issue_pair(b.id, a.id, "s", repeat_of=people.pair.id, swapped=True)
    assert repeat_candidates(store, "r-1") == [] and store.get_pair(repeat.pair.id).swapped
    vote(store, repeat, "b", "r-1")
    assert store.battles() == [Battle("base", "rl", "a")] and store.battles("simulated") == [Battle("base", "rl", "b")]
    assert len(store.battles("all", repeats=True)) == 3
    counts = store.count_votes("people"), store.count_votes("people", repeats=True), store.count_votes("all")
    assert counts == (2, 1, 3)
    assert repeat_votes(store) == [RepeatVote("r-1", False, "a", "b", True)]
    rows = list(export_preferences(store, votes="all"))
    target = make_store()
    import_preferences(target, rows, audio_root=store.data_dir)
    assert list(export_preferences(target, votes="all")) == rows and repeat_votes(target) == repeat_votes(store)
