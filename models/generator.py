"""``MusicGenerator``: the one inference facade (app, RL rollouts, best-of-N and evaluation use it).

generate = encode prompts -> sample delayed codes step by step (CFG through the null condition,
skipped entirely at gamma = 1) -> revert the delay pattern -> decode with the codec.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Callable, Generator, Iterator, Sequence
from dataclasses import dataclass, field

import torch

from models.audio_io import mono_at_rate, peak_normalize
from models.codecs import Codec
from models.conditioners import TextConditioner
from models.delay import build_delayed, delay_valid_mask, lm_inputs, revert_delayed
from models.errors import InputError
from models.lm import AudioLM, TextStates
from models.long_form import DEFAULT_STRIDE_FRACTION, MAX_LONG_DURATION, Window, sliding_windows
from models.sampling import SamplingParams, apply_cfg, make_generators, sample_next
from models.streaming import AudioChunk, StreamDecoder, StreamLimiter

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
    gains: torch.Tensor | None = None  # [N]: the peak normalisation's factor per row (1 = left as decoded)


@torch.no_grad()
def sample_codes(
    lm: AudioLM,
    text: TextStates,
    num_frames: int,
    params: SamplingParams,
    seeds: list[int],
    return_logprobs: bool = False,
    on_step: Callable[[int, int], None] | None = None,
    prefix: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Autoregressive sampling with the delay pattern, optionally continuing an audio prefix.

    With a prefix of P frames every delayed position whose frame is < P is forced to the prefix's code
    (teacher forcing through the delay pattern, as transformers' MusicGen treats audio-prompt
    ``decoder_input_ids``), so ``codes[:, :, :P]`` equal the prefix and those positions have log-prob 0.
    Steps 0..P-1 are all forced: they run in one :meth:`AudioLM.prefill` pass and draw no random numbers;
    steps P..P+K-2 draw every codebook and keep the forced ones. Without a prefix nothing changes.
    The loop itself is :func:`sampling_steps` (streaming iterates it step by step).

    Args:
        text: states for the N rows ([N, L, C], mask [N, L]).
        num_frames: T, frames of audio codes to produce (T + K - 1 decoding steps), prefix included.
        seeds: N seeds, one generator per row.
        prefix: codes [N, K, P], 0 <= P <= T, or None.
    Returns:
        codes [N, K, T]; logprobs [N, K, T] of the sampled codes (see ``sample_next``) or None.
    """
    total = num_frames + lm.cfg.num_codebooks - 1
    loop = sampling_steps(lm, text, num_frames, params, seeds, return_logprobs, prefix)
    while True:
        try:
            done, _ = next(loop)
        except StopIteration as end:
            return end.value
        if on_step is not None:
            on_step(done, total)


