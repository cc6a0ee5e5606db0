"""int8 OpenVINO models with NNCF, written only when their masks agree with the float model's.

``nncf.quantize`` with ``model_type=TRANSFORMER`` (SmoothQuant on the block linears, fast bias
correction, the MIXED preset: symmetric weights, asymmetric activations) calibrates on the user's
images after the model's own preprocessing; the Swin blocks' matrix products become int8 and the
convolutions (patch embedding, decoder, classifier) stay float. The int8 IR is checked against the float IR (f32) on the
check images twice: with the rest of the graph in f32, and in bf16 where the CPU runs bf16 natively
(``INFERENCE_PRECISION_HINT``). It is written when the f32 check reaches ``min_agreement``; it runs
bf16 elsewhere by default only when that check reached it too. With ``accuracy_control``, a plain
result that falls short goes through NNCF's ``quantize_with_accuracy_control`` (the layers that cost
most agreement go back to float, argmax agreement as the metric): many evaluations of the model,
so minutes for small models and far longer for large ones.
"""

from __future__ import annotations

import contextlib
import io
import logging
import os
import tempfile
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ssformer.data.preprocessing import Preprocessing
from ssformer.errors import UserError
from ssformer.inference import metadata
from ssformer.inference.openvino import (
    check_ir_path,
    compile_ir,
    cpu_has_native_bf16,
    export_openvino,
    install_ir,
    ir_runner,
    read_ir,
    save_ir,
    set_metadata,
)
from ssformer.inference.quantize import (
    AccuracyError,
    Agreement,
    Int8Settings,
    calibration_inputs,
    compare_predictions,
    label_miou,
    paired_labels,
)
from ssformer.utils import keep_signal_stack


@dataclass
class OpenVINOInt8Export:
    path: Path
    float_checks: list[tuple[tuple[int, int], float]]  # the float IR against PyTorch
    agreement: Agreement  # the int8 IR, f32 elsewhere, against the float IR in f32
    bf16_agreement: Agreement | None  # the same with bf16 elsewhere (None: this CPU has no native bf16)
    accuracy_control: bool  # whether the plain quantization fell short and accuracy control was used
    bf16_passed: bool = False  # whether bf16 elsewhere also reached the minimum agreement
    label_miou: tuple[float, float] | None = None  # (float IR, int8 IR) mIoU against the check labels

    @property
    def run_precision(self) -> str:
        """What the int8 IR runs at elsewhere by default: bf16 only where that also passed the check."""
        return "bf16" if self.bf16_passed else "f32"


def nncf_module() -> Any:
    try:
        import nncf
    except ImportError as e:
        raise UserError("int8 OpenVINO models need NNCF: pip install 'ssformer[openvino]'") from e
    return nncf


@contextlib.contextmanager
def quiet_nncf() -> Iterator[None]:
    """NNCF without its progress bars and info lines (the command prints the result); the signal
    stack its OpenVINO compilations replace is put back (:func:`ssformer.utils.keep_signal_stack`)."""
    nncf = nncf_module()
    logger = logging.getLogger("nncf")
    level = logger.level
    nncf.set_log_level(logging.ERROR)
    try:  # its rich progress bars write to the console streams, whatever the log level
        with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()), \
                keep_signal_stack():
            yield
    finally:
        nncf.set_log_level(level or logging.INFO)


def agreement_metric(references: Sequence[torch.Tensor]):
    """NNCF's validation function: (share of pixels where ``compiled`` picks the float IR's class,
    that share per image), over items ``(index into references, input array)``."""
    def validate(compiled: Any, items: Iterable[Any]) -> tuple[float, list[float]]:
        run = ir_runner(compiled)
        same = total = 0
        per_item = []
        for index, array in items:
            got = run(torch.from_numpy(array)).argmax(dim=1)
            matches = int((got == references[index]).sum())
            same, total = same + matches, total + got.numel()
            per_item.append(matches / got.numel())
        return same / max(total, 1), per_item
    return validate


