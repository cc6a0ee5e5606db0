"""What int8 deployment is checked with: calibration images through the model's own preprocessing,
and how far int8 masks are from the float model's.

:func:`calibration_inputs` turns a folder of the user's images into the inputs the model sees
(calibrating int8 and checking it: ``ssformer.inference.openvino_int8``); :func:`compare_predictions`
runs the float and the int8 model on the same inputs and reports how often their per-pixel argmax
agrees and the mIoU of the int8 masks taken against the float masks (the float model as ground
truth), which is what the quantization changed; :func:`label_miou` scores either model against
the images' own labels.

Two other int8 routes were measured and removed (ONNX Runtime static QDQ and torchao dynamic int8
linears: slower than OpenVINO's int8 on every CPU measured; docs/benchmarks.md).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from ssformer.data.io import read_label
from ssformer.data.preprocessing import Preprocessing
from ssformer.errors import UserError
from ssformer.inference.images import IMAGE_EXTENSIONS, load_rgb
from ssformer.metrics import IoUMetric

LABEL_SUFFIXES = (".png", ".bmp", ".tif", ".tiff")
Runner = Callable[[torch.Tensor], torch.Tensor]  # (1, 3, H, W) normalised image -> (1, K, h, w) logits


@dataclass(frozen=True)
class Agreement:
    """How far int8 predictions are from the float model's, over ``images`` inputs."""

    images: int
    pixels: int
    argmax_agreement: float  # share of pixels where both models pick the same class
    miou: float  # mIoU of the int8 masks with the float masks as labels (mmseg's: classes either model predicts)

    def summary(self) -> str:
        return (f"argmax agreement {100 * self.argmax_agreement:.2f}%, mIoU against the float model "
                f"{100 * self.miou:.2f}% ({self.images} images, {self.pixels} pixels)")


def image_files(folder: str | os.PathLike, limit: int) -> list[Path]:
    """The first ``limit`` image files under ``folder``, sorted by path; a missing or empty folder is refused."""
    if limit < 1:
        raise UserError(f"the number of calibration images must be >= 1, got {limit}")
    folder = Path(folder)
    if not folder.is_dir():
        raise UserError(f"image folder {folder} does not exist or is not a folder")
    files = sorted(p for p in folder.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS)[:limit]
    if not files:
        raise UserError(f"folder {folder} holds no image files ({', '.join(IMAGE_EXTENSIONS)}): give a folder of "
                        f"images of your dataset")
    return files


def calibration_inputs(folder: str | os.PathLike, preprocessing: Preprocessing,
                       size: tuple[int, int] | None = None, limit: int = 16) -> list[torch.Tensor]:
    """The first ``limit`` images under ``folder`` (sorted by path) as the model sees them:
    (1, 3, H, W) tensors after the model's own preprocessing, resized to ``size`` (bilinear) when
    the quantized model has a fixed input size."""
    inputs = []
    for path in image_files(folder, limit):
        tensor = preprocessing(np.asarray(load_rgb(path)))[None]
        if size is not None and tuple(tensor.shape[-2:]) != tuple(size):
            tensor = F.interpolate(tensor, size=size, mode="bilinear", align_corners=False)
        inputs.append(tensor.contiguous())
    return inputs


def paired_labels(image_folder: str | os.PathLike, label_folder: str | os.PathLike, limit: int) -> list[torch.Tensor]:
    """The label map of each of the first ``limit`` images of ``image_folder`` (as :func:`calibration_inputs`
    takes them): ``label_folder`` / the image's relative path with a label suffix (``.png`` first)."""
    image_folder, label_folder = Path(image_folder), Path(label_folder)
    if not label_folder.is_dir():
        raise UserError(f"label folder {label_folder} does not exist or is not a folder")
    labels = []
    for path in image_files(image_folder, limit):
        stem = label_folder / path.relative_to(image_folder).with_suffix("")
        found = [stem.with_suffix(s) for s in LABEL_SUFFIXES if stem.with_suffix(s).is_file()]
        if not found:
            raise UserError(f"image {path} has no label in {label_folder} (looked for {stem}.png)")
        label = read_label(found[0])
        if label.ndim != 2:
            raise UserError(f"label {found[0]} is not a single-channel map of class ids")
        labels.append(torch.from_numpy(label.astype(np.int64)))
    return labels


def label_miou(runner: Runner, inputs: Sequence[torch.Tensor], labels: Sequence[torch.Tensor],
               num_classes: int) -> float:
    """mIoU of ``runner``'s masks against ``labels`` (mmseg's: classes labelled or predicted), the logits
    resized to each label's size; label values outside ``0..num_classes-1`` are ignored."""
    metric = IoUMetric(num_classes, ignore_index=-1)
    for tensor, label in zip(inputs, labels, strict=True):
        logits = F.interpolate(runner(tensor).float(), size=tuple(label.shape), mode="bilinear", align_corners=False)
        keep = (label >= 0) & (label < num_classes)
        metric.update(logits.argmax(dim=1)[0][keep], label[keep])
    return metric.compute()["mIoU"]


def compare_predictions(reference: Runner, candidate: Runner, inputs: Sequence[torch.Tensor],
                        num_classes: int) -> Agreement:
    """Argmax agreement and mIoU of ``candidate``'s masks against ``reference``'s on ``inputs``."""
    if not inputs:
        raise ValueError("no inputs to compare the float and the int8 model on")
    metric = IoUMetric(num_classes, ignore_index=-1)  # no pixel is ignored
    for tensor in inputs:
        expected = reference(tensor).argmax(dim=1)
        got = candidate(tensor).argmax(dim=1)
        if got.shape != expected.shape:
            raise ValueError(f"int8 model gives masks of shape {tuple(got.shape)}, the float model "
                             f"{tuple(expected.shape)}")
        metric.update(got, expected)
    results = metric.compute()  # with the float masks as labels, aAcc is the argmax agreement
    return Agreement(len(inputs), int(metric.counts[3].sum()), results["aAcc"], results["mIoU"])


def torch_runner(model: nn.Module) -> Runner:
    """``model`` in eval mode under ``inference_mode``, float32 logits on the CPU."""
    model.eval()

    def run(tensor: torch.Tensor) -> torch.Tensor:
        with torch.inference_mode():
            return model(tensor).float().cpu()
    return run


class AccuracyError(UserError):
    """The int8 model agrees with the float model less often than asked for; nothing was written."""
