"""Data parallelism under `torchrun`: process-group set-up and the batch-sharding rule.

The rule that keeps results independent of the number of processes: every rank draws the
same seeded global batch, takes its contiguous share of it (`shard`), and gradients are
summed across ranks with each local loss scaled by 1 / (global batch size). One process and
N processes then apply the same update, up to floating-point reduction order.
"""

from __future__ import annotations

import contextlib
import os
import threading
from typing import Iterator, Sequence

import torch
import torch.distributed as dist

_alone = threading.local()


def world_size() -> int:
    """Number of processes (1 without torchrun, and inside `alone()`)."""
    if getattr(_alone, "active", False):
        return 1
    return dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1


@contextlib.contextmanager
def alone() -> Iterator[None]:
    """Within it this process works by itself: `world_size()` is 1, so training skips DDP and
    the collectives below do nothing, while `rank()` still names the process. For work split
    into independent pieces, one per rank (the audit's models)."""
    previous = getattr(_alone, "active", False)
    _alone.active = True
    try:
        yield
    finally:
        _alone.active = previous


def rank() -> int:
    """This process's rank (0 without torchrun)."""
    return dist.get_rank() if dist.is_available() and dist.is_initialized() else 0


def is_main() -> bool:
    """Whether this process writes files and prints (rank 0)."""
    return rank() == 0


def init_from_env(device: str) -> str:
    """Join the process group torchrun describes (`gloo` on CPU, `nccl` on CUDA).

    Returns the device this rank should use (`cuda:LOCAL_RANK` on GPUs); a no-op without
    torchrun's environment.
    """
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1 or not dist.is_available():
        return device
    cuda = device.startswith("cuda")
    if not dist.is_initialized():
        dist.init_process_group(backend="nccl" if cuda else "gloo")
    if cuda:
        local = int(os.environ.get("LOCAL_RANK", "0"))
        torch.cuda.set_device(local)
        return f"cuda:{local}"
    return device


def shutdown() -> None:
    """Leave the process group, if joined (a process that exits without this can abort in gloo's teardown)."""
    if dist.is_available() and dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()


def shard(indices: torch.Tensor) -> torch.Tensor:
    """This rank's contiguous share of a global batch of indices."""
    if world_size() == 1:
        return indices
    return torch.tensor_split(indices, world_size())[rank()]


def all_reduce_sum_(tensors: Sequence[torch.Tensor]) -> None:
    """Sum `tensors` across ranks in place (one flattened message)."""
    if world_size() == 1 or not tensors:
        return
    flat = torch.cat([t.reshape(-1) for t in tensors])
    dist.all_reduce(flat)
    offset = 0
    for t in tensors:
        t.copy_(flat[offset : offset + t.numel()].view_as(t))
        offset += t.numel()


def broadcast_object(obj: object) -> object:
    """Rank 0's `obj` on every rank."""
    if world_size() == 1:
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def gather_objects(obj: object) -> list:
    """Every rank's `obj`, in rank order, on every rank (`[obj]` without torchrun)."""
    if world_size() == 1:
        return [obj]
    out: list = [None] * world_size()
    dist.all_gather_object(out, obj)
    return out