def sampling_steps(
    lm: AudioLM,
    text: TextStates,
    num_frames: int,
    params: SamplingParams,
    seeds: list[int],
    return_logprobs: bool = False,
    prefix: torch.Tensor | None = None,
) -> Generator[tuple[int, torch.Tensor], None, tuple[torch.Tensor, torch.Tensor | None]]:
    """The sampling loop of :func:`sample_codes` as a generator: it yields (steps done, delayed codes
    [N, K, S]) after the prefix's prefill and after every step (the tensor is filled in place: frames whose
    K codes are all drawn are ``steps done - K + 1``), and returns what :func:`sample_codes` returns.
    Run it under ``torch.no_grad()``.
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
    first, forced = 0, None
    if prefix is not None and prefix.shape[-1] > 0:
        p = prefix.shape[-1]
        if prefix.shape[:2] != (n, k) or p > num_frames:
            raise ValueError(f"prefix {tuple(prefix.shape)} does not fit {n} rows of [{k}, {num_frames}] codes")
        filled = torch.cat([prefix.to(tokens.device), prefix.new_full((n, k, num_frames - p), special)], dim=-1)
        forced = build_delayed(filled, special) != special  # [N, K, S]: the prefix's positions
        delayed = torch.where(forced, build_delayed(filled, special), delayed)
        first = min(p, steps)
        inputs = lm_inputs(delayed[:, :, :first], special)
        lm.prefill(torch.cat([inputs, inputs]) if use_cfg else inputs, cache)
        tokens = delayed[:, :, first - 1]
        yield first, delayed
    for s in range(first, steps):
        logits = lm.step(torch.cat([tokens, tokens]) if use_cfg else tokens, s, cache)
        if use_cfg:
            logits = apply_cfg(logits[:n], logits[n:], params.cfg)
        codes, logp = sample_next(logits, params, generators)
        tokens = torch.where(valid[:, s], codes, special)
        keep = valid[:, s]
        if forced is not None and s < first + k - 1:  # the prefix's finer codebooks still lag behind
            tokens = torch.where(forced[:, :, s], delayed[:, :, s], tokens)
            keep = keep & ~forced[:, :, s]
        delayed[:, :, s] = tokens
        if logprobs is not None:
            logprobs[:, :, s] = logp.float().cpu() * keep.cpu()
        yield s + 1, delayed
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

    def with_lm_weights(self, state: dict[str, torch.Tensor], name: str) -> MusicGenerator:
        """This model's conditioner and codec with a new LM of the same config holding ``state`` (plain
        ``AudioLM`` keys; stored float32 on the CPU): what a finetuning recipe exports."""
        lm = AudioLM(self.lm.cfg)
        lm.load_state_dict({k: v.detach().cpu().float() for k, v in state.items()})
        return MusicGenerator(lm=lm, conditioner=self.conditioner, codec=self.codec, name=name,
                              max_duration=self.max_duration, cfg_free=self.cfg_free)

    @property
    def sample_rate(self) -> int:
        return self.codec.sample_rate

    @property
    def frame_rate(self) -> float:
        return self.codec.frame_rate

    @property
    def max_frames(self) -> int:
        """W, the frames of the longest clip one window (one pass of the LM) makes."""
        limit = self.lm.cfg.max_positions - self.lm.cfg.num_codebooks + 1
        return max(1, min(limit, round(self.max_duration * self.frame_rate)))

    def num_frames(self, duration: float, long_form: bool = False) -> int:
        """Frames for ``duration`` seconds of audio (frames = duration x frame rate, at least 1); up to the
        model's maximum, or up to ``MAX_LONG_DURATION`` seconds with ``long_form`` (sliding windows)."""
        if not duration > 0:
            raise InputError(f"duration must be > 0 seconds, got {duration}")
        if long_form and duration > MAX_LONG_DURATION + 1e-9:
            raise InputError(f"duration {duration:g} s exceeds the long-form maximum of {MAX_LONG_DURATION:g} s")
        if not long_form and duration > self.max_duration + 1e-9:
            raise InputError(f"duration {duration:g} s exceeds this model's maximum of {self.max_duration:g} s")
        return max(1, round(duration * self.frame_rate))

    def stride_frames(self, extend_stride: float | None = None) -> int:
        """New frames per window after the first in long form: ``extend_stride`` seconds (default
        ``DEFAULT_STRIDE_FRACTION`` of the model's maximum, audiocraft's 18 of 30 s), 1..W-1 frames."""
        if extend_stride is None:
            return max(1, min(self.max_frames - 1, round(DEFAULT_STRIDE_FRACTION * self.max_frames)))
        frames = round(extend_stride * self.frame_rate) if extend_stride > 0 else 0
        if not 1 <= frames < self.max_frames:
            raise InputError(
                f"the extend stride must be from {1 / self.frame_rate:g} to {(self.max_frames - 1) / self.frame_rate:g}"
                f" s for this model, got {extend_stride:g}"
            )
        return frames

    def prompt_audio(self, wav, sample_rate: int) -> torch.Tensor:
        """An audio prompt as the codec hears it: mono mixdown, resampled to the codec's rate
        (``scipy.signal.resample_poly``), clipped to [-1, 1], copied to each codec channel.

        Args:
            wav: [S] or [S, C] (soundfile's layout) float array.
        Returns:
            audio [C_codec, S'] float32.
        """
        if not int(sample_rate) > 0:
            raise InputError(f"the audio prompt's sample rate must be > 0, got {sample_rate}")
        mono = mono_at_rate(wav, int(sample_rate), self.sample_rate)
        if mono.size == 0:
            raise InputError("the audio prompt is empty")
        audio = torch.from_numpy(mono).clamp(-1.0, 1.0)[None]
        return audio.repeat(self.codec.channels, 1)

    @torch.no_grad()
    def encode_audio(self, wav, sample_rate: int) -> torch.Tensor:
        """The codes of an audio prompt (see :meth:`prompt_audio`): codes [K, T] int64 on the CPU."""
        audio = self.prompt_audio(wav, sample_rate)
        param = next(iter(self.codec.parameters()), None) if hasattr(self.codec, "parameters") else None
        device = param.device if param is not None else "cpu"
        return self.codec.encode(audio[None].to(device))[0].long().cpu()

    def _prompt_rows(self, prompt_codes: torch.Tensor | None, rows: int, frames: int) -> torch.Tensor | None:
        """prompt codes [K, P] (every row) or [N, K, P] -> checked [N, K, P], or None."""
        if prompt_codes is None:
            return None
        codes = torch.as_tensor(prompt_codes)
        if codes.dim() == 2:
            codes = codes[None].expand(rows, -1, -1)
        k, v = self.lm.cfg.num_codebooks, self.lm.cfg.cardinality
        if codes.dim() != 3 or codes.shape[:2] != (rows, k) or codes.is_floating_point():
            raise InputError(f"prompt codes must be integers [{k}, P] or [{rows}, {k}, P], got {tuple(codes.shape)}")
        if codes.numel() and not (0 <= int(codes.min()) and int(codes.max()) < v):
            raise InputError(f"prompt codes must lie in [0, {v})")
        p = codes.shape[-1]
        if not 1 <= p < min(frames, self.max_frames):
            raise InputError(
                f"the audio prompt is {p / self.frame_rate:g} s; it must be shorter than the requested duration "
                f"({frames / self.frame_rate:g} s) and than this model's maximum ({self.max_duration:g} s)"
            )
        return codes.long().contiguous()

    def prompt_cut_warning(self, prompt: str) -> str | None:
        """One line saying which words of ``prompt`` the text conditioner ignores (it reads at most
        ``max_tokens`` tokens), or None when it reads the whole prompt."""
        read_part = getattr(self.conditioner, "read_part", None)
        if read_part is None:
            return None
        part, count = read_part(prompt)
        limit = getattr(self.conditioner, "max_tokens", count)
        if count <= limit:
            return None
        ignored = prompt[len(part):].strip()
        shown = ignored if len(ignored) <= 60 else ignored[:57] + "..."
        return (f"the prompt has {count} text tokens and this model reads the first {limit}: "
                f"{shown!r} is ignored")

    def encode_text(self, prompts: list[str]) -> TextStates:
        return self.conditioner.encode(prompts)

    def plan(
        self,
        prompts: list[str],
        duration: float,
        params: SamplingParams,
        seeds: list[int] | int = 0,
        samples_per_prompt: int = 1,
        prompt_codes: torch.Tensor | None = None,
        long_form: bool = False,
        extend_stride: float | None = None,
    ) -> GenerationPlan:
        """Check a request once (InputError with a message for the user) and fix what it will sample.

        G = ``samples_per_prompt`` samples of each of B prompts; rows are prompt-major: row b * G + g is
        sample g of prompt b. ``seeds`` is one seed per row or a single base seed (row i: base + i).
        ``prompt_codes`` [K, P] or [N, K, P] (:meth:`encode_audio`): continue them; ``duration`` counts them
        (total length, as audiocraft's ``generate_continuation``). ``long_form``: a duration beyond the model's
        maximum (up to ``MAX_LONG_DURATION``) is made in sliding windows advanced by ``extend_stride`` seconds
        (:meth:`stride_frames`).
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
        frames = self.num_frames(duration, long_form)
        prompt = self._prompt_rows(prompt_codes, rows, frames)
        stride = self.stride_frames(extend_stride) if long_form else 0
        return GenerationPlan(tuple(prompts), tuple(int(s) for s in seeds), frames, params, samples_per_prompt,
                              prompt, self.max_frames, stride)

    def sample(
        self,
        plan: GenerationPlan,
        return_logprobs: bool = False,
        on_step: Callable[[int, int], None] | None = None,
    ) -> CodesOutput:
        """Sample the codes of a plan made by :meth:`plan` (nothing is checked again): window after window
        (:attr:`GenerationPlan.windows`), each continuing the last frames of what is there; window w > 0
        samples row i with :func:`window_seed`. ``on_step(done, total)`` counts the steps of all windows."""
        text = self.encode_text(list(plan.prompts)).repeat_rows(plan.samples_per_prompt)
        windows, k = plan.windows, self.lm.cfg.num_codebooks
        if len(windows) == 1 and plan.prompt is None:  # plain generation, exactly as it always was
            codes, logprobs = sample_codes(self.lm, text, plan.frames, plan.params, list(plan.seeds),
                                           return_logprobs, on_step)
            return CodesOutput(codes, logprobs, plan.rows, list(plan.seeds), text)
        n, total, done = len(plan.rows), plan.steps(k), 0
        codes = torch.zeros(n, k, plan.frames, dtype=torch.long)
        logprobs = torch.zeros(n, k, plan.frames) if return_logprobs else None
        if plan.prompt is not None:
            codes[:, :, : plan.prompt.shape[-1]] = plan.prompt
        for w, win in enumerate(windows):
            def step(i: int, _: int, offset: int = done) -> None:
                if on_step is not None:
                    on_step(offset + i, total)

            seeds = [window_seed(s, w) for s in plan.seeds]
            prefix = codes[:, :, win.start : win.start + win.context].to(text.states.device)
            got, logp = sample_codes(self.lm, text, win.frames, plan.params, seeds, return_logprobs, step, prefix)
            codes[:, :, win.start + win.context : win.end] = got[:, :, win.context :].cpu()
            if logprobs is not None:
                logprobs[:, :, win.start + win.context : win.end] = logp[:, :, win.context :]
            done += win.frames + k - 1
        return CodesOutput(codes.to(text.states.device), logprobs, plan.rows, list(plan.seeds), text)

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
        """codes [N, K, T] -> audio [N, C, S] within [-1, 1] (:meth:`decode_with_gains`)."""
        return self.decode_with_gains(codes)[0]

    @torch.no_grad()
    def decode_with_gains(self, codes: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """codes [N, K, T] -> audio [N, C, S] and gains [N]: a row whose peak passes
        ``models.audio_io.PEAK_CEILING`` is scaled down as a whole (``peak_normalize``), never clipped."""
        return peak_normalize(self.codec.decode(codes))

    def render(
        self,
        plan: GenerationPlan,
        return_logprobs: bool = False,
        on_step: Callable[[int, int], None] | None = None,
    ) -> AudioOutput:
        """:meth:`sample` a plan and decode it: audio [N, C, S]."""
        out = self.sample(plan, return_logprobs, on_step)
        audio, gains = self.decode_with_gains(out.codes)
        return AudioOutput(audio, out.codes, self.sample_rate, out.prompts, out.seeds, out.logprobs, gains)

    @torch.no_grad()
    def stream(
        self,
        plan: GenerationPlan,
        chunk_seconds: float = 1.0,
        context_seconds: float = 0.2,
        overlap_seconds: float = 0.04,
        on_step: Callable[[int, int], None] | None = None,
        first_chunk_seconds: float | None = None,
        rows: Sequence[int] | None = None,
    ) -> Iterator[AudioChunk]:
        """:meth:`render` as a stream: sample the plan step by step (the same loop, :func:`sampling_steps`) and
        yield the audio of the frames already complete, every ``chunk_seconds`` (``models.streaming``): a
        chunk's decode sees ``context_seconds`` of frames on each side, consecutive chunks are crossfaded over
        ``overlap_seconds``, a ``StreamLimiter`` keeps them within the peak ceiling. The last chunk carries the
        codes [N, K, T] (equal to :meth:`sample`'s for the same plan) and the limiter's gains. One window only
        (a long-form plan is refused); an audio prompt's own frames are streamed too. ``first_chunk_seconds``
        (default ``chunk_seconds``) sizes the first chunk alone: smaller, the audio starts sooner. ``rows``: the
        plan's rows to decode and stream (default all; the others are sampled alike, and only their codes come
        back): a server streaming one listener's clip need not decode its batch mates' chunks.

        Yields:
            ``models.streaming.AudioChunk``: audio [N, C, s] from sample ``start``, in order.
        """
        if len(plan.windows) > 1:
            raise InputError("streaming covers one window: ask for at most the model's maximum duration")
        k, fr = self.lm.cfg.num_codebooks, self.frame_rate
        frames = lambda seconds: max(0, round(seconds * fr))  # noqa: E731
        chunk = max(1, frames(chunk_seconds))
        spf = round(self.sample_rate / fr)
        first = chunk if first_chunk_seconds is None else max(1, frames(first_chunk_seconds))
        decoder = StreamDecoder(self.codec.decode, spf, chunk, frames(context_seconds),
                                min(chunk, first, frames(overlap_seconds)), first)
        picked = list(range(len(plan.rows))) if rows is None else list(rows)
        if not picked or any(not 0 <= r < len(plan.rows) for r in picked):
            raise ValueError(f"rows {picked} are not rows of this {len(plan.rows)}-row plan")
        limiter, start = StreamLimiter(len(picked)), 0
        text = self.encode_text(list(plan.prompts)).repeat_rows(plan.samples_per_prompt)
        total = plan.steps(k)
        loop = sampling_steps(self.lm, text, plan.frames, plan.params, list(plan.seeds), prefix=plan.prompt)
        while True:
            try:
                done, delayed = next(loop)
            except StopIteration as end:
                codes = end.value[0]
                break
            if on_step is not None:
                on_step(done, total)
            complete = done - k + 1
            if complete > 0:
                audio = decoder.push(revert_delayed(delayed[picked, :, : complete + k - 1]))
                if audio is not None and audio.shape[-1]:
                    yield AudioChunk(limiter(audio), start)
                    start += audio.shape[-1]
        audio = limiter(decoder.push(codes[picked], final=True))
        yield AudioChunk(audio, start, final=True, codes=codes, gains=limiter.gains.clone())

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
    prompt: torch.Tensor | None = field(default=None, compare=False)  # audio prompt codes [N, K, P]
    window: int = 0  # W: the most frames one window holds (0: all of ``frames``)
    stride: int = 0  # new frames per window after the first (0: one window only)

    @property
    def windows(self) -> list[Window]:
        """The sliding windows (``models.long_form.sliding_windows``); one unless frames > window."""
        prompt = 0 if self.prompt is None else self.prompt.shape[-1]
        if not self.stride or self.frames <= (self.window or self.frames):
            return [Window(0, self.frames, prompt)]
        return sliding_windows(self.frames, self.window, self.stride, prompt)

    def steps(self, num_codebooks: int) -> int:
        """Decoding steps of all windows together (T_w + K - 1 each; forced steps included)."""
        return sum(w.frames + num_codebooks - 1 for w in self.windows)

    @property
    def rows(self) -> list[str]:
        """The prompt of each of the N rows."""
        return [p for p in self.prompts for _ in range(self.samples_per_prompt)]

    @classmethod
    def concat(cls, plans: list[GenerationPlan]) -> GenerationPlan:
        """One plan whose rows are the plans' rows in order (one prompt per row)."""
        first = plans[0]
        shape = (first.frames, first.params, first.window, first.stride, _prompt_frames(first))
        if any((p.frames, p.params, p.window, p.stride, _prompt_frames(p)) != shape for p in plans):
            raise ValueError("only plans with equal frames, sampling parameters, windows and prompts concatenate")
        prompt = None if first.prompt is None else torch.cat([p.prompt for p in plans])
        return cls(tuple(r for p in plans for r in p.rows), tuple(s for p in plans for s in p.seeds), first.frames,
                   first.params, 1, prompt, first.window, first.stride)


def _prompt_frames(plan: GenerationPlan) -> int:
    return 0 if plan.prompt is None else plan.prompt.shape[-1]


def window_seed(seed: int, window: int) -> int:
    """The seed of a row in window ``window`` of a long-form generation: window 0 uses the row's own seed
    (so its first window is the plain clip of the model's maximum length), window w > 0 seed + 1_000_003 w."""
    return int(seed) + 1_000_003 * window


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
