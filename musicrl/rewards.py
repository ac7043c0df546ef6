"""Every reward once, with one signature: ``reward(prompts, audio, codes=None) -> [B]``.

    adherence = TextAdherence(TextAudioEmbedder.load(ASSETS_DIR / "embedder"))
    r = adherence(["calm ambient piano"], audio)            # [1]: the RL reward AND the eval metric
    mixed = WeightedReward({"adherence": adherence, "quality": Quality(q)}, {"adherence": 1, "quality": .5})

Shapes: prompts B captions (one per row); audio [B, S] mono at the scorer's sample rate; codes
[B, K, T] (only the preference reward model reads them); every reward returns [B] float32 on the CPU.
Rows are prompt-major where siblings matter (``Diversity``): row b*G + g is sample g of prompt b.

| reward | formula | scorer |
|---|---|---|
| ``TextAdherence`` | mean over the clip's 4 s segments of cos(text, segment) — MusicRL's MuLan score | embedder |
| ``Quality`` | mean over segments of P(clean corpus music) | quality model |
| ``Diversity`` | mean over the G−1 siblings of 1 − cos(E(y), E(y')), E = mean segment embedding | embedder |
| ``AttributeMatch`` | fraction of the prompt's stated attributes the judges hear (EVALUATION ONLY) | judges |
| ``PreferenceReward`` | r(caption, codes) of a Bradley–Terry RM (``PreferenceModel``) | ``musicrl.reward_model`` |

Why here, and how evaluation gets them (STYLE 7, "rewards = metrics"): the arithmetic on embeddings
is pure and lives one floor down in ``evaluation.reward_math`` (``cosine_adherence``,
``diversity_rewards``, ``mix_rewards``); this module is the ONE place that binds scorer models to it.
``evaluation`` may not import ``musicrl``, so it does not score clips itself: ``evaluation.suite``
takes these objects by injection (its ``Scorers``), and ``musicrl eval`` wires them. The adherence that
``musicrl eval`` reports for a clip is therefore computed by the very object an RL recipe optimises
(tests/test_rewards.py checks it bit for bit).

Judges: the design keeps the attribute judges out of training (they are the independent check);
``AttributeMatch`` has the reward signature so evaluation treats it like the others, but
``TRAINING_REWARDS`` does not list it and ``check_trainable`` refuses it.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol, runtime_checkable

import torch
from torch import Tensor

from evaluation.judges import AttributeJudgement, Judges
from evaluation.reward_math import cosine_adherence, diversity_rewards, mix_rewards
from models.embedder import TextAudioEmbedder
from models.errors import InputError
from models.quality import QualityModel

__all__ = [
    "TRAINING_REWARDS",
    "AttributeMatch",
    "Diversity",
    "PreferenceModel",
    "PreferenceReward",
    "Quality",
    "Reward",
    "TextAdherence",
    "WeightedReward",
    "build_reward",
    "check_trainable",
    "load_preference_reward",
    "mix_rewards",
    "parse_weights",
]

TRAINING_REWARDS = ("adherence", "quality", "diversity", "preference")


class Reward(Protocol):
    """The one reward signature: B prompts, audio [B, S] (and codes [B, K, T]) -> [B]."""

    def __call__(self, prompts: Sequence[str], audio: Tensor, codes: Tensor | None = None) -> Tensor: ...


def _check(prompts: Sequence[str], audio: Tensor) -> list[str]:
    if isinstance(prompts, str):
        raise TypeError("prompts must be a list of captions, one per clip, not one string")
    if audio.dim() != 2 or audio.shape[0] != len(prompts):
        raise ValueError(f"audio must be [B, S] with B = {len(prompts)} prompts, got {tuple(audio.shape)}")
    return list(prompts)


@dataclass
class TextAdherence:
    """MuLan score: mean over the clip's ``segment_s`` windows of cos(text, window) (MusicRL scores long
    clips per segment and averages). A clip of one window: the cosine of the clip."""

    embedder: TextAudioEmbedder

    @torch.no_grad()
    def __call__(self, prompts: Sequence[str], audio: Tensor, codes: Tensor | None = None) -> Tensor:
        prompts = _check(prompts, audio)
        text = self.embedder.embed_text(prompts)  # [B, D]
        segments = self.embedder.embed_audio_segments(audio)  # [B, N, D]
        return cosine_adherence(text, segments).float().cpu()


@dataclass
class Quality:
    """The quality model's probability of "clean corpus music", averaged over segments, in [0, 1]."""

    model: QualityModel

    @torch.no_grad()
    def __call__(self, prompts: Sequence[str], audio: Tensor, codes: Tensor | None = None) -> Tensor:
        _check(prompts, audio)
        return self.model.score(audio).float().cpu()


