"""Training transforms equivalent to the official mmseg 0.24.1 pipeline, and the image operations
the test-time preprocessing (:mod:`ssformer.data.preprocessing`) is built from.

Train: keep-ratio resize to ``img_scale`` times a random ratio -> random crop (retried while one
class covers more than ``cat_max_ratio`` of it) -> horizontal flip -> photometric distortion ->
normalise (ImageNet mean/std, RGB) -> pad to the crop size (image 0, label 255).
Test: keep-ratio resize of the image with OpenCV's bilinear filter, exactly as mmcv
(:func:`resize_image_exact`); the label stays at its original size.

Every random draw comes from the ``numpy.random.Generator`` passed in, in the same order as the
official pipeline draws them; there is no global random state.

Differences of the training pipeline from mmseg (measured against it in tests/data/test_transforms_official.py, which
replays mmseg's own random draws: mean difference under 1 grey level, at most 6, on its cases):
- images are resized with Pillow's bilinear filter, which averages over the whole footprint when
  shrinking (OpenCV's bilinear samples 2x2 pixels, so fine texture can alias there);
- the crop is resized straight from its source region (Pillow's ``box``) instead of resizing the
  whole image and cutting: the same pixels up to 2 grey levels of rounding, far cheaper at big scales;
- labels use nearest neighbour at pixel centres, like Pillow (OpenCV samples the top-left corner),
  so label edges can move by one pixel;
- saturation and hue are changed in floating-point HSV instead of OpenCV's 8-bit HSV image
  (hue in 2-degree steps), a difference of a few grey levels at most.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import ClassVar

import numpy as np
import torch
from PIL import Image

from ssformer.errors import UserError
from ssformer.settings import BOOL, Allowed, check_fields, is_int, list_of, number_in, optional, setting

# The largest image side any resize target, crop or window may ask for: 16384 x 16384 RGB is 768 MiB
# before normalisation (3 GiB in float32); a larger value is a typo (img_scale [1e7, 1e7] asks for 225 TB).
MAX_IMAGE_SIDE = 16384

_SIDE: Allowed = (lambda v: is_int(v) and 1 <= v <= MAX_IMAGE_SIDE), f"an integer in 1..{MAX_IMAGE_SIDE}"
PAIR: Allowed = ((lambda v: _SIDE[0](v) or list_of(_SIDE, 2)[0](v)),
                 f"a positive int or two positive ints, each at most {MAX_IMAGE_SIDE}")

IMAGENET_MEAN = (123.675, 116.28, 103.53)
IMAGENET_STD = (58.395, 57.12, 57.375)


def rescale_size(height: int, width: int, scale: Sequence[int]) -> tuple[int, int]:
    """mmseg's keep-ratio rule: the largest size with long side <= max(scale) and short side
    <= min(scale); returns (new_height, new_width), each rounded half up and at least 1 (a 1x40000
    image would otherwise round to height 0)."""
    long_edge, short_edge = max(scale), min(scale)
    factor = min(long_edge / max(height, width), short_edge / min(height, width))
    return max(1, int(height * factor + 0.5)), max(1, int(width * factor + 0.5))


def random_scale(img_scale: Sequence[int], ratio_range: Sequence[float], rng: np.random.Generator) -> tuple[int, int]:
    """``img_scale`` times a ratio drawn uniformly from ``ratio_range`` (each side truncated)."""
    low, high = ratio_range
    ratio = rng.random() * (high - low) + low
    return max(1, int(img_scale[0] * ratio)), max(1, int(img_scale[1] * ratio))  # a 0 would empty the image


def _nearest_index(out_size: int, in_size: int, start: int = 0, count: int | None = None) -> np.ndarray:
    """Source rows/columns of nearest-neighbour resizing ``in_size`` -> ``out_size`` (pixel centres)."""
    count = out_size - start if count is None else count
    positions = (np.arange(start, start + count) + 0.5) * (in_size / out_size)
    return np.minimum(positions.astype(np.int64), in_size - 1)


def resize_label(label: np.ndarray, size: tuple[int, int],
                 box: tuple[int, int, int, int] | None = None) -> np.ndarray:
    """Nearest-neighbour resize of a label map to ``size`` (h, w); never mixes values.

    With ``box`` = (top, left, height, width) only that window of the resized map is produced.
    """
    top, left, height, width = box if box is not None else (0, 0, *size)
    rows = _nearest_index(size[0], label.shape[0], top, height)
    cols = _nearest_index(size[1], label.shape[1], left, width)
    return label[rows[:, None], cols[None, :]]


def resize_image(image: np.ndarray, size: tuple[int, int],
                 box: tuple[int, int, int, int] | None = None) -> np.ndarray:
    """Bilinear resize of a uint8 HWC image to ``size`` (h, w), optionally only the window ``box``
    = (top, left, height, width) of the resized image (computed from the matching source region)."""
    source = Image.fromarray(image)
    if box is None:
        if (image.shape[0], image.shape[1]) == tuple(size):
            return image
        return np.asarray(source.resize((size[1], size[0]), Image.BILINEAR))
    top, left, height, width = box
    sy, sx = image.shape[0] / size[0], image.shape[1] / size[1]
    region = (left * sx, top * sy, (left + width) * sx, (top + height) * sy)
    return np.asarray(source.resize((width, height), Image.BILINEAR, box=region))


def resize_image_exact(image: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Bilinear resize of a uint8 HWC image to ``size`` (h, w) exactly as mmcv's test pipeline does it:
    OpenCV's ``INTER_LINEAR`` (fixed-point on uint8; Pillow's filter differs and, when shrinking,
    also smooths)."""
    import cv2

    if tuple(image.shape[:2]) == tuple(size):
        return image
    return cv2.resize(np.ascontiguousarray(image), (int(size[1]), int(size[0])), interpolation=cv2.INTER_LINEAR)


