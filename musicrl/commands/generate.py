"""``musicrl generate "PROMPT"``: WAV + JSON (+ codes .npy) per clip, byte-identical for the same seed.

``--best-of N --reward SPEC``: each clip is the best of N candidates by that reward (``musicrl.best_of_n``);
its sidecar adds best_of, the reward, every candidate's seed and reward, the chosen index and the measured
cost (so that sidecar, unlike the WAV, differs between runs in its seconds)."""

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
from models.long_form import MAX_LONG_DURATION
from models.sampling import SamplingParams
from musicrl.best_of_n import MAX_BEST_OF
from musicrl.rewards import TRAINING_REWARDS

MAX_NUM_SAMPLES = 1000  # clips per command: generated --batch-size at a time, so memory does not grow with it


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "generate",
        help="generate music from a text prompt",
        description=f"Generate clips from a prompt (at most {MAX_PROMPT_CHARS} characters). Each model has a "
        "maximum duration per sampling window: 8 s for the embedded default (its LM's 512 positions at 50 frames/s "
        "and training clips of 8 s), 30 s for MusicGen checkpoints.",
    )
    p.add_argument(
        "prompt",
        help="what to generate, in words (the embedded default reads its first 32 text tokens, about 25 "
        "words; a longer prompt is cut, with a warning)",
    )
    p.add_argument(
        "--model",
        default="default",
        help="'default', 'debug', or a checkpoint directory (musicrl or Hugging Face MusicGen); int8:MODEL serves "
        "MODEL with int8 LM weights on a CPU (docs/BENCHMARKS.md, int8 weights)",
    )
    p.add_argument(
        "--duration",
        type=float,
        default=8.0,
        help="seconds of audio (frames = duration x frame rate; default 8); beyond the model's maximum it is made "
        f"in sliding windows (--extend-stride), up to {MAX_LONG_DURATION:g} s; with --continue it counts the prompt",
    )
    p.add_argument(
        "--num-samples",
        type=int,
        default=1,
        help=f"clips to generate, 1 to {MAX_NUM_SAMPLES} (clip i uses seed + i; default 1)",
    )
    p.add_argument(
        "--batch-size",
        type=int,
        default=16,
        help="clips sampled at once; more clips are generated batch after batch and written as each batch "
        "finishes, so memory stays bounded (default 16)",
    )
    p.add_argument("--cfg", type=float, default=3.0, help="classifier-free guidance scale (1 = off)")
    p.add_argument("--temperature", type=float, default=1.0, help="softmax temperature, > 0")
    p.add_argument("--top-k", type=int, default=250, help="sample among the k most likely codes, >= 1")
    p.add_argument("--top-p", type=float, default=1.0, help="nucleus mass in (0, 1]; 1 = off")
    p.add_argument(
        "--seed", type=int, default=0,
        help="random seed of clip 0 (clip i uses seed + i); the same seed gives the same audio",
    )
    p.add_argument("--greedy", action="store_true", help="argmax decoding (ignores temperature/top-k/top-p)")
    p.add_argument("--save-codes", action="store_true", help="also write codes [K, T] as <id>.npy")
    p.add_argument(
        "--best-of",
        type=int,
        default=1,
        metavar="N",
        help=f"keep the best of N candidates per clip by --reward, 1 to {MAX_BEST_OF} (costs N x the sampling, "
        "decoding and scoring; default 1: plain generation)",
    )
    p.add_argument(
        "--reward",
        default=None,
        metavar="SPEC",
        help=f"what best-of-N keeps: {', '.join(TRAINING_REWARDS)} or a mix like 'adherence=1,quality=0.5' "
        "(default: adherence). Given with --best-of 1, the plain clip is scored and its reward recorded",
    )
    p.add_argument(
        "--reward-model",
        type=Path,
        default=None,
        metavar="DIR",
        help="preference reward model directory (musicrl train reward-model), for --reward preference (default: none)",
    )
    p.add_argument(
        "--embedder",
        type=Path,
        default=None,
        metavar="DIR",
        help="text-audio embedder for the adherence/diversity rewards (default: the shipped one)",
    )
    p.add_argument(
        "--quality",
        type=Path,
        default=None,
        metavar="DIR",
        help="quality model for the quality reward (default: the shipped one)",
    )
    p.add_argument(
        "--weights",
        default=None,
        metavar="SPEC",
        help="steer a steerable model (musicrl train clp, musicrl soup) to these objective weights, e.g. "
        "adherence=0.7,quality=0.3 (normalised to sum 1; default: the model's uniform weights)",
    )
    p.add_argument(
        "--continue",
        dest="continue_from",
        type=Path,
        default=None,
        metavar="FILE",
        help="continue this clip (WAV/FLAC/MP3/OGG, at most the model's maximum duration less one frame): the "
        "output starts with its own samples and codes, and --duration counts it (total length; default: none)",
    )
    p.add_argument(
        "--extend-stride",
        type=float,
        default=None,
        metavar="S",
        help=f"a --duration beyond the model's maximum (up to {MAX_LONG_DURATION:g} s) is made in windows of the "
        "maximum, each keeping the last (maximum - S) seconds of the one before as its prompt and adding S new "
        "seconds; S from one frame to the maximum less one frame (default: 0.6 x the maximum, audiocraft's 18 of 30 s)",
    )
    p.add_argument(
        "--stream",
        action="store_true",
        help="write audio while it is generated: OUT/streaming-seedN.partial.wav is replaced (atomically, always a "
        "valid WAV) every --stream-chunk seconds of new audio, then replaced by the clip's own files "
        "(one window: at most the model's maximum duration; not with --best-of)",
    )
    p.add_argument(
        "--stream-chunk",
        type=float,
        default=1.0,
        metavar="S",
        help="seconds of new audio per streamed chunk, 0.1 to 10 (default: 1)",
    )
    p.add_argument("--out", required=True, type=Path, help="output directory")
    p.set_defaults(func=run)


