"""Cross-entropy averaged as mmseg 0.24.1 does, on a hand-computed example."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

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


def _resize_then_cross_entropy(logits: torch.Tensor, labels: torch.Tensor, ignore_index: int = 255,
                               avg_non_ignore: bool = False) -> torch.Tensor:
    """The official formulation (mmseg decode head): resize to the label size, then F.cross_entropy."""
    logits = F.interpolate(logits.float(), size=labels.shape[1:], mode="bilinear", align_corners=False)
    per_pixel = F.cross_entropy(logits, labels, ignore_index=ignore_index, reduction="none")
    if avg_non_ignore:
        return per_pixel.sum() / ((labels != ignore_index).sum() + torch.finfo(torch.float32).eps)
    return per_pixel.mean()


@pytest.mark.parametrize("logits_size, label_size", [((7, 9), (27, 35)), ((5, 6), (3, 13)), ((4, 4), (4, 4)),
                                                     ((1, 1), (5, 3)), ((16, 12), (64, 48)), ((9, 2), (37, 5))])
@pytest.mark.parametrize("avg_non_ignore", [False, True])
def test_banded_loss_and_gradient_equal_resize_then_cross_entropy(logits_size, label_size, avg_non_ignore,
                                                                 monkeypatch, device):
    import ssformer.engine.loss as loss_module

    monkeypatch.setattr(loss_module, "_BAND_ELEMENTS_CPU", 200)  # many bands, even at these sizes
    monkeypatch.setattr(loss_module, "_BAND_ELEMENTS_GPU", 200)
    generator = torch.Generator().manual_seed(sum(logits_size + label_size))
    logits = (torch.randn(2, 5, *logits_size, generator=generator, dtype=torch.float64) * 3).to(device)
    labels = torch.randint(0, 5, (2, *label_size), generator=generator)
    labels[:, ::3, ::2] = 255
    labels = labels.to(device)
    ours, reference = logits.clone().requires_grad_(), logits.clone().requires_grad_()
    loss = segmentation_loss(ours, labels, avg_non_ignore=avg_non_ignore)
    expected = _resize_then_cross_entropy(reference, labels, avg_non_ignore=avg_non_ignore)
    loss.backward()
    expected.backward()
    torch.testing.assert_close(loss.double(), expected.double(), rtol=1e-6, atol=1e-7)
    torch.testing.assert_close(ours.grad, reference.grad, rtol=1e-5, atol=1e-8)
    assert ours.grad.dtype == torch.float64


def test_banded_loss_takes_channels_last_bf16_logits():
    logits = torch.randn(1, 4, 6, 5).to(torch.bfloat16).contiguous(memory_format=torch.channels_last)
    labels = torch.randint(0, 4, (1, 24, 20))
    leaf = logits.detach().requires_grad_()
    segmentation_loss(leaf, labels).backward()
    reference = logits.detach().float().requires_grad_()
    _resize_then_cross_entropy(reference, labels).backward()
    assert leaf.grad.dtype == torch.bfloat16
    torch.testing.assert_close(leaf.grad.float(), reference.grad, rtol=1e-2, atol=1e-4)


def test_labels_outside_the_classes_are_named():
    with pytest.raises(ValueError, match=r"labels \[7\] are outside the 3 classes"):
        segmentation_loss(torch.zeros(1, 3, 4, 4), torch.full((1, 4, 4), 7))
    with pytest.raises(ValueError, match=r"labels \[-1\]"):
        segmentation_loss(torch.zeros(1, 3, 4, 4), torch.full((1, 4, 4), -1))
