"""Clip data shared by the recipes that train on corpus audio (codec, embedder, quality, judges):
cached log features, random crops with gain, batched scoring of whole clips, AdamW parameter groups.

Shapes: clips are float32 waveforms [S]; cached features [C, T] (fp16); crops [B, C, frames].
"""

from __future__ import annotations

import math

import numpy as np
import torch
from tqdm import tqdm

from models.audio_tower import LogMelFrontend
from models.spectral_codec import SpectralCodec


@torch.no_grad()
def log_features(frontend: LogMelFrontend, clips: list[np.ndarray], desc: str = "features") -> list[torch.Tensor]:
    """Raw log features [C, T] (fp16, to halve memory) of every clip, computed on the CPU."""
    frontend = frontend.cpu()
    out: list[torch.Tensor] = []
    i = 0
    bar = tqdm(total=len(clips), desc=desc, unit="clip", disable=None)
    while i < len(clips):
        j = i + 1  # batch consecutive clips of equal length
        while j < len(clips) and j - i < 32 and len(clips[j]) == len(clips[i]):
            j += 1
        batch = torch.from_numpy(np.stack(clips[i:j]).astype(np.float32))
        out += list(frontend.log_features(batch).half())
        bar.update(j - i)
        i = j
    bar.close()
    return out


def crop_batch(
    feats: list[torch.Tensor], idx: list[int], frames: int, gain_db: float, g: torch.Generator
) -> torch.Tensor:
    """Random ``frames``-long crops of the chosen clips' raw log features, each with a random gain
    (a gain of x dB adds x·ln(10)/10 to log power): [B, C, frames] float32."""
    crops = []
    for i in idx:
        f = feats[i]
        if f.shape[-1] < frames:  # short clip: loop it
            f = f.repeat(1, math.ceil(frames / f.shape[-1]))
        start = int(torch.randint(0, f.shape[-1] - frames + 1, (1,), generator=g))
        crops.append(f[:, start : start + frames].float())
    x = torch.stack(crops)
    db = (torch.rand(len(idx), 1, 1, generator=g) * 2 - 1) * gain_db
    return x + db * math.log(10) / 10


@torch.no_grad()
def map_clips(fn, clips: list[np.ndarray], batch: int = 16, desc: str | None = None) -> list:
    """``fn`` on batches of clips ([B, S] tensors): equal-length groups in one call, others one by one.
    Returns the results in clip order (one per call)."""
    out = []
    for i in tqdm(range(0, len(clips), batch), desc=desc, unit="batch", disable=None if desc else True):
        group = clips[i : i + batch]
        if len({len(c) for c in group}) == 1:
            out.append(fn(torch.from_numpy(np.stack(group))))
        else:
            out += [fn(torch.from_numpy(c)[None]) for c in group]
    return out


def param_groups(model: torch.nn.Module, weight_decay: float) -> list[dict]:
    """Weight decay on matrices and kernels only; none on biases, norms and the temperature (CLIP)."""
    params = [p for p in model.parameters() if p.requires_grad]
    return [
        {"params": [p for p in params if p.dim() >= 2], "weight_decay": weight_decay},
        {"params": [p for p in params if p.dim() < 2], "weight_decay": 0.0},
    ]


def spectra(codec: SpectralCodec, clips: list[np.ndarray]) -> list[torch.Tensor]:
    """Log-magnitude [F, T] (fp16, to halve memory) of every clip."""
    out = []
    for wav in tqdm(clips, desc="spectra", unit="clip", disable=None):
        out.append(codec.log_magnitude(torch.from_numpy(wav)[None])[0].half())
    return out
