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
      - id: steerable
        name: Steerable (CLP)
        path: runs/clp/model
        steerable: true               # one slider per objective of the checkpoint

A merge entry interpolates the audio-LM weights of two models on the fly (``models.merge.lerp``,
Cideron et al. 2024, arXiv:2410.06084); ``a``/``b`` are ids of other entries or model paths. Only the LM is
interpolated, so both must share the text conditioner and codec (models finetuned from one base do). The
quality<->diversity slider picks lam; interpolated models are cached per lam rounded to 0.05.

A steerable entry (``steerable: true``) serves a CLP checkpoint (``models.steerable``: a checkpoint
directory plus ``steerable.json``/``steerable.safetensors``) at objective weights w chosen per request:
one slider per objective named in the checkpoint. :func:`snap_weights` checks w (each in [0, 1], relative,
not all 0, only the checkpoint's objectives), rounds each to the 0.05 grid and normalises it to sum 1;
the LM materialised at w (``models.steerable.steered``, whose name and checkpoint hash say which w) is
cached like a merge. No weights = uniform w, which is also what the arena serves. The flag is explicit:
without it a CLP checkpoint is served as a plain model (its ``lm.safetensors`` holds θ at uniform w, but
under the checkpoint's own hash), and with it a directory without ``steerable.json`` is refused.

``debug:SEED`` is the tiny random debug stack (``models.debug``) with its LM weights drawn from
SEED: the conditioner and codec stay those of ``debug``, like finetunes of one base model.

Hot reload: a registry read from a file keeps the file's path; :meth:`ModelRegistry.refresh` (called
where the arena draws models and where the page lists them; at most once per second, a ``stat``)
re-reads the file when its mtime, size or inode changed and swaps the new entries in under the lock.
Loaded models stay cached by their source path, so an unchanged entry is not reloaded; cached weight
merges are dropped. A file that fails to read or check keeps the old entries and logs one line.
:func:`add_registry_entry` appends an entry atomically (temp file + rename), which is how ``musicrl
loop`` registers a new model in a running app. The file's parsing and writing live in
``app/registry_file.py`` (its names are re-exported here).

Without ``--registry`` the app serves :func:`default_registry`: ``models/assets/registry.yaml``
when the embedded default ships one; else the embedded default twice, sampled with guidance
(CFG 3) and without (``cfg_free``), so the arena has two systems to compare; else (not installed
in this checkout) the debug models, with a notice saying so.
"""

from __future__ import annotations

import copy
import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from app.registry_file import (
    DEBUG_RE,
    Entries,
    MergeSpec,
    RegistryEntry,
    add_registry_entry,
    file_stamp,
    parse_registry,
    read_registry,
)
from models.errors import InputError
from models.generator import MusicGenerator
from models.registry import DEFAULT_DIR, load_generator
from models.steerable import SteerableLM, load_steerable, steered

LAMBDA_STEP = 0.05  # merge and objective weights are cached (and served) on this grid
Weights = tuple[tuple[str, float], ...]  # a steerable model's normalised objective weights, in its objective order
DEFAULT_REGISTRY_FILE = DEFAULT_DIR.parent / "registry.yaml"
log = logging.getLogger(__name__)
__all__ = ["MergeSpec", "ModelRegistry", "RegistryEntry", "add_registry_entry", "default_registry", "load_source",
           "registry_from", "snap_lambda", "snap_weights"]

DEBUG_NOTICE = (
    "The embedded default model is not installed in this checkout, so the app serves tiny random "
    "debug models: every clip is noise. Start it with `--registry FILE` to serve trained models."
)




def snap_lambda(lam: float) -> float:
    """lam rounded to the 0.05 grid the merge cache uses (0.51 -> 0.5)."""
    return round(round(float(lam) / LAMBDA_STEP) * LAMBDA_STEP, 2)


def no_weights(weights: object) -> bool:
    """None, {}, [] or "": no objective weights were sent (a steerable model then serves uniform w)."""
    return weights is None or (isinstance(weights, Mapping | list | tuple | str) and not weights)


def snap_weights(objectives: Sequence[str], weights: object) -> Weights:
    """Objective weights -> ((objective, w), ...) in ``objectives``' order: each given weight a number in
    [0, 1] rounded to the 0.05 grid, then scaled to sum 1 (6 decimals). ``weights``: {objective: weight}
    (objectives left out weigh 0) or one weight per objective in order; None, {} or [] = uniform.
    InputError (one line) for an unknown objective, a weight outside [0, 1], or all weights 0."""
    from app.validation import number

    if no_weights(weights):
        weights = [1.0] * len(objectives)
    if isinstance(weights, Mapping):
        unknown = [name for name in weights if name not in objectives]
        if unknown:
            shown = repr(unknown[0]) if isinstance(unknown[0], str) and len(unknown[0]) <= 40 else "given"
            raise InputError(f"unknown objective {shown}; this model steers {', '.join(objectives)}")
        values = [weights.get(name, 0.0) for name in objectives]
    elif isinstance(weights, list | tuple):
        if len(weights) != len(objectives):
            raise InputError(f"give {len(objectives)} objective weights ({', '.join(objectives)}), got {len(weights)}")
        values = list(weights)
    else:
        raise InputError(f"the objective weights must be {{objective: weight}} for {', '.join(objectives)}")
    snapped = [snap_lambda(number(f"the weight of {name}", v, 0.0, 1.0)) for name, v in zip(objectives, values,
                                                                                            strict=True)]
    total = sum(snapped)
    if total <= 0:
        raise InputError("at least one objective weight must be 0.05 or more (weights are relative)")
    return tuple((name, round(v / total, 6)) for name, v in zip(objectives, snapped, strict=True))


def load_source(source: str) -> MusicGenerator:
    """A model from a registry ``path``: "default", "debug", "debug:SEED" or a checkpoint directory."""
    match = DEBUG_RE.match(source)
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




class ModelRegistry:
    """Registry entries plus a thread-safe cache of loaded (and merged) models.

    ``loader`` turns a ``path`` into a :class:`MusicGenerator` (default :func:`load_source`), and
    ``steer_loader`` a steerable entry's path into (generator, SteerableLM); tests pass counting loaders.
    Nothing is loaded before :meth:`load` asks for it. ``source``: the file the entries were read from
    (set by :meth:`from_file`), which :meth:`refresh` re-reads when it changes,
    looking at most once per ``reload_interval_s``.
    """

    def __init__(
        self,
        entries: Sequence[RegistryEntry],
        *,
        notice: str = "",
        loader: Callable[[str], MusicGenerator] = load_source,
        steer_loader: Callable[[str], tuple[MusicGenerator, SteerableLM]] = load_steerable,
        merge_cache_size: int = 6,
        reload_interval_s: float = 1.0,
    ) -> None:
        self._state = Entries.check(entries, notice)
        self._loader = loader
        self._lock = threading.RLock()
        self._steer_loader = steer_loader
        self._sources: dict[str, MusicGenerator] = {}
        self._steerables: dict[str, tuple[MusicGenerator, SteerableLM]] = {}
        # merges by (id, lam) and steered models by (id, weights), least recently used first
        self._merged: OrderedDict[tuple[str, float | Weights], MusicGenerator] = OrderedDict()
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

    def _load_steerable(self, source: str) -> tuple[MusicGenerator, SteerableLM]:
        with self._lock:
            if source not in self._steerables:
                self._steerables[source] = self._steer_loader(source)
            return self._steerables[source]

    def objectives(self, model_id: str) -> tuple[str, ...]:
        """The objectives a steerable entry's sliders weigh (from its checkpoint); () for other entries."""
        entry = self.get(model_id)
        return tuple(self._load_steerable(entry.path or "")[1].objectives) if entry.steerable else ()

    def steer_weights(self, model_id: str, weights: object = None) -> Weights | None:
        """``weights`` checked and snapped for ``model_id`` (:func:`snap_weights`; None = uniform); None for an
        entry that is not steerable, which refuses any weights given."""
        entry = self.get(model_id)
        if entry.steerable:
            return snap_weights(self.objectives(model_id), weights)
        if no_weights(weights):
            return None
        raise InputError(f"model {entry.id!r} is not steerable: send no objective weights for it")

    def load(self, model_id: str, lam: float | None = None, weights: Weights | None = None) -> MusicGenerator:
        """The model for ``model_id``; for a merge entry, interpolated at ``lam`` (default ``init``, snapped
        to the 0.05 grid); for a steerable entry, at ``weights`` as :meth:`steer_weights` returns them
        (None = uniform). The last few interpolated and steered models are cached.
        """
        entry = self.get(model_id)
        if entry.steerable:
            w = self.steer_weights(entry.id) if weights is None else weights
            if tuple(name for name, _ in w) != self.objectives(entry.id):
                raise ValueError(f"weights {w!r} are not snapped weights of {entry.id!r}: use steer_weights")
            return self._cached((entry.id, w), lambda: self._steer(entry, w))
        if weights is not None:
            raise InputError(f"model {entry.id!r} is not steerable: send no objective weights for it")
        if entry.merge is None:
            return self._load_source(entry.path or "")
        lam = snap_lambda(entry.merge.init if lam is None else lam)
        if not 0.0 <= lam <= 1.0:
            raise InputError(f"the quality/diversity weight must be in [0, 1], got {lam:g}")
        return self._cached((entry.id, lam), lambda: self._interpolate(entry, lam))

    def _cached(self, key: tuple[str, float | Weights], build: Callable[[], MusicGenerator]) -> MusicGenerator:
        with self._lock:
            if key in self._merged:
                self._merged.move_to_end(key)
                return self._merged[key]
            gen = build()
            self._merged[key] = gen
            while len(self._merged) > self._merge_cache_size:
                self._merged.popitem(last=False)
            return gen

    def _steer(self, entry: RegistryEntry, weights: Weights) -> MusicGenerator:
        gen, steer = self._load_steerable(entry.path or "")
        return steered(gen, steer, dict(weights))

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
        if entry.steerable:
            return [self._load_steerable(entry.path or "")[0]]
        refs = [entry.path or ""] if entry.merge is None else [self._source(entry.merge.a), self._source(entry.merge.b)]
        return [self._load_source(ref) for ref in refs]

    def is_cfg_free(self, model_id: str) -> bool:
        """True when the entry says so or its checkpoint(s) do (a merge: both ends). Loads the model(s)."""
        entry = self.get(model_id)
        return entry.cfg_free or all(gen.cfg_free for gen in self._ends(entry))

    def sample_rate(self, model_id: str) -> int:
        """The audio rate of the entry's model (a merge's ends share one codec). Loads the model(s)."""
        return self._ends(self.get(model_id))[0].sample_rate

    def max_duration(self, model_id: str) -> float:
        """Seconds of audio the entry can make (a merge: the shorter of its two ends). Loads the model(s)."""
        return min(gen.max_duration for gen in self._ends(self.get(model_id)))

    def effective_cfg(self, model_id: str, requested: float) -> float:
        """The guidance scale ``model_id`` is sampled with: 1 (no guidance, the unconditional pass
        skipped) for a CFG-free model, else ``requested``. The one place this rule is written."""
        return 1.0 if self.is_cfg_free(model_id) else float(requested)

    def cached_merges(self) -> list[tuple[str, float | Weights]]:
        """Keys of the cached merged and steered models, least recently used first."""
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
                stamp = file_stamp(self.source)
            except OSError:
                return False  # between a writer's unlink and rename, or removed: keep serving what we have
            if stamp == self._stamp:
                return False
            self._stamp = stamp
            try:
                entries, notice = parse_registry(read_registry(self.source), self.source.parent)
                state = Entries.check(entries, notice)
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
        entries, notice = parse_registry(data, base_dir)
        return cls(entries, notice=kwargs.pop("notice", notice), **kwargs)

    @classmethod
    def from_file(cls, path: str | Path, **kwargs: Any) -> ModelRegistry:
        """Read a YAML (.yaml/.yml) or JSON registry file; :meth:`refresh` re-reads it when it changes."""
        path = Path(path).resolve()
        try:
            stamp = file_stamp(path)  # before reading: a change during the read is seen by the next refresh
        except OSError as err:
            raise InputError(f"cannot read the registry file {path}: {err.strerror or err}") from None
        registry = cls.from_mapping(read_registry(path), base_dir=path.parent, **kwargs)
        registry.source, registry._stamp, registry._checked_at = path, stamp, time.monotonic()
        return registry




def _describe(module: object) -> object:
    describe = getattr(module, "describe", None)
    return describe() if callable(describe) else type(module).__name__




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
