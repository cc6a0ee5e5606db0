"""Banded (class-group) resize-and-argmax gives the full-size computation's masks, in bounded memory."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from ssformer.inference.postprocess import (
    check_full_size,
    class_group_size,
    resized_argmax,
)


def full_size_mask(logits: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    return F.interpolate(logits.contiguous(), size=size, mode="bilinear", align_corners=False).argmax(dim=1)


@pytest.mark.parametrize("low, size", [((64, 96), (601, 333)),   # upscale, odd sizes
                                       ((37, 51), (17, 23)),     # downscale
                                       ((128, 32), (1000, 5)),   # up in height, down in width
                                       ((5, 7), (1, 40)),        # one output row
                                       ((9, 1), (40, 1)),        # one column
                                       ((20, 30), (20, 30))])    # same size
@pytest.mark.parametrize("groups", [1, 7, 16, None])  # classes resized at once (None: all)
def test_identical_masks_to_the_full_size_resize(low, size, groups):
    generator = torch.Generator().manual_seed(sum(low) + sum(size))
    logits = torch.randn(2, 150, *low, generator=generator).contiguous(memory_format=torch.channels_last)
    max_elements = size[0] * size[1] * (groups or 1000)
    assert class_group_size(150, size, max_elements) == min(groups or 1000, 150)
    mask = resized_argmax(logits, size, max_elements)
    assert mask.dtype == torch.int64 and mask.shape == (2, *size)
    assert torch.equal(mask, full_size_mask(logits, size))


def test_ties_nan_and_inf_resolve_as_torch_argmax():
    logits = torch.randn(1, 10, 5, 6, generator=torch.Generator().manual_seed(0))
    logits[0, 7] = logits[0, 2]          # exact ties: the first class wins
    logits[0, 3, 2, 2] = float("nan")    # NaN wins where it reaches
    logits[0, 5, 1, 1] = float("inf")
    expected = full_size_mask(logits, (13, 17))
    for group in (1, 3, 10):
        assert torch.equal(resized_argmax(logits, (13, 17), 13 * 17 * group), expected)


def test_refuses_full_size_results_above_the_limit_with_the_numbers():
    check_full_size(150, (100, 100), 150 * 100 * 100 * 4, "probabilities")  # exactly at the limit: fine
    with pytest.raises(ValueError, match=r"probabilities for a 6000x6000 image needs 20\.1 GiB \(150 classes"):
        check_full_size(150, (6000, 6000), 4 << 30, "probabilities")


def test_rejects_bad_shapes():
    with pytest.raises(ValueError, match="expected logits of shape"):
        resized_argmax(torch.zeros(3, 4, 5), (2, 2))
    with pytest.raises(ValueError, match="output size must be positive"):
        resized_argmax(torch.zeros(1, 3, 4, 5), (0, 2))
    assert np.array_equal(resized_argmax(torch.zeros(1, 3, 4, 5), (1, 1)).numpy(), [[[0]]])


def test_segmenter_masks_equal_the_full_size_argmax():
    """The Segmenter's mask path (class groups) against resizing all logits to full size first."""
    import ssformer
    from ssformer.inference import postprocess
    from ssformer.inference.images import load_rgb
    from ssformer.inference.sliding import whole_inference
    from tests.conftest import tiny_model_kwargs

    torch.manual_seed(0)
    segmenter = ssformer.Segmenter(ssformer.SSformer(**tiny_model_kwargs(num_classes=150)),
                                   pipeline=ssformer.PipelineOverrides(img_scale=(96, 64)))
    image = np.random.default_rng(0).integers(0, 256, (301, 187, 3), dtype=np.uint8)
    logits = whole_inference(segmenter.model, segmenter.preprocess(load_rgb(image))[None])
    expected = full_size_mask(logits, (301, 187))[0].numpy()
    default = postprocess.DEFAULT_MAX_ELEMENTS
    try:
        postprocess.DEFAULT_MAX_ELEMENTS = 301 * 187 * 4  # groups of 4 classes
        np.testing.assert_array_equal(segmenter.predict(image), expected)
    finally:
        postprocess.DEFAULT_MAX_ELEMENTS = default
    np.testing.assert_array_equal(segmenter.predict(image), expected)


@pytest.mark.slow
def test_a_large_image_on_150_classes_stays_far_below_the_full_size_logits():
    """The committed benchmark in a fresh process: 2000x3000, 150 classes. Full-size logits alone
    would be 3.4 GiB; the whole process (torch included) must stay under 1.5 GiB."""
    import json
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parents[2]
    out = subprocess.run([sys.executable, str(root / "benchmarks" / "large_image_memory.py"), "--size", "2000", "3000",
                          "--classes", "150", "--json"], check=False, capture_output=True, text=True, timeout=600,
                         env={**__import__("os").environ, "PYTHONPATH": str(root)})
    assert out.returncode == 0, out.stderr
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert result["mask_shape"] == [2000, 3000] and result["full_size_logits_gib"] == 3.4
    assert result["peak_rss_gib"] < 1.5, result
