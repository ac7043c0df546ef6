"""Every probe of the app-hardening issue, against a live server on 127.0.0.1 (docs/SECURITY.md).

Each probe asserts the response a curious rater or an attacker gets AND that nothing was written:
the store's row counts are the same after the probe as before it. One server for the module (debug
models, 0.4 s arena clips, a 1 s gate, so the gate is each clip's whole length), and a second one
with tight rate limits.
"""

from __future__ import annotations

import json
import socket
import time
from datetime import timedelta
from pathlib import Path

import httpx
import pytest
from gradio_client import Client
from gradio_client.exceptions import AppError

from app.limits import Rate, RateLimits
from app.main import serve
from app.transfer import export_preferences

REGISTRY = """
models:
  - {id: alpha, name: Alpha, path: debug}
  - {id: beta, name: Beta, path: "debug:1"}
"""
CLIP_S = 0.4
SQLITE_MAGIC = b"SQLite format 3"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start(root: Path, limits: RateLimits, admin_token: str | None = "right-token"):
    (root / "registry.yaml").write_text(REGISTRY)
    return serve("127.0.0.1", free_port(), None, root / "registry.yaml", root / "data", min_listen=1.0,
                 admin_token=admin_token, min_votes=1, arena_duration=CLIP_S, limits=limits, block=False, quiet=True)


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    running = start(tmp_path_factory.mktemp("security"), RateLimits.unlimited())
    data = running.services.store.data_dir
    for name in ("exports/preferences-old.jsonl", "browser_secret"):  # what older versions left in the data dir
        (data / name).parent.mkdir(parents=True, exist_ok=True)
        (data / name).write_text("private")
    yield running
    running.close()


@pytest.fixture
def client(server) -> Client:
    return Client(server.url, verbose=False)


class NothingWritten:
    """``with NothingWritten(store):`` asserts the probe inside wrote no clip, pair or vote."""

    def __init__(self, store, tables: tuple[str, ...] = ("clips", "pairs", "votes")) -> None:
        self.store, self.tables = store, tables

    def __enter__(self) -> None:
        self.before = self.store.counts()

    def __exit__(self, *exc: object) -> None:
        after = self.store.counts()
        assert {t: after[t] for t in self.tables} == {t: self.before[t] for t in self.tables}


def call_raw(server, api: str, data_json: str, session: str) -> str:
    """POST a raw JSON body (NaN and Infinity included, which JSON clients cannot send) to the REST API;
    returns the event stream's text."""
    base = server.url.rstrip("/")
    body = f'{{"data": {data_json}, "session_hash": "{session}"}}'.encode()
    response = httpx.post(f"{base}/gradio_api/call/{api}", content=body, timeout=30,
                          headers={"content-type": "application/json"})
    if response.status_code != 200:
        return f"event: error HTTP {response.status_code}"
    return httpx.get(f"{base}/gradio_api/call/{api}/{response.json()['event_id']}", timeout=60).text


def refused(call, message: str) -> None:
    with pytest.raises(AppError) as info:
        call()
    assert message in str(info.value), str(info.value)


# ----------------------------------------------------------------------------- 1. only clips are served


def file_routes(base: str, path: Path) -> list[tuple[str, str]]:
    """Every way gradio 6 serves a local file, and their spellings."""
    text = str(path)
    return [("GET", f"{base}/gradio_api/file={text}"), ("HEAD", f"{base}/gradio_api/file={text}"),
            ("GET", f"{base}/gradio_api/file/{text}"), ("GET", f"{base}/file={text}"),
            ("GET", f"{base}/gradio_api/file={httpx.URL(text).raw_path.decode().replace('/', '%2F')}"),
            ("GET", f"{base}/gradio_api/proxy={text}"), ("GET", f"{base}/static/../../{text}"),
            ("GET", f"{base}/assets/..%2F..%2F{text}")]


