"""Cross-entropy averaged as mmseg 0.24.1 does, on a hand-computed example."""

from __future__ import annotations

import math

import pytest
import torch

from ssformer.engine.loss import segmentation_loss


def _example():
    # 1 image, 2 classes, 1x3 pixels; logits (0, 0) everywhere except pixel 1 = (ln 3, 0)
    logits = torch.zeros(1, 2, 1, 3)
    logits[0, 0, 0, 1] = math.log(3.0)
    labels = torch.tensor([[[0, 0, 255]]])
    return logits, labels


def test_ignored_pixels_stay_in_the_denominator():
    logits, labels = _example()
    # pixel 0: -ln(1/2) = ln 2; pixel 1: -ln(3/4); pixel 2 ignored -> 0; mean over 3 pixels
    expected = (math.log(2) - math.log(0.75)) / 3
    assert segmentation_loss(logits, labels).item() == pytest.approx(expected, rel=1e-6)


def test_avg_non_ignore_divides_by_valid_pixels():
    logits, labels = _example()
    expected = (math.log(2) - math.log(0.75)) / 2
    assert segmentation_loss(logits, labels, avg_non_ignore=True).item() == pytest.approx(expected, rel=1e-6)


def test_logits_are_upsampled_to_the_label_size():
    # constant logits upsample to the same constants: loss = ln(1 + e^-2) for class 0 with margin 2
    logits = torch.zeros(2, 3, 2, 2)
    logits[:, 0] = 2.0
    logits[:, 1] = 0.0
    logits[:, 2] = -1e4
    labels = torch.zeros(2, 8, 8, dtype=torch.long)
    assert segmentation_loss(logits, labels).item() == pytest.approx(math.log(1 + math.exp(-2)), rel=1e-6)


def test_all_ignored_gives_zero():
    logits = torch.randn(1, 4, 2, 2)
    labels = torch.full((1, 2, 2), 255)
    assert segmentation_loss(logits, labels).item() == 0.0
    assert segmentation_loss(logits, labels, avg_non_ignore=True).item() == 0.0


def test_bad_shapes_are_named():
    with pytest.raises(ValueError, match="labels"):
        segmentation_loss(torch.zeros(1, 2, 4, 4), torch.zeros(1, 1, 4, 4, dtype=torch.long))
