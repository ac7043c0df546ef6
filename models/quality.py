"""Quality model: how much a clip sounds like real corpus music rather than degraded/generated audio.

    q = QualityModel.load("runs/quality/model")
    q.score(wav)        # [B] in [0, 1]; 1 = sounds like a clean corpus clip

A log-mel (+ chroma, + a short-window 16 ms log-mel) conv net (``models.audio_tower.ConvTower``,
its own weights) with a logistic head, trained as a binary classifier: positives are corpus clips,
negatives are the same clips passed through one of the ``DEGRADATIONS`` below (and, optionally,
WAVs of generated audio given to the recipe). It stands in for MusicRL's MOS predictor (it gives a
sigmoid probability, not a MOS), so it rewards "not obviously broken", not musical taste. Long
clips: scored per ``segment_s`` window, probabilities averaged.

Degradations (``degrade``), each on one waveform [S], the result rescaled to the input's peak so
that loudness is not a cue (the recipe also applies random gain to every example):

- ``noise``      white or pink noise at an SNR drawn in [0, 20] dB
- ``lowpass``    zero-phase FFT low-pass, cutoff 300-2500 Hz (raised-cosine edge, 20 % wide)
- ``highpass``   zero-phase FFT high-pass, cutoff 300-1500 Hz
- ``shuffle``    cut into 60-300 ms pieces (5 ms fades) and put back in random order
- ``griffin_lim`` the clip's own STFT magnitude with its phase re-estimated by 8-48 Griffin-Lim
                 iterations from random phase (the artefact of spectral codecs)
- ``smear``      STFT magnitude blurred along frequency (Gaussian, sigma 2-8 bins) and time (1-4
                 frames), resynthesised with the original phase
- ``clip``       gain +6..+24 dB then hard clipping at ±1 (half of the time tanh saturation)
- ``tones``      4-16 random harmonic notes (any pitch class, MIDI 48-84, 0.1-1 s, decaying),
                 mixed in at -4..-16 dB below the clip's RMS: wrong notes
- ``mix``        another corpus clip (a different composition) added at 0.5-1.0 of its level

Shapes: wav [B, S] at ``sample_rate``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from models.audio_tower import ConvTower, FrontendConfig, LogMelFrontend, TowerConfig, segment_batch
from models.module_io import config_from_dict, load_module, save_module

DEGRADATIONS: tuple[str, ...] = (
    "noise",
    "lowpass",
    "highpass",
    "shuffle",
    "griffin_lim",
    "smear",
    "clip",
    "tones",
    "mix",
)


# ----------------------------------------------------------------------------- degradations


def _uniform(g: torch.Generator, low: float, high: float) -> float:
    return low + (high - low) * float(torch.rand((), generator=g))


def _rms(x: torch.Tensor) -> torch.Tensor:
    return x.pow(2).mean().sqrt().clamp_min(1e-8)


def add_noise(wav: torch.Tensor, snr_db: float, g: torch.Generator, pink: bool = False) -> torch.Tensor:
    noise = torch.randn(wav.shape, generator=g)
    if pink:  # 1/f power: scale the spectrum by 1/sqrt(f)
        spec = torch.fft.rfft(noise)
        f = torch.arange(spec.shape[-1], dtype=torch.float32).clamp_min(1.0)
        noise = torch.fft.irfft(spec / f.sqrt(), n=wav.shape[-1])
    noise = noise * (_rms(wav) / _rms(noise)) * 10 ** (-snr_db / 20)
    return wav + noise


def fft_filter(wav: torch.Tensor, sample_rate: int, cutoff_hz: float, kind: str, width: float = 0.2) -> torch.Tensor:
    """Zero-phase low/high-pass by FFT masking, raised-cosine transition ``width``·cutoff wide."""
    spec = torch.fft.rfft(wav)
    f = torch.fft.rfftfreq(wav.shape[-1], 1.0 / sample_rate)
    lo, hi = cutoff_hz * (1 - width / 2), cutoff_hz * (1 + width / 2)
    ramp = ((f - lo) / (hi - lo)).clamp(0, 1)
    gain_high = 0.5 - 0.5 * torch.cos(math.pi * ramp)  # 0 below lo, 1 above hi
    mask = 1 - gain_high if kind == "lowpass" else gain_high
    return torch.fft.irfft(spec * mask, n=wav.shape[-1])


def shuffle_segments(wav: torch.Tensor, sample_rate: int, g: torch.Generator) -> torch.Tensor:
    pieces, pos = [], 0
    fade = int(0.005 * sample_rate)
    ramp = torch.linspace(0, 1, fade)
    while pos < wav.shape[-1]:
        n = int(_uniform(g, 0.06, 0.3) * sample_rate)
        piece = wav[pos : pos + n].clone()
        if piece.shape[-1] > 2 * fade:
            piece[:fade] *= ramp
            piece[-fade:] *= ramp.flip(0)
        pieces.append(piece)
        pos += n
    order = torch.randperm(len(pieces), generator=g).tolist()
    return torch.cat([pieces[i] for i in order])


def griffin_lim_phase(
    wav: torch.Tensor, iters: int, seed: int, n_fft: int = 1024, hop: int = 256, momentum: float = 0.99
) -> torch.Tensor:
    """The clip's own |STFT| with its phase re-estimated by fast Griffin-Lim (Perraudin et al., 2013)
    from a seeded random phase. Same algorithm as ``models.audio_features.griffin_lim``, with the
    unit phasor taken as z/|z| (about 6x cheaper on CPU than exp(i·angle(z)))."""
    window = torch.hann_window(n_fft)
    stft = lambda x: torch.stft(x, n_fft, hop, window=window, center=True, return_complex=True)  # noqa: E731
    mag = stft(wav).abs()
    angle = torch.rand(mag.shape, generator=torch.Generator().manual_seed(seed)) * 2 * math.pi
    spec, prev = torch.polar(mag, angle), torch.zeros_like(mag, dtype=torch.complex64)
    for _ in range(iters):
        rebuilt = stft(torch.istft(spec, n_fft, hop, window=window, center=True, length=wav.shape[-1]))
        accel = rebuilt + momentum * (rebuilt - prev)
        prev = rebuilt
        spec = mag * accel / accel.abs().clamp_min(1e-8)
    return torch.istft(spec, n_fft, hop, window=window, center=True, length=wav.shape[-1])


def smear_spectrum(
    wav: torch.Tensor, sigma_f: float, sigma_t: float, n_fft: int = 1024, hop: int = 256
) -> torch.Tensor:
    window = torch.hann_window(n_fft)
    spec = torch.stft(wav, n_fft, hop, window=window, center=True, return_complex=True)  # [F, T]
    mag = spec.abs()[None, None]

    def kernel(sigma: float) -> torch.Tensor:
        r = max(1, int(3 * sigma))
        k = torch.exp(-0.5 * (torch.arange(-r, r + 1, dtype=torch.float32) / sigma) ** 2)
        return k / k.sum()

    kf, kt = kernel(sigma_f), kernel(sigma_t)
    mag = F.conv2d(F.pad(mag, (0, 0, len(kf) // 2, len(kf) // 2), mode="replicate"), kf.view(1, 1, -1, 1))
    mag = F.conv2d(F.pad(mag, (len(kt) // 2, len(kt) // 2, 0, 0), mode="replicate"), kt.view(1, 1, 1, -1))
    smeared = torch.polar(mag[0, 0], torch.angle(spec))
    return torch.istft(smeared, n_fft, hop, window=window, center=True, length=wav.shape[-1])


def saturate(wav: torch.Tensor, gain_db: float, soft: bool) -> torch.Tensor:
    x = wav / wav.abs().max().clamp_min(1e-8) * 10 ** (gain_db / 20)
    return torch.tanh(x) if soft else x.clamp(-1, 1)


def add_tones(wav: torch.Tensor, sample_rate: int, g: torch.Generator) -> torch.Tensor:
    """Random harmonic notes at random times: pitches outside the music's key and rhythm."""
    out = torch.zeros_like(wav)
    for _ in range(int(torch.randint(4, 17, (), generator=g))):
        pitch = int(torch.randint(48, 85, (), generator=g))
        dur = int(_uniform(g, 0.1, 1.0) * sample_rate)
        start = int(torch.randint(0, max(1, wav.shape[-1] - dur), (), generator=g))
        t = torch.arange(min(dur, wav.shape[-1] - start)) / sample_rate
        f0 = 440.0 * 2 ** ((pitch - 69) / 12)
        note = sum(torch.sin(2 * math.pi * f0 * h * t) / h for h in range(1, 5) if f0 * h < sample_rate / 2)
        env = torch.exp(-t * _uniform(g, 2.0, 8.0)) * (1 - torch.exp(-t * 200))
        out[start : start + t.shape[0]] += note * env
    level = 10 ** (-_uniform(g, 4, 16) / 20)
    return wav + out * (_rms(wav) / _rms(out)) * level