def test_only_clip_audio_and_pictures_are_reachable_over_http(server, client):
    data = server.services.store.data_dir
    audio_a, _, token, _ = client.predict("", api_name="/new_pair")
    db = server.services.store.database_file
    private = [db, db.with_name(db.name + "-wal"), db.with_name(db.name + "-shm"), data,
               data / "exports" / "preferences-old.jsonl", data / "browser_secret",
               data / "audio" / ".." / db.name,  # traversal out of the served folder
               Path(__file__), Path("/etc/passwd")]
    base = server.url.rstrip("/")
    for path in private:
        for method, url in file_routes(base, path):
            response = httpx.request(method, url, timeout=30)
            assert response.status_code in (400, 403, 404, 405), (method, url, response.status_code)
            assert SQLITE_MAGIC not in response.content and b"private" not in response.content
    clip = next(data.glob("audio/*/*.wav"))  # a clip: served from its own folder
    assert httpx.get(f"{base}/gradio_api/file={clip}", timeout=30).content[:4] == b"RIFF"
    assert Path(audio_a).read_bytes()[:4] == b"RIFF"  # and the copy gradio gave the client


def test_the_admin_export_is_private_and_carries_no_absolute_paths(server, client):
    files, table = client.predict("right-token", "all", api_name="/export")
    path, summary = files
    text = Path(path).read_text()
    assert json.loads(Path(summary).read_text())["kind"] == "consistency" and table["data"]
    assert str(server.services.store.data_dir) not in text and "/audio/" not in text.replace('"audio/', "")
    exported = server.services.admin._last_dir
    for method, url in file_routes(server.url.rstrip("/"), next(exported.glob("*.jsonl"))):
        assert httpx.request(method, url, timeout=30).status_code in (400, 403, 404, 405)
    for row in map(json.loads, text.splitlines()):
        assert not row["chosen_audio"].startswith("/") and "." not in row["pair_id"]


# ----------------------------------------------------------------------------- 3. the server enforces listening


def test_the_listening_gate_is_enforced_by_the_server(server, client, monkeypatch):
    store = server.services.store
    _, _, token, _ = client.predict("", api_name="/new_pair")
    issued = store.get_pair(token.split(".")[0]).issued_at
    monkeypatch.setattr(server.services.arena, "clock", lambda: issued + timedelta(seconds=0.04))
    with NothingWritten(store):  # 0.04 s after the pair was issued, claiming 1e9 s of listening
        refused(lambda: client.predict(token, "a", 1e9, 1e9, "", "r-1", api_name="/vote"), "came 0.0 s after")
    monkeypatch.undo()
    time.sleep(CLIP_S + 0.2)
    with NothingWritten(store):
        for a, b, message in [(0.1, CLIP_S, "listen to both clips"), (1e9, CLIP_S, "is not possible"),
                              (CLIP_S, 1e308, "is not possible"), (-1, CLIP_S, "finite, non-negative numbers")]:
            refused(lambda a=a, b=b: client.predict(token, "a", a, b, "", "r-1", api_name="/vote"), message)
    with NothingWritten(store):  # the REST API: NaN, Infinity and 1e308 seconds, numbers as text
        for claims in ("NaN, 0.4", "0.4, -Infinity", "Infinity, 0.4", "1e308, 1e308", '"6", "6"'):
            assert "event: error" in call_raw(server, "vote", f'["{token}", "a", {claims}, "", "r-1"]',
                                              client.session_hash)
    client.predict(token, "a", CLIP_S, CLIP_S, "", "r-1", api_name="/vote")  # an honest vote still counts


# ----------------------------------------------------------------------------- 4. only whoever received a pair votes


