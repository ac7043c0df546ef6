"""``musicrl train RECIPE [--config FILE.yaml] [key=value ...]``: one recipe module per method.

The reward-model recipe also takes its data as options (they refuse any other recipe):

    musicrl train reward-model --prefs FILE [--audio-root DIR] [--num-models M]
    musicrl train reward-model --db URL [--data-dir DIR] [--num-models M]

``--db`` (a URL or a SQLite file; the store of ``--data-dir`` by default) reads the votes straight
from the app's store: they are checked first, then exported (people's and simulated votes, each row
marked; the recipe's ``votes`` picks) to OUT/prefs.jsonl (the file the run's lineage names) and the
recipe runs on that file. Rerunning the command resumes on the votes the run
started with (OUT/prefs.jsonl is kept once the run has a train state).
"""

from __future__ import annotations

import argparse
import faulthandler
import importlib
import io
import os
import pkgutil
import signal
import sys
from pathlib import Path
from typing import NoReturn

from models.errors import InputError
from musicrl.distributed import launched_world

REWARD_MODEL_OPTIONS = ("prefs", "audio_root", "num_models", "db", "data_dir")


def recipe_names() -> list[str]:
    import musicrl.recipes

    return sorted(
        m.name.replace("_", "-") for m in pkgutil.iter_modules(musicrl.recipes.__path__) if not m.name.startswith("_")
    )


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("train", help="run a training recipe", description=f"Recipes: {', '.join(recipe_names())}.")
    p.add_argument("recipe", help="the recipe to run (listed above)")
    p.add_argument("--config", type=Path, default=None, help="YAML file overriding the recipe's defaults")
    p.add_argument("overrides", nargs="*", help="key=value overrides, e.g. optim.lr=3e-4")
    rm = p.add_argument_group("reward-model recipe")
    rm.add_argument("--prefs", type=Path, default=None, help="the app's preference export (JSONL, TRL layout)")
    rm.add_argument("--audio-root", type=Path, default=None,
                    help="the app's data directory the export's audio paths are relative to")
    rm.add_argument("--num-models", type=int, default=None, help="WARM members (their weight average is the model)")
    rm.add_argument("--db", default=None, help="read the votes from the app's store (URL or SQLite file)")
    rm.add_argument("--data-dir", type=Path, default=None, help="the app's data directory (default: data/app)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from musicrl.config import load_config

    names = recipe_names()
    if args.recipe not in names:
        raise InputError(f"unknown recipe {args.recipe!r}; choose from {', '.join(names)}")
    given = [o for o in REWARD_MODEL_OPTIONS if getattr(args, o, None) is not None]
    if given and args.recipe != "reward-model":
        flags = ", ".join("--" + o.replace("_", "-") for o in given)
        raise InputError(f"{flags} only apply to the reward-model recipe")
    dump_stacks_on_sigusr1()
    module = importlib.import_module(f"musicrl.recipes.{args.recipe.replace('-', '_')}")
    cfg = load_config(module.Config, args.config, args.overrides)
    if args.recipe == "reward-model":
        apply_reward_model_options(cfg, args)
    module.main(cfg)
    if launched_world() > 1:
        leave_without_teardown()
    return 0


def dump_stacks_on_sigusr1() -> None:
    """On POSIX, ``kill -USR1 PID`` makes this process print every thread's stack to stderr and go on: where a
    run that seems stuck waits (under torchrun, send it to each rank's process)."""
    if not hasattr(signal, "SIGUSR1"):
        return
    try:
        sys.stderr.fileno()
    except (AttributeError, ValueError, io.UnsupportedOperation):
        return  # stderr is not a file (captured inside another program): nowhere to write
    faulthandler.register(signal.SIGUSR1, file=sys.stderr, all_threads=True)


def leave_without_teardown() -> NoReturn:
    """End a torchrun worker whose run is over (it left the process group; every file it wrote is closed)
    without the interpreter's teardown. That teardown collects DDP and the gloo process group it holds while
    Python refuses the GIL to other threads, so it can wait forever on a thread of the group (a two-process
    CI run hung for good after its last save, most likely there), and it costs seconds when it does not."""
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)


def apply_reward_model_options(cfg, args: argparse.Namespace) -> None:
    """--prefs/--audio-root/--num-models into the config; --db: check the votes, then export them to
    OUT/prefs.jsonl (nothing is written when they are refused)."""
    if args.num_models is not None:
        if args.num_models < 1:
            raise InputError(f"--num-models must be >= 1, got {args.num_models}")
        cfg.num_models = args.num_models
    if args.db is None and args.data_dir is None:
        if args.prefs is not None:
            cfg.prefs = args.prefs
        if args.audio_root is not None:
            cfg.audio_root = args.audio_root
        return
    if args.prefs is not None:
        raise InputError("give the votes as --prefs FILE or --db URL, not both")
    if launched_world() > 1:
        raise InputError("--db reads the store in one process; under torchrun export first "
                         "(musicrl prefs export) and pass --prefs")
    data_dir = args.data_dir or Path("data/app")
    cfg.audio_root = args.audio_root or data_dir
    cfg.prefs = cfg.out / "prefs.jsonl"
    if (cfg.out / "state").exists() and cfg.prefs.is_file():
        print(f"resuming on the votes the run started with ({cfg.prefs})", file=sys.stderr)
        return
    from app.transfer import export_preferences, open_prefs_store, write_preferences_jsonl
    from musicrl.recipes.reward_model import check_votes

    store = open_prefs_store(args.db, data_dir, access="read")
    try:  # every kind is exported, so that the run's counts say how many of the other kind it left out
        check_votes(cfg, list(export_preferences(store, votes="all")))
        count = write_preferences_jsonl(store, cfg.prefs, votes="all")
    finally:
        store.close()
    print(f"exported {count} vote(s) from the store to {cfg.prefs}", file=sys.stderr)
