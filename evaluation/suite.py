"""Evaluate generators on a prompt set: text adherence, quality, diversity, FAD, judge accuracy, cost.

One row per generated clip and one summary per (model, guidance) go to JSONL; reports and plots only
read those. Confidence intervals are 95 % bootstrap intervals over prompts (the unit that was sampled).

This module scores nothing by itself: the per-clip metrics are handed in (``Scorers``) as callables
with the reward signature ``(captions [N], audio [N, S]) -> [N]``. ``musicrl eval`` hands in the RL
reward objects of ``musicrl.rewards`` (evaluation may not import musicrl), so a reward optimised in RL
is exactly the number reported here.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np
import torch

from evaluation.fad import fad
from evaluation.judges import AttributeJudgement
from evaluation.reward_math import mean_pairwise_diversity
from models.generator import MusicGenerator
from models.sampling import SamplingParams

ClipMetric = Callable[[list[str], torch.Tensor], torch.Tensor]  # (captions [N], audio [N, S]) -> [N]
# (captions [N], audio [N, S], codes [N, K, T]) -> [N]: metrics that read the generated codes (a preference RM)
CodesMetric = Callable[[list[str], torch.Tensor, torch.Tensor], torch.Tensor]


@dataclass
class EvalPrompt:
    """A caption and the ground-truth attributes it states (the only ones a judge can hold it to);
    ``exact``: what only a signal measure can check, the tempo in BPM and the key where the prompt names them."""

    caption: str
    attributes: dict[str, str] = field(default_factory=dict)
    exact: dict[str, str] = field(default_factory=dict)


class DiversityMetric(Protocol):
    """Per-clip dissimilarity to its siblings (``musicrl.rewards.Diversity``): rows prompt-major, G per
    prompt; ``embed`` also gives the embeddings FAD compares with the reference."""

    samples_per_prompt: int

    def embed(self, audio: torch.Tensor) -> torch.Tensor: ...  # [N, S] -> [N, D]

    def from_embeddings(self, captions: list[str], embeddings: torch.Tensor) -> torch.Tensor: ...  # -> [N]


class AttributeMetric(Protocol):
    """The judges against each prompt's stated attributes (``musicrl.rewards.AttributeMatch``)."""

    def judge(self, captions: list[str], audio: torch.Tensor) -> AttributeJudgement: ...


class SignalMetric(Protocol):
    """The signal judges against each prompt's stated attributes (``evaluation.signal_judges.SignalMatch``):
    N {attribute: heard as stated?}; ``reference`` {attribute: {"accuracy", "ci", ...}} is how often they are
    right on rendered clips of known truth, reported next to every number they give."""

    reference: dict[str, dict]

    def judge(self, captions: list[str], audio: torch.Tensor) -> list[dict[str, bool]]: ...


@dataclass
class Scorers:
    """What clips are scored with; anything None or absent is skipped.

    per_clip: name -> metric, reported per clip and as a mean over prompts (e.g. "adherence",
    "quality"); per_clip_codes: the same for metrics that also read the clips' codes (e.g.
    "preference"; skipped where there are no codes, as for real clips); diversity: needs G >= 2;
    attributes: judge accuracy per attribute and attribute diversity; signal: the signal judges' accuracy
    per attribute; reference [M, D]: ``diversity.embed`` of real clips, for FAD."""

    per_clip: dict[str, ClipMetric] = field(default_factory=dict)
    per_clip_codes: dict[str, CodesMetric] = field(default_factory=dict)
    diversity: DiversityMetric | None = None
    attributes: AttributeMetric | None = None
    signal: SignalMetric | None = None
    reference: torch.Tensor | None = None


class Clips(Protocol):
    """What a sampler returns: audio [N, C, S] and the codes [N, K, T] it was decoded from."""

    audio: torch.Tensor
    codes: torch.Tensor


class Sampler(Protocol):
    """``MusicGenerator.generate``'s shape: B captions, G samples each, one seed per row (N = B * G rows,
    prompt-major) -> ``Clips``. Best-of-N over the generator (``musicrl.best_of_n``) is another."""

    def __call__(
        self, prompts: list[str], duration: float, params: SamplingParams, seeds: list[int], samples_per_prompt: int
    ) -> Clips: ...


@dataclass
class ModelSpec:
    """One evaluated setting. ``sampler`` (default ``generator.generate``) makes the clips, e.g. best-of-N
    by a reward (``musicrl.best_of_n``, handed in because evaluation may not import musicrl); ``candidates``
    is how many clips it samples per kept clip, so the reported forward passes per clip are the real cost
    (its measured seconds include whatever the sampler does, candidate scoring included)."""

    label: str
    generator: MusicGenerator
    cfg: float = 3.0
    temperature: float = 1.0
    top_k: int = 250
    extra: dict = field(default_factory=dict)  # e.g. {"lam": 0.5, "beta": 15}: carried into the results
    sampler: Sampler | None = None
    candidates: int = 1


