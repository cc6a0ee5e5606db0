"""The lightweight all-MLP decoder: unify channels, upsample to 1/4, concatenate, fuse, classify.

Each "MLP" is a 1x1 convolution (no bias) + BatchNorm + ReLU, as in the released SSformer
(mmseg ``SegformerHead``). Eager calls take :mod:`ssformer.models.fast.decoder` instead (BatchNorm
folded into the convolutions in eval mode, the fuse convolution before the resize): the same
numbers, cheaper.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from ssformer.models import fast


class ConvBNReLU(nn.Module):
    """1x1 conv (no bias) -> BatchNorm -> ReLU."""

    def __init__(self, in_channels: int, out_channels: int):
        super().__init__()
        self.conv = nn.Conv2d(in_channels, out_channels, kernel_size=1, bias=False)
        self.bn = nn.BatchNorm2d(out_channels)
        self.act = nn.ReLU(inplace=True)
        self.fast_path = fast.use_fast_path()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if fast.in_effect(self.fast_path):
            return fast.decoder.conv_bn_relu(self, x)
        return self.act(self.bn(self.conv(x)))


class AllMLPDecoder(nn.Module):
    """Stage features (strides 4..32) -> class logits at stride 4."""

    def __init__(self, in_channels: Sequence[int], num_classes: int, dim: int = 256, dropout: float = 0.1):
        super().__init__()
        self.dim = dim
        self.projections = nn.ModuleList(ConvBNReLU(c, dim) for c in in_channels)
        self.fuse = ConvBNReLU(dim * len(in_channels), dim)
        self.dropout = nn.Dropout2d(dropout)
        self.classifier = nn.Conv2d(dim, num_classes, kernel_size=1)
        self.fast_path = fast.use_fast_path()

    def forward(self, features: Sequence[torch.Tensor]) -> torch.Tensor:
        if fast.in_effect(self.fast_path):
            return fast.decoder.all_mlp_decoder(self, features)
        size = features[0].shape[2:]
        unified = [F.interpolate(proj(feature), size=size, mode="bilinear", align_corners=False)
                   for proj, feature in zip(self.projections, features)]
        return self.classifier(self.dropout(self.fuse(torch.cat(unified, dim=1))))
