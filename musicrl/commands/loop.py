"""``musicrl loop``: the arena's votes → a WARM reward model → RLHF → the new model served by the running app.

    musicrl app --registry runs/loop/registry.yaml --admin-token T &     # the app being improved
    musicrl loop --app http://127.0.0.1:7860 --registry runs/loop/registry.yaml --data-dir data/app \
        --rounds 2 --panel --panel-votes 120 [--rm num_models=4] [--rl steps=60]

Each round r, in its own directory ``OUT/round-r/``, five stages, each done once:

1. **export** — every vote of the chosen kind (people, or the simulated panel's) from the app's store,
   read-only beside the running app, as ``prefs.jsonl`` (TRL layout; ``app.transfer``);
2. **reward_model** — ``musicrl train reward-model`` on it: Bradley–Terry from the pretrained LM,
   M WARM members weight-averaged (``rm/model``);
3. **rl** — ``musicrl train rl`` from the current best model with that reward model (``musicrl-u``;
   ``musicrl-ru`` when the current best is a musicrl-r checkpoint), KL against where the round
   started; its best checkpoint under the KL budget is the round's model (``rl/best``);
4. **register** — the model is appended to the app's registry file (``app.registry.add_registry_entry``,
   atomic); the app re-reads the file and serves it in the arena without a restart;
5. **panel** (``--panel``) — the simulated listeners vote through the app's public API, so the next
   round learns from votes that include this round's model and the leaderboard rates it.

On a GPU machine ``--launcher "torchrun --nproc-per-node 8"`` runs stages 2–3 as torchrun jobs
(``scripts/gpu_loop.sh``). ``OUT/loop.json`` records what each stage produced. Re-running the same
command continues where it stopped: finished stages are skipped (nothing is retrained twice) and an
interrupted recipe resumes from its own train state. The current best model is the last registered
round's (the base before). ``--rm KEY=VALUE`` / ``--rl KEY=VALUE`` override the two recipes' configs.

It stands on the CLI floor: the one place that may read the app's store and registry AND run the recipes.
"""

from __future__ import annotations

import argparse
import json
import shlex
import subprocess
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from app.registry import ModelRegistry, add_registry_entry
from app.transfer import open_prefs_store, write_preferences_jsonl
from models.audio_io import atomic_write
from models.errors import InputError
from musicrl.config import dump_config, with_overrides
from musicrl.recipes import reward_model, rl

STAGES = ("export", "reward_model", "rl", "register", "panel")
VOTE_KINDS = ("simulated", "people")

# (app URL, number of votes, seed) -> a summary dict; the panel, injected (``musicrl loop`` builds it)
PanelVote = Callable[[str, int, int], dict]
RECIPES = {"reward-model": reward_model, "rl": rl}


@dataclass
class LoopConfig:
    registry: Path  # the registry file the running app was started with
    data_dir: Path  # the app's data directory (its store and audio)
    out: Path = Path("runs/loop")
    db: str | None = None  # the store's URL; None = the SQLite file in data_dir
    app: str = ""  # the running app's URL (for the panel)
    rounds: int = 1
    base: str = "default"  # the model round 1 starts from, and the reward models' trunk
    votes: str = "simulated"  # which votes train the reward model: simulated (the panel's) | people
    min_votes: int = 20  # refuse to train a reward model on fewer decisive votes
    panel_votes: int = 0  # votes the panel casts after each round (0 = no panel)
    seed: int = 0
    reward_model: dict = field(default_factory=dict)  # overrides of reward_model.Config (num_models, epochs...)
    rl: dict = field(default_factory=dict)  # overrides of rl.Config (steps, alpha, corpus...)
    threads: int = 0
    launcher: str = ""  # "" = recipes in this process; e.g. "torchrun --nproc-per-node 8" on a GPU machine


