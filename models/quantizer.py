"""Residual vector quantisation with a training step (transformers' EnCodec quantiser is inference-only).

Training uses the straight-through estimator, a commitment loss, EMA codebook updates, k-means
initialisation (after a warm-up without quantisation, so the latents have settled) and restarts of
dead codes from recent residuals. Shapes: latents z [B, T, D]; codes [B, Q, T].
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn


@dataclass
class QuantizerOutput:
    """quantized [B, T, D] (straight-through in training); codes [B, Q, T]; commit_loss scalar;
    perplexity [Q] of each stage's code usage in this batch."""

    quantized: torch.Tensor
    codes: torch.Tensor
    commit_loss: torch.Tensor
    perplexity: torch.Tensor


def kmeans(x: torch.Tensor, k: int, iters: int = 20, seed: int = 0) -> torch.Tensor:
    """Plain k-means on x [N, D] -> centroids [k, D] (empty clusters re-seeded from random points)."""
    g = torch.Generator().manual_seed(seed)  # CPU indices index x on any device
    centroids = x[torch.randperm(x.shape[0], generator=g)[:k]].clone()
    if centroids.shape[0] < k:
        centroids = x[torch.randint(0, x.shape[0], (k,), generator=g)].clone()
    for _ in range(iters):
        assign = torch.cdist(x, centroids).argmin(dim=1)
        sums = torch.zeros_like(centroids).index_add_(0, assign, x)
        counts = torch.bincount(assign, minlength=k).to(x)
        empty = counts == 0
        centroids = torch.where(
            empty[:, None], x[torch.randint(0, x.shape[0], (k,), generator=g)], sums / counts.clamp_min(1)[:, None]
        )
    return centroids


class ResidualVQ(nn.Module):
    def __init__(
        self,
        num_quantizers: int = 4,
        codebook_size: int = 256,
        dim: int = 64,
        decay: float = 0.99,
        commit_weight: float = 0.25,
        dead_threshold: float = 1e-3,
    ):
        super().__init__()
        self.num_quantizers, self.codebook_size, self.dim = num_quantizers, codebook_size, dim
        self.decay, self.commit_weight, self.dead_threshold = decay, commit_weight, dead_threshold
        self.register_buffer("codebooks", torch.randn(num_quantizers, codebook_size, dim))
        self.register_buffer("ema_count", torch.ones(num_quantizers, codebook_size))
        self.register_buffer("ema_sum", self.codebooks.clone())
        self.register_buffer("initialized", torch.tensor(False))

    def _nearest(self, residual: torch.Tensor, q: int) -> torch.Tensor:
        """residual [N, D] -> indices [N] of the nearest code of stage q."""
        book = self.codebooks[q]
        dist = residual.pow(2).sum(1, keepdim=True) - 2 * residual @ book.T + book.pow(2).sum(1)[None]
        return dist.argmin(dim=1)

    @torch.no_grad()
    def init_from(self, z: torch.Tensor) -> None:
        """k-means initialisation of every stage on latents z [N, D] (residual after the earlier stages)."""
        residual = z.float().to(self.codebooks.device)
        for q in range(self.num_quantizers):
            self.codebooks[q] = kmeans(residual, self.codebook_size, seed=q)
            self.ema_sum[q] = self.codebooks[q].clone()
            self.ema_count[q].fill_(1.0)
            residual = residual - self.codebooks[q][self._nearest(residual, q)]
        self.initialized.fill_(True)

    @torch.no_grad()
    def restart_dead(self, z: torch.Tensor, seed: int = 0) -> int:
        """Replace codes whose EMA usage fell below ``dead_threshold`` with residuals of z [N, D].
        Returns the number of restarted codes."""
        g = torch.Generator().manual_seed(seed)
        residual, restarted = z.float().to(self.codebooks.device), 0
        for q in range(self.num_quantizers):
            dead = (self.ema_count[q] / self.ema_count[q].sum()) < self.dead_threshold / self.codebook_size
            n = int(dead.sum())
            if n:
                picks = residual[torch.randint(0, residual.shape[0], (n,), generator=g)]
                self.codebooks[q, dead] = picks
                self.ema_sum[q, dead] = picks
                self.ema_count[q, dead] = 1.0
                restarted += n
            residual = residual - self.codebooks[q][self._nearest(residual, q)]
        return restarted

    def encode(self, z: torch.Tensor) -> torch.Tensor:
        """z [B, T, D] -> codes [B, Q, T]."""
        b, t, d = z.shape
        residual, codes = z.reshape(-1, d).float(), []
        for q in range(self.num_quantizers):
            idx = self._nearest(residual, q)
            codes.append(idx)
            residual = residual - self.codebooks[q][idx]
        return torch.stack(codes, dim=0).view(self.num_quantizers, b, t).transpose(0, 1)

    def decode(self, codes: torch.Tensor) -> torch.Tensor:
        """codes [B, Q, T] -> quantized latents [B, T, D] (sum of the stages' codes)."""
        out = 0
        for q in range(codes.shape[1]):
            out = out + F.embedding(codes[:, q], self.codebooks[q])
        return out

    def forward(self, z: torch.Tensor) -> QuantizerOutput:
        b, t, d = z.shape
        flat = z.reshape(-1, d)
        residual, total, commit, codes, perplexity = flat, torch.zeros_like(flat), 0.0, [], []
        for q in range(self.num_quantizers):
            idx = self._nearest(residual.detach().float(), q)
            chosen = self.codebooks[q][idx]
            commit = commit + F.mse_loss(residual, chosen.detach())
            onehot = F.one_hot(idx, self.codebook_size).float()
            usage = onehot.mean(0)
            perplexity.append(torch.exp(-(usage * (usage + 1e-10).log()).sum()))
            if self.training:
                with torch.no_grad():
                    self.ema_count[q].mul_(self.decay).add_(onehot.sum(0), alpha=1 - self.decay)
                    self.ema_sum[q].mul_(self.decay).add_(onehot.T @ residual.detach().float(), alpha=1 - self.decay)
                    n = self.ema_count[q].sum()
                    count = (self.ema_count[q] + 1e-5) / (n + self.codebook_size * 1e-5) * n
                    self.codebooks[q] = self.ema_sum[q] / count[:, None]
            total = total + chosen
            residual = residual - chosen.detach()
            codes.append(idx)
        quantized = flat + (total - flat).detach()  # straight-through
        return QuantizerOutput(
            quantized.view(b, t, d),
            torch.stack(codes, 0).view(self.num_quantizers, b, t).transpose(0, 1),
            self.commit_weight * commit,
            torch.stack(perplexity),
        )
