"""The audio front end and conv tower shared (each with its own weights) by the embedder, the quality
model and the evaluation judges, and the clip batching they all need.

    frontend = LogMelFrontend(FrontendConfig())      # wav [B, S] -> standardised log features [B, C, T]
    tower = ConvTower(frontend.cfg.channels, TowerConfig())   # [B, C, T] -> [B, out]
    flat, (b, n) = segment_batch(wav, seconds=4.0, sample_rate=16000, device=dev)  # [B*N, s] windows

Long clips are scored per ``segment_s`` window (MusicRL scores long clips per segment and averages);
``segment_starts`` places the windows so they cover the clip without padding.

Shapes: wav [B, S] at ``sample_rate``; features [B, C, T]; pooled [B, out].
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from models.audio_features import chroma_filterbank, mel_filterbank, stft_magnitude

# ----------------------------------------------------------------------------- front end


@dataclass
class FrontendConfig:
    sample_rate: int = 16000
    n_fft: int = 1024
    hop: int = 320  # 50 frames/s
    n_mels: int = 64
    fmin: float = 30.0
    chroma: bool = True  # 12 extra log-chroma channels: 64 mel bands are too coarse for pitch classes
    chroma_fmin: float = 180.0  # below this, 15.6 Hz STFT bins cannot separate semitones
    fine_n_fft: int = 0  # > 0: also a short-window log-mel (same hop) that shows smeared transients
    fine_n_mels: int = 32

    @property
    def channels(self) -> int:
        return self.n_mels + (12 if self.chroma else 0) + (self.fine_n_mels if self.fine_n_fft else 0)

    def frames(self, seconds: float) -> int:
        return max(1, int(round(seconds * self.sample_rate / self.hop)))


class LogMelFrontend(nn.Module):
    """wav [B, S] -> log features [B, C, T] (C = n_mels [+ 12 chroma] [+ fine_n_mels]), standardised.

    ``log_features`` is the raw log energy: a gain g adds 2·ln g to every channel, which the
    recipes use to augment cached features. ``normalise`` applies the per-channel mean/std fitted
    on training data (``fit_stats``; buffers, saved with the model)."""

    def __init__(self, cfg: FrontendConfig):
        super().__init__()
        self.cfg = cfg
        self.register_buffer("mel_fb", mel_filterbank(cfg.sample_rate, cfg.n_fft, cfg.n_mels, cfg.fmin))
        if cfg.chroma:
            self.register_buffer("chroma_fb", chroma_filterbank(cfg.sample_rate, cfg.n_fft, cfg.chroma_fmin))
        if cfg.fine_n_fft:
            self.register_buffer("fine_fb", mel_filterbank(cfg.sample_rate, cfg.fine_n_fft, cfg.fine_n_mels, cfg.fmin))
        self.register_buffer("mean", torch.zeros(cfg.channels))
        self.register_buffer("std", torch.ones(cfg.channels))

    def log_features(self, wav: torch.Tensor) -> torch.Tensor:
        if wav.shape[-1] < self.cfg.n_fft:  # the centred STFT needs at least n_fft/2 samples of context
            wav = F.pad(wav, (0, self.cfg.n_fft - wav.shape[-1]))
        power = stft_magnitude(wav.float(), self.cfg.n_fft, self.cfg.hop).pow(2)
        feats = [torch.log(self.mel_fb @ power + 1e-5)]
        if self.cfg.chroma:
            feats.append(torch.log(self.chroma_fb @ power + 1e-5))
        if self.cfg.fine_n_fft:
            fine = stft_magnitude(wav.float(), self.cfg.fine_n_fft, self.cfg.hop).pow(2)
            feats.append(torch.log(self.fine_fb @ fine + 1e-5))
        return torch.cat(feats, dim=1)

    def normalise(self, log_feats: torch.Tensor) -> torch.Tensor:
        return (log_feats - self.mean[:, None]) / self.std[:, None]

    def forward(self, wav: torch.Tensor) -> torch.Tensor:
        return self.normalise(self.log_features(wav))

    @torch.no_grad()
    def fit_stats(self, log_feats: torch.Tensor) -> None:
        """Per-channel mean/std over [N, C, T] training features."""
        x = log_feats.float().transpose(0, 1).reshape(self.cfg.channels, -1)
        self.mean.copy_(x.mean(1))
        self.std.copy_(x.std(1).clamp_min(1e-3))


# ----------------------------------------------------------------------------- conv tower


@dataclass
class TowerConfig:
    widths: list[int] = field(default_factory=lambda: [128, 192, 256])  # one stage each; stages 2+ halve time
    blocks: int = 2  # residual blocks per stage (dilations 1, 2, 4, ...)
    stem_stride: int = 1
    dropout: float = 0.1
    out: int = 256


class ResBlock1d(nn.Module):
    def __init__(self, width: int, dilation: int):
        super().__init__()
        self.conv1 = nn.Conv1d(width, width, 3, padding=dilation, dilation=dilation, bias=False)
        self.bn1 = nn.BatchNorm1d(width)
        self.conv2 = nn.Conv1d(width, width, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm1d(width)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = F.gelu(self.bn1(self.conv1(x)))
        return F.gelu(x + self.bn2(self.conv2(h)))


class ConvTower(nn.Module):
    """Features [B, C, T] -> [B, out]: 1-D residual convs over time (frequency as channels),
    then attention pooling and mean pooling over time, concatenated, and a linear layer."""

    def __init__(self, channels: int, cfg: TowerConfig):
        super().__init__()
        w0 = cfg.widths[0]
        layers: list[nn.Module] = [
            nn.Conv1d(channels, w0, 5, stride=cfg.stem_stride, padding=2, bias=False),
            nn.BatchNorm1d(w0),
            nn.GELU(),
        ]
        prev = w0
        for i, w in enumerate(cfg.widths):
            if i > 0:
                layers += [nn.Conv1d(prev, w, 3, stride=2, padding=1, bias=False), nn.BatchNorm1d(w), nn.GELU()]
            layers += [ResBlock1d(w, 2**b) for b in range(cfg.blocks)]
            prev = w
        self.body = nn.Sequential(*layers)
        self.attn = nn.Conv1d(prev, 1, 1)
        self.head = nn.Sequential(nn.Dropout(cfg.dropout), nn.Linear(2 * prev, cfg.out))
        self.out_dim = cfg.out

    def forward(self, feats: torch.Tensor) -> torch.Tensor:
        h = self.body(feats)  # [B, W, T']
        weights = torch.softmax(self.attn(h), dim=-1)  # [B, 1, T']
        pooled = torch.cat([(h * weights).sum(-1), h.mean(-1)], dim=-1)
        return self.head(pooled)


# ----------------------------------------------------------------------------- clip batches


def as_wav_batch(wav: torch.Tensor | np.ndarray, device: torch.device) -> torch.Tensor:
    """Check and convert a waveform batch [B, S] to float32 on ``device``."""
    wav = torch.as_tensor(wav)
    if wav.dim() != 2 or wav.shape[0] == 0 or wav.shape[1] == 0:
        raise ValueError(f"wav must be a non-empty [B, S] batch, got shape {tuple(wav.shape)}")
    return wav.to(device=device, dtype=torch.float32)


def segment_starts(length: int, seg: int) -> list[int]:
    """Window starts covering [0, length) with windows of ``seg`` samples, the last one flush with
    the end (so windows overlap rather than pad). A clip no longer than one window is one window."""
    if length <= seg:
        return [0]
    n = math.ceil(length / seg)
    return [round(i * (length - seg) / (n - 1)) for i in range(n)]


def split_segments(wav: torch.Tensor, seg: int) -> torch.Tensor:
    """[B, S] -> [B, N, min(seg, S)] windows (see ``segment_starts``)."""
    length = min(seg, wav.shape[-1])
    return torch.stack([wav[:, s : s + length] for s in segment_starts(wav.shape[-1], seg)], dim=1)



def segment_batch(
    wav: torch.Tensor | np.ndarray, seconds: float, sample_rate: int, device: torch.device
) -> tuple[torch.Tensor, tuple[int, int]]:
    """Check a clip batch and cut it into ``seconds`` windows, flattened for one forward pass:
    wav [B, S] -> (windows [B * N, min(seg, S)], (B, N)); reshape per-window outputs with (B, N)."""
    segs = split_segments(as_wav_batch(wav, device), int(seconds * sample_rate))
    b, n, s = segs.shape
    return segs.reshape(b * n, s), (b, n)
