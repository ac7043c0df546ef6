"""The blind A/B arena: two distinct registry models chosen uniformly at random (as Chatbot Arena), one
clip each for the same prompt, sides random, names revealed only after the vote.

A pair is issued to one caller and answered with a vote token (``app.store.IssuedPair``) that only
that caller ever receives; every vote goes through the store's checks (token, session, first vote,
listening gate) after the texts are cleaned (``app.validation``) and the caller's rate limit.

With probability ``repeat_share`` a caller that gives a rater id gets, instead of new clips, a
consistency repeat of a pair that rater already judged: the same two clips under new file names, sides
swapped, same prompt (``app/repeats.py``). A vote may claim ``simulated`` (a simulated listener's):
that only ever takes it off the people's leaderboard and export, so any client may claim it.
The registry is re-read when its file changed (``ModelRegistry.refresh``) before models are drawn.
"""

from __future__ import annotations

import secrets
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from random import Random

from app.generation import GenerationService
from app.limits import Caller, RateLimiter
from app.prompt_bank import PROMPT_BANK
from app.registry import ModelRegistry, snap_lambda
from app.repeats import issue_repeat, repeat_candidates
from app.store import Store, now_utc
from app.validation import (
    DEFAULT_CFG,
    DEFAULT_TEMPERATURE,
    DEFAULT_TOP_K,
    SEED_RANGE,
    clean_feedback,
    clean_rater_id,
    collapse_whitespace,
)
from app.vote_rules import VoteRejected
from models.errors import InputError
from models.sampling import SamplingParams

__all__ = ["ArenaPair", "ArenaService", "VoteOutcome"]


@dataclass(frozen=True)
class ArenaPair:
    """What a listener gets: two anonymous clips (A, B) of one prompt and the pair's vote token. No
    model names."""

    token: str
    prompt: str
    audio_a: Path
    audio_b: Path
    duration_a: float
    duration_b: float


@dataclass(frozen=True)
class VoteOutcome:
    """A stored vote and the models it revealed."""

    pair_id: str
    choice: str
    model_a: str
    model_b: str
    name_a: str
    name_b: str


