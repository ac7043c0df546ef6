"""``musicrl prefs export|import|consistency``: the arena's votes as JSONL in TRL's preference layout,
and back; the raters' self-agreement on consistency repeats.

    musicrl prefs export --db URL --format trl --out FILE [--exclude-ties] [--votes people|simulated|all]
    musicrl prefs import --db URL --in FILE [--audio-from DIR]
    musicrl prefs consistency --db URL [--out FILE]

One JSON object per line (``app.transfer``): prompt, chosen, rejected (clip ids), label, outcome,
per side the audio path (relative to the app's data directory), sha256, model id, checkpoint hash,
seed and parameters, plus rater, listening seconds, feedback and times. Ties and "both bad" votes
keep their ``outcome`` (label 0.5) unless ``--exclude-ties`` leaves them out. ``--votes`` picks the
kind: people's (the default), simulated listeners' or all (each row has ``simulated``); the votes of
the other kind that were left out are counted on standard error, so real and simulated votes are
never mixed, or dropped, silently. Import is idempotent
(pairs already present are skipped); ``--audio-from`` names the exporting app's data directory, whose
WAVs are copied in. ``--db`` defaults to the SQLite store in ``--data-dir``; a plain file path is
taken as a SQLite file. ``consistency`` writes the JSON summary of ``app.repeats.consistency_summary``
(per rater and pooled, people and simulated apart) to standard output or ``--out``. All are safe
beside a running app (``app.store``: export opens
the store read-only; import never closes the store's last connection).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from models.errors import InputError

DEFAULT_DATA_DIR = Path("data/app")
FORMATS = ("trl",)


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("prefs", help="export or import the arena's pairwise preferences")
    which = p.add_subparsers(dest="prefs", required=True)
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--db", default=None,
                        help="sqlite:///FILE, postgresql+psycopg://USER:PASS@HOST:PORT/DB or a SQLite file "
                             "(default: the SQLite store in --data-dir)")
    common.add_argument("--data-dir", type=Path, default=DEFAULT_DATA_DIR,
                        help="the app's data directory (content-addressed audio; default: data/app)")
    e = which.add_parser("export", parents=[common], help="write the votes as JSONL")
    e.add_argument("--format", choices=FORMATS, default="trl", help="row layout (TRL's preference layout)")
    e.add_argument("--out", type=Path, required=True, help="output JSONL file ('-' for standard output)")
    e.add_argument("--exclude-ties", action="store_true", help="leave out 'tie' and 'both bad' votes")
    e.add_argument("--votes", choices=("people", "simulated", "all"), default="people",
                   help="which votes: people's (default), the simulated listener panel's, or all (rows marked)")
    e.set_defaults(func=run_export)
    i = which.add_parser("import", parents=[common], help="read votes from a JSONL export")
    i.add_argument("--in", dest="infile", type=Path, required=True, help="a JSONL file written by export")
    i.add_argument("--audio-from", type=Path, default=None,
                   help="the exporting app's data directory: copy the clips' WAVs from there (paths in the "
                        "export are relative to it); without it only the rows are imported")
    i.set_defaults(func=run_import)
    c = which.add_parser("consistency", parents=[common],
                         help="the raters' self-agreement on repeated pairs (sides swapped), as JSON")
    c.add_argument("--out", type=Path, default=Path("-"), help="output JSON file (default '-': standard output)")
    c.set_defaults(func=run_consistency)


def run_export(args: argparse.Namespace) -> int:
    if args.format not in FORMATS:
        raise InputError(f"unknown format {args.format!r}; choose from {', '.join(FORMATS)}")
    if str(args.out) != "-" and args.out.is_dir():
        raise InputError(f"--out {args.out} is a directory; give a file name")
    from app.transfer import export_preferences, open_prefs_store, write_preferences_jsonl

    ties = not args.exclude_ties
    store = open_prefs_store(args.db, args.data_dir, access="read")
    try:
        if str(args.out) == "-":
            count = 0
            for row in export_preferences(store, include_ties=ties, votes=args.votes):
                sys.stdout.write(json.dumps(row, ensure_ascii=False) + "\n")
                count += 1
        else:
            count = write_preferences_jsonl(store, args.out, include_ties=ties, votes=args.votes)
        other = {"people": "simulated", "simulated": "people"}.get(args.votes)
        left_out = store.count_votes(other, include_ties=ties) if other else 0
    finally:
        store.close()
    where = "standard output" if str(args.out) == "-" else str(args.out)
    kind = {"people": "people's votes", "simulated": "simulated votes", "all": "all votes, each row marked"}
    print(f"exported {count} preference(s) to {where} ({kind[args.votes]})", file=sys.stderr)
    if left_out:
        what = "simulated" if other == "simulated" else "people's"
        print(f"left out {left_out} {what} vote(s) (--votes {other} or --votes all exports them)", file=sys.stderr)
    return 0


def run_consistency(args: argparse.Namespace) -> int:
    if str(args.out) != "-" and args.out.is_dir():
        raise InputError(f"--out {args.out} is a directory; give a file name")
    from app.repeats import consistency_summary, repeat_votes, self_agreement
    from app.transfer import open_prefs_store, write_private_json

    store = open_prefs_store(args.db, args.data_dir, access="read")
    try:
        summary = consistency_summary(self_agreement(repeat_votes(store)))
    finally:
        store.close()
    if str(args.out) == "-":
        sys.stdout.write(json.dumps(summary, indent=2) + "\n")
    else:
        write_private_json(args.out, summary)
    pooled = {kind: summary[kind]["pooled"] for kind in ("people", "simulated")}
    print("; ".join(f"{kind}: {p['agreements']}/{p['repeats']} repeat(s) agreed over {len(summary[kind]['raters'])} "
                    f"rater(s)" for kind, p in pooled.items()), file=sys.stderr)
    return 0


def run_import(args: argparse.Namespace) -> int:
    from app.transfer import import_preferences, open_prefs_store, read_preferences_jsonl

    if not args.infile.is_file():
        raise InputError(f"--in {args.infile} is not a file")
    if args.audio_from is not None and not args.audio_from.is_dir():
        raise InputError(f"--audio-from {args.audio_from} is not a directory")
    rows = list(read_preferences_jsonl(args.infile))
    store = open_prefs_store(args.db, args.data_dir, access="write")
    try:
        summary = import_preferences(store, rows, audio_root=args.audio_from)
    except ValueError as err:
        raise InputError(f"{args.infile}: {err}") from None
    finally:
        store.close()
    print(f"imported {summary.imported} preference(s); skipped {summary.skipped} already present; "
          f"{summary.missing_audio} clip(s) without their audio file"
          + ("" if args.audio_from or not summary.missing_audio else " (give --audio-from DATA_DIR to copy them)"),
          file=sys.stderr)
    return 0
