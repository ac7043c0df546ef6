"""Hot reload of the model registry: ModelRegistry.refresh and add_registry_entry (app/registry.py), and a
running app that serves a model registered after it started."""

from __future__ import annotations

import json
import logging
import socket
from random import Random

import pytest
from gradio_client import Client

from app.main import serve
from app.registry import ModelRegistry, add_registry_entry, load_source
from models.errors import InputError

REGISTRY = """
# two debug models
models:
  - {id: alpha, name: Alpha, path: debug}
  - {id: beta, name: Beta, path: "debug:1"}
"""


def counting_registry(path):
    loaded: list[str] = []

    def loader(source: str):
        loaded.append(source)
        return load_source(source)

    return ModelRegistry.from_file(path, loader=loader, reload_interval_s=0.0), loaded


def test_refresh_swaps_in_an_added_entry_and_keeps_loaded_models(tmp_path):
    path = tmp_path / "registry.yaml"
    path.write_text(REGISTRY)
    registry, loaded = counting_registry(path)
    alpha = registry.load("alpha")
    assert registry.refresh() is False and registry.source == path.resolve()  # unchanged: nothing to do
    entry = add_registry_entry(path, {"id": "gamma", "name": "Gamma", "path": "debug:2"})
    assert (entry.id, entry.path) == ("gamma", "debug:2")
    assert registry.ids == ["alpha", "beta"]  # not yet looked at
    assert registry.refresh() is True and registry.ids == ["alpha", "beta", "gamma"]
    assert registry.get("gamma").name == "Gamma" and registry.refresh() is False
    assert registry.load("alpha") is alpha and loaded == ["debug"]  # cached by source path, not reloaded
    assert not list(tmp_path.glob(".registry.yaml.*"))  # no temp file left behind


def test_refresh_looks_at_most_once_per_interval(tmp_path):
    path = tmp_path / "registry.yaml"
    path.write_text(REGISTRY)
    registry = ModelRegistry.from_file(path)  # the default: once a second
    add_registry_entry(path, {"id": "gamma", "path": "debug:2"})
    assert registry.refresh() is False and registry.ids == ["alpha", "beta"]
    assert registry.refresh(force=True) is True and "gamma" in registry.ids
    assert ModelRegistry([registry.get("alpha")]).refresh(force=True) is False  # not from a file: nothing to read


def test_a_broken_file_keeps_the_old_entries_and_logs_one_line(tmp_path, caplog):
    path = tmp_path / "registry.yaml"
    path.write_text(REGISTRY)
    registry, _ = counting_registry(path)
    for broken in ("models: [", "models: [{id: alpha, path: debug}, {id: alpha, path: debug}]"):
        caplog.clear()
        path.write_text(broken)
        with caplog.at_level(logging.WARNING, logger="app.registry"):
            assert registry.refresh() is False and registry.refresh() is False
        assert registry.ids == ["alpha", "beta"] and registry.get("beta").path == "debug:1"
        (record,) = caplog.records  # once per version of the file, however often it is looked at
        assert "not reloaded, still serving alpha, beta" in record.getMessage() and "\n" not in record.getMessage()
    path.unlink()
    assert registry.refresh() is False and registry.ids == ["alpha", "beta"]  # gone: keeps serving
    path.write_text(REGISTRY.replace("Beta", "Beta 2"))
    assert registry.refresh() is True and registry.display_name("beta") == "Beta 2"


def test_add_registry_entry_refuses_duplicates_and_bad_entries_and_leaves_the_file(tmp_path):
    path = tmp_path / "registry.yaml"
    path.write_text(REGISTRY)
    before = path.read_text()
    for entry, message in [({"id": "alpha", "path": "debug:3"}, "already lists 'alpha'"),
                           ({"id": "bad id!", "path": "debug"}, "'id' must be"),
                           ({"id": "m", "merge": {"a": "alpha", "b": "nope-merge"}, "colour": 1}, "unknown field"),
                           ({"id": "x", "path": object()}, "plain values")]:
        with pytest.raises(InputError, match=message):
            add_registry_entry(path, entry)
    assert path.read_text() == before
    add_registry_entry(path, {"id": "mix", "merge": {"a": "alpha", "b": "beta", "init": 0.25}})
    assert ModelRegistry.from_file(path).get("mix").merge.init == 0.25
    with pytest.raises(InputError, match="itself a merge"):
        add_registry_entry(path, {"id": "mix2", "merge": {"a": "mix", "b": "alpha"}})

    as_json = tmp_path / "registry.json"
    as_json.write_text(json.dumps({"notice": "kept", "models": [{"id": "alpha", "path": "debug"}]}))
    add_registry_entry(as_json, {"id": "beta", "path": "debug:1", "cfg_free": True})
    data = json.loads(as_json.read_text())
    assert data["notice"] == "kept" and [m["id"] for m in data["models"]] == ["alpha", "beta"]


def test_a_running_app_serves_a_model_registered_after_it_started(tmp_path):
    path = tmp_path / "registry.yaml"
    path.write_text(REGISTRY)
    registry = ModelRegistry.from_file(path, reload_interval_s=0.0)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    running = serve("127.0.0.1", port, None, registry, tmp_path / "data", min_listen=1.0, min_votes=1,
                    arena_duration=0.3, repeat_share=0.0, block=False, quiet=True)
    try:
        client = Client(running.url, verbose=False)
        update, table = client.predict(api_name="/models")  # the page's dropdown update, the model table
        assert update["choices"] == [["Alpha", "alpha"], ["Beta", "beta"]] and set(table) == {"alpha", "beta"}
        add_registry_entry(path, {"id": "gamma", "name": "Gamma", "path": "debug:2",
                                  "description": "registered while serving"})
        _, table = client.predict(api_name="/models")  # what the page lists when it is (re)loaded
        assert set(table) == {"alpha", "beta", "gamma"} and table["gamma"]["name"] == "Gamma"
        assert "registered while serving" in table["gamma"]["notes"]
        meta = client.predict("calm piano", "gamma", 0.5, 1, 3.0, 1.0, 50, 1, 0.5, api_name="/generate")[-1]
        assert meta["model_id"] == "gamma"

        arena, store = running.services.arena, running.services.store
        arena._rng = Random(3)  # the draws below are then fixed
        drawn = set()
        for _ in range(4):
            token = client.predict("", "", api_name="/new_pair")[2]
            pair = store.get_pair(token.split(".")[0])
            drawn |= {store.get_clip(pair.clip_a).model_id, store.get_clip(pair.clip_b).model_id}
        assert "gamma" in drawn

        path.write_text("models: [")  # a broken rewrite: the app keeps serving the three models
        _, table = client.predict(api_name="/models")
        assert set(table) == {"alpha", "beta", "gamma"}
        client.predict("", "", api_name="/new_pair")
    finally:
        running.close()
