"""``musicrl bench seams``: are long-form clips continuous across their sliding-window seams?

Each prompt is generated at ``duration`` (beyond the model's maximum: sliding windows, ``models.long_form``).
Per clip, the similarity of the ``span`` seconds before and after each seam (where a window starts adding
frames) is averaged, and so is the same similarity at points inside one window's new frames
(``evaluation.continuity``); reported per metric as the means and the ratio seam / inside over clips with
a paired bootstrap 95 % interval (clips resampled jointly). A ratio near 1: seams are as continuous as the
music inside a window; well below 1: audible joins. For scale, "spliced" is the same similarity when the
second after each seam is taken from the next clip (another prompt): what a join of unrelated music scores.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import torch

from evaluation.continuity import across, chroma_cosine, embedding_cosine, inside_times, seam_times
from evaluation.suite import bootstrap_ci, paired_ratio_ci
from models.errors import InputError
from models.registry import ASSETS_DIR, load_generator
from models.sampling import SamplingParams

PROMPTS = [
    "calm ambient piano with soft pads",
    "fast techno with a driving kick and synth lead",
    "sad jazz trumpet over brushed drums",
    "happy folk guitar and fiddle",
    "heavy rock with distorted guitars",
    "slow classical strings in a minor key",
    "laid-back reggae with organ and bass",
    "hip-hop beat with a deep bass line",
]


def run_seams_bench(model: str, duration: float, prompts: list[str], seed: int = 0, cfg: float = 3.0,
                    extend_stride: float | None = None, span_s: float = 1.0, embedder: str | Path | None = None,
                    log=print) -> dict:
    """Generate, measure and summarise (see the module docstring); returns the summary and per-clip rows."""
    from models.embedder import TextAudioEmbedder

    gen = load_generator(model)
    emb = TextAudioEmbedder.load(embedder or ASSETS_DIR / "embedder")
    plan = gen.plan(prompts, duration, SamplingParams(cfg=cfg), seeds=seed, long_form=True,
                    extend_stride=extend_stride)
    windows = plan.windows
    seams, inside = seam_times(windows, gen.frame_rate), inside_times(windows, gen.frame_rate, span_s)
    if not seams or not inside:
        raise InputError(f"{duration} s makes {len(windows)} window(s): no seam or no inside point to compare")
    start = time.perf_counter()
    audio = gen.render(plan).audio.mean(1)  # [N, S] mono
    seconds = time.perf_counter() - start
    rate = gen.sample_rate
    wav_emb = audio if emb.sample_rate == rate else _resample(audio, rate, emb.sample_rate)
    metrics = {"chroma": (audio, rate, chroma_cosine),
               "embedder": (wav_emb, emb.sample_rate, embedding_cosine(emb.embed_audio))}
    rows, summary = [], {}
    for name, (wavs, sr, sim) in metrics.items():
        seam = np.array([np.nanmean(across(w, sr, seams, span_s, sim)) for w in wavs])
        mid = np.array([np.nanmean(across(w, sr, inside, span_s, sim)) for w in wavs])
        spliced = np.array([np.nanmean(_spliced(w, o, sr, seams, span_s, sim))
                            for w, o in zip(wavs, wavs.roll(1, 0), strict=True)]) if len(wavs) > 1 else seam * np.nan
        ratio, (lo, hi) = paired_ratio_ci(seam, mid)
        summary[name] = {"seam": float(np.nanmean(seam)), "seam_ci": bootstrap_ci(seam),
                         "inside": float(np.nanmean(mid)), "inside_ci": bootstrap_ci(mid),
                         "ratio": ratio, "ratio_ci": [lo, hi], "spliced": float(np.nanmean(spliced)),
                         "spliced_ci": bootstrap_ci(spliced)}
        rows += [{"metric": name, "prompt": p, "seam": float(s), "inside": float(m)}
                 for p, s, m in zip(plan.rows, seam, mid, strict=True)]
    result = {"model": gen.name, "duration": duration, "clips": len(prompts), "seed": seed, "cfg": cfg,
              "window_s": plan.window / gen.frame_rate, "stride_s": plan.stride / gen.frame_rate,
              "windows": len(windows), "seams_s": seams, "inside_s": inside, "span_s": span_s,
              "generate_s": seconds, "summary": summary, "rows": rows}
    log(f"{gen.name}: {len(prompts)} clips of {duration:g} s in {len(windows)} windows of "
        f"{result['window_s']:g} s (stride {result['stride_s']:g} s), seams at {', '.join(f'{t:g}' for t in seams)} s, "
        f"inside points at {', '.join(f'{t:g}' for t in inside)} s; generated in {seconds:.1f} s")
    for name, s in summary.items():
        log(f"{name:>9}: seam {s['seam']:.3f} [{s['seam_ci'][0]:.3f}, {s['seam_ci'][1]:.3f}]  inside {s['inside']:.3f} "
            f"[{s['inside_ci'][0]:.3f}, {s['inside_ci'][1]:.3f}]  ratio {s['ratio']:.3f} "
            f"[{s['ratio_ci'][0]:.3f}, {s['ratio_ci'][1]:.3f}]  (spliced from another clip {s['spliced']:.3f} "
            f"[{s['spliced_ci'][0]:.3f}, {s['spliced_ci'][1]:.3f}])")
    return result


def _spliced(wav: torch.Tensor, other: torch.Tensor, rate: int, times_s: list[float], span_s: float, sim) -> list:
    """sim(wav's ``span`` before t, other's ``span`` after t) for each seam t: a join of unrelated music."""
    span = round(span_s * rate)
    return [sim(wav[round(t * rate) - span : round(t * rate)], other[round(t * rate) : round(t * rate) + span], rate)
            for t in times_s]


def _resample(wav: torch.Tensor, rate: int, target: int) -> torch.Tensor:
    from models.audio_io import mono_at_rate

    return torch.stack([torch.from_numpy(mono_at_rate(w.numpy(), rate, target)) for w in wav])


def write_result(result: dict, out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    with open(out / "seams.jsonl", "a") as fh:
        fh.write(json.dumps(result) + "\n")