def degrade(
    wav: torch.Tensor, kind: str, sample_rate: int, seed: int, other: torch.Tensor | None = None
) -> torch.Tensor:
    """One degraded copy of a clip [S] (float, CPU), deterministic in ``seed``; peak matched to ``wav``.

    ``other`` (a different clip [S]) is required by ``mix``."""
    if wav.dim() != 1:
        raise ValueError(f"degrade takes one clip [S], got {tuple(wav.shape)}")
    g = torch.Generator().manual_seed(seed)
    wav = wav.float()
    if kind == "noise":
        out = add_noise(wav, _uniform(g, 0, 20), g, pink=bool(torch.rand((), generator=g) < 0.5))
    elif kind == "lowpass":
        out = fft_filter(wav, sample_rate, _uniform(g, 300, 2500), "lowpass")
    elif kind == "highpass":
        out = fft_filter(wav, sample_rate, _uniform(g, 300, 1500), "highpass")
    elif kind == "shuffle":
        out = shuffle_segments(wav, sample_rate, g)
    elif kind == "griffin_lim":
        out = griffin_lim_phase(wav, int(torch.randint(8, 49, (), generator=g)), seed)
    elif kind == "smear":
        out = smear_spectrum(wav, _uniform(g, 2, 8), _uniform(g, 1, 4))
    elif kind == "clip":
        out = saturate(wav, _uniform(g, 6, 24), soft=bool(torch.rand((), generator=g) < 0.5))
    elif kind == "tones":
        out = add_tones(wav, sample_rate, g)
    elif kind == "mix":
        if other is None:
            raise ValueError("the 'mix' degradation needs another clip")
        other = other.float()[: wav.shape[-1]]
        other = F.pad(other, (0, wav.shape[-1] - other.shape[-1]))
        out = wav + other * (_rms(wav) / _rms(other)) * _uniform(g, 0.5, 1.0)
    else:
        raise ValueError(f"unknown degradation {kind!r}; choose from {', '.join(DEGRADATIONS)}")
    return out * (wav.abs().max() / out.abs().max().clamp_min(1e-8))


