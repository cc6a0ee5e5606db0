"""Whole-image, sliding-window and multi-scale/flip inference on normalised image tensors.

These are the test-time procedures of the official evaluation (mmseg 0.24.1 ``EncoderDecoder``):

* whole: one forward pass; logits at the input size.
* slide: a grid of ``crop`` windows every ``stride`` pixels,
  ``max(ceil((H - crop) / stride), 0) + 1`` rows (columns alike); the last window in each
  direction is moved back so it ends at the image border, a window never leaves the image (when
  the image is smaller than the crop, the window is the whole image), and overlapping logits are
  averaged by how many windows covered each pixel.
* TTA: softmax probabilities averaged over rescaled and horizontally flipped copies.

All functions take a batch ``(B, C, H, W)`` of already normalised images, run without gradients
and return float32 logits (or probabilities for TTA) at the input size, or at ``out_size`` when given
(bilinear, ``align_corners=False``). The procedure's settings (mode, crop, stride, TTA scales, flip)
come whole, as the model's :class:`~ssformer.data.preprocessing.Preprocessing`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from ssformer.data.preprocessing import Preprocessing
from ssformer.errors import UserError
from ssformer.models.ssformer import upsample_logits


def _pair(value: int | Sequence[int], name: str) -> tuple[int, int]:
    pair = (int(value), int(value)) if isinstance(value, int) else tuple(int(v) for v in value)
    if len(pair) != 2 or min(pair) < 1:
        raise UserError(f"{name} must be a positive int or (height, width), got {value!r}")
    return pair  # type: ignore[return-value]


def _check_images(images: torch.Tensor) -> None:
    if images.dim() != 4:
        raise ValueError(f"expected images of shape (B, C, H, W), got {tuple(images.shape)}")
    if images.shape[2] < 1 or images.shape[3] < 1:
        raise ValueError(f"images have zero size: {tuple(images.shape)}")


def resize_logits(logits: torch.Tensor, size: Sequence[int] | None) -> torch.Tensor:
    """Bilinear (``align_corners=False``) resize to ``size`` (H, W); no-op when already there."""
    if size is None or tuple(logits.shape[2:]) == tuple(size):
        return logits
    return upsample_logits(logits, tuple(int(s) for s in size))


def window_starts(length: int, crop: int, stride: int) -> list[tuple[int, int]]:
    """(start, end) of every window along one axis, in mmseg's slide order and clamping."""
    grids = max(math.ceil((length - crop) / stride), 0) + 1
    spans = []
    for i in range(grids):
        end = min(i * stride + crop, length)
        spans.append((max(end - crop, 0), end))
    return spans


@torch.no_grad()
def whole_inference(model: nn.Module, images: torch.Tensor,
                    out_size: Sequence[int] | None = None) -> torch.Tensor:
    """One forward pass over the whole (B, C, H, W) batch; float32 logits."""
    _check_images(images)
    return resize_logits(model(images).float(), out_size)


