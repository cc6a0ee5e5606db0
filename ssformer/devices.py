"""Devices: one resolver for every command (training, evaluation, prediction, benchmarks), and what each
device computes natively (which :mod:`ssformer.precision` asks)."""

from __future__ import annotations

import logging
import os

import torch

from ssformer.errors import UserError

logger = logging.getLogger(__name__)


def cuda_bf16_native(device: torch.device | str | int | None = None) -> bool:
    """Whether the GPU computes bfloat16 natively (compute capability 8.0+, or a ROCm GPU torch accepts).

    ``torch.cuda.is_bf16_supported()`` also counts emulation (torch 2.13), where bf16 runs far
    slower than fp16 on pre-Ampere GPUs, so ``dtype="auto"`` and bf16 training ask this instead.
    """
    if not torch.cuda.is_available():
        return False
    if torch.version.hip:
        return torch.cuda.is_bf16_supported(including_emulation=False)
    return torch.cuda.get_device_capability(device)[0] >= 8


def cpu_bf16_native() -> bool:
    """Whether this CPU computes bfloat16 natively (AVX-512 BF16 or AMX), as oneDNN needs for bf16
    matrix products at speed. Without it (e.g. AMD Zen 3, AVX2 only) bf16 is emulated: a training
    step of the camvid_cpu model took 8.5 s under bf16 autocast against 1.1 s in fp32 (1 thread,
    ``ssformer benchmark --train``; docs/results.md)."""
    return bool(torch.cpu._is_avx512_bf16_supported() or torch.cpu._is_amx_tile_supported())


def resolve_device(name: str | torch.device = "auto", local_rank: int = 0, distributed: bool = False,
                   what: str = "train.device") -> torch.device:
    """The device for ``name`` (``auto``: the GPU when there is one, else the CPU; ``what`` names the
    setting in errors).

    Under torchrun (``distributed``) each process takes GPU ``LOCAL_RANK``: ``auto`` and ``cuda`` map
    to it and ``cuda:N`` is refused (every process would train on GPU N); choose the GPUs with
    ``CUDA_VISIBLE_DEVICES``. A single process uses ``cuda:N`` as given.
    """
    name = str(name)
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise UserError(f"{what}={name} but CUDA is not available")
    if not name.startswith("cuda"):
        return torch.device(name)
    count = torch.cuda.device_count()
    if distributed:
        if name != "cuda":
            raise UserError(f"{what}={name} under torchrun would put every process on that GPU; use "
                            f"{what}=cuda (process LOCAL_RANK takes GPU LOCAL_RANK) and choose GPUs "
                            f"with CUDA_VISIBLE_DEVICES")
        if local_rank >= count:
            raise UserError(f"LOCAL_RANK={local_rank} but only {count} GPU(s) are visible: start at most "
                            f"{count} processes per node (torchrun --nproc-per-node)")
        return torch.device("cuda", local_rank)
    device = torch.device(name)
    index = local_rank if device.index is None else device.index
    if index >= count:
        raise UserError(f"{what}={name} but only {count} GPU(s) are visible (cuda:0 to cuda:{count - 1})")
    return torch.device("cuda", index)


def usable_cpus() -> int:
    """CPUs this process may run on (its affinity mask, as taskset and container limits set it)."""
    if hasattr(os, "sched_getaffinity"):
        return max(1, len(os.sched_getaffinity(0)))
    return os.cpu_count() or 1


def set_cpu_threads(count: int | None, what: str = "train.num_threads") -> None:
    """torch's CPU thread count; ``None`` keeps torch's default. More threads than CPUs only slow
    work down, and absurd counts break torch (1000 hung, 100000 crashed with a segmentation fault),
    so a count above the CPUs is cut to them, with a note naming ``what``."""
    if count is None:
        return
    cpus = usable_cpus()
    if count > cpus:
        logger.warning(f"{what}={count} is more than the {cpus} CPUs this process may use: using {cpus}")
        count = cpus
    torch.set_num_threads(count)
