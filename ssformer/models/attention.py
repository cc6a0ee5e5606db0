"""Shifted-window multi-head self-attention with a relative position bias.

The window grid follows the official (mmseg 0.24.1) semantics exactly:
the normalised tokens are zero-padded bottom/right to a multiple of the window size, the shift is
applied even when the map is no larger than one window, and masked scores get -100 (not -inf).

How it is made fast (each step is exact, it only removes copies or wasted work):

* ``qkv`` runs on the real tokens only. A zero (padding) token's q/k/v is just the qkv bias, so
  *padding, cyclic shift and window partition are a single row gather* with a precomputed index
  (:func:`window_geometry`) plus writing the bias into the padding slots (:class:`_ToWindows`).
* Attention is one fused ``F.scaled_dot_product_attention`` call on 4-D (windows, heads, N, d)
  tensors; the relative bias and the shift mask are one additive mask. (With 5-D inputs or a 3-D
  mask PyTorch's CPU backend falls back to the slow unfused path.) When the bias table is being
  trained the mask needs a gradient, which the fused kernels do not give (PyTorch then takes a
  slower generic path), so training spells the three steps out.
* The inverse gather takes each real token back from its window slot (un-shift, un-partition and
  crop in one copy), and ``proj`` then runs on the real tokens only.
* Index tensors and shift masks are cached per feature-map size, device and dtype (shared by all
  blocks); in inference each block caches its gathered bias, keyed on the bias table's version,
  so changing the weights in place invalidates it. The per-window sum of bias and shift mask is
  made per call: cached in every block it would take more memory than the activations at large
  inputs (about 440 MB for SSformer-B at 1024x2048).
"""

from __future__ import annotations

import functools
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

from ssformer.models import export_friendly
from ssformer.models.caching import version_key
from ssformer.models.linear import Linear

SHIFT_MASK_VALUE = -100.0


def relative_position_index(window_size: int) -> torch.Tensor:
    """(N, N) index into the (2w-1)^2 bias table for every (query, key) pair in a window."""
    coords = torch.stack(torch.meshgrid(torch.arange(window_size), torch.arange(window_size), indexing="ij"))
    coords = coords.flatten(1)  # (2, N)
    delta = coords[:, :, None] - coords[:, None, :] + (window_size - 1)  # (2, N, N), each in [0, 2w-2]
    return delta[0] * (2 * window_size - 1) + delta[1]


