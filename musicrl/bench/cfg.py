"""``musicrl bench cfg``: clips/s of a CFG-free (distilled) model vs the base model with CFG.

The distilled student has the base model's architecture, so its cost is one pass per step where
base + CFG pays two (conditional + null rows). Without --distilled the base weights run without
guidance as the stand-in (same cost, by construction). Batches grow until clips/s stops improving.
"""

from __future__ import annotations

import time

import torch

from models.registry import load_generator
from models.sampling import SamplingParams

PROMPTS = ["calm ambient piano", "fast techno with drums", "sad jazz trumpet", "happy folk guitar"]


def timed_generate(gen, batch: int, duration: float, cfg: float) -> tuple[float, float]:
    """Seconds spent (sampling codes, decoding them) for one batch, end to end from prompts."""
    prompts = [PROMPTS[i % len(PROMPTS)] for i in range(batch)]
    t = time.perf_counter()
    codes = gen.generate_codes(prompts, duration, SamplingParams(cfg=cfg), seeds=0).codes
    t_codes = time.perf_counter()
    gen.decode(codes)
    return t_codes - t, time.perf_counter() - t_codes


def run_cfg_bench(
    base: str, distilled: str | None, batches: list[int], duration: float, cfg: float, threads: int, log=print
) -> list[dict]:
    if threads:
        torch.set_num_threads(threads)
    gen_base = load_generator(base)
    gen_fast = load_generator(distilled) if distilled else gen_base
    timed_generate(gen_base, 1, min(duration, 0.5), cfg)  # warm-up
    rows = []
    for b in batches:
        lm_guided, dec_guided = timed_generate(gen_base, b, duration, cfg)  # back to back, same batch
        lm_free, dec_free = timed_generate(gen_fast, b, duration, 1.0)
        guided, free = b / (lm_guided + dec_guided), b / (lm_free + dec_free)
        row = {
            "batch": b,
            "base_cfg_clips_per_s": guided,
            "distilled_clips_per_s": free,
            "speedup": free / guided,
            "lm_speedup": lm_guided / lm_free,  # token sampling alone (what guidance doubles)
            "decode_share": dec_free / (lm_free + dec_free),  # of the CFG-free time
        }
        rows.append(row)
        log(
            f"batch {b:>3}: base + CFG {guided:.3f} clips/s, CFG-free {free:.3f} clips/s -> {row['speedup']:.2f}x "
            f"(sampling codes alone {row['lm_speedup']:.2f}x; decoding is {100 * row['decode_share']:.0f} % "
            "of the CFG-free time)"
        )
    return rows
