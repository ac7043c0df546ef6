"""``musicrl generate "PROMPT"``: WAV + JSON (+ codes .npy) per clip, byte-identical for the same seed."""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import re
import sys
from pathlib import Path

import numpy as np

from models.errors import InputError
from models.generator import MAX_PROMPT_CHARS
from models.sampling import SamplingParams


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "generate",
        help="generate music from a text prompt",
        description=f"Generate clips from a prompt (at most {MAX_PROMPT_CHARS} characters).",
    )
    p.add_argument("prompt")
    p.add_argument(
        "--model",
        default="default",
        help="'default', 'debug', or a checkpoint directory (musicrl or Hugging Face MusicGen)",
    )
    p.add_argument("--duration", type=float, default=8.0, help="seconds of audio (frames = duration x frame rate)")
    p.add_argument("--num-samples", type=int, default=1, help="clips to generate (clip i uses seed + i)")
    p.add_argument("--cfg", type=float, default=3.0, help="classifier-free guidance scale (1 = off)")
    p.add_argument("--temperature", type=float, default=1.0)
    p.add_argument("--top-k", type=int, default=250)
    p.add_argument("--top-p", type=float, default=1.0, help="nucleus mass in (0, 1]; 1 = off")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--greedy", action="store_true", help="argmax decoding (ignores temperature/top-k/top-p)")
    p.add_argument("--save-codes", action="store_true", help="also write codes [K, T] as <id>.npy")
    p.add_argument("--out", required=True, type=Path, help="output directory")
    p.set_defaults(func=run)


def _params(args: argparse.Namespace) -> SamplingParams:
    """The sampling parameters (their ranges are checked by the model's ``plan``; here only what the
    command line means differently: top-k 0 would mean "no limit")."""
    if args.top_k < 1:
        raise InputError(f"--top-k must be >= 1, got {args.top_k}")
    return SamplingParams(cfg=args.cfg, temperature=args.temperature, top_k=args.top_k, top_p=args.top_p,
                          greedy=args.greedy)


def clip_id(prompt: str, model_hash: str, meta: dict) -> str:
    slug = re.sub(r"[^a-z0-9]+", "-", prompt.lower()).strip("-")[:32] or "clip"
    digest = hashlib.sha256(json.dumps([prompt, model_hash, meta], sort_keys=True).encode()).hexdigest()[:10]
    return f"{slug}-{digest}"


def run(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from models.audio_io import atomic_write, wav_bytes
    from models.registry import load_generator

    params = _params(args)
    if args.num_samples < 1:
        raise InputError(f"--num-samples must be >= 1, got {args.num_samples}")
    if args.out.exists() and not args.out.is_dir():
        raise InputError(f"--out {args.out} exists and is not a directory")
    gen = load_generator(args.model)
    # Every check of the request (prompt, duration within the model's maximum, parameters), once,
    # before anything is generated or written.
    plan = gen.plan([args.prompt], args.duration, params, seeds=args.seed, samples_per_prompt=args.num_samples)
    prompt, frames = plan.prompts[0], plan.frames

    bar = tqdm(
        total=frames + gen.lm.cfg.num_codebooks - 1, desc="generating", unit="step", file=sys.stderr, disable=None
    )
    on_step = lambda done, total: bar.update(done - bar.n)
    out = gen.render(plan, on_step=on_step)
    bar.close()

    args.out.mkdir(parents=True, exist_ok=True)
    for i in range(out.codes.shape[0]):
        meta = {
            "prompt": prompt,
            "model": gen.name,
            "checkpoint_hash": gen.checkpoint_hash,
            "duration": frames / gen.frame_rate,
            "requested_duration": args.duration,
            "seed": out.seeds[i],
            "cfg": params.cfg,
            "temperature": params.temperature,
            "top_k": params.top_k,
            "top_p": params.top_p,
            "greedy": params.greedy,
            "sample_rate": gen.sample_rate,
            "frame_rate": gen.frame_rate,
            "codes_shape": list(out.codes[i].shape),
            "num_samples": args.num_samples,
            "index": i,
        }
        cid = clip_id(prompt, gen.checkpoint_hash, meta)
        meta["id"] = cid
        if args.save_codes:
            buf = io.BytesIO()
            np.save(buf, out.codes[i].numpy().astype(np.int64))
            atomic_write(args.out / f"{cid}.npy", buf.getvalue())
        atomic_write(args.out / f"{cid}.wav", wav_bytes(out.audio[i], gen.sample_rate))
        atomic_write(args.out / f"{cid}.json", (json.dumps(meta, indent=2) + "\n").encode())
        print(args.out / f"{cid}.wav")
    return 0
