"""Continuation and long form, the pure parts: the sliding-window schedule and the prompt splice.

Long form is audiocraft's ``extend_stride``: generate a window of the model's maximum length, then
repeatedly keep the last ``window - stride`` frames as the audio prefix of the next window and append only
its new frames. Worked example, 25 frames with windows of 10 and a stride of 6 (context 4):

    window 0: frames [0, 10)   forced [0, 0)    new 10
    window 1: frames [6, 16)   forced [6, 10)   new 6
    window 2: frames [12, 22)  forced [12, 16)  new 6
    window 3: frames [18, 25)  forced [18, 22)  new 3      (the last window is shorter)

A prompt of P frames is window 0's forced prefix (frames [0, P)); later windows are the same.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

# audiocraft's MusicGen defaults: 30 s windows advanced by extend_stride = 18 s (keep 12 s of context)
DEFAULT_STRIDE_FRACTION = 0.6
# Total length of one long-form generation (seconds): time and memory grow linearly with it.
MAX_LONG_DURATION = 300.0
# The seam between the verbatim prompt audio and the decoded continuation (seconds).
SPLICE_FADE = 0.05


@dataclass(frozen=True)
class Window:
    """Frames [start, end) of the whole clip, the first ``context`` of them forced (prompt or earlier output)."""

    start: int
    end: int
    context: int

    @property
    def frames(self) -> int:
        return self.end - self.start


def sliding_windows(total: int, window: int, stride: int, prompt: int = 0) -> list[Window]:
    """The windows that make ``total`` frames with windows of at most ``window`` frames (see the module
    docstring). One window when ``total <= window``.

    Args:
        total: T, frames of the whole clip (prompt included).
        window: W, the most frames one window may hold (the model's maximum).
        stride: new frames per window after the first, 1..W-1 (context = W - stride).
        prompt: P, frames forced at the start of window 0, 0..min(T, W) - 1.
    """
    if not 1 <= stride < window:
        raise ValueError(f"stride must be from 1 to {window - 1} frames, got {stride}")
    if not 0 <= prompt < min(total, window):
        raise ValueError(f"a prompt of {prompt} frames leaves nothing to generate in {min(total, window)}")
    windows = [Window(0, min(total, window), prompt)]
    context = window - stride
    while windows[-1].end < total:
        start = windows[-1].end - context
        windows.append(Window(start, min(start + window, total), context))
    return windows


def splice_prompt(prompt: torch.Tensor, decoded: torch.Tensor, fade: int) -> torch.Tensor:
    """The prompt's own samples, then the decoded clip, crossfaded linearly over the prompt's last ``fade``.

    Samples [0, Sp - fade) are the prompt verbatim; over [Sp - fade, Sp) the prompt fades out while the
    decoded audio (there: the codec's rendering of the prompt) fades in; from Sp on it is the decoded clip.

    Args:
        prompt: [C, Sp] at the model's rate; decoded: [C, S], S >= Sp (the decoded prompt + continuation).
        fade: crossfade length in samples (clipped to Sp).
    Returns:
        [C, S].
    """
    sp = prompt.shape[-1]
    if decoded.shape[-1] < sp or decoded.shape[0] != prompt.shape[0]:
        raise ValueError(f"decoded {tuple(decoded.shape)} cannot hold the prompt {tuple(prompt.shape)}")
    fade = max(0, min(fade, sp))
    out = decoded.clone()
    out[:, : sp - fade] = prompt[:, : sp - fade]
    if fade:
        ramp = (torch.arange(1, fade + 1, dtype=out.dtype) / (fade + 1))[None]
        out[:, sp - fade : sp] = prompt[:, sp - fade :] * (1 - ramp) + decoded[:, sp - fade : sp] * ramp
    return out
