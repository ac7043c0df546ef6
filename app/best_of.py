"""Best-of-N in the Generate tab: the rewards a listener may pick, their scorers, and the server's rules for N.

A best-of-N request samples N candidates for each clip and keeps the one the chosen reward scores highest
(``musicrl.best_of_n``, the inference-time baseline that BOND distils). The server's rules:

- N is a whole number from 1 (off) to ``max_n`` (``musicrl app --max-best-of``, default 8);
- the request costs N generation requests against the rate limits and N places in the queue
  (``app/generation.py``): a best-of-8 request is not 8x free work;
- the reward is one of :data:`REWARDS` — ``preference`` only when the app was started with a reward model;
- the reward's scorers must take the model's sample rate: the shipped embedder and quality model expect
  16 kHz, so best-of is refused (one message naming both rates) for the 8 kHz debug models unless the app
  is given scorers of that rate (``--embedder DIR --quality DIR``).

Scorers are loaded once per app, on first use, and shared by every request (one instance per term and
sample rate; ``adherence+quality`` reuses the ``adherence`` and ``quality`` terms). They run on the
generation worker's thread only.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path

from app.validation import number
from models.errors import InputError
from musicrl.best_of_n import MAX_BEST_OF
from musicrl.rewards import Reward, WeightedReward, build_reward

__all__ = ["DEFAULT_MAX_BEST_OF", "REWARDS", "BestOfScorers"]

DEFAULT_MAX_BEST_OF = 8
# What the reward choice of the Generate tab means: weights over musicrl.rewards' training rewards.
REWARDS: dict[str, dict[str, float]] = {
    "adherence": {"adherence": 1.0},
    "quality": {"quality": 1.0},
    "adherence+quality": {"adherence": 1.0, "quality": 1.0},
    "preference": {"preference": 1.0},
}
_AUDIO_FREE = ("preference",)  # terms that read the codes only, whatever the sample rate


class BestOfScorers:
    """The app's best-of-N rewards, built by ``musicrl.rewards.build_reward`` on first use and cached.

    ``embedder``, ``quality``: scorer directories ("" = the shipped ones in models/assets);
    ``reward_model``: a preference reward model directory ("" = no ``preference`` choice); ``max_n``: the
    largest N this server accepts (1 turns best-of off). ``builder``: build_reward's signature (tests)."""

    def __init__(
        self,
        embedder: str | Path = "",
        quality: str | Path = "",
        reward_model: str | Path = "",
        max_n: int = DEFAULT_MAX_BEST_OF,
        builder: Callable[..., tuple[WeightedReward, dict]] = build_reward,
    ) -> None:
        if isinstance(max_n, bool) or not isinstance(max_n, int) or not 1 <= max_n <= MAX_BEST_OF:
            raise InputError(f"--max-best-of must be a whole number from 1 to {MAX_BEST_OF}, got {max_n!r}")
        if reward_model and not Path(reward_model).is_dir():
            raise InputError(f"--reward-model {reward_model} is not a directory")
        for flag, path in (("--embedder", embedder), ("--quality", quality)):
            if path and not Path(path).is_dir():
                raise InputError(f"{flag} {path} is not a directory")
        self.embedder, self.quality, self.reward_model = str(embedder), str(quality), str(reward_model)
        self.max_n = max_n
        self._builder = builder
        self._terms: dict[tuple[str, int], Reward | str] = {}  # a built term, or why it cannot be built
        self._lock = threading.Lock()

    @property
    def choices(self) -> tuple[str, ...]:
        """The reward choices this app offers, in the order the page lists them."""
        return tuple(name for name in REWARDS if name != "preference" or self.reward_model)

    def check_n(self, n: object) -> int:
        """N as a whole number in [1, max_n] (InputError with the server's maximum otherwise)."""
        if self.max_n == 1 and n not in (1, 1.0, None):
            raise InputError("best-of-N is off on this server: ask for 1 candidate per clip")
        return 1 if n is None else int(number("best of N", n, 1, self.max_n, integer=True))

    def check_choice(self, choice: object) -> str:
        if not isinstance(choice, str) or choice not in self.choices:
            shown = repr(choice) if isinstance(choice, str) and len(choice) <= 40 else "given"
            raise InputError(f"unknown best-of reward {shown}; choose from {', '.join(self.choices)}")
        return choice

    def _term(self, name: str, sample_rate: int) -> Reward:
        key = (name, 0 if name in _AUDIO_FREE else sample_rate)
        with self._lock:
            if key not in self._terms:
                try:
                    built, _ = self._builder(
                        {name: 1.0},
                        sample_rate,
                        embedder=self.embedder,
                        quality_model=self.quality,
                        reward_model=self.reward_model,
                    )
                    self._terms[key] = built.rewards[name]
                except InputError as err:
                    self._terms[key] = f"best-of-N by {name} is not available for this model: {err}"
            term = self._terms[key]
        if isinstance(term, str):
            raise InputError(term)
        return term

    def reward(self, choice: str, sample_rate: int) -> WeightedReward:
        """The reward of ``choice`` for audio at ``sample_rate`` (scorers loaded once); InputError when a
        scorer takes another sample rate or cannot be loaded."""
        weights = REWARDS[self.check_choice(choice)]
        return WeightedReward({name: self._term(name, sample_rate) for name in weights}, dict(weights))

    def available(self, sample_rate: int) -> tuple[list[str], str]:
        """(the choices usable for a model at ``sample_rate``, why the others are not: "" when all are).
        Loads the scorers the first time."""
        usable, reasons = [], []
        for choice in self.choices:
            try:
                self.reward(choice, sample_rate)
                usable.append(choice)
            except InputError as err:
                if str(err) not in reasons:
                    reasons.append(str(err))
        return usable, " ".join(reasons)