def quantize_ir(float_ir: Any, inputs: Sequence[torch.Tensor], checks: Sequence[torch.Tensor],
                settings: Int8Settings, reference: Any) -> tuple[Any, bool]:
    """NNCF's int8 model of ``float_ir``; with ``settings.accuracy_control``, the accuracy-aware one when
    the plain one falls below ``settings.min_agreement`` on ``checks`` (``reference``: the float IR
    compiled in f32). Returns (model, whether accuracy control was used)."""
    nncf = nncf_module()
    calibration = nncf.Dataset([t.numpy() for t in inputs])
    # The convolutions (patch embedding, the decoder's 1x1 projections and fuse, the classifier) stay
    # float: on a camvid_cpu model (700 iterations) they carried most of the int8 error (argmax agreement 95.6%
    # with them quantized, 99.3% without, 24 CamVid test images), for a small share of the work.
    common = dict(preset=nncf.QuantizationPreset.MIXED, model_type=nncf.ModelType.TRANSFORMER,
                  subset_size=len(inputs), ignored_scope=nncf.IgnoredScope(types=["Convolution"], validate=False))
    with quiet_nncf():
        plain = nncf.quantize(float_ir, calibration, **common)
    if not settings.accuracy_control or agreement(reference, plain, checks, "f32").argmax_agreement \
            >= settings.min_agreement:
        return plain, False
    references = [ir_runner(reference)(t).argmax(dim=1) for t in checks]
    validation = nncf.Dataset([(i, t.numpy()) for i, t in enumerate(checks)], lambda item: item[1])
    with quiet_nncf():
        controlled = nncf.quantize_with_accuracy_control(
            float_ir, calibration, validation, validation_fn=agreement_metric(references),
            max_drop=1 - settings.min_agreement, drop_type=nncf.DropType.ABSOLUTE,
            advanced_accuracy_restorer_parameters=_restorer(settings), **common)
    return controlled, True


def _restorer(settings: Int8Settings) -> Any:
    from nncf.quantization.advanced_parameters import AdvancedAccuracyRestorerParameters

    if settings.max_restored is None:
        return AdvancedAccuracyRestorerParameters()
    return AdvancedAccuracyRestorerParameters(max_num_iterations=settings.max_restored)


def agreement(reference: Any, candidate: Any, checks: Sequence[torch.Tensor], precision: str) -> Agreement:
    """``candidate`` (an int8 IR) compiled at ``precision`` elsewhere against ``reference`` (the float IR in f32)."""
    runner = ir_runner(reference)
    num_classes = int(runner(checks[0]).shape[1])
    return compare_predictions(runner, ir_runner(compile_ir(candidate, precision)), checks, num_classes)


def export_int8_openvino(model: nn.Module, preprocessing: Preprocessing, size: tuple[int, int],
                         out: str | os.PathLike, settings: Int8Settings, dynamic: bool = False) -> OpenVINOInt8Export:
    """Export ``model`` as a float IR, quantize it with NNCF on ``settings.calibration`` and write the
    int8 IR to ``out`` only if its masks agree with the float IR's on ``settings.min_agreement`` of
    the pixels of the check images (default: the calibration images); nothing is written otherwise."""
    if not 0 <= settings.min_agreement <= 1:
        raise UserError(f"--min-agreement must be in [0, 1], got {settings.min_agreement}")
    out = check_ir_path(out)
    nncf_module()
    fixed = None if dynamic else (int(size[0]), int(size[1]))
    inputs = calibration_inputs(settings.calibration, preprocessing, fixed, settings.calibration_images)
    checks = inputs if settings.check is None else calibration_inputs(settings.check, preprocessing, fixed,
                                                                      settings.calibration_images)
    if settings.check_labels is not None and settings.check is None:
        raise UserError("--check-labels needs --check: the folder of images those labels belong to")
    labels = None if settings.check_labels is None else paired_labels(settings.check, settings.check_labels,
                                                                      settings.calibration_images)
    out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=".ssformer-int8-", dir=out.parent) as work:
        exported = export_openvino(model, size, Path(work) / "float.xml", dynamic=dynamic)
        if exported.max_abs_diff > settings.tolerance:
            raise UserError(f"the float OpenVINO export differs from PyTorch by {exported.max_abs_diff:.3g}, above "
                            f"--tolerance {settings.tolerance}; {out} not written")
        float_ir = read_ir(exported.path)
        reference = compile_ir(float_ir, "f32")
        int8_ir, controlled = quantize_ir(float_ir, inputs, checks, settings, reference)
        result = OpenVINOInt8Export(out, exported.checks, agreement(reference, int8_ir, checks, "f32"), None,
                                    controlled)
        if result.agreement.argmax_agreement < settings.min_agreement:
            hint = "" if settings.accuracy_control else "; --accuracy-control may recover it (slow)"
            raise AccuracyError(f"int8 model: {result.agreement.summary()}, below the minimum agreement "
                                f"{100 * settings.min_agreement:.2f}%{hint}; {out} not written")
        if labels is not None:
            num_classes = int(model.config.num_classes)
            result.label_miou = (label_miou(ir_runner(reference), checks, labels, num_classes),
                                 label_miou(ir_runner(compile_ir(int8_ir, "f32")), checks, labels, num_classes))
        if cpu_has_native_bf16():
            result.bf16_agreement = agreement(reference, int8_ir, checks, "bf16")
            result.bf16_passed = result.bf16_agreement.argmax_agreement >= settings.min_agreement
        set_metadata(int8_ir, metadata.documents(model, "int8", fixed, result.run_precision))
        install_ir(save_ir(int8_ir, Path(work) / "int8.xml"), out)
    return result
