"""The ``musicrl`` command line: one subcommand module each, errors as one line and exit code 2."""

from __future__ import annotations

import argparse
import importlib
import re
import sys

from models.errors import InputError

# Subcommand modules under musicrl.commands; each has register(subparsers) and sets `func`.
COMMANDS = (
    "generate", "data", "train", "eval", "merge", "soup", "export", "plot", "bench", "app", "prefs", "panel", "loop"
)
# Commands that run models: each of their (sub)commands takes --threads (models.runtime.default_threads).
LIGHT = ("plot", "prefs")


def states_default(text: str) -> bool:
    """Whether a help text already says its default ("(default 16)", "default: the shipped one", "(default)"
    after a choice), as opposed to naming the model called 'default'."""
    return bool(re.search(r"\(default\b|\bdefault[:\s]+[^\s(),;']|\bdefaults:", text, re.IGNORECASE))


class HelpFormatter(argparse.HelpFormatter):
    """Every option's help ends with its default, unless the text already names it (or there is none to show:
    a flag, a required option, no default)."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        default = action.default
        if (not action.option_strings or action.required or any(default is v for v in (None, False, argparse.SUPPRESS))
                or isinstance(action, argparse._StoreConstAction) or states_default(text)):
            return text
        shown = ",".join(map(str, default)) if isinstance(default, (list, tuple)) else default
        if shown == "":
            return text
        return f"{text} (default: {str(shown).replace('%', '%%')})"


def _parsers(parser: argparse.ArgumentParser):
    """``parser`` and every parser under its subcommands."""
    yield parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for child in dict.fromkeys(action.choices.values()):  # aliases map to the same parser
                yield from _parsers(child)


def _leaves(parser: argparse.ArgumentParser):
    """The parsers that run something: those of :func:`_parsers` without subcommands of their own."""
    for each in _parsers(parser):
        if not any(isinstance(a, argparse._SubParsersAction) for a in each._actions):
            yield each


def add_threads(parser: argparse.ArgumentParser) -> None:
    from models.runtime import cpu_count, default_threads

    parser.add_argument(
        "--threads",
        type=int,
        default=None,
        metavar="N",
        help=f"torch CPU threads, >= 1 (default: {default_threads()} on this machine's {cpu_count()} core(s); "
        "see docs/BENCHMARKS.md, Threads)",
    )


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
        if name not in LIGHT:
            for leaf in _leaves(sub.choices[name]):
                add_threads(leaf)
    for each in _parsers(parser):
        each.formatter_class = HelpFormatter
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
        if hasattr(args, "threads"):
            from models.runtime import set_threads

            if args.threads is not None and args.threads < 1:
                raise InputError(f"--threads must be >= 1, got {args.threads}")
            args.threads = set_threads(args.threads)
        return int(args.func(args) or 0)
    except InputError as err:
        print(f"musicrl {args.command}: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