def _params(args: argparse.Namespace) -> SamplingParams:
    """The sampling parameters (their ranges are checked by the model's ``plan``; here only what the
    command line means differently: top-k 0 would mean "no limit")."""
    if args.top_k < 1:
        raise InputError(f"--top-k must be >= 1, got {args.top_k}")
    return SamplingParams(
        cfg=args.cfg, temperature=args.temperature, top_k=args.top_k, top_p=args.top_p, greedy=args.greedy
    )


def clip_id(prompt: str, model_hash: str, meta: dict) -> str:
    slug = re.sub(r"[^a-z0-9]+", "-", prompt.lower()).strip("-")[:32] or "clip"
    digest = hashlib.sha256(json.dumps([prompt, model_hash, meta], sort_keys=True).encode()).hexdigest()[:10]
    return f"{slug}-{digest}"


def _reward_weights(args: argparse.Namespace) -> dict[str, float] | None:
    """The best-of-N reward's weights from --reward (default adherence), or None when no candidate is
    scored (--best-of 1 without --reward: plain generation). Checked before any model is loaded."""
    from musicrl.rewards import parse_weights

    if not 1 <= args.best_of <= MAX_BEST_OF:
        raise InputError(f"--best-of must be from 1 to {MAX_BEST_OF}, got {args.best_of}")
    if args.greedy and args.best_of > 1:
        raise InputError("--best-of needs sampling: with --greedy every candidate is the same clip")
    scorers = (("--reward-model", args.reward_model), ("--embedder", args.embedder), ("--quality", args.quality))
    if args.best_of == 1 and args.reward is None:
        for flag, value in scorers:
            if value is not None:
                raise InputError(f"{flag} is read only by best-of-N's reward: add --best-of N (and --reward)")
        return None
    weights = parse_weights(args.reward or "adherence")
    if args.reward_model is not None and "preference" not in weights:
        raise InputError("--reward-model is read only by the preference reward: add preference to --reward")
    for flag, value in scorers[1:]:
        if value is not None and not value.is_dir():
            raise InputError(f"{flag} {value} is not a directory")
    return weights


