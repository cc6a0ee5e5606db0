"""The fast path: CPU kernels that compute what the plain model files compute, chosen by one switch.

The model files (:mod:`ssformer.models.attention`, ``swin``, ``decoder``, ``ssformer``) hold the
plain, exact formulation, the one to read first. This package holds faster ways to get the same
numbers, one module per kernel family:

* :mod:`.windows`: window attention as one gather of q/k/v rows into windows (custom autograd),
  per-size cached geometry, chunked spelled-out attention on CPUs without AMX, SDPA elsewhere, a cached bias;
* :mod:`.linear`: linears through oneDNN in CPU inference, GELU fused into the MLP's first one;
* :mod:`.merging`: patch merging's 2x2 -> 4C channel layout in two cheap copies;
* :mod:`.decoder`: BatchNorm folded into the convolutions (eval), the 1x1 fuse convolution run
  before the resize at each stage's own resolution;
* :mod:`.hugepages`: the largest fresh CPU outputs (logits, window gathers) in huge pages;
* :mod:`.caching`: when a tensor derived from parameters may be reused.

The switch is chosen per model, as timm's ``use_fused_attn`` (read into each layer when it is built)
and transformers' ``attn_implementation`` (a config field): every layer with a kernel holds a
``fast_path`` flag, set when it is built from the process default (:func:`use_fast_path`:
``SSFORMER_FAST_PATH=0|1`` read once at import, then :func:`set_fast_path`; default on), or by the
model (``SSformer(fast_path=...)``, ``SSformerConfig.fast_path``, ``model.set_fast_path``,
:func:`switch`, the :func:`fast_path` context manager). Two models in one process, or in two
threads, thus take their own paths. A layer runs its kernel when :func:`in_effect` of its flag: on,
and the model is not being traced, compiled or exported. ``torch.export``, ``torch.jit.trace``
(ONNX) and ``torch.compile`` therefore see the plain, shape-generic path: one graph for every input size.

The rule for a layer with a fast kernel:

1. its ``__init__`` sets ``self.fast_path = fast.use_fast_path()``; its ``forward`` holds the plain
   formula and asks one question first: ``if fast.in_effect(self.fast_path): return fast.<family>.<kernel>(self, ...)``;
2. the kernel lives here, in its family's module, with its own narrow applicability check (CPU
   only, no gradient needed, dtype, ...); where that check fails it computes the plain result itself;
3. it uses the layer's parameters as they are (no new state-dict keys), and anything it caches is
   keyed so that a change of the weights invalidates it (:mod:`.caching`);
4. ``tests/models/test_fast_path.py`` compares it with the same layer under ``fast_path(layer, False)``,
   forward and backward.

The kernels import nothing of the plain model modules (which import this package): the layers they
take are described by protocols of the attributes they read (:class:`windows.AttentionLayer`, ...).
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


_default = _from_environment()
_ATTRIBUTE = "fast_path"  # the flag of every layer with a kernel


def use_fast_path() -> bool:
    """The fast-path setting a layer takes when it is built: ``SSFORMER_FAST_PATH``, then :func:`set_fast_path`."""
    return _default


def set_fast_path(enabled: bool) -> None:
    """The default for models built after this call (as timm's ``set_fused_attn``); built models keep
    their own setting (change one with :func:`switch` or ``model.set_fast_path``)."""
    global _default
    _default = bool(enabled)


def in_effect(enabled: bool) -> bool:
    """Whether a layer whose flag is ``enabled`` runs its kernel now: not under tracing, compiling or exporting."""
    if torch.compiler.is_compiling() or torch.compiler.is_exporting() or torch.jit.is_tracing():
        return False
    return enabled


def _layers(model: torch.nn.Module) -> list[torch.nn.Module]:
    """The layers of ``model`` (itself included) that hold a fast-path flag (set in their ``__init__``)."""
    return [m for m in model.modules() if _ATTRIBUTE in vars(m)]


def switch(model: torch.nn.Module, enabled: bool) -> torch.nn.Module:
    """Set the fast path of every layer of ``model`` (the plain path gives the same numbers); returns ``model``."""
    for layer in _layers(model):
        setattr(layer, _ATTRIBUTE, bool(enabled))
    return model


@contextlib.contextmanager
def fast_path(model: torch.nn.Module, enabled: bool) -> Iterator[torch.nn.Module]:
    """``with fast_path(model, False): model(x)`` runs ``model`` on the plain path; each layer's own
    setting comes back after. Other models are untouched."""
    layers = _layers(model)
    previous = [getattr(layer, _ATTRIBUTE) for layer in layers]
    switch(model, enabled)
    try:
        yield model
    finally:
        for layer, value in zip(layers, previous):
            setattr(layer, _ATTRIBUTE, value)


# The kernels, after the switch (they import nothing of the plain model modules, which import this one).
from ssformer.models.fast import decoder, hugepages, linear, merging, windows  # noqa: E402

__all__ = ["ENV_VAR", "decoder", "fast_path", "hugepages", "in_effect", "linear", "merging", "set_fast_path", "switch",
           "use_fast_path", "windows"]
