"""``musicrl train RECIPE [--config FILE.yaml] [key=value ...]``: one recipe module per method."""

from __future__ import annotations

import argparse
import importlib
import pkgutil
from pathlib import Path

from models.errors import InputError


def recipe_names() -> list[str]:
    import musicrl.recipes

    return sorted(
        m.name.replace("_", "-") for m in pkgutil.iter_modules(musicrl.recipes.__path__) if not m.name.startswith("_")
    )


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("train", help="run a training recipe", description=f"Recipes: {', '.join(recipe_names())}.")
    p.add_argument("recipe")
    p.add_argument("--config", type=Path, default=None, help="YAML file overriding the recipe's defaults")
    p.add_argument("overrides", nargs="*", help="key=value overrides, e.g. optim.lr=3e-4")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from musicrl.config import load_config

    names = recipe_names()
    if args.recipe not in names:
        raise InputError(f"unknown recipe {args.recipe!r}; choose from {', '.join(names)}")
    module = importlib.import_module(f"musicrl.recipes.{args.recipe.replace('-', '_')}")
    cfg = load_config(module.Config, args.config, args.overrides)
    module.main(cfg)
    return 0
