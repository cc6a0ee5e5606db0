"""Large fresh CPU outputs backed by transparent huge pages.

Why: glibc gives every allocation above its mmap threshold (at most 32 MiB) a new mapping and
unmaps it on free, so a big fresh tensor is faulted in 4 KiB page by page each time it is made.
SSformer-B's full-size logits at 512x512 (150 x 512 x 512 floats, 157 MB) are 38,400 faults of
4 KiB on every call. Advising the mapping with ``madvise(MADV_HUGEPAGE)`` before it is first
touched makes that about 75 faults of 2 MiB (``benchmarks/inference_cost.py [--no-hugepages]``
counts faults per call and times the difference; docs/benchmarks.md). PyTorch does the
same for every allocation under ``THP_MEM_ALLOC_ENABLE=1``, a process-wide switch read at start-up;
this module does it only for the tensors the fast path allocates itself: the full-size logits
(:func:`upsample_logits`) and the window gathers and attention output
(:mod:`ssformer.models.fast.windows`), which at 1024x2048 are hundreds of MB per block.

It changes only where the kernel's transparent huge pages are in ``madvise`` mode (the common
default); with ``always`` they are huge pages already, with ``never`` or off Linux the advice is
not given or ignored. The values are untouched either way: the tensor is a plain ``torch.empty``.
Only tensors of at least 32 MiB are advised: glibc maps those on their own whatever its dynamic
threshold, so the advice never lands on its shared heap. Where huge pages are scarce the kernel
may compact memory to make one or falls back to small pages (its ``defrag`` setting decides).
"""

from __future__ import annotations

import ctypes
import functools
import sys
from collections.abc import Sequence

import torch
import torch.nn.functional as F

HUGE_PAGE = 2 << 20
MIN_BYTES = 32 << 20  # glibc's largest mmap threshold: smaller blocks may come from its heap
_MADV_HUGEPAGE = 14  # <linux/mman.h>


@functools.cache
def _madvise() -> ctypes._CFuncPtr | None:
    """libc's ``madvise``, or None where there is no such thing to call."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        madvise = ctypes.CDLL(None, use_errno=True).madvise
    except (OSError, AttributeError):
        return None
    madvise.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
    madvise.restype = ctypes.c_int
    return madvise


def advise_huge_pages(tensor: torch.Tensor) -> bool:
    """Ask for huge pages over the whole 2 MiB pages inside ``tensor``'s storage; True if advised.

    Call it on a fresh, untouched tensor: pages already faulted in stay small.
    """
    madvise = _madvise()
    nbytes = tensor.untyped_storage().nbytes()
    if madvise is None or tensor.device.type != "cpu" or nbytes < MIN_BYTES:
        return False
    start = tensor.untyped_storage().data_ptr()
    first, last = -(-start // HUGE_PAGE) * HUGE_PAGE, (start + nbytes) // HUGE_PAGE * HUGE_PAGE
    return last > first and madvise(first, last - first, _MADV_HUGEPAGE) == 0  # fails harmlessly (EINVAL)


def empty(size: Sequence[int], dtype: torch.dtype, device: torch.device | str = "cpu",
          memory_format: torch.memory_format = torch.contiguous_format) -> torch.Tensor:
    """``torch.empty``, advised to use huge pages when large and on the CPU (module docstring)."""
    tensor = torch.empty(size, dtype=dtype, device=device, memory_format=memory_format)
    advise_huge_pages(tensor)
    return tensor


def upsample_logits(logits: torch.Tensor, size: Sequence[int]) -> torch.Tensor:
    """``ssformer.models.ssformer.upsample_logits``; in CPU inference into memory advised to use huge pages.

    The result is by far the largest tensor of the call; same values, same layout as ``F.interpolate``.
    """
    channels_last = logits.dim() == 4 and logits.is_contiguous(memory_format=torch.channels_last)
    plain = (logits.device.type != "cpu" or (torch.is_grad_enabled() and logits.requires_grad) or
             channels_last == logits.is_contiguous())  # neither or both layouts: let F.interpolate pick one
    if plain:
        return F.interpolate(logits, size=size, mode="bilinear", align_corners=False)
    size = tuple(int(s) for s in size)
    out = empty((*logits.shape[:2], *size), logits.dtype,  # the layout F.interpolate gives
                memory_format=torch.channels_last if channels_last else torch.contiguous_format)
    return torch.ops.aten.upsample_bilinear2d.out(logits, size, False, out=out)
