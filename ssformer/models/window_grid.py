"""The window grid of Swin: partition and reverse, the cyclic shift, relative positions, the shift mask.

Plain tensor ops shared by the attention written as in the paper (:mod:`ssformer.models.attention`)
and its fast path (:mod:`ssformer.models.fast.windows`), so both use one definition of the mask.
"""

from __future__ import annotations

import torch

SHIFT_MASK_VALUE = -100.0


def relative_position_index(window_size: int) -> torch.Tensor:
    """(N, N) index into the (2w-1)^2 bias table for every (query, key) pair in a window."""
    coords = torch.stack(torch.meshgrid(torch.arange(window_size), torch.arange(window_size), indexing="ij"))
    coords = coords.flatten(1)  # (2, N)
    delta = coords[:, :, None] - coords[:, None, :] + (window_size - 1)  # (2, N, N), each in [0, 2w-2]
    return delta[0] * (2 * window_size - 1) + delta[1]


def roll(x: torch.Tensor, shift: int, dim: int) -> torch.Tensor:
    """``torch.roll(x, shift, dim)`` for ``-size <= shift <= size``, as two slices (traceable at any size)."""
    cut = x.shape[dim] - shift if shift >= 0 else -shift
    return torch.cat((x.narrow(dim, cut, x.shape[dim] - cut), x.narrow(dim, 0, cut)), dim)


def window_partition(x: torch.Tensor, rows: int, cols: int, window_size: int) -> torch.Tensor:
    """(B, rows * ws, cols * ws, C) -> (B, rows * cols, ws * ws, C), windows in row-major order."""
    b, c, ws = x.shape[0], x.shape[-1], window_size
    x = x.reshape(b, rows, ws, cols, ws, c).permute(0, 1, 3, 2, 4, 5)
    return x.reshape(b, rows * cols, ws * ws, c)


def window_reverse(windows: torch.Tensor, rows: int, cols: int, window_size: int) -> torch.Tensor:
    """(B, rows * cols, ws * ws, C) -> (B, rows * ws, cols * ws, C): the inverse of :func:`window_partition`."""
    b, c, ws = windows.shape[0], windows.shape[-1], window_size
    x = windows.reshape(b, rows, cols, ws, ws, c).permute(0, 1, 3, 2, 4, 5)
    return x.reshape(b, rows * ws, cols * ws, c)


def _region_labels(padded: int, window_size: int, shift: int, device: torch.device | None) -> torch.Tensor:
    """Band of each padded row (or column): 0 before ``padded - ws``, 1 before ``padded - shift``, else 2.

    The official code labels the same three bands by slicing (``slice(0, -ws)``, ``slice(-ws, -shift)``,
    ``slice(-shift, None)``); comparisons on ``arange`` give them for a symbolic size too.
    """
    index = torch.arange(padded, device=device)
    return (index >= padded - window_size).long() + (index >= padded - shift).long()


def shift_window_mask(rows: int, cols: int, window_size: int, shift: int, device: torch.device | None = None,
                      dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """(rows * cols, N, N) additive mask of a rolled map: -100 where query and key came from different regions."""
    hp, wp = rows * window_size, cols * window_size
    region = (_region_labels(hp, window_size, shift, device)[:, None] * 3 +
              _region_labels(wp, window_size, shift, device)[None, :])
    windows = window_partition(region[None, :, :, None], rows, cols, window_size)[0, :, :, 0]  # (nW, N)
    different = windows[:, None, :] != windows[:, :, None]
    return torch.where(different, torch.full((), SHIFT_MASK_VALUE, dtype=dtype, device=device),
                       torch.zeros((), dtype=dtype, device=device))
