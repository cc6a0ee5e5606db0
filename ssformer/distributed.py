"""Process-group setup from torchrun's environment (NCCL on GPU, gloo on CPU) and small helpers.

Collectives run on the device the group's backend serves: an NCCL-only group has no CPU backend
(``No backend type associated with device type cpu``), so :func:`all_reduce_sum` moves its tensor
to :func:`reduction_device` and back rather than assuming the CPU.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist


@dataclass
class DistInfo:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    created_group: bool = False  # init_distributed created the group, so its caller destroys it

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1


def torchrun_env() -> DistInfo:
    """Rank layout from torchrun's ``RANK``/``WORLD_SIZE``/``LOCAL_RANK``, without joining a group."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return DistInfo()
    return DistInfo(rank=int(os.environ["RANK"]), world_size=world, local_rank=int(os.environ.get("LOCAL_RANK", "0")))


def init_distributed(device_type: str) -> DistInfo:
    """Join the group described by torchrun's ``RANK``/``WORLD_SIZE``/``LOCAL_RANK`` (if any).

    Multi-node runs work through torchrun's own flags (``--nnodes``, ``--rdzv-endpoint``...).
    ``created_group`` tells whether this call created the group (then :func:`cleanup` it when done).
    """
    info = torchrun_env()
    if not info.enabled:
        return info
    if device_type == "cuda":
        torch.cuda.set_device(info.local_rank)
    if not dist.is_initialized():
        dist.init_process_group(backend="nccl" if device_type == "cuda" else "gloo")
        info.created_group = True
    return info


def _backend_devices(group=None) -> list[str]:
    """Device types the group's backends serve, from ``get_backend_config`` ("cpu:gloo,cuda:nccl")."""
    config = str(dist.get_backend_config(group))
    devices = [part.split(":", 1)[0].strip() for part in config.split(",") if ":" in part]
    if devices:
        return devices
    return ["cuda"] if config.strip().lower() == "nccl" else ["cpu"]


def reduction_device(group=None) -> torch.device:
    """Where collectives of ``group`` must run: the CPU when a backend serves it, else the current GPU."""
    if not (dist.is_available() and dist.is_initialized()):
        return torch.device("cpu")
    devices = _backend_devices(group)
    if "cpu" in devices:
        return torch.device("cpu")
    if "cuda" in devices:
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device(devices[0])


def all_reduce_sum(tensor: torch.Tensor) -> torch.Tensor:
    """In-place sum over processes, on the group's :func:`reduction_device` (no-op without a group;
    a one-process group still runs the collective, so a single GPU exercises the NCCL path)."""
    if dist.is_available() and dist.is_initialized():
        device = reduction_device()
        if tensor.device == device:
            dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
        else:
            moved = tensor.to(device)
            dist.all_reduce(moved, op=dist.ReduceOp.SUM)
            tensor.copy_(moved)
    return tensor


def barrier() -> None:
    if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
        dist.barrier()


def cleanup() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()
