"""Votes in and out of the store: TRL's preference layout as JSONL, and opening a store from the CLI.

One JSON object per vote (:func:`export_preferences`): ``prompt``, ``chosen``, ``rejected`` (clip
ids), ``label`` (1.0 = chosen preferred, 0.5 = tie or both bad) and ``outcome`` (the raw choice);
per side (``chosen_*``, ``rejected_*``): ``audio`` — the WAV's path RELATIVE to the app's data
directory (``audio/ab/abcd….wav``: an export never carries the server's absolute paths) —,
audio_sha256, model_id, checkpoint_hash, seed, params, sample_rate, duration, created_at; and
pair_id (the public half of the vote token, never its secret), session_id, issued_at, rater_id,
listened_a_s, listened_b_s, feedback, created_at; ``simulated`` (true for a simulated listener's
vote), ``repeat_of`` (a rater consistency repeat: the original pair's id, else null) and ``swapped``
(a repeat's sides are the original's swapped). For ties and both-bad the chosen side is clip A by
convention.

Which votes (``votes``): "people" (the default: real votes only), "simulated" or "all" (each row
marked) — so the two kinds are never mixed without asking. The rater consistency summary that goes
with an export is a separate JSON file (``app.repeats.consistency_summary``), not a row of it.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from datetime import datetime
from functools import partial
from pathlib import Path
from typing import Any

from sqlalchemy import select
from sqlalchemy.engine import URL
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session, aliased

from app.schema import ClipRow, PairRow, VoteRow
from app.store import CHOICES, Access, Store, VoteKind, check_id, now_utc, open_store, utc, vote_kind_filter
from models.audio_io import atomic_write
from models.errors import InputError

__all__ = ["ImportSummary", "database_url", "export_preferences", "import_preferences", "open_prefs_store",
           "read_preferences_jsonl", "write_preferences_jsonl", "write_private_json"]


@dataclass(frozen=True)
class ImportSummary:
    imported: int  # new votes written
    skipped: int  # pair id already present (import is idempotent)
    missing_audio: int  # clips created whose WAV was not found under the audio directory


# ----------------------------------------------------------------------------- opening


def database_url(db: str | None) -> str | URL | None:
    """``None`` stays None (the default SQLite file); a URL stays; a file path becomes a SQLite URL
    (built, not parsed, so that a '?' or '#' in the path stays part of it)."""
    if db is None or "://" in db:
        return db
    return URL.create("sqlite", database=str(Path(db).expanduser().resolve()))


def open_prefs_store(db: str | None, data_dir: Path, access: Access = "read") -> Store:
    """The store opened with ``access`` ("server" for the app, "read"/"write" for other processes; see
    ``app.store``), with every way of failing turned into one InputError line."""
    try:
        return open_store(database_url(db), data_dir, access=access)
    except ValueError as err:
        raise InputError(str(err)) from None
    except (SQLAlchemyError, OSError) as err:
        first = str(getattr(err, "orig", None) or err).strip().splitlines()[0]
        raise InputError(f"cannot open the database: {first}") from None


# ----------------------------------------------------------------------------- export


def export_preferences(store: Store, include_ties: bool = True, page_size: int = 500,
                       votes: VoteKind = "people") -> Iterator[dict[str, Any]]:
    """Votes of one kind ("people", "simulated" or "all") as rows in TRL's preference layout (module
    docstring), in vote order.

    ``include_ties=False`` leaves out ties and both-bad. Reads page by page (keyset on the vote id),
    so no session stays open while the caller consumes rows.
    """
    kind = vote_kind_filter(votes)  # checks ``votes`` now, not at the first row
    clip_a, clip_b = aliased(ClipRow), aliased(ClipRow)
    last_id = 0
    while True:
        query = (
            select(VoteRow, PairRow, clip_a, clip_b)
            .join(PairRow, VoteRow.pair_id == PairRow.id)
            .join(clip_a, PairRow.clip_a == clip_a.id)
            .join(clip_b, PairRow.clip_b == clip_b.id)
            .where(VoteRow.id > last_id, kind)
            .order_by(VoteRow.id)
            .limit(page_size)
        )
        if not include_ties:
            query = query.where(VoteRow.choice.in_(("a", "b")))
        with store.read_session() as session:
            page = [(vote.id, _export_row(vote, *rest)) for vote, *rest in session.execute(query)]
        if not page:
            return
        last_id = page[-1][0]
        yield from (row for _, row in page)


def _export_row(vote: VoteRow, pair: PairRow, clip_a: ClipRow, clip_b: ClipRow) -> dict[str, Any]:
    chosen, rejected = (clip_b, clip_a) if vote.choice == "b" else (clip_a, clip_b)
    row: dict[str, Any] = {"pair_id": pair.id, "prompt": pair.prompt, "chosen": chosen.id, "rejected": rejected.id,
                           "label": 1.0 if vote.choice in ("a", "b") else 0.5, "outcome": vote.choice}
    for side, clip in (("chosen", chosen), ("rejected", rejected)):
        fields = {
            "audio": clip.audio_path, "audio_sha256": clip.audio_sha256, "model_id": clip.model_id,
            "checkpoint_hash": clip.checkpoint_hash, "seed": clip.seed, "params": clip.params,
            "sample_rate": clip.sample_rate, "duration": clip.duration, "created_at": utc(clip.created_at).isoformat(),
        }
        row.update({f"{side}_{key}": value for key, value in fields.items()})
    row.update({"session_id": pair.session_id, "issued_at": utc(pair.issued_at).isoformat(),
                "rater_id": vote.rater_id, "listened_a_s": vote.listened_a_s, "listened_b_s": vote.listened_b_s,
                "feedback": vote.feedback, "created_at": utc(vote.created_at).isoformat(),
                "simulated": bool(vote.simulated), "repeat_of": pair.repeat_of, "swapped": bool(pair.swapped)})
    return row


def write_preferences_jsonl(store: Store, path: Path, include_ties: bool = True, votes: VoteKind = "people") -> int:
    """Write the votes of one kind as JSON lines to ``path`` atomically (temp file, fsync, rename). Returns
    the count."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    count = 0
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            for row in export_preferences(store, include_ties=include_ties, votes=votes):
                handle.write(json.dumps(row, ensure_ascii=False) + "\n")
                count += 1
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp, 0o600)  # votes carry session ids and feedback: the owner's, not the world's
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return count


