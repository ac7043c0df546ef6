"""What every recipe's loop shares: exact-resume train state, the LR schedule, time limits, the log.

run/
  state/            the latest train state (replaced atomically; written by rank 0)
    tensors.safetensors   module weights, optimizer tensors, every rank's torch (and CUDA) RNG state
    state.json            {"format": "musicrl", "kind": "train-state", "version": 2, step, world,
                           optimizer scalars and param groups, python/numpy RNG of rank 0, extra}
  log.jsonl         one JSON object per logged step (appended by rank 0)

Safetensors + JSON, never pickle. Under torchrun every rank restores the same weights and optimizer
state and its own RNG (resuming with another number of processes restores weights, optimizer and
step exactly; ranks without a saved RNG keep the one their setup seeded). Collective helpers
(``end_step``, ``out_of_time``, ``StepBudget``) must be called on every rank.
"""

from __future__ import annotations

import json
import math
import random
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file, save_file
from torch import nn

from models.audio_io import atomic_directory
from models.errors import InputError
from musicrl.config import dump_config
from musicrl.distributed import Dist, gather_rng, init_distributed

FORMAT, KIND, VERSION = "musicrl", "train-state", 2


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
    rng: dict[str, torch.Tensor] | None = None,
) -> Path:
    """Write the state directory atomically (temp dir + rename): a crash leaves the previous one intact.

    rng: every rank's RNG states from ``distributed.gather_rng`` (default: this process's)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tensors: dict[str, torch.Tensor] = {}
    for name, module in modules.items():
        for key, value in module.state_dict().items():
            tensors[f"module/{name}/{key}"] = value.detach().cpu().contiguous()
    rng = rng if rng is not None else gather_rng(Dist())
    meta: dict = {"format": FORMAT, "kind": KIND, "version": VERSION, "step": step, "optimizers": {}}
    meta.update(world=len([k for k in rng if k.startswith("rng/torch/")]), extra=extra or {})
    for name, opt in optimizers.items():
        _flatten_optimizer(name, opt, tensors, meta)
    tensors.update(rng)
    py_state = random.getstate()
    meta["rng"] = {"python": [py_state[0], list(py_state[1]), py_state[2]], "numpy": np.random.get_state()[1].tolist()}
    np_state = np.random.get_state()
    meta["rng"]["numpy_pos"], meta["rng"]["numpy_gauss"] = int(np_state[2]), [int(np_state[3]), float(np_state[4])]
    with atomic_directory(path) as tmp:
        save_file(tensors, str(tmp / "tensors.safetensors"))
        (tmp / "state.json").write_text(json.dumps(meta))
    return path


def load_train_state(
    path: str | Path, modules: dict[str, nn.Module], optimizers: dict[str, torch.optim.Optimizer], rank: int = 0
) -> tuple[int, dict]:
    """Restore what ``save_train_state`` wrote, rank ``rank``'s RNG included; returns (step, extra)."""
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
    # version 1 kept one process's RNG under "rng/torch"
    own = {k: tensors.get(f"rng/{k}/{rank}", tensors.get(f"rng/{k}") if rank == 0 else None) for k in ("torch", "cuda")}
    if own["torch"] is not None:
        torch.set_rng_state(own["torch"])
    if own["cuda"] is not None and torch.cuda.is_available():
        torch.cuda.set_rng_state(own["cuda"])
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
    """Append-only JSONL metrics log (flushed per line, so a killed run keeps what it logged).
    ``enabled=False`` (ranks other than 0) writes nothing."""

    def __init__(self, path: str | Path, enabled: bool = True):
        self.path = Path(path)
        self.enabled = enabled
        if enabled:
            self.path.parent.mkdir(parents=True, exist_ok=True)

    def write(self, record: dict) -> None:
        if not self.enabled:
            return
        with open(self.path, "a") as fh:
            fh.write(json.dumps(record) + "\n")

    def truncate_after(self, step: int) -> None:
        """On resume, drop lines logged after the restored step (they will be logged again)."""
        if not self.enabled or not self.path.exists():
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

    ``sync`` is called before reading the clock (``torch.cuda.synchronize`` on a GPU). Under torchrun
    every rank adopts rank 0's total."""

    def __init__(
        self,
        minutes: float,
        warmup: int = 40,
        measure: int = 30,
        margin: float = 1.1,
        sync=None,
        dist: Dist | None = None,
    ):
        self.seconds, self.warmup, self.measure, self.margin = minutes * 60, warmup, measure, margin
        self.sync, self.t0, self.dist = sync or (lambda: None), None, dist or Dist()

    def update(self, step: int, total: int) -> int:
        """Call after each step; returns the (possibly new) total number of steps."""
        if not self.seconds or step not in (self.warmup, self.warmup + self.measure):
            return total
        self.sync()
        if step == self.warmup:
            self.t0 = time.time()
            return total
        per_step = (time.time() - self.t0) / self.measure * self.margin
        total = _from_rank0(max(step + 1, int(self.seconds / per_step)), self.dist)
        if self.dist.is_main:
            print(f"{per_step * 1000:.1f} ms/step: {total} steps fit the {self.seconds / 60:g}-minute budget")
        return total


