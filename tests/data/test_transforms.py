"""Transform invariants and the official pipeline's rules (resize, crop, flip, photometric, pad)."""

import colorsys

import numpy as np
import pytest
import torch
from PIL import Image

from ssformer.data.preprocessing import TestTransform as EvalTransform  # not collected by pytest
from ssformer.data.transforms import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    TrainTransform,
    TrainTransformSettings,
    adjust_brightness,
    adjust_contrast,
    adjust_saturation,
    class_ratio_ok,
    normalize,
    photometric_distortion,
    random_crop_box,
    rescale_size,
    resize_image,
    resize_label,
    shift_hue,
)


def rng(seed=0):
    return np.random.default_rng(seed)


@pytest.mark.parametrize("hw,scale,expected", [
    ((360, 480), (2048, 512), (512, 683)),     # short side limits: 512/360
    ((512, 683), (2048, 512), (512, 683)),     # already fits exactly
    ((1000, 300), (2048, 512), (1707, 512)),   # portrait: short side 300 -> 512
    ((300, 4000), (2048, 512), (154, 2048)),   # very wide: long side limits: 2048/4000
    ((1024, 2048), (2048, 1024), (1024, 2048)),
    ((1024, 2048), (1024, 2048), (1024, 2048)),  # (long, short) order does not matter
    ((100, 100), (600, 300), (300, 300)),
])
def test_rescale_rule(hw, scale, expected):
    assert rescale_size(*hw, scale) == expected


def test_label_resize_never_interpolates():
    label = rng().choice([0, 3, 7, 255], size=(37, 53)).astype(np.int64)
    for size in [(74, 106), (20, 30), (100, 41), (5, 7)]:
        out = resize_label(label, size)
        assert out.shape == size
        assert set(np.unique(out)) <= set(np.unique(label))
        # the same as Pillow's nearest filter (pixel-centre sampling)
        reference = np.asarray(Image.fromarray(label.astype(np.uint8)).resize(size[::-1], Image.NEAREST))
        assert np.array_equal(out, reference)


def test_windowed_resize_equals_crop_of_full_resize():
    image = rng().integers(0, 256, (36, 48, 3), dtype=np.uint8)
    label = rng().integers(0, 5, (36, 48))
    size, box = (90, 120), (17, 31, 40, 50)
    top, left, h, w = box
    assert np.array_equal(resize_label(label, size, box), resize_label(label, size)[top:top + h, left:left + w])
    diff = resize_image(image, size, box).astype(int) - resize_image(image, size)[top:top + h, left:left + w]
    assert np.abs(diff).max() <= 2 and np.abs(diff).mean() < 0.25  # Pillow rounds after each of its two passes


def test_crop_box_inside_image():
    g = rng()
    for _ in range(50):
        top, left, h, w = random_crop_box((30, 40), (16, 16), g)
        assert 0 <= top <= 14 and 0 <= left <= 24 and (h, w) == (16, 16)
    assert random_crop_box((10, 40), (16, 16), g)[0::2] == (0, 10)  # short side: whole extent


def test_class_ratio_rule():
    assert not class_ratio_ok(np.zeros((4, 4)), 0.75)                       # one class
    assert not class_ratio_ok(np.array([0] * 8 + [1] * 2), 0.75)             # 80 %
    assert class_ratio_ok(np.array([0] * 7 + [1] * 3), 0.75)                 # 70 %
    assert not class_ratio_ok(np.array([0] * 7 + [1] * 1), 0.75)             # 87.5 %
    assert not class_ratio_ok(np.array([0] * 3 + [255] * 7), 0.75)          # ignore excluded -> one class
    assert class_ratio_ok(np.array([0] * 2 + [1] * 2 + [255] * 6), 0.75)    # 50 % of the non-ignored


def _expected_crop(label, crop, seed, ratio):
    """Replays the official rule with an identical generator: the first of up to 10 candidate
    windows whose largest class (ignore excluded) is below ``ratio``, else the 11th."""
    g = np.random.default_rng(seed)

    def candidate():
        top = int(g.integers(0, label.shape[0] - crop + 1))
        left = int(g.integers(0, label.shape[1] - crop + 1))
        return label[top:top + crop, left:left + crop]

    window = candidate()
    for _ in range(10):
        values, counts = np.unique(window, return_counts=True)
        counts = counts[values != 255]
        if len(counts) > 1 and counts.max() / counts.sum() < ratio:
            break
        window = candidate()
    return window