def write_private_json(path: Path, value: object) -> None:
    """``value`` as indented JSON at ``path``, atomically and readable by the owner only."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(path, (json.dumps(value, indent=2, ensure_ascii=False) + "\n").encode("utf-8"), mode=0o600)


def read_preferences_jsonl(path: Path) -> Iterator[dict]:
    """The rows of an export, checked line by line (InputError naming the line)."""
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


# ----------------------------------------------------------------------------- import


def import_preferences(
    store: Store, rows: Iterable[Mapping[str, Any]], audio_root: Path | None = None
) -> ImportSummary:
    """Write exported rows into ``store`` (idempotent: known pair ids are skipped).

    Clips are matched by id; a new clip's WAV is copied into the store's content-addressed audio from
    ``audio_root / row[side_audio]`` when that file exists (its sha256 must match; the path must stay
    inside ``audio_root``), otherwise the clip row is still written and counted in ``missing_audio``.
    Imported votes were gated when cast, so the listening gate is not applied again, and they carry
    no vote token (nobody can vote on an imported pair). Raises ValueError naming the row for
    malformed input (rows before it stay imported).
    """
    imported = skipped = missing = 0
    for number, raw in enumerate(rows, start=1):
        try:
            pair_id, outcome = str(raw["pair_id"]), str(raw["outcome"])
            if outcome not in CHOICES:
                raise ValueError(f"outcome must be one of {CHOICES}, got {outcome!r}")
            feedback = str(raw.get("feedback") or "")
            simulated, swapped = raw.get("simulated", False), raw.get("swapped", False)
            if not isinstance(simulated, bool) or not isinstance(swapped, bool):
                raise ValueError("simulated and swapped must be true or false")
            repeat_of = raw.get("repeat_of")
            if repeat_of is not None and (not isinstance(repeat_of, str) or not 0 < len(repeat_of) <= 64):
                raise ValueError("repeat_of must be a pair id or null")
            if len(feedback) > store.feedback_max_chars:
                raise ValueError(f"feedback longer than {store.feedback_max_chars} characters")
            with store.read_session() as session:
                if session.get(PairRow, pair_id) is not None:
                    skipped += 1
                    continue
            chosen = _import_clip_row(store, raw, "chosen", audio_root)
            rejected = _import_clip_row(store, raw, "rejected", audio_root)
        except (KeyError, TypeError, ValueError) as exc:
            raise ValueError(f"preference row {number}: {exc}") from None
        clip_a, clip_b = (rejected, chosen) if outcome == "b" else (chosen, rejected)
        pair = PairRow(id=pair_id, clip_a=clip_a.id, clip_b=clip_b.id,
                       session_id=str(raw.get("session_id") or "imported"),
                       issued_at=_parse_time(raw.get("issued_at")), prompt=str(raw["prompt"]), secret_sha256=None,
                       repeat_of=repeat_of, swapped=swapped if repeat_of is not None else None)
        vote = VoteRow(pair_id=pair_id, choice=outcome, rater_id=raw.get("rater_id"),
                       listened_a_s=float(raw.get("listened_a_s") or 0.0),
                       listened_b_s=float(raw.get("listened_b_s") or 0.0),
                       feedback=feedback, created_at=_parse_time(raw.get("created_at")), simulated=simulated)
        new_clips = store.run_write(partial(_write_imported, clips=(clip_a, clip_b), pair=pair, vote=vote))
        if new_clips is None:  # another importer got there first
            skipped += 1
            continue
        imported += 1
        missing += sum(not (store.data_dir / c.audio_path).is_file() for c in new_clips)
    return ImportSummary(imported=imported, skipped=skipped, missing_audio=missing)


def _import_clip_row(store: Store, raw: Mapping[str, Any], side: str, audio_root: Path | None) -> ClipRow:
    """A (detached) row for the side's clip; copies its audio in when the file is found."""
    clip_id = str(raw[side])
    sha = str(raw[f"{side}_audio_sha256"])
    if len(sha) != 64 or any(c not in "0123456789abcdef" for c in sha):
        raise ValueError(f"{side}_audio_sha256 is not a sha256 hex digest")
    rel = f"audio/{sha[:2]}/{sha}.wav"
    source = _audio_source(audio_root, raw.get(f"{side}_audio"))
    if source is not None and not (store.data_dir / rel).is_file():
        data = source.read_bytes()
        if hashlib.sha256(data).hexdigest() != sha:
            raise ValueError(f"{side}_audio {raw.get(f'{side}_audio')} does not match its sha256")
        store.store_audio(data)
    model_id = str(raw[f"{side}_model_id"])
    check_id("model_id", model_id)
    return ClipRow(id=clip_id, prompt=str(raw["prompt"]), model_id=model_id,
                   checkpoint_hash=str(raw.get(f"{side}_checkpoint_hash") or ""),
                   params=dict(raw.get(f"{side}_params") or {}), seed=raw.get(f"{side}_seed"),
                   audio_sha256=sha, audio_path=rel, sample_rate=int(raw.get(f"{side}_sample_rate") or 0),
                   duration=float(raw.get(f"{side}_duration") or 0.0),
                   created_at=_parse_time(raw.get(f"{side}_created_at")))


def _audio_source(audio_root: Path | None, relative: object) -> Path | None:
    """``audio_root / relative`` when it is a file inside ``audio_root`` (an export names audio relative
    to its data directory; ``..`` or absolute paths are not followed)."""
    if audio_root is None or not isinstance(relative, str) or not relative:
        return None
    root = Path(audio_root).expanduser().resolve()
    candidate = (root / relative).resolve()
    if not candidate.is_relative_to(root) or not candidate.is_file():
        return None
    return candidate


def _write_imported(
    session: Session, clips: tuple[ClipRow, ClipRow], pair: PairRow, vote: VoteRow
) -> list[ClipRow] | None:
    """One imported vote in one transaction; returns the clips that were new, None if the pair exists."""
    if session.get(PairRow, pair.id) is not None:
        return None
    new = [c for c in {c.id: c for c in clips}.values() if session.get(ClipRow, c.id) is None]
    session.add_all(new)
    session.flush()
    session.add(pair)
    session.flush()
    session.add(vote)
    return new


def _parse_time(value: object) -> datetime:
    if value is None or value == "":
        return now_utc()
    if isinstance(value, datetime):
        return utc(value)
    return utc(datetime.fromisoformat(str(value)))
