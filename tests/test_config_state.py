from dataclasses import dataclass, field
from pathlib import Path

import pytest
import torch

from models.errors import InputError
from musicrl.config import load_config
from musicrl.train_state import JsonlLog, end_step, load_train_state, out_of_time, save_train_state


@dataclass
class Inner:
    lr: float = 1e-3
    betas: list[float] = field(default_factory=lambda: [0.9, 0.99])


@dataclass
class Outer:
    name: str = "run"
    steps: int = 10
    out: Path = Path("runs/x")
    amp: bool = True
    optim: Inner = field(default_factory=Inner)


def test_defaults_yaml_then_overrides(tmp_path):
    cfg_file = tmp_path / "c.yaml"
    cfg_file.write_text("steps: 20\noptim:\n  lr: 0.01\n")
    cfg = load_config(Outer, cfg_file, ["optim.lr=3e-4", "amp=false", "out=/tmp/y"])
    assert cfg.steps == 20 and cfg.optim.lr == 3e-4 and cfg.amp is False and cfg.out == Path("/tmp/y")
    assert cfg.optim.betas == [0.9, 0.99] and cfg.name == "run"


@pytest.mark.parametrize("override", ["nope=1", "optim.nope=1", "steps=abc", "amp=3", "noequals"])
def test_bad_overrides_are_input_errors(override):
    with pytest.raises(InputError):
        load_config(Outer, None, [override])


def test_train_state_resumes_exactly(tmp_path):
    """Two steps, save, two more; versus restore after two and redo: identical weights and RNG."""

    def run(model, opt, n):
        for _ in range(n):
            x = torch.randn(4, 3)
            loss = model(x).pow(2).mean()
            opt.zero_grad()
            loss.backward()
            opt.step()

    torch.manual_seed(0)
    model = torch.nn.Linear(3, 2)
    opt = torch.optim.AdamW(model.parameters(), lr=0.1)
    run(model, opt, 2)
    save_train_state(tmp_path / "state", {"m": model}, {"o": opt}, step=2, extra={"best": 1.5})
    run(model, opt, 2)
    expected = model.weight.detach().clone()

    model2 = torch.nn.Linear(3, 2)
    opt2 = torch.optim.AdamW(model2.parameters(), lr=0.1)
    step, extra = load_train_state(tmp_path / "state", {"m": model2}, {"o": opt2})
    assert step == 2 and extra == {"best": 1.5}
    run(model2, opt2, 2)
    assert torch.equal(model2.weight, expected)


def test_jsonl_log_truncates_on_resume(tmp_path):
    log = JsonlLog(tmp_path / "log.jsonl")
    for s in (1, 2, 3):
        log.write({"step": s})
    log.truncate_after(2)
    assert (tmp_path / "log.jsonl").read_text().splitlines() == ['{"step": 1}', '{"step": 2}']


def test_end_step_saves_when_due_and_on_a_stop(tmp_path, capsys):
    model = torch.nn.Linear(2, 2)
    saved = lambda: load_train_state(tmp_path / "state", {"m": model}, {})[0]  # noqa: E731
    assert end_step(tmp_path, {"m": model}, {}, 3, 10, 5, stop=False) is False
    assert not (tmp_path / "state").exists()  # step 3: not due
    end_step(tmp_path, {"m": model}, {}, 5, 10, 5, stop=False)
    assert saved() == 5  # every save_every steps
    end_step(tmp_path, {"m": model}, {}, 7, 7, 5, stop=False)
    assert saved() == 7  # the last step
    assert end_step(tmp_path, {"m": model}, {}, 8, 10, 5, stop=True, extra={"best": 1}) is True
    assert saved() == 8 and "rerun the same command to resume" in capsys.readouterr().out


def test_out_of_time():
    import time

    assert not out_of_time(time.time() - 3600, 0)  # 0 = no limit
    assert out_of_time(time.time() - 61, 1) and not out_of_time(time.time(), 1)


@pytest.mark.parametrize("recipe", ["cfg-distill", "embedder", "quality", "judges", "codec", "rl", "bond", "clp"])
def test_a_recipe_refusing_its_corpus_writes_nothing(recipe, tmp_path, capsys):
    """Every input is checked before the run directory is made: a refused run leaves no config.yaml behind."""
    from musicrl.cli import main

    extra = {"rl": ["adherence=1"], "bond": ["adherence=1"], "clp": ["objectives=adherence,quality"]}.get(recipe, [])
    out = tmp_path / "run"
    assert main(["train", recipe, f"out={out}", f"corpus={tmp_path / 'no_corpus'}", *extra]) == 2
    assert "corpus" in capsys.readouterr().err
    assert not out.exists()
