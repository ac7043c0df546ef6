"""Data-parallel training on PyTorch's own engine: torchrun launches, DDP averages gradients.

    torchrun --nproc-per-node 4 -m musicrl.cli train lm --config configs/lm.yaml

Every recipe runs unchanged with one process (no process group is created) or under ``torchrun``
(gloo on CPU, NCCL on GPU). The rules the recipes follow:

- a step's GLOBAL batch is drawn from a stream every rank holds identically (seeded by the run's seed
  and step); ``Dist.shard`` gives each rank its contiguous share, so the global batch, and with it the
  update, does not change with the number of processes (``batch_size`` must divide by it);
- each rank computes a per-example mean over its share; DDP averages the gradients, which equals the
  mean over the global batch when the shares are equal (contrastive losses gather embeddings first,
  see ``Dist.gather_rows``);
- rank 0 logs, writes checkpoints and the train state; every rank restores the state on resume;
- BatchNorm: on GPU the conv towers' BatchNorm layers become ``SyncBatchNorm`` (statistics over the
  global batch, as one process computes them). SyncBatchNorm has no CPU kernel, so on CPU each rank
  normalises with its share's statistics (ghost batch norm): BN recipes are then not bit-equivalent to
  one process, only statistically. Buffers (BN running statistics, the codec's EMA codebooks) are
  averaged across ranks after every step (``average_buffers``) instead of broadcast from rank 0.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

import torch
import torch.distributed as dist
from torch import nn

from models.errors import InputError


def pick_device(name: str = "auto", local_rank: int = 0) -> torch.device:
    """``auto``: this rank's GPU when there is one, else the CPU; any other name as given."""
    if name == "auto":
        return torch.device(f"cuda:{local_rank}" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


@dataclass(frozen=True)
class Dist:
    """Where this process stands: rank in [0, world), its device. ``world == 1``: no process group."""

    rank: int = 0
    world: int = 1
    local_rank: int = 0
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def shard(self, items, what: str = "batch"):
        """This rank's contiguous share of a global batch (a list or a tensor along dim 0)."""
        n = len(items)
        if n % self.world:
            raise InputError(f"the global {what} ({n}) must divide by the number of processes ({self.world})")
        per = n // self.world
        return items[self.rank * per : (self.rank + 1) * per]

    def gather_rows(self, local: torch.Tensor) -> torch.Tensor:
        """[n, ...] per rank -> [world * n, ...] in rank order; this rank's rows keep their gradient,
        the others' are constants (scale the loss by ``world``, see ``musicrl.recipes.embedder``)."""
        if self.world == 1:
            return local
        parts = [torch.empty_like(local) for _ in range(self.world)]
        dist.all_gather(parts, local.detach().contiguous())
        parts[self.rank] = local
        return torch.cat(parts)

    def mean(self, values: dict) -> dict:
        """Average numeric metrics (numbers, lists of numbers) over ranks for the log; others pass as they
        are. Identity with one process."""
        if self.world == 1:
            return values
        keys = sorted(k for k, v in values.items() if isinstance(v, int | float | list))
        flat = [float(x) for k in keys for x in (values[k] if isinstance(values[k], list) else [values[k]])]
        t = torch.tensor(flat, dtype=torch.float64, device=self.device)
        dist.all_reduce(t)
        means, out, i = (t / self.world).tolist(), dict(values), 0
        for k in keys:
            n = len(values[k]) if isinstance(values[k], list) else 1
            out[k] = means[i : i + n] if isinstance(values[k], list) else means[i]
            i += n
        return out

    def barrier(self) -> None:
        if self.world > 1:
            dist.barrier()


def launched_world() -> int:
    """How many processes torchrun started for this run (``WORLD_SIZE``; 1 without torchrun)."""
    return int(os.environ.get("WORLD_SIZE", "1"))


def init_distributed(device: str = "auto") -> Dist:
    """A ``Dist`` for this process: under torchrun (WORLD_SIZE > 1) join the process group (NCCL when
    the device is a GPU, else gloo); otherwise a single process on ``pick_device(device)``."""
    world = launched_world()
    if world == 1:
        return Dist(device=pick_device(device))
    rank, local_rank = int(os.environ["RANK"]), int(os.environ.get("LOCAL_RANK", "0"))
    dev = pick_device(device, local_rank)
    if dev.type == "cuda":
        torch.cuda.set_device(dev)
    if not dist.is_initialized():
        dist.init_process_group("nccl" if dev.type == "cuda" else "gloo")
    return Dist(rank=rank, world=world, local_rank=local_rank, device=dev)


def close(d: Dist) -> None:
    if d.world > 1 and dist.is_initialized():
        dist.destroy_process_group()


def wrap(model: nn.Module, d: Dist) -> nn.Module:
    """The module to run the training forward through: ``model`` itself with one process, else DDP
    (BatchNorm -> SyncBatchNorm on GPU). The returned wrapper shares ``model``'s parameters."""
    if d.world == 1:
        return model
    from torch.nn.parallel import DistributedDataParallel

    if d.device.type == "cuda":
        nn.SyncBatchNorm.convert_sync_batchnorm(model)  # replaces BatchNorm children in place (same keys)
    ids = [d.device.index] if d.device.type == "cuda" else None
    return DistributedDataParallel(model, device_ids=ids, broadcast_buffers=False)


@torch.no_grad()
def average_buffers(model: nn.Module, d: Dist) -> None:
    """Mean of every floating buffer over ranks (BN running statistics, EMA codebooks)."""
    if d.world == 1:
        return
    for buf in model.buffers():
        if buf.is_floating_point():
            dist.all_reduce(buf)
            buf.div_(d.world)


@torch.no_grad()
def broadcast_buffers(model: nn.Module, d: Dist, src: int = 0) -> None:
    """Every buffer from rank ``src`` (after a rank-local change such as a codebook restart)."""
    if d.world == 1:
        return
    for buf in model.buffers():
        dist.broadcast(buf, src)


def gather_rng(d: Dist) -> dict[str, torch.Tensor]:
    """Every rank's torch (and CUDA) RNG state, for rank 0 to save: {"rng/torch/<r>": uint8 [n], ...}."""
    states = {"torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        states["cuda"] = torch.cuda.get_rng_state()
    if d.world == 1:
        return {f"rng/{k}/0": v for k, v in states.items()}
    out = {}
    for key, state in states.items():
        local = state.to(d.device)
        parts = [torch.empty_like(local) for _ in range(d.world)]
        dist.all_gather(parts, local)
        out.update({f"rng/{key}/{r}": p.cpu() for r, p in enumerate(parts)})
    return out
