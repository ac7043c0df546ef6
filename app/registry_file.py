"""The registry file: its entries, how they are parsed and checked, and appending one atomically.

The format (YAML or JSON, ``{"models": [...]}`` or a bare list) is documented in ``app/registry.py``,
which serves what these entries describe (loading, caching, hot reload). Kept apart so that the
file's rules and its writers (``musicrl loop`` through :func:`add_registry_entry`) read in one place.
"""

from __future__ import annotations

import fcntl
import json
import os
import re
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from models.errors import InputError
from models.quantize import split_spec

ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
DEBUG_RE = re.compile(r"^debug:(\d{1,9})$")


@dataclass(frozen=True)
class MergeSpec:
    """LM weights (1 - lam) * a + lam * b; ``a``/``b`` are entry ids or model paths; ``init`` = default lam."""

    a: str
    b: str
    init: float = 0.5


@dataclass(frozen=True)
class RegistryEntry:
    """One servable model. Exactly one of ``path`` and ``merge`` is set."""

    id: str
    name: str
    path: str | None = None
    cfg_free: bool = False
    merge: MergeSpec | None = None
    description: str = ""
    steerable: bool = False  # a CLP checkpoint: objective weights chosen per request

    @property
    def is_merge(self) -> bool:
        return self.merge is not None


@dataclass(frozen=True)
class Entries:
    """One consistent set of entries, swapped in as a whole on reload."""

    entries: tuple[RegistryEntry, ...]
    by_id: dict[str, RegistryEntry]
    notice: str

    @classmethod
    def check(cls, entries: Sequence[RegistryEntry], notice: str) -> Entries:
        if not entries:
            raise InputError("the model registry lists no models")
        ids = [e.id for e in entries]
        duplicates = sorted({i for i in ids if ids.count(i) > 1})
        if duplicates:
            raise InputError(f"the model registry lists {', '.join(duplicates)} more than once")
        by_id = {e.id: e for e in entries}
        for entry in entries:
            if entry.merge is not None:
                for side in (entry.merge.a, entry.merge.b):
                    if by_id.get(side, None) is not None and by_id[side].is_merge:
                        raise InputError(f"merge entry {entry.id!r}: {side!r} is itself a merge entry")
                    source = by_id[side].path if side in by_id else side
                    if split_spec(source or "")[0]:
                        raise InputError(f"merge entry {entry.id!r}: {side!r} has int8 weights, which do not "
                                         "interpolate; merge float models")
        return cls(tuple(entries), by_id, notice)


def file_stamp(path: Path) -> tuple[int, int, int]:
    st = os.stat(path)
    return st.st_mtime_ns, st.st_size, st.st_ino


