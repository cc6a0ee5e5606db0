"""Shifted-window multi-head self-attention with a relative position bias, written as in the paper.

The window grid follows the official (mmseg 0.24.1) semantics exactly:

* the normalised tokens are zero-padded bottom/right to a multiple of the window size (always, by
  0 when the size is a multiple already, so one traced graph serves every size);
* shifted blocks roll the padded map by (-shift, -shift); the shift is kept even when the map is
  no larger than one window;
* the map is partitioned into windows, ``qkv`` splits each token into heads, and attention is
  ``softmax(q k^T / sqrt(d) + bias + shift_mask) v`` with masked scores at -100 (not -inf);
* the windows are put back, un-rolled, cropped to the real tokens and projected.

Every step is a shape-generic tensor op (sizes are expressions of the symbolic height and width),
so this is also the path ``torch.export``, ``torch.jit.trace`` and ``torch.compile`` take. Eager
calls take :func:`ssformer.models.fast.windows.attention` instead, which gives the same numbers
faster (one gather instead of pad/roll/partition, chunked attention on CPU; see
:mod:`ssformer.models.fast`).
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from ssformer.errors import UserError
from ssformer.models import fast
from ssformer.models.window_grid import (
    relative_position_index,
    roll,
    shift_window_mask,
    window_partition,
    window_reverse,
)


class ShiftedWindowAttention(nn.Module):
    """W-MSA (``shift == 0``) or SW-MSA on a (B, H*W, C) token map of known height and width."""

    def __init__(self, dim: int, num_heads: int, window_size: int, shift: int, qkv_bias: bool = True):
        super().__init__()
        if dim % num_heads:
            raise UserError(f"dim {dim} is not divisible by num_heads {num_heads}")
        self.num_heads = num_heads
        self.window_size = window_size
        self.shift = shift
        self.qkv = nn.Linear(dim, 3 * dim, bias=qkv_bias)
        self.proj = nn.Linear(dim, dim)
        self.relative_position_bias_table = nn.Parameter(torch.zeros((2 * window_size - 1) ** 2, num_heads))
        self.register_buffer("relative_position_index", relative_position_index(window_size), persistent=False)
        self.fast_path = fast.use_fast_path()

    def relative_position_bias(self) -> torch.Tensor:
        """(heads, N, N) bias gathered from the learnable table (contiguous: see ``fast.windows``)."""
        n = self.window_size ** 2
        bias = self.relative_position_bias_table[self.relative_position_index.view(-1)]
        return bias.view(n, n, self.num_heads).permute(2, 0, 1).contiguous()

    def forward(self, x: torch.Tensor, h: int, w: int) -> torch.Tensor:
        if fast.in_effect(self.fast_path):
            return fast.windows.attention(self, x, h, w)
        b, _, c = x.shape
        ws, s, heads = self.window_size, self.shift, self.num_heads
        n, d = ws * ws, c // heads
        rows, cols = (h + ws - 1) // ws, (w + ws - 1) // ws
        x = F.pad(x.reshape(b, h, w, c), (0, 0, 0, cols * ws - w, 0, rows * ws - h))
        if s:
            x = roll(roll(x, -s, 1), -s, 2)
        windows = window_partition(x, rows, cols, ws)  # (B, nW, N, C)
        q, k, v = self.qkv(windows).reshape(b, rows * cols, n, 3, heads, d).permute(3, 0, 1, 4, 2, 5).unbind(0)
        scores = torch.matmul(q * d ** -0.5, k.transpose(-2, -1))  # (B, nW, heads, N, N)
        scores = scores + self.relative_position_bias().to(scores.dtype)
        if s:
            scores = scores + shift_window_mask(rows, cols, ws, s, x.device, scores.dtype).unsqueeze(1)
        out = torch.matmul(scores.softmax(-1), v)  # (B, nW, heads, N, d)
        out = window_reverse(out.transpose(2, 3).reshape(b, rows * cols, n, c), rows, cols, ws)
        if s:
            out = roll(roll(out, s, 1), s, 2)
        return self.proj(out[:, :h, :w].reshape(b, h * w, c))
