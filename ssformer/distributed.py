"""One distributed session for every command (train, eval, predict), and small collective helpers.

:func:`session_device` and :func:`distributed_session` do, in this order, what a torchrun process
needs: read torchrun's environment, resolve (and check) the device before joining, make it CUDA's
current device (NCCL collectives and CUDA RNG states use that one), join the group (NCCL on GPU,
gloo on CPU), and destroy the group on every way out, errors included (exiting with gloo's threads
still running aborts the process).

Collectives run on the device the group's backend serves: an NCCL-only group has no CPU backend
(``No backend type associated with device type cpu``), so :func:`all_reduce_sum` moves its tensor
to :func:`reduction_device` and back rather than assuming the CPU.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from dataclasses import dataclass

import torch
import torch.distributed as dist

from ssformer.devices import resolve_device


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


def session_device(setting: str | torch.device = "auto", what: str = "--device") -> torch.device:
    """The device of this process for ``setting`` (``what`` names it in errors): under torchrun GPU
    ``LOCAL_RANK`` (:func:`ssformer.devices.resolve_device`). Resolved before joining the group, so a
    bad setting fails alone instead of leaving the other processes waiting."""
    layout = torchrun_env()
    return resolve_device(setting, layout.local_rank, layout.enabled, what=what)


def init_distributed(device_type: str) -> DistInfo:
    """Join the group described by torchrun's ``RANK``/``WORLD_SIZE``/``LOCAL_RANK`` (if any).

    Multi-node runs work through torchrun's own flags (``--nnodes``, ``--rdzv-endpoint``...).
    ``created_group`` tells whether this call created the group (then :func:`cleanup` it when done).
    Commands use :func:`distributed_session`, which also sets the CUDA device first.
    """
    info = torchrun_env()
    if not info.enabled:
        return info
    if not dist.is_initialized():
        dist.init_process_group(backend="nccl" if device_type == "cuda" else "gloo")
        info.created_group = True
    return info


@contextlib.contextmanager
def distributed_session(device: torch.device) -> Iterator[DistInfo]:
    """``with distributed_session(session_device(...)) as dist_info:`` the body runs in torchrun's group
    (a one-process :class:`DistInfo` outside torchrun) with ``device`` as CUDA's current device; the
    group this session created is destroyed however the body ends, after a barrier when it succeeds
    (every process done before any tears the group down)."""
    if device.type == "cuda":
        torch.cuda.set_device(device)
    info = init_distributed(device.type)
    try:
        yield info
        barrier()
    finally:
        if info.created_group:
            cleanup()


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
