"""``musicrl bench int8``: the int8 LM (``models.quantize``) against the float one, in the same process.

Sampling time (codes only: the codec is the same for both) at each batch with CFG, the float and int8 runs
interleaved within each repeat so that load changes on a shared machine hit both; the median of the repeats
and the ratio float / int8 (> 1: int8 is faster). Also the weights' bytes and the logit error on teacher-forced
random codes for a few prompts.
"""

from __future__ import annotations

import statistics
import time

import torch

from models.delay import build_delayed, lm_inputs
from models.quantize import int8_bytes, logit_error, quantize_int8
from models.registry import load_generator
from models.sampling import SamplingParams

PROMPT = "an energetic techno track with a synth lead"
ERROR_PROMPTS = ["calm ambient piano", "fast jazz with drums", "sad violin in a minor key", "upbeat funk with bass"]


def run_int8_bench(model: str, batches: list[int], duration: float, cfg: float, repeats: int, log=print) -> dict:
    gen = load_generator(model)
    float_lm, int8_lm = gen.lm, quantize_int8(gen.lm)
    params = SamplingParams(cfg=cfg)
    lms = {"float": float_lm, "int8": int8_lm}
    gen.generate_codes([PROMPT], min(duration, 0.5), params, seeds=0)  # warm-up of both
    gen.lm = int8_lm
    gen.generate_codes([PROMPT], min(duration, 0.5), params, seeds=0)
    rows = []
    for batch in batches:
        times: dict[str, list[float]] = {"float": [], "int8": []}
        for r in range(repeats):
            for name, lm in lms.items():
                gen.lm = lm
                t0 = time.perf_counter()
                gen.generate_codes([PROMPT], duration, params, seeds=r, samples_per_prompt=batch)
                times[name].append(time.perf_counter() - t0)
        f, q = statistics.median(times["float"]), statistics.median(times["int8"])
        rows.append({"batch": batch, "float_s": f, "int8_s": q, "speedup": f / q})
        log(f"batch {batch:3d}: float {f:6.2f} s, int8 {q:6.2f} s -> int8 {f / q:4.2f}x as fast "
            f"({duration:g} s clips, cfg {cfg:g}, median of {repeats})")
    gen.lm = float_lm
    k, v = float_lm.cfg.num_codebooks, float_lm.cfg.cardinality
    frames = min(gen.num_frames(duration), float_lm.cfg.max_positions - k + 1)
    codes = torch.randint(0, v, (len(ERROR_PROMPTS), k, frames), generator=torch.Generator().manual_seed(0))
    error = logit_error(float_lm, int8_lm, lm_inputs(build_delayed(codes, v), v), gen.encode_text(ERROR_PROMPTS))
    float_bytes = sum(p.numel() * p.element_size() for p in float_lm.parameters())
    result = {"model": model, "duration": duration, "cfg": cfg, "threads": torch.get_num_threads(), "rows": rows,
              "float_mb": float_bytes / 1e6, "int8_mb": int8_bytes(int8_lm) / 1e6, "logit_error": error}
    changed = 100 * error["argmax_changed"]
    log(f"weights {result['float_mb']:.1f} MB -> {result['int8_mb']:.1f} MB; logits on random codes: max |diff| "
        f"{error['max_abs']:.3f}, mean {error['mean_abs']:.3f}, argmax changed at {changed:.1f} %")
    return result
