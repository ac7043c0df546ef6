"""The app's API on a live server (127.0.0.1, a free port), driven by gradio_client as scripted users are.

One server for the module: debug models, 0.5 s clips, a 1 s listening gate, ranked after 1 vote.
"""

from __future__ import annotations

import json
import socket
import time
import wave
from datetime import timedelta

import httpx
import pytest
from gradio_client import Client
from gradio_client.exceptions import AppError

from app.main import serve
from app.services import build_services
from app.transfer import export_preferences

REGISTRY = """
models:
  - {id: alpha, name: Alpha, path: debug}
  - {id: beta, name: Beta, path: "debug:1", cfg_free: true}
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    root = tmp_path_factory.mktemp("app")
    (root / "registry.yaml").write_text(REGISTRY)
    running = serve("127.0.0.1", free_port(), None, root / "registry.yaml", root / "data", min_listen=1.0,
                    admin_token="t0ken", min_votes=1, arena_duration=0.5, block=False, quiet=True)
    yield running
    running.close()


@pytest.fixture
def client(server) -> Client:
    return Client(server.url, verbose=False)


def test_build_ui_without_launch_has_the_stable_api_names(tmp_path):
    from app.ui import build_ui

    services = build_services(registry=None, data_dir=tmp_path)
    try:
        demo = build_ui(services)
        public = {f.api_name for f in demo.fns.values() if f.api_visibility == "public"}
        assert public == {"generate", "extend", "continue", "new_pair", "vote", "leaderboard", "models", "export"}
        # every event that runs Python is one of them: the rest of the page is JavaScript only
        assert {f.api_name for f in demo.fns.values() if f.fn is not None} == public
    finally:
        services.close()


def test_api_names_and_parameters(client):
    endpoints = client.view_api(print_info=False, return_format="dict")["named_endpoints"]
    assert set(endpoints) == {"/generate", "/extend", "/continue", "/new_pair", "/vote", "/leaderboard", "/models",
                              "/export"}
    names = lambda ep: [p["parameter_name"] for p in endpoints[ep]["parameters"]]  # noqa: E731
    assert names("/generate") == ["prompt", "model_id", "duration", "variations", "cfg", "temperature", "top_k",
                                  "seed", "quality_diversity", "best_of", "best_of_reward", "objective_weights"]
    assert names("/vote") == ["pair_token", "choice", "listened_a", "listened_b", "feedback", "rater_id", "simulated"]
    assert names("/new_pair") == ["prompt", "rater_id"] and names("/leaderboard") == ["votes"]
    assert names("/export") == ["admin_token", "votes"] and names("/models") == []


def test_generate_returns_audio_spectrograms_and_metadata(client):
    out = client.predict("calm piano", "alpha", 0.5, 2, 3.0, 1.0, 50, 11, 0.5, api_name="/generate")
    audios, pictures, meta = out[:4], out[4:8], out[-1]
    assert len(out) == 10  # and out[8], clip 1's live stream for the page
    assert audios[2] is None and audios[3] is None and pictures[2] is None
    with wave.open(audios[0]) as w:
        assert w.getnframes() == 4000 and w.getframerate() == 8000
    assert open(pictures[1], "rb").read(4) == b"\x89PNG"
    assert [c["seed"] for c in meta["clips"]] == [11, 12] and meta["model_id"] == "alpha"
    assert meta["clips"][0]["params"]["cfg"] == 3.0


@pytest.mark.parametrize(
    ("args", "message"),
    [  # the service's checks, then the components' own bounds (gradio checks sliders and dropdowns first)
        (("", "alpha", 0.5, 1, 3.0, 1.0, 50, 0, 0.5), "the prompt is empty"),
        (("x" * 1001, "alpha", 0.5, 1, 3.0, 1.0, 50, 0, 0.5), "the maximum is 1000"),
        (("\x00\x01binary\xff", "alpha", 0.5, 1, 3.0, 1.0, 50, 0, 0.5), "control or binary"),
        (("piano", "gamma", 0.5, 1, 3.0, 1.0, 50, 0, 0.5), "unknown model 'gamma'; this app serves: alpha, beta"),
        (("piano", "alpha", 20, 1, 3.0, 1.0, 50, 0, 0.5), "duration 20 s exceeds this model's maximum of 10 s"),
        (("piano", "alpha", 500, 1, 3.0, 1.0, 50, 0, 0.5), "greater than maximum value 30"),
        (("piano", "alpha", 0.5, 9, 3.0, 1.0, 50, 0, 0.5), "greater than maximum value 4"),
        (("piano", "alpha", 0.5, 1, -3.0, 1.0, 50, 0, 0.5), "less than minimum value 0"),
        (("piano", "alpha", 0.5, 1, 3.0, 1.0, 50, 2**40, 0.5), "greater than maximum value 2147483647"),
    ],
)
def test_generate_bad_inputs_get_clear_errors(client, args, message):
    with pytest.raises(AppError) as info:
        client.predict(*args, api_name="/generate")
    assert message in str(info.value)


def test_arena_round_trip_gate_replay_and_other_session(server, client, monkeypatch):
    audio_a, audio_b, token, prompt = client.predict("", api_name="/new_pair")
    assert prompt and "." in token and audio_a != audio_b
    with pytest.raises(AppError, match="listen to both clips for at least 1 s"):
        client.predict(token, "a", 0.4, 0.5, "", "rater-1", api_name="/vote")
    issued = server.services.store.get_pair(token.split(".")[0]).issued_at
    monkeypatch.setattr(server.services.arena, "clock", lambda: issued + timedelta(seconds=0.2))
    with pytest.raises(AppError, match="listening takes at least 0.5 s"):  # the clips last 0.5 s: too soon
        client.predict(token, "a", 0.5, 0.5, "", "rater-1", api_name="/vote")
    monkeypatch.undo()
    time.sleep(0.6)
    stranger = Client(server.url, verbose=False)
    with pytest.raises(AppError, match="issued to another session"):
        stranger.predict(token, "a", 0.5, 0.5, "", "rater-2", api_name="/vote")
    reveal, vote = client.predict(token, "b", 0.5, 0.5, "B is warmer", "rater-1", api_name="/vote")
    assert vote["pair_id"] == token.split(".")[0] and vote["choice"] == "b"
    assert {vote["model_a"], vote["model_b"]} == {"alpha", "beta"} and vote["name_a"] in reveal
    with pytest.raises(AppError, match="already been voted"):
        client.predict(token, "a", 0.5, 0.5, "", "rater-1", api_name="/vote")
    with pytest.raises(AppError, match="does not exist"):
        client.predict("forged.pair-token", "a", 0.5, 0.5, "", "rater-1", api_name="/vote")
    summary, table, picture = client.predict(api_name="/leaderboard")
    assert "vote(s)" in summary and open(picture, "rb").read(4) == b"\x89PNG"
    assert {row[1].split(" (")[0] for row in table["data"]} == {"Alpha", "Beta"}
    row = next(export_preferences(server.services.store))
    assert (row["pair_id"], row["rater_id"], row["feedback"]) == (token.split(".")[0], "rater-1", "B is warmer")


def test_malformed_calls_get_errors_and_the_server_stays_up(server, client):
    base = server.url.rstrip("/")
    for body in ({"data": ["only-one-argument"]}, {"data": "not a list"}, {"nonsense": True}):
        response = httpx.post(f"{base}/gradio_api/call/vote", json=body, timeout=30)
        if response.status_code == 200:  # accepted into the queue: the event itself must fail
            events = httpx.get(f"{base}/gradio_api/call/vote/{response.json()['event_id']}", timeout=30).text
            assert "event: error" in events
        else:
            assert 400 <= response.status_code < 500
    assert httpx.post(f"{base}/gradio_api/call/nope", json={"data": []}, timeout=30).status_code >= 400
    with pytest.raises(AppError, match="Expected a `float`"):
        client.predict("piano", "alpha", "four", 1, 3.0, 1.0, 50, 0, 0.5, api_name="/generate")
    assert "vote(s)" in client.predict(api_name="/leaderboard")[0]  # still serving


def test_app_command_errors_are_one_line_and_exit_2(tmp_path, capsys):
    from musicrl.cli import main

    assert main(["app", "--registry", str(tmp_path / "missing.yaml")]) == 2
    assert main(["app", "--port", "0"]) == 2
    (tmp_path / "bad.yaml").write_text("models: [{id: a}]")
    assert main(["app", "--registry", str(tmp_path / "bad.yaml"), "--data-dir", str(tmp_path / "d")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"musicrl app: error: --registry {tmp_path / 'missing.yaml'} is not a file",
                   "musicrl app: error: --port must be in 1..65535, got 0",
                   "musicrl app: error: registry entry 'a' needs exactly one of 'path' and 'merge'"]


def test_simulated_votes_and_repeats_through_the_api(server, client, monkeypatch):
    """The simulated panel's path: new_pair(prompt, rater_id) -> vote(..., simulated=True), marked in the store
    and kept off the people's board; and a consistency repeat served through the API under other file names."""
    store = server.services.store
    people_before = client.predict("people", api_name="/leaderboard")[0]
    monkeypatch.setattr(server.services.arena, "repeat_share", 0.0)
    audio_a, audio_b, token, prompt = client.predict("calm piano", "panel-7", api_name="/new_pair")
    assert prompt == "calm piano" and audio_a != audio_b
    time.sleep(0.6)
    _, vote = client.predict(token, "a", 0.5, 0.5, "", "panel-7", True, api_name="/vote")
    assert set(vote) == {"pair_id", "choice", "model_a", "model_b", "name_a", "name_b"}  # output unchanged
    row = next(r for r in export_preferences(store, votes="all") if r["pair_id"] == vote["pair_id"])
    assert row["simulated"] is True and row["rater_id"] == "panel-7"
    assert vote["pair_id"] not in {r["pair_id"] for r in export_preferences(store)}  # people's only
    assert client.predict("people", api_name="/leaderboard")[0] == people_before
    summary, table, _ = client.predict("simulated", api_name="/leaderboard")
    assert "1 vote(s) from simulated listeners" in summary and len(table["data"]) == 2
    with pytest.raises(AppError):
        client.predict("robots", api_name="/leaderboard")

    monkeypatch.setattr(server.services.arena, "repeat_share", 1.0)
    again_a, again_b, again_token, again_prompt = client.predict("", "panel-7", api_name="/new_pair")
    repeat = store.get_pair(again_token.split(".")[0])
    assert (repeat.repeat_of, repeat.swapped, again_prompt) == (vote["pair_id"], True, "calm piano")
    assert {again_a, again_b}.isdisjoint({audio_a, audio_b})  # other files, other gradio cache URLs
    time.sleep(0.6)
    client.predict(again_token, "b", 0.5, 0.5, "", "panel-7", True, api_name="/vote")  # b swapped back = a
    files, table = client.predict("t0ken", "simulated", api_name="/export")
    assert len([json.loads(line) for line in open(files[0])]) == 2  # the original and its repeat
    pooled = json.load(open(files[1]))["simulated"]["pooled"]
    assert (pooled["agreements"], pooled["repeats"]) == (1, 1)
    assert ["simulated", "panel-7", 1, 1, "100%"] == table["data"][-2][:5]
