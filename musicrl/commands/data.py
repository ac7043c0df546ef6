"""``musicrl data build``: render the procedural, captioned corpus (see musicrl/corpus)."""

from __future__ import annotations

import argparse


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add ``data`` and its ``build`` subcommand to the top-level parser."""
    data = subparsers.add_parser("data", help="build training data")
    data_sub = data.add_subparsers(dest="data_command", required=True)
    build = data_sub.add_parser(
        "build",
        help="compose and render a captioned music corpus",
        description="Compose music procedurally (14 styles), render it from MIDI with a SoundFont synthesiser and a "
        "General MIDI soundfont, and write DIR/audio/*.wav, DIR/manifest.jsonl and "
        "DIR/corpus.json. Deterministic by seed; an interrupted build resumes when rerun "
        "with the same parameters.",
    )
    build.add_argument("--out", required=True, metavar="DIR", help="output directory")
    build.add_argument("--num-clips", type=int, required=True, metavar="N", help="number of clips")
    build.add_argument("--seed", type=int, default=0, help="corpus seed (default 0)")
    build.add_argument(
        "--duration", type=float, default=8.0, metavar="S", help="seconds per clip, at most 60 (default 8)"
    )
    build.add_argument(
        "--sample-rate",
        type=int,
        default=16000,
        metavar="HZ",
        help="16000 (default), 22050, 24000, 32000, 44100 or 48000",
    )
    build.add_argument("--workers", type=int, default=1, help="parallel rendering processes (default 1)")
    build.add_argument("--no-progress", action="store_true", help="no progress bar")
    build.set_defaults(func=run_build)


def run_build(args: argparse.Namespace) -> int:
    """Build the corpus (bad parameters raise InputError: one line, exit code 2)."""
    from musicrl.corpus.build import build_corpus

    build_corpus(
        args.out,
        num_clips=args.num_clips,
        seed=args.seed,
        duration=args.duration,
        sample_rate=args.sample_rate,
        workers=args.workers,
        progress=not args.no_progress,
    )
    return 0
