"""The panel as raters of a RUNNING app: only its public API, over HTTP, through gradio_client.

For each vote a listener calls ``new_pair(prompt, rater_id)``, "listens" — it measures the two clips
(``Hearing``) and waits until the server's listening gate is met: each clip heard
``min(listen_s, its length)`` seconds, and the vote sent no sooner than the longer of the two after
the pair arrived (app/vote_rules.py; claims never exceed a clip's length nor the time waited) —,
chooses, and calls ``vote(pair_token, choice, listened_a, listened_b, feedback, rater_id,
simulated=True)``. Rate-limit refusals ("Too many requests: … try again in N s") are retried after
the wait the server names (at least an exponential backoff); a "listen for at least X s" or "too
soon" refusal makes that listener listen X s from then on and retries the pair once; other refusals
are counted by reason. Each listener has its own gradio_client session; ``workers`` listeners vote
at a time, in threads. This module never imports ``app``.
"""

from __future__ import annotations

import re
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import numpy as np

from musicrl.panel.hearing import Hearing
from musicrl.panel.listeners import Listener, expected_agreement

REFUSALS = (  # (text in the server's message, reason code) — app/vote_rules.py and app/store.py
    ("listen to both clips", "not_listened"), ("listening takes at least", "too_soon"),
    ("is not possible", "implausible_listening"), ("already been voted", "already_voted"),
    ("issued to another session", "other_session"), ("does not exist", "unknown_pair"),
    ("listening times must be", "invalid_listening"), ("Server busy", "server_busy"),
)
_RETRY_AFTER = re.compile(r"try again in (\d+(?:\.\d+)?) s")
_AT_LEAST = re.compile(r"(?:at least|takes at least) (\d+(?:\.\d+)?) s")


def refusal_code(message: str) -> str:
    """The reason code of an app error message ("rate_limited" for rate limits, "other: …" if unknown)."""
    if "Too many requests" in message or _RETRY_AFTER.search(message):
        return "rate_limited"
    for text, code in REFUSALS:
        if text in message:
            return code
    return "other: " + message.strip().splitlines()[0][:80] if message.strip() else "other"


@dataclass
class LiveTally:
    """What a live session did: votes cast by choice, refusals by reason, retries after rate limits,
    errors that stopped a listener, the heard pairs' features (for agreement) and self-agreement on
    pairs a listener was served twice (same two clips, any sides)."""

    cast: Counter = field(default_factory=Counter)
    refused: Counter = field(default_factory=Counter)
    rate_limit_retries: int = 0
    errors: list[str] = field(default_factory=list)
    z_pairs: list[np.ndarray] = field(default_factory=list)
    repeats_same: int = 0
    repeats: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def votes(self) -> int:
        return sum(self.cast.values())

    def agreement(self, listeners: Sequence[Listener]) -> float:
        """Expected inter-listener agreement (decisive votes) of the panel on the pairs it heard."""
        if len(listeners) < 2 or not self.z_pairs:
            return float("nan")
        return expected_agreement(list(listeners), np.stack(self.z_pairs))


def _default_client(url: str, download_dir: str):
    from gradio_client import Client

    return Client(url, verbose=False, download_files=download_dir)


