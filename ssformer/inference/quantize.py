"""int8 for CPU deployment, with the accuracy check built in.

Two engines quantize (both calibrated on the user's images after the model's own preprocessing):
OpenVINO with NNCF (``ssformer.inference.openvino_int8``), and ONNX Runtime's static quantization
(:func:`quantize_onnx`: int8 weights per output channel and uint8 activations in QDQ form for every
MatMul, Gemm and Conv). Which is faster depends on the CPU (docs/benchmarks.md, "int8 routes").
torchao's dynamic int8 linears were measured and removed: 0.05-0.10x the eager fp32 model on an
AVX2 CPU and 1.11x on Zen 4.

:func:`compare_predictions` runs the float and the int8 model on the same inputs and reports how
often their per-pixel argmax agrees and the mIoU of the int8 masks taken against the float masks
(the float model as ground truth), which is what the quantization changed; :func:`label_miou`
scores either model against the images' own labels.
"""

from __future__ import annotations

import os
import tempfile
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
from ssformer.utils import atomic_write

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


def onnx_runner(path: str | os.PathLike, threads: int | None = None) -> Runner:
    """The ONNX file at ``path`` in ONNX Runtime on the CPU."""
    import onnxruntime

    options = onnxruntime.SessionOptions()
    if threads is not None:
        options.intra_op_num_threads = threads
    session = onnxruntime.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name
    return lambda tensor: torch.from_numpy(session.run(None, {name: tensor.numpy()})[0])


def quantize_onnx(float_path: str | os.PathLike, out: str | os.PathLike, inputs: Sequence[torch.Tensor]) -> Path:
    """Write an int8 (QDQ) copy of the float ONNX model at ``float_path`` to ``out`` (atomically),
    its activation ranges calibrated (min/max) on ``inputs``."""
    try:
        from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static
        from onnxruntime.quantization.shape_inference import quant_pre_process
    except ImportError as e:
        raise UserError("int8 ONNX needs onnxruntime: pip install 'ssformer[onnx]'") from e
    if not inputs:
        raise UserError("int8 ONNX needs at least one calibration image")

    class Images(CalibrationDataReader):
        def __init__(self, name: str) -> None:
            self.batches = iter([{name: tensor.numpy()} for tensor in inputs])

        def get_next(self) -> dict | None:
            return next(self.batches, None)

    import onnx

    name = onnx.load(str(float_path), load_external_data=False).graph.input[0].name
    out = Path(out)
    with tempfile.TemporaryDirectory(prefix="ssformer-int8-") as work:
        prepared = Path(work) / "prepared.onnx"
        quant_pre_process(str(float_path), str(prepared))  # shape inference and graph folding first, as ORT advises
        with atomic_write(out) as tmp:
            quantize_static(str(prepared), str(tmp), Images(name), quant_format=QuantFormat.QDQ,
                            op_types_to_quantize=["MatMul", "Gemm", "Conv"], per_channel=True,
                            activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
                            extra_options={"MatMulConstBOnly": True})  # only products with a weight
    return out


@dataclass(frozen=True)
class Int8Settings:
    """``--calib`` and what goes with it, for either int8 engine."""

    calibration: str | os.PathLike
    calibration_images: int = 16
    check: str | os.PathLike | None = None
    min_agreement: float = 0.99
    tolerance: float = 1e-3  # of the float export against PyTorch
    accuracy_control: bool = False  # OpenVINO: NNCF's accuracy-aware quantization when the plain one falls short
    max_restored: int | None = None  # with accuracy_control: at most this many layer groups back in float
    check_labels: str | os.PathLike | None = None  # OpenVINO: label maps of the check images, mIoU of both models


@dataclass
class Int8Export:
    path: Path
    float_checks: list[tuple[tuple[int, int], float]]  # the float export against PyTorch, as export_model reports
    agreement: Agreement  # the int8 file against the float file


class AccuracyError(UserError):
    """The int8 model agrees with the float model less often than asked for; nothing was written."""


def export_int8_onnx(model: nn.Module, preprocessing: Preprocessing, size: tuple[int, int],
                     out: str | os.PathLike, settings: Int8Settings, dynamic: bool = False,
                     opset: int | None = None) -> Int8Export:
    """Export ``model`` to float ONNX, quantize it (:func:`quantize_onnx`) on images of
    ``settings.calibration`` and write it to ``out`` only if its masks agree with the float file's on at
    least ``settings.min_agreement`` of the pixels of the check images (default: the calibration images).
    The float export must first match PyTorch within ``settings.tolerance``."""
    from ssformer.inference import metadata
    from ssformer.inference.export import ExportError, export_model, write_onnx_metadata

    min_agreement, tolerance = settings.min_agreement, settings.tolerance
    if not 0 <= min_agreement <= 1:
        raise UserError(f"the minimum agreement must be in [0, 1], got {min_agreement}")
    fixed = None if dynamic else (int(size[0]), int(size[1]))
    limit = settings.calibration_images
    inputs = calibration_inputs(settings.calibration, preprocessing, fixed, limit)  # bad folders fail first
    checks = inputs if settings.check is None else calibration_inputs(settings.check, preprocessing, fixed, limit)
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=".ssformer-int8-", dir=out.parent) as work:
        float_path, int8_path = Path(work) / "float.onnx", Path(work) / "int8.onnx"
        exported = export_model(model, "onnx", size, float_path, dynamic=dynamic, opset=opset)
        if exported.max_abs_diff > tolerance:
            raise ExportError(f"the float ONNX export differs from PyTorch by {exported.max_abs_diff:.3g}, above "
                              f"{tolerance}; {out} not written")
        quantize_onnx(float_path, int8_path, inputs)
        if hasattr(model, "config"):  # the int8 file is an artifact too: preprocessing and labels with it
            write_onnx_metadata(int8_path, metadata.documents(model, "int8", fixed))
        agreement = compare_predictions(onnx_runner(float_path), onnx_runner(int8_path), checks,
                                        model.config.num_classes)
        if agreement.argmax_agreement < min_agreement:
            raise AccuracyError(f"int8 model: {agreement.summary()}, below the minimum agreement "
                                f"{100 * min_agreement:.2f}%; {out} not written")
        os.replace(int8_path, out)
    return Int8Export(out, exported.checks, agreement)