def bootstrap_ci(per_prompt: np.ndarray, n_boot: int = 1000, seed: int = 0) -> tuple[float, float]:
    """95 % percentile interval of the mean of per-prompt values (NaNs dropped)."""
    x = per_prompt[~np.isnan(per_prompt)]
    if x.size == 0:
        return float("nan"), float("nan")
    rng = np.random.default_rng(seed)
    means = x[rng.integers(0, x.size, size=(n_boot, x.size))].mean(1)
    return float(np.percentile(means, 2.5)), float(np.percentile(means, 97.5))


def paired_ratio_ci(
    a: np.ndarray, b: np.ndarray, n_boot: int = 1000, seed: int = 0
) -> tuple[float, tuple[float, float]]:
    """mean(a) / mean(b) over the same prompts, and its 95 % interval from resampling prompts jointly.

    a, b: [P] per-prompt values of two settings (prompts where either is NaN are dropped). Pairing keeps
    the prompt-to-prompt spread, shared by both, out of the interval. Example: a = [1, 3], b = [2, 2]
    -> 1.0; resamples give 0.5 ([1, 1] / [2, 2]), 1.0 or 1.5, so the interval lies within [0.5, 1.5].
    """
    keep = ~(np.isnan(a) | np.isnan(b))
    a, b = a[keep], b[keep]
    if a.size == 0:
        return float("nan"), (float("nan"), float("nan"))
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, a.size, size=(n_boot, a.size))
    ratios = a[idx].mean(1) / b[idx].mean(1)
    return float(a.mean() / b.mean()), (float(np.percentile(ratios, 2.5)), float(np.percentile(ratios, 97.5)))


def score_clips(
    scorers: Scorers, audio: torch.Tensor, captions: list[str], group: int, codes: torch.Tensor | None = None
) -> dict:
    """audio [N, S] at the scorers' sample rate, captions one per clip, rows prompt-major in groups of
    ``group``; codes [N, K, T] the clips were decoded from (None: the code metrics are skipped). Returns
    per-clip tensors [N] by metric name, "embedding" [N, D], "judges" (one dict per clip), "profile"
    [N, C] and "signal" (one dict per clip) where the scorers give them."""
    out: dict = {name: fn(captions, audio).cpu() for name, fn in scorers.per_clip.items()}
    if codes is not None:
        out.update({name: fn(captions, audio, codes).cpu() for name, fn in scorers.per_clip_codes.items()})
    if scorers.diversity is not None:
        out["embedding"] = scorers.diversity.embed(audio).cpu()
        if group >= 2:
            out["diversity"] = scorers.diversity.from_embeddings(captions, out["embedding"]).cpu()
    if scorers.attributes is not None:
        judgement = scorers.attributes.judge(captions, audio)
        out["judges"], out["profile"] = judgement.matches, judgement.profiles.cpu()
    else:
        out["judges"] = [{} for _ in captions]
    if scorers.signal is not None:
        out["signal"] = scorers.signal.judge(captions, audio)
    return out


def _clip_values(scores: dict) -> list[str]:
    """Names of the per-clip [N] values in ``score_clips`` output (what rows and summaries report)."""
    return [k for k in scores if k not in ("embedding", "judges", "profile", "signal")]


def summarise(
    label: str,
    rows: list[dict],
    embeddings: torch.Tensor | None,
    num_prompts: int,
    group: int,
    scorers: Scorers,
    extra: dict,
    profiles: torch.Tensor | None = None,
    values: tuple[str, ...] = ("adherence", "quality", "diversity", "preference"),
) -> dict:
    """Means with bootstrap CIs over prompts of the per-clip ``values`` (a prompt's diversity is the mean
    of its clips' sibling dissimilarities), attribute diversity, FAD and judge accuracy for one setting."""
    summary: dict = {"model": label, **extra, "clips": len(rows), "prompts": num_prompts, "samples_per_prompt": group}
    by_prompt = lambda key: np.array(
        [
            np.nanmean([r[key] for r in rows if r["prompt_index"] == i])  # noqa: E731
            for i in range(num_prompts)
        ]
    )
    prompt_values = {}
    for key in values:
        if rows and key in rows[0]:
            prompt_values[key] = by_prompt(key)
    if profiles is not None and group >= 2:  # the same arithmetic in the judges' attribute space
        prompt_values["attribute_diversity"] = mean_pairwise_diversity(profiles.view(num_prompts, group, -1)).numpy()
    for key, vals in prompt_values.items():
        summary[key] = float(np.nanmean(vals))
        summary[f"{key}_ci"] = bootstrap_ci(vals)
    # kept for paired comparisons between settings (same prompts, same order); NaN -> None
    summary["per_prompt"] = {k: [None if np.isnan(x) else float(x) for x in v] for k, v in prompt_values.items()}
    if embeddings is not None and scorers.reference is not None and len(rows) >= 2:
        summary["fad"] = fad(embeddings, scorers.reference)
        summary["fad_n"] = [len(rows), int(scorers.reference.shape[0])]
    summary["judge_accuracy"] = attribute_accuracy(rows, "judge_correct", num_prompts)
    if scorers.signal is not None:
        summary["signal_accuracy"] = attribute_accuracy(rows, "signal_correct", num_prompts)
        for a, acc in summary["signal_accuracy"].items():  # how far the measure itself is right
            if a in scorers.signal.reference:
                acc["measure"] = {k: scorers.signal.reference[a][k] for k in ("accuracy", "ci", "n")}
    return summary


