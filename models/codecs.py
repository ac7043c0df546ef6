"""Audio codecs behind one interface: waveform [B, C, S] <-> codes [B, K, T].

``EncodecCodec`` wraps transformers' ``EncodecModel`` (any EnCodec config or local checkpoint; the
codec of real MusicGen checkpoints). ``debug_encodec`` builds a tiny random one for tests. The
embedded default's spectral codec implements the same ``Codec`` protocol.
"""

from __future__ import annotations

from typing import Protocol

import torch
from torch import nn


class Codec(Protocol):
    sample_rate: int
    frame_rate: float
    num_codebooks: int
    cardinality: int
    channels: int

    def encode(self, wav: torch.Tensor) -> torch.Tensor:
        """wav [B, C, S] float in [-1, 1] -> codes [B, K, T] int64."""
        ...

    def decode(self, codes: torch.Tensor) -> torch.Tensor:
        """codes [B, K, T] -> wav [B, C, S], S = T * sample_rate / frame_rate."""
        ...

    def describe(self) -> dict: ...


class EncodecCodec(nn.Module):
    """transformers ``EncodecModel`` at a fixed bandwidth (MusicGen: 4 codebooks at 50 Hz, 32 kHz)."""

    def __init__(self, model: nn.Module, num_codebooks: int | None = None):
        super().__init__()
        self.model = model.eval().requires_grad_(False)
        cfg = model.config
        self.sample_rate = int(cfg.sampling_rate)
        self.frame_rate = float(cfg.frame_rate)
        self.channels = int(cfg.audio_channels)
        self.cardinality = int(cfg.codebook_size)
        self.num_codebooks = int(
            num_codebooks or model.quantizer.get_num_quantizers_for_bandwidth(cfg.target_bandwidths[-1])
        )
        bits = torch.log2(torch.tensor(float(self.cardinality))).item()
        self.bandwidth = self.num_codebooks * bits * self.frame_rate / 1000.0

    @torch.no_grad()
    def encode(self, wav: torch.Tensor) -> torch.Tensor:
        if wav.dim() != 3 or wav.shape[1] != self.channels:
            raise ValueError(f"wav must be [B, {self.channels}, S], got {tuple(wav.shape)}")
        out = self.model.encode(wav, bandwidth=self.bandwidth)
        codes = out.audio_codes  # [chunks, B, K, T]
        if codes.shape[0] != 1:
            raise ValueError("chunked EnCodec configs are not supported")
        return codes[0, :, : self.num_codebooks]

    @torch.no_grad()
    def decode(self, codes: torch.Tensor) -> torch.Tensor:
        if codes.dim() != 3 or codes.shape[1] != self.num_codebooks:
            raise ValueError(f"codes must be [B, {self.num_codebooks}, T], got {tuple(codes.shape)}")
        return self.model.decode(codes[None], [None]).audio_values

    def describe(self) -> dict:
        return {
            "type": "encodec",
            "sample_rate": self.sample_rate,
            "frame_rate": self.frame_rate,
            "num_codebooks": self.num_codebooks,
            "cardinality": self.cardinality,
        }


def debug_encodec_config(sample_rate: int = 8000, codebook_size: int = 64, num_codebooks: int = 4) -> dict:
    """A tiny EnCodec: 8 kHz, hop 160 -> 50 Hz frames, ``num_codebooks`` x ``codebook_size`` RVQ."""
    ratios = [5, 4, 4, 2]
    frame_rate = sample_rate / 160
    bandwidth = num_codebooks * torch.log2(torch.tensor(float(codebook_size))).item() * frame_rate / 1000
    return dict(
        sampling_rate=sample_rate,
        audio_channels=1,
        hidden_size=16,
        num_filters=4,
        num_residual_layers=1,
        upsampling_ratios=ratios,
        codebook_size=codebook_size,
        target_bandwidths=[bandwidth],
        num_lstm_layers=1,
        kernel_size=3,
        last_kernel_size=3,
        residual_kernel_size=3,
    )


def randomize_codebooks(model: nn.Module, seed: int = 0) -> nn.Module:
    """transformers initialises EnCodec codebooks to zeros (they are buffers filled by training), so a
    random model would decode every code to the same sound; give them random entries instead."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for layer in model.quantizer.layers:
            embed = layer.codebook.embed
            embed.copy_(torch.randn(embed.shape, generator=g))
            layer.codebook.embed_avg.copy_(embed)
            layer.codebook.cluster_size.fill_(1.0)
            layer.codebook.inited.fill_(True)
    return model


def debug_encodec(seed: int = 0, **overrides) -> EncodecCodec:
    """A tiny random EnCodec (a few thousand parameters) for tests."""
    from transformers import EncodecConfig, EncodecModel

    with torch.random.fork_rng():
        torch.manual_seed(seed)
        model = EncodecModel(EncodecConfig(**{**debug_encodec_config(), **overrides}))
    return EncodecCodec(randomize_codebooks(model, seed))
