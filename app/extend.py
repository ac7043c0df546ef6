"""Continuation in the app: "Extend this clip" and continuing an uploaded audio file.

Both go through :class:`app.generation.GenerationService` (the same queue, batching and store) with an
:class:`musicrl.continuation.AudioPrompt` on the request, and count against the generation rate limit
exactly as a generation does. Every rule is the server's:

- **Extend**: only clips made in the Generate tab (``source`` generate, extend or continue; arena clips are
  blind and stay so), with the model and checkpoint that made them (a reloaded registry that changed the
  checkpoint refuses), the clip's own settings (guidance, temperature, top-k, merge weight, objective
  weights) and a new seed. The clip's last ``context`` seconds (the long-form context: the model's maximum
  less its extend stride) are the prompt; what comes before is kept verbatim. ``seconds`` new seconds, from
  ``MIN_NEW_SECONDS`` to the model's maximum; the whole clip at most ``max_total_s``.
- **Upload**: at most ``MAX_UPLOAD_BYTES`` (gradio's ``max_file_size`` refuses more before a handler runs;
  checked again here), decoded by soundfile (the extension and the browser's type count for nothing), at
  most the model's maximum less one frame, finite samples; ``duration`` counts the prompt and must add at
  least ``MIN_NEW_SECONDS``. The uploaded file is deleted from gradio's upload cache as soon as it was read
  (whether it was usable or not), so it is never served back; only the generated clip, which begins with
  it, is stored and served.
"""

from __future__ import annotations

import hashlib
import math
import secrets
from collections.abc import Callable
from pathlib import Path

from app.generation import GeneratedClip, GenerationService
from app.limits import Caller
from app.validation import (
    DEFAULT_CFG,
    DEFAULT_TEMPERATURE,
    DEFAULT_TOP_K,
    MAX_VARIATIONS,
    SEED_RANGE,
    collapse_whitespace,
    number,
)
from models.errors import InputError
from models.sampling import SamplingParams
from musicrl.continuation import prompt_from_clip, read_prompt

MAX_UPLOAD_BYTES = 10 * 2**20  # 10 MiB: ~55 s of 48 kHz stereo 16-bit WAV, more than any model's window
MIN_NEW_SECONDS = 1.0
EXTENDABLE_SOURCES = ("generate", "extend", "continue")


