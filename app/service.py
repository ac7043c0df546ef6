"""The services behind the app: generation batched across users, the blind A/B arena, the leaderboard.

No gradio here: ``app/ui.py`` wires these objects to components, and tests and benchmarks call them
directly. Every error a user can cause is an :class:`~models.errors.InputError` (or the store's
:class:`~app.store.VoteRejected`) with a message meant for that user; :class:`ServiceError` is the
server's side (busy, timed out).

Batching. Requests wait in one queue; a single worker thread takes the oldest request together
with every waiting request that has the same model, merge weight, duration and sampling parameters
(up to ``max_batch_rows`` clips; it waits up to ``batch_wait_s`` = 0.1 s for them when the batch is
not full) and runs them as ONE ``MusicGenerator.generate`` call, one row per
clip, each row with its own seed (so a clip does not depend on its batch mates). The Generate tab,
the arena and scripted API clients all feed the same queue, so their requests batch together.
This is ours rather than gradio's ``batch=True`` so that one user's bad input or failed model
fails that user's request only, each request keeps its own progress bar, and requests from
different events batch together.
"""

from __future__ import annotations

import math
import os
import secrets
import threading
import time
import unicodedata
from collections import deque
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass, field
from pathlib import Path
from random import Random

import torch

from app.registry import ModelRegistry, snap_lambda
from app.store import ClipRecord, Store, VoteRejected
from evaluation.ratings import bootstrap_ratings, plot_win_rate_matrix, win_rate_matrix
from models.audio_io import wav_bytes
from models.errors import InputError
from models.generator import MAX_PROMPT_CHARS, validate_prompt
from models.sampling import SamplingParams

__all__ = ["PROMPT_BANK", "AdminService", "ArenaPair", "ArenaService", "GeneratedClip", "GenerationRequest",
           "GenerationService", "LeaderboardService", "LeaderboardView", "ServiceError", "VoteOutcome"]

# Input ranges: the UI's sliders use the same numbers, the service refuses anything outside them.
CFG_RANGE = (0.0, 10.0)
TEMPERATURE_RANGE = (0.05, 2.0)
TOP_K_RANGE = (0, 1000)  # 0 = no limit
SEED_RANGE = (-1, 2**31 - 1)  # -1 = a random seed
MAX_VARIATIONS = 4
DEFAULT_CFG, DEFAULT_TEMPERATURE, DEFAULT_TOP_K = 3.0, 1.0, 250

PROMPT_BANK: tuple[str, ...] = (
    "upbeat techno with a driving kick and a bright synth lead",
    "calm ambient piano with soft pads, slow and spacious", "energetic rock with distorted guitars and loud drums",
    "smooth jazz trio: walking bass, brushed drums and piano", "sad classical strings in a minor key",
    "laid-back hip-hop beat with a mellow electric piano", "cheerful reggae groove with offbeat guitar chops",
    "gentle acoustic folk guitar, fingerpicked, warm and intimate", "dark cinematic drone with low brass and tension",
    "fast drum and bass with a deep rolling bassline", "happy ukulele tune with hand claps",
    "slow blues with an expressive lead guitar", "dreamy synthwave with arpeggios and a retro drum machine",
    "festive brass band march", "minimal house track with a warm bass and crisp hi-hats",
    "baroque harpsichord piece in a major key", "lo-fi chill beat with vinyl crackle and soft keys",
    "epic orchestral theme with timpani and horns", "bossa nova with nylon guitar and light percussion",
    "heavy metal riff with double bass drums", "playful flute melody over pizzicato strings",
    "meditative solo cello, slow and calm", "funky disco groove with slap bass and strings",
    "celtic fiddle reel, lively and bright",
)


class ServiceError(RuntimeError):
    """The server could not serve a valid request (busy, timed out, shut down)."""


# ----------------------------------------------------------------------------- validation


def _number(name: str, value: object, low: float, high: float, *, integer: bool = False) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise InputError(f"{name} must be a number, got {type(value).__name__}")
    if not math.isfinite(value):
        raise InputError(f"{name} must be a finite number, got {value}")
    if integer and value != int(value):
        raise InputError(f"{name} must be a whole number, got {value:g}")
    if not low <= value <= high:
        raise InputError(f"{name} must be between {low:g} and {high:g}, got {value:g}")
    return float(value)


