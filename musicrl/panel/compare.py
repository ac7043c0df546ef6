"""Offline side-by-side: two models generate for the same prompts, the simulated panel votes.

    result = compare_models(a, b, prompts, per_prompt=2, hearing=Hearing(judges), listeners=make_listeners(5, 0),
                            out_dir=Path("runs/panel/ab"))
    result.win_rate, result.ci, result.agreement

Clip g of prompt i comes from seed ``seed + i * G + g`` in both models (as ``musicrl eval``), so each
pair differs by the model only. Sides are drawn per pair from the seed. Every listener votes on every
pair. Output in ``out_dir``: ``audio/<clip id>.wav`` and ``preferences.jsonl`` — one row per vote in the
app export's layout (``app.transfer``; audio paths relative to ``out_dir``) with ``"simulated": true``,
so ``musicrl train reward-model --prefs out_dir/preferences.jsonl --audio-root out_dir`` reads it.
Win rate of A over B = wins / (wins + losses) (ties and both-bad are not games, as in Chatbot Arena), with
a 95 % percentile bootstrap interval over prompts (the unit that was sampled).
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
from tqdm import tqdm

from models.audio_io import atomic_write, wav_bytes
from models.generator import MusicGenerator
from models.sampling import SamplingParams
from musicrl.panel.hearing import Hearing
from musicrl.panel.listeners import Listener, measured_agreement


@dataclass
class ComparedModel:
    """A model under comparison: its label (the rows' model id), generator and guidance scale."""

    label: str
    generator: MusicGenerator
    cfg: float = 3.0
    temperature: float = 1.0
    top_k: int = 250

    @property
    def params(self) -> SamplingParams:
        return SamplingParams(cfg=1.0 if self.generator.cfg_free else self.cfg, temperature=self.temperature,
                              top_k=self.top_k)


@dataclass
class Clip:
    """One generated clip written under the output directory."""

    id: str
    model: ComparedModel
    prompt: str
    seed: int
    audio: np.ndarray  # [S]
    path: str  # relative to the output directory
    sha256: str
    duration: float


@dataclass
class CompareResult:
    """Votes (one dict per vote: pair index, prompt index, rater, choice, a_is_first), the win rate of the
    first model over the second with its bootstrap interval, and the listeners' agreement."""

    labels: tuple[str, str]
    votes: list[dict] = field(default_factory=list)
    wins: int = 0
    losses: int = 0
    ties: int = 0
    both_bad: int = 0
    win_rate: float = float("nan")
    ci: tuple[float, float] = (float("nan"), float("nan"))
    agreement: float = float("nan")
    agreement_pairs: int = 0
    prefs_path: Path | None = None

    def summary(self) -> dict:
        return {"model_a": self.labels[0], "model_b": self.labels[1], "votes": len(self.votes), "wins": self.wins,
                "losses": self.losses, "ties": self.ties, "both_bad": self.both_bad, "win_rate": self.win_rate,
                "win_rate_ci": list(self.ci), "listener_agreement": self.agreement,
                "agreement_listener_pairs": self.agreement_pairs, "simulated": True,
                "preferences": str(self.prefs_path) if self.prefs_path else None}


def _now() -> str:
    return datetime.now(UTC).isoformat()


def generate_clips(model: ComparedModel, prompts: Sequence[str], per_prompt: int, duration: float, seed: int,
                   out_dir: Path, batch_prompts: int = 4) -> list[list[Clip]]:
    """[prompt][g] clips of one model, written to ``out_dir/audio`` (seed of clip g of prompt i:
    seed + i * G + g)."""
    gen, g = model.generator, per_prompt
    (out_dir / "audio").mkdir(parents=True, exist_ok=True)
    clips: list[list[Clip]] = []
    for start in tqdm(range(0, len(prompts), batch_prompts), desc=f"generate {model.label}", unit="batch",
                      file=sys.stderr, disable=None):
        batch = list(prompts[start : start + batch_prompts])
        seeds = [seed + (start + i) * g + j for i in range(len(batch)) for j in range(g)]
        out = gen.generate(batch, duration, model.params, seeds=seeds, samples_per_prompt=g)
        audio = out.audio[:, 0].numpy()
        for i, prompt in enumerate(batch):
            row = []
            for j in range(g):
                wav = audio[i * g + j]
                data = wav_bytes(wav[None], gen.sample_rate)
                sha = hashlib.sha256(data).hexdigest()
                clip_id = hashlib.sha256(f"{model.label}\0{sha}".encode()).hexdigest()[:32]
                rel = f"audio/{clip_id}.wav"
                atomic_write(out_dir / rel, data)
                row.append(Clip(clip_id, model, prompt, seeds[i * g + j], wav, rel, sha, len(wav) / gen.sample_rate))
            clips.append(row)
    return clips


def _clip_fields(side: str, clip: Clip, created: str) -> dict:
    params = clip.model.params
    return {f"{side}_{k}": v for k, v in {
        "audio": clip.path, "audio_sha256": clip.sha256, "model_id": clip.model.label,
        "checkpoint_hash": clip.model.generator.checkpoint_hash, "seed": clip.seed,
        "params": {"cfg": params.cfg, "temperature": params.temperature, "top_k": params.top_k},
        "sample_rate": clip.model.generator.sample_rate, "duration": round(clip.duration, 3), "created_at": created,
    }.items()}


def preference_row(pair_id: str, a: Clip, b: Clip, choice: str, rater: str, session: str) -> dict:
    """One vote in the app export's row layout (``app.transfer``): chosen = B when B won, else A (ties
    and both-bad keep A as chosen, label 0.5); listening = the whole clips; ``simulated`` True."""
    now = _now()
    chosen, rejected = (b, a) if choice == "b" else (a, b)
    row = {"pair_id": pair_id, "prompt": a.prompt, "chosen": chosen.id, "rejected": rejected.id,
           "label": 1.0 if choice in ("a", "b") else 0.5, "outcome": choice}
    row.update(_clip_fields("chosen", chosen, now))
    row.update(_clip_fields("rejected", rejected, now))
    row.update({"session_id": session, "issued_at": now, "rater_id": rater, "listened_a_s": round(a.duration, 3),
                "listened_b_s": round(b.duration, 3), "feedback": "", "created_at": now, "simulated": True})
    return row


def bootstrap_win_rate(wins: np.ndarray, losses: np.ndarray, n_boot: int = 1000, seed: int = 0
                       ) -> tuple[float, tuple[float, float]]:
    """Per-prompt wins and losses [P] -> (Σwins / Σ(wins + losses), 95 % percentile interval from
    resampling prompts with replacement). Example: wins [2, 0], losses [0, 2] -> 0.5, and resamples
    give 0, 0.5 or 1, so the interval spans [0, 1]."""
    wins, losses = np.asarray(wins, float), np.asarray(losses, float)
    total = wins.sum() + losses.sum()
    if total == 0:
        return float("nan"), (float("nan"), float("nan"))
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, len(wins), size=(n_boot, len(wins)))
    w, n = wins[idx].sum(1), (wins + losses)[idx].sum(1)
    rates = w[n > 0] / n[n > 0]
    return float(wins.sum() / total), (float(np.percentile(rates, 2.5)), float(np.percentile(rates, 97.5)))


