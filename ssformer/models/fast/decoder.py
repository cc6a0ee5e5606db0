"""The all-MLP decoder by two exact rewrites: the fast path of :mod:`ssformer.models.decoder`.

Both equal the plain formulation up to float rounding:

* In eval mode each BatchNorm is folded into its convolution (:func:`weight_and_bias`), so
  ``model.eval()`` alone gives the folded path; the folded weights are cached and recomputed
  whenever a parameter or running statistic changes.
* The fuse convolution is 1x1, so it commutes with the bilinear resize and distributes over the
  concatenation: each stage's slice of it runs at that stage's own resolution and the resized
  results are summed. That skips the 4E-channel concatenation at 1/4 size and most of its FLOPs.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

import torch
import torch.nn.functional as F
from torch import nn

from ssformer.models.fast import caching


class ConvBNReLULayer(Protocol):
    """What the kernels read of ``decoder.ConvBNReLU`` (named here, not imported: the plain module
    calls this one, and nothing here depends on it)."""

    conv: nn.Conv2d
    bn: nn.BatchNorm2d
    act: nn.Module


class DecoderLayer(Protocol):
    """What the kernels read of ``decoder.AllMLPDecoder``."""

    dim: int
    projections: Sequence[ConvBNReLULayer]
    fuse: ConvBNReLULayer
    dropout: nn.Module
    classifier: nn.Module


def folds_batchnorm(block: ConvBNReLULayer) -> bool:
    """True in eval mode (BatchNorm uses its running statistics, an affine map)."""
    return not block.bn.training and block.bn.running_mean is not None


def weight_and_bias(block: ConvBNReLULayer) -> tuple[torch.Tensor, torch.Tensor | None]:
    """The conv weight, with the BatchNorm folded in (and its bias) when :func:`folds_batchnorm`."""
    if not folds_batchnorm(block):
        return block.conv.weight, None
    bn = block.bn
    tensors = (block.conv.weight, bn.weight, bn.bias, bn.running_mean, bn.running_var)
    if torch.is_grad_enabled() and any(t.requires_grad for t in tensors):
        return _fold(block)
    return caching.cached(block, "folded_batchnorm", tensors, None, lambda: _fold(block))


def _fold(block: ConvBNReLULayer) -> tuple[torch.Tensor, torch.Tensor]:
    bn, weight = block.bn, block.conv.weight
    wide = torch.promote_types(weight.dtype, torch.float32)  # bf16/fp16 weights fold in float32, float64 in float64
    scale = bn.weight.to(wide) * torch.rsqrt(bn.running_var.to(wide) + bn.eps)
    folded_weight = weight.to(wide) * scale.view(-1, *([1] * (weight.dim() - 1)))
    folded_bias = bn.bias.to(wide) - bn.running_mean.to(wide) * scale
    return folded_weight.to(weight.dtype), folded_bias.to(weight.dtype)


def activate(block: ConvBNReLULayer, y: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
    """Finish the block on the convolution output ``y`` made with :func:`weight_and_bias`
    (in place: ``y`` is a fresh sum of convolution outputs, which no backward needs)."""
    if bias is None:
        return block.act(block.bn(y))
    return F.relu_(y.add_(bias.to(y.dtype).view(-1, 1, 1)))


def conv_bn_relu(block: ConvBNReLULayer, x: torch.Tensor) -> torch.Tensor:
    """``block(x)``, its BatchNorm folded into the convolution in eval mode."""
    weight, bias = weight_and_bias(block)
    if bias is None:
        return activate(block, F.conv2d(x, weight), None)
    return F.relu_(F.conv2d(x, weight, bias.to(x.dtype)))  # folded BN: its bias inside the convolution


def all_mlp_decoder(decoder: DecoderLayer, features: Sequence[torch.Tensor]) -> torch.Tensor:
    """``decoder(features)`` with the fuse convolution split by input and run before each resize."""
    size = features[0].shape[2:]
    # fuse(concat(resize(p_i))) == sum_i resize(fuse_i(p_i)) for the 1x1 fuse conv split by input.
    fuse_weight, fuse_bias = weight_and_bias(decoder.fuse)
    fused = None
    for proj, feature, weight in zip(decoder.projections, features, fuse_weight.split(decoder.dim, dim=1)):
        y = F.conv2d(conv_bn_relu(proj, feature), weight)
        if y.shape[2:] != size:
            y = F.interpolate(y, size=size, mode="bilinear", align_corners=False)
        fused = y if fused is None else fused.add_(y)  # fresh tensors, not needed by any backward
    # Channels-last like the features (no copy): resizing them to the input size is several times
    # faster in that layout, and the training loss (ssformer.engine.loss) wants classes innermost.
    return decoder.classifier(decoder.dropout(activate(decoder.fuse, fused, fuse_bias)))
