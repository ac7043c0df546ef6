"""The embedded default's codec: spectral frames -> residual VQ codes -> spectral frames -> Griffin-Lim.

Why spectral: a waveform EnCodec trained for 15 CPU-minutes kept no pitch at all (chroma 0.04),
while this design converges on a CPU (docs/MODELS.md). Per 50 Hz frame (16 kHz, n_fft 1024, hop 320):

    log|STFT| [F=513] -> per-bin normalisation -> conv encoder -> LayerNorm -> latent [D]
    -> residual VQ (Q codebooks x C codes) -> conv decoder -> log|STFT| -> Griffin-Lim -> waveform

or, when the codec carries a phase head (``models.phase_head``, trained on top of the frozen codec), the
decoder's last hidden features -> phase -> one iSTFT instead of Griffin-Lim.

It implements the ``models.codecs.Codec`` protocol (wav [B, 1, S] <-> codes [B, Q, T]).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from models.audio_features import griffin_lim, stft_magnitude
from models.module_io import Header, config_from_dict, load_module, save_module
from models.phase_head import PhaseHead, PhaseHeadConfig
from models.quantizer import QuantizerOutput, ResidualVQ

LOG_EPS = 1e-5


@dataclass
class SpectralCodecConfig:
    sample_rate: int = 16000
    n_fft: int = 1024
    hop: int = 320
    width: int = 256
    latent_dim: int = 64
    num_blocks: int = 3
    num_quantizers: int = 4
    codebook_size: int = 256
    griffin_lim_iters: int = 64
    griffin_lim_momentum: float = 0.99
    phase_head: PhaseHeadConfig | None = None  # set: decode from this learned phase, not a random one
    phase_head_iters: int = 0  # Griffin-Lim iterations refining the head's phase (0: one iSTFT)

    @property
    def bins(self) -> int:
        return self.n_fft // 2 + 1


class ResBlock(nn.Module):
    def __init__(self, width: int, dilation: int):
        super().__init__()
        self.conv1 = nn.Conv1d(width, width, 3, padding=dilation, dilation=dilation)
        self.conv2 = nn.Conv1d(width, width, 1)
        self.norm = nn.GroupNorm(1, width)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.conv2(F.gelu(self.conv1(F.gelu(self.norm(x)))))


def _stack(cin: int, width: int, cout: int, blocks: int) -> nn.Sequential:
    layers = [nn.Conv1d(cin, width, 3, padding=1)]
    layers += [ResBlock(width, 2**i) for i in range(blocks)]
    layers += [nn.GELU(), nn.Conv1d(width, cout, 3, padding=1)]
    return nn.Sequential(*layers)


class SpectralCodec(nn.Module):
    """See the module docstring. ``bin_mean``/``bin_std`` [F] are set from training data."""

    def __init__(self, cfg: SpectralCodecConfig):
        super().__init__()
        self.cfg = cfg
        self.sample_rate, self.channels = cfg.sample_rate, 1
        self.frame_rate = cfg.sample_rate / cfg.hop
        self.num_codebooks, self.cardinality = cfg.num_quantizers, cfg.codebook_size
        self.register_buffer("bin_mean", torch.zeros(cfg.bins))
        self.register_buffer("bin_std", torch.ones(cfg.bins))
        self.encoder = _stack(cfg.bins, cfg.width, cfg.latent_dim, cfg.num_blocks)
        self.latent_norm = nn.LayerNorm(cfg.latent_dim)
        self.quantizer = ResidualVQ(cfg.num_quantizers, cfg.codebook_size, cfg.latent_dim)
        self.decoder = _stack(cfg.latent_dim, cfg.width, cfg.bins, cfg.num_blocks)
        if isinstance(cfg.phase_head, dict):  # as read back from a JSON header
            cfg.phase_head = config_from_dict(PhaseHeadConfig, cfg.phase_head)
        self.phase_head = PhaseHead(cfg.phase_head) if cfg.phase_head is not None else None

    # --- spectral frames --------------------------------------------------------------------
    def log_magnitude(self, wav: torch.Tensor) -> torch.Tensor:
        """wav [B, S] -> log|STFT| [B, F, T], T = S // hop + 1."""
        return torch.log(stft_magnitude(wav.float(), self.cfg.n_fft, self.cfg.hop) + LOG_EPS)

    def normalise(self, logmag: torch.Tensor) -> torch.Tensor:
        return (logmag - self.bin_mean[:, None]) / self.bin_std[:, None]

    def denormalise(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.bin_std[:, None] + self.bin_mean[:, None]

    # --- model ------------------------------------------------------------------------------
    def encode_latent(self, norm_logmag: torch.Tensor) -> torch.Tensor:
        """[B, F, T] -> latents [B, T, D]."""
        return self.latent_norm(self.encoder(norm_logmag).transpose(1, 2))

    def decode_latent(self, z: torch.Tensor) -> torch.Tensor:
        """latents [B, T, D] -> normalised log-magnitude [B, F, T]."""
        return self.decoder(z.transpose(1, 2))

    def forward(self, norm_logmag: torch.Tensor, quantize: bool = True) -> tuple[torch.Tensor, QuantizerOutput | None]:
        """Training pass: normalised log-magnitude [B, F, T] -> its reconstruction [B, F, T]."""
        z = self.encode_latent(norm_logmag)
        if not quantize:
            return self.decode_latent(z), None
        q = self.quantizer(z)
        return self.decode_latent(q.quantized), q

    # --- Codec protocol ---------------------------------------------------------------------
    @torch.no_grad()
    def encode(self, wav: torch.Tensor) -> torch.Tensor:
        """wav [B, 1, S] -> codes [B, Q, T]."""
        if wav.dim() != 3 or wav.shape[1] != 1:
            raise ValueError(f"wav must be [B, 1, S], got {tuple(wav.shape)}")
        z = self.encode_latent(self.normalise(self.log_magnitude(wav[:, 0])))
        return self.quantizer.encode(z)

    def decode_features(self, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """latents [B, T, D] -> (the decoder's last hidden features [B, W, T], magnitudes [B, F, T])."""
        features = self.decoder[:-1](z.transpose(1, 2))
        logmag = self.denormalise(self.decoder[-1](features))
        return features, (logmag.exp() - LOG_EPS).clamp_min(0.0)

    @torch.no_grad()
    def decode_magnitude(self, codes: torch.Tensor) -> torch.Tensor:
        """codes [B, Q, T] -> magnitudes [B, F, T]."""
        return self.decode_features(self.quantizer.decode(codes))[1]

    @torch.no_grad()
    def decode(self, codes: torch.Tensor, iters: int | None = None, momentum: float | None = None,
               head: bool | None = None) -> torch.Tensor:
        """codes [B, Q, T] -> wav [B, 1, T * hop] (deterministic). The phase starts from the phase head's when
        ``head`` (default: whenever the codec has one), else from a seeded random one, and is refined by
        ``iters`` fast Griffin-Lim iterations with ``momentum`` (defaults: the config's ``phase_head_iters``
        with a head, else ``griffin_lim_iters``; ``griffin_lim_momentum``). A head with 0 iterations: one iSTFT.
        ``musicrl bench codec`` compares settings on one loaded codec through these arguments."""
        if codes.dim() != 3 or codes.shape[1] != self.num_codebooks:
            raise ValueError(f"codes must be [B, {self.num_codebooks}, T], got {tuple(codes.shape)}")
        head = self.phase_head is not None if head is None else head
        if head and self.phase_head is None:
            raise ValueError("this codec has no phase head")
        length = codes.shape[-1] * self.cfg.hop
        features, mag = self.decode_features(self.quantizer.decode(codes))
        phase = self.phase_head.phasors(features) if head else None
        iters = (self.cfg.phase_head_iters if head else self.cfg.griffin_lim_iters) if iters is None else iters
        momentum = self.cfg.griffin_lim_momentum if momentum is None else momentum
        if phase is not None and iters == 0:
            return self.istft(mag * phase, length)[:, None]
        return griffin_lim(mag, self.cfg.n_fft, self.cfg.hop, iters, momentum, length=length, phase=phase)[:, None]

    def istft(self, spec: torch.Tensor, length: int | None = None) -> torch.Tensor:
        """Complex spectrogram [B, F, T] -> wav [B, S] (the inverse of the STFT the codec encodes): S = length,
        (T - 1) * hop when None; samples past (T - 1) * hop, which no frame centre covers, are zeros."""
        window = torch.hann_window(self.cfg.n_fft, device=spec.device)
        natural = (spec.shape[-1] - 1) * self.cfg.hop
        wav = torch.istft(spec, self.cfg.n_fft, self.cfg.hop, window=window, center=True, length=natural)
        return wav if length is None else F.pad(wav[..., :length], (0, max(0, length - natural)))

    def describe(self) -> dict:
        return {"type": "spectral", **asdict(self.cfg)}

    # --- files ------------------------------------------------------------------------------
    def save(self, path: str | Path, lineage: dict | None = None) -> Path:
        """``path/codec.safetensors`` + ``path/codec.json`` (``models.module_io``, kind ``spectral-codec``); a phase
        head's weights are stored as fp16 (loaded back as fp32)."""
        if self.phase_head is None:
            return save_module(self, path, "spectral-codec", self.cfg, lineage, stem="codec")
        dtype = self.phase_head.out.weight.dtype
        self.phase_head.half()
        try:
            return save_module(self, path, "spectral-codec", self.cfg, lineage, stem="codec")
        finally:
            self.phase_head.to(dtype)

    @classmethod
    def load(cls, path: str | Path) -> SpectralCodec:
        return cls.load_with_header(path)[0]

    @classmethod
    def load_with_header(cls, path: str | Path) -> tuple[SpectralCodec, Header]:
        header, state = load_module(path, "spectral-codec", stem="codec")
        codec = cls(SpectralCodecConfig(**header.config))
        codec.load_state_dict({k: v.float() if v.is_floating_point() else v for k, v in state.items()})
        return codec.eval(), header
