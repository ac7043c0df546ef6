"""``musicrl bench codec``: cheaper phase reconstruction for the spectral codec, measured against the shipped one.

The embedded default decodes codes -> log|STFT| (conv decoder) -> fast Griffin-Lim (Perraudin et al., 2013).
Each candidate is a (Griffin-Lim iterations, momentum) setting, or the codec's learned phase head
(``models.phase_head``: one iSTFT) when it has one; the baseline is Griffin-Lim at the codec's configured
setting (or a given iteration count), measured in the same run. On N held-out clips, real audio is encoded
once and decoded with every candidate (interleaved clip by clip, so machine load hits all alike), and each
decode is compared with the original audio:

- ``mel``     multi-resolution log-mel L1 distance (``evaluation.audio_metrics.multires_mel_distance``; lower is better)
- ``chroma``  per-frame chroma cosine similarity (``evaluation.audio_metrics.chroma_cosine``; higher is better)
- ``quality`` the shipped quality model's score of the decoded clip (higher is better; note its docs: it
              separates Griffin-Lim resynthesis from clean audio poorly, ROC AUC 0.54)
- ``seconds`` wall time of the whole decode of one clip at batch 1 (lower is better)

reported as ratios candidate / baseline with paired bootstrap 95 % intervals over clips
(``evaluation.suite.paired_ratio_ci``). Then codes for an ``duration`` clip are sampled once per batch size
(and guidance scale) with the model, and every candidate's decode time of those codes is reported as a share
of the LM's sampling time at that batch: what decoding adds to generation.
"""

from __future__ import annotations

import json
import statistics
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch

from evaluation.audio_metrics import chroma_cosine, multires_mel_distance
from evaluation.suite import bootstrap_ci, paired_ratio_ci
from models.errors import InputError
from models.generator import MusicGenerator
from models.sampling import SamplingParams

PROMPTS = ["calm ambient piano", "fast techno with drums", "sad jazz trumpet", "happy folk guitar"]
METRICS = ("mel", "chroma", "quality", "seconds")

Scorer = Callable[[torch.Tensor], torch.Tensor]  # wav [B, S] at the codec's rate -> [B]


@dataclass(frozen=True)
class Candidate:
    """One phase-reconstruction setting of the spectral codec's decode: ``iters`` fast Griffin-Lim iterations
    with ``momentum`` from a random phase, or (``head``) from the codec's phase head (0 iterations: one iSTFT)."""

    iters: int = 0
    momentum: float = 0.99
    head: bool = False

    @property
    def name(self) -> str:
        if self.head:
            return "phase head + 1 iSTFT" if self.iters == 0 else f"phase head + GL {self.iters} it"
        return f"GL {self.iters} it, momentum {self.momentum:g}"

    def decode(self, codec, codes: torch.Tensor) -> torch.Tensor:
        """codes [B, Q, T] -> wav [B, 1, S] with this setting."""
        if self.head and codec.phase_head is None:
            raise InputError("this codec has no phase head (train one: musicrl train phase-head)")
        return codec.decode(codes, iters=self.iters, momentum=self.momentum, head=self.head)


def baseline_of(codec, iters: int | None = None) -> Candidate:
    """Griffin-Lim at the codec's configured setting (``iters`` instead of its iteration count if given)."""
    return Candidate(codec.cfg.griffin_lim_iters if iters is None else iters, codec.cfg.griffin_lim_momentum)


def check_spectral(gen: MusicGenerator) -> None:
    if getattr(gen.codec, "describe", lambda: {})().get("type") != "spectral":
        raise InputError(f"model {gen.name!r} has no spectral codec (Griffin-Lim decode); nothing to compare")


def per_clip_metrics(codec, clips: list[torch.Tensor], candidates: list[Candidate],
                     score: Scorer | None = None, log=print) -> dict[Candidate, dict[str, np.ndarray]]:
    """Encode each clip [S] once, decode it with every candidate; {candidate: {metric: [N]}} (module docstring).

    ``quality`` is NaN when ``score`` is None."""
    rate = codec.sample_rate
    values = {c: {m: np.full(len(clips), np.nan) for m in METRICS} for c in candidates}
    decoded: dict[Candidate, list[torch.Tensor]] = {c: [] for c in candidates}
    for i, wav in enumerate(clips):
        codes = codec.encode(wav[None, None].float())
        for c in candidates:
            start = time.perf_counter()
            out = c.decode(codec, codes)[0, 0]
            values[c]["seconds"][i] = time.perf_counter() - start
            values[c]["mel"][i] = multires_mel_distance(wav, out, rate)
            values[c]["chroma"][i] = chroma_cosine(wav, out, rate)
            decoded[c].append(out[: wav.shape[-1]])
        if (i + 1) % 10 == 0 or i + 1 == len(clips):
            log(f"decoded {i + 1}/{len(clips)} clips with {len(candidates)} settings")
    if score is not None:
        for c in candidates:
            values[c]["quality"] = np.array([float(score(w[None])[0]) for w in decoded[c]])
    return values


