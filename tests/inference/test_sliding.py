"""Whole / slide / TTA inference: window grid, count averaging, agreement with whole-image passes."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import ssformer
from ssformer.data.preprocessing import Preprocessing
from ssformer.inference.sliding import infer, slide_inference, tta_inference, whole_inference, window_starts
from tests.conftest import tiny_model_kwargs


class CropMean(nn.Module):
    """Logit = the mean of the crop it was given, everywhere: shows which window covered a pixel."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.mean(dim=(1, 2, 3), keepdim=True).expand(-1, 1, *x.shape[2:]).clone()


def test_window_grid_follows_the_mmseg_rule():
    # 1000 px, crop 512, stride 341: ceil(488 / 341) + 1 = 3 windows, the last one clamped to the end.
    assert window_starts(1000, 512, 341) == [(0, 512), (341, 853), (488, 1000)]
    assert window_starts(512, 512, 341) == [(0, 512)]
    assert window_starts(300, 512, 341) == [(0, 300)]  # smaller than the crop: the whole axis
    assert window_starts(513, 512, 341) == [(0, 512), (1, 513)]


def test_overlaps_are_averaged_by_count():
    x = torch.arange(24, dtype=torch.float32).view(1, 1, 4, 6)
    # columns: windows [0, 4) and [2, 6)
    left, right = x[..., :4].mean(), x[..., 2:].mean()
    expected = torch.tensor([left, left, (left + right) / 2, (left + right) / 2, right, right]).expand(4, 6)
    out = slide_inference(CropMean(), x, num_classes=1, crop=(4, 4), stride=(4, 2))
    torch.testing.assert_close(out[0, 0], expected)


def test_pointwise_model_gives_the_same_logits_in_any_window_layout(device):
    torch.manual_seed(0)
    conv = nn.Conv2d(3, 5, 1).to(device)
    x = torch.randn(2, 3, 37, 53).to(device)
    whole = whole_inference(conv, x)
    for crop, stride, per_batch in [(16, 8, 1), ((20, 30), (7, 11), 3), (64, 32, 2)]:
        out = slide_inference(conv, x, 5, crop, stride, windows_per_batch=per_batch)
        torch.testing.assert_close(out, whole, rtol=1e-5, atol=1e-6)


def test_slide_equals_whole_when_the_crop_covers_the_image(device):
    torch.manual_seed(0)
    model = ssformer.SSformer(**tiny_model_kwargs(num_classes=6)).eval().to(device)
    x = torch.randn(1, 3, 45, 70).to(device)
    whole = whole_inference(model, x)
    tol = 0 if device.type == "cpu" else 1e-5  # the same kernels; GPU libraries promise no bit-equality
    torch.testing.assert_close(slide_inference(model, x, 6, crop=(64, 96), stride=(32, 48)), whole,
                               rtol=tol, atol=tol)
    torch.testing.assert_close(slide_inference(model, x, 6, crop=70, stride=10), whole, rtol=tol, atol=tol)
    # padded crops see extra zeros, so they may only be close to, not equal to, the whole pass
    padded = slide_inference(model, x, 6, crop=(64, 96), stride=(32, 48), pad_crops=True)
    assert padded.shape == whole.shape and torch.isfinite(padded).all()


def test_out_size_resizes_bilinearly():
    conv = nn.Conv2d(3, 2, 1)
    x = torch.randn(1, 3, 8, 8)
    out = slide_inference(conv, x, 2, crop=4, stride=4, out_size=(16, 12))
    expected = nn.functional.interpolate(conv(x), size=(16, 12), mode="bilinear", align_corners=False)
    torch.testing.assert_close(out, expected.detach())


def test_tta_averages_probabilities_of_flipped_and_scaled_copies():
    torch.manual_seed(0)
    conv = nn.Conv2d(3, 4, 1)
    x = torch.randn(1, 3, 10, 12)
    # a pointwise model is flip-equivariant, so flipping changes nothing
    one_scale = Preprocessing(tta_scales=(1.0,), flip=True)
    probs = tta_inference(conv, x, preprocessing=one_scale)
    torch.testing.assert_close(probs, conv(x).softmax(1).detach())
    # a position-dependent model: the flipped copy differs, the average is the mean of both
    ramp = torch.linspace(0, 1, 12)

    class Ramp(nn.Module):
        def forward(self, images):
            return torch.stack([images[:, 0] * 0, images[:, 0] * 0 + ramp], dim=1)

    probs = tta_inference(Ramp(), x, preprocessing=one_scale)
    p = torch.stack([torch.zeros(12), ramp]).softmax(0)
    p_flipped = torch.stack([torch.zeros(12), ramp.flip(0)]).softmax(0)
    torch.testing.assert_close(probs[0, :, 0], (p + p_flipped) / 2)
    slide = Preprocessing(tta_scales=(0.5, 1.5), flip=False, mode="slide", crop_size=8, stride=4)
    probs = tta_inference(conv, x, 4, slide)
    assert probs.shape == (1, 4, 10, 12)
    torch.testing.assert_close(probs.sum(1), torch.ones(1, 10, 12))


@pytest.mark.parametrize("bad", [dict(crop=0), dict(stride=(1, 2, 3)), dict(windows_per_batch=0)])
def test_bad_slide_arguments_are_rejected(bad):
    kwargs = {"crop": 4, "stride": 2, **bad}
    with pytest.raises(ValueError):
        slide_inference(nn.Conv2d(3, 2, 1), torch.randn(1, 3, 8, 8), 2, **kwargs)


def test_infer_takes_the_procedure_from_the_preprocessing():
    """``infer`` runs the mode, crop, stride, TTA scales and flip its Preprocessing holds, no field passed apart."""
    x = torch.randn(1, 3, 8, 12)
    slide = Preprocessing(mode="slide", crop_size=(8, 4), stride=(8, 4))
    expected = torch.cat([x[..., i:i + 4].mean(dim=(1, 2, 3), keepdim=True).expand(-1, 1, 8, 4) for i in (0, 4, 8)], 3)
    torch.testing.assert_close(infer(CropMean(), x, 1, None, slide), expected)
    torch.testing.assert_close(infer(CropMean(), x, 1, None, Preprocessing(mode="whole")),
                               x.mean(dim=(1, 2, 3), keepdim=True).expand(-1, 1, 8, 12))
    conv = nn.Conv2d(3, 4, 1)
    tta = Preprocessing(tta_scales=(1.0,), flip=False)
    torch.testing.assert_close(infer(conv, x, 4, (8, 12), tta, tta=True), conv(x).softmax(1).detach())