def _atomic_json(path: Path, data: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(path, json.dumps(data, indent=2).encode("utf-8"))


class LoopState:
    """``OUT/loop.json``: {"rounds": {"1": {stage: result}}, "best": model path}, written after each stage."""

    def __init__(self, out: Path, base: str) -> None:
        self.path = out / "loop.json"
        if self.path.is_file():
            try:
                self.data = json.loads(self.path.read_text(encoding="utf-8"))
            except ValueError:
                raise InputError(f"{self.path} is not valid JSON: move it away to start the loop afresh") from None
        else:
            self.data = {"base": base, "best": base, "rounds": {}}
        if self.data.get("base") != base:
            raise InputError(f"{out} is a loop started from {self.data.get('base')!r}, not {base!r}")

    def done(self, r: int, stage: str) -> dict | None:
        return self.data["rounds"].get(str(r), {}).get(stage)

    def record(self, r: int, stage: str, result: dict) -> dict:
        self.data["rounds"].setdefault(str(r), {})[stage] = result
        _atomic_json(self.path, self.data)
        return result

    @property
    def best(self) -> str:
        return self.data["best"]

    def set_best(self, model: str) -> None:
        self.data["best"] = model
        _atomic_json(self.path, self.data)


def check(cfg: LoopConfig, panel: PanelVote | None) -> None:
    """Refuse what cannot work, before anything is written."""
    if cfg.rounds < 1:
        raise InputError("--rounds must be >= 1")
    if cfg.votes not in VOTE_KINDS:
        raise InputError(f"--votes must be one of {', '.join(VOTE_KINDS)}")
    if cfg.panel_votes and (panel is None or not cfg.app):
        raise InputError("the panel needs --app URL (the running app it votes in)")
    if not cfg.registry.is_file():
        raise InputError(f"registry file {cfg.registry} does not exist (start the app with --registry FILE)")
    ModelRegistry.from_file(cfg.registry)  # parses, or one InputError line


def export_votes(cfg: LoopConfig, path: Path) -> dict:
    """The store's votes of ``cfg.votes`` kind as TRL rows in ``path``; counts and the file's hash."""
    with open_prefs_store(cfg.db, cfg.data_dir, "read") as store:
        decisive = store.count_votes(cfg.votes, include_ties=False)
        if decisive < cfg.min_votes:
            raise InputError(f"the store holds {decisive} decisive {cfg.votes} vote(s); the reward model needs at "
                             f"least {cfg.min_votes} (collect more, or run the panel: --panel)")
        count = write_preferences_jsonl(store, path, votes=cfg.votes)
    return {"file": str(path), "votes": count, "decisive": decisive, "sha256": reward_model.file_sha256(path)}


def _preset_for(model: str) -> str:
    return "musicrl-ru" if rl.checkpoint_lineage(model).get("preset") == "musicrl-r" else "musicrl-u"


def run_round(cfg: LoopConfig, state: LoopState, r: int, panel: PanelVote | None, say: Callable[[str], None]) -> None:
    where = cfg.out / f"round-{r}"
    if not state.done(r, "export"):
        say(f"round {r}: exporting the {cfg.votes} votes")
        state.record(r, "export", export_votes(cfg, where / "prefs.jsonl"))
    if not state.done(r, "reward_model"):
        say(f"round {r}: training the reward model")
        rm_cfg = reward_model.Config(prefs=where / "prefs.jsonl", audio_root=cfg.data_dir, out=where / "rm",
                                     base=cfg.base, votes="simulated" if cfg.votes == "simulated" else "human",
                                     seed=cfg.seed + r, threads=cfg.threads)
        metrics = run_recipe(cfg, "reward-model", with_overrides(rm_cfg, cfg.reward_model), where / "rm.yaml")
        state.record(r, "reward_model", {"model": str(where / "rm" / "model"), "metrics": _jsonable(metrics)})
    if not state.done(r, "rl"):
        start = state.best
        preset = _preset_for(start)
        say(f"round {r}: {preset} from {start}")
        rl_cfg = rl.Config(preset=preset, model=start, reward_model=str(where / "rm" / "model"), out=where / "rl",
                           seed=cfg.seed + r, threads=cfg.threads)
        summary = run_recipe(cfg, "rl", with_overrides(rl_cfg, cfg.rl), where / "rl.yaml")
        state.record(r, "rl", {"model": summary["best"], "from": start, "preset": preset,
                               "best_validation": summary["best_validation"]})
    if not state.done(r, "register"):
        model_id = f"loop-round-{r}"
        entry = {"id": model_id, "name": f"Loop round {r} ({state.done(r, 'rl')['preset']})",
                 "path": state.done(r, "rl")["model"],
                 "description": f"RLHF round {r} of {cfg.out}: reward model trained on "
                                f"{state.done(r, 'export')['votes']} {cfg.votes} vote(s)."}
        if model_id not in ModelRegistry.from_file(cfg.registry).ids:
            add_registry_entry(cfg.registry, entry)
        state.record(r, "register", {"id": model_id, "registry": str(cfg.registry)})
        state.set_best(state.done(r, "rl")["model"])
        say(f"round {r}: registered {model_id}; the app serves it from its next pair")
    if cfg.panel_votes and not state.done(r, "panel"):
        say(f"round {r}: the panel casts {cfg.panel_votes} vote(s) in {cfg.app}")
        state.record(r, "panel", _jsonable(panel(cfg.app, cfg.panel_votes, cfg.seed * 1000 + r)))


def run_recipe(cfg: LoopConfig, name: str, recipe_cfg, config_file: Path) -> dict:
    """Run a recipe to its end and return its ``metrics.json``: in this process, or, with a launcher
    (``torchrun --nproc-per-node 8``), as ``LAUNCHER -m musicrl.cli train NAME --config FILE`` — every
    process of the launcher runs the recipe; this one waits for them. Its config is kept beside it."""
    config_file.parent.mkdir(parents=True, exist_ok=True)
    dump_config(recipe_cfg, config_file)
    if not cfg.launcher:
        RECIPES[name].main(recipe_cfg)
    else:
        command = [*shlex.split(cfg.launcher), "-m", "musicrl.cli", "train", name, "--config", str(config_file)]
        if subprocess.run(command, check=False).returncode != 0:
            raise InputError(f"{' '.join(command)} failed; rerun the loop to resume it")
    return json.loads((recipe_cfg.out / "metrics.json").read_text(encoding="utf-8"))


def run_loop(cfg: LoopConfig, panel: PanelVote | None = None, say: Callable[[str], None] = print) -> dict:
    """Rounds 1..cfg.rounds (those already finished are skipped). Returns the loop's record."""
    check(cfg, panel)
    state = LoopState(cfg.out, cfg.base)
    for r in range(1, cfg.rounds + 1):
        run_round(cfg, state, r, panel, say)
    return state.data


def _jsonable(value):
    return json.loads(json.dumps(value, default=str))


# ----------------------------------------------------------------------------- the command


DEFAULT_RM = {"num_models": 2}
DEFAULT_RL = {"steps": 40, "eval_every": 10, "save_every": 10}


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("loop", help="retrain from the app's votes and serve the result (RLHF rounds)",
                       description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--registry", type=Path, required=True,
                   help="the registry file the running app was started with (new models are appended to it)")
    p.add_argument("--data-dir", type=Path, default=Path("data/app"),
                   help="the app's data directory (default: %(default)s)")
    p.add_argument("--db", default=None, help="the app's store URL (default: the SQLite file in --data-dir)")
    p.add_argument("--app", default="", help="the running app's URL, e.g. http://127.0.0.1:7860 (for --panel)")
    p.add_argument("--out", type=Path, default=Path("runs/loop"),
                   help="where the rounds are kept (default: %(default)s)")
    p.add_argument("--rounds", type=int, default=1, help="rounds to have finished (default: %(default)s)")
    p.add_argument("--base", default="default", help="the model round 1 starts from (default: %(default)s)")
    p.add_argument("--votes", choices=("simulated", "people"), default=None,
                   help="which votes train the reward model (default: simulated with --panel, else people)")
    p.add_argument("--min-votes", type=int, default=20,
                   help="the fewest decisive votes a reward model is trained on (default: %(default)s)")
    p.add_argument("--panel", action="store_true", help="after each round, the simulated panel votes in the app")
    p.add_argument("--panel-votes", type=int, default=100, help="votes per round with --panel (default: %(default)s)")
    p.add_argument("--listeners", type=int, default=8, help="panel listeners (default: %(default)s)")
    p.add_argument("--workers", type=int, default=2, help="listeners voting at once (default: %(default)s)")
    p.add_argument("--calibration", type=Path, default=None, help="a panel config from 'musicrl panel calibrate'")
    p.add_argument("--judges", default=None,
                   help="what the panel hears with: a judges directory, or 'none' for signal features only "
                        "(default: the shipped judges)")
    p.add_argument("--rm", action="append", default=[], metavar="KEY=VALUE",
                   help=f"reward-model recipe override (repeatable; loop defaults: {DEFAULT_RM})")
    p.add_argument("--rl", action="append", default=[], metavar="KEY=VALUE",
                   help=f"rl recipe override (repeatable; loop defaults: {DEFAULT_RL})")
    p.add_argument("--seed", type=int, default=0, help="seed of the recipes and the panel (default: %(default)s)")
    p.add_argument("--launcher", default="",
                   help="run the recipes as 'LAUNCHER -m musicrl.cli train ...', e.g. 'torchrun --nproc-per-node 8' "
                        "(default: in this process)")
    p.set_defaults(func=run)


def parse_overrides(items: list[str], flag: str) -> dict:
    import yaml

    out = {}
    for item in items:
        key, sep, raw = item.partition("=")
        if not sep or not key.strip():
            raise InputError(f"{flag} {item!r} is not KEY=VALUE")
        try:
            out[key.strip()] = yaml.safe_load(raw) if raw else ""
        except yaml.YAMLError:
            out[key.strip()] = raw
    return out


def panel_voter(args: argparse.Namespace):
    """(url, votes, seed) -> summary: the simulated listeners voting through the app's public API."""
    from musicrl.commands.panel import load_config, load_hearing
    from musicrl.panel.arena_client import vote_live
    from musicrl.panel.listeners import make_listeners

    config = load_config(args.calibration)
    hearing = load_hearing(args.judges)

    def vote(url: str, votes: int, seed: int) -> dict:
        listeners = make_listeners(args.listeners, seed, config)
        tally = vote_live(url, listeners, votes, hearing, workers=args.workers)
        if tally.errors:
            raise InputError(f"the panel stopped: {tally.errors[0]}")
        return {"votes": tally.votes, "cast": dict(tally.cast), "refused": dict(tally.refused),
                "rate_limit_retries": tally.rate_limit_retries, "repeats": tally.repeats,
                "repeats_same": tally.repeats_same}

    return vote


def run(args: argparse.Namespace) -> int:
    if args.panel and args.panel_votes < 1:
        raise InputError("--panel-votes must be >= 1")
    cfg = LoopConfig(registry=args.registry, data_dir=args.data_dir, out=args.out, db=args.db, app=args.app,
                     rounds=args.rounds, base=args.base, votes=args.votes or ("simulated" if args.panel else "people"),
                     min_votes=args.min_votes, panel_votes=args.panel_votes if args.panel else 0, seed=args.seed,
                     reward_model={**DEFAULT_RM, **parse_overrides(args.rm, "--rm")},
                     rl={**DEFAULT_RL, **parse_overrides(args.rl, "--rl")}, threads=args.threads,
                     launcher=args.launcher)
    record = run_loop(cfg, panel_voter(args) if args.panel else None)
    print(json.dumps({"best": record["best"], "rounds": sorted(record["rounds"], key=int)}, indent=2))
    return 0
