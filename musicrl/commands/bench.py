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
    s.add_argument("--sizes", type=_list(str), default=["5M", "40M", "musicgen-small"],
                   help="random LM sizes to time, comma-separated")
    s.add_argument("--batches", type=_list(int), default=[1, 8], help="batch sizes, comma-separated")
    s.add_argument(
        "--cfgs", type=_list(float), default=[1.0, 3.0],
        help="guidance scales (1 = no CFG), comma-separated",
    )
    s.add_argument("--frames", type=int, default=50, help="frames per clip (50 = 1 s at 50 Hz)")
    s.add_argument("--repeats", type=int, default=3, help="timed repeats; the median is reported")
    s.add_argument("--out", type=Path, default=None, help="write sampler.jsonl and sampler.md here")
    s.set_defaults(func=run_sampler)
    r = which.add_parser("rtf", help="seconds to generate a batch of clips and the real-time factor")
    r.add_argument("--model", default="default", help="registry name or checkpoint directory")
    r.add_argument("--duration", type=float, default=8.0, help="seconds of audio (at most the model's maximum)")
    r.add_argument("--cfg", type=float, default=3.0, help="guidance scale (1 = no CFG)")
    r.add_argument("--repeats", type=int, default=3, help="timed repeats; the median is reported")
    r.add_argument("--batch", type=int, default=1, help="clips per call (RTF = call time / (batch x duration))")
    r.set_defaults(func=run_rtf)
    c = which.add_parser("cfg", help="clips/s of a CFG-free (distilled) model vs the base model with CFG")
    c.add_argument("--model", default="default", help="the base model (sampled with --cfg)")
    c.add_argument("--distilled", default=None, help="a distilled checkpoint (default: the base weights without CFG)")
    c.add_argument("--batches", type=_list(int), default=[1, 2, 4, 8, 16], help="batch sizes, comma-separated")
    c.add_argument("--duration", type=float, default=2.0, help="seconds per clip")
    c.add_argument("--cfg", type=float, default=3.0, help="the base model's guidance scale")
    c.set_defaults(func=run_cfg)
    q = which.add_parser("int8", help="the int8 LM (--model int8:SPEC) against the float one: sampling time and "
                         "logit error, measured in the same process")
    q.add_argument("--model", default="default", help="the float model")
    q.add_argument("--batches", type=_list(int), default=[1, 16], help="batch sizes, comma-separated")
    q.add_argument("--duration", type=float, default=4.0, help="seconds per clip")
    q.add_argument("--cfg", type=float, default=3.0, help="guidance scale (1 = no CFG)")
    q.add_argument("--repeats", type=int, default=3, help="interleaved repeats; the median is reported")
    q.add_argument("--out", type=Path, default=None, help="write the result as JSON to this file (default: none)")
    q.set_defaults(func=run_int8)
    st = which.add_parser("stream", help="time to first audio and the whole stream vs one-shot rendering, and the "
                          "joined stream's distance to the one-shot decode")
    st.add_argument("--model", default="default", help="registry name or checkpoint directory")
    st.add_argument("--duration", type=float, default=8.0, help="seconds of audio (one window)")
    st.add_argument("--chunks", type=_list(float), default=[0.5, 1.0], help="chunk lengths in seconds, comma-separated")
    st.add_argument("--first-chunk", type=float, default=None,
                    help="seconds of the first chunk alone (default: the chunk's; the app uses 0.25)")
    st.add_argument("--cfg", type=float, default=3.0, help="guidance scale (1 = no CFG)")
    st.add_argument("--repeats", type=int, default=3, help="interleaved repeats; the median is reported")
    st.add_argument("--out", type=Path, default=None, help="write the result as JSON to this file (default: none)")
    st.set_defaults(func=run_stream)
    t = which.add_parser("threads", help="generation time at several torch thread counts, as ratios to one thread "
                         "(the measurement behind --threads' default)")
    t.add_argument("--model", default="default", help="model to generate with (default: default)")
    t.add_argument("--counts", type=_list(int), default=[1, 2], help="thread counts to compare (default: 1,2)")
    t.add_argument("--batches", type=_list(int), default=[1, 8], help="clips per call (default: 1,8)")
    t.add_argument("--duration", type=float, default=4.0, help="seconds per clip (default: 4)")
    t.add_argument("--cfg", type=float, default=3.0, help="guidance scale (default: 3)")
    t.add_argument("--repeats", type=int, default=3, help="interleaved repeats; the median is reported (default: 3)")
    t.add_argument("--out", type=Path, default=None, help="append the rows to this JSONL file (default: none)")
    t.set_defaults(func=run_threads)
    m = which.add_parser("seams", help="continuity across long-form sliding-window seams vs inside a window "
                         "(chroma and embedder cosine of the second before vs after)")
    m.add_argument("--model", default="default", help="model to generate with (default: default)")
    m.add_argument("--duration", type=float, default=24.0,
                   help="seconds per clip, beyond the model's maximum (up to 300; default: 24)")
    m.add_argument("--prompts", type=int, default=6, help="clips, one per built-in prompt, 1 to 8 (default: 6)")
    m.add_argument("--seed", type=int, default=0, help="seed of clip 0 (clip i: seed + i; default: 0)")
    m.add_argument("--cfg", type=float, default=3.0, help="guidance scale (default: 3)")
    m.add_argument("--extend-stride", type=float, default=None,
                   help="new seconds per window (default: 0.6 x the model's maximum)")
    m.add_argument("--span", type=float, default=1.0, help="seconds compared either side of a point (default: 1)")
    m.add_argument("--out", type=Path, default=None, help="append the result to OUT/seams.jsonl (default: none)")
    m.set_defaults(func=run_seams)
    d = which.add_parser("codec", help="the spectral codec's decode: Griffin-Lim settings vs the shipped one on "
                         "held-out corpus clips (mel, chroma, quality score, time; share of LM time)")
    d.add_argument("--model", default="default", help="model with a spectral codec (default: default)")
    d.add_argument("--corpus", type=Path, default=Path("data/corpus"), help="corpus directory (default: data/corpus)")
    d.add_argument("--clips", type=int, default=40, help="test-split clips, >= 2 (default: 40)")
    d.add_argument("--iters", type=_list(int), default=[4, 8, 16, 32],
                   help="Griffin-Lim iteration counts to try, each >= 0 (default: 4,8,16,32)")
    d.add_argument("--momenta", type=_list(float), default=[0.99],
                   help="fast Griffin-Lim momenta to try, each in [0, 2) (default: 0.99)")
    d.add_argument("--batches", type=_list(int), default=[1, 16],
                   help="batch sizes for the share of LM time, each >= 1 (default: 1,16)")
    d.add_argument("--cfgs", type=_list(float), default=[3.0, 1.0],
                   help="guidance scales for the LM timing (1 = no CFG, as a distilled model; default: 3,1)")
    d.add_argument("--duration", type=float, default=8.0, help="seconds per sampled clip (default: 8)")
    d.add_argument("--codec", type=Path, default=None,
                   help="decode with this spectral codec directory instead of the model's, e.g. runs/phase_head/codec "
                   "(the same frozen codec with a phase head, which becomes a candidate; default: the model's)")
    d.add_argument("--head-iters", type=_list(int), default=[0, 4],
                   help="with a phase head: Griffin-Lim iterations refining its phase, each >= 0 (default: 0,4)")
    d.add_argument("--baseline-iters", type=int, default=None,
                   help="Griffin-Lim iterations of the baseline, >= 0 (default: the codec's griffin_lim_iters)")
    d.add_argument("--out", type=Path, default=None, help="append the result to OUT/codec.jsonl (default: none)")
    d.set_defaults(func=run_codec)


