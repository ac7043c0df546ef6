"""Generation batched across users: the Generate tab, the arena and API clients share one queue.

Requests wait in one queue; a single worker thread takes the oldest request together with every
waiting request that has the same model, merge weight, duration and sampling parameters (up to
``max_batch_rows`` clips; it waits up to ``batch_wait_s`` = 0.1 s for them when the batch is not
full, unless someone listens to the oldest request as it is made) and runs them as ONE
``MusicGenerator.generate`` call, one row per clip, each row with its own seed (so a clip does not depend on
its batch mates). This is ours rather than gradio's
``batch=True`` so that one user's bad input or failed model fails that user's request only, each
request keeps its own progress bar, and requests from different events batch together.

A steerable model's requests carry its snapped objective weights (``app.registry.snap_weights``), and
requests at different weights never share a batch. A best-of-N request (``app/best_of.py``) samples
N candidates per clip through ``musicrl.best_of_n`` and keeps the best by the chosen reward; it counts
as N requests against the rate limit and the queue bound, fills N of a batch's ``max_batch_rows`` per
clip, and batches only with best-of requests of the same N and reward. Its clips record every
candidate's reward, the kept candidate (whose seed alone reproduces the codes) and the cost.

A request may also be *listened to* (:meth:`GenerationService.generate_streaming`, the Generate tab): its
batch is then sampled by ``MusicGenerator.stream`` and the first clip of each listening request is decoded
chunk by chunk as its frames complete and handed to that request (``AudioPiece``); the clips stored are
still the one-shot decode of the same codes, so listening changes when audio is heard, never what is kept.
Only plain requests stream (one window, no audio prompt, no best-of); the others are heard when done.

Every error a user can cause is an :class:`~models.errors.InputError` with a message meant for that
user, raised by :meth:`GenerationService.validate` before anything is queued; :class:`ServiceError`
is the server's side (busy, timed out, shut down).
"""

from __future__ import annotations

import math
import os
import queue
import secrets
import threading
import time
from collections import deque
from collections.abc import Callable, Generator, Iterator, Sequence
from concurrent.futures import Future
from concurrent.futures import wait as wait_futures
from dataclasses import dataclass, field
from pathlib import Path

import torch

from app.best_of import BestOfScorers
from app.limits import Caller, RateLimiter
from app.registry import ModelRegistry, Weights, snap_lambda
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
from models.audio_io import PEAK_CEILING, wav_bytes
from models.errors import InputError
from models.generator import GenerationPlan, MusicGenerator
from models.sampling import SamplingParams
from musicrl.best_of_n import best_of_n
from musicrl.continuation import AudioPrompt, join_prompt

__all__ = ["AudioPiece", "GeneratedAudio", "GeneratedClip", "GenerationRequest", "GenerationService", "ServiceError"]


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
    weights: Weights | None = None  # steerable entries only: normalised objective weights
    best_of: int = 1  # N candidates per clip (1 = plain generation)
    reward: str | None = None  # the best-of reward (app.best_of.REWARDS), with best_of > 1
    prompt_cut: str | None = None  # which words of the prompt the model ignores (it reads max_tokens tokens)
    audio_prompt: AudioPrompt | None = field(default=None, compare=False)  # continue this audio (app/extend.py)

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
        """Requests with equal keys run in one ``MusicGenerator.render`` (or ``best_of_n``) call."""
        prompt = 0 if self.plan.prompt is None else self.plan.prompt.shape[-1]
        return (self.model_id, self.lam, self.weights, self.plan.frames, self.plan.params, self.best_of, self.reward,
                prompt, self.plan.stride)

    @property
    def cost(self) -> int:
        """What the request counts as against the rate limit and the queue bound: N for best-of-N."""
        return self.best_of


@dataclass
class GeneratedAudio:
    """One row of a batch: audio [C, S] in [-1, 1]. ``best_of``: for a best-of-N clip, what picked it
    (N, reward, every candidate's reward, the kept candidate and its seed, the cost); None otherwise."""

    audio: torch.Tensor
    sample_rate: int
    seed: int
    checkpoint_hash: str
    best_of: dict | None = None
    gain: float = 1.0  # the decoder's peak normalisation (< 1: scaled down instead of clipped)


@dataclass(frozen=True)
class AudioPiece:
    """The next stretch of a listened request's first clip while it is sampled: audio [C, s] from sample
    ``start``, in order, already limited to the peak ceiling (``models.streaming.StreamLimiter``)."""

    audio: torch.Tensor
    sample_rate: int
    start: int


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
    listener: queue.SimpleQueue | None = None  # AudioPiece of the first clip as it is decoded (None: not listened)

    @property
    def rows(self) -> int:
        """Rows the job adds to a batch: every candidate of every clip."""
        return len(self.request.seeds) * self.request.best_of