def clean_prompt(prompt: object) -> str:
    """A prompt is plain text: 1 to MAX_PROMPT_CHARS characters, no control characters."""
    if prompt is None:
        raise InputError("the prompt is empty")
    if not isinstance(prompt, str):
        raise InputError("the prompt must be text")
    if len(prompt) > MAX_PROMPT_CHARS:
        raise InputError(f"the prompt has {len(prompt)} characters; the maximum is {MAX_PROMPT_CHARS}")
    bad = [c for c in prompt if unicodedata.category(c) in ("Cc", "Cs") and c not in "\t\n\r"]
    if bad:
        raise InputError(
            f"the prompt contains {len(bad)} control or binary character(s) (first: U+{ord(bad[0]):04X}); "
            "type plain text"
        )
    return " ".join(validate_prompt(prompt).split())


def _session(session_id: object) -> str:
    if not isinstance(session_id, str) or not 0 < len(session_id) <= 128:
        raise InputError("this request has no session: use the web page or gradio_client")
    return session_id


# ----------------------------------------------------------------------------- generation


@dataclass(frozen=True)
class GenerationRequest:
    """One user's request: ``len(seeds)`` clips of one prompt (variation i uses seeds[i])."""

    model_id: str
    prompt: str
    duration: float
    params: SamplingParams
    seeds: tuple[int, ...]
    lam: float | None = None  # merge entries only, on the 0.05 grid

    @property
    def key(self) -> tuple:
        """Requests with equal keys run in one ``generate`` call."""
        return (self.model_id, self.lam, self.duration, self.params)


@dataclass
class GeneratedAudio:
    """One row of a batch: audio [C, S] in [-1, 1]."""

    audio: torch.Tensor
    sample_rate: int
    seed: int
    checkpoint_hash: str


@dataclass(frozen=True)
class GeneratedClip:
    """A stored clip and its spectrogram picture (None when not rendered)."""

    clip: ClipRecord
    spectrogram: Path | None


@dataclass
class _Job:
    request: GenerationRequest
    future: Future = field(default_factory=Future)
    done_steps: int = 0
    total_steps: int = 0
    started: bool = False

    @property
    def rows(self) -> int:
        return len(self.request.seeds)


@dataclass
class BatchStats:
    """What the worker did: one entry per ``generate`` call."""

    rows: list[int] = field(default_factory=list)
    seconds: list[float] = field(default_factory=list)


