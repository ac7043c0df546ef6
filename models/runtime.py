"""How many CPU threads torch uses: one rule for every heavy command (``--threads``) and the app.

torch's own default is one intra-op thread per core. On a machine whose cores are busy with other work
(a shared laptop, a CI runner, the app's request threads beside a training run) those threads wait for
time slices at every one of a decoding step's ~100 small operations: ``musicrl bench threads`` measured
two threads 5-10x slower than one on a loaded 2-core machine (docs/BENCHMARKS.md, "Threads"). So the
default is small and grows slowly with the cores: one thread up to 4 cores, then a quarter of the cores,
at most 8 (the counts above 4 cores are a choice, not a measurement).
"""

from __future__ import annotations

import os

MAX_DEFAULT_THREADS = 8


def cpu_count() -> int:
    """Cores this process may run on (the affinity mask, e.g. a container's share), at least 1."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not on Linux
        return max(1, os.cpu_count() or 1)


def default_threads(cores: int | None = None) -> int:
    """1 thread up to 4 cores, then cores // 4, capped at MAX_DEFAULT_THREADS."""
    cores = cpu_count() if cores is None else cores
    return 1 if cores <= 4 else min(MAX_DEFAULT_THREADS, cores // 4)


def set_threads(threads: int | None) -> int:
    """Set torch's intra-op threads (None: :func:`default_threads`); returns the count in use."""
    import torch

    n = default_threads() if threads is None else threads
    if n < 1:
        raise ValueError(f"threads must be >= 1, got {n}")
    torch.set_num_threads(n)
    return torch.get_num_threads()
