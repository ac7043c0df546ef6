"""What this machine can do at best: memory bandwidth and fp32 matmul throughput, measured now."""

from __future__ import annotations

import time
from dataclasses import dataclass

import torch
import torch.nn.functional as F


@dataclass
class MachineLimits:
    bandwidth_gbs: float  # GB/s streaming weights through a matrix-vector product
    matmul_gflops: float  # fp32 GFLOP/s of a large matrix product
    threads: int


def _best_of(fn, repeats: int) -> float:
    fn()
    best = float("inf")
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t)
    return best


@torch.no_grad()
def measure_machine(repeats: int = 5) -> MachineLimits:
    """Best-of-``repeats`` timings (the least disturbed run on a shared, noisy machine)."""
    w = torch.randn(8192, 8192)  # 256 MiB: far beyond the caches
    x = torch.randn(1, 8192)
    bw = w.numel() * 4 / _best_of(lambda: F.linear(x, w), repeats) / 1e9
    a, b = torch.randn(1024, 2048), torch.randn(2048, 2048)
    flops = 2 * 1024 * 2048 * 2048 / _best_of(lambda: a @ b, repeats) / 1e9
    return MachineLimits(bw, flops, torch.get_num_threads())
