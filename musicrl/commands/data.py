"""``musicrl data build``: render the procedural, captioned corpus (see musicrl/corpus);
``musicrl data import``: tokenise your own captioned audio for finetuning (see musicrl/audio_import.py)."""

from __future__ import annotations

import argparse
from pathlib import Path


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
    build.add_argument(
        "--captions",
        default="mix",
        metavar="STYLE",
        help="templates (the six template phrasings of earlier corpora), free (free phrasing: synonyms, tempos "
        "in digits and words, scenes, typos) or mix (default: 70%% free, 30%% templates); recorded in corpus.json",
    )
    build.add_argument("--no-progress", action="store_true", help="no progress bar")
    build.set_defaults(func=run_build)
    register_import(data_sub)


def register_import(data_sub: argparse._SubParsersAction) -> None:
    imp = data_sub.add_parser(
        "import",
        help="tokenise a folder of your own captioned audio for finetuning (musicrl train lm init=...)",
        description="Read every WAV/FLAC/MP3/OGG file under DIR, mix it down to mono, resample it to the model's "
        "codec rate, cut it into segments (a tail shorter than a segment is dropped; silent segments are skipped) "
        "and tokenise the segments and their file's caption with the model's codec and text encoder. Bad files "
        "are listed with their reason in OUT/skipped.jsonl. Resumable: rerun the same command to continue.",
    )
    imp.add_argument("source", metavar="DIR", type=Path, help="folder of audio files (searched recursively)")
    imp.add_argument("--captions", required=True, type=Path, metavar="FILE",
                     help="CSV with a header row file,caption or JSONL {\"file\": ..., \"caption\": ...}; "
                     "file is the path relative to DIR or the bare file name")
    imp.add_argument("--model", default="default",
                     help="the model whose codec and text encoder tokenise: default, debug, an HF "
                     "MusicGen directory or a musicrl checkpoint; finetune that model on the result")
    imp.add_argument("--out", required=True, type=Path, metavar="DIR", help="output token directory")
    imp.add_argument("--segment", type=float, default=0.0, metavar="S",
                     help="seconds per segment, in (0, the model's maximum duration]; default 0 = the maximum")
    imp.add_argument("--valid-share", type=float, default=0.1, metavar="F",
                     help="share of the files held out for validation, in [0, 1) (default 0.1; whole files)")
    imp.add_argument("--seed", type=int, default=0, help="seed of the held-out file draw (default 0)")
    imp.add_argument("--silence-db", type=float, default=-60.0, metavar="DB",
                     help="skip segments whose RMS is under this level in dBFS, in [-120, 0] (default -60)")
    imp.add_argument("--batch-size", type=int, default=16, metavar="N",
                     help="segments per codec call, >= 1 (default 16; memory and speed)")
    imp.add_argument("--no-progress", action="store_true", help="no progress bar")
    imp.set_defaults(func=run_import)


def run_import(args: argparse.Namespace) -> int:
    """Import (bad arguments raise InputError: one line, exit code 2); bad files are skipped, not fatal."""
    import json

    from musicrl.audio_import import ImportConfig, import_audio

    cfg = ImportConfig(args.source, args.captions, args.out, args.model, args.segment, args.valid_share, args.seed,
                       args.silence_db, args.batch_size)
    info = import_audio(cfg, progress=not args.no_progress)
    keys = ("files", "imported", "skipped", "segments", "train_segments", "valid_segments", "segment_s")
    print(json.dumps({k: info[k] for k in keys if k in info}))
    if info.get("skipped"):
        print(f"{info['skipped']} file(s) skipped: see {args.out}/skipped.jsonl")
    print(args.out)


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
        captions=args.captions,
    )
    return 0