@dataclass
class Diversity:
    """Each sample's mean dissimilarity 1 − cos to its G − 1 siblings (Cideron et al. 2024), G =
    ``samples_per_prompt`` consecutive rows of one prompt. The evaluation metric "diversity" of a prompt
    is the mean of its G rewards (= the mean over unordered pairs, ``reward_math.mean_pairwise_diversity``)."""

    embedder: TextAudioEmbedder
    samples_per_prompt: int  # G; the reward needs G >= 2 (``embed`` alone also serves G = 1, for FAD)

    @torch.no_grad()
    def embed(self, audio: Tensor) -> Tensor:
        """audio [N, S] -> [N, D] music embeddings (mean of the segment embeddings, unit norm), CPU."""
        return self.embedder.embed_audio(audio).float().cpu()

    def from_embeddings(self, prompts: Sequence[str], embeddings: Tensor) -> Tensor:
        """prompts N (prompt-major groups of G), embeddings [N, D] -> [N]."""
        g = self.samples_per_prompt
        if embeddings.dim() != 2 or embeddings.shape[0] != len(prompts) or len(prompts) % g:
            raise ValueError(f"need [N, D] embeddings for N = {len(prompts)} prompts, a multiple of G = {g}")
        groups = [list(prompts[i : i + g]) for i in range(0, len(prompts), g)]
        if any(len(set(group)) != 1 for group in groups):
            raise ValueError(f"rows must be prompt-major: each run of G = {g} rows shares one prompt")
        return diversity_rewards(embeddings.view(-1, g, embeddings.shape[-1])).reshape(-1)

    def __call__(self, prompts: Sequence[str], audio: Tensor, codes: Tensor | None = None) -> Tensor:
        prompts = _check(prompts, audio)
        return self.from_embeddings(prompts, self.embed(audio))


@dataclass
class AttributeMatch:
    """Per clip: the fraction of the attributes its prompt states (``truth``: caption -> {attribute:
    label}) that the evaluation judges hear; NaN where the prompt states none. EVALUATION ONLY."""

    judges: Judges
    truth: Mapping[str, Mapping[str, str]] | Callable[[str], Mapping[str, str]]
    batch_size: int = 16

    def attributes_of(self, caption: str) -> dict[str, str]:
        stated = self.truth(caption) if callable(self.truth) else self.truth.get(caption, {})
        return {a: str(v) for a, v in stated.items()}

    def judge(self, prompts: Sequence[str], audio: Tensor) -> AttributeJudgement:
        """Per clip {attribute: heard as stated?} and the clips' label-probability profiles [B, C]."""
        prompts = _check(prompts, audio)
        return self.judges.judge(audio, [self.attributes_of(p) for p in prompts], self.batch_size)

    def __call__(self, prompts: Sequence[str], audio: Tensor, codes: Tensor | None = None) -> Tensor:
        rows = self.judge(prompts, audio).matches
        return torch.tensor([sum(r.values()) / len(r) if r else math.nan for r in rows], dtype=torch.float32)


@runtime_checkable
class PreferenceModel(Protocol):
    """What a preference reward model implements (MusicRL's user RM, arXiv:2402.04229; WARM, arXiv:2401.12187): a scalar
    r(x, y) for a caption x and audio codes y [B, K, T] -> [B], trained with
    ``musicrl.losses.bradley_terry_loss(r(x, y+), r(x, y-))`` on the app's votes. A WARM model is the
    weight average of several such models: still one ``score``."""

    def score(self, captions: list[str], codes: Tensor) -> Tensor: ...


@dataclass
class PreferenceReward:
    """A ``PreferenceModel`` behind the reward signature (it reads the codes, not the audio)."""

    model: PreferenceModel

    @torch.no_grad()
    def __call__(self, prompts: Sequence[str], audio: Tensor | None, codes: Tensor | None = None) -> Tensor:
        if codes is None or codes.dim() != 3 or codes.shape[0] != len(prompts):
            raise ValueError(f"the preference reward needs codes [B, K, T] for B = {len(prompts)} prompts")
        if isinstance(prompts, str):
            raise TypeError("prompts must be a list of captions, one per clip, not one string")
        return self.model.score(list(prompts), codes).float().cpu()


def load_preference_reward(path, device: str = "cpu") -> PreferenceReward:
    """The reward of a trained preference RM directory (``musicrl train reward-model``; a WARM average is
    one model too). Its codes must come from the codec of the base generator it was trained on."""
    from musicrl.reward_model import RewardModel

    return PreferenceReward(RewardModel.load(path, device=device))