def test_a_stolen_session_or_a_leaked_database_cannot_vote(server, client):
    store = server.services.store
    _, _, token, _ = client.predict("", api_name="/new_pair")
    pair_id = token.split(".")[0]
    time.sleep(CLIP_S + 0.2)
    thief = Client(server.url, verbose=False)
    thief.session_hash = client.session_hash  # copied session id
    with store.engine.connect() as conn:  # all a leaked database holds about the pair
        leaked = dict(conn.exec_driver_sql("SELECT id, session_id, secret_sha256 FROM pairs WHERE id = ?",
                                           (pair_id,)).mappings().one())
    with NothingWritten(store):
        for attempt in (pair_id, f"{pair_id}.{leaked['secret_sha256']}", f"{pair_id}.guess", "forged.token", ""):
            refused(lambda t=attempt: thief.predict(t, "a", CLIP_S, CLIP_S, "", "r-2", api_name="/vote"),
                    "pair")  # "this pair does not exist" / "no pair to vote on"
        stranger = Client(server.url, verbose=False)
        refused(lambda: stranger.predict(token, "a", CLIP_S, CLIP_S, "", "r-3", api_name="/vote"),
                "issued to another session")
    client.predict(token, "b", CLIP_S, CLIP_S, "", "r-1", api_name="/vote")
    with NothingWritten(store):  # replayed
        refused(lambda: client.predict(token, "a", CLIP_S, CLIP_S, "", "r-1", api_name="/vote"), "already been voted")
    assert leaked["session_id"] == client.session_hash and len(leaked["secret_sha256"]) == 64


# ----------------------------------------------------------------------------- 5, 7. bad input of every kind


def test_bad_votes_and_texts_are_refused_and_write_nothing(server, client):
    store = server.services.store
    _, _, token, _ = client.predict("", api_name="/new_pair")
    time.sleep(CLIP_S + 0.2)
    probes = [
        ((token, "maybe", CLIP_S, CLIP_S, "", "r-1"), "choice must be one of"),
        ((token, "", CLIP_S, CLIP_S, "", "r-1"), "choice must be one of"),
        ((token, "a", CLIP_S, CLIP_S, "x" * 10_000, "r-1"), "feedback has 10000 characters"),
        ((token, "a", CLIP_S, CLIP_S, "ok \x00 nul", "r-1"), "feedback contains 1 control"),
        ((token, "a", CLIP_S, CLIP_S, "\x1b[2J\x1b[31mred", "r-1"), "feedback contains 2 control"),
        ((token, "a", CLIP_S, CLIP_S, "spoof \u202e", "r-1"), "feedback contains 1 control"),
        ((token, "a", CLIP_S, CLIP_S, "", "r" * 1000), "rater id must be"),
        ((token, "a", CLIP_S, CLIP_S, "", "../../etc/passwd"), "rater id must be"),
        ((token, "a", CLIP_S, CLIP_S, "", "\x1b[31mred"), "rater id must be"),
    ]
    with NothingWritten(store):
        for args, message in probes:
            refused(lambda args=args: client.predict(*args, api_name="/vote"), message)
    client.predict(token, "tie", CLIP_S, CLIP_S, "fine", "r-1", api_name="/vote")


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("x" * 1_000_001, "alpha", 0.5, 1, 3.0, 1.0, 50, 0, 0.5), "the maximum is 1000"),
        (("\x00\x1b[2J", "alpha", 0.5, 1, 3.0, 1.0, 50, 0, 0.5), "control or binary"),
        (("piano", "../../etc/passwd", 0.5, 1, 3.0, 1.0, 50, 0, 0.5), "unknown model '../../etc/passwd'"),
        (("piano", "/etc/passwd", 0.5, 1, 3.0, 1.0, 50, 0, 0.5), "unknown model '/etc/passwd'"),
        (("piano", "alpha", 1e308, 1, 3.0, 1.0, 50, 0, 0.5), "greater than maximum"),
        (("piano", "alpha", -1, 1, 3.0, 1.0, 50, 0, 0.5), "less than minimum"),
        (("piano", "alpha", 0.5, 1, 3.0, 1.0, 50, 2**63, 0.5), "greater than maximum"),
    ],
)
def test_bad_generation_requests_are_refused_and_write_nothing(server, client, args, message):
    with NothingWritten(server.services.store):
        refused(lambda: client.predict(*args, api_name="/generate"), message)


