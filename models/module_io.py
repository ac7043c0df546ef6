"""The one self-describing file format of every trained module: safetensors weights + a JSON header.

    save_module(model, "runs/embedder/model", kind="embedder", config=model.cfg, lineage={"step": 500})
    header, state = load_module(path, kind="embedder")      # header.config -> rebuild, then load_state_dict

A module directory holds ``<stem>.safetensors`` (the state dict; never pickle) and ``<stem>.json``::

    {"format": "musicrl", "kind": "embedder", "version": 2,
     "config": {...the dataclass config, as dataclasses.asdict...},
     "lineage": {"step": 500, "recipe": "embedder", "parents": [...], ...}}

``kind`` names what rebuilds it (``embedder``, ``quality``, ``judges``, ``spectral-codec``, ``lm-shards``
(the lm recipe's fp16 shards ``lm-NN.safetensors``, header ``lm.json``); a generator
checkpoint's ``musicrl.json`` is the same header with kind ``generator``, see ``models.checkpoint``; a
train state's ``state.json`` carries kind ``train-state``). ``stem`` defaults to the kind.

Files written before this format still load (``read_header`` upgrades them in memory, nothing on disk
is rewritten): ``{"format": "musicrl-<kind>", "version": 1, "config", "extra"}`` (embedder, quality,
judges: ``extra`` becomes the lineage), a bare config dict (the spectral codec's ``codec.json``) and the
version-1 generator header (its fields at the top level) and the lm recipe's ``lm.json`` (``lm``, ``step``,
``metrics``, ``config``).
"""

from __future__ import annotations

import dataclasses
import json
import typing
from dataclasses import dataclass, field
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import nn

from models.errors import InputError

FORMAT, VERSION = "musicrl", 2
GENERATOR_FIELDS = ("lm", "conditioner", "codec", "max_duration", "cfg_free")


@dataclass
class Header:
    """What a module's JSON says about it: ``config`` rebuilds it, ``lineage`` says where it came from."""

    kind: str
    config: dict
    lineage: dict = field(default_factory=dict)
    version: int = VERSION

    def to_json(self) -> dict:
        return {
            "format": FORMAT,
            "kind": self.kind,
            "version": self.version,
            "config": self.config,
            "lineage": self.lineage,
        }


def plain_config(config) -> dict:
    """A dataclass config (or a dict) as JSON-able values."""
    return dataclasses.asdict(config) if dataclasses.is_dataclass(config) else dict(config)


def config_from_dict(cls: type, values: dict):
    """Rebuild a (nested) dataclass config from ``dataclasses.asdict`` output; unknown keys fail."""
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = set(values) - names
    if unknown:
        raise InputError(f"unknown {cls.__name__} keys {sorted(unknown)} (saved by a newer version?)")
    kwargs = {}
    for key, value in values.items():
        typ = hints[key]
        kwargs[key] = config_from_dict(typ, value) if dataclasses.is_dataclass(typ) else value
    return cls(**kwargs)


def _upgrade(meta: dict, kind: str, file: Path) -> Header:
    """Any header this project ever wrote -> a version-2 ``Header`` of ``kind``."""
    fmt = meta.get("format")
    if fmt == FORMAT and meta.get("version", 1) >= 2:
        if meta.get("kind") != kind:
            raise InputError(f"{file} describes a {meta.get('kind')!r}, not a {kind!r}")
        return Header(kind, meta["config"], meta.get("lineage", {}), int(meta["version"]))
    if fmt == FORMAT and kind == "generator":  # version 1: the generator's fields at the top level
        return Header(kind, {k: meta[k] for k in GENERATOR_FIELDS if k in meta}, meta.get("lineage", {}), 1)
    if fmt == f"musicrl-{kind}":  # version 1 of embedder / quality / judges
        return Header(kind, meta["config"], meta.get("extra", {}), 1)
    if fmt is None and kind == "spectral-codec":  # version 1: codec.json was the bare config
        return Header(kind, meta, {}, 1)
    if fmt is None and kind == "lm-shards":  # version 1 of the lm recipe's best/lm.json
        return Header(kind, meta["lm"], {k: v for k, v in meta.items() if k != "lm"}, 1)
    raise InputError(f"{file} is not a musicrl {kind} description (format {fmt!r})")


def read_header(file: str | Path, kind: str) -> Header:
    """Read and check a JSON header (any version) of a module of ``kind``."""
    file = Path(file)
    try:
        meta = json.loads(file.read_text())
    except (OSError, json.JSONDecodeError, UnicodeDecodeError) as err:
        raise InputError(f"{file} is unreadable: {err}") from None
    if not isinstance(meta, dict):
        raise InputError(f"{file} is not a musicrl {kind} description")
    try:
        return _upgrade(meta, kind, file)
    except (KeyError, TypeError) as err:
        raise InputError(f"{file} is malformed: {err!r}") from None


def write_header(file: str | Path, kind: str, config, lineage: dict | None = None) -> Path:
    file = Path(file)
    file.write_text(json.dumps(Header(kind, plain_config(config), dict(lineage or {})).to_json(), indent=2))
    return file


def read_tensors(file: str | Path) -> dict[str, torch.Tensor]:
    """A safetensors file as a state dict; a missing or corrupt file is one InputError line."""
    try:
        return load_file(str(file))
    except (SafetensorError, OSError) as err:
        raise InputError(f"cannot read {file}: {err}") from None


def save_module(
    module: nn.Module, path: str | Path, kind: str, config, lineage: dict | None = None, stem: str | None = None
) -> Path:
    """``path/<stem>.safetensors`` (the state dict) + ``path/<stem>.json`` (the header). Returns ``path``."""
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    stem = stem or kind
    state = {k: v.detach().cpu().contiguous() for k, v in module.state_dict().items()}
    save_file(state, str(path / f"{stem}.safetensors"))
    write_header(path / f"{stem}.json", kind, config, lineage)
    return path


def load_module(path: str | Path, kind: str, stem: str | None = None) -> tuple[Header, dict[str, torch.Tensor]]:
    """Read what ``save_module`` wrote (or an older version of it): (header, state dict)."""
    path = Path(path)
    stem = stem or kind
    meta_file, weights = path / f"{stem}.json", path / f"{stem}.safetensors"
    if not meta_file.is_file() or not weights.is_file():
        raise InputError(f"{path} holds no {kind} model ({stem}.json + {stem}.safetensors)")
    return read_header(meta_file, kind), read_tensors(weights)