def attribute_accuracy(rows: list[dict], key: str, num_prompts: int) -> dict[str, dict]:
    """{attribute: {"accuracy", "ci", "n"}} of the per-clip {attribute: bool} dicts under ``rows[i][key]``:
    the mean over prompts (each the mean of its clips that state the attribute) with a bootstrap interval
    over prompts; n = judged clip-attribute pairs."""
    out = {}
    for a in sorted({a for r in rows for a in r.get(key, {})}):
        per_prompt = np.array(
            [
                np.mean([r[key][a] for r in rows if r["prompt_index"] == i and a in r.get(key, {})])
                if any(a in r.get(key, {}) for r in rows if r["prompt_index"] == i)
                else np.nan
                for i in range(num_prompts)
            ]
        )
        n = int(sum(a in r.get(key, {}) for r in rows))
        out[a] = {"accuracy": float(np.nanmean(per_prompt)), "ci": bootstrap_ci(per_prompt), "n": n}
    return out


def evaluate_model(
    spec: ModelSpec,
    prompts: list[EvalPrompt],
    samples_per_prompt: int,
    duration: float,
    scorers: Scorers,
    seed: int = 0,
    prompts_per_batch: int = 4,
    on_clip: Callable[[dict, torch.Tensor], None] | None = None,
) -> tuple[list[dict], dict]:
    """Generate G = ``samples_per_prompt`` clips per prompt and score them.

    Seeds: sample g of prompt i uses seed + i * G + g, so every model sees the same seeds.
    Returns per-clip rows and the summary (with measured seconds per clip and forward passes per clip:
    decoding steps x 2 with guidance, x 1 without, x ``spec.candidates``).
    """
    gen, g = spec.generator, samples_per_prompt
    sample = spec.sampler or gen.generate
    params = SamplingParams(cfg=spec.cfg, temperature=spec.temperature, top_k=spec.top_k)
    rows, embeddings, profiles, gen_seconds, values = [], [], [], 0.0, ()
    frames = gen.num_frames(duration)
    for start in range(0, len(prompts), prompts_per_batch):
        batch = prompts[start : start + prompts_per_batch]
        seeds = [seed + (start + i) * g + j for i in range(len(batch)) for j in range(g)]
        t = time.perf_counter()
        out = sample([p.caption for p in batch], duration, params, seeds=seeds, samples_per_prompt=g)
        gen_seconds += time.perf_counter() - t
        audio = out.audio[:, 0]
        clip_prompts = [p for p in batch for _ in range(g)]
        scores = score_clips(scorers, audio, [p.caption for p in clip_prompts], g, out.codes)
        values = tuple(_clip_values(scores))
        for n in range(audio.shape[0]):
            row = {
                "model": spec.label,
                **spec.extra,
                "cfg": spec.cfg,
                "prompt_index": start + n // g,
                "caption": clip_prompts[n].caption,
                "sample": n % g,
                "seed": seeds[n],
                "judge_correct": scores["judges"][n],
            }
            if "signal" in scores:
                row["signal_correct"] = scores["signal"][n]
            for key in values:
                row[key] = float(scores[key][n])
            rows.append(row)
            if on_clip is not None:
                on_clip(row, audio[n])
        if "embedding" in scores:
            embeddings.append(scores["embedding"])
        if "profile" in scores:
            profiles.append(scores["profile"])
    emb = torch.cat(embeddings) if embeddings else None
    prof = torch.cat(profiles) if profiles else None
    summary = summarise(spec.label, rows, emb, len(prompts), g, scorers, {**spec.extra, "cfg": spec.cfg}, prof, values)
    steps = frames + gen.lm.cfg.num_codebooks - 1
    summary["seconds_per_clip"] = gen_seconds / max(1, len(rows))
    summary["forward_passes_per_clip"] = steps * (2 if params.uses_cfg else 1) * spec.candidates
    summary["real_time_factor"] = summary["seconds_per_clip"] / (frames / gen.frame_rate)
    return rows, summary


def evaluate_real(audio: torch.Tensor, prompts: list[EvalPrompt], scorers: Scorers, label: str = "real clips") -> dict:
    """The same metrics on real corpus clips (one per prompt): the ceiling the judges can reach."""
    scores = score_clips(scorers, audio, [p.caption for p in prompts], 1)
    values = tuple(_clip_values(scores))
    rows = []
    for n, p in enumerate(prompts):
        row = {"model": label, "prompt_index": n, "caption": p.caption, "judge_correct": scores["judges"][n]}
        if "signal" in scores:
            row["signal_correct"] = scores["signal"][n]
        row.update({key: float(scores[key][n]) for key in values})
        rows.append(row)
    return summarise(label, rows, None, len(prompts), 1, scorers, {}, values=values)
