"""``musicrl merge A B --lam 0.5 --out C``: weight interpolation of two checkpoints of one architecture.

Methods (Cideron et al. 2024, arXiv:2410.06084; WARP, arXiv:2406.16768): ``lerp`` (1 - lam) A + lam B;
``slerp`` per-tensor SLERP of the task vectors A - INIT and B - INIT (needs --init); with --init and --eta,
LITI moves the result toward INIT: (1 - eta) INIT + eta merged. The app's quality/diversity slider calls the
same ``models.merge`` functions.

When B is a LoRA adapter directory (``musicrl train lm init=A lora.rank=R`` writes OUT/adapter), the result
is A + lam * (the adapter's delta), lam 1 by default; the adapter must have been trained on A (same
checkpoint hash).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from models.errors import InputError


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("merge", help="interpolate the weights of two checkpoints (LERP, SLERP of task vectors, LITI)")
    p.add_argument("a", help="checkpoint A (lam = 0)")
    p.add_argument("b", help="checkpoint B (lam = 1), or a LoRA adapter directory trained on A")
    p.add_argument("--lam", type=float, default=None,
                   help="interpolation weight in [0, 1] (required for two checkpoints); with an adapter, "
                   "the share of its delta in [0, 2] (default 1)")
    p.add_argument(
        "--method", choices=("lerp", "slerp"), default="lerp",
        help="lerp: weight interpolation; slerp: per-tensor SLERP of the task vectors (needs --init)",
    )
    p.add_argument("--init", default=None, help="the shared initial checkpoint (for slerp and --eta)")
    p.add_argument("--eta", type=float, default=None, help="LITI: move the merge toward --init, 1 = no move")
    p.add_argument("--out", type=Path, required=True, help="directory of the merged checkpoint")
    p.set_defaults(func=run)


def merge_states(
    a: dict, b: dict, lam: float, method: str = "lerp", init: dict | None = None, eta: float | None = None
) -> dict:
    """The merged LM state dict; shapes and keys validated (ValueError names the first mismatch)."""
    from models.merge import lerp, liti, slerp_task_vectors

    if method == "slerp":
        if init is None:
            raise ValueError("slerp interpolates task vectors: it needs the initial checkpoint (--init)")
        merged = slerp_task_vectors(init, a, b, lam)
    else:
        merged = lerp(a, b, lam)
    if eta is not None:
        if init is None:
            raise ValueError("--eta (LITI) moves toward the initial checkpoint: it needs --init")
        merged = liti(init, merged, eta)
    return merged


def run(args: argparse.Namespace) -> int:
    from models.checkpoint import save_checkpoint
    from models.registry import load_generator
    from musicrl.lora import is_adapter_dir

    if is_adapter_dir(args.b):
        return run_adapter(args)
    if args.lam is None:
        raise InputError("--lam is required to merge two checkpoints")
    if not 0.0 <= args.lam <= 1.0:
        raise InputError(f"--lam must be in [0, 1], got {args.lam}")
    if args.eta is not None and not 0.0 <= args.eta <= 1.0:
        raise InputError(f"--eta must be in [0, 1], got {args.eta}")
    if args.out.exists() and not args.out.is_dir():
        raise InputError(f"--out {args.out} exists and is not a directory")
    gen_a, gen_b = load_generator(args.a), load_generator(args.b)
    gen_init = load_generator(args.init) if args.init else None
    if gen_a.lm.cfg != gen_b.lm.cfg or (gen_init is not None and gen_init.lm.cfg != gen_a.lm.cfg):
        raise InputError("the checkpoints have different LM architectures; only one architecture can be merged")
    if gen_a.codec.describe() != gen_b.codec.describe() or gen_a.conditioner.describe() != gen_b.conditioner.describe():
        raise InputError("the checkpoints use different codecs or text conditioners")
    try:
        state = merge_states(
            gen_a.lm.state_dict(),
            gen_b.lm.state_dict(),
            args.lam,
            args.method,
            gen_init.lm.state_dict() if gen_init else None,
            args.eta,
        )
    except ValueError as err:
        raise InputError(str(err)) from None
    gen_a.lm.load_state_dict(state)
    parents = [gen_a.checkpoint_hash, gen_b.checkpoint_hash] + ([gen_init.checkpoint_hash] if gen_init else [])
    lineage = {
        "parents": parents,
        "step": 0,
        "recipe": "merge",
        "merge": {"method": args.method, "lam": args.lam, "eta": args.eta, "a": args.a, "b": args.b, "init": args.init},
    }
    gen_a.cfg_free = gen_a.cfg_free and gen_b.cfg_free
    save_checkpoint(gen_a, args.out, lineage=lineage)
    print(args.out)
    return 0


def run_adapter(args: argparse.Namespace) -> int:
    """A + lam * adapter delta, written as a musicrl checkpoint (lineage: A's hash and the adapter)."""
    from models.checkpoint import save_checkpoint
    from models.registry import load_generator
    from musicrl.lora import load_adapter, merge_adapter

    lam = 1.0 if args.lam is None else args.lam
    if not 0.0 <= lam <= 2.0:
        raise InputError(f"--lam must be in [0, 2] with an adapter, got {lam}")
    if args.method != "lerp" or args.init is not None or args.eta is not None:
        raise InputError("--method slerp, --init and --eta apply to two checkpoints, not to an adapter")
    if args.out.exists() and not args.out.is_dir():
        raise InputError(f"--out {args.out} exists and is not a directory")
    adapter = load_adapter(args.b)
    base = load_generator(args.a)
    if adapter.base_hash != base.checkpoint_hash:
        raise InputError(f"the adapter {args.b} was trained on {adapter.base_model} ({adapter.base_hash}), "
                         f"not on {args.a} ({base.checkpoint_hash})")
    base.lm.load_state_dict(merge_adapter(base.lm, adapter, lam))
    lineage = {"parents": [base.checkpoint_hash], "step": 0, "recipe": "merge",
               "merge": {"method": "lora", "lam": lam, "a": args.a, "adapter": str(args.b),
                         "lora": adapter.config["musicrl"]["lora"]}}
    save_checkpoint(base, args.out, lineage=lineage)
    print(args.out)
    return 0