def test_random_crop_follows_cat_max_ratio():
    label = np.zeros((64, 64), dtype=np.int64)
    label[40:, 40:] = rng().integers(1, 3, (24, 24))  # only the bottom-right corner is mixed
    image = np.zeros((64, 64, 3), np.uint8)
    transform = TrainTransform(TrainTransformSettings(img_scale=(64, 64), ratio_range=None, crop_size=(16, 16), cat_max_ratio=0.75,
                               flip_prob=0.0, photometric=False))
    accepted = 0
    for seed in range(40):
        _, out = transform(image, label, np.random.default_rng(seed))
        expected = _expected_crop(label, 16, seed, 0.75)
        assert np.array_equal(out.numpy(), expected)
        accepted += class_ratio_ok(expected, 0.75)
    assert accepted > 20  # the retries find the mixed corner most of the time
    plain = TrainTransform(TrainTransformSettings(img_scale=(64, 64), ratio_range=None, crop_size=(16, 16), cat_max_ratio=1.0,
                           flip_prob=0.0, photometric=False))
    plain_ok = sum(class_ratio_ok(plain(image, label, np.random.default_rng(s))[1].numpy(), 0.75) for s in range(40))
    assert plain_ok < accepted


def test_pad_values_and_content():
    image = rng().integers(0, 256, (10, 12, 3), dtype=np.uint8)
    label = rng().integers(0, 4, (10, 12))
    transform = TrainTransform(TrainTransformSettings(img_scale=(12, 10), ratio_range=None, crop_size=(16, 20), flip_prob=0.0,
                               photometric=False))
    out_image, out_label = transform(image, label, rng())
    assert out_image.shape == (3, 16, 20) and out_label.shape == (16, 20)
    assert (out_image[:, 10:, :] == 0).all() and (out_image[:, :, 12:] == 0).all()
    assert (out_label[10:, :] == 255).all() and (out_label[:, 12:] == 255).all()
    assert np.array_equal(out_label[:10, :12].numpy(), label)
    torch.testing.assert_close(out_image[:, :10, :12], normalize(image))


def test_flip_moves_image_and_label_together():
    label = rng().integers(0, 4, (16, 16))
    image = np.repeat((label * 60).astype(np.uint8)[..., None], 3, axis=2)  # image encodes the label
    kwargs = dict(img_scale=(16, 16), ratio_range=None, crop_size=(16, 16), cat_max_ratio=1.0, photometric=False)
    kept = TrainTransform(TrainTransformSettings(flip_prob=0.0, **kwargs))(image, label, rng(3))
    flipped = TrainTransform(TrainTransformSettings(flip_prob=1.0, **kwargs))(image, label, rng(3))
    assert torch.equal(flipped[1], kept[1].flip(-1)) and torch.equal(flipped[0], kept[0].flip(-1))
    assert not torch.equal(flipped[1], kept[1])
    pixel_value = flipped[0][0] * IMAGENET_STD[0] + IMAGENET_MEAN[0]
    torch.testing.assert_close(pixel_value, (flipped[1] * 60).float(), atol=1e-3, rtol=0)


def test_normalize_values():
    image = np.array([[[0, 128, 255]]], dtype=np.uint8)
    out = normalize(image)
    assert out.shape == (3, 1, 1) and out.dtype == torch.float32
    expected = [(0 - 123.675) / 58.395, (128 - 116.28) / 57.12, (255 - 103.53) / 57.375]
    torch.testing.assert_close(out.flatten(), torch.tensor(expected))


def test_train_transform_label_values_and_determinism():
    image = rng().integers(0, 256, (45, 60, 3), dtype=np.uint8)
    label = rng().choice([0, 2, 5, 255], size=(45, 60))
    transform = TrainTransform(TrainTransformSettings(img_scale=(120, 90), crop_size=(32, 32)))
    for seed in range(10):
        out_image, out_label = transform(image, label, rng(seed))
        assert out_image.dtype == torch.float32 and out_label.dtype == torch.int64
        assert set(out_label.unique().tolist()) <= {0, 2, 5, 255}
        again = transform(image, label, rng(seed))
        assert torch.equal(out_image, again[0]) and torch.equal(out_label, again[1])


def test_random_scale_range():
    """Over many draws the resized short side spans img_scale's short side times [0.5, 2]."""
    label = np.zeros((40, 40), np.int64)
    label[:, 20:] = 1
    image = np.zeros((40, 40, 3), np.uint8)
    transform = TrainTransform(TrainTransformSettings(img_scale=(80, 40), crop_size=(400, 400), photometric=False))
    sides = [transform(image, label, rng(s))[1].ne(255).sum(0).max().item() for s in range(60)]
    assert 20 <= min(sides) < 25 and 75 < max(sides) <= 80


