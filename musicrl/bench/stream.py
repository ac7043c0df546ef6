"""``musicrl bench stream``: time to the first audio and the whole stream against one-shot rendering of the
same plan, in the same process, and how far the joined stream is from the one-shot decode.

Runs alternate (one-shot, stream at each chunk size, ...) so load changes hit all of them. The error is
``models.streaming.stream_error`` against the one-shot decode of the same codes; for a Griffin-Lim codec the
reference is the same decode from another random initial phase (what any new phase estimate differs by).
"""

from __future__ import annotations

import statistics
import time

import torch

from models.registry import load_generator
from models.sampling import SamplingParams
from models.streaming import stream_error

PROMPT = "calm ambient piano with soft pads"


@torch.no_grad()
def run_stream_bench(model: str, duration: float, chunks: list[float], cfg: float, repeats: int, log=print,
                     first_chunk: float | None = None) -> dict:
    """``first_chunk``: seconds of every stream's first chunk alone (``MusicGenerator.stream``'s
    ``first_chunk_seconds``; None: the chunk's own length)."""
    gen = load_generator(model)
    plan = gen.plan([PROMPT], duration, SamplingParams(cfg=cfg), seeds=0)
    gen.render(gen.plan([PROMPT], min(duration, 0.5), SamplingParams(cfg=cfg), seeds=0))  # warm-up
    one_shot: list[float] = []
    runs: dict[float, dict[str, list[float]]] = {c: {"first": [], "total": []} for c in chunks}
    last = {}
    for _ in range(repeats):
        t0 = time.perf_counter()
        gen.render(plan)
        one_shot.append(time.perf_counter() - t0)
        for c in chunks:
            t0, first, pieces = time.perf_counter(), None, []
            for chunk in gen.stream(plan, chunk_seconds=c, first_chunk_seconds=first_chunk):
                first = time.perf_counter() - t0 if first is None else first
                pieces.append(chunk)
            runs[c]["first"].append(first)
            runs[c]["total"].append(time.perf_counter() - t0)
            last[c] = pieces
    base = statistics.median(one_shot)
    rows = []
    for c in chunks:
        pieces = last[c]
        joined = torch.cat([p.audio for p in pieces], dim=-1) / pieces[-1].gains[:, None, None]
        reference = gen.codec.decode(pieces[-1].codes)
        row = {"chunk_s": c, "first_audio_s": statistics.median(runs[c]["first"]),
               "stream_s": statistics.median(runs[c]["total"]), "one_shot_s": base,
               "stream_vs_one_shot": statistics.median(runs[c]["total"]) / base, "chunks": len(pieces),
               "error": stream_error(joined, reference)}
        rows.append(row)
        log(f"chunk {c:g} s: first audio {row['first_audio_s']:.2f} s, whole stream {row['stream_s']:.2f} s = "
            f"{row['stream_vs_one_shot']:.2f}x one-shot ({base:.2f} s); vs one-shot decode: SNR "
            f"{row['error']['snr_db']:.1f} dB, log-magnitude L1 {row['error']['logmag_l1']:.3f}")
    result = {"model": model, "duration": duration, "cfg": cfg, "repeats": repeats, "first_chunk_s": first_chunk,
              "threads": torch.get_num_threads(), "rows": rows}
    cfg_codec = getattr(gen.codec, "cfg", None)
    if cfg_codec is not None and hasattr(gen.codec, "decode_magnitude"):
        from models.audio_features import griffin_lim

        codes = last[chunks[0]][-1].codes
        reference = gen.codec.decode(codes)
        other = griffin_lim(gen.codec.decode_magnitude(codes), cfg_codec.n_fft, cfg_codec.hop,
                            cfg_codec.griffin_lim_iters, length=reference.shape[-1], seed=1)[:, None]
        result["another_phase_estimate"] = stream_error(other, reference)
        log(f"reference: the one-shot decode from another initial phase: SNR "
            f"{result['another_phase_estimate']['snr_db']:.1f} dB, log-magnitude L1 "
            f"{result['another_phase_estimate']['logmag_l1']:.3f}")
    return result
