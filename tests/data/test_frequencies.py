"""Class pixel counts and the median-frequency / ENet class weights, on hand-made label maps."""

from __future__ import annotations

import math

import numpy as np
import pytest

from ssformer.data import CamVid, SegmentationDataset
from ssformer.data.datasets import Listing
from ssformer.data.frequencies import (
    CLASS_WEIGHT_METHODS,
    class_weights,
    count_class_pixels,
    enet_weights,
    median_frequency_weights,
)
from ssformer.engine.config import CLASS_WEIGHT_METHODS as CONFIG_METHODS
from tests.conftest import CAMVID, requires_dir
from tests.data.layouts import write_image, write_label


def _dataset(tmp_path, labels, name="d") -> SegmentationDataset:
    pairs = []
    for i, values in enumerate(labels):
        h, w = np.asarray(values).shape
        image = write_image(tmp_path / name / f"{i}.png", h, w, seed=i)
        pairs.append((image, write_label(tmp_path / name / f"{i}_label.png", values)))
    return SegmentationDataset(Listing(pairs), ["a", "b", "c", "d"])


def test_counts_and_median_frequency(tmp_path):
    # image 0 (2x3): a a b / b b 255; image 1 (2x2): a c / c c. Class d never occurs.
    dataset = _dataset(tmp_path, [[[0, 0, 1], [1, 1, 255]], [[0, 2], [2, 2]]])
    counts = count_class_pixels([dataset])
    assert counts.pixels.tolist() == [3, 3, 3, 0]
    assert counts.image_pixels.tolist() == [10, 6, 4, 0]  # a is in both images (6 + 4 pixels, void included)
    assert counts.labelled_pixels == 9
    # f = 3/10, 3/6, 3/4; median 0.5 -> weights 0.5/f; d (absent) gets 0 and stays out of the median
    np.testing.assert_allclose(median_frequency_weights(counts), [0.5 / 0.3, 1.0, 0.5 / 0.75, 0.0])
    np.testing.assert_allclose(enet_weights(counts), [1 / math.log(1.02 + 1 / 3)] * 3 + [1 / math.log(1.02)])


def test_several_datasets_are_pooled(tmp_path):
    first = _dataset(tmp_path, [[[0, 0, 1], [1, 1, 255]]], "first")
    second = _dataset(tmp_path, [[[0, 2], [2, 2]]], "second")
    np.testing.assert_allclose(class_weights("median_frequency", [first, second]),
                               [0.5 / 0.3, 1.0, 0.5 / 0.75, 0.0])
    with pytest.raises(ValueError, match="class weight method must be one of median_frequency, enet"):
        class_weights("inverse", [first])


def test_no_labelled_pixel_is_an_error(tmp_path):
    dataset = _dataset(tmp_path, [[[255, 255]]])
    with pytest.raises(ValueError, match="no labelled pixel"):
        median_frequency_weights(count_class_pixels([dataset]))


def test_config_and_data_agree_on_the_method_names():
    assert CLASS_WEIGHT_METHODS == CONFIG_METHODS


@requires_dir(CAMVID, "CamVid")
def test_camvid_train_median_frequency_is_near_segnets():
    # SegNet's published CamVid weights (segnet_train.prototxt) were computed with void as a 12th class
    # and a slightly different copy of the labels; ours agree within 25% except sign-symbol (index 6).
    segnet = np.array([0.2595, 0.1826, 4.5640, 0.1417, 0.9051, 0.3826, 9.6446, 1.8418, 0.6823, 6.2478, 7.3614])
    ours = class_weights("median_frequency", [CamVid(CAMVID, "train")])
    ratio = np.delete(ours / segnet, 6)
    assert np.all((ratio > 0.8) & (ratio < 1.25)), ours.round(4).tolist()
