"""``musicrl soup adherence=RUN_A quality=RUN_B --out SOUP``: rewarded soups as one steerable model.

Rewarded soups (Ramé et al. 2023, arXiv:2306.04488): one RL finetune per reward from a shared init, then weight
interpolation picks a point of the trade-off. Written as a steerable checkpoint (``models.steerable``, scope
``all``: θ(w) = Σ_i w_i θ_i over every LM parameter), it is served, generated (``generate --weights``) and
evaluated (``eval --weights``) exactly like a CLP model (``musicrl train clp``) — the comparison of the two
then differs only in how the θ_i were trained.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from models.errors import InputError


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "soup",
        help="combine one finetune per objective into a steerable model (rewarded soups)",
        description="Combine models finetuned from one init, one per objective, into a steerable checkpoint whose "
        "weights interpolate them: musicrl soup adherence=runs/rl_adh/model quality=runs/rl_q/model --out soup",
    )
    p.add_argument("models", nargs="+", metavar="OBJECTIVE=DIR", help="two or more: an objective name and its model")
    p.add_argument("--out", type=Path, required=True, help="the steerable checkpoint directory to write")
    p.set_defaults(func=run)


def parse_members(items: list[str]) -> dict[str, str]:
    """``["adherence=DIR", ...]`` -> {objective: DIR}; names must be training rewards, each once."""
    from musicrl.rewards import TRAINING_REWARDS

    members: dict[str, str] = {}
    for item in items:
        name, sep, path = item.partition("=")
        if not sep or not path:
            raise InputError(f"{item!r} is not OBJECTIVE=DIR (e.g. adherence=runs/rl_adh/model)")
        if name not in TRAINING_REWARDS:
            raise InputError(f"unknown objective {name!r}; choose from {', '.join(TRAINING_REWARDS)}")
        if name in members:
            raise InputError(f"objective {name} is given twice")
        members[name] = path
    if len(members) < 2:
        raise InputError("a soup needs two or more models, one per objective")
    return members


def run(args: argparse.Namespace) -> int:
    from models.checkpoint import save_checkpoint
    from models.registry import load_generator
    from models.steerable import SteerableLM

    members = parse_members(args.models)
    if args.out.exists() and not args.out.is_dir():
        raise InputError(f"--out {args.out} exists and is not a directory")
    gens = {name: load_generator(path) for name, path in members.items()}
    first = next(iter(gens.values()))
    for name, gen in gens.items():
        if gen.codec.describe() != first.codec.describe() or gen.conditioner.describe() != first.conditioner.describe():
            raise InputError(f"the {name} model uses another codec or text conditioner than the others")
    steer = SteerableLM.from_models({name: gen.lm for name, gen in gens.items()}, scope="all")
    steer.set_weights({name: 1.0 for name in gens})
    first.lm = steer.lm
    lineage = {"parents": [gen.checkpoint_hash for gen in gens.values()], "step": 0, "recipe": "soup",
               "members": members, "objectives": list(gens), "scope": "all"}
    save_checkpoint(first, args.out, lineage=lineage)
    steer.save(args.out, lineage)
    print(f"wrote {args.out}: a steerable soup of {', '.join(f'{n}={p}' for n, p in members.items())}")
    return 0