def compare_models(model_a: ComparedModel, model_b: ComparedModel, prompts: Sequence[str], per_prompt: int,
                   hearing: Hearing, listeners: Sequence[Listener], out_dir: Path, duration: float = 4.0,
                   seed: int = 0) -> CompareResult:
    """Generate, let every listener vote on every pair, write the clips and preferences.jsonl (module
    docstring) and return the tallies. Deterministic given the seeds (listeners carry their own)."""
    if model_a.generator.sample_rate != model_b.generator.sample_rate:
        raise ValueError("the two models generate at different sample rates")
    out_dir = Path(out_dir)
    clips = [generate_clips(m, prompts, per_prompt, duration, seed, out_dir) for m in (model_a, model_b)]
    flat = [c for model_clips in clips for row in model_clips for c in row]
    raw = hearing.features([c.prompt for c in flat], [c.audio for c in flat], model_a.generator.sample_rate)
    z_of = {c.id: listeners[0].config.standardise(r) for c, r in zip(flat, raw, strict=True)}
    sides = np.random.default_rng(np.random.SeedSequence([seed, 0x51DE])).random((len(prompts), per_prompt)) < 0.5
    result = CompareResult((model_a.label, model_b.label))
    wins, losses = np.zeros(len(prompts)), np.zeros(len(prompts))
    by_pair: dict[str, dict[str, str]] = {}
    tally = {"a": 0, "b": 0, "tie": 0, "both_bad": 0}
    path = out_dir / "preferences.jsonl"
    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "w", encoding="utf-8") as handle:
        for i in range(len(prompts)):
            for g in range(per_prompt):
                first_is_a = bool(sides[i, g])  # is model A on side A of this pair?
                a, b = (clips[0][i][g], clips[1][i][g]) if first_is_a else (clips[1][i][g], clips[0][i][g])
                key = f"p{i}-s{g}"
                for listener in listeners:
                    choice = listener.choose(z_of[a.id], z_of[b.id])
                    pair_id = hashlib.sha256(f"{seed}\0{key}\0{listener.rater_id}".encode()).hexdigest()[:32]
                    handle.write(json.dumps(preference_row(pair_id, a, b, choice, listener.rater_id,
                                                           f"panel-{seed}"), ensure_ascii=False) + "\n")
                    by_pair.setdefault(key, {})[listener.rater_id] = choice
                    tally[choice] += 1
                    if choice in ("a", "b"):
                        model_a_won = (choice == "a") == first_is_a
                        wins[i] += model_a_won
                        losses[i] += not model_a_won
                    result.votes.append({"prompt_index": i, "sample": g, "rater_id": listener.rater_id,
                                         "choice": choice, "model_a_on_side_a": first_is_a})
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(tmp, path)
    result.prefs_path = path
    result.wins, result.losses = int(wins.sum()), int(losses.sum())
    result.ties, result.both_bad = tally["tie"], tally["both_bad"]
    result.win_rate, result.ci = bootstrap_win_rate(wins, losses, seed=seed)
    if len(listeners) >= 2:
        result.agreement, result.agreement_pairs = measured_agreement(by_pair)
    return result
