"""How a model sees an image and how its output is read: the part of a recipe that travels with the weights.

A :class:`Preprocessing` is the official test pipeline in data form (keep-ratio resize to
``img_scale`` with OpenCV's bilinear filter, mean/std normalisation, whole or sliding-window
inference, the default multi-scale/flip TTA) plus the label conventions of the dataset the model
was trained on (ignore index, ``reduce_zero_label``). It is written beside the weights as
``preprocessor_config.json`` (the Hugging Face convention), so every file a model is saved in
predicts the same.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, fields
from typing import Any

import numpy as np
import torch

from ssformer.data.transforms import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    MAX_IMAGE_SIDE,
    label_tensor,
    normalize,
    rescale_size,
    resize_image_exact,
)
from ssformer.errors import UserError

PREPROCESSOR_NAME = "preprocessor_config.json"
INFERENCE_MODES = ("whole", "slide")


def _pair(value: Any, name: str) -> tuple[int, int]:
    try:
        pair = (int(value), int(value)) if isinstance(value, (int, float)) else tuple(int(v) for v in value)
    except (TypeError, ValueError, OverflowError):
        pair = ()
    if len(pair) != 2 or min(pair) < 1 or max(pair) > MAX_IMAGE_SIDE:
        raise UserError(f"preprocessing {name} must be two positive integers of at most {MAX_IMAGE_SIDE}, "
                        f"got {value!r}")
    return pair  # type: ignore[return-value]


@dataclass(frozen=True)
class Preprocessing:
    """Test-time settings of a model. Defaults are the official ADE20K pipeline without its labels.

    ``img_scale`` is mmseg's: with ``keep_ratio`` the image is scaled (up or down) to the largest
    size whose long side is at most ``max(img_scale)`` and short side at most ``min(img_scale)``;
    without it, resized to exactly ``img_scale`` = (width, height). ``None`` feeds images as they are.
    ``crop_size`` and ``stride`` (height, width) apply in ``slide`` mode; ``tta_scales`` and ``flip``
    are what ``--tta`` averages over.
    """

    img_scale: tuple[int, int] | None = (2048, 512)
    keep_ratio: bool = True
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD
    mode: str = "whole"
    crop_size: tuple[int, int] = (512, 512)
    stride: tuple[int, int] = (341, 341)
    tta_scales: tuple[float, ...] = (0.5, 0.75, 1.0, 1.25, 1.5, 1.75)
    flip: bool = True
    ignore_index: int = 255
    reduce_zero_label: bool = False

    def __post_init__(self) -> None:
        set_ = object.__setattr__  # frozen: normalise the field types once, here
        set_(self, "img_scale", None if self.img_scale is None else _pair(self.img_scale, "img_scale"))
        set_(self, "crop_size", _pair(self.crop_size, "crop_size"))
        set_(self, "stride", _pair(self.stride, "stride"))
        for name in ("mean", "std"):
            value = tuple(float(v) for v in getattr(self, name))
            if len(value) != 3:
                raise UserError(f"preprocessing {name} must have 3 values (R, G, B), got {value}")
            set_(self, name, value)
        if min(self.std) <= 0:
            raise UserError(f"preprocessing std must be positive, got {self.std}")
        if self.mode not in INFERENCE_MODES:
            raise UserError(f"preprocessing mode must be one of {INFERENCE_MODES}, got {self.mode!r}")
        scales = tuple(float(s) for s in self.tta_scales)
        if not scales or min(scales) <= 0:
            raise UserError(f"preprocessing tta_scales must be positive numbers, got {self.tta_scales!r}")
        set_(self, "tta_scales", scales)
        if not 0 <= int(self.ignore_index) <= 65535:
            raise UserError(f"preprocessing ignore_index must be in 0..65535, got {self.ignore_index}")
        set_(self, "ignore_index", int(self.ignore_index))
        set_(self, "keep_ratio", bool(self.keep_ratio))
        set_(self, "flip", bool(self.flip))
        set_(self, "reduce_zero_label", bool(self.reduce_zero_label))

    # --- applying it -------------------------------------------------------------------------------
    def resized_size(self, height: int, width: int) -> tuple[int, int]:
        """(height, width) the model sees for an image of ``height`` x ``width``."""
        if self.img_scale is None:
            return height, width
        if not self.keep_ratio:
            return self.img_scale[1], self.img_scale[0]
        return rescale_size(height, width, self.img_scale)

    def resize(self, image: np.ndarray) -> np.ndarray:
        """uint8 HWC image at the model's test scale (OpenCV bilinear, as mmcv)."""
        return resize_image_exact(image, self.resized_size(image.shape[0], image.shape[1]))

    def __call__(self, image: np.ndarray) -> torch.Tensor:
        """uint8 HWC RGB image -> normalised (3, h, w) float32 tensor at the test scale."""
        return normalize(self.resize(image), self.mean, self.std)

    # --- persistence -------------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        return {k: list(v) if isinstance(v, tuple) else v for k, v in data.items()}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], where: str = "preprocessing") -> Preprocessing:
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise UserError(f"{where}: unknown keys {unknown}; known: {sorted(known)}")
        try:
            return cls(**dict(data))
        except (TypeError, ValueError) as e:
            raise UserError(f"{where}: {e}" if where else str(e)) from e

    def replace(self, **changes: Any) -> Preprocessing:
        """A copy with ``changes`` (None values are ignored, so CLI flags can be passed as they are)."""
        kept = {k: v for k, v in changes.items() if v is not None}
        return type(self).from_dict({**self.to_dict(), **kept}, where="") if kept else self


