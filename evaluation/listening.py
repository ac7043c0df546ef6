"""Signal properties a listener hears at once, measured from the waveform: level, clipping, noisiness,
brightness, silence, pulse clarity and key clarity. Pure functions, no trained weights (the simulated
listener panel, ``musicrl.panel``, builds its tastes on them and on the evaluation judges).

    feats = signal_features(wav, sample_rate)   # {"loudness_db": [B], "clipping": [B], ...}

- ``loudness_db``: RMS level of the whole clip, dBFS (0 = full-scale square wave; silence -> -120);
- ``clipping``: fraction of samples at full scale (abs >= 0.99), [0, 1];
- ``flatness``: spectral flatness (geometric / arithmetic mean of the power spectrum), mean over
  sounding frames: 0 = pure tones, 1 = white noise (and silence);
- ``brightness``: log2 of the spectral centroid in Hz, mean over sounding frames;
- ``silence``: fraction of frames quieter than ``silence_db`` dBFS, [0, 1];
- ``pulse``: the highest onset-envelope autocorrelation at a beat period of 40-240 BPM
  (``evaluation.judges.onset_autocorrelation``): how regular the rhythm is, about [-1, 1];
- ``key_clarity``: the best correlation of the mean chroma with the 24 Krumhansl-Kessler key
  profiles (``evaluation.judges.key_profile_correlations``): how tonal the clip sounds, [-1, 1].

Shapes: wav [B, S] (one length per call; ``signal_features_of`` takes clips of different lengths).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import torch

from evaluation.judges import key_profile_correlations, onset_autocorrelation
from models.audio_features import chroma, chroma_filterbank, log_mel, mel_filterbank, stft_magnitude

SIGNAL_FEATURES: tuple[str, ...] = ("loudness_db", "clipping", "flatness", "brightness", "silence", "pulse",
                                    "key_clarity")
SILENCE_FLOOR_DB = -120.0


def _frame_hop(sample_rate: int) -> tuple[int, int]:
    """n_fft ~ 64 ms and hop ~ 10 ms (100 frames/s, the judges' onset resolution), powers of two."""
    n_fft = 2 ** round(math.log2(0.064 * sample_rate))
    return n_fft, max(1, round(sample_rate / 100))


@torch.no_grad()
def signal_features(
    wav: torch.Tensor | np.ndarray, sample_rate: int, silence_db: float = -50.0
) -> dict[str, np.ndarray]:
    """wav [B, S] mono in [-1, 1] -> {feature: [B] float64} (the table in the module docstring)."""
    x = torch.as_tensor(wav, dtype=torch.float32)
    if x.dim() != 2 or x.shape[-1] == 0:
        raise ValueError(f"wav must be [B, S] with S > 0, got {tuple(x.shape)}")
    n_fft, hop = _frame_hop(sample_rate)
    if x.shape[-1] < n_fft:
        x = torch.nn.functional.pad(x, (0, n_fft - x.shape[-1]))
    rms = x.pow(2).mean(-1).sqrt()
    loudness = (20 * torch.log10(rms.clamp_min(1e-6))).clamp_min(SILENCE_FLOOR_DB)
    clipping = (torch.as_tensor(wav, dtype=torch.float32).abs() >= 0.99).float().mean(-1)

    power = stft_magnitude(x, n_fft, hop).pow(2)  # [B, F, T]
    frame_db = 10 * torch.log10(power.sum(1) * 2 / n_fft**2 + 1e-12)  # ~ frame power in dBFS (sine of amp 1 -> -3 dB)
    sounding = frame_db > silence_db  # [B, T]
    silence = 1.0 - sounding.float().mean(-1)
    flat_frames = torch.exp(torch.log(power + 1e-12).mean(1)) / (power.mean(1) + 1e-12)  # [B, T]
    freqs = torch.linspace(0, sample_rate / 2, power.shape[1])
    centroid = (freqs[None, :, None] * power).sum(1) / power.sum(1).clamp_min(1e-12)  # [B, T]
    weights = sounding.float()
    count = weights.sum(-1).clamp_min(1)
    flatness = torch.where(weights.sum(-1) > 0, (flat_frames * weights).sum(-1) / count, torch.ones_like(count))
    brightness = torch.where(weights.sum(-1) > 0, torch.log2((centroid * weights).sum(-1) / count + 1.0),
                             torch.zeros_like(count))

    fb = mel_filterbank(sample_rate, n_fft, 64)
    mel = log_mel(power.sqrt(), fb)  # [B, M, T]
    bpms = torch.exp(torch.linspace(math.log(40.0), math.log(240.0), 48))
    if mel.shape[-1] > 25:  # a quarter of a second at least, or there is no beat to hear
        pulse = onset_autocorrelation(mel, sample_rate / hop, bpms).max(-1).values
    else:
        pulse = torch.zeros(x.shape[0])
    cfb = chroma_filterbank(sample_rate, n_fft, 110.0, min(4000.0, sample_rate / 2 - 1))
    key = key_profile_correlations(torch.log(chroma(power.sqrt(), cfb) + 1e-5))[:, -2:].max(-1).values

    out = {"loudness_db": loudness, "clipping": clipping, "flatness": flatness, "brightness": brightness,
           "silence": silence, "pulse": pulse, "key_clarity": key}
    return {k: torch.nan_to_num(v.double(), nan=0.0).numpy() for k, v in out.items()}


def signal_features_of(clips: Sequence[np.ndarray | torch.Tensor], sample_rate: int) -> dict[str, np.ndarray]:
    """Clips of any lengths (each [S]) -> {feature: [N]}; equal-length runs are measured in one batch."""
    out: dict[str, list[np.ndarray]] = {k: [] for k in SIGNAL_FEATURES}
    i = 0
    while i < len(clips):
        j = i + 1
        while j < len(clips) and len(clips[j]) == len(clips[i]) and j - i < 32:
            j += 1
        batch = torch.stack([torch.as_tensor(np.asarray(c), dtype=torch.float32) for c in clips[i:j]])
        for k, v in signal_features(batch, sample_rate).items():
            out[k].append(v)
        i = j
    return {k: np.concatenate(v) if v else np.zeros(0) for k, v in out.items()}
