"""Test-time preprocessing: exact to mmseg 0.24.1's own pipeline, validated, and serialisable."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
import torch

from ssformer.data.io import read_image
from ssformer.data.preprocessing import ADE20K, Preprocessing, from_training_config
from ssformer.data.preprocessing import TestTransform as EvalTransform  # not collected by pytest
from ssformer.data.transforms import normalize
from tests.conftest import ADE_SAMPLE, CAMVID, FIXTURES, requires_dir

PIPELINE = FIXTURES / "official_test_pipeline.npz"  # tools/make_preprocessing_fixtures.py
IMAGES = [CAMVID / "test" / "0001TP_008550.png", ADE_SAMPLE / "sampleData" / "images" / "ADE_val_00000001.jpg"]


@requires_dir(CAMVID, "CamVid")
@requires_dir(ADE_SAMPLE, "ADE20K sample")
@pytest.mark.parametrize("index", [0, 1])
def test_resize_equals_the_official_pipeline(index):
    """Shrinking and enlarging real images: every pixel equals mmseg's Resize (mmcv.imrescale, cv2)."""
    data = np.load(PIPELINE)
    assert str(data[f"name_{index}"]) == IMAGES[index].name
    image = read_image(IMAGES[index])
    for j, scale in enumerate(data["scales"]):
        expected = data[f"resized_{index}_{j}"]
        resized = Preprocessing(img_scale=tuple(scale)).resize(image)
        assert resized.shape == expected.shape
        np.testing.assert_array_equal(resized, expected)


@requires_dir(CAMVID, "CamVid")
def test_model_input_equals_the_official_pipeline_bit_for_bit():
    data = np.load(PIPELINE)
    ours = Preprocessing(img_scale=tuple(data["scales"][0]))(read_image(IMAGES[0]))
    assert ours.dtype == torch.float32
    np.testing.assert_array_equal(ours.numpy(), data["normalised_0"])


def test_normalize_is_mmcv_imnormalize():
    """mmseg's Normalize keeps mean/std as float32 arrays; mmcv.imnormalize_ then runs
    cv2.subtract(img, float64(mean)) and cv2.multiply(img, 1 / float64(std)) on the float32 image."""
    image = np.random.default_rng(0).integers(0, 256, (37, 53, 3)).astype(np.uint8)
    mean = np.float64(np.array([123.675, 116.28, 103.53], np.float32).reshape(1, -1))
    std = np.float64(np.array([58.395, 57.12, 57.375], np.float32).reshape(1, -1))
    expected = cv2.multiply(cv2.subtract(image.astype(np.float32), mean), 1 / std)
    np.testing.assert_array_equal(normalize(image).numpy().transpose(1, 2, 0), expected)


@pytest.mark.parametrize("hw, scale, keep_ratio, expected", [
    ((360, 480), (2048, 512), True, (512, 683)),
    ((1000, 300), (2048, 512), True, (1707, 512)),
    ((360, 480), (640, 320), False, (320, 640)),   # mmseg's (w, h) without keep_ratio
])
def test_resized_size(hw, scale, keep_ratio, expected):
    assert Preprocessing(img_scale=scale, keep_ratio=keep_ratio).resized_size(*hw) == expected


def test_original_size_and_extreme_aspect():
    image = np.zeros((5, 7, 3), np.uint8)
    assert Preprocessing(img_scale=None).resize(image) is image
    # a 1x40000 strip keeps at least one row (mmseg's rule would round it to 0): 1x2048
    assert Preprocessing(img_scale=(2048, 512)).resize(np.zeros((1, 40000, 3), np.uint8)).shape == (1, 2048, 3)


def test_round_trip_and_replace():
    p = Preprocessing(img_scale=(320, 240), mode="slide", crop_size=128, stride=(96, 80), tta_scales=[1, 1.5],
                      ignore_index=11, reduce_zero_label=True)
    assert p.crop_size == (128, 128) and p.tta_scales == (1.0, 1.5)
    assert Preprocessing.from_dict(p.to_dict()) == p
    assert p.replace(mode=None) is p  # None means "not given"
    assert p.replace(mode="whole").mode == "whole" and p.replace(mode="whole").stride == (96, 80)


@pytest.mark.parametrize("settings, message", [
    ({"mode": "tiles"}, "mode must be one of"),
    ({"img_scale": [512]}, "img_scale must be two positive integers"),
    ({"crop_size": [0, 5]}, "crop_size must be two positive integers"),
    ({"std": [1, 0, 1]}, "std must be positive"),
    ({"mean": [1, 2]}, "mean must have 3 values"),
    ({"tta_scales": []}, "tta_scales must be positive"),
    ({"ignore_index": -1}, "ignore_index must be in 0..65535"),
    ({"colour": 1}, "unknown keys \\['colour'\\]"),
])
def test_bad_settings_name_the_key(settings, message):
    with pytest.raises(ValueError, match=message):
        Preprocessing.from_dict(settings, where="x.json")


def test_from_training_config():
    config = {"data": {"type": "ade20k", "test_transform": {"img_scale": [1024, 256]}, "options": {}},
              "eval": {"mode": "slide", "crop_size": [256, 256], "stride": [170, 170], "scales": [1.0], "flip": False}}
    p = from_training_config(config)
    assert (p.img_scale, p.mode, p.crop_size, p.stride, p.tta_scales, p.flip) == (
        (1024, 256), "slide", (256, 256), (170, 170), (1.0,), False)
    assert p.reduce_zero_label  # ADE20K's official setting
    config["data"]["options"] = {"reduce_zero_label": False}
    assert not from_training_config(config).reduce_zero_label
    assert ADE20K.img_scale == (2048, 512) and ADE20K.reduce_zero_label


def test_test_transform_keeps_the_label():
    image, label = np.zeros((30, 50, 3), np.uint8), np.arange(1500).reshape(30, 50) % 7
    out, out_label = EvalTransform(Preprocessing(img_scale=(96, 64)))(image, label)
    assert out.shape == (3, 58, 96) and np.array_equal(out_label.numpy(), label)
    kept, _ = EvalTransform(img_scale=None)(image, label)
    assert kept.shape == (3, 30, 50)
