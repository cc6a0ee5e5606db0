"""``Segmenter``: a trained SSformer as a function from images to class masks at their own size.

Preprocessing is the model's own (:class:`ssformer.data.preprocessing.Preprocessing`, carried by
every file a model is saved in): the official test pipeline's keep-ratio resize with OpenCV's
bilinear filter and mean/std normalisation; whole or sliding-window inference; the logits are
resized back to the original size (bilinear, align_corners=False) before the argmax / softmax;
for masks a group of classes at a time (:mod:`ssformer.inference.postprocess`: same masks, bounded memory).
A :class:`PipelineOverrides` given here changes the model's settings.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from PIL import Image

from ssformer.data.preprocessing import Preprocessing
from ssformer.errors import UserError
from ssformer.inference import visualize
from ssformer.inference.images import ImageInput, load_rgb
from ssformer.inference.postprocess import check_full_size, resized_argmax
from ssformer.inference.runners import RunSettings, load_deployment
from ssformer.inference.sliding import infer
from ssformer.loading import ConfigInput
from ssformer.models.ssformer import SSformer

MAX_FULL_SIZE_BYTES = 4 << 30


@dataclass(frozen=True)
class PipelineOverrides:
    """Changes to the model's own test pipeline for one :class:`Segmenter`; ``None`` (and
    ``img_scale="auto"``) keep the model's setting.

    ``mode`` "whole" or "slide" (``crop``/``stride`` windows on the resized image; an int for a square),
    ``img_scale`` (long, short) or ``None`` for images at their original size, ``tta`` the multi-scale
    + flip average over ``scales``.
    """

    mode: str | None = None
    crop: int | Sequence[int] | None = None
    stride: int | Sequence[int] | None = None
    tta: bool = False
    scales: Sequence[float] | None = None
    img_scale: Sequence[int] | None | str = "auto"

    def __post_init__(self) -> None:
        if isinstance(self.img_scale, str) and self.img_scale != "auto":
            raise UserError(f"img_scale must be 'auto', None or (long, short), got {self.img_scale!r}")

    def apply(self, preprocessing: Preprocessing) -> Preprocessing:
        """``preprocessing`` with these changes (checked by :class:`Preprocessing`)."""
        pairs = {name: (value, value) if isinstance(value, int) else value
                 for name, value in (("crop_size", self.crop), ("stride", self.stride))}
        changed = preprocessing.replace(mode=self.mode, tta_scales=self.scales, **pairs)
        if self.img_scale is None or not isinstance(self.img_scale, str):
            changed = type(changed).from_dict({**changed.to_dict(), "img_scale": self.img_scale}, where="")
        return changed


@dataclass(frozen=True)
class Labels:
    """Class names and colours to show instead of the model's own (``None``: the model's, else defaults)."""

    class_names: Sequence[str] | None = None
    palette: Sequence[Sequence[int]] | None = None


class Segmenter:
    """Predict class masks with an SSformer.

    ``model_or_path``: an :class:`SSformer`, anything ``SSformer.from_pretrained`` reads (a model
    folder, training or official checkpoint, converted file, Hub repo id; ``config`` overrides
    its model settings), or an ONNX / OpenVINO file from ``ssformer export`` (run by ONNX Runtime /
    OpenVINO on the CPU, ``threads`` threads; :mod:`ssformer.inference.runners`). ``pipeline``
    changes the model's test pipeline (mode, windows, image scale, TTA), ``labels`` its class names
    and colours. An :class:`SSformer` passed in is put in eval mode and moved/cast to
    ``device``/``dtype`` in place (no copy: models can be large).
    """

    def __init__(self, model_or_path: SSformer | str | os.PathLike, device: str | torch.device = "auto",
                 dtype: str | torch.dtype = "auto", *, pipeline: PipelineOverrides | None = None,
                 config: ConfigInput = None, labels: Labels | None = None, threads: int | None = None):
        pipeline, labels = pipeline or PipelineOverrides(), labels or Labels()
        deployment = load_deployment(model_or_path, config, RunSettings(device, dtype, threads))
        self.deployment = deployment
        self.notes = deployment.notes
        self.device = deployment.device
        self.dtype = deployment.dtype
        self.model = deployment.model  # the PyTorch model; None for ONNX and OpenVINO files
        self.runner = deployment.runner
        self.preprocessing = pipeline.apply(deployment.preprocessing)
        self.tta = pipeline.tta
        cfg = deployment.config
        self.num_classes = cfg.num_classes
        self.class_names = visualize.class_labels(self.num_classes, labels.class_names or cfg.class_names)
        self.palette = visualize.class_palette(self.num_classes, labels.palette or cfg.palette)
        # Probabilities and TTA need (K, H, W) float32 at the image size; larger requests are refused.
        self.max_full_size_bytes = MAX_FULL_SIZE_BYTES

    @property
    def mode(self) -> str:
        return self.preprocessing.mode

    @property
    def img_scale(self) -> tuple[int, int] | None:
        return self.preprocessing.img_scale

    # --- core -----------------------------------------------------------------------------------
    def preprocess(self, image: Image.Image) -> torch.Tensor:
        """RGB image -> normalised (3, h, w) float32 tensor at the test scale."""
        return self.preprocessing(np.asarray(image))

    def _scores(self, batch: torch.Tensor, out_size: tuple[int, int] | None) -> torch.Tensor:
        """(B, K, H, W) float32 logits (or averaged probabilities with TTA) at ``out_size``
        (None: the model's resolution; not for TTA, which averages at the output size)."""
        batch = batch.to(device=self.device)  # float32 images in any model precision (see PatchEmbed)
        return infer(self.runner, batch, self.num_classes, out_size, self.preprocessing, self.tta)

    def _run(self, images: Sequence[ImageInput], batch_size: int, proba: bool) -> list[np.ndarray]:
        if batch_size < 1:
            raise UserError(f"batch_size must be >= 1, got {batch_size}")
        rgb = [load_rgb(image) for image in images]
        tensors = [self.preprocess(image) for image in rgb]
        results: list[np.ndarray | None] = [None] * len(rgb)
        # Only images of the same original and resized size share a batch: padding would change the result.
        groups: dict[tuple, list[int]] = {}
        for i, (image, tensor) in enumerate(zip(rgb, tensors)):
            groups.setdefault((image.size, tuple(tensor.shape)), []).append(i)
        for indices in groups.values():
            out_size = (rgb[indices[0]].height, rgb[indices[0]].width)
            for first in range(0, len(indices), batch_size):
                chunk = indices[first:first + batch_size]
                batch = torch.stack([tensors[i] for i in chunk])
                if not proba and not self.tta:  # never the full-size logits (see postprocess)
                    arrays = resized_argmax(self._scores(batch, None), out_size).cpu().numpy()
                    for i, array in zip(chunk, arrays):
                        results[i] = array
                    continue
                check_full_size(self.num_classes, out_size, self.max_full_size_bytes,
                                "probabilities" if proba else "test-time augmentation")
                scores = self._scores(batch, out_size)
                if proba:
                    values = scores if self.tta else scores.softmax(dim=1)
                    arrays = values.cpu().numpy().astype(np.float32)
                else:
                    arrays = scores.argmax(dim=1).cpu().numpy().astype(np.int64)
                for i, array in zip(chunk, arrays):
                    results[i] = array
        return results  # type: ignore[return-value]

    # --- public API -------------------------------------------------------------------------------
    def predict(self, image: ImageInput) -> np.ndarray:
        """(H, W) int64 class indices at the image's original (EXIF-upright) size."""
        return self._run([image], 1, proba=False)[0]

    def predict_batch(self, images: Sequence[ImageInput], batch_size: int = 8) -> list[np.ndarray]:
        """Masks for many images; images of equal size run ``batch_size`` at a time."""
        return self._run(list(images), batch_size, proba=False)

    def predict_proba(self, image: ImageInput) -> np.ndarray:
        """(K, H, W) float32 class probabilities (softmax) at the original size."""
        return self._run([image], 1, proba=True)[0]

    def predict_proba_batch(self, images: Sequence[ImageInput], batch_size: int = 8) -> list[np.ndarray]:
        return self._run(list(images), batch_size, proba=True)

    def overlay(self, image: ImageInput, mask: np.ndarray, alpha: float = 0.5) -> Image.Image:
        """The image with the mask's class colours blended in (``alpha`` = colour weight)."""
        return visualize.overlay(load_rgb(image), mask, self.palette, alpha)

    def mask_image(self, mask: np.ndarray) -> Image.Image:
        """Lossless palette-mode image of the class indices, shown in the class colours."""
        return visualize.mask_image(mask, self.palette)

    def legend(self, classes: Sequence[int] | None = None) -> Image.Image:
        return visualize.legend(self.class_names, self.palette, classes)

    def describe(self) -> dict[str, Any]:
        """The settings predictions are made with (recorded in predict's ``predictions.json``)."""
        return dict(num_classes=self.num_classes, engine=self.deployment.engine, device=str(self.device),
                    dtype=str(self.dtype).replace("torch.", ""), tta=self.tta, preprocessing=self.preprocessing.to_dict())
