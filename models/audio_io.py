"""WAV in and out (soundfile; torchaudio cannot load beside the CPU torch build), and writing files and
directories atomically (a crash leaves the old one or the new one, never half of one)."""

from __future__ import annotations

import io
import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from math import gcd
from pathlib import Path

import numpy as np
import soundfile as sf
import torch


def wav_bytes(audio: torch.Tensor | np.ndarray, sample_rate: int) -> bytes:
    """audio [C, S] float in [-1, 1] -> 16-bit PCM WAV bytes (deterministic for the same input)."""
    data = audio.detach().cpu().float().numpy() if isinstance(audio, torch.Tensor) else np.asarray(audio, np.float32)
    if data.ndim != 2:
        raise ValueError(f"audio must be [C, S], got shape {data.shape}")
    buf = io.BytesIO()
    sf.write(buf, np.clip(data.T, -1.0, 1.0), sample_rate, subtype="PCM_16", format="WAV")
    return buf.getvalue()


PEAK_CEILING = 0.99  # -0.09 dBFS: decoded audio louder than this is scaled down, never clipped


def peak_normalize(audio: torch.Tensor, ceiling: float = PEAK_CEILING) -> tuple[torch.Tensor, torch.Tensor]:
    """audio [N, C, S] -> (audio scaled so no row's peak exceeds ``ceiling``, gains [N]).

    A row whose peak is within the ceiling is left as it is (gain 1: quiet clips are not boosted); a louder
    row is scaled as a whole by ceiling / peak, so its waveform keeps its shape instead of being clipped.
    Non-finite samples are set to 0 first."""
    audio = torch.nan_to_num(audio.float(), nan=0.0, posinf=0.0, neginf=0.0)
    gains = peak_gains(audio, ceiling)
    return audio * gains[:, None, None], gains


def peak_gains(audio: torch.Tensor, ceiling: float = PEAK_CEILING) -> torch.Tensor:
    """audio [N, C, S] (finite) -> gains [N]: ceiling / peak for a row whose peak passes ``ceiling``, else 1."""
    peaks = audio.abs().flatten(1).amax(dim=1) if audio.numel() else torch.zeros(audio.shape[0])
    return torch.where(peaks > ceiling, ceiling / peaks.clamp_min(1e-12), torch.ones_like(peaks))


def mono_at_rate(wav: np.ndarray, sample_rate: int, target_rate: int) -> np.ndarray:
    """Mix down and resample (``scipy.signal.resample_poly``, a polyphase filter).

    Args:
        wav: [S] or [S, C] (soundfile's layout) float.
    Returns:
        [S'] float32, S' = ceil(S * target_rate / sample_rate).
    """
    from scipy.signal import resample_poly

    wav = np.asarray(wav, dtype=np.float64)
    if wav.ndim == 2:
        wav = wav.mean(axis=1)
    if wav.ndim != 1:
        raise ValueError(f"audio must be [S] or [S, C], got shape {wav.shape}")
    if sample_rate != target_rate:
        g = gcd(int(sample_rate), int(target_rate))
        wav = resample_poly(wav, target_rate // g, sample_rate // g)
    return wav.astype(np.float32)


def atomic_write(path: str | Path, data: bytes, mode: int = 0o644) -> Path:
    """Write ``data`` to ``path`` through a temp file (flushed to disk) + rename, so a crash leaves the
    old file or the new one, never half a file; the file gets permissions ``mode``."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


@contextmanager
def atomic_directory(path: str | Path) -> Iterator[Path]:
    """``with atomic_directory(path) as tmp:`` write everything into ``tmp`` (a new directory beside
    ``path``); when the block ends without an error, ``tmp`` becomes ``path`` (an existing ``path`` is moved
    aside first, then removed) with permissions 0755 for directories and 0644 for files (temp directories
    and safetensors start owner-only). On an error ``tmp`` is removed and ``path`` is left as it was."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", dir=path.parent))
    try:
        yield tmp
        for item in [tmp, *tmp.rglob("*")]:
            item.chmod(0o755 if item.is_dir() else 0o644)
        old = path.with_name(f".{path.name}.old")
        if path.exists():
            shutil.rmtree(old, ignore_errors=True)
            os.replace(path, old)
        os.replace(tmp, path)
        shutil.rmtree(old, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