class GenerationService:
    """Validates requests, batches them across users, stores every clip (content-addressed)."""

    def __init__(self, registry: ModelRegistry, store: Store, *, max_batch_rows: int = 16, max_duration: float = 30.0,
                 max_pending: int = 512, timeout_s: float = 600.0, batch_wait_s: float = 0.1,
                 autostart: bool = True) -> None:
        if max_batch_rows < 1:
            raise ValueError("max_batch_rows must be >= 1")
        self.registry = registry
        self.store = store
        self.max_batch_rows = max_batch_rows
        self.max_duration = max_duration
        self.max_pending = max_pending
        self.timeout_s = timeout_s
        self.batch_wait_s = batch_wait_s if max_batch_rows > 1 else 0.0
        self.stats = BatchStats()
        self.spectrogram_dir = store.data_dir / "spectrograms"
        self._pending: deque[_Job] = deque()
        self._cond = threading.Condition()
        self._closed = False
        self._worker = threading.Thread(target=self._work, name="musicrl-generation", daemon=True)
        if autostart:
            self.start()

    def start(self) -> None:
        """Start the worker (done by the constructor unless ``autostart=False``)."""
        if not self._worker.is_alive():
            self._worker.start()

    # -- requests ------------------------------------------------------------------------------

    def model_max_duration(self, model_id: str, lam: float | None = None) -> float:
        return min(self.max_duration, self.registry.load(model_id, lam).max_duration)

    def validate(self, model_id: object, prompt: object, duration: object, cfg: object = DEFAULT_CFG,
                 temperature: object = DEFAULT_TEMPERATURE, top_k: object = DEFAULT_TOP_K, seed: object = -1,
                 variations: object = 1, lam: object = None) -> GenerationRequest:
        """Check every input (InputError with a message for the user) and build the request.

        CFG is forced to 1 (no guidance) for CFG-free models; ``lam`` only matters for merge
        entries (default: the entry's ``init``); seed -1 draws a random seed.
        """
        prompt = clean_prompt(prompt)
        entry = self.registry.get(model_id)
        lam_value = None
        if entry.merge is not None:
            lam_value = snap_lambda(entry.merge.init if lam is None else _number("the quality/diversity weight",
                                                                                 lam, 0.0, 1.0))
        limit = self.model_max_duration(entry.id, lam_value)
        if isinstance(duration, int | float) and not isinstance(duration, bool) and duration <= 0:
            raise InputError(f"duration must be > 0 seconds, got {duration:g}")
        duration = round(_number("duration (seconds)", duration, 0.0, limit), 3)
        cfg = _number("CFG scale", cfg, *CFG_RANGE)
        temperature = _number("temperature", temperature, *TEMPERATURE_RANGE)
        top_k = int(_number("top-k", top_k, *TOP_K_RANGE, integer=True))
        seed = int(_number("seed", seed, *SEED_RANGE, integer=True))
        variations = int(_number("variations", variations, 1, MAX_VARIATIONS, integer=True))
        if self.registry.is_cfg_free(entry.id):
            cfg = 1.0
        params = SamplingParams(cfg=cfg, temperature=temperature, top_k=top_k)
        base = secrets.randbelow(SEED_RANGE[1]) if seed < 0 else seed
        seeds = tuple((base + i) % (SEED_RANGE[1] + 1) for i in range(variations))
        return GenerationRequest(entry.id, prompt, duration, params, seeds, lam_value)

    def submit(self, request: GenerationRequest) -> _Job:
        """Queue a validated request; the job's future resolves to one GeneratedAudio per seed."""
        job = _Job(request)
        with self._cond:
            if self._closed:
                raise ServiceError("the generation service is shut down")
            if len(self._pending) >= self.max_pending:
                raise ServiceError(
                    f"the server is busy ({len(self._pending)} requests waiting); please try again in a minute"
                )
            self._pending.append(job)
            self._cond.notify()
        return job

    def wait(self, job: _Job, progress: Callable[[float, str], None] | None = None) -> list[GeneratedAudio]:
        """Block until the job is done, reporting (fraction, description) every ~0.25 s."""
        deadline = time.monotonic() + self.timeout_s
        while True:
            try:
                return job.future.result(timeout=0.25)
            except FutureTimeout:
                pass
            if time.monotonic() > deadline:
                raise ServiceError(f"generation did not finish within {self.timeout_s:g} s; please try again")
            if progress is not None:
                if job.started and job.total_steps:
                    progress(job.done_steps / job.total_steps, "generating")
                else:
                    progress(0.0, f"waiting for the model ({self.queue_position(job)} request(s) ahead)")

    def queue_position(self, job: _Job) -> int:
        with self._cond:
            for i, other in enumerate(self._pending):
                if other is job:
                    return i
        return 0

    def generate(self, model_id: object, prompt: object, duration: object, cfg: object = DEFAULT_CFG,
                 temperature: object = DEFAULT_TEMPERATURE, top_k: object = DEFAULT_TOP_K, seed: object = -1,
                 variations: object = 1, lam: object = None,
                 progress: Callable[[float, str], None] | None = None) -> list[GeneratedClip]:
        """Validate, generate (batched with other users' requests), store and draw the clips."""
        request = self.validate(model_id, prompt, duration, cfg, temperature, top_k, seed, variations, lam)
        audios = self.wait(self.submit(request), progress)
        if progress is not None:
            progress(1.0, "saving")
        clips = self.store_clips(request, audios, source="generate")
        return [GeneratedClip(c, self.spectrogram(c, a.audio)) for c, a in zip(clips, audios, strict=True)]

    def store_clips(
        self, request: GenerationRequest, audios: Sequence[GeneratedAudio], source: str
    ) -> list[ClipRecord]:
        """Write each clip's WAV (content-addressed) and row, with every parameter that made it."""
        params = {"cfg": request.params.cfg, "temperature": request.params.temperature,
                  "top_k": request.params.top_k, "top_p": request.params.top_p,
                  "requested_duration": request.duration, "source": source}
        if request.lam is not None:
            params["lam"] = request.lam
        clips = []
        for index, out in enumerate(audios):
            duration = out.audio.shape[-1] / out.sample_rate
            clips.append(self.store.add_clip(request.prompt, request.model_id, out.checkpoint_hash,
                                             {**params, "variation": index}, out.seed,
                                             wav_bytes(out.audio, out.sample_rate), out.sample_rate, duration))
        return clips

    def spectrogram(self, clip: ClipRecord, audio: torch.Tensor) -> Path:
        """A log-mel picture of the clip (time to the right, pitch up, one pixel per frame and mel band),
        cached by the audio's sha256.

        ``evaluation.plots.mel_image`` coloured with magma and saved by PIL (~10 ms), rather than a
        matplotlib figure (~450 ms of GIL-bound work per clip, which would serialise request threads).
        """
        from matplotlib import colormaps
        from PIL import Image

        from evaluation.plots import mel_image

        path = self.spectrogram_dir / clip.audio_sha256[:2] / f"{clip.audio_sha256}.png"
        if path.is_file():
            return path
        image = mel_image(audio.float().mean(0), clip.sample_rate).numpy()[::-1]
        low, high = float(image.min()), float(image.max())
        index = ((image - low) / max(high - low, 1e-9) * 255).astype("uint8")
        lut = (colormaps["magma"](range(256))[:, :3] * 255).astype("uint8")
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
        Image.fromarray(lut[index]).save(tmp, format="PNG", compress_level=1)
        os.replace(tmp, path)
        return path

    # -- batching ------------------------------------------------------------------------------

    def generate_batch(self, requests: Sequence[GenerationRequest]) -> list[list[GeneratedAudio] | Exception]:
        """The batch function: requests with equal keys share ONE ``MusicGenerator.generate`` call.

        Returns, per request, its clips or the exception its group raised (other groups still run).
        """
        groups: dict[tuple, list[int]] = {}
        for i, request in enumerate(requests):
            groups.setdefault(request.key, []).append(i)
        results: list[list[GeneratedAudio] | Exception] = [[] for _ in requests]
        for indices in groups.values():
            try:
                outputs = self._run_group([requests[i] for i in indices])
            except Exception as err:  # noqa: BLE001 - handed to each request of the group
                outputs = [err] * len(indices)
            for i, out in zip(indices, outputs, strict=True):
                results[i] = out
        return results

    def _run_group(
        self, requests: Sequence[GenerationRequest], on_step: Callable[[int, int], None] | None = None
    ) -> list[list[GeneratedAudio]]:
        first = requests[0]
        if any(r.key != first.key for r in requests):
            raise ValueError("a group must share model, weight, duration and parameters")
        gen = self.registry.load(first.model_id, first.lam)
        prompts = [r.prompt for r in requests for _ in r.seeds]
        seeds = [s for r in requests for s in r.seeds]
        start = time.perf_counter()
        out = gen.generate(prompts, first.duration, first.params, seeds=seeds, on_step=on_step)
        self.stats.rows.append(len(prompts))
        self.stats.seconds.append(time.perf_counter() - start)
        rows = [GeneratedAudio(out.audio[i].cpu(), out.sample_rate, seeds[i], gen.checkpoint_hash)
                for i in range(len(prompts))]
        results, offset = [], 0
        for r in requests:
            results.append(rows[offset : offset + len(r.seeds)])
            offset += len(r.seeds)
        return results

    def _take(self) -> list[_Job] | None:
        """The oldest job plus waiting jobs with its key, up to max_batch_rows clips (None: shut down)."""
        with self._cond:
            while not self._pending and not self._closed:
                self._cond.wait()
            if not self._pending:
                return None
            first = self._pending[0]
            deadline = time.monotonic() + self.batch_wait_s  # let requests sent together arrive together
            while not self._closed and (left := deadline - time.monotonic()) > 0 and sum(
                    j.rows for j in self._pending if j.request.key == first.request.key) < self.max_batch_rows:
                self._cond.wait(left)
            self._pending.popleft()
            jobs, rows = [first], first.rows
            for job in list(self._pending):
                if job.request.key == first.request.key and rows + job.rows <= self.max_batch_rows:
                    self._pending.remove(job)
                    jobs.append(job)
                    rows += job.rows
            for job in jobs:
                job.started = True
            return jobs

    def _work(self) -> None:
        while (jobs := self._take()) is not None:
            def on_step(done: int, total: int, jobs: list[_Job] = jobs) -> None:
                for job in jobs:
                    job.done_steps, job.total_steps = done, total

            try:
                outputs = self._run_group([j.request for j in jobs], on_step)
            except Exception as err:  # noqa: BLE001 - every job of the failed batch gets the error
                for job in jobs:
                    job.future.set_exception(err)
                continue
            for job, out in zip(jobs, outputs, strict=True):
                job.future.set_result(out)

    def close(self) -> None:
        """Stop the worker after the batch in progress; waiting requests fail with ServiceError."""
        with self._cond:
            self._closed = True
            pending, self._pending = list(self._pending), deque()
            self._cond.notify_all()
        for job in pending:
            job.future.set_exception(ServiceError("the server is shutting down"))
        if self._worker.is_alive():
            self._worker.join(timeout=30)