def test_test_transform():
    image = rng().integers(0, 256, (360, 480, 3), dtype=np.uint8)
    label = rng().integers(0, 11, (360, 480))
    out_image, out_label = EvalTransform(img_scale=(2048, 512))(image, label)
    assert out_image.shape == (3, 512, 683)
    assert np.array_equal(out_label.numpy(), label)  # the label stays at its original size
    kept, _ = EvalTransform(img_scale=None)(image, label)
    torch.testing.assert_close(kept, normalize(image))


# --- photometric distortion ---------------------------------------------------------------------

def _hsv_reference(pixels, hue_shift_deg=0.0, saturation=1.0):
    out = np.zeros_like(pixels)
    for idx in np.ndindex(pixels.shape[:2]):
        h, s, v = colorsys.rgb_to_hsv(*(pixels[idx] / 255.0))
        rgb = colorsys.hsv_to_rgb((h + hue_shift_deg / 360) % 1.0, min(s * saturation, 1.0), v)
        out[idx] = np.round(np.array(rgb) * 255)
    return out


@pytest.mark.parametrize("degrees", [-36, -2, 0, 2, 34, 180])
def test_hue_matches_hsv_rotation(degrees):
    pixels = rng(1).integers(0, 256, (20, 20, 3), dtype=np.uint8)
    pixels[0, :4] = [[0, 0, 0], [255, 255, 255], [9, 9, 9], [255, 0, 0]]
    diff = shift_hue(pixels, degrees).astype(int) - _hsv_reference(pixels, hue_shift_deg=degrees)
    assert np.abs(diff).max() <= 1


@pytest.mark.parametrize("alpha", [0.5, 0.9, 1.0, 1.3, 1.5])
def test_saturation_matches_hsv_scaling(alpha):
    pixels = rng(2).integers(0, 256, (20, 20, 3), dtype=np.uint8)
    diff = adjust_saturation(pixels, alpha).astype(int) - _hsv_reference(pixels, saturation=alpha)
    assert np.abs(diff).max() <= 1


def test_brightness_and_contrast_clip_and_truncate():
    pixels = np.array([[[0, 100, 250]]], dtype=np.uint8)
    assert adjust_brightness(pixels, 10.7).tolist() == [[[10, 110, 255]]]
    assert adjust_brightness(pixels, -20.5).tolist() == [[[0, 79, 229]]]
    assert adjust_contrast(pixels, 1.5).tolist() == [[[0, 150, 255]]]
    assert adjust_contrast(pixels, 0.55).tolist() == [[[0, 55, 137]]]


class ScriptedRng:
    """Stands in for numpy's Generator with fixed answers, to check the order of the steps."""

    def __init__(self, integers, uniforms):
        self.integers_left, self.uniforms_left = list(integers), list(uniforms)

    def integers(self, low, high=None):
        return self.integers_left.pop(0)

    def uniform(self, low, high):
        value = self.uniforms_left.pop(0)
        assert low <= value <= high
        return value


def test_photometric_order_and_draws():
    pixels = rng(4).integers(0, 256, (8, 8, 3), dtype=np.uint8)
    # all steps on, contrast first: brightness coin+value, mode=1, contrast coin+value, saturation, hue coin+shift
    scripted = ScriptedRng([1, 1, 1, 1, 1, 5], [20.0, 1.4, 0.6])
    out = photometric_distortion(pixels, scripted)
    expected = shift_hue(adjust_saturation(adjust_contrast(adjust_brightness(pixels, 20.0), 1.4), 0.6), 10.0)
    assert np.array_equal(out, expected) and not scripted.integers_left and not scripted.uniforms_left
    # contrast last (mode=0): the contrast coin is drawn after hue
    scripted = ScriptedRng([1, 0, 1, 1, -3, 1], [20.0, 0.6, 1.4])
    out = photometric_distortion(pixels, scripted)
    expected = adjust_contrast(shift_hue(adjust_saturation(adjust_brightness(pixels, 20.0), 0.6), -6.0), 1.4)
    assert np.array_equal(out, expected) and not scripted.integers_left and not scripted.uniforms_left
    # every coin 0: unchanged, and no values drawn
    scripted = ScriptedRng([0, 0, 0, 0, 0], [])
    assert np.array_equal(photometric_distortion(pixels, scripted), pixels)


def test_photometric_applies_each_step_about_half_the_time():
    pixels = rng(5).integers(0, 256, (4, 4, 3), dtype=np.uint8)
    unchanged = sum(np.array_equal(photometric_distortion(pixels, rng(s)), pixels) for s in range(400))
    assert 5 < unchanged < 60  # all four coins 0: probability 1/16 -> about 25 of 400