def _from_rank0(value: int, d: Dist) -> int:
    """Rank 0's value of an integer on every rank (decisions taken from a clock must agree)."""
    if d.world == 1:
        return value
    import torch.distributed as dist

    t = torch.tensor([value], dtype=torch.int64, device=d.device)
    dist.broadcast(t, 0)
    return int(t.item())


def resume_or_start(
    out: Path, modules: dict[str, nn.Module], optimizers: dict[str, torch.optim.Optimizer], dist: Dist | None = None
):
    """A run's JSONL log and where to continue: from ``out/state`` when it exists (the log is cut back
    to that step), else step 0. Returns (step, extra, log); every rank restores, rank 0 logs."""
    dist = dist or Dist()
    log = JsonlLog(out / "log.jsonl", enabled=dist.is_main)
    if not (out / "state").exists():
        return 0, {}, log
    step, extra = load_train_state(out / "state", modules, optimizers, dist.rank)
    log.truncate_after(step)
    if dist.is_main:
        print(f"resumed at step {step}")
    return step, extra, log


def out_of_time(start: float, limit_min: float, dist: Dist | None = None) -> bool:
    """Whether a run started at ``start`` (time.time()) has used its ``limit_min`` minutes (0 = no limit);
    rank 0's clock decides for every rank."""
    dist = dist or Dist()
    return bool(_from_rank0(int(bool(limit_min) and time.time() - start > limit_min * 60), dist))


def start_run(cfg) -> Dist:
    """A recipe's first lines: ``cfg.threads`` (> 0) CPU threads, this process's place under torchrun
    (``cfg.device``), ``cfg.out`` made and, by rank 0, the resolved ``config.yaml`` written there."""
    if getattr(cfg, "threads", 0):
        torch.set_num_threads(cfg.threads)
    dist = init_distributed(cfg.device)
    cfg.out.mkdir(parents=True, exist_ok=True)
    if dist.is_main:
        dump_config(cfg, cfg.out / "config.yaml")
    return dist


def progress_bar(desc: str, total: int, initial: int, dist: Dist | None = None):
    """The loop's tqdm bar, shown by rank 0 only (and only on a terminal)."""
    from tqdm import tqdm

    hide = None if (dist or Dist()).is_main else True  # None: tqdm decides (shown on a terminal)
    return tqdm(total=total, initial=initial, desc=desc, unit="step", disable=hide)


def lr_at(step: int, total: int, peak: float, warmup: int, min_ratio: float) -> float:
    """Linear warm-up over ``warmup`` steps, then cosine decay from ``peak`` to ``min_ratio``·peak at
    ``total``. Step 0 of warmup 10 -> peak/10; at total/2 (warm) -> peak·(min_ratio + (1-min_ratio)/2)."""
    warm = min(1.0, (step + 1) / max(1, warmup))
    progress = min(1.0, step / max(1, total))
    return peak * warm * (min_ratio + (1 - min_ratio) * 0.5 * (1 + math.cos(math.pi * progress)))


