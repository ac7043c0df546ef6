"""The app's model registry: which models the app serves, loaded lazily and cached.

A registry file (YAML or JSON) lists the models::

    models:
      - id: base                      # what the store records and the API takes
        name: Base model              # what listeners see (after the vote, in the arena)
        path: checkpoints/base        # a checkpoint directory (relative to this file), "default",
                                      # "debug" or "debug:SEED"
      - id: distilled
        name: CFG-distilled
        path: checkpoints/distilled
        cfg_free: true                # sampled without guidance; the UI hides the CFG slider
      - id: soup
        name: Quality <-> diversity
        merge: {a: base, b: distilled, init: 0.5}   # LM weights (1 - lam) * a + lam * b

A merge entry interpolates the audio-LM weights of two models on the fly (``models.merge.lerp``,
ALGORITHMS §2); ``a``/``b`` are ids of other entries or model paths. Only the LM is interpolated,
so both must share the text conditioner and codec (models finetuned from one base do). The
quality<->diversity slider picks lam; interpolated models are cached per lam rounded to 0.05.

``debug:SEED`` is the tiny random debug stack (``models.debug``) with its LM weights drawn from
SEED: the conditioner and codec stay those of ``debug``, like finetunes of one base model.

Hot reload: a registry read from a file keeps the file's path; :meth:`ModelRegistry.refresh` (called
where the arena draws models and where the page lists them; at most once per second, a ``stat``)
re-reads the file when its mtime, size or inode changed and swaps the new entries in under the lock.
Loaded models stay cached by their source path, so an unchanged entry is not reloaded; cached weight
merges are dropped. A file that fails to read or check keeps the old entries and logs one line.
:func:`add_registry_entry` appends an entry atomically (temp file + rename), which is how ``musicrl
loop`` registers a new model in a running app.

Without ``--registry`` the app serves :func:`default_registry`: ``models/assets/registry.yaml``
when the embedded default ships one; else the embedded default twice, sampled with guidance
(CFG 3) and without (``cfg_free``), so the arena has two systems to compare; else (not installed
in this checkout) the debug models, with a notice saying so.
"""

from __future__ import annotations

import copy
import fcntl
import json
import logging
import os
import re
import tempfile
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from models.errors import InputError
from models.generator import MusicGenerator
from models.registry import DEFAULT_DIR, load_generator

LAMBDA_STEP = 0.05  # merge weights are cached (and served) on this grid
DEFAULT_REGISTRY_FILE = DEFAULT_DIR.parent / "registry.yaml"
_ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
_DEBUG_RE = re.compile(r"^debug:(\d{1,9})$")
log = logging.getLogger(__name__)

DEBUG_NOTICE = (
    "The embedded default model is not installed in this checkout, so the app serves tiny random "
    "debug models: every clip is noise. Start it with `--registry FILE` to serve trained models."
)


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

    @property
    def is_merge(self) -> bool:
        return self.merge is not None


def snap_lambda(lam: float) -> float:
    """lam rounded to the 0.05 grid the merge cache uses (0.51 -> 0.5)."""
    return round(round(float(lam) / LAMBDA_STEP) * LAMBDA_STEP, 2)


def load_source(source: str) -> MusicGenerator:
    """A model from a registry ``path``: "default", "debug", "debug:SEED" or a checkpoint directory."""
    match = _DEBUG_RE.match(source)
    if match:
        from models.debug import debug_generator, debug_lm_config, seeded_lm

        seed = int(match.group(1))
        base = debug_generator(seed=0)
        if seed == 0:
            return base
        return MusicGenerator(lm=seeded_lm(debug_lm_config(), seed), conditioner=base.conditioner,
                              codec=base.codec, name=source, checkpoint_hash=f"debug-lm{seed}",
                              max_duration=base.max_duration)
    return load_generator(source)


@dataclass(frozen=True)
class _Entries:
    """One consistent set of entries, swapped in as a whole on reload."""

    entries: tuple[RegistryEntry, ...]
    by_id: dict[str, RegistryEntry]
    notice: str

    @classmethod
    def check(cls, entries: Sequence[RegistryEntry], notice: str) -> _Entries:
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
        return cls(tuple(entries), by_id, notice)


