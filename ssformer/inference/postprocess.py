"""Resize-and-argmax without the full-size logits: memory set by the model, not by the image.

The official test path resizes the (K, h, w) logits to the original (H, W) image size (bilinear,
``align_corners=False``) and then takes the argmax over the K classes. For a 6000x6000 image and
150 classes the resized tensor alone is 21.6 GB. :func:`resized_argmax` gives the same mask while
holding at most ``max_elements`` resized values at a time: it resizes the logits a group of classes
at a time and keeps a running maximum and its class index.

Why groups of classes and not bands of output rows: a row band cannot be cut out of PyTorch's
resize kernel (its source coordinates depend on the whole output height), and re-deriving the
kernel's float arithmetic by hand would differ from it in the last bit on some builds (fused
multiply-adds), which flips the argmax at near ties. Bilinear resizing treats every channel of a
contiguous NCHW tensor alike, so resizing a group of channels gives bit-identical values to
resizing all of them, on any device; the masks are therefore identical by construction, and the
tests check it on random logits. (The channels-last CPU kernel vectorises across channels, so the
logits are made NCHW-contiguous first: that costs one copy at the model's resolution.)
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F

from ssformer.errors import UserError

# Resized values held at once (float32): 2**26 = 64 Mi values = 256 MiB.
DEFAULT_MAX_ELEMENTS = 1 << 26


def class_group_size(num_classes: int, out_size: Sequence[int], max_elements: int = DEFAULT_MAX_ELEMENTS) -> int:
    """How many classes to resize together so one group holds at most ``max_elements`` values (>= 1)."""
    pixels = int(out_size[0]) * int(out_size[1])
    return max(1, min(num_classes, max_elements // max(pixels, 1)))


def _resize(logits: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    if tuple(logits.shape[-2:]) == size:
        return logits
    return F.interpolate(logits, size=size, mode="bilinear", align_corners=False)


@torch.no_grad()
def resized_argmax(logits: torch.Tensor, out_size: Sequence[int], max_elements: int | None = None) -> torch.Tensor:
    """``F.interpolate(logits, out_size, bilinear, align_corners=False).argmax(1)`` for (B, K, h, w)
    logits, as (B, H, W) int64, without holding the (B, K, H, W) tensor.

    Ties and NaNs resolve as :func:`torch.argmax` does (the first maximal class; the first NaN).
    ``max_elements`` defaults to the module's ``DEFAULT_MAX_ELEMENTS``.
    """
    if logits.dim() != 4:
        raise ValueError(f"expected logits of shape (B, K, h, w), got {tuple(logits.shape)}")
    size = (int(out_size[0]), int(out_size[1]))
    if min(size) < 1:
        raise ValueError(f"output size must be positive, got {size}")
    batch, classes = logits.shape[:2]
    group = class_group_size(classes, size, DEFAULT_MAX_ELEMENTS if max_elements is None else max_elements)
    logits = logits.float().contiguous()  # NCHW: see the module docstring
    if group >= classes:
        return _resize(logits, size).argmax(dim=1)
    finite = bool(torch.isfinite(logits).all())
    masks = []
    for b in range(batch):
        image = logits[b:b + 1]
        best = index = None
        for first in range(0, classes, group):
            resized = _resize(image[:, first:first + group], size)
            values, local = (resized[:, 0], None) if resized.shape[1] == 1 else resized.max(dim=1)
            del resized
            if best is None:
                best = values.clone()
                index = (local if local is not None else torch.zeros_like(values, dtype=torch.long)).to(torch.int32)
                continue
            better = values > best if finite else (values > best) | (values.isnan() & ~best.isnan())
            if local is None:
                index.masked_fill_(better, first)
            else:
                index = torch.where(better, local.to(torch.int32) + first, index)
            if finite:
                torch.maximum(best, values, out=best)  # equal values keep the earlier class (strict > above)
            else:
                best = torch.where(better, values, best)
            del values, local, better
        masks.append(index.long())
    return torch.cat(masks)


def full_size_bytes(num_classes: int, out_size: Sequence[int], itemsize: int = 4) -> int:
    """Bytes of a (K, H, W) array at the output size: what probabilities (or TTA) need."""
    return int(num_classes) * int(out_size[0]) * int(out_size[1]) * int(itemsize)


def check_full_size(num_classes: int, out_size: Sequence[int], limit_bytes: int, what: str) -> None:
    """Refuse, with the numbers, a (K, H, W) float32 result above ``limit_bytes``."""
    needed = full_size_bytes(num_classes, out_size)
    if needed > limit_bytes:
        raise UserError(f"{what} for a {out_size[0]}x{out_size[1]} image needs {needed / 2**30:.1f} GiB "
                        f"({num_classes} classes x {out_size[0]} x {out_size[1]} float32), above the limit of "
                        f"{limit_bytes / 2**30:.1f} GiB; use masks (no probabilities, no TTA) for images this large, "
                        "or raise the limit")
