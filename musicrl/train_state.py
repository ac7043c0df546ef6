"""Exact-resume training state (modules, optimizers, step, RNG) in safetensors + JSON, never pickle.

run/
  state/            the latest train state (replaced atomically)
    tensors.safetensors   module weights, optimizer tensors, torch RNG state
    state.json            step, optimizer scalars and param groups, python/numpy RNG, extra
  log.jsonl         one JSON object per logged step (appended)
"""

from __future__ import annotations

import json
import os
import random
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file, save_file
from torch import nn

from models.errors import InputError


def _flatten_optimizer(name: str, opt: torch.optim.Optimizer, tensors: dict, meta: dict) -> None:
    sd = opt.state_dict()
    scalars = {}
    for pid, state in sd["state"].items():
        for key, value in state.items():
            if isinstance(value, torch.Tensor):
                tensors[f"optim/{name}/{pid}/{key}"] = value.detach().cpu().contiguous()
            else:
                scalars[f"{pid}/{key}"] = value
    meta["optimizers"][name] = {"param_groups": sd["param_groups"], "scalars": scalars}


def _unflatten_optimizer(name: str, opt: torch.optim.Optimizer, tensors: dict, meta: dict) -> None:
    info = meta["optimizers"][name]
    state: dict[int, dict] = {}
    prefix = f"optim/{name}/"
    for key, value in tensors.items():
        if key.startswith(prefix):
            pid, field = key[len(prefix) :].split("/", 1)
            state.setdefault(int(pid), {})[field] = value
    for key, value in info["scalars"].items():
        pid, field = key.split("/", 1)
        state.setdefault(int(pid), {})[field] = value
    opt.load_state_dict({"state": state, "param_groups": info["param_groups"]})


def save_train_state(
    path: str | Path,
    modules: dict[str, nn.Module],
    optimizers: dict[str, torch.optim.Optimizer],
    step: int,
    extra: dict | None = None,
) -> Path:
    """Write the state directory atomically (temp dir + rename): a crash leaves the previous one intact."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tensors: dict[str, torch.Tensor] = {}
    for name, module in modules.items():
        for key, value in module.state_dict().items():
            tensors[f"module/{name}/{key}"] = value.detach().cpu().contiguous()
    meta: dict = {"step": step, "optimizers": {}, "extra": extra or {}}
    for name, opt in optimizers.items():
        _flatten_optimizer(name, opt, tensors, meta)
    tensors["rng/torch"] = torch.get_rng_state()
    if torch.cuda.is_available():
        tensors["rng/cuda"] = torch.cuda.get_rng_state()
    py_state = random.getstate()
    meta["rng"] = {"python": [py_state[0], list(py_state[1]), py_state[2]], "numpy": np.random.get_state()[1].tolist()}
    np_state = np.random.get_state()
    meta["rng"]["numpy_pos"], meta["rng"]["numpy_gauss"] = int(np_state[2]), [int(np_state[3]), float(np_state[4])]
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", dir=path.parent))
    try:
        save_file(tensors, str(tmp / "tensors.safetensors"))
        (tmp / "state.json").write_text(json.dumps(meta))
        old = path.with_name(f".{path.name}.old")
        if path.exists():
            shutil.rmtree(old, ignore_errors=True)
            os.replace(path, old)
        os.replace(tmp, path)
        shutil.rmtree(old, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return path


def load_train_state(
    path: str | Path, modules: dict[str, nn.Module], optimizers: dict[str, torch.optim.Optimizer]
) -> tuple[int, dict]:
    """Restore what ``save_train_state`` wrote, RNG included; returns (step, extra)."""
    path = Path(path)
    try:
        tensors = load_file(str(path / "tensors.safetensors"))
        meta = json.loads((path / "state.json").read_text())
    except (OSError, ValueError) as err:
        raise InputError(f"cannot resume from {path}: {err}") from None
    for name, module in modules.items():
        prefix = f"module/{name}/"
        module.load_state_dict({k[len(prefix) :]: v for k, v in tensors.items() if k.startswith(prefix)})
    for name, opt in optimizers.items():
        _unflatten_optimizer(name, opt, tensors, meta)
    torch.set_rng_state(tensors["rng/torch"])
    if "rng/cuda" in tensors and torch.cuda.is_available():
        torch.cuda.set_rng_state(tensors["rng/cuda"])
    py = meta["rng"]["python"]
    random.setstate((py[0], tuple(py[1]), py[2]))
    gauss = meta["rng"]["numpy_gauss"]
    np.random.set_state(
        ("MT19937", np.array(meta["rng"]["numpy"], dtype=np.uint32), meta["rng"]["numpy_pos"], gauss[0], gauss[1])
    )
    return int(meta["step"]), meta["extra"]


def read_jsonl(path: str | Path) -> list[dict]:
    """The objects of a JSONL file, blank lines skipped; a bad line is an InputError naming it."""
    from models.errors import InputError

    path = Path(path)
    records = []
    for i, line in enumerate(path.read_text().splitlines()):
        if not line.strip():
            continue
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError:
            raise InputError(f"{path}:{i + 1}: not JSON") from None
    return records


class JsonlLog:
    """Append-only JSONL metrics log (flushed per line, so a killed run keeps what it logged)."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)

    def write(self, record: dict) -> None:
        with open(self.path, "a") as fh:
            fh.write(json.dumps(record) + "\n")

    def truncate_after(self, step: int) -> None:
        """On resume, drop lines logged after the restored step (they will be logged again)."""
        if not self.path.exists():
            return
        keep = [
            line
            for line in self.path.read_text().splitlines()
            if line.strip() and json.loads(line).get("step", 0) <= step
        ]
        self.path.write_text("".join(line + "\n" for line in keep))


