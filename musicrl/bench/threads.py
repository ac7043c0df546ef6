"""``musicrl bench threads``: generation time at several torch thread counts, as ratios to one thread.

The counts are interleaved within each repeat (1, 2, ..., 1, 2, ...) so that a machine whose load changes
during the run affects them alike; the median over repeats is reported. This is the measurement behind
``models.runtime.default_threads`` (the default of every command's ``--threads``).
"""

from __future__ import annotations

import statistics
import time

import torch

from models.registry import load_generator
from models.runtime import cpu_count, default_threads
from models.sampling import SamplingParams

PROMPT = "an energetic techno track with a synth lead"


def run_threads_bench(
    model: str, counts: list[int], batches: list[int], duration: float, cfg: float, repeats: int, log=print
) -> list[dict]:
    """Seconds to generate ``batch`` clips of ``duration`` s (sampling + decoding) at each thread count.

    Returns one row per (batch, threads): seconds (median), clips/s and ``vs_1_thread`` (time at 1 thread /
    time at this count: > 1 means faster than one thread)."""
    gen = load_generator(model)
    params = SamplingParams(cfg=cfg)
    counts = sorted(set([1, *counts]))
    torch.set_num_threads(1)
    gen.generate([PROMPT], min(duration, 0.5), params, seeds=0)  # warm-up (lazy inits, allocator)
    rows = []
    for batch in batches:
        times: dict[int, list[float]] = {n: [] for n in counts}
        for r in range(repeats):
            for n in counts:
                torch.set_num_threads(n)
                t0 = time.perf_counter()
                gen.generate([PROMPT], duration, params, seeds=r, samples_per_prompt=batch)
                times[n].append(time.perf_counter() - t0)
        base = statistics.median(times[1])
        for n in counts:
            sec = statistics.median(times[n])
            rows.append({"model": model, "batch": batch, "threads": n, "seconds": sec, "clips_per_s": batch / sec,
                         "vs_1_thread": base / sec, "duration": duration, "cfg": cfg, "repeats": repeats,
                         "cores": cpu_count(), "load_1min": _load()})
            log(f"batch {batch:3d}, {n:2d} thread(s): {sec:6.2f} s  ({base / sec:4.2f}x one thread)")
    log(f"{cpu_count()} core(s) usable; --threads default on this machine: {default_threads()}")
    return rows


def _load() -> float | None:
    try:
        import os

        return round(os.getloadavg()[0], 2)
    except (AttributeError, OSError):
        return None
