"""The fast path: CPU kernels that compute what the plain model files compute, chosen by one switch.

The model files (:mod:`ssformer.models.attention`, ``swin``, ``decoder``, ``ssformer``) hold the
plain, exact formulation, the one to read first. This package holds faster ways to get the same
numbers, one module per kernel family:

* :mod:`.windows`: window attention as one gather of q/k/v rows into windows (custom autograd),
  per-size cached geometry, chunked spelled-out attention on CPU, SDPA elsewhere, a cached bias;
* :mod:`.linear`: linears through oneDNN in CPU inference, GELU fused into the MLP's first one;
* :mod:`.merging`: patch merging's 2x2 -> 4C channel layout in two cheap copies;
* :mod:`.decoder`: BatchNorm folded into the convolutions (eval), the 1x1 fuse convolution run
  before the resize at each stage's own resolution;
* :mod:`.hugepages`: the largest fresh CPU outputs (logits, window gathers) in huge pages;
* :mod:`.caching`: when a tensor derived from parameters may be reused.

The switch, as timm's ``use_fused_attn``/``set_fused_attn``: :func:`use_fast_path` is True when the
fast path is enabled (:func:`set_fast_path`, the :func:`fast_path` context manager, or
``SSFORMER_FAST_PATH=0|1`` read once at import; default on) and the model is not being traced,
compiled or exported. ``torch.export``, ``torch.jit.trace`` (ONNX) and ``torch.compile`` therefore
see the plain, shape-generic path: one graph for every input size.

The rule for a layer with a fast kernel:

1. its ``forward`` holds the plain formula and asks one question first:
   ``if fast.use_fast_path(): return fast.<family>.<kernel>(self, ...)``;
2. the kernel lives here, in its family's module, with its own narrow applicability check (CPU
   only, no gradient needed, dtype, ...); where that check fails it computes the plain result itself;
3. it uses the layer's parameters as they are (no new state-dict keys), and anything it caches is
   keyed so that a change of the weights invalidates it (:mod:`.caching`);
4. ``tests/models/test_fast_path.py`` compares it with the same layer under ``fast_path(False)``,
   forward and backward.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator

import torch

from ssformer.errors import UserError

ENV_VAR = "SSFORMER_FAST_PATH"


def _from_environment() -> bool:
    value = os.environ.get(ENV_VAR, "").strip()
    if value not in ("", "0", "1"):
        raise UserError(f"environment variable {ENV_VAR}={value!r}: allowed values are 0 and 1")
    return value != "0"


_enabled = _from_environment()


def use_fast_path() -> bool:
    """True when the fast kernels may run: enabled, and not under tracing, compiling or exporting."""
    if torch.compiler.is_compiling() or torch.compiler.is_exporting() or torch.jit.is_tracing():
        return False
    return _enabled


def set_fast_path(enabled: bool) -> None:
    """Turn the fast path on or off for the whole process (the plain path gives the same numbers)."""
    global _enabled
    _enabled = bool(enabled)


@contextlib.contextmanager
def fast_path(enabled: bool) -> Iterator[None]:
    """``with fast_path(False): model(x)`` runs the plain path; the previous setting comes back after."""
    global _enabled
    previous, _enabled = _enabled, bool(enabled)
    try:
        yield
    finally:
        _enabled = previous


# The kernels, after the switch (they import nothing of the plain model modules, which import this one).
from ssformer.models.fast import decoder, hugepages, linear, merging, windows  # noqa: E402

__all__ = ["ENV_VAR", "decoder", "fast_path", "hugepages", "linear", "merging", "set_fast_path", "use_fast_path",
           "windows"]
