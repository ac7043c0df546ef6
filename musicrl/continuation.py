"""Continuing a clip: read an audio file as a prompt, join the verbatim prompt to the decoded continuation.

Used by ``musicrl generate --continue FILE`` and the app's upload / "Extend this clip". The written audio
keeps the prompt's own samples (resampled to the model's rate) at the start; the decoded audio takes over
through a ``SPLICE_FADE`` crossfade over the prompt's last samples (``models.long_form.splice_prompt``),
and the codes begin with the prompt's codes.
"""

from __future__ import annotations

import hashlib
import io
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from models.errors import InputError
from models.generator import GenerationPlan, MusicGenerator
from models.long_form import SPLICE_FADE, splice_prompt

AUDIO_SUFFIXES = (".wav", ".flac", ".mp3", ".ogg")
MAX_PROMPT_FILE_BYTES = 50 * 2**20  # no prompt worth the model's window needs more (30 s of 48 kHz stereo float)


@dataclass
class AudioPrompt:
    """An audio prompt: ``audio`` [C, S] at the model's rate (mono mixdown), its ``codes`` [K, P];
    ``name``/``sha256`` of the source file; ``seconds`` = S / model rate. ``lead`` [C, L]: audio that comes
    before ``audio`` in the output, verbatim, but is not shown to the model (extending a clip longer than
    the model's context: only its tail is the prompt)."""

    audio: torch.Tensor
    codes: torch.Tensor
    sample_rate: int
    name: str = ""
    sha256: str = ""
    lead: torch.Tensor | None = None

    @property
    def seconds(self) -> float:
        return self.audio.shape[-1] / self.sample_rate

    @property
    def lead_seconds(self) -> float:
        return 0.0 if self.lead is None else self.lead.shape[-1] / self.sample_rate

    def record(self) -> dict:
        """What a clip's metadata says about its prompt."""
        record = {"prompt_file": self.name, "prompt_sha256": self.sha256, "prompt_seconds": round(self.seconds, 4),
                  "prompt_frames": int(self.codes.shape[-1])}
        if self.lead is not None:
            record["lead_seconds"] = round(self.lead_seconds, 4)
        return record


def max_prompt_seconds(gen: MusicGenerator) -> float:
    """The longest prompt a model continues: one frame less than its window."""
    return (gen.max_frames - 1) / gen.frame_rate


def prompt_from_array(gen: MusicGenerator, wav: np.ndarray, sample_rate: int, name: str = "",
                      sha256: str = "") -> AudioPrompt:
    """wav [S] or [S, C] at ``sample_rate`` -> an AudioPrompt (InputError when empty, non-finite or too long)."""
    wav = np.asarray(wav)
    if wav.size == 0:
        raise InputError(f"the audio prompt {name} has no samples")
    if not np.isfinite(wav).all():
        raise InputError(f"the audio prompt {name} has non-finite samples")
    seconds, limit = wav.shape[0] / sample_rate, max_prompt_seconds(gen)
    if seconds > limit + 1e-9:
        raise InputError(f"the audio prompt {name} is {seconds:.2f} s; {gen.name} continues clips of at most "
                         f"{limit:g} s")
    audio = gen.prompt_audio(wav, sample_rate)
    return AudioPrompt(audio, gen.encode_audio(wav, sample_rate), gen.sample_rate, name, sha256)


def read_prompt(gen: MusicGenerator, path: str | Path, max_bytes: int = MAX_PROMPT_FILE_BYTES,
                name: str | None = None) -> AudioPrompt:
    """Read an audio file soundfile decodes (WAV/FLAC/MP3/OGG) as a prompt for ``gen``.

    Its length is checked from the header before the samples are read, then again from what was read.
    Every way a file can be wrong is one InputError line.
    """
    import soundfile as sf

    path = Path(path)
    name = path.name if name is None else name
    if not path.is_file():
        raise InputError(f"audio prompt {name}: no such file")
    size = path.stat().st_size
    if size == 0:
        raise InputError(f"audio prompt {name} is empty")
    if size > max_bytes:
        raise InputError(f"audio prompt {name} is {size / 2**20:.1f} MiB; the limit is {max_bytes / 2**20:g} MiB")
    data = path.read_bytes()
    try:
        with sf.SoundFile(io.BytesIO(data)) as fh:
            rate, frames = fh.samplerate, fh.frames
            if rate > 0 and frames / rate > max_prompt_seconds(gen) + 1e-9:
                raise InputError(f"the audio prompt {name} is {frames / rate:.2f} s; {gen.name} continues clips "
                                 f"of at most {max_prompt_seconds(gen):g} s")
            wav = fh.read(dtype="float32", always_2d=True)
    except InputError:
        raise
    except Exception:  # noqa: BLE001 - soundfile raises several kinds (LibsndfileError, RuntimeError, ...)
        raise InputError(f"audio prompt {name} is not audio soundfile can read (WAV, FLAC, MP3 or OGG)") from None
    if rate <= 0:
        raise InputError(f"audio prompt {name} has no sample rate")
    return prompt_from_array(gen, wav, rate, name, hashlib.sha256(data).hexdigest())


def join_prompt(prompt: AudioPrompt, audio: torch.Tensor, fade_s: float = SPLICE_FADE) -> torch.Tensor:
    """Decoded clips [N, C, S] whose codes begin with the prompt's -> the same with the prompt's own samples
    at the start (crossfaded over its last ``fade_s`` seconds), after the ``lead`` if any: [N, C, L + S]."""
    fade = round(fade_s * prompt.sample_rate)
    head = prompt.audio.to(audio.dtype)
    out = torch.stack([splice_prompt(head[: row.shape[0]], row, fade) for row in audio])
    if prompt.lead is None:
        return out
    lead = prompt.lead.to(audio.dtype)[: audio.shape[1]]
    return torch.cat([lead[None].expand(audio.shape[0], -1, -1), out], dim=-1)


def prompt_from_clip(gen: MusicGenerator, wav: np.ndarray, sample_rate: int, context_s: float, name: str = "",
                     sha256: str = "") -> AudioPrompt:
    """A clip to extend: its last ``context_s`` seconds (at most the model's prompt limit) are the prompt,
    everything before is the verbatim ``lead``.

    Args:
        wav: [S] or [S, C] at ``sample_rate``.
    """
    whole = gen.prompt_audio(wav, sample_rate)
    tail = min(whole.shape[-1], round(min(context_s, max_prompt_seconds(gen)) * gen.sample_rate))
    if tail < 1:
        raise InputError("the clip to extend has no samples")
    mono = whole[0, -tail:].numpy()
    prompt = prompt_from_array(gen, mono, gen.sample_rate, name, sha256)
    if tail < whole.shape[-1]:
        prompt.lead = whole[:, :-tail]
    return prompt


def long_form_record(gen: MusicGenerator, plan: GenerationPlan) -> dict:
    """What a clip's metadata says about its sliding windows (empty for one window)."""
    windows = plan.windows
    if len(windows) == 1:
        return {}
    return {"window_s": plan.window / gen.frame_rate, "stride_s": plan.stride / gen.frame_rate,
            "context_s": (plan.window - plan.stride) / gen.frame_rate, "windows": len(windows)}
