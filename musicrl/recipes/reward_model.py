"""Recipe ``reward-model``: Bradley–Terry preference reward models from the arena's votes, and WARM.

    musicrl train reward-model --prefs prefs.jsonl --audio-root data/app [--num-models 4] [key=value ...]
    musicrl train reward-model --db data/app/musicrl.sqlite3 --data-dir data/app     # straight from the store
    torchrun --nproc-per-node 4 -m musicrl.cli train reward-model --prefs prefs.jsonl ...

Data (``musicrl.preference_data``): the app's export; votes of one kind (``votes``: human by default,
simulated listeners' votes only when asked, counts of both reported; the app's rater-consistency
repeats are kept as votes and counted, ``drop_repeats`` leaves them out); split BY PROMPT (a hash of the
prompt, ``val_fraction`` held out). Soft labels y = P(A ≻ B): a -> 1, b -> 0, **tie -> ½** (the soft
Bradley–Terry target ``losses.soft_bradley_terry_loss``: a tie asks for equal rewards; ``ties=drop``
leaves ties out); **both-bad is dropped** (it does not order the two clips). Each clip's WAV is read
(soundfile) and encoded with the base generator's codec once; codes are cached per audio sha256 in
``out/codes/<codec tag>/``. ``label_noise`` flips that fraction of TRAINING labels (seeded; never
held-out ones) to measure robustness (WARM: 25 %).

Model (``musicrl.reward_model``): trunk = the base generator's pretrained LM, pooled hidden states ->
LayerNorm -> Linear. Training, in one resumable loop of global steps:

1. **linear probe** (``probe_epochs``): trunk frozen, only the head trained, on pooled trunk features
   computed once (the trunk is frozen and in eval mode, so they never change) -> ``out/probe``;
2. **WARM members** (``num_models`` = M, ``epochs`` each): full fine-tuning at a lower LR, each from
   the ONE shared init (pretrained trunk + the probed head), diversified by data order (seed), LR
   (× log-uniform in ``lr_spread``) and dropout (uniform in ``dropout_spread``); with M = 1 the one
   member uses ``lr`` and the LM's own dropout. "Baklava": ``inits`` = several pretraining
   checkpoints of the same architecture; member i's trunk starts from inits[i % len] (the probed head
   is still shared). By default every member shares the one init. -> ``out/members/<i>``.
3. ``out/model`` = the uniform **weight average** of the members (``weight_average``; M = 1: the
   member). Held-out metrics of the probe, every member, the WARM average and the **prediction
   ensemble** (mean of member scores) -> ``out/metrics.json``; ``out/reliability.png``.

Run directory: config.yaml, log.jsonl, state/ (the train state: resume by rerunning the command),
codes/, prefs.jsonl (``--db`` only), probe/, members/<i>/, model/, metrics.json, reliability.png.
Every model directory is a ``RewardModel`` (``RewardModel.load(dir)``), lineage included.

Held-out metrics (``evaluation.preference_metrics``): pairwise accuracy on decisive votes with a 95 %
bootstrap interval over prompts, soft BT loss (all held-out votes), expected calibration error of
σ(r_A − r_B) over 10 bins. Distributed: every rank holds the data; each takes its share of a step's
pairs (``batch_size`` must divide by the number of processes); rank 0 writes; rank 0 evaluates at the end.
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import nn

from evaluation.preference_metrics import plot_reliability, preference_report
from models.errors import InputError
from models.generator import MusicGenerator
from models.module_io import load_module
from models.registry import load_generator
from musicrl import distributed
from musicrl.config import to_dict
from musicrl.losses import soft_bradley_terry_loss
from musicrl.preference_data import (
    Batch,
    Vote,
    codec_tag,
    collate,
    encode_clips,
    flip_labels,
    read_votes,
    split_by_prompt,
)
from musicrl.reward_model import RewardModel, weight_average
from musicrl.train_state import JsonlLog, Loop, lr_at, optimizer_step, read_jsonl, resume_or_start, start_run


@dataclass
class Config:
    prefs: Path = Path("data/app/prefs.jsonl")  # the app's preference export (musicrl prefs export)
    audio_root: Path = Path("data/app")  # the app's data dir: the export's audio paths are relative to it
    out: Path = Path("runs/reward_model")
    base: str = "default"  # generator whose LM is the trunk's init and whose conditioner + codec the RM reads
    votes: str = "human"  # human | simulated | all
    ties: str = "soft"  # soft (label 0.5) | drop
    drop_repeats: bool = False  # leave out the app's rater-consistency repeats (second votes on one pair)
    val_fraction: float = 0.2  # of prompts held out
    max_votes: int = 0  # 0 = every vote
    label_noise: float = 0.0  # fraction of training labels flipped
    num_models: int = 1  # M WARM members
    inits: list[str] = field(default_factory=list)  # Baklava: member i's trunk from inits[i % len]; [] = base
    probe_epochs: float = 3.0
    probe_lr: float = 1e-2
    epochs: float = 2.0  # per member
    lr: float = 3e-5
    lr_spread: list[float] = field(default_factory=lambda: [0.5, 2.0])  # member LR = lr × log-uniform(spread)
    dropout_spread: list[float] = field(default_factory=lambda: [0.0, 0.2])  # member dropout ~ uniform
    batch_size: int = 16  # pairs per step (global)
    warmup: int = 10
    weight_decay: float = 0.0
    grad_clip: float = 1.0
    eval_batch_size: int = 32
    bootstrap: int = 1000
    log_every: int = 10
    save_every: int = 100
    time_limit_min: float = 0.0
    threads: int = 0
    seed: int = 0
    device: str = "cpu"


@dataclass
class Schedule:
    """The global step layout: [probe: probe_steps][member 0: member_steps]...[member M-1]; also what
    ``Loop`` reads (out, steps = the total, log/save/time settings)."""

    out: Path
    probe_steps: int
    member_steps: int
    members: list[dict]  # per member: index, seed, lr, dropout, init
    log_every: int
    save_every: int
    time_limit_min: float

    @property
    def steps(self) -> int:
        return self.probe_steps + len(self.members) * self.member_steps

    def phase(self, step: int) -> tuple[int, int, int]:
        """(member, step within the phase, phase length) of a global step; member −1 = the probe."""
        if step < self.probe_steps:
            return -1, step, self.probe_steps
        m, j = divmod(step - self.probe_steps, self.member_steps)
        return m, j, self.member_steps


@dataclass
class State:
    cfg: Config
    dist: distributed.Dist
    base: MusicGenerator
    train: list[Vote]
    held_out: list[Vote]
    codes: dict[str, torch.Tensor]  # audio sha256 -> codes [K, T]
    info: dict  # vote counts, split sizes, prefs sha256: the lineage
    schedule: Schedule
    model: RewardModel  # the model of the current phase (probe: the shared init)
    train_fwd: nn.Module  # the training forward (the head in the probe, the model after; DDP-wrapped)
    opt: torch.optim.Optimizer
    step: int
    log: JsonlLog
    member: int = -1  # the phase the model/optimizer belong to
    features: torch.Tensor | None = None  # probe: pooled trunk features of the train votes [N, 2, D]
    init_state: dict | None = None  # the shared init (pretrained trunk + probed head)
    inits: dict[str, dict] = field(default_factory=dict)  # Baklava: init name -> trunk state dict
    modules: dict = field(default_factory=dict)  # what the Loop saves (refilled when a phase begins)
    optimizers: dict = field(default_factory=dict)


def file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def check_config(cfg: Config, need_prefs: bool = True) -> None:
    if cfg.num_models < 1:
        raise InputError(f"num_models must be >= 1, got {cfg.num_models}")
    if not 0.0 < cfg.val_fraction < 1.0:
        raise InputError(f"val_fraction must lie in (0, 1), got {cfg.val_fraction}")
    if not 0.0 <= cfg.label_noise <= 0.5:
        raise InputError(f"label_noise must lie in [0, 0.5], got {cfg.label_noise}")
    if len(cfg.lr_spread) != 2 or not 0 < cfg.lr_spread[0] <= cfg.lr_spread[1]:
        raise InputError(f"lr_spread must be [low, high] with 0 < low <= high, got {cfg.lr_spread}")
    if len(cfg.dropout_spread) != 2 or not 0 <= cfg.dropout_spread[0] <= cfg.dropout_spread[1] < 1:
        raise InputError(f"dropout_spread must be [low, high] within [0, 1), got {cfg.dropout_spread}")
    if cfg.batch_size < 1 or cfg.probe_epochs < 0 or cfg.epochs <= 0:
        raise InputError("batch_size must be >= 1, probe_epochs >= 0 and epochs > 0")
    if need_prefs and not cfg.prefs.is_file():
        raise InputError(f"prefs file {cfg.prefs} does not exist (export the votes: musicrl prefs export)")


def check_votes(cfg: Config, rows: list[dict]) -> None:
    """Refuse a configuration or a set of exported rows the run would refuse, before any file is written
    (the CLI checks votes read from a store before exporting them into the run directory)."""
    check_config(cfg, need_prefs=False)
    split_votes(cfg, rows)


def split_votes(cfg: Config, rows: list[dict]) -> tuple[list[Vote], list[Vote], dict]:
    """(train, held_out, vote counts) of exported rows; InputError when either side would be empty."""
    votes, counts = read_votes(rows, cfg.audio_root, cfg.votes, cfg.ties, cfg.max_votes, cfg.drop_repeats)
    train, held_out = split_by_prompt(votes, cfg.val_fraction)
    prompts = {v.prompt for v in votes}
    if not train or not held_out:
        raise InputError(f"{len(prompts)} prompt(s) leave {'no training' if not train else 'no held-out'} votes "
                         f"at val_fraction={cfg.val_fraction}: rate clips of more prompts")
    return train, held_out, counts


def load_data(cfg: Config) -> tuple[list[Vote], list[Vote], dict]:
    """Votes read, filtered and split, training labels noised (writes nothing): (train, held_out, info)."""
    train, held_out, counts = split_votes(cfg, read_jsonl(cfg.prefs))
    train, flipped = flip_labels(train, cfg.label_noise, cfg.seed)
    info = {"prefs": [{"path": str(cfg.prefs), "sha256": file_sha256(cfg.prefs)}], "votes": counts,
            "kind": cfg.votes, "train": len(train), "held_out": len(held_out),
            "train_prompts": len({v.prompt for v in train}), "held_out_prompts": len({v.prompt for v in held_out}),
            "label_noise": cfg.label_noise, "labels_flipped": flipped}
    return train, held_out, info


def member_settings(cfg: Config) -> list[dict]:
    """Each WARM member's seed, LR, dropout and init (drawn from ``cfg.seed``)."""
    rng = np.random.default_rng(cfg.seed + 7919)
    lo, hi = (math.log(x) for x in cfg.lr_spread)
    out = []
    for i in range(cfg.num_models):
        single = cfg.num_models == 1
        out.append({"index": i, "seed": cfg.seed * 1000 + 1 + i,
                    "lr": cfg.lr if single else cfg.lr * math.exp(rng.uniform(lo, hi)),
                    "dropout": None if single else float(rng.uniform(*cfg.dropout_spread)),
                    "init": cfg.inits[i % len(cfg.inits)] if cfg.inits else cfg.base})
    return out


