"""Linears whose fp32 and bf16 CPU inference runs through oneDNN, with GELU fused in where the MLP wants it.

Why: on CPU, ``F.linear`` in fp32 goes to MKL's sgemm, which on AMD processors (this project's
development machine: Zen 4) takes a slower code path; oneDNN's matmul on the same plain weight runs
the Swin GEMMs 1.1-1.7x faster (``benchmarks/linear_backends.py``). oneDNN also adds the bias and
applies GELU to the output tile while it is in cache (fc1 of every MLP), which saves passes over
the largest activations of the block. In bf16 ``F.linear`` is oneDNN already, but as ``addmm``: it
first copies the bias into the output and then accumulates onto it, and GELU is a pass of its own;
the direct call skips both (``benchmarks/inference_cost.py --dtype bf16 [--no-onednn]``;
docs/benchmarks.md).

The oneDNN call (``torch.ops.mkldnn._linear_pointwise``, the kernel ``torch.compile`` uses for CPU
linears) has no autograd formula, so it is taken only when no gradient can be needed and outside
autocast (which must see ``F.linear`` to pick its dtype); tracing, compiling and exporting never
get here (:func:`ssformer.models.fast.use_fast_path`). bf16 also needs a CPU on which oneDNN runs
bf16 (AVX-512 or newer). Everything else, training included, is plain ``F.linear``, and so are
weights that are tensor subclasses (torchao's int8 weights: ``F.linear`` is what they dispatch). The layers
are plain ``nn.Linear`` modules: same parameters, same state dict.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

# The private op torch.compile's CPU backend emits for linears; absent in builds without oneDNN.
_ONEDNN_LINEAR = torch.backends.mkldnn.is_available() and hasattr(torch.ops.mkldnn, "_linear_pointwise")
_ONEDNN_DTYPES = (torch.float32, torch.bfloat16) if _ONEDNN_LINEAR and torch.ops.mkldnn._is_mkldnn_bf16_supported() \
    else (torch.float32,)


def _plain(tensor: torch.Tensor) -> bool:
    return type(tensor) in (torch.Tensor, nn.Parameter)


def uses_onednn(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> bool:
    """Whether :func:`linear` takes the oneDNN kernel for this call (CPU inference in fp32 or bf16)."""
    if x.device.type != "cpu" or x.dtype not in _ONEDNN_DTYPES or x.dim() < 2:
        return False
    if weight.dtype != x.dtype or (bias is not None and bias.dtype != x.dtype) or x.numel() == 0:
        return False
    if not _plain(weight) or (bias is not None and not _plain(bias)):
        return False  # tensor-subclass weights (quantized ones, e.g. torchao) dispatch through F.linear
    if torch.is_grad_enabled() and (x.requires_grad or weight.requires_grad or
                                    (bias is not None and bias.requires_grad)):
        return False
    if torch.is_autocast_enabled("cpu"):
        return False
    return _ONEDNN_LINEAR and torch.backends.mkldnn.enabled


def linear(layer: nn.Linear, x: torch.Tensor) -> torch.Tensor:
    """``layer(x)``; fp32 and bf16 CPU inference go through oneDNN (see the module docstring)."""
    if uses_onednn(x, layer.weight, layer.bias):
        return torch.ops.mkldnn._linear_pointwise(x, layer.weight, layer.bias, "none", [], "")
    return F.linear(x, layer.weight, layer.bias)


def linear_gelu(layer: nn.Linear, x: torch.Tensor) -> torch.Tensor:
    """``GELU(layer(x))`` (exact erf GELU, as ``nn.GELU()``); in CPU inference one fused oneDNN call."""
    if uses_onednn(x, layer.weight, layer.bias):
        return torch.ops.mkldnn._linear_pointwise(x, layer.weight, layer.bias, "gelu", [], "none")
    return F.gelu(F.linear(x, layer.weight, layer.bias))


def mlp(module: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """``swin.Mlp``: fc2(GELU(fc1(x))), the GELU fused into fc1."""
    return linear(module.fc2, linear_gelu(module.fc1, x))