def summarise(values: dict[Candidate, dict[str, np.ndarray]], baseline: Candidate) -> list[dict]:
    """One row per candidate: per metric its mean, bootstrap interval, and ratio to the baseline with a paired
    bootstrap interval over clips (the baseline's own ratio is 1 [1, 1])."""
    rows = []
    for c, per_metric in values.items():
        row = {"candidate": c.name, **asdict(c), "baseline": c == baseline}
        for m, x in per_metric.items():
            ratio, (lo, hi) = paired_ratio_ci(x, values[baseline][m])
            row[m] = float(np.nanmean(x)) if not np.all(np.isnan(x)) else float("nan")
            row[f"{m}_ci"] = list(bootstrap_ci(x))
            row[f"{m}_ratio"], row[f"{m}_ratio_ci"] = ratio, [lo, hi]
        rows.append(row)
    return rows


def lm_shares(gen: MusicGenerator, candidates: list[Candidate], batches: list[int], duration: float,
              cfgs: list[float], repeats: int = 3, seed: int = 0, log=print) -> list[dict]:
    """Sample codes once per (guidance, batch) and time each candidate's decode of them (median of ``repeats``):
    rows with LM and decode seconds per clip and decode / LM."""
    gen.generate_codes(PROMPTS[:1], min(duration, 0.5), SamplingParams(cfg=cfgs[0]), seeds=seed)  # warm-up
    rows = []
    for cfg in cfgs:
        for b in batches:
            prompts = [PROMPTS[i % len(PROMPTS)] for i in range(b)]
            start = time.perf_counter()
            codes = gen.generate_codes(prompts, duration, SamplingParams(cfg=cfg), seeds=seed).codes
            lm = (time.perf_counter() - start) / b
            log(f"sampled {b} clip(s) of {duration:g} s at cfg {cfg:g}: {lm:.2f} s per clip; timing the decodes")
            for c in candidates:
                times = []
                for _ in range(repeats):
                    start = time.perf_counter()
                    c.decode(gen.codec, codes)
                    times.append((time.perf_counter() - start) / b)
                dec = statistics.median(times)
                rows.append({"candidate": c.name, **asdict(c), "cfg": cfg, "batch": b,
                             "lm_s_per_clip": lm, "decode_s_per_clip": dec, "decode_over_lm": dec / lm})
    return rows


def run_codec_bench(gen: MusicGenerator, clips: list[torch.Tensor], candidates: list[Candidate],
                    score: Scorer | None = None, batches: list[int] = (1, 16), duration: float = 8.0,
                    cfgs: list[float] = (3.0,), repeats: int = 3, baseline_iters: int | None = None,
                    head_iters: list[int] = (0,), log=print) -> dict:
    """Quality and speed of each candidate against Griffin-Lim at the codec's setting (``baseline_iters``
    iterations if given; module docstring); clips: [S] each, mono at the codec's rate. When the codec has a
    phase head, it is a candidate with each of ``head_iters`` refining iterations. Returns {"baseline", "clips",
    "rows", "shares"}; logs a markdown table."""
    check_spectral(gen)
    baseline = baseline_of(gen.codec, baseline_iters)
    if gen.codec.phase_head is not None:
        candidates = [*candidates, *(Candidate(i, baseline.momentum, head=True) for i in head_iters)]
    candidates = [baseline] + [c for c in dict.fromkeys(candidates) if c != baseline]
    with torch.inference_mode():
        rows = summarise(per_clip_metrics(gen.codec, clips, candidates, score, log), baseline)
        shares = lm_shares(gen, candidates, list(batches), duration, list(cfgs), repeats, log=log) if batches else []
    result = {"model": gen.name, "baseline": asdict(baseline), "clips": len(clips), "duration": duration,
              "rows": rows, "shares": shares}
    log(table(result))
    return result


def table(result: dict) -> str:
    """The result as a markdown table: ratios to the baseline [95 % interval], decode / LM per batch and cfg."""
    keys = sorted({(s["cfg"], s["batch"]) for s in result["shares"]})
    head = ["candidate", "mel distance", "chroma cosine", "quality score", "s / clip"]
    head += [f"decode / LM, batch {b}, cfg {g:g}" for g, b in keys]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in result["rows"]:
        cells = [r["candidate"] + (" (baseline)" if r["baseline"] else "")]
        for m in METRICS:
            lo, hi = r[f"{m}_ratio_ci"]
            cells.append(f"{r[m]:.4g} ({r[f'{m}_ratio']:.3f}× [{lo:.3f}, {hi:.3f}])")
        share = {(s["cfg"], s["batch"]): s for s in result["shares"] if s["candidate"] == r["candidate"]}
        cells += [f"{100 * share[k]['decode_over_lm']:.1f} %" for k in keys]
        lines.append("| " + " | ".join(cells) + " |")
    lm = ", ".join(f"batch {s['batch']} cfg {s['cfg']:g}: {s['lm_s_per_clip']:.3f} s"
                   for s in result["shares"] if s["candidate"] == result["rows"][0]["candidate"])
    return "\n".join(lines) + f"\n\n{result['clips']} clips; LM sampling per {result['duration']:g} s clip: {lm}"


def write_result(result: dict, out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    with open(out / "codec.jsonl", "a") as fh:
        fh.write(json.dumps(result) + "\n")