def read_registry(path: Path) -> object:
    """The parsed YAML (.yaml/.yml) or JSON registry file; InputError naming the file otherwise."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as err:
        raise InputError(f"cannot read the registry file {path}: {err}") from None
    try:
        if path.suffix.lower() == ".json":
            return json.loads(text)
        import yaml

        return yaml.safe_load(text)
    except ValueError as err:  # json.JSONDecodeError and yaml.YAMLError's subclasses
        raise InputError(f"registry file {path} is not valid {path.suffix[1:] or 'YAML'}: {err}") from None
    except Exception as err:  # yaml.YAMLError does not derive from ValueError
        raise InputError(f"registry file {path} is not valid YAML: {err}") from None


def parse_registry(data: object, base_dir: Path | None) -> tuple[list[RegistryEntry], str]:
    """(entries, notice) of a parsed registry file (``{"models": [...]}`` or a bare list)."""
    items = data.get("models") if isinstance(data, Mapping) else data
    if not isinstance(items, list):
        raise InputError("a registry file must hold a list under 'models'")
    notice = str(data.get("notice", "")) if isinstance(data, Mapping) else ""
    return [_parse_entry(item, i, base_dir) for i, item in enumerate(items, start=1)], notice


def add_registry_entry(path: str | Path, entry: Mapping[str, Any]) -> RegistryEntry:
    """Append ``entry`` (a mapping as in the file: id, name, path or merge, cfg_free, steerable, description) to the
    registry file at ``path``, atomically: the new file is written beside it, fsynced and renamed over
    it, so a running app's :meth:`ModelRegistry.refresh` sees the old file or the new one, never half.
    Writers are serialised by a lock on ``PATH.lock``. Returns the parsed entry.

    Raises InputError when the id is already listed, the entry is malformed, or the registry with it
    would not load (the file is then left as it was). Other keys of the file are kept; YAML comments
    are not (the file is rewritten from its parsed form).
    """
    path = Path(path).resolve()
    try:
        plain = json.loads(json.dumps(dict(entry)))
    except (TypeError, ValueError) as err:
        raise InputError(f"a registry entry must hold plain values (text, numbers, true/false): {err}") from None
    with open(path.with_name(path.name + ".lock"), "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        data = read_registry(path)
        items = data.get("models") if isinstance(data, Mapping) else data
        if not isinstance(items, list):
            raise InputError(f"registry file {path} must hold a list under 'models'")
        if any(isinstance(item, Mapping) and item.get("id") == plain.get("id") for item in items):
            raise InputError(f"the registry {path} already lists {plain.get('id')!r}")
        new = _parse_entry(plain, len(items) + 1, path.parent)
        updated: object = {**data, "models": [*items, plain]} if isinstance(data, Mapping) else [*items, plain]
        Entries.check(*parse_registry(updated, path.parent))  # the whole registry still loads
        if path.suffix.lower() == ".json":
            text = json.dumps(updated, indent=2) + "\n"
        else:
            import yaml

            text = yaml.safe_dump(updated, sort_keys=False, allow_unicode=True)
        _write_atomically(path, text)
    return new


def _write_atomically(path: Path, text: str) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp, path.stat().st_mode & 0o777)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


def _parse_entry(item: object, number: int, base_dir: Path | None) -> RegistryEntry:
    where = f"registry entry {number}"
    if not isinstance(item, Mapping):
        raise InputError(f"{where} must be a mapping with an 'id'")
    unknown = set(item) - {"id", "name", "path", "cfg_free", "merge", "description", "steerable"}
    if unknown:
        raise InputError(f"{where}: unknown field(s) {', '.join(sorted(map(str, unknown)))}")
    model_id = item.get("id")
    if not isinstance(model_id, str) or not ID_RE.match(model_id):
        raise InputError(f"{where}: 'id' must be 1-64 letters, digits, '.', '_' or '-', got {model_id!r}")
    where = f"registry entry {model_id!r}"
    path, merge = item.get("path"), item.get("merge")
    if (path is None) == (merge is None):
        raise InputError(f"{where} needs exactly one of 'path' and 'merge'")
    cfg_free, steerable = item.get("cfg_free", False), item.get("steerable", False)
    if not isinstance(cfg_free, bool) or not isinstance(steerable, bool):
        raise InputError(f"{where}: 'cfg_free' and 'steerable' must be true or false")
    if steerable and merge is not None:
        raise InputError(f"{where}: a merge entry cannot be steerable (give a CLP checkpoint's 'path')")
    name = item.get("name", model_id)
    if not isinstance(name, str) or not name.strip():
        raise InputError(f"{where}: 'name' must be non-empty text")
    spec = None
    if merge is not None:
        if not isinstance(merge, Mapping) or not {"a", "b"} <= set(merge) or set(merge) - {"a", "b", "init"}:
            raise InputError(f"{where}: 'merge' must be {{a: MODEL, b: MODEL, init: LAMBDA}}")
        init = merge.get("init", 0.5)
        if isinstance(init, bool) or not isinstance(init, int | float) or not 0.0 <= init <= 1.0:
            raise InputError(f"{where}: merge 'init' must be a number in [0, 1]")
        a, b = (_resolve_path(str(merge[k]), base_dir) for k in ("a", "b"))
        spec = MergeSpec(a=a, b=b, init=float(init))
    else:
        if not isinstance(path, str) or not path:
            raise InputError(f"{where}: 'path' must be text")
        path = _resolve_path(path, base_dir)
        if steerable and split_spec(path)[0]:
            raise InputError(f"{where}: a steerable entry cannot have int8 weights (they are steered in float)")
    return RegistryEntry(
        id=model_id,
        name=name.strip(),
        path=path,
        cfg_free=cfg_free,
        merge=spec,
        description=str(item.get("description", "")),
        steerable=steerable,
    )


def _resolve_path(ref: str, base_dir: Path | None) -> str:
    """Names ("default", "debug", "debug:N") and plain ids stay; existing relative paths become absolute
    (also after an ``int8:`` prefix, ``models.quantize``)."""
    kind, inner = split_spec(ref)
    if kind:
        return f"{kind}:{_resolve_path(inner, base_dir)}"
    if ref in ("default", "debug") or DEBUG_RE.match(ref) or base_dir is None:
        return ref
    candidate = Path(ref).expanduser()
    if not candidate.is_absolute() and (base_dir / candidate).exists():
        return str((base_dir / candidate).resolve())
    return ref
