"""Streaming decode: audio for the frames whose codes are all drawn, while sampling goes on.

With the delay pattern, after decoding step s the frames 0..s-K+1 have all K codes. ``StreamDecoder``
turns that growing prefix of codes into a stream of audio chunks with any codec:

- every ``chunk`` new frames it decodes frames [e - context, f) (e: the first frame not yet emitted, f:
  the frames complete so far) and keeps the audio of frames [e, f - context): the ``context`` frames on
  each side give a convolutional decoder (or Griffin-Lim's overlapping windows) its surroundings, so a
  chunk's audio is what a one-shot decode of the whole clip gives there, up to the decoder's reach;
- consecutive chunks overlap by ``overlap`` frames, joined by a linear crossfade (overlap-add with
  weights summing to 1), which hides what differs at a border (Griffin-Lim's phase is re-estimated per
  decode) — the last ``overlap`` frames of a chunk are held back until the next chunk arrives;
- the last chunk decodes up to the clip's end.

How close the joined stream is to the one-shot decode depends on the codec and is measured
(``models.streaming.stream_error``; docs/BENCHMARKS.md, "Streaming").
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch

from models.audio_io import PEAK_CEILING, peak_gains


@dataclass
class AudioChunk:
    """audio [N, C, s]: samples ``start``..``start + s`` of the stream; ``final`` on the last chunk, which
    also carries the clip's codes [N, K, T] and the limiter's gain per row (see ``StreamLimiter``)."""

    audio: torch.Tensor
    start: int
    final: bool = False
    codes: torch.Tensor | None = None
    gains: torch.Tensor | None = None


class StreamDecoder:
    """Codes arriving frame by frame -> audio chunks (see the module docstring).

    Args:
        decode: codes [N, K, F] -> audio [N, C, F * samples_per_frame] (the codec's raw decode).
        samples_per_frame: the codec's hop.
        chunk: frames per chunk (each waits for ``chunk + overlap + context`` new frames).
        context: frames decoded on each side of a chunk and thrown away.
        overlap: frames of crossfade between consecutive chunks (<= every chunk).
        first_chunk: frames of the first chunk (default ``chunk``): smaller starts the audio sooner.
    """

    def __init__(self, decode: Callable[[torch.Tensor], torch.Tensor], samples_per_frame: int, chunk: int,
                 context: int, overlap: int, first_chunk: int | None = None):
        first_chunk = chunk if first_chunk is None else first_chunk
        if min(chunk, first_chunk) < 1 or context < 0 or not 0 <= overlap <= min(chunk, first_chunk):
            raise ValueError(f"need chunks >= 1, context >= 0 and 0 <= overlap <= chunk; got {chunk} (first "
                             f"{first_chunk}), {context}, {overlap}")
        self.decode, self.spf = decode, samples_per_frame
        self.first_chunk, self.chunk, self.context, self.overlap = first_chunk, chunk, context, overlap
        self.emitted = 0  # frames whose audio has been handed out
        self.tail: torch.Tensor | None = None  # audio of frames [emitted, emitted + overlap), held back

    def push(self, codes: torch.Tensor, final: bool = False) -> torch.Tensor | None:
        """codes [N, K, f]: every frame complete so far. Returns the next stretch of audio [N, C, s] (None when
        not enough new frames arrived); with ``final`` the rest of the clip."""
        f = codes.shape[-1]
        end = f if final else f - self.context
        size = self.first_chunk if self.emitted == 0 else self.chunk  # nothing handed out yet: the first chunk
        if not final and end - self.emitted < size + self.overlap:
            return None
        start = max(0, self.emitted - self.context)
        stop = f if final else min(f, end + self.context)
        audio = self.decode(codes[:, :, start:stop]).float()
        audio = audio[..., (self.emitted - start) * self.spf : (end - start) * self.spf]
        if self.tail is not None:
            n = self.tail.shape[-1]
            ramp = torch.linspace(0.0, 1.0, n + 2, dtype=audio.dtype)[1:-1]
            audio = audio.clone()
            audio[..., :n] = self.tail * (1 - ramp) + audio[..., :n] * ramp
        if final:
            self.emitted, self.tail = f, None
            return audio
        keep = (end - self.overlap - self.emitted) * self.spf
        out, self.tail = audio[..., :keep], audio[..., keep:] if self.overlap else None
        self.emitted = end - self.overlap
        return out


class StreamLimiter:
    """Keeps streamed audio within ``ceiling`` without knowing the peak to come: each row's gain is the
    smallest ceiling / peak seen so far (never rising again), applied from the chunk where it drops. A
    one-shot clip is scaled by one gain for its whole length (``peak_normalize``); a stream can only lower
    its gain as it goes, so its early chunks may be louder than the one-shot clip's by that factor."""

    def __init__(self, rows: int, ceiling: float = PEAK_CEILING):
        self.ceiling, self.gains = ceiling, torch.ones(rows)

    def __call__(self, audio: torch.Tensor) -> torch.Tensor:
        audio = torch.nan_to_num(audio, nan=0.0, posinf=0.0, neginf=0.0)
        self.gains = torch.minimum(self.gains, peak_gains(audio, self.ceiling))
        return audio * self.gains[:, None, None]


@torch.no_grad()
def stream_error(streamed: torch.Tensor, one_shot: torch.Tensor, n_fft: int = 1024, hop: int = 256) -> dict:
    """How far a joined stream [N, C, S] is from the one-shot decode [N, C, S']: the max absolute sample
    difference, the signal-to-difference ratio in dB (10 log10 of the one-shot's energy / the difference's),
    and ``logmag_l1``, the mean |log(|STFT| + 1e-5)| difference (what a phase-free decoder such as
    Griffin-Lim can be compared by: its phase is re-estimated per decode, so its samples differ)."""
    n = min(streamed.shape[-1], one_shot.shape[-1])
    a, b = streamed[..., :n].float(), one_shot[..., :n].float()
    diff = (a - b).pow(2).sum()
    ratio = float(10 * torch.log10(b.pow(2).sum().clamp_min(1e-20) / diff.clamp_min(1e-20)))
    window = torch.hann_window(n_fft)
    spec = [torch.stft(x.reshape(-1, n), n_fft, hop, window=window, return_complex=True).abs() for x in (a, b)]
    logmag = float((torch.log(spec[0] + 1e-5) - torch.log(spec[1] + 1e-5)).abs().mean())
    return {"max_abs": float((a - b).abs().max()) if n else 0.0, "snr_db": ratio, "logmag_l1": logmag,
            "samples": n, "length_diff": streamed.shape[-1] - one_shot.shape[-1]}