# ----------------------------------------------------------------------------- arena


@dataclass(frozen=True)
class ArenaPair:
    """What a listener gets: two anonymous clips (A, B) of one prompt. No model names."""

    pair_id: str
    prompt: str
    audio_a: Path
    audio_b: Path
    duration: float


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
    """Blind A/B pairs of two distinct registry models chosen uniformly at random (ALGORITHMS §8)."""

    def __init__(self, registry: ModelRegistry, generation: GenerationService, store: Store, *,
                 min_listen_s: float = 5.0, duration: float = 6.0, prompts: Sequence[str] = PROMPT_BANK,
                 rng: Random | None = None) -> None:
        if not min_listen_s >= 0:
            raise ValueError("min_listen_s must be >= 0")
        if not prompts:
            raise ValueError("the prompt bank is empty")
        self.registry = registry
        self.generation = generation
        self.store = store
        self.min_listen_s = float(min_listen_s)
        self.duration = float(duration)
        self.prompts = tuple(prompts)
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
        """(model on side A, model on side B): a uniformly random ordered pair of distinct models."""
        with self._rng_lock:
            a, b = self._rng.sample(self.registry.ids, 2)
        return a, b

    def new_pair(self, session_id: object, prompt: object = None) -> ArenaPair:
        """Generate one clip from each of two distinct random models, issue the pair to the session.

        An empty prompt takes one from the prompt bank. Sides are random (the draw's order).
        """
        session = _session(session_id)
        if self.unavailable_reason:
            raise InputError(self.unavailable_reason)
        text = self.random_prompt() if prompt is None or (isinstance(prompt, str) and not prompt.strip()) else prompt
        text = clean_prompt(text)
        model_a, model_b = self.draw_models()
        with self._rng_lock:
            seeds = (self._rng.randrange(SEED_RANGE[1]), self._rng.randrange(SEED_RANGE[1]))
        duration = min(self.duration, *(self.generation.model_max_duration(m) for m in (model_a, model_b)))
        requests = []
        for model_id, seed in zip((model_a, model_b), seeds, strict=True):
            entry = self.registry.get(model_id)
            cfg = 1.0 if self.registry.is_cfg_free(model_id) else DEFAULT_CFG
            lam = snap_lambda(entry.merge.init) if entry.merge is not None else None
            params = SamplingParams(cfg=cfg, temperature=DEFAULT_TEMPERATURE, top_k=DEFAULT_TOP_K)
            requests.append(GenerationRequest(model_id, text, round(duration, 3), params, (seed,), lam))
        jobs = [self.generation.submit(r) for r in requests]  # both queued before waiting: they batch
        audios = [self.generation.wait(job) for job in jobs]
        clip_a, clip_b = (self.generation.store_clips(r, a, source="arena")[0]
                          for r, a in zip(requests, audios, strict=True))
        pair = self.store.issue_pair(clip_a.id, clip_b.id, session)
        return ArenaPair(pair.id, text, clip_a.audio_file, clip_b.audio_file, clip_a.duration)

    def vote(self, pair_id: object, session_id: object, choice: object, rater_id: object = None,
             listened_a_s: object = 0.0, listened_b_s: object = 0.0, feedback: object = "") -> VoteOutcome:
        """Store the vote through the store's integrity checks (raises VoteRejected) and reveal the models."""
        session = _session(session_id)
        if not isinstance(pair_id, str) or not pair_id:
            raise VoteRejected("unknown_pair", "there is no pair to vote on: get a new pair first")
        rater = (rater_id.strip()[:128] or None) if isinstance(rater_id, str) else None
        if feedback is not None and not isinstance(feedback, str):
            raise VoteRejected("invalid_feedback", "feedback must be text")
        vote = self.store.record_vote(pair_id, session, str(choice), rater, _seconds(listened_a_s),
                                      _seconds(listened_b_s), (feedback or "").strip(), self.min_listen_s)
        return VoteOutcome(pair_id, vote.choice, vote.model_a, vote.model_b,
                           self.registry.display_name(vote.model_a), self.registry.display_name(vote.model_b))


