"""Fréchet distance between Gaussian fits of two embedding sets (FAD in the embedder's space).

Small samples bias FAD upwards (Gui et al. 2024, arXiv:2311.01616): always report N next to it.
"""

from __future__ import annotations

import numpy as np
import torch
from scipy import linalg


def frechet_distance(mu1: np.ndarray, cov1: np.ndarray, mu2: np.ndarray, cov2: np.ndarray) -> float:
    """||mu1 - mu2||^2 + Tr(cov1 + cov2 - 2 (cov1 cov2)^(1/2)).

    N(0, I) vs N(mu, I) gives ||mu||^2; identical Gaussians give 0.
    """
    diff = mu1 - mu2
    covmean = np.asarray(linalg.sqrtm(cov1 @ cov2))
    if not np.isfinite(covmean).all():  # near-singular product: regularise the diagonal
        eps = np.eye(cov1.shape[0]) * 1e-6
        covmean = linalg.sqrtm((cov1 + eps) @ (cov2 + eps))
    covmean = covmean.real
    return float(diff @ diff + np.trace(cov1) + np.trace(cov2) - 2 * np.trace(covmean))


def gaussian_fit(emb: torch.Tensor | np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """emb [N, D] -> mean [D], covariance [D, D] (N - 1 normalisation)."""
    x = emb.detach().cpu().double().numpy() if isinstance(emb, torch.Tensor) else np.asarray(emb, np.float64)
    if x.shape[0] < 2:
        raise ValueError(f"FAD needs at least 2 embeddings, got {x.shape[0]}")
    return x.mean(0), np.cov(x, rowvar=False)


def fad(generated: torch.Tensor | np.ndarray, reference: torch.Tensor | np.ndarray) -> float:
    """FAD between generated [N, D] and reference [M, D] embeddings."""
    return frechet_distance(*gaussian_fit(generated), *gaussian_fit(reference))
