"""``musicrl export MODEL --format hf --out OUT``: a model back in the Hugging Face MusicGen layout.

For models whose parts MusicGen has (a T5 text encoder, EnCodec): a Hugging Face MusicGen directory
itself, or a musicrl checkpoint grown from one (finetuned, RLHF'd, merged). The written directory loads with
``transformers.MusicgenForConditionalGeneration.from_pretrained(OUT)``; before it is moved into place it is
reloaded that way and its logits compared with ours (``--no-verify`` skips that). See ``models.hf_export``.
"""

from __future__ import annotations

import argparse
from pathlib import Path


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "export",
        help="write a model in another layout (hf: a transformers MusicGen directory)",
        description="Write MODEL (a Hugging Face MusicGen directory or a musicrl checkpoint with a T5 conditioner "
        "and an EnCodec codec) as a directory that transformers' MusicgenForConditionalGeneration loads.",
    )
    p.add_argument("model", help="a checkpoint directory or a registry name (default and debug cannot be exported)")
    p.add_argument("--format", choices=("hf",), default="hf",
                   help="hf = transformers' MusicGen layout (default: hf, the only one)")
    p.add_argument("--out", type=Path, required=True,
                   help="directory to write; must not exist or be empty unless --overwrite")
    p.add_argument("--overwrite", action="store_true",
                   help="replace a non-empty --out (default: off; the old one is replaced only after success)")
    p.add_argument("--no-verify", action="store_true",
                   help="skip reloading OUT with transformers and comparing its logits with ours "
                   "(default: verify, max |difference| <= 1e-4)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from models.hf_export import (
        VERIFY_TOLERANCE,
        check_export_dir,
        checkpoint_problems,
        export_hf_musicgen,
        refuse_unexportable,
    )
    from models.registry import DEFAULT_DIR, load_generator

    check_export_dir(args.out, args.overwrite)  # before the (slow) load
    header_dir = DEFAULT_DIR if args.model == "default" else Path(args.model)
    if args.model != "debug" and (header_dir / "musicrl.json").is_file():  # refuse from the header, unloaded
        refuse_unexportable(str(args.model), checkpoint_problems(header_dir))
    gen = load_generator(args.model)
    result = export_hf_musicgen(
        gen,
        args.out,
        lineage={"recipe": "export", "format": args.format, "model": str(args.model)},
        overwrite=args.overwrite,
        verify=not args.no_verify,
    )
    if result.max_abs_diff is None:
        print(f"{result.path} (not verified)")
    else:
        print(f"{result.path} (verified: transformers' logits differ from ours by at most "
              f"{result.max_abs_diff:.2e}, tolerance {VERIFY_TOLERANCE:g})")
    return 0