class TestTransform:
    """The evaluation's dataset transform: ``preprocessing`` applied to the image (``settings`` replace
    its fields, e.g. ``img_scale=None`` for the original size); the label stays at its original size,
    where the official evaluation compares it with the prediction."""

    def __init__(self, preprocessing: Preprocessing | None = None, **settings: Any) -> None:
        base = preprocessing or Preprocessing()
        self.preprocessing = Preprocessing.from_dict({**base.to_dict(), **settings}) if settings else base

    def __call__(self, image: np.ndarray, label: np.ndarray,
                 rng: np.random.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        return self.preprocessing(image), label_tensor(label)


# Known recipes, for checkpoints that carry no pipeline of their own: the official configs' test
# pipelines (resize keeping the ratio to img_scale, whole image, single scale, no flip).
ADE20K = Preprocessing(img_scale=(2048, 512), reduce_zero_label=True)
CITYSCAPES = Preprocessing(img_scale=(2048, 1024))
KNOWN_BY_CLASSES: dict[int, tuple[str, Preprocessing]] = {150: ("ade20k", ADE20K), 19: ("cityscapes", CITYSCAPES)}


def from_training_config(config: Mapping[str, Any], ignore_index: int = 255,
                         reduce_zero_label: bool | None = None) -> Preprocessing:
    """The test settings of one of this project's training configs (``data.test_transform``, ``eval``)."""
    data, evaluation = config.get("data", {}) or {}, config.get("eval", {}) or {}
    test = data.get("test_transform", {}) or {}
    options = data.get("options", {}) or {}
    if reduce_zero_label is None:
        reduce_zero_label = bool(options.get("reduce_zero_label", data.get("type") == "ade20k"))
    settings: dict[str, Any] = dict(img_scale=test.get("img_scale", (2048, 512)), ignore_index=ignore_index,
                                    reduce_zero_label=reduce_zero_label)
    for key, name in (("mode", "mode"), ("crop_size", "crop_size"), ("stride", "stride"), ("scales", "tta_scales"),
                      ("flip", "flip")):
        if evaluation.get(key) is not None:
            settings[name] = evaluation[key]
    return Preprocessing(**settings)
