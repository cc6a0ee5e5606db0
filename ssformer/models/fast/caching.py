"""When a tensor derived from parameters (folded BatchNorm, gathered attention bias) may be reused."""

from __future__ import annotations

import weakref
from collections.abc import Callable, Hashable

import torch
from torch import nn

# module -> {name: (key, value)}; weak, so a cache never keeps a model alive and a deep copy starts empty
_CACHES: weakref.WeakKeyDictionary[nn.Module, dict[str, tuple[Hashable, object]]] = weakref.WeakKeyDictionary()


def version_key(*tensors: torch.Tensor) -> tuple | None:
    """Storage, dtype and version counter of each tensor: equal keys mean unchanged tensors.

    ``None`` when any of them is an inference tensor (made under ``torch.inference_mode``, e.g. a
    model converted with ``.to()`` there): those have no version counter, so an in-place change
    could not be noticed, and anything derived from them must be recomputed instead of cached.
    """
    if any(t.is_inference() for t in tensors):
        return None
    return tuple((t.data_ptr(), t.dtype, t.device, t._version) for t in tensors)


def cached(owner: nn.Module, name: str, sources: tuple[torch.Tensor, ...], extra: Hashable,
           compute: Callable[[], object]) -> object:
    """``compute()``, reused while ``sources`` are unchanged (:func:`version_key`) and ``extra`` is equal.

    One entry per (owner, name). The value is made outside inference mode, so it stays usable in
    both; callers must only use it where no gradient is needed.
    """
    key = version_key(*sources)
    if key is None:  # inference tensors: no version counter, so no safe cache
        return compute()
    key = (key, extra)
    entries = _CACHES.setdefault(owner, {})
    entry = entries.get(name)
    if entry is None or entry[0] != key:
        with torch.inference_mode(False), torch.no_grad():  # usable outside inference mode too
            entry = entries[name] = (key, compute())
    return entry[1]