def _saved_state(cfg: Config) -> tuple[int, dict]:
    """(step, extra) of the run's train state, without loading it (0, {} when there is none)."""
    meta = cfg.out / "state" / "state.json"
    if not meta.is_file():
        return 0, {}
    try:
        data = json.loads(meta.read_text())
        return int(data["step"]), dict(data.get("extra") or {})
    except (OSError, ValueError, KeyError) as err:
        raise InputError(f"cannot resume from {cfg.out / 'state'}: {err}") from None


def setup(cfg: Config) -> State:
    check_config(cfg)
    train, held_out, info = load_data(cfg)  # all refusals happen before anything is written
    saved_step, extra = _saved_state(cfg)
    if saved_step and extra.get("prefs_sha256") != info["prefs"][0]["sha256"]:
        raise InputError(f"{cfg.out} was trained on other votes than {cfg.prefs}; choose another out dir")
    base = load_generator(cfg.base)
    inits = {}
    for name in dict.fromkeys(cfg.inits):
        lm = load_generator(name).lm
        if lm.cfg != base.lm.cfg:
            raise InputError(f"init {name!r} has another LM architecture than the base {cfg.base!r}")
        inits[name] = lm.state_dict()
    dist = start_run(cfg)
    torch.manual_seed(cfg.seed)
    max_frames = base.lm.cfg.max_positions - base.lm.cfg.num_codebooks + 1
    cache = cfg.out / "codes" / codec_tag(base)
    codes = {}
    for turn in ("main", "others"):  # rank 0 fills the cache, the others read it
        if (turn == "main") == dist.is_main:
            codes, info["clips_cropped"] = encode_clips(train + held_out, cfg.audio_root, base, cache, max_frames,
                                                        progress=dist.is_main)
        dist.barrier()
    info["clips"] = len(codes)
    per_epoch = len(train) / cfg.batch_size
    schedule = Schedule(cfg.out, math.ceil(cfg.probe_epochs * per_epoch), max(1, math.ceil(cfg.epochs * per_epoch)),
                        member_settings(cfg), cfg.log_every, cfg.save_every, cfg.time_limit_min)
    log = JsonlLog(cfg.out / "log.jsonl", enabled=dist.is_main)
    model = RewardModel.from_generator(base, cfg.base).to(dist.device)
    state = State(cfg, dist, base, train, held_out, codes, info, schedule, model, model, None, 0, log, inits=inits)
    # the phase the saved state was in (at a phase boundary: the phase that just ended)
    member = schedule.phase(saved_step - 1)[0] if saved_step else -1
    if saved_step and saved_step >= schedule.probe_steps:  # the probe has finished: its model is on disk
        state.init_state = load_module(cfg.out / "probe", "reward-model", stem="reward_model")[1]
    enter_phase(state, member)
    state.step, _, state.log = resume_or_start(cfg.out, state.modules, state.optimizers, dist)
    return state