def window_partition(x: torch.Tensor, window_size: int) -> torch.Tensor:
    """(B, H, W, C) -> (B * num_windows, window_size**2, C); H and W must be multiples of the window."""
    b, h, w, c = x.shape
    x = x.view(b, h // window_size, window_size, w // window_size, window_size, c)
    return x.permute(0, 1, 3, 2, 4, 5).reshape(-1, window_size * window_size, c)


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


class WindowGeometry(NamedTuple):
    """Index tensors that move a (B * H * W, C) token table into windows and back (see window_geometry)."""

    gather: torch.Tensor  # (B * nW * N,) token row of every window slot (0 for padding slots)
    scatter: torch.Tensor  # (B * H * W,) window slot of every token
    padding: torch.Tensor  # window slots that hold padding
    shift_mask: torch.Tensor | None  # (B * nW, 1, N, N) in the tokens' dtype, for shifted windows


def _window_geometry(batch: int, h: int, w: int, window_size: int, shift: int, device: torch.device,
                     dtype: torch.dtype) -> WindowGeometry:
    ws = window_size
    hp, wp = (h + ws - 1) // ws * ws, (w + ws - 1) // ws * ws  # rounded up to the window grid
    tokens = h * w
    # Source token of every slot of the padded map after rolling it by (-shift, -shift).
    rows = (torch.arange(hp, device=device) + shift) % hp
    cols = (torch.arange(wp, device=device) + shift) % wp
    source = rows[:, None] * w + cols[None, :]
    is_padding = (rows[:, None] >= h) | (cols[None, :] >= w)
    slots = source.masked_fill(is_padding, -1).view(hp // ws, ws, wp // ws, ws).transpose(1, 2).reshape(-1)
    real = slots >= 0
    inverse = torch.empty(tokens, dtype=torch.long, device=device)
    inverse[slots[real]] = torch.arange(slots.numel(), device=device)[real]
    # Batched: sample b's token t is row b * tokens + t, its window slots follow sample b - 1's.
    offsets = torch.arange(batch, device=device)[:, None]
    gather = torch.where(real, slots + offsets * tokens, 0).reshape(-1)
    scatter = (inverse + offsets * slots.numel()).reshape(-1)
    padding = torch.nonzero(~real.expand(batch, -1).reshape(-1)).flatten()
    shift_mask = None
    if shift:
        shift_mask = shift_window_mask(hp, wp, ws, shift, device).to(dtype).repeat(batch, 1, 1).unsqueeze(1)
    return WindowGeometry(gather, scatter, padding, shift_mask)


_cached_window_geometry = functools.lru_cache(maxsize=16)(_window_geometry)


def window_geometry(batch: int, h: int, w: int, window_size: int, shift: int, device: torch.device,
                    dtype: torch.dtype = torch.float32) -> WindowGeometry:
    """Indices for zero-padding, cyclically shifting and partitioning a (B, H, W) token map in one gather.

    Slots are ordered (sample, window row, window column, row in window, column in window) over the
    map padded bottom/right to a multiple of the window and rolled by (-shift, -shift), exactly
    the official layout. Cached per size and device (they hold no parameters).
    """
    if torch.compiler.is_compiling() or torch.compiler.is_exporting():  # traced into the graph, not cached
        return _window_geometry(batch, h, w, window_size, shift, device, dtype)
    with torch.inference_mode(False), torch.no_grad():  # cached: must stay usable outside inference mode
        return _cached_window_geometry(batch, h, w, window_size, shift, device, dtype)


class _ToWindows(torch.autograd.Function):
    """Token rows -> window slots, padding slots set to ``padding_row``.

    A custom backward because ``index_select``'s own (a scatter-add) is slow on CPU; here every
    real token sits in exactly one slot, so the gradient is just the inverse gather.
    """

    @staticmethod
    def forward(ctx, rows: torch.Tensor, padding_row: torch.Tensor, geometry: WindowGeometry) -> torch.Tensor:
        ctx.geometry = geometry
        out = rows.index_select(0, geometry.gather)
        # index_copy_, not ``out[padding] = row``: that broadcasting index_put is ~1000x slower on CPU
        out.index_copy_(0, geometry.padding, padding_row.to(out.dtype).expand(geometry.padding.shape[0], -1))
        return out

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        geometry = ctx.geometry
        grad_rows = grad.index_select(0, geometry.scatter) if ctx.needs_input_grad[0] else None
        grad_padding = grad.index_select(0, geometry.padding).sum(0) if ctx.needs_input_grad[1] else None
        return grad_rows, grad_padding, None


class _FromWindows(torch.autograd.Function):
    """Window slots -> token rows (un-shift, un-partition and crop); the inverse of :class:`_ToWindows`."""

    @staticmethod
    def forward(ctx, windows: torch.Tensor, geometry: WindowGeometry) -> torch.Tensor:
        ctx.geometry = geometry
        return windows.index_select(0, geometry.scatter)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        geometry = ctx.geometry
        grad_windows = grad.index_select(0, geometry.gather)
        grad_windows.index_fill_(0, geometry.padding, 0)
        return grad_windows, None


class ShiftedWindowAttention(nn.Module):
    """W-MSA (``shift == 0``) or SW-MSA on a (B, H*W, C) token map of known height and width."""

    def __init__(self, dim: int, num_heads: int, window_size: int, shift: int, qkv_bias: bool = True):
        super().__init__()
        if dim % num_heads:
            raise ValueError(f"dim {dim} is not divisible by num_heads {num_heads}")
        self.num_heads = num_heads
        self.window_size = window_size
        self.shift = shift
        self.qkv = Linear(dim, 3 * dim, bias=qkv_bias)
        self.proj = Linear(dim, dim)
        self.relative_position_bias_table = nn.Parameter(torch.zeros((2 * window_size - 1) ** 2, num_heads))
        self.register_buffer("relative_position_index", relative_position_index(window_size), persistent=False)
        self._bias_cache: dict[tuple, torch.Tensor] = {}

    def relative_position_bias(self) -> torch.Tensor:
        """(heads, N, N) bias gathered from the learnable table."""
        n = self.window_size ** 2
        bias = self.relative_position_bias_table[self.relative_position_index.view(-1)]
        return bias.view(n, n, self.num_heads).permute(2, 0, 1)

    def attention_bias(self, dtype: torch.dtype) -> torch.Tensor:
        """(1, heads, N, N) relative position bias in ``dtype``.

        Cached when no gradient can flow into the bias table (inference); the key holds the table's
        version, so an in-place weight change recomputes it.
        """
        table = self.relative_position_bias_table
        if (torch.is_grad_enabled() and table.requires_grad) or torch.compiler.is_compiling() or \
                torch.compiler.is_exporting():
            return self.relative_position_bias().unsqueeze(0).to(dtype)
        key = version_key(table)
        if key is None:  # an inference tensor: no version counter, so no safe cache
            return self.relative_position_bias().unsqueeze(0).to(dtype)
        key = (key, dtype)
        if key not in self._bias_cache:
            self._bias_cache.clear()
            with torch.inference_mode(False), torch.no_grad():  # usable outside inference mode too
                self._bias_cache[key] = self.relative_position_bias().unsqueeze(0).to(dtype)
        return self._bias_cache[key]

    def forward(self, x: torch.Tensor, h: int, w: int) -> torch.Tensor:
        if export_friendly.use_export_path():  # one graph for every size: no per-size index tensors
            return export_friendly.window_attention(x, h, w, qkv=self.qkv, proj=self.proj,
                                                    bias=self.relative_position_bias(), num_heads=self.num_heads,
                                                    window_size=self.window_size, shift=self.shift)
        b, tokens, c = x.shape
        heads, n = self.num_heads, self.window_size ** 2
        qkv = self.qkv(x).reshape(b * tokens, 3 * c)
        geometry = window_geometry(b, h, w, self.window_size, self.shift, x.device, qkv.dtype)
        padding = self.qkv.bias if self.qkv.bias is not None else qkv.new_zeros(3 * c)  # q/k/v of a zero token
        windows = _ToWindows.apply(qkv, padding, geometry).view(-1, n, 3, heads, c // heads)
        q, k, v = windows.permute(2, 0, 3, 1, 4).unbind(0)  # each (B * nW, heads, N, d)
        mask = self.attention_bias(q.dtype)
        if self.shift:  # (B * nW, heads, N, N), made per call: cached per block it would outgrow the activations
            mask = mask + geometry.shift_mask
        if mask.requires_grad:  # training the bias table: the fused CPU kernel gives no mask gradient
            scores = torch.matmul(q * q.shape[-1] ** -0.5, k.transpose(-2, -1)) + mask
            out = torch.matmul(scores.softmax(-1), v)
        else:
            out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
        out = _FromWindows.apply(out.transpose(1, 2).reshape(-1, c), geometry)  # real tokens, map order
        return self.proj(out).view(b, tokens, c)
