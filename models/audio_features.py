"""Spectral features in plain torch (no librosa at run time: its numba start-up costs ~30 s).

Shapes: wav [B, S]; STFT frames [B, F, T] (F = n_fft // 2 + 1 bins).
"""

from __future__ import annotations

import math

import torch


def stft_magnitude(wav: torch.Tensor, n_fft: int = 1024, hop: int = 320) -> torch.Tensor:
    """|STFT| with a Hann window, centred frames: [B, S] -> [B, F, S // hop + 1]."""
    window = torch.hann_window(n_fft, device=wav.device, dtype=wav.dtype)
    spec = torch.stft(wav, n_fft, hop, window=window, center=True, return_complex=True)
    return spec.abs()


def hz_to_mel(f: torch.Tensor | float) -> torch.Tensor:
    return 2595.0 * torch.log10(1.0 + torch.as_tensor(f) / 700.0)


def mel_to_hz(m: torch.Tensor) -> torch.Tensor:
    return 700.0 * (10 ** (m / 2595.0) - 1.0)


def mel_filterbank(
    sample_rate: int, n_fft: int, n_mels: int, fmin: float = 0.0, fmax: float | None = None
) -> torch.Tensor:
    """Triangular HTK-mel filters, area-normalised (Slaney): [n_mels, F]."""
    fmax = fmax or sample_rate / 2
    freqs = torch.linspace(0, sample_rate / 2, n_fft // 2 + 1)
    edges = mel_to_hz(torch.linspace(hz_to_mel(fmin).item(), hz_to_mel(fmax).item(), n_mels + 2))
    lower, centre, upper = edges[:-2, None], edges[1:-1, None], edges[2:, None]
    up = (freqs[None] - lower) / (centre - lower)
    down = (upper - freqs[None]) / (upper - centre)
    fb = torch.clamp(torch.minimum(up, down), min=0.0)
    return fb * (2.0 / (upper - lower))


def chroma_filterbank(sample_rate: int, n_fft: int, fmin: float = 55.0, fmax: float = 4000.0) -> torch.Tensor:
    """Each STFT bin between fmin and fmax assigned to its nearest pitch class (A = 0 .. G# = 11): [12, F]."""
    freqs = torch.linspace(0, sample_rate / 2, n_fft // 2 + 1)
    fb = torch.zeros(12, freqs.numel())
    keep = (freqs >= fmin) & (freqs <= fmax)
    semis = torch.round(12 * torch.log2(freqs[keep] / 440.0)).long() % 12
    fb[semis, keep.nonzero()[:, 0]] = 1.0
    return fb


def log_mel(mag: torch.Tensor, fb: torch.Tensor, eps: float = 1e-5) -> torch.Tensor:
    """[B, F, T] magnitudes -> [B, n_mels, T] log mel energies."""
    return torch.log(fb.to(mag) @ mag.pow(2) + eps)


def chroma(mag: torch.Tensor, fb: torch.Tensor) -> torch.Tensor:
    """[B, F, T] magnitudes -> [B, 12, T] energy per pitch class."""
    return fb.to(mag) @ mag.pow(2)


def griffin_lim(
    mag: torch.Tensor,
    n_fft: int = 1024,
    hop: int = 320,
    iters: int = 64,
    momentum: float = 0.99,
    length: int | None = None,
    seed: int = 0,
    phase: torch.Tensor | None = None,
) -> torch.Tensor:
    """Fast Griffin-Lim (Perraudin et al., 2013): phase from magnitudes [B, F, T] -> wav [B, S].

    Starts from ``phase`` (complex unit phasors [B, F, T], e.g. a learned phase head's) when given, else from
    a seeded random phase, so the same magnitudes always give the same waveform."""
    window = torch.hann_window(n_fft, device=mag.device, dtype=mag.dtype)
    if phase is None:
        g = torch.Generator(device="cpu").manual_seed(seed)
        angle = torch.rand(mag.shape, generator=g).to(mag.device) * 2 * math.pi
        spec = torch.polar(mag, angle.to(mag.dtype))
    else:
        spec = mag * phase
    prev = torch.zeros_like(spec)
    natural = (mag.shape[-1] - 1) * hop  # the length whose STFT has exactly T frames
    for _ in range(iters):
        wav = torch.istft(spec, n_fft, hop, window=window, center=True, length=natural)
        rebuilt = torch.stft(wav, n_fft, hop, window=window, center=True, return_complex=True)
        accel = rebuilt + momentum * (rebuilt - prev)
        prev = rebuilt
        spec = mag * (accel / accel.abs().clamp_min(1e-12))  # unit phasors; 6x cheaper than exp(i angle)
    return torch.istft(spec, n_fft, hop, window=window, center=True, length=length)