def enter_phase(state: State, member: int) -> None:
    """Build the model, training forward and optimizer of a phase (member −1: the probe)."""
    cfg, dist = state.cfg, state.dist
    if member < 0:
        model = state.model
        model.trunk.requires_grad_(False).eval()
        state.features = None  # computed on first use (not needed when resuming past the probe)
        state.train_fwd = distributed.wrap(model.head, dist)
        state.opt = torch.optim.AdamW(model.head.parameters(), lr=cfg.probe_lr, weight_decay=cfg.weight_decay)
    else:
        settings = state.schedule.members[member]
        model = RewardModel(state.model.cfg, state.base).to(dist.device)
        model.load_state_dict(state.init_state)
        if settings["init"] in state.inits:
            model.trunk.load_state_dict({k: v for k, v in state.inits[settings["init"]].items()
                                         if not k.startswith(("heads.", "final_norm."))})
        if settings["dropout"] is not None:
            model.set_dropout(settings["dropout"])
        model.requires_grad_(True)
        state.model, state.features = model, None
        state.train_fwd = distributed.wrap(model, dist)
        state.opt = torch.optim.AdamW(model.parameters(), lr=settings["lr"], weight_decay=cfg.weight_decay)
    state.member = member
    state.modules.clear()
    state.modules["model"] = state.model
    state.optimizers.clear()
    state.optimizers["opt"] = state.opt


