"""``musicrl bench``: performance checks reported as ratios against a baseline run in the same process."""

from __future__ import annotations

import argparse
from pathlib import Path

from models.errors import InputError


def _list(cast):
    def parse(text: str):
        try:
            return [cast(x) for x in text.split(",") if x]
        except ValueError:
            raise argparse.ArgumentTypeError(f"not a comma-separated list: {text!r}") from None

    return parse


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("bench", help="benchmarks (ratios against a baseline measured in the same run)")
    which = p.add_subparsers(dest="bench", required=True)
    s = which.add_parser("sampler", help="our decoding vs transformers' MusicGen generate on the same weights")
    s.add_argument("--sizes", type=_list(str), default=["5M", "40M", "musicgen-small"])
    s.add_argument("--batches", type=_list(int), default=[1, 8])
    s.add_argument("--cfgs", type=_list(float), default=[1.0, 3.0])
    s.add_argument("--frames", type=int, default=50, help="frames per clip (50 = 1 s at 50 Hz)")
    s.add_argument("--repeats", type=int, default=3)
    s.add_argument("--out", type=Path, default=None, help="write sampler.jsonl and sampler.md here")
    s.add_argument("--threads", type=int, default=0, help="torch threads for both implementations (0 = default)")
    s.set_defaults(func=run_sampler)
    r = which.add_parser("rtf", help="seconds to generate one clip at batch 1 and the real-time factor")
    r.add_argument("--model", default="default")
    r.add_argument("--duration", type=float, default=8.0)
    r.add_argument("--cfg", type=float, default=3.0)
    r.add_argument("--repeats", type=int, default=3)
    r.add_argument("--threads", type=int, default=0, help="torch threads (0 = torch's default)")
    r.set_defaults(func=run_rtf)
    c = which.add_parser("cfg", help="clips/s of a CFG-free (distilled) model vs the base model with CFG")
    c.add_argument("--model", default="default", help="the base model (sampled with --cfg)")
    c.add_argument("--distilled", default=None, help="a distilled checkpoint (default: the base weights without CFG)")
    c.add_argument("--batches", type=_list(int), default=[1, 2, 4, 8, 16])
    c.add_argument("--duration", type=float, default=2.0)
    c.add_argument("--cfg", type=float, default=3.0)
    c.add_argument("--threads", type=int, default=0, help="torch threads (0 = torch's default)")
    c.set_defaults(func=run_cfg)


def run_cfg(args: argparse.Namespace) -> int:
    from musicrl.bench.cfg import run_cfg_bench

    if not args.batches or min(args.batches) < 1 or args.threads < 0:
        raise InputError("every batch must be >= 1 and --threads >= 0")
    run_cfg_bench(args.model, args.distilled, args.batches, args.duration, args.cfg, args.threads)
    return 0


def run_rtf(args: argparse.Namespace) -> int:
    from musicrl.bench.rtf import run_rtf_bench

    if args.repeats < 1 or args.threads < 0:
        raise InputError("--repeats must be >= 1 and --threads >= 0")
    run_rtf_bench(args.model, args.duration, args.cfg, args.repeats, args.threads)
    return 0


def run_sampler(args: argparse.Namespace) -> int:
    from musicrl.bench.sampler import SIZES, run_sampler_bench

    unknown = [s for s in args.sizes if s not in SIZES]
    if unknown:
        raise InputError(f"unknown size(s) {', '.join(unknown)}; choose from {', '.join(SIZES)}")
    if args.frames < 1 or args.repeats < 1 or not args.batches or min(args.batches) < 1:
        raise InputError("--frames, --repeats and every batch must be >= 1")
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    run_sampler_bench(args.sizes, args.frames, args.batches, args.cfgs, args.repeats, args.out)
    return 0
