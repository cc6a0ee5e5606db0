"""OpenVINO, the CPU deployment engine: an SSformer exported as an IR (``.xml`` + ``.bin``) that
carries its preprocessing, class names and palette in its runtime info, and the compiled model.

The IR is converted from the ONNX export (:mod:`ssformer.inference.export`: fixed-shape through
``torch.export``, ``dynamic`` through the plain attention path), which OpenVINO reads as it is;
converting the PyTorch model directly stops in the plain path's ``aten::narrow``. Weights stay
float32 (``compress_to_fp16=False``): the file predicts like the model, and the precision is chosen
when it is compiled (``INFERENCE_PRECISION_HINT``: f32, or bf16 where the CPU runs it natively).
"""

from __future__ import annotations

import copy
import os
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from ssformer.errors import UserError
from ssformer.inference import metadata
from ssformer.inference.export import ExportResult, check_export, expected_logits, export_model, model_device
from ssformer.utils import atomic_write, keep_signal_stack


def openvino_module() -> Any:
    try:
        import openvino
    except ImportError as e:
        raise UserError("OpenVINO models need the openvino extra: pip install 'ssformer[openvino]'") from e
    return openvino


def check_ir_path(out: str | os.PathLike) -> Path:
    out = Path(out)
    if out.suffix.lower() != ".xml":
        raise UserError(f"--out {out}: an OpenVINO model is written as NAME.xml (its weights beside it as NAME.bin)")
    return out


def set_metadata(model: Any, entries: Mapping[str, str]) -> None:
    """``entries`` (:func:`ssformer.inference.metadata.documents`) into the IR's runtime info."""
    for name, value in entries.items():
        model.set_rt_info(value, [metadata.PREFIX, name])


def read_metadata(model: Any) -> dict[str, str]:
    """The ``ssformer/<name>`` runtime-info entries of a read IR (empty for a model not written here)."""
    names = (*metadata.NAMES, *metadata.LEGACY_NAMES)
    return {name: model.get_rt_info([metadata.PREFIX, name]).astype(str) for name in names
            if model.has_rt_info([metadata.PREFIX, name])}


def save_ir(model: Any, xml: Path) -> Path:
    """Write an IR pair as it is (float32 weights); used in a staging folder before :func:`install_ir`."""
    openvino_module().save_model(model, str(xml), compress_to_fp16=False)
    return xml


def install_ir(staged: Path, out: Path) -> Path:
    """Move a staged IR pair to ``out``, each file atomically: the ``.bin`` first, then the ``.xml``."""
    for suffix in (".bin", ".xml"):
        with atomic_write(out.with_suffix(suffix)) as tmp:
            os.replace(staged.with_suffix(suffix), tmp)
    return out


def compile_ir(model: Any, precision: str = "f32", threads: int | None = None) -> Any:
    """``model`` (an ``openvino.Model`` or a path) compiled for the CPU at ``precision`` (f32 or bf16)."""
    ov = openvino_module()
    config: dict[str, Any] = {"INFERENCE_PRECISION_HINT": precision, "PERFORMANCE_HINT": "LATENCY"}
    if threads is not None:
        config["INFERENCE_NUM_THREADS"] = int(threads)
    with keep_signal_stack():  # OpenVINO swaps in a signal stack it later frees (ssformer.utils)
        return ov.Core().compile_model(model, "CPU", config)


def ir_runner(compiled: Any):
    """(1, 3, H, W) CPU tensor -> float32 logits tensor, through a compiled IR."""
    def run(tensor: torch.Tensor) -> torch.Tensor:
        return torch.from_numpy(np.asarray(compiled(tensor.numpy())[0], dtype=np.float32))
    return run


def convert_onnx(onnx_path: Path, entries: Mapping[str, str]) -> Any:
    """The ONNX file as an ``openvino.Model`` with ``entries`` in its runtime info."""
    model = openvino_module().convert_model(str(onnx_path))
    set_metadata(model, entries)
    return model


def export_openvino(model: nn.Module, size: tuple[int, int], out: str | os.PathLike, dynamic: bool = False,
                    opset: int | None = None) -> ExportResult:
    """Write ``model`` (an SSformer) as an OpenVINO IR at ``out`` (``.xml``) and check the written
    file, compiled in f32, against PyTorch at the export size (dynamic: also 45x70 and 203x317)."""
    openvino_module()
    out = check_ir_path(out)
    size = (int(size[0]), int(size[1]))
    if model_device(model).type != "cpu":
        model = copy.deepcopy(model).cpu()  # OpenVINO runs on the CPU; the caller's model stays where it is
    model = model.float().eval()
    out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=".ssformer-openvino-", dir=out.parent) as work:
        onnx_path = Path(work) / "model.onnx"
        export_model(model, "onnx", size, onnx_path, dynamic=dynamic, opset=opset)
        ir = convert_onnx(onnx_path, metadata.documents(model, "fp32", None if dynamic else size))
        staged = save_ir(ir, Path(work) / "staged.xml")
        checks = check_export(ir_runner(compile_ir(str(staged))), expected_logits(model, size, dynamic))
        install_ir(staged, out)
    return ExportResult(out, "openvino", checks)


def read_ir(path: str | os.PathLike) -> Any:
    """An IR read from its ``.xml`` (beside its ``.bin``); a broken pair is refused in one line."""
    ov = openvino_module()
    path = Path(path)
    weights = path.with_suffix(".bin")
    if not weights.is_file():
        raise UserError(f"{path}: its weights file {weights} is missing (an OpenVINO model is the .xml and "
                        f"the .bin beside it); copy both")
    _check_ir_xml(path)
    try:
        return ov.Core().read_model(str(path))
    except Exception as e:  # OpenVINO raises RuntimeError subclasses for parse and weight-size errors
        reason = _openvino_reason(e)
        if "weights" in reason.lower():
            raise UserError(f"{path}: its weights file {weights} does not fit it ({reason}); an .xml and .bin "
                            f"belong together as one export wrote them") from e
        raise UserError(f"{path} is not a readable OpenVINO model ({reason}); export it again") from e


def _check_ir_xml(path: Path) -> None:
    """Refuse a file that is not an IR's XML before OpenVINO tries every frontend on it (noisily)."""
    from xml.etree import ElementTree

    try:
        root = ElementTree.parse(path).getroot()  # whole: a truncated file fails here too
    except ElementTree.ParseError as e:
        raise UserError(f"{path} is not an OpenVINO model: not an XML file ({e})") from e
    if root.tag != "net":
        raise UserError(f"{path} is not an OpenVINO model: its XML root is <{root.tag}>, not an IR's <net>")


def _openvino_reason(error: Exception) -> str:
    """The line of an OpenVINO exception that says what is wrong (the first ones name its source files)."""
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    useful = [line for line in lines if not line.startswith(("Exception from", "Check '"))]
    return (useful or lines or [type(error).__name__])[0][:200]


def cpu_has_native_bf16() -> bool:
    """Whether this CPU runs bf16 natively (AMX or AVX-512 BF16), as OpenVINO reports it."""
    capabilities = openvino_module().Core().get_property("CPU", "OPTIMIZATION_CAPABILITIES")
    return "BF16" in [str(c).upper() for c in capabilities]