@dataclass
class BatchStats:
    """What the worker did: one entry per ``generate`` call."""

    rows: list[int] = field(default_factory=list)
    seconds: list[float] = field(default_factory=list)


class GenerationService:
    """Validates requests, batches them across users, stores every clip (content-addressed)."""

    def __init__(self, registry: ModelRegistry, store: Store, *, limiter: RateLimiter | None = None,
                 scorers: BestOfScorers | None = None, max_batch_rows: int = 16, max_duration: float = 30.0,
                 max_pending: int = 512, timeout_s: float = 600.0, batch_wait_s: float = 0.1,
                 stream_chunk_s: float = 0.5, stream_first_chunk_s: float = 0.25, autostart: bool = True) -> None:
        if max_batch_rows < 1:
            raise ValueError("max_batch_rows must be >= 1")
        self.registry = registry
        self.store = store
        self.limiter = limiter or RateLimiter()
        self.scorers = scorers or BestOfScorers()
        self.max_batch_rows = max_batch_rows
        self.max_duration = max_duration
        self.max_pending = max_pending
        self.timeout_s = timeout_s
        self.batch_wait_s = batch_wait_s if max_batch_rows > 1 else 0.0
        # a listened clip comes in pieces of stream_chunk_s, the first one shorter so that it starts sooner
        self.stream_chunk_s, self.stream_first_chunk_s = stream_chunk_s, stream_first_chunk_s
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
                 variations: object = 1, lam: object = None, best_of: object = 1, reward: object = None,
                 weights: object = None, audio_prompt: AudioPrompt | None = None) -> GenerationRequest:
        """Check every input once (InputError with a message for the user) and build the request.

        Here: the UI's ranges (``app.validation``); the model's own rules (prompt, duration within its
        maximum, sampling parameters) are checked by its ``plan``, once. The guidance scale is the
        registry's ``effective_cfg`` (1 for CFG-free models); ``lam`` only matters for merge entries
        (default: the entry's ``init``); ``weights`` ({objective: weight}) only for steerable entries
        (default uniform; refused for others); seed -1 draws a random seed. ``best_of``: N candidates per
        clip, kept by ``reward`` (one of ``scorers.choices``, default the first; ignored for N = 1).
        """
        best_of = self.scorers.check_n(best_of)
        reward = (self.scorers.check_choice(self.scorers.choices[0] if reward in (None, "") else reward)
                  if best_of > 1 else None)
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
        return self.request(entry.id, collapse_whitespace(prompt), duration, params, seeds, lam_value, weights,
                            best_of, reward, audio_prompt)

    def request(self, model_id: str, prompt: str, duration: float, params: SamplingParams, seeds: Sequence[int],
                lam: float | None = None, weights: object = None, best_of: int = 1,
                reward: str | None = None, audio_prompt: AudioPrompt | None = None) -> GenerationRequest:
        """A request for ``model_id``'s plan (its checks: the prompt, duration and parameters). A steerable
        entry's weights are snapped here (None = uniform: what the arena serves); a best-of request's
        scorers are loaded here, so a scorer of another sample rate is refused before anything is queued."""
        steer = self.registry.steer_weights(model_id, weights)
        gen = self.registry.load(model_id, lam, steer)
        if audio_prompt is not None and best_of > 1:
            raise InputError("best-of-N does not combine with continuing audio")
        # a continuation (``duration`` counts its prompt) may pass the model's window: sliding windows then
        plan = gen.plan([prompt], duration, params, list(seeds), samples_per_prompt=len(seeds),
                        prompt_codes=None if audio_prompt is None else audio_prompt.codes,
                        long_form=audio_prompt is not None)
        if best_of > 1:
            if params.greedy:
                raise InputError("best-of-N needs sampling: with greedy decoding every candidate is the same clip")
            self.scorers.reward(reward or "", gen.sample_rate)
        return GenerationRequest(model_id, duration, plan, lam, steer, best_of, reward if best_of > 1 else None,
                                 gen.prompt_cut_warning(plan.prompts[0]), audio_prompt)

    def submit(self, request: GenerationRequest, listen: bool = False) -> _Job:
        """Queue a validated request; the job's future resolves to one GeneratedAudio per seed. ``listen``: the
        first clip's audio also arrives in pieces on ``job.listener`` while it is sampled (plain requests only)."""
        job = _Job(request, listener=queue.SimpleQueue() if listen else None)
        with self._cond:
            if self._closed:
                raise ServiceError("the generation service is shut down")
            if sum(j.request.cost for j in self._pending) + request.cost > self.max_pending:
                raise ServiceError(
                    f"the server is busy ({len(self._pending)} requests waiting); please try again in a minute"
                )
            self._pending.append(job)
            self._cond.notify()
        return job

    def wait(self, job: _Job, progress: Callable[[float, str], None] | None = None) -> list[GeneratedAudio]:
        """Block until the job is done, reporting (fraction, description) every ~0.25 s."""
        for _ in self.watch(job, progress):
            pass
        return job.future.result()

    def watch(self, job: _Job, progress: Callable[[float, str], None] | None = None) -> Iterator[AudioPiece]:
        """Until the job is done: yield its listened pieces as they arrive (none when it is not listened to) and
        report (fraction, description) every ~0.25 s. ServiceError past ``timeout_s``."""
        deadline = time.monotonic() + self.timeout_s
        while not job.future.done():
            if job.listener is None:
                wait_futures([job.future], timeout=0.25)
            else:
                try:
                    yield job.listener.get(timeout=0.25)
                    continue
                except queue.Empty:
                    pass
            if job.future.done():
                break
            if time.monotonic() > deadline:
                raise ServiceError(f"generation did not finish within {self.timeout_s:g} s; please try again")
            if progress is not None:
                if job.started and job.total_steps:
                    progress(job.done_steps / job.total_steps, "generating")
                else:
                    progress(0.0, f"waiting for the model ({self.queue_position(job)} request(s) ahead)")
        while job.listener is not None and not job.listener.empty():
            yield job.listener.get_nowait()

    def queue_position(self, job: _Job) -> int:
        with self._cond:
            for i, other in enumerate(self._pending):
                if other is job:
                    return i
        return 0

    def generate(self, model_id: object, prompt: object, duration: object, cfg: object = DEFAULT_CFG,
                 temperature: object = DEFAULT_TEMPERATURE, top_k: object = DEFAULT_TOP_K, seed: object = -1,
                 variations: object = 1, lam: object = None, best_of: object = 1, reward: object = None,
                 weights: object = None, *, caller: Caller | None = None,
                 progress: Callable[[float, str], None] | None = None) -> list[GeneratedClip]:
        """Validate, generate (batched with other users' requests), store and draw the clips.

        ``caller``: who asks (a web request always says); its rate limit is applied first, and a valid
        best-of-N request counts N - 1 more (a refused one costs what any refused request costs: one).
        """
        pieces = self.generate_streaming(model_id, prompt, duration, cfg, temperature, top_k, seed, variations, lam,
                                         best_of, reward, weights, caller=caller, progress=progress, listen=False)
        while True:
            try:
                next(pieces)
            except StopIteration as done:
                return done.value

    def generate_streaming(self, model_id: object, prompt: object, duration: object, cfg: object = DEFAULT_CFG,
                           temperature: object = DEFAULT_TEMPERATURE, top_k: object = DEFAULT_TOP_K,
                           seed: object = -1, variations: object = 1, lam: object = None, best_of: object = 1,
                           reward: object = None, weights: object = None, *, caller: Caller | None = None,
                           progress: Callable[[float, str], None] | None = None,
                           listen: bool = True) -> Generator[AudioPiece, None, list[GeneratedClip]]:
        """:meth:`generate`, yielding the first clip's audio in pieces while it is sampled (``listen``; a request
        that cannot stream yields nothing), then returning the stored clips (``StopIteration.value``)."""
        if caller is not None:
            self.limiter.hit("generate", caller)
        self.registry.refresh()  # a model registered while the app runs can be asked for at once
        request = self.validate(model_id, prompt, duration, cfg, temperature, top_k, seed, variations, lam, best_of,
                                reward, weights)
        if caller is not None and request.cost > 1:
            self.limiter.hit("generate", caller, cost=request.cost - 1)
        job = self.submit(request, listen=listen)
        yield from self.watch(job, progress)
        audios = job.future.result()
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
        if request.weights is not None:
            params["weights"] = dict(request.weights)
        if request.audio_prompt is not None:
            params["continuation"] = request.audio_prompt.record()
        if request.prompt_cut is not None:
            params["prompt_cut"] = request.prompt_cut
        clips = []
        for index, out in enumerate(audios):
            duration = out.audio.shape[-1] / out.sample_rate
            extra = {"best_of": out.best_of} if out.best_of is not None else {}
            extra["peak_normalization"] = {"ceiling": PEAK_CEILING, "gain": round(out.gain, 6)}
            clips.append(self.store.add_clip(request.prompt, request.model_id, out.checkpoint_hash,
                                             {**params, **extra, "variation": index}, out.seed,
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
        self, requests: Sequence[GenerationRequest], on_step: Callable[[int, int], None] | None = None,
        listeners: Sequence[queue.SimpleQueue | None] = (),
    ) -> list[list[GeneratedAudio]]:
        """``listeners``: per request, the queue its first clip's pieces go to (None: not listened)."""
        first = requests[0]
        if any(r.key != first.key for r in requests):
            raise ValueError("a group must share model, weights, duration, parameters and best-of")
        gen = self.registry.load(first.model_id, first.lam, first.weights)
        plan = GenerationPlan.concat([r.plan for r in requests])
        offsets = [sum(len(r.seeds) for r in requests[:i]) for i in range(len(requests))]
        listened = {row: q for row, q in zip(offsets, listeners, strict=False) if q is not None}
        start = time.perf_counter()
        if first.best_of > 1:
            rows = self._best_of(gen, first, plan, on_step)
        else:
            if listened and first.audio_prompt is None and len(plan.windows) == 1:
                audio, gains = self._stream(gen, plan, listened, on_step)
            else:
                out = gen.render(plan, on_step=on_step)
                audio, gains = out.audio, out.gains
            rows = [GeneratedAudio(audio[i].cpu(), gen.sample_rate, seed, gen.checkpoint_hash, gain=float(gains[i]))
                    for i, seed in enumerate(plan.seeds)]
        self.stats.rows.append(len(plan.seeds) * first.best_of)
        self.stats.seconds.append(time.perf_counter() - start)
        results, offset = [], 0
        for r in requests:
            results.append(_with_prompt(r, rows[offset : offset + len(r.seeds)]))
            offset += len(r.seeds)
        return results

    def _stream(self, gen: MusicGenerator, plan: GenerationPlan, listened: dict[int, queue.SimpleQueue],
                on_step: Callable[[int, int], None] | None) -> tuple[torch.Tensor, torch.Tensor]:
        """Sample ``plan`` with ``MusicGenerator.stream``, decoding only the listened rows' chunks and putting each
        on its row's queue as it comes; returns what :meth:`MusicGenerator.render` would (audio [N, C, S], gains
        [N]): the one-shot decode of the same codes."""
        rows = sorted(listened)
        codes = None
        for chunk in gen.stream(plan, self.stream_chunk_s, on_step=on_step,
                                first_chunk_seconds=self.stream_first_chunk_s, rows=rows):
            for i, row in enumerate(rows):
                listened[row].put(AudioPiece(chunk.audio[i].cpu(), gen.sample_rate, chunk.start))
            codes = chunk.codes if chunk.final else codes
        return gen.decode_with_gains(codes)

    def _best_of(self, gen: MusicGenerator, first: GenerationRequest, plan: GenerationPlan,
                 on_step: Callable[[int, int], None] | None) -> list[GeneratedAudio]:
        """Each row of ``plan`` as the best of N candidates (``musicrl.best_of_n``; at most max_batch_rows
        candidates sampled at once); ``cost`` is the whole call's, shared by the requests batched in it."""
        reward = self.scorers.reward(first.reward or "", gen.sample_rate)
        n = first.best_of
        out = best_of_n(gen, reward, plan.rows, first.duration, plan.params, list(plan.seeds), n,
                        max_rows=self.max_batch_rows, on_step=on_step)
        rows = []
        for i, seed in enumerate(plan.seeds):
            record = out.record(i)  # the keys of musicrl generate --best-of's clip JSON
            picked = {"n": n, "reward": first.reward, "reward_value": record["candidate_rewards"][record["chosen"]],
                      **record, "cost": dict(out.cost)}
            rows.append(GeneratedAudio(out.audio[i].cpu(), out.sample_rate, seed, gen.checkpoint_hash, picked,
                                       gain=float(out.gains[i])))
        return rows

    def _take(self) -> list[_Job] | None:
        """The oldest job plus waiting jobs with its key, up to max_batch_rows clips (None: shut down)."""
        with self._cond:
            while not self._pending and not self._closed:
                self._cond.wait()
            if not self._pending:
                return None
            first = self._pending[0]
            # let requests sent together arrive together; not when a listener waits for the first sound (the
            # requests already queued still join it, and under load the queue is what fills batches)
            wait = 0.0 if first.listener is not None else self.batch_wait_s
            deadline = time.monotonic() + wait
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
                outputs = self._run_group([j.request for j in jobs], on_step, [j.listener for j in jobs])
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


def _with_prompt(request: GenerationRequest, rows: list[GeneratedAudio]) -> list[GeneratedAudio]:
    """A continuation's clips begin with the prompt's own samples (``musicrl.continuation.join_prompt``)."""
    if request.audio_prompt is None:
        return rows
    for row in rows:
        row.audio = join_prompt(request.audio_prompt, row.audio[None])[0]
    return rows
