"""Patch merging with its channel layout in two cheap copies: the fast path of ``swin.PatchMerging``.

The plain formulation moves the 2x2 neighbourhood into channel-major 4C in one permute to
(..., C, kh, kw), whose innermost rows are 2 elements long: 3-9x slower than going through
(..., 4 [kh kw], C) first and transposing that (``benchmarks/layout_copies.py``). Odd sizes are
padded only when they are odd, and the reduction runs through :func:`ssformer.models.fast.linear.linear`.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ssformer.models.fast.linear import linear


def neighbourhoods(x: torch.Tensor, h: int, w: int) -> tuple[torch.Tensor, int, int]:
    """(B, h*w, C) -> (B, ceil(h/2) * ceil(w/2), 4C) channel-major 2x2 neighbourhoods, and the new size."""
    b, _, c = x.shape
    x = x.view(b, h, w, c)
    h2, w2 = (h + 1) // 2, (w + 1) // 2
    if h % 2 or w % 2:
        x = F.pad(x, (0, 0, 0, 2 * w2 - w, 0, 2 * h2 - h))
    # (B, h2, kh, w2, kw, C) -> (B, h2 * w2, 4 [kh kw], C) -> channel-major 4C, in two copies.
    x = x.view(b, h2, 2, w2, 2, c).permute(0, 1, 3, 2, 4, 5).reshape(b, h2 * w2, 4, c)
    return x.transpose(2, 3).reshape(b, h2 * w2, 4 * c), h2, w2


def patch_merging(module: nn.Module, x: torch.Tensor, h: int, w: int) -> tuple[torch.Tensor, int, int]:
    """``swin.PatchMerging(x, h, w)``: (B, h*w, C) -> (B, ceil(h/2) * ceil(w/2), 2C) and the new size."""
    x, h2, w2 = neighbourhoods(x, h, w)
    return linear(module.reduction, module.norm(x)), h2, w2
