"""``musicrl loop``: the app's votes → a WARM reward model → RLHF → the new model served in the arena.

    musicrl app --registry runs/loop/registry.yaml --data-dir data/app --admin-token T &
    musicrl loop --app http://127.0.0.1:7860 --registry runs/loop/registry.yaml --data-dir data/app \\
        --rounds 2 --panel --panel-votes 120

Round by round (``app.loop``): export the votes → ``train reward-model`` (WARM) → ``train rl`` from the
current best → append the model to the registry file (the running app serves it without a restart) →
with ``--panel`` the simulated listeners vote in the app. Re-running the same command continues where
it stopped; nothing is retrained twice. ``--rm KEY=VALUE`` / ``--rl KEY=VALUE`` override the two
recipes' configs (e.g. ``--rm num_models=4 --rl steps=60``).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from models.errors import InputError

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
    p.add_argument("--threads", type=int, default=0, help="torch CPU threads (0 = torch's default)")
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
    from app.loop import LoopConfig, run_loop

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
