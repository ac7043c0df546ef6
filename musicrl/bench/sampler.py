"""``musicrl bench sampler``: our decoding path vs transformers' MusicGen ``generate`` on the SAME weights.

For each decoder size a random transformers MusicGen (small T5 + tiny EnCodec + the decoder) is built,
its weights copied into our ``AudioLM``, and both generate the same prompts with the same sampling
settings (top-k 250, temperature 1), at batch 1 and 8, with and without CFG. Runs alternate
(transformers, ours, transformers, ours, ...) so drift on a shared machine hits both; each figure is
the median of the repeats. The machine limit is weight bytes per step / measured bandwidth or FLOPs
per step / measured matmul throughput, whichever is larger.
"""

from __future__ import annotations

import json
import statistics
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from models.codecs import EncodecCodec
from models.conditioners import T5Conditioner
from models.debug import tiny_hf_musicgen
from models.generator import MusicGenerator
from models.hf_musicgen import lm_from_hf
from models.sampling import SamplingParams
from musicrl.bench.machine import MachineLimits, measure_machine

# name -> decoder sizes (MusicGen vocabulary: 4 codebooks x 2048 codes)
SIZES = {
    "5M": dict(dim=192, num_layers=4, num_heads=4, ffn_dim=768),
    "40M": dict(dim=512, num_layers=8, num_heads=8, ffn_dim=2048),
    "musicgen-small": dict(dim=1024, num_layers=24, num_heads=16, ffn_dim=4096),
}
PROMPTS = ["upbeat techno with a synth lead", "calm ambient piano", "fast jazz with drums", "sad violin in a minor key"]


@dataclass
class SamplerRow:
    size: str
    params_m: float
    batch: int
    cfg: float
    frames: int
    hf_s: float
    ours_s: float
    speedup: float
    ours_tokens_per_s: float
    hf_tokens_per_s: float
    limit_s: float
    pct_of_limit: float


def per_step_cost(lm, rows: int, mean_len: float) -> tuple[float, float]:
    """Weight bytes read and FLOPs of one decoding step for ``rows`` rows (embedding tables excluded:
    a step gathers only K rows of them)."""
    cfg = lm.cfg
    weights = sum(p.numel() for n, p in lm.named_parameters() if not n.startswith(("embeddings", "cond_proj")))
    kv_bytes = rows * cfg.num_layers * 2 * mean_len * cfg.dim * 4
    flops = 2 * weights * rows + rows * cfg.num_layers * 4 * mean_len * cfg.dim
    return weights * 4 + kv_bytes, flops


def _time(fn) -> float:
    t = time.perf_counter()
    fn()
    return time.perf_counter() - t


def bench_size(
    name: str, frames: int, batches: list[int], cfgs: list[float], repeats: int, limits: MachineLimits, log=print
) -> list[SamplerRow]:
    hf, tokenizer = tiny_hf_musicgen(seed=0, cardinality=2048, text_dim=64, **SIZES[name])
    lm = lm_from_hf(hf)
    ours = MusicGenerator(
        lm, T5Conditioner(hf.text_encoder, tokenizer), EncodecCodec(hf.audio_encoder), name=name, max_duration=100.0
    )
    params_m = sum(p.numel() for p in hf.decoder.parameters()) / 1e6
    k = lm.cfg.num_codebooks
    rows = []
    for batch in batches:
        prompts = [PROMPTS[i % len(PROMPTS)] for i in range(batch)]
        enc = tokenizer(prompts, padding=True, return_tensors="pt")
        for cfg in cfgs:
            params = SamplingParams(cfg=cfg, top_k=250)

            def run_hf(enc=enc, cfg=cfg):
                hf.generate(
                    **enc, do_sample=True, top_k=250, temperature=1.0, guidance_scale=cfg, max_new_tokens=frames + k - 1
                )

            def run_ours(prompts=prompts, params=params):
                ours.generate(prompts, frames / ours.frame_rate, params, seeds=0)

            run_hf(), run_ours()  # warm-up
            hf_t, ours_t = [], []
            for _ in range(repeats):
                hf_t.append(_time(run_hf))
                ours_t.append(_time(run_ours))
            hf_s, ours_s = statistics.median(hf_t), statistics.median(ours_t)
            steps = frames + k - 1
            bytes_, flops = per_step_cost(lm, batch * (2 if cfg != 1 else 1), steps / 2)
            limit = steps * max(bytes_ / (limits.bandwidth_gbs * 1e9), flops / (limits.matmul_gflops * 1e9))
            tokens = batch * k * frames
            row = SamplerRow(
                name,
                round(params_m, 1),
                batch,
                cfg,
                frames,
                hf_s,
                ours_s,
                hf_s / ours_s,
                tokens / ours_s,
                tokens / hf_s,
                limit,
                100 * limit / ours_s,
            )
            log(
                f"{name:>15} B={batch} cfg={cfg:g}: transformers {hf_s:.3f}s ours {ours_s:.3f}s "
                f"-> {row.speedup:.2f}x, {row.pct_of_limit:.0f}% of the machine limit"
            )
            rows.append(row)
    return rows


def markdown(rows: list[SamplerRow], limits: MachineLimits) -> str:
    lines = [
        f"Machine: {limits.threads} threads, measured {limits.bandwidth_gbs:.1f} GB/s weight streaming, "
        f"{limits.matmul_gflops:.0f} GFLOP/s fp32 matmul.",
        "",
        "| decoder | params | batch | CFG | transformers tok/s | ours tok/s | speedup | limit (s) | ours (s) "
        "| % of limit |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        lines.append(
            f"| {r.size} | {r.params_m:.1f}M | {r.batch} | {r.cfg:g} | {r.hf_tokens_per_s:.0f} | "
            f"{r.ours_tokens_per_s:.0f} | **{r.speedup:.2f}x** | {r.limit_s:.3f} | {r.ours_s:.3f} | "
            f"{r.pct_of_limit:.0f}% |"
        )
    return "\n".join(lines) + "\n"


def run_sampler_bench(
    sizes: list[str], frames: int, batches: list[int], cfgs: list[float], repeats: int, out: Path | None, log=print
) -> list[SamplerRow]:
    limits = measure_machine()
    log(f"machine: {limits.bandwidth_gbs:.1f} GB/s, {limits.matmul_gflops:.0f} GFLOP/s, {limits.threads} threads")
    rows = []
    for name in sizes:
        rows += bench_size(name, frames, batches, cfgs, repeats, limits, log)
    table = markdown(rows, limits)
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)
        with open(out / "sampler.jsonl", "w") as fh:
            for r in rows:
                fh.write(json.dumps({**asdict(r), "machine": asdict(limits)}) + "\n")
        (out / "sampler.md").write_text(table)
    log(table)
    return rows
