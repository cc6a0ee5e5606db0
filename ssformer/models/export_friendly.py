"""Shifted-window attention spelt out with shape-generic tensor ops, for exports with dynamic sizes.

The fast path in :mod:`ssformer.models.attention` precomputes gather indices per feature-map size
(Python-side caches, ``nonzero``), which ``torch.export`` can only trace at one size. Here every
step is an op whose output shape is an expression of the symbolic height and width, so one
exported graph runs at any input size:

* the normalised tokens are always zero-padded bottom/right (by 0 when the size is a multiple of
  the window) to ``ceil(h / ws) * ws``: padded sizes are written as ``windows * ws`` so the window
  partition's views need no shape reasoning;
* the cyclic shift is a concatenation of two slices (``torch.roll`` with a constant shift);
* the shift mask comes from comparisons on ``arange``: a padded row's region is
  ``(row >= hp - ws) + (row >= hp - shift)``, the same three bands as the official slicing;
* attention is matmul + softmax with the relative position bias and the -100 shift mask added.

The numbers are those of the fast path and the official model (same padding, shift kept even when
the map is no larger than one window, -100 for masked scores). Used only while exporting
(:func:`use_export_path`); eager inference keeps the fast path.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

SHIFT_MASK_VALUE = -100.0


def use_export_path() -> bool:
    """True while ``torch.export`` (strict or not) or the TorchScript tracer records the model."""
    return torch.compiler.is_exporting() or torch.jit.is_tracing()


def _roll(x: torch.Tensor, shift: int, dim: int) -> torch.Tensor:
    """``torch.roll(x, -shift, dim)`` for ``0 <= shift <= x.shape[dim]``, as two slices (any size)."""
    return torch.cat((x.narrow(dim, shift, x.shape[dim] - shift), x.narrow(dim, 0, shift)), dim)


def _unroll(x: torch.Tensor, shift: int, dim: int) -> torch.Tensor:
    """``torch.roll(x, shift, dim)``: the inverse of :func:`_roll`."""
    size = x.shape[dim]
    return torch.cat((x.narrow(dim, size - shift, shift), x.narrow(dim, 0, size - shift)), dim)


def _partition(x: torch.Tensor, rows: int, cols: int, ws: int) -> torch.Tensor:
    """(B, rows * ws, cols * ws, C) -> (B, rows * cols, ws * ws, C), windows in row-major order."""
    b, c = x.shape[0], x.shape[-1]
    x = x.reshape(b, rows, ws, cols, ws, c).permute(0, 1, 3, 2, 4, 5)
    return x.reshape(b, rows * cols, ws * ws, c)


def _region_labels(padded: int, ws: int, shift: int, device: torch.device) -> torch.Tensor:
    """Band of each padded row (or column): 0 before ``padded - ws``, 1 before ``padded - shift``, else 2."""
    index = torch.arange(padded, device=device)
    return (index >= padded - ws).long() + (index >= padded - shift).long()


def shift_mask(rows: int, cols: int, ws: int, shift: int, device: torch.device, dtype: torch.dtype
               ) -> torch.Tensor:
    """(rows * cols, 1, N, N) additive mask: -100 where query and key came from different regions."""
    hp, wp = rows * ws, cols * ws
    region = _region_labels(hp, ws, shift, device)[:, None] * 3 + _region_labels(wp, ws, shift, device)[None, :]
    windows = _partition(region[None, :, :, None], rows, cols, ws)[0, :, :, 0]  # (nW, N)
    different = windows[:, None, :] != windows[:, :, None]
    mask = torch.where(different, torch.full((), SHIFT_MASK_VALUE, dtype=dtype, device=device),
                       torch.zeros((), dtype=dtype, device=device))
    return mask.unsqueeze(1)


def window_attention(x: torch.Tensor, h: int, w: int, *, qkv: torch.nn.Linear, proj: torch.nn.Linear,
                     bias: torch.Tensor, num_heads: int, window_size: int, shift: int) -> torch.Tensor:
    """(B, h*w, C) tokens -> attention output (B, h*w, C); ``bias`` is the (heads, N, N) position bias."""
    b, _, c = x.shape
    ws, n, d = window_size, window_size ** 2, c // num_heads
    rows, cols = (h + ws - 1) // ws, (w + ws - 1) // ws
    x = F.pad(x.reshape(b, h, w, c), (0, 0, 0, cols * ws - w, 0, rows * ws - h))
    if shift:
        x = _roll(_roll(x, shift, 1), shift, 2)
    windows = _partition(x, rows, cols, ws)  # (B, nW, N, C)
    q, k, v = qkv(windows).reshape(b, rows * cols, n, 3, num_heads, d).permute(3, 0, 1, 4, 2, 5).unbind(0)
    scores = torch.matmul(q * d ** -0.5, k.transpose(-2, -1)) + bias.to(q.dtype)  # (B, nW, heads, N, N)
    if shift:
        scores = scores + shift_mask(rows, cols, ws, shift, x.device, scores.dtype)
    out = torch.matmul(scores.softmax(-1), v)  # (B, nW, heads, N, d)
    out = out.permute(0, 1, 3, 2, 4).reshape(b, rows, cols, ws, ws, c).permute(0, 1, 3, 2, 4, 5)
    out = out.reshape(b, rows * ws, cols * ws, c)
    if shift:
        out = _unroll(_unroll(out, shift, 1), shift, 2)
    out = out[:, :h, :w].reshape(b, h * w, c)
    return proj(out)