def random_crop_box(size: tuple[int, int], crop_size: Sequence[int],
                    rng: np.random.Generator) -> tuple[int, int, int, int]:
    """A uniformly placed crop window (top, left, height, width) inside an image of ``size`` (h, w);
    an image smaller than the crop gives the whole extent on that side."""
    margin_h, margin_w = max(size[0] - crop_size[0], 0), max(size[1] - crop_size[1], 0)
    top = int(rng.integers(0, margin_h + 1))
    left = int(rng.integers(0, margin_w + 1))
    return top, left, min(crop_size[0], size[0]), min(crop_size[1], size[1])


def class_ratio_ok(label: np.ndarray, cat_max_ratio: float, ignore_index: int = 255) -> bool:
    """The official crop acceptance test: more than one class present (ignore excluded) and the
    largest one below ``cat_max_ratio`` of the non-ignored pixels."""
    flat = label.reshape(-1)
    if flat.dtype.kind in "iu" and flat.size and flat.min() >= 0:  # a histogram: far cheaper than np.unique
        counts = np.bincount(flat)
        if 0 <= ignore_index < len(counts):
            counts[ignore_index] = 0
        counts = counts[counts > 0]
    else:
        values, counts = np.unique(flat, return_counts=True)
        counts = counts[values != ignore_index]
    return len(counts) > 1 and counts.max() / counts.sum() < cat_max_ratio


def _to_uint8(values: np.ndarray) -> np.ndarray:
    """mmseg's conversion: clip to [0, 255], then truncate."""
    return np.clip(values, 0, 255).astype(np.uint8)


def _lookup(image: np.ndarray, table: np.ndarray) -> np.ndarray:
    return np.take(_to_uint8(table), image)


def adjust_brightness(image: np.ndarray, delta: float) -> np.ndarray:
    """Add ``delta`` to every value (clip, truncate), via a 256-entry table."""
    return _lookup(image, np.arange(256, dtype=np.float32) + np.float32(delta))


def adjust_contrast(image: np.ndarray, alpha: float) -> np.ndarray:
    """mmseg's contrast: every value times ``alpha`` (no re-centring on the mean); clip, truncate."""
    return _lookup(image, np.arange(256, dtype=np.float32) * np.float32(alpha))