class ModelRegistry:
    """Registry entries plus a thread-safe cache of loaded (and merged) models.

    ``loader`` turns a ``path`` into a :class:`MusicGenerator` (default :func:`load_source`); tests
    pass counting loaders. Nothing is loaded before :meth:`load` asks for it. ``source``: the file the
    entries were read from (set by :meth:`from_file`), which :meth:`refresh` re-reads when it changes,
    looking at most once per ``reload_interval_s``.
    """

    def __init__(
        self,
        entries: Sequence[RegistryEntry],
        *,
        notice: str = "",
        loader: Callable[[str], MusicGenerator] = load_source,
        merge_cache_size: int = 6,
        reload_interval_s: float = 1.0,
    ) -> None:
        self._state = _Entries.check(entries, notice)
        self._loader = loader
        self._lock = threading.RLock()
        self._sources: dict[str, MusicGenerator] = {}
        self._merged: OrderedDict[tuple[str, float], MusicGenerator] = OrderedDict()
        self._merge_cache_size = merge_cache_size
        self.source: Path | None = None
        self.reload_interval_s = float(reload_interval_s)
        self._stamp: tuple[int, int, int] | None = None  # (mtime_ns, size, inode) of the source when last read
        self._checked_at = -float("inf")
        self._refresh_lock = threading.Lock()

    # -- lookup --------------------------------------------------------------------------------

    @property
    def entries(self) -> tuple[RegistryEntry, ...]:
        return self._state.entries

    @property
    def _by_id(self) -> dict[str, RegistryEntry]:
        return self._state.by_id

    @property
    def notice(self) -> str:
        return self._state.notice

    @property
    def ids(self) -> list[str]:
        return [e.id for e in self.entries]

    def get(self, model_id: object) -> RegistryEntry:
        """The entry for ``model_id``; InputError naming the known ids otherwise."""
        if isinstance(model_id, str) and model_id in self._by_id:
            return self._by_id[model_id]
        shown = repr(model_id) if isinstance(model_id, str) and len(model_id) <= 80 else "given"
        raise InputError(f"unknown model {shown}; this app serves: {', '.join(self.ids)}")

    def display_name(self, model_id: str) -> str:
        entry = self._by_id.get(model_id)
        return entry.name if entry is not None else model_id

    # -- loading -------------------------------------------------------------------------------

    def _source(self, ref: str) -> str:
        entry = self._by_id.get(ref)
        return entry.path if entry is not None and entry.path is not None else ref

    def _load_source(self, source: str) -> MusicGenerator:
        with self._lock:
            if source not in self._sources:
                self._sources[source] = self._loader(source)
            return self._sources[source]

    def load(self, model_id: str, lam: float | None = None) -> MusicGenerator:
        """The model for ``model_id``; for a merge entry, interpolated at ``lam`` (default ``init``).

        lam is snapped to the 0.05 grid; the last few interpolated models are cached.
        """
        entry = self.get(model_id)
        if entry.merge is None:
            return self._load_source(entry.path or "")
        lam = snap_lambda(entry.merge.init if lam is None else lam)
        if not 0.0 <= lam <= 1.0:
            raise InputError(f"the quality/diversity weight must be in [0, 1], got {lam:g}")
        key = (entry.id, lam)
        with self._lock:
            if key in self._merged:
                self._merged.move_to_end(key)
                return self._merged[key]
            gen = self._interpolate(entry, lam)
            self._merged[key] = gen
            while len(self._merged) > self._merge_cache_size:
                self._merged.popitem(last=False)
            return gen

    def _interpolate(self, entry: RegistryEntry, lam: float) -> MusicGenerator:
        from models.merge import lerp

        assert entry.merge is not None
        gen_a = self._load_source(self._source(entry.merge.a))
        gen_b = self._load_source(self._source(entry.merge.b))
        if gen_a.lm.cfg != gen_b.lm.cfg:
            raise InputError(f"merge entry {entry.id!r}: the two LMs have different configurations")
        if _describe(gen_a.conditioner) != _describe(gen_b.conditioner) or _describe(gen_a.codec) != _describe(
            gen_b.codec
        ):
            raise InputError(
                f"merge entry {entry.id!r}: both models must share the text conditioner and codec "
                "(only the audio-LM weights are interpolated)"
            )
        lm = copy.deepcopy(gen_a.lm)
        lm.load_state_dict(lerp(gen_a.lm.state_dict(), gen_b.lm.state_dict(), lam))
        return MusicGenerator(
            lm=lm.eval(),
            conditioner=gen_a.conditioner,
            codec=gen_a.codec,
            name=entry.id,
            checkpoint_hash=f"lerp({gen_a.checkpoint_hash},{gen_b.checkpoint_hash},{lam:.2f})",
            max_duration=min(gen_a.max_duration, gen_b.max_duration),
            cfg_free=self.is_cfg_free(entry.id),
            meta={"merge": {"a": entry.merge.a, "b": entry.merge.b, "lam": lam}},
        )

    def _ends(self, entry: RegistryEntry) -> list[MusicGenerator]:
        """The loaded model(s) an entry is built from: its own, or a merge's two ends."""
        refs = [entry.path or ""] if entry.merge is None else [self._source(entry.merge.a), self._source(entry.merge.b)]
        return [self._load_source(ref) for ref in refs]

    def is_cfg_free(self, model_id: str) -> bool:
        """True when the entry says so or its checkpoint(s) do (a merge: both ends). Loads the model(s)."""
        entry = self.get(model_id)
        return entry.cfg_free or all(gen.cfg_free for gen in self._ends(entry))

    def max_duration(self, model_id: str) -> float:
        """Seconds of audio the entry can make (a merge: the shorter of its two ends). Loads the model(s)."""
        return min(gen.max_duration for gen in self._ends(self.get(model_id)))

    def effective_cfg(self, model_id: str, requested: float) -> float:
        """The guidance scale ``model_id`` is sampled with: 1 (no guidance, the unconditional pass
        skipped) for a CFG-free model, else ``requested``. The one place this rule is written."""
        return 1.0 if self.is_cfg_free(model_id) else float(requested)

    def cached_merges(self) -> list[tuple[str, float]]:
        with self._lock:
            return list(self._merged)

    # -- hot reload ----------------------------------------------------------------------------

    def refresh(self, force: bool = False) -> bool:
        """Re-read :attr:`source` if it changed since it was read (looking at most once per
        ``reload_interval_s`` unless ``force``); True when new entries were swapped in.

        Cheap enough for every request: usually one clock read, at most one ``stat`` a second. Never
        raises: a file that cannot be read or checked keeps the entries served now and logs one line
        (once per version of the file). A concurrent caller returns at once while one re-reads.
        """
        if self.source is None or not self._refresh_lock.acquire(blocking=False):
            return False
        try:
            now = time.monotonic()
            if not force and now - self._checked_at < self.reload_interval_s:
                return False
            self._checked_at = now
            try:
                stamp = _stamp(self.source)
            except OSError:
                return False  # between a writer's unlink and rename, or removed: keep serving what we have
            if stamp == self._stamp:
                return False
            self._stamp = stamp
            try:
                entries, notice = _parse_registry(_read_registry(self.source), self.source.parent)
                state = _Entries.check(entries, notice)
            except InputError as err:
                log.warning("registry %s not reloaded, still serving %s: %s", self.source, ", ".join(self.ids),
                            " ".join(str(err).split()))  # one line, also for YAML's multi-line messages
                return False
            with self._lock:
                self._state = state
                self._merged.clear()  # a merge entry may now name other ends
            log.info("registry %s reloaded: serving %s", self.source, ", ".join(self.ids))
            return True
        finally:
            self._refresh_lock.release()

    # -- construction --------------------------------------------------------------------------

    @classmethod
    def from_mapping(cls, data: object, base_dir: Path | None = None, **kwargs: Any) -> ModelRegistry:
        """Build from the parsed file (``{"models": [...]}`` or a bare list); paths relative to base_dir."""
        entries, notice = _parse_registry(data, base_dir)
        return cls(entries, notice=kwargs.pop("notice", notice), **kwargs)

    @classmethod
    def from_file(cls, path: str | Path, **kwargs: Any) -> ModelRegistry:
        """Read a YAML (.yaml/.yml) or JSON registry file; :meth:`refresh` re-reads it when it changes."""
        path = Path(path).resolve()
        try:
            stamp = _stamp(path)  # before reading: a change during the read is seen by the next refresh
        except OSError as err:
            raise InputError(f"cannot read the registry file {path}: {err.strerror or err}") from None
        registry = cls.from_mapping(_read_registry(path), base_dir=path.parent, **kwargs)
        registry.source, registry._stamp, registry._checked_at = path, stamp, time.monotonic()
        return registry


