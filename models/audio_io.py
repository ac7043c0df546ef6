"""WAV in and out (soundfile; torchaudio cannot load beside the CPU torch build)."""

from __future__ import annotations

import io
import os
import tempfile
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