class ContinuationService:
    """Extend stored clips and continue uploads through ``generation`` (see the module docstring)."""

    def __init__(self, generation: GenerationService, *, max_total_s: float = 120.0,
                 max_upload_bytes: int = MAX_UPLOAD_BYTES, upload_root: str | Path | None = None) -> None:
        self.generation = generation
        self.max_total_s = max_total_s
        self.max_upload_bytes = max_upload_bytes
        self.upload_root = None if upload_root is None else Path(upload_root).resolve()

    def extend(self, clip_id: object, seconds: object, *, caller: Caller | None = None,
               progress: Callable[[float, str], None] | None = None) -> GeneratedClip:
        """The clip ``clip_id`` and ``seconds`` more of it: a new stored clip (source "extend")."""
        service = self.generation
        if caller is not None:
            service.limiter.hit("generate", caller)
        service.registry.refresh()
        if not isinstance(clip_id, str) or not 1 <= len(clip_id) <= 64:
            raise InputError("no clip to extend: generate one first")
        try:
            clip = service.store.get_clip(clip_id)
        except LookupError:
            raise InputError("unknown clip: generate one first") from None
        if clip.params.get("source") not in EXTENDABLE_SOURCES:
            raise InputError("only clips made in the Generate tab can be extended")
        entry = service.registry.get(clip.model_id)  # InputError when the model is no longer served
        seconds = number("seconds to add", seconds, MIN_NEW_SECONDS, service.model_max_duration(entry.id))
        if clip.duration + seconds > self.max_total_s + 1e-9:
            raise InputError(f"the clip would be {clip.duration + seconds:g} s; this server extends clips up to "
                             f"{self.max_total_s:g} s")
        lam, weights = clip.params.get("lam"), clip.params.get("weights")
        gen = service.registry.load(entry.id, lam, service.registry.steer_weights(entry.id, weights))
        if gen.checkpoint_hash != clip.checkpoint_hash:
            raise InputError("the model that made this clip has changed since; generate a new clip")
        import soundfile as sf

        data = clip.audio_file.read_bytes()
        wav, rate = sf.read(clip.audio_file, dtype="float32", always_2d=True)
        context = (gen.max_frames - gen.stride_frames()) / gen.frame_rate
        # the clip's id names the prompt: a clip of source "extend" says what it extends in continuation.prompt_file
        prompt = prompt_from_clip(gen, wav, rate, context, clip.id, hashlib.sha256(data).hexdigest())
        params = SamplingParams(cfg=service.registry.effective_cfg(entry.id, clip.params.get("cfg", DEFAULT_CFG)),
                                temperature=clip.params.get("temperature", DEFAULT_TEMPERATURE),
                                top_k=clip.params.get("top_k", DEFAULT_TOP_K), top_p=clip.params.get("top_p", 1.0))
        seed = secrets.randbelow(SEED_RANGE[1])
        request = service.request(entry.id, clip.prompt, round(prompt.seconds + seconds, 6), params, [seed], lam,
                                  weights, audio_prompt=prompt)
        return self._run(request, "extend", progress)[0]

    def continue_upload(self, upload: object, prompt: object, model_id: object, duration: object,
                        cfg: object, temperature: object, top_k: object, seed: object = -1, variations: object = 1,
                        lam: object = None, weights: object = None, *, caller: Caller | None = None,
                        progress: Callable[[float, str], None] | None = None) -> list[GeneratedClip]:
        """Continue an uploaded audio file with the Generate tab's settings; ``duration`` counts the upload."""
        service = self.generation
        path = self._upload_path(upload)
        try:
            if caller is not None:
                service.limiter.hit("generate", caller)
            service.registry.refresh()
            entry = service.registry.get(model_id)
            gen = service.registry.load(entry.id, None, None)  # every merge/steer point shares the codec
            audio_prompt = read_prompt(gen, path, self.max_upload_bytes, name="the upload")
        finally:
            self._discard(path)
        total = number("duration (seconds)", duration, -math.inf, math.inf)
        if total < audio_prompt.seconds + MIN_NEW_SECONDS:
            raise InputError(f"the duration counts the uploaded {audio_prompt.seconds:.2f} s: ask for at least "
                             f"{audio_prompt.seconds + MIN_NEW_SECONDS:.2f} s")
        variations = int(number("variations", variations, 1, MAX_VARIATIONS, integer=True))
        request = service.validate(entry.id, collapse_whitespace(prompt), total, cfg, temperature, top_k, seed,
                                   variations, lam, weights=weights, audio_prompt=audio_prompt)
        return self._run(request, "continue", progress)

    # -- pieces --------------------------------------------------------------------------------

    def _run(self, request, source: str, progress) -> list[GeneratedClip]:
        service = self.generation
        audios = service.wait(service.submit(request), progress)
        if progress is not None:
            progress(1.0, "saving")
        clips = service.store_clips(request, audios, source=source)
        return [GeneratedClip(c, service.spectrogram(c, a.audio)) for c, a in zip(clips, audios, strict=True)]

    def _upload_path(self, upload: object) -> Path:
        """The uploaded file's path (gradio hands a path, or a dict / FileData with one)."""
        path = getattr(upload, "path", None) or (upload.get("path") if isinstance(upload, dict) else upload)
        if not isinstance(path, str | Path) or not str(path):
            raise InputError("no audio file uploaded")
        return Path(path)

    def _discard(self, path: Path) -> None:
        """Delete an upload from gradio's upload cache (never a file elsewhere, never a stored clip's copy)."""
        if self.upload_root is None:
            return
        try:
            resolved = path.resolve()
            if not resolved.is_file() or not resolved.is_relative_to(self.upload_root):
                return
            sha = hashlib.sha256(resolved.read_bytes()).hexdigest()
            if (self.generation.store.audio_dir / sha[:2] / f"{sha}.wav").is_file():
                return  # a clip this server returned (gradio keeps its copies in the same cache)
            resolved.unlink()
        except OSError:
            pass