@dataclass
class WeightedReward:
    """Σ_name weights[name] · rewards[name](prompts, audio, codes) — MusicRL-R's MuLan + quality mix,
    CLP's weighted objectives. ``components`` returns each term (for the log)."""

    rewards: dict[str, Reward]
    weights: dict[str, float] = field(default_factory=dict)

    def components(self, prompts: Sequence[str], audio: Tensor, codes: Tensor | None = None) -> dict[str, Tensor]:
        return {name: fn(prompts, audio, codes) for name, fn in self.rewards.items()}

    def __call__(self, prompts: Sequence[str], audio: Tensor, codes: Tensor | None = None) -> Tensor:
        return mix_rewards(self.components(prompts, audio, codes), self.weights)


def check_trainable(names: Sequence[str]) -> None:
    """Refuse reward names a recipe may not optimise (unknown ones, and the evaluation judges)."""
    bad = [n for n in names if n not in TRAINING_REWARDS]
    if bad:
        raise InputError(f"cannot train on reward {bad[0]!r}; choose from {', '.join(TRAINING_REWARDS)}")


def parse_weights(text: str, what: str = "--reward") -> dict[str, float]:
    """``"adherence"`` -> {adherence: 1}; ``"adherence=1,quality=0.5"`` -> {adherence: 1, quality: 0.5}.
    Names must be training rewards (``TRAINING_REWARDS``), weights finite and >= 0, not all 0."""
    weights: dict[str, float] = {}
    for item in (part.strip() for part in str(text).split(",")):
        if not item:
            continue
        name, _, value = item.partition("=")
        name = name.strip()
        if name not in TRAINING_REWARDS:
            raise InputError(f"{what}: unknown reward {name!r}; choose from {', '.join(TRAINING_REWARDS)}")
        if name in weights:
            raise InputError(f"{what}: {name} is given twice")
        try:
            weight = float(value) if value.strip() else 1.0
        except ValueError:
            raise InputError(f"{what}: the weight of {name} must be a number, got {value.strip()!r}") from None
        if not math.isfinite(weight) or weight < 0:
            raise InputError(f"{what}: the weight of {name} must be a finite number >= 0, got {value.strip()}")
        weights[name] = weight
    if not weights or not any(weights.values()):
        raise InputError(f"{what}: give a reward with a weight > 0, e.g. adherence or adherence=1,quality=0.5")
    return weights


def build_reward(
    weights: Mapping[str, float],
    sample_rate: int,
    samples_per_prompt: int = 1,
    embedder: str | Path = "",
    quality_model: str | Path = "",
    reward_model: str | Path = "",
) -> tuple[WeightedReward, dict]:
    """The weighted mix of the training rewards ``weights`` asks for (names of ``TRAINING_REWARDS``;
    0-weight terms are left out), with the shipped scorers unless others are given — every recipe,
    best-of-N and the app build their rewards here. ``samples_per_prompt`` is the G of the diversity
    reward's sibling groups. Returns the reward and, with a preference model, what identifies it
    (directory, weights hash, the votes it learned from) for the checkpoints' lineage.
    Raises InputError for an unknown name, a missing reward model or a scorer of another sample rate."""
    from models.checkpoint import file_hash
    from models.registry import ASSETS_DIR

    check_trainable([name for name, w in weights.items() if w])
    active = {name: float(w) for name, w in weights.items() if w}
    terms: dict[str, Reward] = {}
    info: dict = {}
    if "adherence" in active or "diversity" in active:
        embedder_model = TextAudioEmbedder.load(embedder or ASSETS_DIR / "embedder")
        _same_rate("embedder", embedder_model.sample_rate, sample_rate)
        if "adherence" in active:
            terms["adherence"] = TextAdherence(embedder_model)
        if "diversity" in active:
            if samples_per_prompt < 2:
                raise InputError("the diversity reward compares a prompt's samples: it needs 2 or more per prompt")
            terms["diversity"] = Diversity(embedder_model, samples_per_prompt)
    if "quality" in active:
        quality = QualityModel.load(quality_model or ASSETS_DIR / "quality")
        _same_rate("quality model", quality.sample_rate, sample_rate)
        terms["quality"] = Quality(quality)
    if "preference" in active:
        if not reward_model:
            raise InputError("the preference reward needs a reward model directory (musicrl train reward-model)")
        path = Path(reward_model)
        if not path.is_dir():
            raise InputError(f"reward model {path} is not a directory")
        preference = load_preference_reward(path)
        terms["preference"] = preference
        info = {"reward_model": str(path.resolve()),
                "reward_model_sha256": file_hash(path / "reward_model.safetensors"),
                "reward_model_lineage": preference.model.lineage}
    return WeightedReward(terms, {name: active[name] for name in terms}), info


def _same_rate(name: str, expected: int, given: int) -> None:
    if expected != given:
        raise InputError(f"the {name} expects {expected} Hz audio; the model makes {given} Hz")