def _seconds(value: object) -> float:
    """Listening seconds as sent by a client; anything unusable counts as not listened."""
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        return 0.0
    return float(value)


# ----------------------------------------------------------------------------- leaderboard


@dataclass(frozen=True)
class LeaderboardView:
    """Ranked rows (models with >= min_votes votes), provisional rows, and the win-rate picture."""

    rows: list[dict]
    provisional: list[dict]
    total_votes: int
    min_votes: int
    win_rate_png: Path | None


class LeaderboardService:
    """Bradley–Terry ratings on the Elo scale with 1,000-sample bootstrap 95 % CIs (evaluation.ratings)."""

    def __init__(self, store: Store, registry: ModelRegistry, *, min_votes: int = 30, n_boot: int = 1000,
                 seed: int = 0) -> None:
        self.store = store
        self.registry = registry
        self.min_votes = min_votes
        self.n_boot = n_boot
        self.seed = seed
        self.out_dir = store.data_dir / "leaderboard"
        self._lock = threading.Lock()
        self._cached: tuple[int, LeaderboardView] | None = None

    def view(self) -> LeaderboardView:
        """Recomputed only when the number of votes changed."""
        with self._lock:
            battles = self.store.battles()
            if self._cached is not None and self._cached[0] == len(battles):
                return self._cached[1]
            voted = {m for b in battles for m in (b.model_a, b.model_b)}
            models = self.registry.ids + sorted(voted - set(self.registry.ids))
            table = bootstrap_ratings(battles, n_boot=self.n_boot, seed=self.seed, models=models,
                                      min_votes=self.min_votes)
            rows = [{"model": r.model, "name": self.registry.display_name(r.model), "rating": r.rating,
                     "ci_low": r.ci_low, "ci_high": r.ci_high, "votes": r.votes} for r in table.rows]
            ranked = [dict(row, rank=i + 1) for i, row in enumerate(r for r in rows if r["votes"] >= self.min_votes)]
            provisional = [r for r in rows if r["votes"] < self.min_votes]
            png = None
            if battles:
                models = [r.model for r in table.rows if r.model in voted]
                matrix = win_rate_matrix(battles, models)
                self.out_dir.mkdir(parents=True, exist_ok=True)
                for old in self.out_dir.glob("win_rate_*.png"):
                    old.unlink(missing_ok=True)
                png = plot_win_rate_matrix(matrix, [self.registry.display_name(m) for m in models],
                                           self.out_dir / f"win_rate_{len(battles)}.png",
                                           title=f"Win rates ({len(battles)} votes)")
            view = LeaderboardView(ranked, provisional, len(battles), self.min_votes, png)
            self._cached = (len(battles), view)
            return view


# ----------------------------------------------------------------------------- admin


class AdminService:
    """The UI's export button: TRL-layout JSONL of every vote, behind an admin token."""

    def __init__(self, store: Store, token: str | None) -> None:
        self.store = store
        self.token = token or None
        self.out_dir = store.data_dir / "exports"

    @property
    def enabled(self) -> bool:
        return self.token is not None

    def export(self, token: object, include_ties: bool = True) -> tuple[Path, int]:
        import hmac

        from musicrl.commands.prefs import write_preferences_jsonl

        if self.token is None:
            raise InputError("export is disabled: start the app with --admin-token (or MUSICRL_ADMIN_TOKEN)")
        if not isinstance(token, str) or not hmac.compare_digest(token.encode(), self.token.encode()):
            raise InputError("wrong admin token")
        path = self.out_dir / f"preferences-{time.strftime('%Y%m%d-%H%M%S')}.jsonl"
        count = write_preferences_jsonl(self.store, path, include_ties=include_ties)
        return path, count
