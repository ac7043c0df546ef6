"""``MusicGenerator``: the one inference facade (app, RL rollouts, best-of-N and evaluation use it).

generate = encode prompts -> sample delayed codes step by step (CFG through the null condition,
skipped entirely at gamma = 1) -> revert the delay pattern -> decode with the codec.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Callable
from dataclasses import dataclass, field

import torch

from models.codecs import Codec
from models.conditioners import TextConditioner
from models.delay import delay_valid_mask, revert_delayed
from models.errors import InputError
from models.lm import AudioLM, TextStates
from models.sampling import SamplingParams, apply_cfg, make_generators, sample_next

MAX_PROMPT_CHARS = 1000


@dataclass
class CodesOutput:
    """codes [N, K, T]; logprobs [N, K, T] (None unless asked); prompts and seeds per row (N = B * G);
    text: the N rows' conditioning the codes were sampled under (what rollouts score them with)."""

    codes: torch.Tensor
    logprobs: torch.Tensor | None
    prompts: list[str]
    seeds: list[int]
    text: TextStates | None = None


@dataclass
class AudioOutput:
    """audio [N, C, S] float; codes [N, K, T]; the rest per row."""

    audio: torch.Tensor
    codes: torch.Tensor
    sample_rate: int
    prompts: list[str]
    seeds: list[int]
    logprobs: torch.Tensor | None = None