def end_step(
    out: Path,
    modules: dict[str, nn.Module],
    optimizers: dict[str, torch.optim.Optimizer],
    step: int,
    total: int,
    save_every: int,
    stop: bool,
    extra: dict | None = None,
    dist: Dist | None = None,
) -> bool:
    """After step ``step`` of ``total``: save ``out/state`` every ``save_every`` steps, at the last step and
    when stopping on the time limit (``stop``); on a stop, say how to resume. Returns ``stop``.
    Every rank calls it (the RNG states are gathered); rank 0 writes."""
    dist = dist or Dist()
    if step % save_every == 0 or step == total or stop:
        rng = gather_rng(dist)
        if dist.is_main:
            save_train_state(out / "state", modules, optimizers, step, extra, rng)
    if stop and dist.is_main:
        print(f"time limit reached at step {step}; rerun the same command to resume")
    return stop


def optimizer_step(
    opt: torch.optim.Optimizer, loss: torch.Tensor, parameters, grad_clip: float, lr: float | None = None,
    after_backward: Callable[[], None] | None = None,
) -> float:
    """One update: (set the learning rate), backward, (``after_backward``: e.g. route gradients to the
    parameters the optimiser holds), clip the gradient norm, step. Returns the norm."""
    if lr is not None:
        for group in opt.param_groups:
            group["lr"] = lr
    opt.zero_grad(set_to_none=True)
    loss.backward()
    if after_backward is not None:
        after_backward()
    norm = torch.nn.utils.clip_grad_norm_(parameters, grad_clip)
    opt.step()
    return float(norm)


class Loop:
    """What every recipe's loop does after a step, and at its end, apart from training itself:

        with Loop("lm", cfg, state.log, state.dist, {"lm": lm}, {"opt": opt}, state.step) as loop:
            while state.step < cfg.steps:
                metrics = step(state, next_batch(state))
                state.step += 1
                if loop.after_step(state.step, metrics):
                    break
            ...rank 0 saves the model and evaluates...

    ``after_step``: metrics averaged over ranks, the progress bar, the JSONL log every ``cfg.log_every``
    steps and at the last (``on_log`` may add to the record, e.g. validation), a ``StepBudget`` that may
    reset ``cfg.steps``, the time limit, then ``before_save(stop)`` (returns the train state's extra)
    and the train state every ``cfg.save_every`` steps. Returns True when the run must stop. Leaving
    the ``with`` block closes the bar, waits for every rank and leaves the process group (on an error: only
    closes the bar)."""

    def __init__(self, name, cfg, log: JsonlLog, dist: Dist, modules: dict, optimizers: dict, step: int, budget=None):
        self.cfg, self.log, self.dist, self.modules, self.optimizers = cfg, log, dist, modules, optimizers
        self.budget, self.start = budget, time.time()
        self.bar = progress_bar(name, cfg.steps, step, dist)

    def __enter__(self) -> Loop:
        return self

    def __exit__(self, kind, value, traceback) -> None:
        from musicrl.distributed import close

        self.bar.close()
        if kind is None:  # every rank got here: wait for the others, then leave the group
            self.dist.barrier()
            close(self.dist)
        # on an error this rank leaves at once: a barrier or the group's teardown would wait on ranks still inside
        # a collective, and the error would never print; torchrun stops the other ranks when this one exits

    def after_step(self, step: int, metrics: dict, on_log=None, before_save=None) -> bool:
        cfg = self.cfg
        metrics = self.dist.mean(metrics)
        self.bar.update(1)
        if self.budget is not None:
            cfg.steps = self.bar.total = self.budget.update(step, cfg.steps)
        if step % cfg.log_every == 0 or step == cfg.steps:
            record = {"step": step, **metrics, "elapsed_s": time.time() - self.start}
            self.log.write(on_log(record) if on_log is not None else record)
            self.bar.set_postfix(loss=f"{metrics.get('loss', float('nan')):.3f}")
        stop = out_of_time(self.start, cfg.time_limit_min, self.dist)
        extra = before_save(stop) if before_save is not None else None
        return end_step(cfg.out, self.modules, self.optimizers, step, cfg.steps, cfg.save_every, stop, extra, self.dist)