class StepBudget:
    """Fit a run into a wall-clock budget: time steps ``warmup``..``warmup + measure`` and set the total
    number of steps from that rate (so learning-rate schedules that depend on it still end annealed).

    ``sync`` is called before reading the clock (``torch.cuda.synchronize`` on a GPU)."""

    def __init__(self, minutes: float, warmup: int = 40, measure: int = 30, margin: float = 1.1, sync=None):
        self.seconds, self.warmup, self.measure, self.margin = minutes * 60, warmup, measure, margin
        self.sync, self.t0 = sync or (lambda: None), None

    def update(self, step: int, total: int) -> int:
        """Call after each step; returns the (possibly new) total number of steps."""
        if not self.seconds or step not in (self.warmup, self.warmup + self.measure):
            return total
        self.sync()
        if step == self.warmup:
            self.t0 = time.time()
            return total
        per_step = (time.time() - self.t0) / self.measure * self.margin
        total = max(step + 1, int(self.seconds / per_step))
        print(f"{per_step * 1000:.1f} ms/step: {total} steps fit the {self.seconds / 60:g}-minute budget")
        return total


def resume_or_start(out: Path, modules: dict[str, nn.Module], optimizers: dict[str, torch.optim.Optimizer]):
    """A run's JSONL log and where to continue: from ``out/state`` when it exists (the log is cut back
    to that step), else step 0. Returns (step, extra, log)."""
    log = JsonlLog(out / "log.jsonl")
    if not (out / "state").exists():
        return 0, {}, log
    step, extra = load_train_state(out / "state", modules, optimizers)
    log.truncate_after(step)
    print(f"resumed at step {step}")
    return step, extra, log


def out_of_time(start: float, limit_min: float) -> bool:
    """Whether a run started at ``start`` (time.time()) has used its ``limit_min`` minutes (0 = no limit)."""
    return bool(limit_min) and time.time() - start > limit_min * 60


def end_step(
    out: Path,
    modules: dict[str, nn.Module],
    optimizers: dict[str, torch.optim.Optimizer],
    step: int,
    total: int,
    save_every: int,
    stop: bool,
    extra: dict | None = None,
) -> bool:
    """After step ``step`` of ``total``: save ``out/state`` every ``save_every`` steps, at the last step and
    when stopping on the time limit (``stop``); on a stop, say how to resume. Returns ``stop``."""
    if step % save_every == 0 or step == total or stop:
        save_train_state(out / "state", modules, optimizers, step, extra)
    if stop:
        print(f"time limit reached at step {step}; rerun the same command to resume")
    return stop


def optimizer_step(
    opt: torch.optim.Optimizer, loss: torch.Tensor, parameters, grad_clip: float, lr: float | None = None
) -> float:
    """One update: (set the learning rate), backward, clip the gradient norm, step. Returns the norm."""
    if lr is not None:
        for group in opt.param_groups:
            group["lr"] = lr
    opt.zero_grad(set_to_none=True)
    loss.backward()
    norm = torch.nn.utils.clip_grad_norm_(parameters, grad_clip)
    opt.step()
    return float(norm)