def run_codec(args: argparse.Namespace) -> int:
    import torch

    from models.quality import QualityModel
    from models.registry import ASSETS_DIR, load_generator
    from musicrl.bench.codec import Candidate, check_spectral, run_codec_bench, write_result
    from musicrl.corpus_data import load_split_audio

    if args.clips < 2 or not args.batches or min(args.batches) < 1 or not args.iters or min(args.iters) < 0:
        raise InputError("--clips must be >= 2, every batch >= 1 and every iteration count >= 0")
    if not args.momenta or not all(0 <= m < 2 for m in args.momenta) or not args.cfgs:
        raise InputError("every momentum must be in [0, 2) and --cfgs must name at least one scale")
    if (args.baseline_iters is not None and args.baseline_iters < 0) or not args.head_iters or min(args.head_iters) < 0:
        raise InputError("--baseline-iters and every --head-iters must be >= 0")
    gen = load_generator(args.model)
    check_spectral(gen)
    if args.codec is not None:
        from models.spectral_codec import SpectralCodec

        codec = SpectralCodec.load(args.codec)
        if (codec.sample_rate, codec.num_codebooks, codec.cardinality) != (
                gen.codec.sample_rate, gen.codec.num_codebooks, gen.codec.cardinality):
            raise InputError(f"{args.codec} does not read {gen.name}'s codes (rate, codebooks or codebook size differ)")
        gen.codec = codec
    clips, _ = load_split_audio(args.corpus, "test", gen.codec.sample_rate, args.clips)
    quality = QualityModel.load(ASSETS_DIR / "quality")
    if quality.sample_rate != gen.codec.sample_rate:
        raise InputError(f"the quality model hears {quality.sample_rate} Hz; this codec makes {gen.codec.sample_rate}")
    candidates = [Candidate(i, m) for m in args.momenta for i in args.iters]
    result = run_codec_bench(gen, [torch.from_numpy(c) for c in clips], candidates, quality.score, args.batches,
                             args.duration, args.cfgs, baseline_iters=args.baseline_iters, head_iters=args.head_iters)
    if args.out is not None:
        write_result(result, args.out)
    return 0


