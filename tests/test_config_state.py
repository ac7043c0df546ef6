from dataclasses import dataclass, field
from pathlib import Path

import pytest
import torch

from models.errors import InputError
from musicrl.config import load_config
from musicrl.train_state import JsonlLog, load_train_state, save_train_state


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
