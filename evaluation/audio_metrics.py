"""Signal-level metrics between a reference and an estimate of the same audio (codec evaluation)."""

from __future__ import annotations

import torch

from models.audio_features import chroma, chroma_filterbank, log_mel, mel_filterbank, stft_magnitude


def _chroma_pair(ref: torch.Tensor, est: torch.Tensor, sample_rate: int, n_fft: int, hop: int):
    """ref, est [S] (est trimmed or zero-padded to ref's length) -> their chroma [12, T] each."""
    n = ref.shape[-1]
    est = torch.nn.functional.pad(est[..., :n], (0, max(0, n - est.shape[-1])))
    fb = chroma_filterbank(sample_rate, n_fft)
    return (chroma(stft_magnitude(ref[None].float(), n_fft, hop), fb)[0],
            chroma(stft_magnitude(est[None].float(), n_fft, hop), fb)[0])


def chroma_correlation(
    ref: torch.Tensor, est: torch.Tensor, sample_rate: int, n_fft: int = 2048, hop: int = 320, silence_db: float = -50.0
) -> float:
    """Mean per-frame Pearson correlation of 12-bin chroma vectors, reference vs estimate.

    ref, est: [S] waveforms (est is trimmed/padded to ref's length). Frames whose reference energy is
    more than ``silence_db`` below the loudest frame are skipped (their chroma is noise).
    """
    c_ref, c_est = _chroma_pair(ref, est, sample_rate, n_fft, hop)
    energy = c_ref.sum(0)
    keep = energy > energy.max() * 10 ** (silence_db / 10)
    a = c_ref[:, keep] - c_ref[:, keep].mean(0)
    b = c_est[:, keep] - c_est[:, keep].mean(0)
    corr = (a * b).sum(0) / (a.norm(dim=0) * b.norm(dim=0)).clamp_min(1e-12)
    return float(corr.mean()) if corr.numel() else float("nan")


def multires_mel_distance(
    ref: torch.Tensor,
    est: torch.Tensor,
    sample_rate: int,
    resolutions: tuple[int, ...] = (512, 1024, 2048),
    n_mels: int = 64,
) -> float:
    """Mean L1 distance between log-mel spectrograms at several FFT sizes (hop = n_fft / 4)."""
    n = ref.shape[-1]
    est = torch.nn.functional.pad(est[..., :n], (0, max(0, n - est.shape[-1])))
    total = 0.0
    for n_fft in resolutions:
        fb = mel_filterbank(sample_rate, n_fft, n_mels)
        a = log_mel(stft_magnitude(ref[None].float(), n_fft, n_fft // 4), fb)
        b = log_mel(stft_magnitude(est[None].float(), n_fft, n_fft // 4), fb)
        total += float((a - b).abs().mean())
    return total / len(resolutions)


def chroma_cosine(
    ref: torch.Tensor, est: torch.Tensor, sample_rate: int, n_fft: int = 2048, hop: int = 320, silence_db: float = -50.0
) -> float:
    """Mean per-frame cosine similarity of 12-bin chroma vectors, reference vs estimate: 1 when every frame
    has the same pitch-class content whatever its loudness; chroma is non-negative, so 0 is the least.

    ref, est: [S] waveforms (est is trimmed/padded to ref's length). Frames whose reference energy is more
    than ``silence_db`` below the loudest frame are skipped, and so are silent estimate frames (no direction).
    Unlike :func:`chroma_correlation` the vectors are not centred: a frame with one pitch class vs the same
    plus a second equally loud one scores 1/sqrt(2), not a correlation of centred vectors.
    """
    c_ref, c_est = _chroma_pair(ref, est, sample_rate, n_fft, hop)
    energy = c_ref.sum(0)
    keep = (energy > energy.max() * 10 ** (silence_db / 10)) & (c_est.sum(0) > 0)
    a, b = c_ref[:, keep], c_est[:, keep]
    cos = (a * b).sum(0) / (a.norm(dim=0) * b.norm(dim=0)).clamp_min(1e-30)
    return float(cos.mean()) if cos.numel() else float("nan")
