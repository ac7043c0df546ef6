"""``musicrl plot RUN [RUN ...] --keys distill diversity --out curves.png``: training curves from JSONL logs.

``--x val_kl --keys val_reward`` on runs' validation.jsonl draws reward against KL (each run's points in step
order), the reward/KL trade-off plot.

A RUN is a run directory (its log.jsonl is read) or a .jsonl file, optionally LABEL=PATH. Every
recipe writes one JSON object per logged step with a "step" field.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from models.errors import InputError
from musicrl.train_state import read_jsonl


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("plot", help="plot training curves of one or more runs' JSONL logs")
    p.add_argument("runs", nargs="+", help="run directories or .jsonl files, optionally LABEL=PATH")
    p.add_argument("--keys", nargs="+", required=True, help="logged fields to plot, one panel each")
    p.add_argument("--smooth", type=int, default=1, help="moving-mean window in logged points (1 = raw)")
    p.add_argument(
        "--x",
        default="step",
        help="the logged field on the x-axis (default: step); e.g. --x val_kl --keys val_reward on validation.jsonl "
        "files plots reward against KL",
    )
    p.add_argument("--out", type=Path, required=True, help="the PNG to write")
    p.set_defaults(func=run)


def read_log(spec: str) -> tuple[str, list[dict]]:
    # LABEL=PATH; the label may itself hold "=" ("β=0=runs/x"), so split at the last one
    label, sep, path = ("", "", spec) if Path(spec).exists() else spec.rpartition("=")
    path = Path(path if sep else spec)
    log = path / "log.jsonl" if path.is_dir() else path
    if not log.is_file():
        raise InputError(f"{log} does not exist (give a run directory or its log.jsonl)")
    records = read_jsonl(log)
    return (label if sep else path.name if path.is_dir() else path.stem), records


def run(args: argparse.Namespace) -> int:
    from evaluation.plots import plot_training_logs

    if args.smooth < 1:
        raise InputError("--smooth must be >= 1")
    if args.out.suffix.lower() != ".png":
        raise InputError(f"--out {args.out} must be a .png file")
    runs = dict(read_log(spec) for spec in args.runs)
    for key in [*args.keys, args.x]:
        if not any(key in r for records in runs.values() for r in records):
            raise InputError(f"no run logged {key!r}")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    tmp = args.out.with_name(args.out.name + ".tmp.png")
    plot_training_logs(runs, args.keys, tmp, args.smooth, args.x)
    tmp.replace(args.out)
    print(args.out)
    return 0