# ----------------------------------------------------------------------------- the model


@dataclass
class QualityConfig:
    frontend: FrontendConfig = field(default_factory=lambda: FrontendConfig(fine_n_fft=256))
    tower: TowerConfig = field(default_factory=lambda: TowerConfig(widths=[64, 128, 160], stem_stride=2, out=128))
    segment_s: float = 4.0


class QualityModel(nn.Module):
    """wav [B, S] -> score [B] in [0, 1] (probability of "clean corpus music")."""

    def __init__(self, cfg: QualityConfig):
        super().__init__()
        self.cfg = cfg
        self.frontend = LogMelFrontend(cfg.frontend)
        self.tower = ConvTower(cfg.frontend.channels, cfg.tower)
        self.head = nn.Sequential(nn.GELU(), nn.Linear(cfg.tower.out, 1))

    @property
    def device(self) -> torch.device:
        return self.head[1].weight.device

    @property
    def sample_rate(self) -> int:
        return self.cfg.frontend.sample_rate

    def forward(self, feats: torch.Tensor) -> torch.Tensor:
        """Normalised front-end features [B, C, T] -> logits [B] (the training path)."""
        return self.head(self.tower(feats))[:, 0]

    logits_from_features = forward

    @torch.no_grad()
    def segment_scores(self, wav: torch.Tensor) -> torch.Tensor:
        """wav [B, S] -> [B, N] probabilities, one per ``segment_s`` window."""
        windows, (b, n) = segment_batch(wav, self.cfg.segment_s, self.sample_rate, self.device)
        return torch.sigmoid(self(self.frontend(windows))).reshape(b, n)

    @torch.no_grad()
    def score(self, wav: torch.Tensor) -> torch.Tensor:
        """wav [B, S] -> [B] in [0, 1]: mean of the segment probabilities."""
        return self.segment_scores(wav).mean(1)

    def save(self, path: str | Path, lineage: dict | None = None) -> Path:
        return save_module(self, path, "quality", self.cfg, lineage)

    @classmethod
    def load(cls, path: str | Path, device: str | torch.device = "cpu") -> QualityModel:
        header, state = load_module(path, "quality")
        model = cls(config_from_dict(QualityConfig, header.config))
        model.load_state_dict(state)
        return model.to(device).eval()