def _stamp(path: Path) -> tuple[int, int, int]:
    st = os.stat(path)
    return st.st_mtime_ns, st.st_size, st.st_ino


def _read_registry(path: Path) -> object:
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


def _parse_registry(data: object, base_dir: Path | None) -> tuple[list[RegistryEntry], str]:
    """(entries, notice) of a parsed registry file (``{"models": [...]}`` or a bare list)."""
    items = data.get("models") if isinstance(data, Mapping) else data
    if not isinstance(items, list):
        raise InputError("a registry file must hold a list under 'models'")
    notice = str(data.get("notice", "")) if isinstance(data, Mapping) else ""
    return [_parse_entry(item, i, base_dir) for i, item in enumerate(items, start=1)], notice


def add_registry_entry(path: str | Path, entry: Mapping[str, Any]) -> RegistryEntry:
    """Append ``entry`` (a mapping as in the file: id, name, path or merge, cfg_free, description) to the
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
        data = _read_registry(path)
        items = data.get("models") if isinstance(data, Mapping) else data
        if not isinstance(items, list):
            raise InputError(f"registry file {path} must hold a list under 'models'")
        if any(isinstance(item, Mapping) and item.get("id") == plain.get("id") for item in items):
            raise InputError(f"the registry {path} already lists {plain.get('id')!r}")
        new = _parse_entry(plain, len(items) + 1, path.parent)
        updated: object = {**data, "models": [*items, plain]} if isinstance(data, Mapping) else [*items, plain]
        _Entries.check(*_parse_registry(updated, path.parent))  # the whole registry still loads
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


def _describe(module: object) -> object:
    describe = getattr(module, "describe", None)
    return describe() if callable(describe) else type(module).__name__


def _parse_entry(item: object, number: int, base_dir: Path | None) -> RegistryEntry:
    where = f"registry entry {number}"
    if not isinstance(item, Mapping):
        raise InputError(f"{where} must be a mapping with an 'id'")
    unknown = set(item) - {"id", "name", "path", "cfg_free", "merge", "description"}
    if unknown:
        raise InputError(f"{where}: unknown field(s) {', '.join(sorted(map(str, unknown)))}")
    model_id = item.get("id")
    if not isinstance(model_id, str) or not _ID_RE.match(model_id):
        raise InputError(f"{where}: 'id' must be 1-64 letters, digits, '.', '_' or '-', got {model_id!r}")
    where = f"registry entry {model_id!r}"
    path, merge = item.get("path"), item.get("merge")
    if (path is None) == (merge is None):
        raise InputError(f"{where} needs exactly one of 'path' and 'merge'")
    cfg_free = item.get("cfg_free", False)
    if not isinstance(cfg_free, bool):
        raise InputError(f"{where}: 'cfg_free' must be true or false")
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
    return RegistryEntry(id=model_id, name=name.strip(), path=path, cfg_free=cfg_free, merge=spec,
                         description=str(item.get("description", "")))


def _resolve_path(ref: str, base_dir: Path | None) -> str:
    """Names ("default", "debug", "debug:N") and plain ids stay; existing relative paths become absolute."""
    if ref in ("default", "debug") or _DEBUG_RE.match(ref) or base_dir is None:
        return ref
    candidate = Path(ref).expanduser()
    if not candidate.is_absolute() and (base_dir / candidate).exists():
        return str((base_dir / candidate).resolve())
    return ref


def debug_entries() -> list[RegistryEntry]:
    """Two random debug LMs sharing one conditioner/codec, and their weight merge."""
    return [
        RegistryEntry(id="debug", name="Debug A (random weights)", path="debug"),
        RegistryEntry(id="debug-b", name="Debug B (random weights)", path="debug:1"),
        RegistryEntry(id="debug-merge", name="Debug A+B weight merge", merge=MergeSpec("debug", "debug-b", 0.5)),
    ]


def default_entries() -> list[RegistryEntry]:
    """The embedded default sampled with guidance (CFG 3) and without: two systems for the arena."""
    return [
        RegistryEntry(id="default", name="musicrl default", path="default"),
        RegistryEntry(id="default-no-cfg", name="musicrl default, no guidance", path="default", cfg_free=True,
                      description="The embedded default sampled without classifier-free guidance."),
    ]


def default_registry(**kwargs: Any) -> ModelRegistry:
    """What ``musicrl app`` serves without ``--registry`` (see the module docstring)."""
    if DEFAULT_REGISTRY_FILE.is_file():
        return ModelRegistry.from_file(DEFAULT_REGISTRY_FILE, **kwargs)
    if (DEFAULT_DIR / "musicrl.json").is_file():
        return ModelRegistry(default_entries(), **kwargs)
    return ModelRegistry(debug_entries(), notice=DEBUG_NOTICE, **kwargs)


def registry_from(spec: str | Path | None, **kwargs: Any) -> ModelRegistry:
    """``None`` -> :func:`default_registry`; else a registry file."""
    return default_registry(**kwargs) if spec is None else ModelRegistry.from_file(spec, **kwargs)