@pytest.mark.parametrize("numbers", ["NaN, 1", "0.5, Infinity", "-Infinity, 1", "1e308, 1"])
def test_non_finite_numbers_through_the_rest_api(server, client, numbers):
    """duration and variations as NaN / Infinity / 1e308, which only a raw JSON body can carry."""
    with NothingWritten(server.services.store):
        events = call_raw(server, "generate", f'["piano", "alpha", {numbers}, 3.0, 1.0, 50, 0, 0.5]',
                          client.session_hash)
    assert "event: error" in events


def test_only_the_public_api_runs_python(server, client):
    """Every function the page registers either is one of the eight public endpoints or has no Python at all:
    calling the others by index through the queue answers with an error and runs nothing."""
    demo, base = server.demo, server.url.rstrip("/")
    python = {i: f for i, f in demo.fns.items() if f.fn is not None}
    assert {f.api_name for f in python.values()} == {"generate", "extend", "continue", "new_pair", "vote",
                                                     "leaderboard", "models", "export"}
    assert all(f.api_visibility == "public" for f in python.values())
    hidden = [i for i in demo.fns if i not in python]
    assert hidden
    with NothingWritten(server.services.store):
        for fn_index in hidden:
            session = f"probe{fn_index}"
            body = {"data": ["x"] * 6, "fn_index": fn_index, "session_hash": session}
            assert httpx.post(f"{base}/gradio_api/queue/join", json=body, timeout=30).status_code == 200
            with httpx.stream("GET", f"{base}/gradio_api/queue/data", params={"session_hash": session},
                              timeout=30) as stream:
                done = next(json.loads(line[5:]) for line in stream.iter_lines()
                            if line.startswith("data:") and "process_completed" in line)
            assert done["success"] is False and done["output"]["error"]


# ----------------------------------------------------------------------------- rate limits


@pytest.fixture(scope="module")
def strict(tmp_path_factory):
    limits = RateLimits(generate=(Rate(2, 60.0), Rate(3, 60.0)), pair=(Rate(2, 60.0), Rate(3, 60.0)),
                        vote=(Rate(3, 60.0), Rate(100, 60.0)), admin=(Rate(0, 1.0), Rate(3, 600.0)))
    running = start(tmp_path_factory.mktemp("strict"), limits)
    yield running
    running.close()


def test_new_pairs_votes_generation_and_admin_guesses_are_rate_limited(strict):
    store = strict.services.store
    first, second = Client(strict.url, verbose=False), Client(strict.url, verbose=False)
    tokens = [first.predict("", api_name="/new_pair")[2] for _ in range(2)]
    with NothingWritten(store, ("pairs",)):
        refused(lambda: first.predict("", api_name="/new_pair"), "too many new pairs from this session")
    second.predict("", api_name="/new_pair")  # another session, same address: the address has 1 more
    with NothingWritten(store, ("pairs",)):
        refused(lambda: second.predict("", api_name="/new_pair"), "too many new pairs from your network address")
    time.sleep(CLIP_S + 0.2)
    with NothingWritten(store, ("votes",)):  # forged votes use up the session's allowance too
        for _ in range(2):
            refused(lambda: first.predict("forged.x", "a", CLIP_S, CLIP_S, "", "r", api_name="/vote"), "does not exist")
    first.predict(tokens[0], "a", CLIP_S, CLIP_S, "", "r", api_name="/vote")
    with NothingWritten(store, ("votes",)):
        refused(lambda: first.predict(tokens[1], "a", CLIP_S, CLIP_S, "", "r", api_name="/vote"), "too many votes")
    for _ in range(2):
        first.predict("piano", "alpha", 0.5, 1, 3.0, 1.0, 50, 0, 0.5, api_name="/generate")
    with NothingWritten(store):
        refused(lambda: first.predict("piano", "alpha", 0.5, 1, 3.0, 1.0, 50, 0, 0.5, api_name="/generate"),
                "too many generation requests")
    for _ in range(3):
        refused(lambda: second.predict("guess", api_name="/export"), "wrong admin token")
    refused(lambda: second.predict("right-token", api_name="/export"), "too many wrong admin tokens")
    assert len(list(export_preferences(store))) == 1