class ArenaService:
    """Pairs and votes. ``min_listen_s``: seconds of each clip a listener must play before voting;
    ``clock``: the server's time when a vote arrives (tests move it forward)."""

    def __init__(self, registry: ModelRegistry, generation: GenerationService, store: Store, *,
                 limiter: RateLimiter | None = None, min_listen_s: float = 5.0, duration: float = 6.0,
                 prompts: Sequence[str] = PROMPT_BANK, rng: Random | None = None,
                 clock: Callable[[], datetime] = now_utc, repeat_share: float = 0.1) -> None:
        if not min_listen_s >= 0:
            raise ValueError("min_listen_s must be >= 0")
        if not 0.0 <= repeat_share <= 1.0:
            raise ValueError(f"repeat_share must be in [0, 1], got {repeat_share}")
        if not prompts:
            raise ValueError("the prompt bank is empty")
        self.registry = registry
        self.generation = generation
        self.store = store
        self.limiter = limiter or RateLimiter()
        self.min_listen_s = float(min_listen_s)
        self.duration = float(duration)
        self.prompts = tuple(prompts)
        self.clock = clock
        self.repeat_share = float(repeat_share)
        self._rng = rng or Random(secrets.randbits(64))
        self._rng_lock = threading.Lock()

    @property
    def unavailable_reason(self) -> str:
        """Why the arena cannot run ("" when it can)."""
        n = len(self.registry.ids)
        if n < 2:
            return (f"The arena compares two different models, and this app serves {n}. "
                    "Start it with `--registry FILE` listing at least two models.")
        return ""

    def random_prompt(self) -> str:
        with self._rng_lock:
            return self._rng.choice(self.prompts)

    def draw_models(self) -> tuple[str, str]:
        """(model on side A, model on side B): a uniformly random ordered pair of distinct models (from the
        registry as its file now reads)."""
        self.registry.refresh()
        with self._rng_lock:
            a, b = self._rng.sample(self.registry.ids, 2)
        return a, b

    def new_pair(self, caller: Caller, prompt: object = None, rater_id: object = None) -> ArenaPair:
        """Generate one clip from each of two distinct random models and issue the pair to ``caller``.

        An empty prompt takes one from the prompt bank. Sides are random (the draw's order). With
        ``rater_id`` (optional; "" = anonymous) the pair may be a consistency repeat (module docstring).
        """
        _check_session(caller)
        self.limiter.hit("pair", caller)
        rater = clean_rater_id(rater_id)
        self.registry.refresh()
        if self.unavailable_reason:
            raise InputError(self.unavailable_reason)
        empty = prompt is None or (isinstance(prompt, str) and not prompt.strip())
        repeat = self._repeat(caller, rater, None if empty else collapse_whitespace(prompt))
        if repeat is not None:
            return repeat
        text = collapse_whitespace(self.random_prompt() if empty else prompt)
        model_a, model_b = self.draw_models()
        with self._rng_lock:
            seeds = (self._rng.randrange(SEED_RANGE[1]), self._rng.randrange(SEED_RANGE[1]))
        duration = min(self.duration, *(self.generation.model_max_duration(m) for m in (model_a, model_b)))
        requests = []
        for model_id, seed in zip((model_a, model_b), seeds, strict=True):
            entry = self.registry.get(model_id)
            lam = snap_lambda(entry.merge.init) if entry.merge is not None else None
            params = SamplingParams(cfg=self.registry.effective_cfg(model_id, DEFAULT_CFG),
                                    temperature=DEFAULT_TEMPERATURE, top_k=DEFAULT_TOP_K)
            requests.append(self.generation.request(model_id, text, round(duration, 3), params, (seed,), lam))
        jobs = [self.generation.submit(r) for r in requests]  # both queued before waiting: they batch
        audios = [self.generation.wait(job) for job in jobs]
        clip_a, clip_b = (self.generation.store_clips(r, a, source="arena")[0]
                          for r, a in zip(requests, audios, strict=True))
        issued = self.store.issue_pair(clip_a.id, clip_b.id, caller.session)
        return ArenaPair(issued.token, text, clip_a.audio_file, clip_b.audio_file, clip_a.duration, clip_b.duration)

    def _repeat(self, caller: Caller, rater: str | None, prompt: object) -> ArenaPair | None:
        """A consistency repeat for ``rater`` (with probability ``repeat_share``), or None: no rater id, the
        draw said no, or nothing of theirs is left to repeat (of ``prompt``, when one was typed)."""
        if rater is None or self.repeat_share <= 0 or not (prompt is None or isinstance(prompt, str)):
            return None
        with self._rng_lock:
            if self._rng.random() >= self.repeat_share:
                return None
        candidates = repeat_candidates(self.store, rater, prompt)
        while candidates:
            with self._rng_lock:
                original = candidates.pop(self._rng.randrange(len(candidates)))
            repeated = issue_repeat(self.store, original, caller.session)
            if repeated is not None:
                issued, clip_a, clip_b = repeated
                return ArenaPair(issued.token, issued.pair.prompt, clip_a.audio_file, clip_b.audio_file,
                                 clip_a.duration, clip_b.duration)
        return None

    def vote(self, caller: Caller, token: object, choice: object, rater_id: object = None,
             listened_a_s: object = 0.0, listened_b_s: object = 0.0, feedback: object = "",
             simulated: object = False) -> VoteOutcome:
        """Store the vote through the store's checks (raises VoteRejected or InputError) and reveal the models.

        ``simulated``: True for a simulated listener's vote (None = False)."""
        _check_session(caller)
        self.limiter.hit("vote", caller)
        if not isinstance(token, str) or not token:
            raise VoteRejected("unknown_pair", "there is no pair to vote on: get a new pair first")
        if simulated is None:
            simulated = False
        if not isinstance(simulated, bool):
            raise InputError("simulated must be true or false")
        rater = clean_rater_id(rater_id)
        text = clean_feedback(feedback, self.store.feedback_max_chars)
        vote = self.store.record_vote(token, caller.session, str(choice), rater, listened_a_s, listened_b_s, text,
                                      self.min_listen_s, now=self.clock(), simulated=simulated)
        return VoteOutcome(vote.pair_id, vote.choice, vote.model_a, vote.model_b,
                           self.registry.display_name(vote.model_a), self.registry.display_name(vote.model_b))


def _check_session(caller: Caller) -> None:
    if not isinstance(caller.session, str) or not 0 < len(caller.session) <= 128:
        raise InputError("this request has no session: use the web page or gradio_client")
