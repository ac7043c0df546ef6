"""A learned phase for the spectral codec: decoder features -> unit phasors, inverted with one iSTFT (Vocos-style).

Griffin-Lim re-estimates the phase of the decoded magnitudes with 2 FFTs per iteration; this head predicts
it in one pass from the codec decoder's last hidden features (Siuzdak, "Vocos", 2023, which predicts
magnitude and phase; here the magnitude stays the frozen decoder's, so the LM's codes keep their meaning):

    features [B, W, T] -> conv (kernel 7) -> dilated residual blocks -> 1x1 conv -> (re, im) [B, 2F, T]
    -> unit phasor re + i im / |.| -> spec = |decoded| * phasor [B, F, T] -> iSTFT -> wav

Trained by ``musicrl train phase-head`` (multi-resolution log-mel + log-STFT L1 of the resynthesised audio
against the original). Predicting (re, im) and normalising avoids the 2 pi wrap of a predicted angle.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn


@dataclass
class PhaseHeadConfig:
    features: int = 256  # the codec decoder's width
    bins: int = 513  # n_fft // 2 + 1
    width: int = 384
    dilations: tuple[int, ...] = (1, 2, 4)


class _Block(nn.Module):
    def __init__(self, width: int, dilation: int):
        super().__init__()
        self.norm = nn.GroupNorm(1, width)
        self.conv1 = nn.Conv1d(width, width, 3, padding=dilation, dilation=dilation)
        self.conv2 = nn.Conv1d(width, width, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.conv2(F.gelu(self.conv1(F.gelu(self.norm(x)))))


class PhaseHead(nn.Module):
    """features [B, W, T] and magnitudes [B, F, T] -> complex spectrogram [B, F, T] with the given magnitudes."""

    def __init__(self, cfg: PhaseHeadConfig):
        super().__init__()
        self.cfg = cfg
        self.inp = nn.Conv1d(cfg.features, cfg.width, 7, padding=3)
        self.blocks = nn.Sequential(*[_Block(cfg.width, d) for d in cfg.dilations])
        self.out = nn.Conv1d(cfg.width, 2 * cfg.bins, 1)

    def phasors(self, features: torch.Tensor) -> torch.Tensor:
        """features [B, W, T] -> complex unit phasors [B, F, T]."""
        if features.shape[1] != self.cfg.features:
            raise ValueError(f"expected features [B, {self.cfg.features}, T], got {tuple(features.shape)}")
        re, im = self.out(F.gelu(self.blocks(self.inp(features)))).float().chunk(2, dim=1)
        spec = torch.complex(re, im)
        return spec / spec.abs().clamp_min(1e-6)

    def forward(self, features: torch.Tensor, mag: torch.Tensor) -> torch.Tensor:
        if mag.shape[1] != self.cfg.bins:
            raise ValueError(f"expected magnitudes [B, {self.cfg.bins}, T], got {tuple(mag.shape)}")
        return mag * self.phasors(features)
