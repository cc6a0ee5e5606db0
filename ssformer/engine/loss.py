"""Pixel-wise cross-entropy averaged as mmseg 0.24.1 averages it."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def segmentation_loss(logits: torch.Tensor, labels: torch.Tensor, ignore_index: int = 255,
                      avg_non_ignore: bool = False) -> torch.Tensor:
    """Cross-entropy of (B, K, h, w) logits against (B, H, W) labels.

    The logits are first resized to the label size (bilinear, ``align_corners=False``) in float32.
    With ``avg_non_ignore=False`` (the official setting) ignored pixels contribute 0 but still count
    in the denominator, i.e. the mean is over all B*H*W pixels; with ``True`` it is over the
    non-ignored pixels only (mmseg divides by their count plus float32 eps).
    """
    if labels.dim() != 3 or logits.dim() != 4 or logits.shape[0] != labels.shape[0]:
        raise ValueError(f"expected logits (B, K, h, w) and labels (B, H, W), got {tuple(logits.shape)} "
                         f"and {tuple(labels.shape)}")
    logits = logits.float()
    if logits.shape[2:] != labels.shape[1:]:
        logits = F.interpolate(logits, size=labels.shape[1:], mode="bilinear", align_corners=False)
    per_pixel = F.cross_entropy(logits, labels.long(), ignore_index=ignore_index, reduction="none")
    if avg_non_ignore:
        count = (labels != ignore_index).sum()
        return per_pixel.sum() / (count.float() + torch.finfo(torch.float32).eps)
    return per_pixel.mean()
