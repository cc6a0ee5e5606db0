"""Shifted-window multi-head self-attention with a relative position bias.

The window grid follows the official (mmseg 0.24.1) semantics exactly:
the normalised tokens are zero-padded bottom/right to a multiple of the window size, the shift is
applied even when the map is no larger than one window, and masked scores get -100 (not -inf).

All of the attention's additive terms (relative bias and shift mask) are folded into one mask and
handed to ``F.scaled_dot_product_attention``, so the fused kernels do the softmax.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

SHIFT_MASK_VALUE = -100.0


def relative_position_index(window_size: int) -> torch.Tensor:
    """(N, N) index into the (2w-1)^2 bias table for every (query, key) pair in a window."""
    coords = torch.stack(torch.meshgrid(torch.arange(window_size), torch.arange(window_size), indexing="ij"))
    coords = coords.flatten(1)  # (2, N)
    delta = coords[:, :, None] - coords[:, None, :] + (window_size - 1)  # (2, N, N), each in [0, 2w-2]
    return delta[0] * (2 * window_size - 1) + delta[1]


def shift_window_mask(padded_h: int, padded_w: int, window_size: int, shift: int,
                      device: torch.device | None = None) -> torch.Tensor:
    """(num_windows, N, N) additive mask: -100 where query and key came from different regions."""
    region = torch.zeros(padded_h, padded_w, device=device)
    bounds = (slice(0, -window_size), slice(-window_size, -shift), slice(-shift, None))
    label = 0
    for rows in bounds:
        for cols in bounds:
            region[rows, cols] = label
            label += 1
    windows = window_partition(region[None, :, :, None], window_size).squeeze(-1)  # (nW, N)
    different = windows[:, None, :] != windows[:, :, None]
    return torch.zeros(different.shape, device=device).masked_fill(different, SHIFT_MASK_VALUE)


def window_partition(x: torch.Tensor, window_size: int) -> torch.Tensor:
    """(B, H, W, C) -> (B * num_windows, window_size**2, C); H and W must be multiples of the window."""
    b, h, w, c = x.shape
    x = x.view(b, h // window_size, window_size, w // window_size, window_size, c)
    return x.permute(0, 1, 3, 2, 4, 5).reshape(-1, window_size * window_size, c)


def window_reverse(windows: torch.Tensor, window_size: int, h: int, w: int) -> torch.Tensor:
    """Inverse of :func:`window_partition`: (B * num_windows, N, C) -> (B, H, W, C)."""
    c = windows.shape[-1]
    x = windows.view(-1, h // window_size, w // window_size, window_size, window_size, c)
    return x.permute(0, 1, 3, 2, 4, 5).reshape(-1, h, w, c)


class ShiftedWindowAttention(nn.Module):
    """W-MSA (``shift == 0``) or SW-MSA on a (B, H*W, C) token map of known height and width."""

    def __init__(self, dim: int, num_heads: int, window_size: int, shift: int, qkv_bias: bool = True):
        super().__init__()
        if dim % num_heads:
            raise ValueError(f"dim {dim} is not divisible by num_heads {num_heads}")
        self.num_heads = num_heads
        self.window_size = window_size
        self.shift = shift
        self.qkv = nn.Linear(dim, 3 * dim, bias=qkv_bias)
        self.proj = nn.Linear(dim, dim)
        self.relative_position_bias_table = nn.Parameter(torch.zeros((2 * window_size - 1) ** 2, num_heads))
        self.register_buffer("relative_position_index", relative_position_index(window_size), persistent=False)
        self._mask_cache: dict[tuple, torch.Tensor] = {}

    def relative_position_bias(self) -> torch.Tensor:
        """(heads, N, N) bias gathered from the learnable table."""
        n = self.window_size ** 2
        bias = self.relative_position_bias_table[self.relative_position_index.view(-1)]
        return bias.view(n, n, self.num_heads).permute(2, 0, 1)

    def attention_mask(self, padded_h: int, padded_w: int, dtype: torch.dtype) -> torch.Tensor:
        """Bias plus shift mask, (heads, N, N) or (num_windows, heads, N, N).

        Cached per size, device and dtype when no gradient can flow into the bias table
        (inference); the cache is dropped whenever the table is changed in place.
        """
        table = self.relative_position_bias_table
        cacheable = not (torch.is_grad_enabled() and table.requires_grad)
        key = (padded_h, padded_w, table.device, dtype, table._version, table.data_ptr())
        if cacheable and key in self._mask_cache:
            return self._mask_cache[key]
        mask = self.relative_position_bias().to(dtype)
        if self.shift:
            shift_mask = shift_window_mask(padded_h, padded_w, self.window_size, self.shift, table.device)
            mask = mask.unsqueeze(0) + shift_mask.to(dtype).unsqueeze(1)
        if cacheable:
            self._mask_cache.clear()
            self._mask_cache[key] = mask
        return mask

    def forward(self, x: torch.Tensor, h: int, w: int) -> torch.Tensor:
        b, _, c = x.shape
        ws, s = self.window_size, self.shift
        x = x.view(b, h, w, c)
        pad_b, pad_r = (-h) % ws, (-w) % ws
        if pad_b or pad_r:
            x = F.pad(x, (0, 0, 0, pad_r, 0, pad_b))
        hp, wp = h + pad_b, w + pad_r
        if s:
            x = torch.roll(x, shifts=(-s, -s), dims=(1, 2))
        windows = window_partition(x, ws)  # (B*nW, N, C)
        num_windows = (hp // ws) * (wp // ws)
        n = ws * ws

        qkv = self.qkv(windows).view(b, num_windows, n, 3, self.num_heads, c // self.num_heads)
        q, k, v = qkv.permute(3, 0, 1, 4, 2, 5).unbind(0)  # each (B, nW, heads, N, d)
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=self.attention_mask(hp, wp, q.dtype))
        out = self.proj(out.transpose(2, 3).reshape(b * num_windows, n, c))

        x = window_reverse(out, ws, hp, wp)
        if s:
            x = torch.roll(x, shifts=(s, s), dims=(1, 2))
        if pad_b or pad_r:
            x = x[:, :h, :w, :]
        return x.reshape(b, h * w, c)
