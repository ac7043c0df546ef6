"""Typed configs: nested dataclasses, overridden by a YAML file, then by ``key=value`` arguments.

    cfg = load_config(Config, Path("configs/lm.yaml"), ["optim.lr=3e-4", "steps=2000"])

Unknown keys and values of the wrong type are errors (``InputError``: one line, exit code 2).
"""

from __future__ import annotations

import dataclasses
import types
import typing
from pathlib import Path
from typing import Any, TypeVar

import yaml

from models.errors import InputError

T = TypeVar("T")


def _coerce(value: Any, typ: Any, key: str) -> Any:
    origin = typing.get_origin(typ)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(typ) if a is not type(None)]
        if value is None:
            return None
        return _coerce(value, args[0], key)
    if dataclasses.is_dataclass(typ):
        if not isinstance(value, dict):
            raise InputError(f"config key {key!r} must be a mapping")
        return _build(typ, value, key + ".")
    if origin in (list, tuple):
        if not isinstance(value, list | tuple):
            raise InputError(f"config key {key!r} must be a list, got {value!r}")
        (inner, *_) = typing.get_args(typ) or (Any,)
        items = [_coerce(v, inner, key) for v in value]
        return items if origin is list else tuple(items)
    if origin is dict or typ is dict:
        if not isinstance(value, dict):
            raise InputError(f"config key {key!r} must be a mapping")
        return dict(value)
    if typ is Any:
        return value
    if typ is bool:
        if isinstance(value, bool):
            return value
        raise InputError(f"config key {key!r} must be true or false, got {value!r}")
    if typ is float and isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    if typ is float and isinstance(value, str):  # YAML 1.1 reads "3e-4" (no dot) as a string
        try:
            return float(value)
        except ValueError:
            pass
    if typ is int and isinstance(value, int) and not isinstance(value, bool):
        return value
    if typ is str and isinstance(value, str | int | float) and not isinstance(value, bool):
        return str(value)
    if typ is Path and isinstance(value, str | Path):
        return Path(value)
    raise InputError(f"config key {key!r} must be {getattr(typ, '__name__', typ)}, got {value!r}")


def _build(cls: type[T], values: dict, prefix: str = "") -> T:
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(values) - set(fields))
    if unknown:
        raise InputError(f"unknown config key {prefix}{unknown[0]!r}; known: {', '.join(sorted(fields))}")
    kwargs = {name: _coerce(v, hints[name], prefix + name) for name, v in values.items()}
    try:
        return cls(**kwargs)
    except (TypeError, ValueError) as err:
        raise InputError(f"invalid config {prefix.rstrip('.') or cls.__name__}: {err}") from None


def to_dict(cfg: Any) -> dict:
    """A dataclass config as plain JSON/YAML-able values."""

    def plain(v):
        if isinstance(v, Path):
            return str(v)
        if isinstance(v, list | tuple):
            return [plain(x) for x in v]
        if isinstance(v, dict):
            return {k: plain(x) for k, x in v.items()}
        return v

    return {k: plain(v) for k, v in dataclasses.asdict(cfg).items()}


def _set(tree: dict, dotted: str, value: Any) -> None:
    *parents, leaf = dotted.split(".")
    for p in parents:
        tree = tree.setdefault(p, {})
        if not isinstance(tree, dict):
            raise InputError(f"cannot set {dotted!r}: {p!r} is not a section")
    tree[leaf] = value


def _merge(base: dict, update: dict) -> dict:
    out = dict(base)
    for k, v in update.items():
        out[k] = _merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def load_config(cls: type[T], path: Path | None = None, overrides: list[str] | tuple[str, ...] = ()) -> T:
    """Defaults of ``cls`` <- YAML file <- ``key=value`` overrides (values parsed as YAML scalars)."""
    tree = to_dict(cls())
    if path is not None:
        try:
            loaded = yaml.safe_load(Path(path).read_text()) or {}
        except (OSError, yaml.YAMLError) as err:
            raise InputError(f"cannot read config {path}: {str(err).splitlines()[0]}") from None
        if not isinstance(loaded, dict):
            raise InputError(f"config {path} must be a YAML mapping")
        tree = _merge(tree, loaded)
    for item in overrides:
        key, sep, raw = item.partition("=")
        if not sep or not key:
            raise InputError(f"override {item!r} is not key=value")
        try:
            value = yaml.safe_load(raw) if raw else ""
        except yaml.YAMLError:
            value = raw
        _set(tree, key.strip(), value)
    return _build(cls, tree)


def dump_config(cfg: Any, path: Path) -> None:
    Path(path).write_text(yaml.safe_dump(to_dict(cfg), sort_keys=False))


def with_overrides(cfg: T, values: dict) -> T:
    """``cfg`` with the (possibly nested) ``values`` merged in and re-checked like a YAML file's."""
    return _build(type(cfg), _merge(to_dict(cfg), values))
