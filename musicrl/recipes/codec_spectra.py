"""Recipe ``codec-spectra``: log-magnitude spectra of training clips in one compact file (uint8 over
the observed range), so the codec can train where the corpus audio is not (a lent GPU machine).

    musicrl train codec-spectra corpus=data/corpus max_clips=240 out=data/codec_spectra.safetensors
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors.torch import save_file

from models.spectral_codec import SpectralCodec, SpectralCodecConfig
from musicrl.clip_features import spectra
from musicrl.corpus_data import load_split_audio


@dataclass
class Config:
    corpus: Path = Path("data/corpus")
    out: Path = Path("data/codec_spectra.safetensors")
    max_clips: int = 240
    stride: int = 1  # take every stride-th training clip (spreads a small subset over the corpus)


def main(cfg: Config) -> None:
    codec = SpectralCodec(SpectralCodecConfig())
    clips, _ = load_split_audio(cfg.corpus, "train", codec.sample_rate, cfg.max_clips * cfg.stride)
    clips = clips[:: cfg.stride][: cfg.max_clips]
    specs = torch.stack([s.float() for s in spectra(codec, clips)])  # [N, F, T]
    lo, hi = float(specs.min()), float(specs.max())
    q = torch.round((specs - lo) / (hi - lo) * 255).to(torch.uint8)
    cfg.out.parent.mkdir(parents=True, exist_ok=True)
    save_file({"logmag_u8": q, "lo": torch.tensor(lo), "hi": torch.tensor(hi)}, str(cfg.out))
    print(f"{q.shape[0]} clips x {q.shape[2]} frames -> {cfg.out} ({q.numel() / 2**20:.1f} MiB)")
