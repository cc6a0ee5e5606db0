"""Dice, focal, Lovász-softmax and OHEM against their formulas on small hand-made inputs."""

from __future__ import annotations

import math

import pytest
import torch

from ssformer.engine.loss_terms import (
    dice_loss,
    focal_loss,
    lovasz_softmax_loss,
    ohem_pixel_weight,
)


def _logits_for(probabilities: torch.Tensor) -> torch.Tensor:
    """(B, K, H, W) logits whose softmax over K is ``probabilities``."""
    return probabilities.log()


def test_dice_formula():
    # 1 image, 2 classes, 3 pixels (the third ignored); p(class 0) = 0.8, 0.4, 0.5; labels 0, 1, ignored
    p0 = torch.tensor([0.8, 0.4, 0.5])
    probabilities = torch.stack([p0, 1 - p0]).view(1, 2, 1, 3)
    labels = torch.tensor([[[0, 1, 255]]])
    # mmseg 0.24.1: the ignored pixel stays in the denominator, its one-hot is class K-1 = 1 (255 clamped)
    # class 0: num = 2 * 0.8 + 1, den = (0.64 + 1) + (0.16 + 0) + (0.25 + 0) + 1
    # class 1: num = 2 * 0.6 + 1, den = (0.04 + 0) + (0.36 + 1) + (0.25 + 1) + 1
    d0 = 1 - (2 * 0.8 + 1) / (0.64 + 1 + 0.16 + 0.25 + 1)
    d1 = 1 - (2 * 0.6 + 1) / (0.04 + 0.36 + 1 + 0.25 + 1 + 1)
    loss = dice_loss(_logits_for(probabilities), labels)
    assert loss.item() == pytest.approx((d0 + d1) / 2, rel=1e-5)
    weighted = dice_loss(_logits_for(probabilities), labels, class_weight=torch.tensor([2.0, 0.5]))
    assert weighted.item() == pytest.approx((2 * d0 + 0.5 * d1) / 2, rel=1e-5)
    # exclude_ignored: the labelled pixels alone
    e0 = 1 - (2 * 0.8 + 1) / (0.64 + 1 + 0.16 + 1)
    e1 = 1 - (2 * 0.6 + 1) / (0.04 + 0.36 + 1 + 1)
    excluded = dice_loss(_logits_for(probabilities), labels, exclude_ignored=True)
    assert excluded.item() == pytest.approx((e0 + e1) / 2, rel=1e-5)


def test_focal_formula():
    # one labelled pixel of class 1 and one ignored pixel, 2 classes
    logits = torch.tensor([[[[0.3, 5.0]], [[-1.2, 5.0]]]])  # (1, 2, 1, 2)
    labels = torch.tensor([[[1, 255]]])
    gamma, alpha = 2.0, 0.25

    def term(x, t):
        s = 1 / (1 + math.exp(-x))
        bce = -(t * math.log(s) + (1 - t) * math.log(1 - s))
        return bce * (alpha * t + (1 - alpha) * (1 - t)) * ((1 - s) * t + s * (1 - t)) ** gamma

    expected = (term(0.3, 0) + term(-1.2, 1)) / 4  # mean over 2 pixels x 2 classes, the ignored one adds 0
    assert focal_loss(logits, labels, gamma=gamma, alpha=alpha).item() == pytest.approx(expected, rel=1e-6)
    per_class_alpha = focal_loss(logits, labels, gamma=gamma, alpha=[alpha, alpha])
    assert per_class_alpha.item() == pytest.approx(expected, rel=1e-6)
    ohem = focal_loss(logits, labels, gamma=gamma, alpha=alpha, pixel_weight=torch.tensor([[[0.0, 1.0]]]))
    assert ohem.item() == 0.0


def test_lovasz_of_hard_predictions_is_one_minus_iou():
    # With 0/1 probabilities the Lovász extension equals the Jaccard loss: mean over present classes of 1 - IoU.
    labels = torch.tensor([[[0, 0, 1, 1, 2, 255]]])
    predicted = torch.tensor([[[0, 1, 1, 1, 0, 2]]])
    logits = torch.nn.functional.one_hot(predicted, 4).permute(0, 3, 1, 2).float() * 100
    iou = {0: 1 / 3, 1: 2 / 3, 2: 0.0}  # class 0: 1 of (0,0,4); class 1: 2 of (1,2,3); class 2: 0 of (4)
    present = lovasz_softmax_loss(logits, labels)
    assert present.item() == pytest.approx(sum(1 - v for v in iou.values()) / 3, abs=1e-6)
    # 'all' also averages class 3, absent and never predicted on a labelled pixel: loss 0
    assert lovasz_softmax_loss(logits, labels, classes="all").item() == pytest.approx(
        sum(1 - v for v in iou.values()) / 4, abs=1e-6)
    weighted = lovasz_softmax_loss(logits, labels, classes=[1, 2], class_weight=torch.tensor([1.0, 3.0, 0.5, 1.0]))
    assert weighted.item() == pytest.approx((3 * (1 - iou[1]) + 0.5 * (1 - iou[2])) / 2, abs=1e-6)


def test_lovasz_per_image_averages_images():
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(2, 3, 4, 4, generator=g)
    labels = torch.randint(0, 3, (2, 4, 4), generator=g)
    each = [lovasz_softmax_loss(logits[i:i + 1], labels[i:i + 1]) for i in range(2)]
    assert lovasz_softmax_loss(logits, labels, per_image=True).item() == pytest.approx(
        (each[0] + each[1]).item() / 2, rel=1e-6)


def test_lovasz_all_ignored_is_zero_with_a_gradient():
    logits = torch.randn(1, 3, 2, 2, requires_grad=True)
    loss = lovasz_softmax_loss(logits, torch.full((1, 2, 2), 255))
    loss.backward()
    assert loss.item() == 0.0 and torch.equal(logits.grad, torch.zeros_like(logits))


def test_ohem_threshold_and_min_kept():
    labels = torch.tensor([[[0, 1, 2, 255, 0, 1]]])
    probability = torch.tensor([[[0.9, 0.2, 0.6, 0.0, 0.75, 0.5]]])
    # thresh 0.7 decides (min_kept 2: the 0-based 2nd smallest labelled probability, 0.6, is below 0.7)
    weight = ohem_pixel_weight(labels, 255, min_kept=2, thresh=0.7, true_class_probability=probability)
    assert weight.tolist() == [[[0, 1, 1, 0, 0, 1]]]
    # min_kept 3 raises the threshold to the 0-based 3rd smallest (0.75): kept are those strictly below it
    weight = ohem_pixel_weight(labels, 255, min_kept=3, thresh=0.3, true_class_probability=probability)
    assert weight.tolist() == [[[0, 1, 1, 0, 0, 1]]]
    # min_kept beyond the labelled count: the largest probability is the threshold, so it alone is dropped
    weight = ohem_pixel_weight(labels, 255, min_kept=100, thresh=0.3, true_class_probability=probability)
    assert weight.tolist() == [[[0, 1, 1, 0, 1, 1]]]


def test_ohem_top_loss():
    labels = torch.tensor([[[0, 1, 255, 1]], [[0, 0, 1, 1]]])
    losses = torch.tensor([[[0.1, 2.0, 9.0, 0.5]], [[3.0, 0.2, 1.0, 0.05]]])
    weight = ohem_pixel_weight(labels, 255, min_kept=2, pixel_loss=losses)  # 2 per image -> top 4 labelled
    assert weight.tolist() == [[[0, 1, 0, 1]], [[1, 0, 1, 0]]]