@torch.no_grad()
def probe_features(state: State) -> torch.Tensor:
    """Pooled features of the frozen trunk (eval mode) for every training vote: [N, 2, D] (A, B)."""
    model, n, bs = state.model, len(state.train), state.cfg.eval_batch_size
    model.eval()
    parts = []
    for i in range(0, n, bs):
        batch = collate(state.train[i : i + bs], state.codes)
        text = model.encode_text(batch.prompts)
        f = model.features(_twice(text), batch.codes, batch.frames)
        parts.append(f.view(2, -1, f.shape[-1]).transpose(0, 1))
    return torch.cat(parts)


def _twice(text):
    from models.lm import TextStates

    return TextStates(torch.cat([text.states, text.states]), torch.cat([text.mask, text.mask]))


def next_batch(state: State) -> Batch:
    """This rank's share of the step's pairs: epoch-wise permutations of the training votes seeded by
    the phase (probe: ``seed``; member i: its own seed), so a member's data order depends on (seed, step)."""
    cfg, (member, j, _) = state.cfg, state.schedule.phase(state.step)
    seed = cfg.seed * 1000 if member < 0 else state.schedule.members[member]["seed"]
    n, positions = len(state.train), range(j * cfg.batch_size, (j + 1) * cfg.batch_size)
    perms: dict[int, torch.Tensor] = {}
    index = []
    for p in positions:
        epoch = p // n
        if epoch not in perms:
            perms[epoch] = torch.randperm(n, generator=torch.Generator().manual_seed(seed * 100_003 + epoch))
        index.append(int(perms[epoch][p % n]))
    index = state.dist.shard(index, "batch_size")
    return collate([state.train[i] for i in index], state.codes, torch.tensor(index))