def _load(args: argparse.Namespace):
    """The generator of --model, steered to --weights for a steerable model (refused for any other)."""
    from models.registry import load_generator
    from models.steerable import is_steerable, load_steerable, steered
    from musicrl.rewards import parse_weights

    if args.weights is None:
        return load_generator(args.model)
    weights = parse_weights(args.weights, "--weights")
    if not is_steerable(args.model):
        raise InputError(
            f"--weights steers a steerable model (musicrl train clp, musicrl soup); {args.model} is not one"
        )
    gen, steer = load_steerable(args.model)
    return steered(gen, steer, weights)


def run(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from musicrl.best_of_n import best_of_n, describe
    from musicrl.continuation import join_prompt, long_form_record
    from musicrl.rewards import build_reward

    params = _params(args)
    if not 1 <= args.num_samples <= MAX_NUM_SAMPLES:
        raise InputError(f"--num-samples must be from 1 to {MAX_NUM_SAMPLES}, got {args.num_samples}")
    if args.batch_size < 1:
        raise InputError(f"--batch-size must be >= 1, got {args.batch_size}")
    weights = _reward_weights(args)
    if args.stream and (weights is not None or not 0.1 <= args.stream_chunk <= 10):
        raise InputError("--stream takes --stream-chunk from 0.1 to 10 s and does not combine with --best-of/--reward")
    if args.out.exists() and not args.out.is_dir():
        raise InputError(f"--out {args.out} exists and is not a directory")
    gen = _load(args)
    audio_prompt, extra = _continuation(args, gen, weights)
    # Every check of the request (prompt, duration within the model's maximum, parameters, reward), once,
    # before anything is generated or written.
    batch = min(args.batch_size, args.num_samples)
    long = dict(prompt_codes=None if audio_prompt is None else audio_prompt.codes, long_form=weights is None,
                extend_stride=args.extend_stride)
    plan = gen.plan([args.prompt], args.duration, params, seeds=args.seed, samples_per_prompt=batch, **long)
    prompt, frames = plan.prompts[0], plan.frames
    if args.stream and len(plan.windows) > 1:
        raise InputError(f"--stream makes one window: --duration at most {gen.max_duration:g} s for this model")
    if long_form := long_form_record(gen, plan):
        extra["long_form"] = long_form
    cut = gen.prompt_cut_warning(prompt)
    if cut is not None:
        print(f"musicrl generate: warning: {cut}", file=sys.stderr)
    reward_info: dict = {}
    if weights is not None:  # sibling groups of a diversity reward = the N candidates of a clip
        reward, reward_info = build_reward(
            weights, gen.sample_rate, args.best_of, args.embedder or "", args.quality or "", args.reward_model or ""
        )

    starts = range(0, args.num_samples, batch)
    steps = plan.steps(gen.lm.cfg.num_codebooks)  # every sliding window's steps
    bar = tqdm(total=steps * len(starts), desc="generating", unit="step", file=sys.stderr, disable=None)
    args.out.mkdir(parents=True, exist_ok=True)
    for start in starts:  # batch after batch: clip i always uses seed + i, whatever the batch size
        count = min(batch, args.num_samples - start)

        def on_step(done: int, total: int, offset: int = bar.n) -> None:
            bar.update(offset + done - bar.n)

        if weights is None:
            chunk = gen.plan([args.prompt], args.duration, params, seeds=args.seed + start, samples_per_prompt=count,
                             **long)
            if args.stream:
                out, stream_info = _stream(args, gen, chunk, on_step)
                extra["stream"] = stream_info
            else:
                out = gen.render(chunk, on_step=on_step)
            best = None
            if audio_prompt is not None:  # the prompt's own samples at the start
                out.audio = join_prompt(audio_prompt, out.audio)
        else:
            out = best = best_of_n(
                gen, reward, [prompt], args.duration, params, args.seed + start, args.best_of, count, on_step=on_step
            )
        for i in range(count):
            write_clip(args, gen, prompt, frames, params, out, best, i, start + i, weights, reward_info, extra)
    bar.close()
    if best is not None:
        c = best.cost
        print(
            f"best-of-{args.best_of} by {describe(weights)}: {c['forward_passes']} forward passes per clip "
            f"({args.best_of}x plain), "
            f"sampling {c['sample_s']:.2f} s, decoding {c['decode_s']:.2f} s, scoring {c['score_s']:.2f} s, "
            f"total {c['total_s']:.2f} s for {c['clips']} clip(s) of the last batch",
            file=sys.stderr,
        )
    return 0


def _stream(args: argparse.Namespace, gen, plan, on_step):
    """Sample ``plan`` with ``MusicGenerator.stream``: after each chunk every row's audio so far replaces
    OUT/streaming-seedN.partial.wav (removed once the clip is written). Returns the AudioOutput of the whole
    batch and what the sidecar says of the stream."""
    import time

    import torch

    from models.audio_io import atomic_write, wav_bytes
    from models.generator import AudioOutput

    partial = [args.out / f"streaming-seed{seed}.partial.wav" for seed in plan.seeds]
    pieces, first, last, t0 = [], None, None, time.perf_counter()
    try:
        for chunk in gen.stream(plan, chunk_seconds=args.stream_chunk, on_step=on_step):
            pieces.append(chunk.audio)
            if first is None:
                first = time.perf_counter() - t0
                print(f"musicrl generate: first audio after {first:.2f} s: {partial[0]}", file=sys.stderr)
            so_far = torch.cat(pieces, dim=-1)
            for row, path in enumerate(partial):
                atomic_write(path, wav_bytes(so_far[row], gen.sample_rate))
            last = chunk
        audio = torch.cat(pieces, dim=-1)
        out = AudioOutput(audio, last.codes, gen.sample_rate, plan.rows, list(plan.seeds), gains=last.gains)
        return out, {"chunks": len(pieces), "chunk_s": args.stream_chunk, "first_audio_s": round(first, 3),
                     "total_s": round(time.perf_counter() - t0, 3)}
    finally:  # the clip's own files are written next; a stopped run leaves no partial file either
        for path in partial:
            path.unlink(missing_ok=True)


def _continuation(args: argparse.Namespace, gen, weights) -> tuple:
    """--continue FILE read as the model's prompt (or None), and what the sidecar says about it."""
    from musicrl.continuation import read_prompt

    if args.continue_from is None:
        return None, {}
    if weights is not None:
        raise InputError("--continue does not combine with --best-of / --reward")
    audio_prompt = read_prompt(gen, args.continue_from)
    return audio_prompt, {"continuation": audio_prompt.record()}


def write_clip(args, gen, prompt, frames, params, out, best, i, index, weights, reward_info, extra=None) -> None:
    """Row ``i`` of a batch, clip ``index`` of the command: WAV, JSON sidecar (and codes), atomically."""
    from models.audio_io import PEAK_CEILING, atomic_write, wav_bytes
    from musicrl.best_of_n import describe

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
        "index": index,
    }
    if out.gains is not None:  # the decoded waveform x gain: scaled down when its peak passed the ceiling
        meta["peak_normalization"] = {"ceiling": PEAK_CEILING, "gain": round(float(out.gains[i]), 6)}
    meta.update(extra or {})  # continuation: the prompt file; long_form: the sliding windows
    if "steer" in gen.meta:
        meta["weights"] = gen.meta["steer"]
    if best is not None:  # "seed" is the row's; the kept clip is plain generation with "chosen_seed"
        meta.update(
            best_of=args.best_of,
            reward=describe(weights),
            **reward_info,
            **best.record(i),
        )
    # the id: the request and the model, not how the audio was delivered or what was measured
    request = {k: v for k, v in meta.items() if k not in ("stream", "peak_normalization")}
    cid = clip_id(prompt, gen.checkpoint_hash, request)
    meta["id"] = cid
    if best is not None:
        meta["cost"] = best.cost
    if args.save_codes:
        buf = io.BytesIO()
        np.save(buf, out.codes[i].numpy().astype(np.int64))
        atomic_write(args.out / f"{cid}.npy", buf.getvalue())
    atomic_write(args.out / f"{cid}.wav", wav_bytes(out.audio[i], gen.sample_rate))
    atomic_write(args.out / f"{cid}.json", (json.dumps(meta, indent=2) + "\n").encode())
    print(args.out / f"{cid}.wav")
