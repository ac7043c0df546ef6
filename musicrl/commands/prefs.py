"""``musicrl prefs export|import``: the arena's votes as JSONL in TRL's preference layout, and back.

    musicrl prefs export --db URL --format trl --out FILE [--exclude-ties]
    musicrl prefs import --db URL --in FILE

One JSON object per line (``app.store.Store.export_preferences``): prompt, chosen, rejected (clip
ids), label, outcome, per side the audio path, sha256, model id, checkpoint hash, seed and
parameters, plus rater, listening seconds, feedback and times. Ties and "both bad" votes keep
their ``outcome`` (label 0.5) unless ``--exclude-ties`` leaves them out. Import is idempotent
(pairs already present are skipped). ``--db`` defaults to the SQLite store in ``--data-dir``; a
plain file path is taken as a SQLite file.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

from models.errors import InputError

if TYPE_CHECKING:
    from app.store import Store

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
    e.set_defaults(func=run_export)
    i = which.add_parser("import", parents=[common], help="read votes from a JSONL export")
    i.add_argument("--in", dest="infile", type=Path, required=True, help="a JSONL file written by export")
    i.set_defaults(func=run_import)


def database_url(db: str | None) -> str | None:
    """``None`` stays None (the default SQLite file); a URL stays; a file path becomes sqlite:///PATH."""
    if db is None or "://" in db:
        return db
    return f"sqlite:///{Path(db).expanduser().resolve()}"


def open_prefs_store(db: str | None, data_dir: Path) -> Store:
    """The preference store, with every way of failing turned into one InputError line."""
    from sqlalchemy.exc import SQLAlchemyError

    from app.store import open_store

    try:
        return open_store(database_url(db), data_dir)
    except ValueError as err:
        raise InputError(str(err)) from None
    except (SQLAlchemyError, OSError) as err:
        first = str(getattr(err, "orig", None) or err).strip().splitlines()[0]
        raise InputError(f"cannot open the database: {first}") from None


def write_preferences_jsonl(store: Store, path: Path, include_ties: bool = True) -> int:
    """Write every vote as one JSON line to ``path`` atomically (temp file, fsync, rename). Returns the count."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    count = 0
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            for row in store.export_preferences(include_ties=include_ties):
                handle.write(json.dumps(row, ensure_ascii=False) + "\n")
                count += 1
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return count


def run_export(args: argparse.Namespace) -> int:
    if args.format not in FORMATS:
        raise InputError(f"unknown format {args.format!r}; choose from {', '.join(FORMATS)}")
    if str(args.out) != "-" and args.out.is_dir():
        raise InputError(f"--out {args.out} is a directory; give a file name")
    store = open_prefs_store(args.db, args.data_dir)
    try:
        if str(args.out) == "-":
            count = 0
            for row in store.export_preferences(include_ties=not args.exclude_ties):
                sys.stdout.write(json.dumps(row, ensure_ascii=False) + "\n")
                count += 1
        else:
            count = write_preferences_jsonl(store, args.out, include_ties=not args.exclude_ties)
    finally:
        store.close()
    where = "standard output" if str(args.out) == "-" else str(args.out)
    print(f"exported {count} preference(s) to {where}", file=sys.stderr)
    return 0


def _read_rows(path: Path) -> Iterator[dict]:
    try:
        handle = open(path, encoding="utf-8")  # noqa: SIM115 - closed by the with below
    except OSError as err:
        raise InputError(f"cannot read {path}: {err.strerror or err}") from None
    with handle:
        try:
            for number, line in enumerate(handle, start=1):
                if not line.strip():
                    continue
                try:
                    row = json.loads(line)
                except json.JSONDecodeError as err:
                    raise InputError(f"{path}:{number} is not JSON: {err.msg}") from None
                if not isinstance(row, dict):
                    raise InputError(f"{path}:{number} is not a JSON object")
                yield row
        except UnicodeDecodeError:
            raise InputError(f"{path} is not UTF-8 text") from None


def run_import(args: argparse.Namespace) -> int:
    if not args.infile.is_file():
        raise InputError(f"--in {args.infile} is not a file")
    rows = list(_read_rows(args.infile))
    store = open_prefs_store(args.db, args.data_dir)
    try:
        summary = store.import_preferences(rows)
    except ValueError as err:
        raise InputError(f"{args.infile}: {err}") from None
    finally:
        store.close()
    print(f"imported {summary.imported} preference(s); skipped {summary.skipped} already present; "
          f"{summary.missing_audio} clip(s) without their audio file", file=sys.stderr)
    return 0
