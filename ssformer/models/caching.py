"""When a tensor derived from parameters (folded BatchNorm, gathered attention bias) may be reused."""

from __future__ import annotations

import torch


def version_key(*tensors: torch.Tensor) -> tuple | None:
    """Storage, dtype and version counter of each tensor: equal keys mean unchanged tensors.

    ``None`` when any of them is an inference tensor (made under ``torch.inference_mode``, e.g. a
    model converted with ``.to()`` there): those have no version counter, so an in-place change
    could not be noticed, and anything derived from them must be recomputed instead of cached.
    """
    if any(t.is_inference() for t in tensors):
        return None
    return tuple((t.data_ptr(), t.dtype, t.device, t._version) for t in tensors)