def step(state: State, batch: Batch) -> dict[str, float]:
    """One update of the soft Bradley–Terry loss on the batch's pairs (the probe: head on cached features)."""
    cfg, (member, j, length) = state.cfg, state.schedule.phase(state.step)
    dev = state.dist.device
    if member < 0:
        if state.features is None:
            state.features = probe_features(state)
        f = state.features[batch.index].to(dev)  # [B, 2, D]
        r = state.train_fwd(f.flatten(0, 1)).view(-1, 2)
        r_a, r_b = r[:, 0], r[:, 1]
        peak = cfg.probe_lr
    else:
        state.model.train()
        text = state.model.encode_text(batch.prompts)
        r = state.train_fwd(_twice(text), batch.codes, batch.frames)
        r_a, r_b = r.view(2, -1)
        peak = state.schedule.members[member]["lr"]
    labels = batch.labels.to(dev)
    loss = soft_bradley_terry_loss(r_a, r_b, labels)
    lr = lr_at(j, length, peak, cfg.warmup, 0.1)
    grad_norm = optimizer_step(state.opt, loss, [p for p in state.model.parameters() if p.requires_grad],
                               cfg.grad_clip, lr)
    decisive = labels != 0.5
    correct = ((r_a - r_b > 0) == (labels > 0.5))[decisive].float()
    return {"loss": loss.item(), "accuracy": correct.mean().item() if correct.numel() else 0.5, "lr": lr,
            "grad_norm": grad_norm, "member": member}


def finish_phase(state: State) -> None:
    """After a phase's last step: keep the shared init (probe) in memory, save the phase's model (rank 0)."""
    member, cfg = state.member, state.cfg
    if member < 0:
        state.init_state = {k: v.detach().clone() for k, v in state.model.state_dict().items()}
    if state.dist.is_main:
        where = cfg.out / ("probe" if member < 0 else f"members/{member}")
        state.model.save(where, lineage=_lineage(state, member))


def _lineage(state: State, member: int, held_out: dict | None = None) -> dict:
    lineage = {"recipe": "reward-model", "base": state.cfg.base, "base_hash": state.base.checkpoint_hash,
               **state.info, "config": to_dict(state.cfg), "step": state.step}
    if member == -1:
        lineage["phase"] = "linear-probe"
    elif member >= 0:
        lineage["phase"], lineage["member"] = "warm-member", state.schedule.members[member]
    if held_out is not None:
        lineage["held_out"] = held_out
    return lineage


# ----------------------------------------------------------------------------- evaluation


@torch.no_grad()
def reward_differences(model: RewardModel, votes: list[Vote], codes: dict, batch_size: int) -> np.ndarray:
    """r(A) − r(B) of every vote [N] (eval mode)."""
    model.eval()
    out = []
    for i in range(0, len(votes), batch_size):
        batch = collate(votes[i : i + batch_size], codes)
        r = model(_twice(model.encode_text(batch.prompts)), batch.codes, batch.frames).float().cpu()
        r_a, r_b = r.view(2, -1)
        out.append((r_a - r_b).numpy())
    return np.concatenate(out).astype(np.float64)


def held_out_metrics(diff: np.ndarray, votes: list[Vote], n_boot: int) -> dict:
    labels = np.array([v.label for v in votes])
    report = preference_report(diff, labels, [v.prompt for v in votes], n_boot=n_boot)
    zero = torch.zeros(len(votes), dtype=torch.float64)
    report["bt_loss"] = soft_bradley_terry_loss(torch.from_numpy(diff), zero, torch.from_numpy(labels)).item()
    return report


