"""The lightweight all-MLP decoder: unify channels, upsample to 1/4, concatenate, fuse, classify.

Each "MLP" is a 1x1 convolution (no bias) + BatchNorm + ReLU, as in the released SSformer
(mmseg ``SegformerHead``).

Two exact rewrites make it cheap (both equal the plain formulation up to float rounding):

* In eval mode each BatchNorm is folded into its convolution (:meth:`ConvBNReLU.weight_and_bias`),
  so ``model.eval()`` alone gives the folded path; the folded weights are cached and recomputed
  whenever a parameter or running statistic changes.
* The fuse convolution is 1x1, so it commutes with the bilinear resize and distributes over the
  concatenation: each stage's slice of it runs at that stage's own resolution and the resized
  results are summed. That skips the 4E-channel concatenation at 1/4 size and most of its FLOPs.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from ssformer.models.caching import version_key


class ConvBNReLU(nn.Module):
    """1x1 conv (no bias) -> BatchNorm -> ReLU."""

    def __init__(self, in_channels: int, out_channels: int):
        super().__init__()
        self.conv = nn.Conv2d(in_channels, out_channels, kernel_size=1, bias=False)
        self.bn = nn.BatchNorm2d(out_channels)
        self.act = nn.ReLU(inplace=True)
        self._folded: tuple[tuple, torch.Tensor, torch.Tensor] | None = None

    def folds_batchnorm(self) -> bool:
        """True in eval mode (BatchNorm uses its running statistics, an affine map)."""
        return not self.bn.training and self.bn.running_mean is not None

    def weight_and_bias(self) -> tuple[torch.Tensor, torch.Tensor | None]:
        """The conv weight, with the BatchNorm folded in (and its bias) when :meth:`folds_batchnorm`."""
        if not self.folds_batchnorm():
            return self.conv.weight, None
        tensors = (self.conv.weight, self.bn.weight, self.bn.bias, self.bn.running_mean, self.bn.running_var)
        needs_grad = torch.is_grad_enabled() and any(t.requires_grad for t in tensors)
        if needs_grad or torch.compiler.is_compiling() or torch.compiler.is_exporting():
            return self._fold()
        key = version_key(*tensors)
        if key is None:  # inference tensors: no version counter, so no safe cache
            return self._fold()
        if self._folded is None or self._folded[0] != key:
            with torch.inference_mode(False), torch.no_grad():  # cached: usable outside inference mode too
                self._folded = (key, *self._fold())
        return self._folded[1], self._folded[2]

    def _fold(self) -> tuple[torch.Tensor, torch.Tensor]:
        bn, weight = self.bn, self.conv.weight
        scale = bn.weight.float() * torch.rsqrt(bn.running_var.float() + bn.eps)
        folded_weight = weight.float() * scale.view(-1, *([1] * (weight.dim() - 1)))
        folded_bias = bn.bias.float() - bn.running_mean.float() * scale
        return folded_weight.to(weight.dtype), folded_bias.to(weight.dtype)

    def activate(self, y: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
        """Finish the block on the convolution output ``y`` made with :meth:`weight_and_bias`
        (in place: ``y`` is a fresh sum of convolution outputs, which no backward needs)."""
        if bias is None:
            return self.act(self.bn(y))
        return F.relu_(y.add_(bias.to(y.dtype).view(-1, 1, 1)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        weight, bias = self.weight_and_bias()
        if bias is None:
            return self.activate(F.conv2d(x, weight), None)
        return F.relu_(F.conv2d(x, weight, bias.to(x.dtype)))  # folded BN: its bias inside the convolution


class AllMLPDecoder(nn.Module):
    """Stage features (strides 4..32) -> class logits at stride 4."""

    def __init__(self, in_channels: Sequence[int], num_classes: int, dim: int = 256, dropout: float = 0.1):
        super().__init__()
        self.dim = dim
        self.projections = nn.ModuleList(ConvBNReLU(c, dim) for c in in_channels)
        self.fuse = ConvBNReLU(dim * len(in_channels), dim)
        self.dropout = nn.Dropout2d(dropout)
        self.classifier = nn.Conv2d(dim, num_classes, kernel_size=1)

    def forward(self, features: Sequence[torch.Tensor]) -> torch.Tensor:
        size = features[0].shape[2:]
        # fuse(concat(resize(p_i))) == sum_i resize(fuse_i(p_i)) for the 1x1 fuse conv split by input.
        fuse_weight, fuse_bias = self.fuse.weight_and_bias()
        fused = None
        for proj, feature, weight in zip(self.projections, features, fuse_weight.split(self.dim, dim=1)):
            y = F.conv2d(proj(feature), weight)
            if y.shape[2:] != size:
                y = F.interpolate(y, size=size, mode="bilinear", align_corners=False)
            fused = y if fused is None else fused.add_(y)  # fresh tensors, not needed by any backward
        # Channels-last like the features (no copy): resizing them to the input size is several times
        # faster in that layout, and the training loss (ssformer.engine.loss) wants classes innermost.
        return self.classifier(self.dropout(self.fuse.activate(fused, fuse_bias)))
