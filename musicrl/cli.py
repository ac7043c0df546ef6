"""The ``musicrl`` command line: one subcommand module each, errors as one line and exit code 2."""

from __future__ import annotations

import argparse
import importlib
import sys

from models.errors import InputError

# Subcommand modules under musicrl.commands; each has register(subparsers) and sets `func`.
COMMANDS = ("generate", "data", "train", "eval", "merge", "soup", "plot", "bench", "app", "prefs", "panel", "loop")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="musicrl", description="Text-to-music: generate, rate, retrain.")
    sub = parser.add_subparsers(dest="command", required=True)
    for name in COMMANDS:
        try:
            module = importlib.import_module(f"musicrl.commands.{name}")
        except ModuleNotFoundError as err:
            if err.name != f"musicrl.commands.{name}":
                raise
            continue
        module.register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    # key=value overrides may follow options (`train lm --config f.yaml steps=10`), which argparse
    # cannot match to a positional list once an option came between them
    if extra:
        if hasattr(args, "overrides") and all("=" in e and not e.startswith("-") for e in extra):
            args.overrides = [*args.overrides, *extra]
        else:
            parser.error(f"unrecognized arguments: {' '.join(extra)}")
    try:
        return int(args.func(args) or 0)
    except InputError as err:
        print(f"musicrl {args.command}: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