@torch.no_grad()
def slide_inference(model: nn.Module, images: torch.Tensor, num_classes: int,
                    crop: int | Sequence[int] = 512, stride: int | Sequence[int] = 341,
                    out_size: Sequence[int] | None = None, pad_crops: bool = False,
                    windows_per_batch: int = 1) -> torch.Tensor:
    """Count-averaged logits of overlapping ``crop`` windows placed every ``stride`` pixels.

    ``pad_crops=True`` zero-pads a window that is smaller than ``crop`` (an image smaller than
    the crop) to the full crop size and cuts its logits back; that keeps every forward pass the
    same shape (useful for fixed-shape exported models) but, unlike the default, no longer equals
    whole-image inference on small images. ``windows_per_batch`` windows of every image run in
    one forward pass (more is faster on GPUs, uses more memory).
    """
    _check_images(images)
    crop_h, crop_w = _pair(crop, "crop")
    stride_h, stride_w = _pair(stride, "stride")
    if windows_per_batch < 1:
        raise UserError(f"windows_per_batch must be >= 1, got {windows_per_batch}")
    b, _, h, w = images.shape
    windows = [(y, x) for y in window_starts(h, crop_h, stride_h) for x in window_starts(w, crop_w, stride_w)]
    logits = images.new_zeros((b, num_classes, h, w), dtype=torch.float32)
    counts = images.new_zeros((1, 1, h, w), dtype=torch.float32)
    for first in range(0, len(windows), windows_per_batch):
        group = windows[first:first + windows_per_batch]
        crops = torch.cat([images[:, :, y0:y1, x0:x1] for (y0, y1), (x0, x1) in group])
        ch, cw = crops.shape[2:]
        if pad_crops and (ch < crop_h or cw < crop_w):
            crops = F.pad(crops, (0, crop_w - cw, 0, crop_h - ch))
        out = model(crops)[:, :, :ch, :cw].float()
        if out.shape[1] != num_classes:
            raise ValueError(f"model returned {out.shape[1]} classes, expected num_classes={num_classes}")
        for k, ((y0, y1), (x0, x1)) in enumerate(group):
            logits[:, :, y0:y1, x0:x1] += out[k * b:(k + 1) * b]
            counts[:, :, y0:y1, x0:x1] += 1
    return resize_logits(logits / counts, out_size)


@torch.no_grad()
def tta_inference(model: nn.Module, images: torch.Tensor, num_classes: int | None = None,
                  preprocessing: Preprocessing | None = None, out_size: Sequence[int] | None = None) -> torch.Tensor:
    """Softmax probabilities averaged over ``preprocessing.tta_scales`` x (as is, flipped left-right when
    ``preprocessing.flip``); default :class:`Preprocessing` settings when None.

    Each copy is the batch resized by a factor (bilinear) and run in ``preprocessing.mode`` ("whole"
    or "slide", which needs ``num_classes``); its probabilities are resized back to ``out_size``
    (default: the input size) before averaging, as mmseg's ``aug_test`` does.
    """
    _check_images(images)
    p = preprocessing or Preprocessing()
    scales, flip, mode = p.tta_scales, p.flip, p.mode
    if not scales or min(scales) <= 0:
        raise UserError(f"scales must be positive factors, got {tuple(scales)}")
    if mode not in ("whole", "slide"):
        raise UserError(f"mode must be 'whole' or 'slide', got {mode!r}")
    if mode == "slide" and num_classes is None:
        raise ValueError("slide mode needs num_classes")
    size = tuple(out_size) if out_size is not None else tuple(images.shape[2:])
    total = None
    copies = 0
    for scale in scales:
        scaled_size = (max(1, int(images.shape[2] * scale + 0.5)), max(1, int(images.shape[3] * scale + 0.5)))
        scaled = resize_logits(images, scaled_size)
        for flipped in ((False, True) if flip else (False,)):
            x = scaled.flip(3) if flipped else scaled
            if mode == "whole":
                logits = whole_inference(model, x)
            else:
                logits = slide_inference(model, x, num_classes, p.crop_size, p.stride)  # type: ignore[arg-type]
            if flipped:
                logits = logits.flip(3)
            probs = resize_logits(logits, size).softmax(dim=1)
            total = probs if total is None else total + probs
            copies += 1
    return total / copies  # type: ignore[operator]


def infer(model: nn.Module, images: torch.Tensor, num_classes: int, out_size: Sequence[int] | None = None,
          preprocessing: Preprocessing | None = None, tta: bool = False) -> torch.Tensor:
    """The one dispatch of evaluation and prediction: whole, slide or TTA scores at ``out_size``
    (logits; averaged probabilities with TTA), as ``preprocessing`` says (default: :class:`Preprocessing`'s
    defaults, whole-image)."""
    p = preprocessing or Preprocessing()
    if tta:
        return tta_inference(model, images, num_classes, p, out_size)
    if p.mode == "slide":
        return slide_inference(model, images, num_classes, p.crop_size, p.stride, out_size=out_size)
    if p.mode != "whole":
        raise UserError(f"mode must be 'whole' or 'slide', got {p.mode!r}")
    return whole_inference(model, images, out_size=out_size)
