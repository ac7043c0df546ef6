"""``musicrl loop`` end to end on debug models against a live app on 127.0.0.1: the panel's votes in →
a WARM reward model → RLHF → the new model registered and served in the arena without a restart."""

from __future__ import annotations

import json

import pytest

from app.limits import RateLimits
from app.main import serve
from app.store import open_store
from models.errors import InputError
from musicrl.cli import main
from musicrl.commands.loop import LoopConfig, run_loop
from tests.test_app_api import free_port

REGISTRY = """models:
  - {id: alpha, name: Alpha, path: debug}
  - {id: beta, name: Beta, path: "debug:1"}
"""


@pytest.fixture()
def app(tmp_path):
    (tmp_path / "registry.yaml").write_text(REGISTRY)
    running = serve("127.0.0.1", free_port(), None, tmp_path / "registry.yaml", tmp_path / "data", min_listen=0.2,
                    arena_duration=0.4, limits=RateLimits.unlimited(), block=False, quiet=True)
    yield running
    running.close()


def loop_argv(tmp_path, url: str, *more: str) -> list[str]:
    prompts = tmp_path / "prompts.txt"
    prompts.write_text("calm piano\nfast techno\nsad violin\nhappy folk\n")
    argv = ["loop", "--app", url, "--registry", str(tmp_path / "registry.yaml"), "--data-dir", str(tmp_path / "data"),
            "--out", str(tmp_path / "loop"), "--base", "debug", "--rounds", "1", "--min-votes", "6", "--panel",
            "--panel-votes", "9", "--listeners", "3", "--workers", "3", "--judges", "none"]
    argv += ["--rm", "num_models=2", "--rm", "probe_epochs=1", "--rm", "epochs=1", "--rm", "batch_size=4",
             "--rm", "val_fraction=0.3", "--rm", "bootstrap=50"]
    argv += ["--rl", "steps=2", "--rl", "duration=0.3", "--rl", f"prompts={prompts}", "--rl", "eval_every=1",
             "--rl", "eval_prompts=2", "--rl", "prompts_per_step=2", "--rl", "judges=none"]
    return argv + list(more)


def test_votes_in_a_new_model_served_in_the_arena(app, tmp_path, capsys):
    store = app.services.store
    code = main(["panel", "vote", "--app", app.url, "--votes", "12", "--listeners", "3", "--seed", "1",
                 "--judges", "none", "--workers", "3"])
    assert code == 0 and store.count_votes("simulated") == 12
    assert main(loop_argv(tmp_path, app.url)) == 0, capsys.readouterr()
    record = json.loads((tmp_path / "loop" / "loop.json").read_text())
    stages = record["rounds"]["1"]
    assert set(stages) == {"export", "reward_model", "rl", "register", "panel"}
    assert stages["export"]["votes"] == 12
    assert (tmp_path / "loop" / "round-1" / "rm" / "model").is_dir()
    assert record["best"] == stages["rl"]["model"] and stages["rl"]["preset"] == "musicrl-u"
    # served without a restart: the running app lists the new model and the panel's pairs drew it
    app.services.registry.refresh(force=True)
    assert "loop-round-1" in app.services.registry.ids
    assert store.count_votes("simulated") == 21
    drawn = {m for battle in store.battles("simulated") for m in (battle.model_a, battle.model_b)}
    assert "loop-round-1" in drawn
    # re-running continues where it stopped: everything is done, nothing is retrained
    before = (tmp_path / "loop" / "round-1" / "rm" / "model").stat().st_mtime_ns
    assert main(loop_argv(tmp_path, app.url)) == 0
    assert (tmp_path / "loop" / "round-1" / "rm" / "model").stat().st_mtime_ns == before
    assert json.loads((tmp_path / "loop" / "loop.json").read_text()) == record
    assert store.count_votes("simulated") == 21


def test_too_few_votes_is_one_clear_error(tmp_path):
    (tmp_path / "registry.yaml").write_text(REGISTRY)
    cfg = LoopConfig(registry=tmp_path / "registry.yaml", data_dir=tmp_path / "data", out=tmp_path / "loop",
                     base="debug", min_votes=5)
    open_store(None, tmp_path / "data", access="server").close()  # an app's empty store
    with pytest.raises(InputError, match="needs at least 5"):
        run_loop(cfg)
    assert not (tmp_path / "loop" / "round-1" / "prefs.jsonl").exists()


def test_missing_registry_is_refused_before_anything_is_written(tmp_path):
    cfg = LoopConfig(registry=tmp_path / "nope.yaml", data_dir=tmp_path / "data", out=tmp_path / "loop")
    with pytest.raises(InputError, match="does not exist"):
        run_loop(cfg)
    assert not (tmp_path / "loop").exists()
