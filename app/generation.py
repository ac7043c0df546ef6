"""Generation batched across users: the Generate tab, the arena and API clients share one queue.

Requests wait in one queue; a single worker thread takes the oldest request together with every
waiting request that has the same model, merge weight, duration and sampling parameters (up to
``max_batch_rows`` clips; it waits up to ``batch_wait_s`` = 0.1 s for them when the batch is not
full) and runs them as ONE ``MusicGenerator.generate`` call, one row per clip, each row with its own
seed (so a clip does not depend on its batch mates). This is ours rather than gradio's
``batch=True`` so that one user's bad input or failed model fails that user's request only, each
request keeps its own progress bar, and requests from different events batch together.

Every error a user can cause is an :class:`~models.errors.InputError` with a message meant for that
user, raised by :meth:`GenerationService.validate` before anything is queued; :class:`ServiceError`
is the server's side (busy, timed out, shut down).
"""

from __future__ import annotations

import math
import os
import secrets
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass, field
from pathlib import Path

import torch

from app.limits import Caller, RateLimiter
from app.registry import ModelRegistry, snap_lambda
from app.store import ClipRecord, Store
from app.validation import (
    CFG_RANGE,
    DEFAULT_CFG,
    DEFAULT_TEMPERATURE,
    DEFAULT_TOP_K,
    MAX_VARIATIONS,
    SEED_RANGE,
    TEMPERATURE_RANGE,
    TOP_K_RANGE,
    collapse_whitespace,
    number,
)
from models.audio_io import wav_bytes
from models.errors import InputError
from models.generator import GenerationPlan
from models.sampling import SamplingParams

__all__ = ["GeneratedAudio", "GeneratedClip", "GenerationRequest", "GenerationService", "ServiceError"]


class ServiceError(RuntimeError):
    """The server could not serve a valid request (busy, timed out, shut down)."""


@dataclass(frozen=True)
class GenerationRequest:
    """One user's request, checked: ``len(seeds)`` clips of one prompt from one model (variation i uses
    seeds[i]). ``plan`` is the model's own checked plan (``MusicGenerator.plan``); build requests with
    :meth:`GenerationService.request`."""

    model_id: str
    duration: float
    plan: GenerationPlan
    lam: float | None = None  # merge entries only, on the 0.05 grid

    @property
    def prompt(self) -> str:
        return self.plan.prompts[0]

    @property
    def seeds(self) -> tuple[int, ...]:
        return self.plan.seeds

    @property
    def params(self) -> SamplingParams:
        return self.plan.params

    @property
    def key(self) -> tuple:
        """Requests with equal keys run in one ``MusicGenerator.render`` call."""
        return (self.model_id, self.lam, self.plan.frames, self.plan.params)


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

    def __init__(self, registry: ModelRegistry, store: Store, *, limiter: RateLimiter | None = None,
                 max_batch_rows: int = 16, max_duration: float = 30.0,
                 max_pending: int = 512, timeout_s: float = 600.0, batch_wait_s: float = 0.1,
                 autostart: bool = True) -> None:
        if max_batch_rows < 1:
            raise ValueError("max_batch_rows must be >= 1")
        self.registry = registry
        self.store = store
        self.limiter = limiter or RateLimiter()
        self.max_batch_rows = max_batch_rows
        self.max_duration = max_duration
        self.max_pending = max_pending
        self.timeout_s = timeout_s
        self.batch_wait_s = batch_wait_s if max_batch_rows > 1 else 0.0
        self.stats = BatchStats()
        self.spectrogram_dir = store.data_dir / "pictures" / "spectrograms"
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

    def model_max_duration(self, model_id: str) -> float:
        """The longest clip this service makes with ``model_id`` (seconds)."""
        return min(self.max_duration, self.registry.max_duration(model_id))

    def validate(self, model_id: object, prompt: object, duration: object, cfg: object = DEFAULT_CFG,
                 temperature: object = DEFAULT_TEMPERATURE, top_k: object = DEFAULT_TOP_K, seed: object = -1,
                 variations: object = 1, lam: object = None) -> GenerationRequest:
        """Check every input once (InputError with a message for the user) and build the request.

        Here: the UI's ranges (``app.validation``); the model's own rules (prompt, duration within its
        maximum, sampling parameters) are checked by its ``plan``, once. The guidance scale is the
        registry's ``effective_cfg`` (1 for CFG-free models); ``lam`` only matters for merge entries
        (default: the entry's ``init``); seed -1 draws a random seed.
        """
        entry = self.registry.get(model_id)
        lam_value = None
        if entry.merge is not None:
            lam_value = snap_lambda(entry.merge.init if lam is None else number("the quality/diversity weight",
                                                                                 lam, 0.0, 1.0))
        duration = round(number("duration (seconds)", duration, -math.inf, math.inf), 3)
        if duration > self.max_duration:
            raise InputError(f"duration {duration:g} s exceeds this server's maximum of {self.max_duration:g} s")
        cfg = number("CFG scale", cfg, *CFG_RANGE)
        temperature = number("temperature", temperature, *TEMPERATURE_RANGE)
        top_k = int(number("top-k", top_k, *TOP_K_RANGE, integer=True))
        seed = int(number("seed", seed, *SEED_RANGE, integer=True))
        variations = int(number("variations", variations, 1, MAX_VARIATIONS, integer=True))
        params = SamplingParams(cfg=self.registry.effective_cfg(entry.id, cfg), temperature=temperature, top_k=top_k)
        base = secrets.randbelow(SEED_RANGE[1]) if seed < 0 else seed
        seeds = tuple((base + i) % (SEED_RANGE[1] + 1) for i in range(variations))
        return self.request(entry.id, collapse_whitespace(prompt), duration, params, seeds, lam_value)

    def request(self, model_id: str, prompt: str, duration: float, params: SamplingParams, seeds: Sequence[int],
                lam: float | None = None) -> GenerationRequest:
        """A request for ``model_id``'s plan (its checks: the prompt, duration and parameters)."""
        gen = self.registry.load(model_id, lam)
        plan = gen.plan([prompt], duration, params, list(seeds), samples_per_prompt=len(seeds))
        return GenerationRequest(model_id, duration, plan, lam)

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
                 variations: object = 1, lam: object = None, *, caller: Caller | None = None,
                 progress: Callable[[float, str], None] | None = None) -> list[GeneratedClip]:
        """Validate, generate (batched with other users' requests), store and draw the clips.

        ``caller``: who asks (a web request always says); its rate limit is applied first.
        """
        if caller is not None:
            self.limiter.hit("generate", caller)
        self.registry.refresh()  # a model registered while the app runs can be asked for at once
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
        plan = GenerationPlan.concat([r.plan for r in requests])
        start = time.perf_counter()
        out = gen.render(plan, on_step=on_step)
        self.stats.rows.append(len(plan.seeds))
        self.stats.seconds.append(time.perf_counter() - start)
        rows = [GeneratedAudio(out.audio[i].cpu(), out.sample_rate, seed, gen.checkpoint_hash)
                for i, seed in enumerate(plan.seeds)]
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