def finish_run(state: State) -> dict:
    """Rank 0, after the last step: WARM average -> out/model; held-out metrics -> metrics.json."""
    cfg, sched = state.cfg, state.schedule
    n_boot, bs = cfg.bootstrap, cfg.eval_batch_size
    results, diffs = {}, []
    probe = RewardModel.load(cfg.out / "probe", base=state.base)
    results["probe"] = held_out_metrics(reward_differences(probe, state.held_out, state.codes, bs), state.held_out,
                                        n_boot)
    members = [RewardModel.load(cfg.out / f"members/{m}", base=state.base) for m in range(len(sched.members))]
    results["members"] = []
    for m, model in enumerate(members):
        diffs.append(reward_differences(model, state.held_out, state.codes, bs))
        results["members"].append({**sched.members[m], **held_out_metrics(diffs[-1], state.held_out, n_boot)})
    warm = RewardModel(probe.cfg, state.base)
    warm.load_state_dict(weight_average([m.state_dict() for m in members]))
    warm_diff = reward_differences(warm, state.held_out, state.codes, bs)
    results["warm"] = held_out_metrics(warm_diff, state.held_out, n_boot)
    curves = {"probe": results["probe"]["reliability"], "output model": results["warm"]["reliability"]}
    if len(members) > 1:
        results["ensemble"] = held_out_metrics(np.mean(diffs, axis=0), state.held_out, n_boot)
        curves["prediction ensemble"] = results["ensemble"]["reliability"]
    # WARM with the first m < M members (m = 2, 3, ...): how accuracy grows with M in one run
    results["by_num_models"] = {}
    for m in range(2, len(members)):
        sub = RewardModel(probe.cfg, state.base)
        sub.load_state_dict(weight_average([x.state_dict() for x in members[:m]]))
        results["by_num_models"][str(m)] = {
            "warm": held_out_metrics(reward_differences(sub, state.held_out, state.codes, bs), state.held_out, n_boot),
            "ensemble": held_out_metrics(np.mean(diffs[:m], axis=0), state.held_out, n_boot)}
    lineage = _lineage(state, -2, results["warm"])
    lineage["warm"] = {"num_models": len(members), "merge": "uniform weight average" if len(members) > 1 else "none",
                       "shared_init": "pretrained LM + linear-probed head", "inits": cfg.inits or [cfg.base],
                       "members": sched.members}
    warm.save(cfg.out / "model", lineage=lineage)
    plot_reliability(curves, cfg.out / "reliability.png", f"held-out calibration ({len(state.held_out)} votes)")
    metrics = {"model": str(cfg.out / "model"), "step": state.step, "data": state.info, "held_out": results}
    (cfg.out / "metrics.json").write_text(json.dumps(metrics, indent=2))
    return metrics


def main(cfg: Config) -> dict:
    state = setup(cfg)
    sched = state.schedule
    extra = {"prefs_sha256": state.info["prefs"][0]["sha256"]}
    stopped = False
    with Loop("reward-model", sched, state.log, state.dist, state.modules, state.optimizers, state.step) as loop:
        if sched.probe_steps == 0 and state.step == 0:
            finish_phase(state)  # no probe: the shared init is the pretrained trunk + a fresh head
        while state.step < sched.steps:
            member = sched.phase(state.step)[0]
            if member != state.member:
                enter_phase(state, member)
            metrics = step(state, next_batch(state))
            state.step += 1
            if state.step == sched.steps or sched.phase(state.step)[0] != member:
                finish_phase(state)
            if loop.after_step(state.step, metrics, before_save=lambda stop: extra):
                stopped = state.step < sched.steps
                break
    summary = {"step": state.step, "steps": sched.steps, "stopped": stopped}
    if state.dist.is_main and not stopped:
        summary.update(finish_run(state))
        held = summary["held_out"]["warm"]
        print(f"held-out: accuracy {held['accuracy']:.3f} [{held['accuracy_ci'][0]:.3f}, "
              f"{held['accuracy_ci'][1]:.3f}] on {held['decisive']} decisive votes, ECE {held['ece']:.3f}; "
              f"model in {cfg.out / 'model'}")
    return summary
