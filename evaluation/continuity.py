"""Continuity of audio across a time point: how alike the ``span`` seconds before and after it are.

Used to check long-form generation's sliding-window seams (``musicrl bench seams``): the similarity across
each seam against the same measured at points inside one window, where the LM made both sides in one pass.
Two views: chroma (harmony and pitch content) and the shipped text-audio embedder (overall sound).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch

from models.audio_features import chroma, chroma_filterbank, stft_magnitude
from models.long_form import Window


def chroma_cosine(a: torch.Tensor, b: torch.Tensor, sample_rate: int, n_fft: int = 2048, hop: int = 320) -> float:
    """Cosine similarity of the mean 12-bin chroma vectors of two waveforms a, b [S] (1 for equal pitch-class
    content, whatever the loudness; chroma is non-negative, so 0 is the least). NaN for silence."""
    fb = chroma_filterbank(sample_rate, n_fft)
    va = chroma(stft_magnitude(a[None].float(), n_fft, hop), fb)[0].mean(-1)
    vb = chroma(stft_magnitude(b[None].float(), n_fft, hop), fb)[0].mean(-1)
    norm = float(va.norm() * vb.norm())
    return float(va @ vb) / norm if norm > 0 else float("nan")


Similarity = Callable[[torch.Tensor, torch.Tensor, int], float]


def embedding_cosine(embed: Callable[[torch.Tensor], torch.Tensor]) -> Similarity:
    """A similarity from an audio embedder: ``embed(wav [B, S]) -> [B, D]`` unit-norm (e.g. the shipped
    ``TextAudioEmbedder.embed_audio``) -> cos(embed(a), embed(b))."""

    def similarity(a: torch.Tensor, b: torch.Tensor, sample_rate: int) -> float:
        e = embed(torch.stack([a, b]).float())
        return float(e[0] @ e[1])

    return similarity


def across(wav: torch.Tensor, sample_rate: int, times_s: list[float], span_s: float,
           similarity: Similarity) -> np.ndarray:
    """similarity(wav[t - span, t), wav[t, t + span)) for each t (seconds) -> [len(times_s)].

    Args:
        wav: [S] mono.
    """
    span, out = round(span_s * sample_rate), []
    for t in times_s:
        at = round(t * sample_rate)
        if at - span < 0 or at + span > wav.shape[-1]:
            raise ValueError(f"{span_s} s either side of {t} s leaves the clip of {wav.shape[-1] / sample_rate} s")
        out.append(similarity(wav[at - span : at], wav[at : at + span], sample_rate))
    return np.asarray(out, dtype=np.float64)


def seam_times(windows: list[Window], frame_rate: float) -> list[float]:
    """Where each window after the first starts adding frames: the seams of a sliding-window clip (seconds)."""
    return [(w.start + w.context) / frame_rate for w in windows[1:]]


def inside_times(windows: list[Window], frame_rate: float, span_s: float) -> list[float]:
    """Points at least ``span_s`` away from every seam and clip edge, each inside the frames one window added:
    the middle of each window's new frames where they are long enough (the comparison for the seams)."""
    times = []
    for w in windows:
        first, last = (w.start + w.context) / frame_rate, w.end / frame_rate
        if last - first >= 2 * span_s:
            times.append((first + last) / 2)
    return times