@torch.no_grad()
def sample_codes(
    lm: AudioLM,
    text: TextStates,
    num_frames: int,
    params: SamplingParams,
    seeds: list[int],
    return_logprobs: bool = False,
    on_step: Callable[[int, int], None] | None = None,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Autoregressive sampling with the delay pattern.

    Args:
        text: states for the N rows ([N, L, C], mask [N, L]).
        num_frames: T, frames of audio codes to produce (T + K - 1 decoding steps).
        seeds: N seeds, one generator per row.
    Returns:
        codes [N, K, T]; logprobs [N, K, T] of the sampled codes (see ``sample_next``) or None.
    """
    n, k, special = text.states.shape[0], lm.cfg.num_codebooks, lm.cfg.special_token
    steps = num_frames + k - 1
    use_cfg = params.uses_cfg
    cache = lm.start_decoding(text, 2 * n if use_cfg else n, steps)
    valid = delay_valid_mask(k, steps, device=text.states.device)
    generators = None if params.greedy else make_generators(seeds, device=text.states.device)
    tokens = torch.full((n, k), special, dtype=torch.long, device=text.states.device)
    delayed = torch.full((n, k, steps), special, dtype=torch.long, device=tokens.device)
    logprobs = torch.zeros(n, k, steps) if return_logprobs else None
    for s in range(steps):
        logits = lm.step(torch.cat([tokens, tokens]) if use_cfg else tokens, s, cache)
        if use_cfg:
            logits = apply_cfg(logits[:n], logits[n:], params.cfg)
        codes, logp = sample_next(logits, params, generators)
        tokens = torch.where(valid[:, s], codes, special)
        delayed[:, :, s] = tokens
        if logprobs is not None:
            logprobs[:, :, s] = logp.float().cpu() * valid[:, s].cpu()
        if on_step is not None:
            on_step(s + 1, steps)
    codes = revert_delayed(delayed)
    return codes, (revert_delayed(logprobs) if logprobs is not None else None)


@dataclass
class MusicGenerator:
    """A text conditioner, an audio LM and a codec, plus what identifies them.

    name: registry name or path; checkpoint_hash: content hash of the weights; max_duration in
    seconds; cfg_free: True for models distilled to run without guidance.
    """

    lm: AudioLM
    conditioner: TextConditioner
    codec: Codec
    name: str = "unnamed"
    checkpoint_hash: str = ""
    max_duration: float = 30.0
    cfg_free: bool = False
    meta: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.codec.num_codebooks != self.lm.cfg.num_codebooks or self.codec.cardinality != self.lm.cfg.cardinality:
            raise ValueError(
                f"codec ({self.codec.num_codebooks} x {self.codec.cardinality}) does not match the LM "
                f"({self.lm.cfg.num_codebooks} x {self.lm.cfg.cardinality})"
            )
        self.lm.eval()
        limit = (self.lm.cfg.max_positions - self.lm.cfg.num_codebooks + 1) / self.codec.frame_rate
        self.max_duration = min(self.max_duration, limit)

    @property
    def sample_rate(self) -> int:
        return self.codec.sample_rate

    @property
    def frame_rate(self) -> float:
        return self.codec.frame_rate

    def num_frames(self, duration: float) -> int:
        """Frames for ``duration`` seconds of audio (frames = duration x frame rate, at least 1)."""
        if not duration > 0:
            raise InputError(f"duration must be > 0 seconds, got {duration}")
        if duration > self.max_duration + 1e-9:
            raise InputError(f"duration {duration:g} s exceeds this model's maximum of {self.max_duration:g} s")
        return max(1, round(duration * self.frame_rate))

    def encode_text(self, prompts: list[str]) -> TextStates:
        return self.conditioner.encode(prompts)

    def plan(
        self,
        prompts: list[str],
        duration: float,
        params: SamplingParams,
        seeds: list[int] | int = 0,
        samples_per_prompt: int = 1,
    ) -> GenerationPlan:
        """Check a request once (InputError with a message for the user) and fix what it will sample.

        G = ``samples_per_prompt`` samples of each of B prompts; rows are prompt-major: row b * G + g is
        sample g of prompt b. ``seeds`` is one seed per row or a single base seed (row i: base + i).
        """
        prompts = [validate_prompt(p) for p in prompts]
        try:
            params.validate()
        except ValueError as err:
            raise InputError(str(err)) from None
        if samples_per_prompt < 1:
            raise InputError(f"samples per prompt must be >= 1, got {samples_per_prompt}")
        rows = len(prompts) * samples_per_prompt
        if isinstance(seeds, int):
            seeds = [seeds + i for i in range(rows)]
        if len(seeds) != rows:
            raise InputError(f"{len(seeds)} seeds for {rows} samples")
        return GenerationPlan(tuple(prompts), tuple(int(s) for s in seeds), self.num_frames(duration), params,
                              samples_per_prompt)

    def sample(
        self,
        plan: GenerationPlan,
        return_logprobs: bool = False,
        on_step: Callable[[int, int], None] | None = None,
    ) -> CodesOutput:
        """Sample the codes of a plan made by :meth:`plan` (nothing is checked again)."""
        text = self.encode_text(list(plan.prompts)).repeat_rows(plan.samples_per_prompt)
        codes, logprobs = sample_codes(self.lm, text, plan.frames, plan.params, list(plan.seeds), return_logprobs,
                                       on_step)
        return CodesOutput(codes, logprobs, plan.rows, list(plan.seeds), text)

    def generate_codes(
        self,
        prompts: list[str],
        duration: float,
        params: SamplingParams,
        seeds: list[int] | int = 0,
        samples_per_prompt: int = 1,
        return_logprobs: bool = False,
        on_step: Callable[[int, int], None] | None = None,
    ) -> CodesOutput:
        """:meth:`plan` then :meth:`sample`: G code sequences [N, K, T] for each of B prompts, in one batch."""
        return self.sample(self.plan(prompts, duration, params, seeds, samples_per_prompt), return_logprobs, on_step)

    @torch.no_grad()
    def decode(self, codes: torch.Tensor) -> torch.Tensor:
        """codes [N, K, T] -> audio [N, C, S] clamped to [-1, 1]."""
        return self.codec.decode(codes).float().clamp(-1.0, 1.0)

    def render(
        self,
        plan: GenerationPlan,
        return_logprobs: bool = False,
        on_step: Callable[[int, int], None] | None = None,
    ) -> AudioOutput:
        """:meth:`sample` a plan and decode it: audio [N, C, S]."""
        out = self.sample(plan, return_logprobs, on_step)
        return AudioOutput(self.decode(out.codes), out.codes, self.sample_rate, out.prompts, out.seeds, out.logprobs)

    def generate(
        self,
        prompts: list[str],
        duration: float,
        params: SamplingParams,
        seeds: list[int] | int = 0,
        samples_per_prompt: int = 1,
        return_logprobs: bool = False,
        on_step: Callable[[int, int], None] | None = None,
    ) -> AudioOutput:
        """:meth:`plan` then :meth:`render`."""
        return self.render(self.plan(prompts, duration, params, seeds, samples_per_prompt), return_logprobs, on_step)


@dataclass(frozen=True)
class GenerationPlan:
    """A checked request (:meth:`MusicGenerator.plan`): B prompts, G = ``samples_per_prompt`` samples of
    each, one seed per row (N = B * G rows, prompt-major), T = ``frames``, the sampling parameters.
    Plans of one model with equal frames and parameters concatenate into one batch (:meth:`concat`);
    each row still depends on its own seed only."""

    prompts: tuple[str, ...]
    seeds: tuple[int, ...]
    frames: int
    params: SamplingParams
    samples_per_prompt: int = 1

    @property
    def rows(self) -> list[str]:
        """The prompt of each of the N rows."""
        return [p for p in self.prompts for _ in range(self.samples_per_prompt)]

    @classmethod
    def concat(cls, plans: list[GenerationPlan]) -> GenerationPlan:
        """One plan whose rows are the plans' rows in order (one prompt per row)."""
        first = plans[0]
        if any((p.frames, p.params) != (first.frames, first.params) for p in plans):
            raise ValueError("only plans with equal frames and sampling parameters concatenate")
        return cls(tuple(r for p in plans for r in p.rows), tuple(s for p in plans for s in p.seeds), first.frames,
                   first.params)


_BIDI_CONTROLS = frozenset("\u061c\u200e\u200f\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069")


def check_plain_text(text: str, what: str) -> None:
    """Refuse control characters (NUL, ANSI escapes; tab and line breaks are fine), lone surrogates and
    bidirectional overrides (which make stored text display as something else) in user text."""
    bad = [c for c in text if (unicodedata.category(c) in ("Cc", "Cs") and c not in "\t\n\r") or c in _BIDI_CONTROLS]
    if bad:
        raise InputError(f"{what} contains {len(bad)} control or binary character(s) (first: U+{ord(bad[0]):04X}); "
                         "type plain text")


def validate_prompt(prompt: str) -> str:
    """A prompt is plain text (:func:`check_plain_text`) of 1 to MAX_PROMPT_CHARS characters; returned stripped."""
    if not isinstance(prompt, str):
        raise InputError("the prompt must be text")
    if len(prompt) > MAX_PROMPT_CHARS:
        raise InputError(f"the prompt has {len(prompt)} characters; the maximum is {MAX_PROMPT_CHARS}")
    check_plain_text(prompt, "the prompt")
    if not prompt.strip():
        raise InputError("the prompt is empty")
    return prompt.strip()
