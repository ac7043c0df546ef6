"""``musicrl bench rtf``: seconds to generate ``batch`` clips in one call, split by stage, and the real-time factor
(seconds of compute per second of audio: the call's time / (batch x duration))."""

from __future__ import annotations

import statistics
import time

import torch

from models.registry import load_generator
from models.sampling import SamplingParams


def run_rtf_bench(
    model: str, duration: float, cfg: float, repeats: int, threads: int, log=print, batch: int = 1
) -> dict:
    if threads:
        torch.set_num_threads(threads)
    gen = load_generator(model)
    params = SamplingParams(cfg=cfg)
    prompt = ["an energetic techno track with a synth lead"] * batch
    gen.generate(prompt, min(duration, 1.0), params, seeds=0)  # warm-up
    stages = {"text": [], "lm": [], "codec": [], "total": []}
    for r in range(repeats):
        t0 = time.perf_counter()
        gen.encode_text(prompt)
        t1 = time.perf_counter()
        out = gen.generate_codes(prompt, duration, params, seeds=[r * batch + i for i in range(batch)])
        t2 = time.perf_counter()
        gen.decode(out.codes)
        t3 = time.perf_counter()
        stages["text"].append(t1 - t0)
        stages["lm"].append(t2 - t1)  # includes its own text encoding
        stages["codec"].append(t3 - t2)
        stages["total"].append(t3 - t1)
    result = {k: statistics.median(v) for k, v in stages.items()}
    result.update(
        model=model,
        duration=duration,
        cfg=cfg,
        batch=batch,
        threads=torch.get_num_threads(),
        real_time_factor=result["total"] / (duration * batch),
    )
    log(
        f"{model}: {duration:g} s of audio at batch {batch}, cfg {cfg:g}, {result['threads']} thread(s): "
        f"LM {result['lm']:.2f} s + codec {result['codec']:.2f} s = {result['total']:.2f} s "
        f"-> real-time factor {result['real_time_factor']:.2f} (median of {repeats})"
    )
    return result