def _planes(image: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Float32 R, G, B planes, V = max and chroma C = max - min."""
    r, g, b = (image[..., i].astype(np.float32) for i in range(3))
    value = np.maximum(np.maximum(r, g), b)
    chroma = value - np.minimum(np.minimum(r, g), b)
    return r, g, b, value, chroma


def _merge(planes: Sequence[np.ndarray]) -> np.ndarray:
    out = np.empty((*planes[0].shape, 3), dtype=np.uint8)
    for i, plane in enumerate(planes):
        np.rint(plane, out=plane)
        out[..., i] = np.clip(plane, 0, 255)
    return out


def adjust_saturation(image: np.ndarray, alpha: float) -> np.ndarray:
    """Multiply HSV saturation by ``alpha`` (clipped at 1), keeping hue and value.

    With V = max(R,G,B) fixed, every channel keeps its relative place: c' = V - a (V - c), where
    a = min(alpha, V / (V - min)) so that the darkest channel does not go below 0.
    """
    r, g, b, value, chroma = _planes(image)
    if alpha > 1:
        factor = np.full_like(value, alpha)
        np.divide(value, chroma, out=factor, where=chroma * alpha > value)
    else:
        factor = np.float32(alpha)
    return _merge([value - factor * (value - c) for c in (r, g, b)])


def _wrap(values: np.ndarray, period: float) -> None:
    """values -= period where values >= period (in place; np.mod is many times slower)."""
    np.subtract(values, np.float32(period), out=values, where=values >= period)


def shift_hue(image: np.ndarray, degrees: float) -> np.ndarray:
    """Rotate the HSV hue by ``degrees``, keeping saturation and value (mmseg shifts OpenCV's
    0..179 hue by an integer, i.e. 2 degrees per step)."""
    r, g, b, value, chroma = _planes(image)
    inverse = np.divide(np.float32(1), chroma, out=np.zeros_like(chroma), where=chroma > 0)
    # hue in sixths of the circle (red 0, green 2, blue 4), from whichever channel is the maximum
    hue = (r - g) * inverse + 4
    np.copyto(hue, (b - r) * inverse + 2, where=value == g)
    np.copyto(hue, (g - b) * inverse, where=value == r)
    hue += np.float32((degrees / 60.0) % 6.0)  # now in [-1, 11)
    _wrap(hue, 6)
    np.add(hue, 6, out=hue, where=hue < 0)
    planes = []
    for offset in (5.0, 3.0, 1.0):  # R, G, B
        k = hue + np.float32(offset)
        _wrap(k, 6)
        weight = np.minimum(k, 4 - k)
        np.clip(weight, 0, 1, out=weight)
        planes.append(value - chroma * weight)
    return _merge(planes)


def photometric_distortion(image: np.ndarray, rng: np.random.Generator, brightness_delta: float = 32,
                           contrast_range: Sequence[float] = (0.5, 1.5),
                           saturation_range: Sequence[float] = (0.5, 1.5), hue_delta: int = 18) -> np.ndarray:
    """mmseg's PhotoMetricDistortion on a uint8 RGB image.

    Brightness, then contrast either now or last (a coin decides), saturation, hue; each applied
    with probability 0.5. The draws happen in the official order: coin and value for brightness,
    the contrast-position coin, coin and value for each applied step. The hue shift is an integer
    in [-hue_delta, hue_delta) OpenCV hue units (2 degrees each), as numpy's randint gives it.
    """
    if rng.integers(2):
        image = adjust_brightness(image, rng.uniform(-brightness_delta, brightness_delta))
    contrast_first = rng.integers(2) == 1

    def contrast(img: np.ndarray) -> np.ndarray:
        if rng.integers(2):
            return adjust_contrast(img, rng.uniform(contrast_range[0], contrast_range[1]))
        return img

    if contrast_first:
        image = contrast(image)
    if rng.integers(2):
        image = adjust_saturation(image, rng.uniform(saturation_range[0], saturation_range[1]))
    if rng.integers(2):
        image = shift_hue(image, 2.0 * int(rng.integers(-hue_delta, hue_delta)))
    if not contrast_first:
        image = contrast(image)
    return image


def normalize(image: np.ndarray, mean: Sequence[float] = IMAGENET_MEAN,
              std: Sequence[float] = IMAGENET_STD) -> torch.Tensor:
    """uint8 HWC RGB -> float32 CHW tensor, ``(x - mean) * (1 / std)`` per channel, bit for bit as mmseg's
    ``Normalize`` (mean and std kept as float32; OpenCV subtracts the mean in float32, then multiplies
    by the float64 inverse of the float32 std and rounds)."""
    chw = torch.from_numpy(_contiguous(image.transpose(2, 0, 1))).float()
    mean_t = torch.tensor(mean, dtype=torch.float32).view(3, 1, 1)
    inv_std = 1.0 / torch.tensor(std, dtype=torch.float32).double().view(3, 1, 1)
    return ((chw - mean_t).double() * inv_std).float()


def pad(image: torch.Tensor, label: torch.Tensor, size: Sequence[int], image_value: float = 0.0,
        label_value: int = 255) -> tuple[torch.Tensor, torch.Tensor]:
    """Pad a CHW image and HW label at the bottom/right up to ``size`` (h, w)."""
    height, width = image.shape[-2:]
    if height >= size[0] and width >= size[1]:
        return image, label
    padded_image = image.new_full((image.shape[0], max(size[0], height), max(size[1], width)), image_value)
    padded_image[:, :height, :width] = image
    padded_label = label.new_full((max(size[0], height), max(size[1], width)), label_value)
    padded_label[:height, :width] = label
    return padded_image, padded_label


def _contiguous(array: np.ndarray) -> np.ndarray:
    """A C-contiguous, writable array torch can take: numpy calls a flipped 1-pixel-wide array
    contiguous but keeps its negative stride, which ``torch.from_numpy`` refuses."""
    array = np.ascontiguousarray(array)
    return array.copy() if min(array.strides, default=0) < 0 or not array.flags.writeable else array


def label_tensor(label: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(_contiguous(label)).long()


class Normalize:
    """No geometry: the image normalised and the label as int64, both at the original size."""

    def __init__(self, mean: Sequence[float] = IMAGENET_MEAN, std: Sequence[float] = IMAGENET_STD) -> None:
        self.mean, self.std = tuple(mean), tuple(std)

    def __call__(self, image: np.ndarray, label: np.ndarray,
                 rng: np.random.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        return normalize(image, self.mean, self.std), label_tensor(label)


@dataclass
class TrainTransformSettings:
    """``data.train_transform``: the official training pipeline's settings; defaults are the ADE20K
    recipe (Cityscapes uses ``img_scale=[2048, 1024]`` and a 768 or 1024 crop)."""

    where: ClassVar[str] = "data.train_transform."

    img_scale: list[int] = setting([2048, 512], PAIR, "keep-ratio rescale target (long side, short side)", pair=True)
    ratio_range: list[float] | None = setting([0.5, 2.0], optional(list_of(number_in(0, low_open=True), 2)),
                                              "random rescale factors [low, high]; null: none")
    crop_size: list[int] = setting([512, 512], PAIR, "random crop (height, width)", pair=True)
    cat_max_ratio: float = setting(0.75, number_in(0, 1, low_open=True, high_open=False),
                                   "a crop is redrawn (up to 10 times) while one class covers more than this")
    flip_prob: float = setting(0.5, number_in(0, 1, high_open=False), "horizontal flip probability")
    photometric: bool = setting(True, BOOL, "mmseg's PhotoMetricDistortion (brightness, contrast, saturation, hue)")

    def __post_init__(self) -> None:
        check_fields(self, self.where)
        if self.ratio_range is not None and self.ratio_range[0] > self.ratio_range[1]:
            raise UserError(f"{self.where}ratio_range must be [low, high] with low <= high, got {self.ratio_range!r}")


class TrainTransform:
    """The official training pipeline; ``__call__(image, label, rng)`` -> (image, label) tensors.

    ``crop_size`` is (h, w); ``img_scale`` is (long, short) as in the official configs. Labels are
    padded with ``ignore_index``.
    """

    def __init__(self, settings: TrainTransformSettings | None = None, mean: Sequence[float] = IMAGENET_MEAN,
                 std: Sequence[float] = IMAGENET_STD, ignore_index: int = 255) -> None:
        settings = settings or TrainTransformSettings()
        self.img_scale = tuple(int(s) for s in settings.img_scale)
        self.ratio_range = tuple(settings.ratio_range) if settings.ratio_range is not None else None
        self.crop_size = (int(settings.crop_size[0]), int(settings.crop_size[1]))
        self.cat_max_ratio = settings.cat_max_ratio
        self.flip_prob = settings.flip_prob
        self.photometric = settings.photometric
        self.mean, self.std = tuple(mean), tuple(std)
        self.ignore_index = ignore_index

    def __call__(self, image: np.ndarray, label: np.ndarray,
                 rng: np.random.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        scale = random_scale(self.img_scale, self.ratio_range, rng) if self.ratio_range else self.img_scale
        size = rescale_size(image.shape[0], image.shape[1], scale)
        box = random_crop_box(size, self.crop_size, rng)
        crop_label = resize_label(label, size, box)
        if self.cat_max_ratio < 1:
            for _ in range(10):
                if class_ratio_ok(crop_label, self.cat_max_ratio, self.ignore_index):
                    break
                box = random_crop_box(size, self.crop_size, rng)
                crop_label = resize_label(label, size, box)
        crop_image = resize_image(image, size, box)
        if rng.random() < self.flip_prob:
            crop_image, crop_label = crop_image[:, ::-1], crop_label[:, ::-1]
        if self.photometric:
            crop_image = photometric_distortion(np.ascontiguousarray(crop_image), rng)
        return pad(normalize(crop_image, self.mean, self.std), label_tensor(crop_label), self.crop_size,
                   0.0, self.ignore_index)