class LiveListener:
    """One listener's session with the app (own gradio_client Client)."""

    def __init__(self, listener: Listener, client, hearing: Hearing, tally: LiveTally, *, listen_s: float | None,
                 prompts: Sequence[str], max_retries: int, sleep: Callable[[float], None] = time.sleep) -> None:
        self.listener, self.client, self.hearing, self.tally = listener, client, hearing, tally
        self.listen_s, self.prompts, self.max_retries, self.sleep = listen_s, list(prompts), max_retries, sleep
        # repeated-pair detection: the two clips' hashes -> (the winner's hash or the choice, choice)
        self.heard: dict[frozenset, tuple[object, str]] = {}

    def _call(self, *args, api_name: str):
        """``client.predict`` with rate limits retried; other AppErrors propagate."""
        from gradio_client.exceptions import AppError

        backoff = 1.0
        for attempt in range(self.max_retries + 1):
            try:
                return self.client.predict(*args, api_name=api_name)
            except AppError as err:
                message = str(err)
                if refusal_code(message) != "rate_limited" or attempt == self.max_retries:
                    raise
                named = _RETRY_AFTER.search(message)
                with self.tally._lock:
                    self.tally.rate_limit_retries += 1
                self.sleep(max(float(named.group(1)) if named else 0.0, backoff))
                backoff = min(backoff * 2, 60.0)
        raise AssertionError("unreachable")

    def vote_once(self) -> None:
        """One pair: ask, listen, judge, vote (with at most one retry after a listening refusal)."""
        import soundfile as sf
        from gradio_client.exceptions import AppError

        prompt = ""
        if self.prompts:
            prompt = self.prompts[int(self.listener.rng.integers(len(self.prompts)))]
        rater = self.listener.rater_id
        try:
            path_a, path_b, token, prompt = self._call(prompt, rater, api_name="/new_pair")
        except AppError as err:
            self._refused(str(err))
            return
        issued = time.monotonic()
        clips, rates, hashes = [], [], []
        for path in (path_a, path_b):
            wav, rate = sf.read(str(path), dtype="float32", always_2d=True)
            clips.append(wav.mean(axis=1))
            rates.append(rate)
            hashes.append(hash(wav.tobytes()))
        raw = np.concatenate([self.hearing.features([prompt], [c], r) for c, r in zip(clips, rates, strict=True)])
        z = self.listener.config.standardise(raw)  # [2, F]
        choice = self.listener.choose(z[0], z[1])
        durations = [len(c) / r for c, r in zip(clips, rates, strict=True)]
        for attempt in range(2):
            claims = [d if self.listen_s is None else min(self.listen_s, d) for d in durations]
            wait = max(claims) + 0.05 - (time.monotonic() - issued)
            if wait > 0:
                self.sleep(wait)
            try:
                self._call(token, choice, round(claims[0], 3), round(claims[1], 3), "", rater, True,
                           api_name="/vote")
                break
            except AppError as err:
                message = str(err)
                self._refused(message)
                gate = _AT_LEAST.search(message)
                if attempt or refusal_code(message) not in ("not_listened", "too_soon") or gate is None:
                    return
                self.listen_s = float(gate.group(1))  # the server's gate: listen that long from now on
        with self.tally._lock:
            self.tally.cast[choice] += 1
            self.tally.z_pairs.append(z)
            key = frozenset(hashes)
            winner = {"a": hashes[0], "b": hashes[1]}.get(choice, choice)
            if key in self.heard and len(key) == 2:
                self.tally.repeats += 1
                self.tally.repeats_same += self.heard[key][0] == winner
            self.heard[key] = (winner, choice)

    def _refused(self, message: str) -> None:
        with self.tally._lock:
            self.tally.refused[refusal_code(message)] += 1


def vote_live(url: str, listeners: Sequence[Listener], votes: int, hearing: Hearing, *, workers: int = 1,
              listen_s: float | None = None, prompts: Sequence[str] = (), max_retries: int = 8,
              make_client: Callable[[str, str], object] = _default_client,
              progress: Callable[[int], None] | None = None) -> LiveTally:
    """Cast ``votes`` votes on the app at ``url``, split over the listeners (listener i casts
    votes // L, plus one for the first votes % L), ``workers`` listeners at a time. A listener stops at
    its first error that is not an app refusal (connection lost, malformed reply), recorded in
    ``errors``. ``progress(n)`` is called after every pair with the number handled."""
    if votes < 0 or workers < 1:
        raise ValueError("votes must be >= 0 and workers >= 1")
    tally = LiveTally()
    shares = [votes // len(listeners) + (i < votes % len(listeners)) for i in range(len(listeners))]
    with tempfile.TemporaryDirectory(prefix="musicrl-panel-") as downloads:

        def run(i: int) -> None:
            if not shares[i]:
                return
            try:
                client = make_client(url, f"{downloads}/l{i}")
                live = LiveListener(listeners[i], client, hearing, tally, listen_s=listen_s, prompts=prompts,
                                    max_retries=max_retries)
                for _ in range(shares[i]):
                    live.vote_once()
                    if progress is not None:
                        progress(1)
            except Exception as err:  # noqa: BLE001 - reported in the summary, the other listeners go on
                with tally._lock:
                    tally.errors.append(f"{listeners[i].rater_id}: {type(err).__name__}: {err}")

        with ThreadPoolExecutor(max_workers=workers) as pool:
            list(pool.map(run, range(len(listeners))))
    return tally