def run_seams(args: argparse.Namespace) -> int:
    from musicrl.bench.seams import PROMPTS, run_seams_bench, write_result

    if not 1 <= args.prompts <= len(PROMPTS):
        raise InputError(f"--prompts must be from 1 to {len(PROMPTS)}, got {args.prompts}")
    if not args.span > 0:
        raise InputError(f"--span must be > 0 seconds, got {args.span}")
    result = run_seams_bench(args.model, args.duration, PROMPTS[: args.prompts], args.seed, args.cfg,
                             args.extend_stride, args.span)
    if args.out is not None:
        write_result(result, args.out)
    return 0


def run_int8(args: argparse.Namespace) -> int:
    import json

    from musicrl.bench.int8 import run_int8_bench

    if args.repeats < 1 or not args.batches or min(args.batches) < 1:
        raise InputError("--repeats and every batch must be >= 1")
    result = run_int8_bench(args.model, args.batches, args.duration, args.cfg, args.repeats)
    if args.out is not None:
        args.out.write_text(json.dumps(result, indent=2) + "\n")
    return 0


def run_stream(args: argparse.Namespace) -> int:
    import json

    from musicrl.bench.stream import run_stream_bench

    if args.repeats < 1 or not args.chunks or min(args.chunks) <= 0 or (args.first_chunk or 1) <= 0:
        raise InputError("--repeats must be >= 1 and every chunk > 0 s")
    result = run_stream_bench(args.model, args.duration, args.chunks, args.cfg, args.repeats,
                              first_chunk=args.first_chunk)
    if args.out is not None:
        args.out.write_text(json.dumps(result, indent=2) + "\n")
    return 0


def run_threads(args: argparse.Namespace) -> int:
    import json

    from musicrl.bench.threads import run_threads_bench

    if args.repeats < 1 or not args.counts or min(args.counts) < 1 or not args.batches or min(args.batches) < 1:
        raise InputError("--repeats, every thread count and every batch must be >= 1")
    rows = run_threads_bench(args.model, args.counts, args.batches, args.duration, args.cfg, args.repeats)
    if args.out is not None:
        with open(args.out, "a") as fh:
            fh.writelines(json.dumps(r) + "\n" for r in rows)
    return 0


def run_cfg(args: argparse.Namespace) -> int:
    from musicrl.bench.cfg import run_cfg_bench

    if not args.batches or min(args.batches) < 1:
        raise InputError("every batch must be >= 1")
    run_cfg_bench(args.model, args.distilled, args.batches, args.duration, args.cfg, args.threads)
    return 0


def run_rtf(args: argparse.Namespace) -> int:
    from musicrl.bench.rtf import run_rtf_bench

    if args.repeats < 1 or args.batch < 1:
        raise InputError("--repeats and --batch must be >= 1")
    run_rtf_bench(args.model, args.duration, args.cfg, args.repeats, args.threads, batch=args.batch)
    return 0


def run_sampler(args: argparse.Namespace) -> int:
    from musicrl.bench.sampler import SIZES, run_sampler_bench

    unknown = [s for s in args.sizes if s not in SIZES]
    if unknown:
        raise InputError(f"unknown size(s) {', '.join(unknown)}; choose from {', '.join(SIZES)}")
    if args.frames < 1 or args.repeats < 1 or not args.batches or min(args.batches) < 1:
        raise InputError("--frames, --repeats and every batch must be >= 1")
    run_sampler_bench(args.sizes, args.frames, args.batches, args.cfgs, args.repeats, args.out)
    return 0
