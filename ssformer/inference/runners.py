"""One runner per engine behind the same prediction code: a callable from a normalised
(B, 3, H, W) float image tensor to (B, K, H, W) logits.

:func:`load_deployment` is where the file kind picks the engine: PyTorch for everything
``SSformer.from_pretrained`` reads, ONNX Runtime for ``.onnx`` files and OpenVINO for ``.xml`` IRs
written by ``ssformer export`` (their metadata gives the class count, names, palette and test
pipeline, :mod:`ssformer.inference.metadata`). Segmenter, sliding-window inference and evaluation
only ever call the runner, so an exported file goes through the model's own test pipeline.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ssformer.checkpoints.filekind import EXPORTED_KINDS, describe, file_kind, refuse_unloadable
from ssformer.data.preprocessing import Preprocessing
from ssformer.devices import resolve_device
from ssformer.errors import UserError
from ssformer.inference import metadata
from ssformer.loading import ConfigInput, load_model
from ssformer.models.ssformer import SSformerConfig
from ssformer.precision import resolve_dtype

Runner = Callable[[torch.Tensor], torch.Tensor]


@dataclass(frozen=True)
class RunSettings:
    """Where and how a model runs: ``device``/``dtype`` as the commands take them ("auto", "cpu",
    "fp32", "bf16"...); ``threads`` for the exported engines (None: the engine's default)."""

    device: str | torch.device = "auto"
    dtype: str | torch.dtype = "auto"
    threads: int | None = None


class ExportedRunner:
    """An exported file's single-image call, run once per image of a batch (exports take batch 1);
    a fixed-size export refuses other sizes with a line that says what to do."""

    def __init__(self, run_one: Runner, source: str, input_size: tuple[int, int] | None):
        self.run_one, self.source, self.input_size = run_one, source, input_size

    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        images = images.detach().to("cpu", torch.float32).contiguous()
        if self.input_size is not None and tuple(images.shape[2:]) != self.input_size:
            h, w = self.input_size
            raise UserError(f"{self.source} is a fixed-size export ({h}x{w} inputs only) and this input is "
                            f"{images.shape[2]}x{images.shape[3]}: export with --dynamic, or use --mode slide "
                            f"--crop {h} {w} on images at least that large")
        return torch.cat([self.run_one(images[i:i + 1]) for i in range(images.shape[0])])


@dataclass
class Deployment:
    """A runnable model and what it carries: config (class count, names, palette), test pipeline, recipe."""

    runner: Runner
    config: SSformerConfig
    preprocessing: Preprocessing
    recipe: dict[str, Any] | None
    engine: str  # pytorch | onnxruntime | openvino
    dtype: torch.dtype | str  # what it runs at: a torch dtype (PyTorch); "fp32", "bf16", "int8, bf16 elsewhere"
    device: torch.device
    source: str
    model: nn.Module | None = None  # the PyTorch model, for the pytorch engine
    input_size: tuple[int, int] | None = None  # fixed-size exports
    notes: list[str] = field(default_factory=list)

    @property
    def num_classes(self) -> int:
        return self.config.num_classes


def _exported_device(device: str | torch.device) -> torch.device:
    if str(device) not in ("auto", "cpu"):
        raise UserError(f"--device {device}: ONNX and OpenVINO models run on the CPU here; leave out --device "
                        f"(or give a PyTorch checkpoint to run on a GPU)")
    return torch.device("cpu")


def _onnx_session(path: Path, threads: int | None) -> Any:
    try:
        import onnxruntime
    except ImportError as e:
        raise UserError("ONNX models need onnxruntime: pip install 'ssformer[onnx]'") from e
    options = onnxruntime.SessionOptions()
    if threads is not None:
        options.intra_op_num_threads = threads
    try:
        return onnxruntime.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    except Exception as e:  # onnxruntime raises its own Fail / InvalidProtobuf / InvalidGraph types
        first = str(e).strip().splitlines()[0][:200] if str(e).strip() else type(e).__name__
        raise UserError(f"{path} is not a readable ONNX model ({first}); export it again") from e


def _onnx_deployment(path: Path, settings: RunSettings) -> Deployment:
    device = _exported_device(settings.device)
    if settings.dtype not in ("auto", "fp32", torch.float32):
        raise UserError(f"--dtype {settings.dtype}: ONNX models run in float32 here (OpenVINO runs bf16: "
                        f"export with --format openvino)")
    session = _onnx_session(path, settings.threads)
    info = metadata.parse(_onnx_entries(session), str(path))
    name = session.get_inputs()[0].name

    def run_one(image: torch.Tensor) -> torch.Tensor:
        return torch.from_numpy(session.run(None, {name: image.numpy()})[0])
    return Deployment(ExportedRunner(run_one, str(path), info.input_size), info.config, info.preprocessing,
                      info.recipe, "onnxruntime", info.precision, device, str(path), input_size=info.input_size)


def _onnx_entries(session: Any) -> dict[str, str]:
    props = session.get_modelmeta().custom_metadata_map
    prefix = metadata.PREFIX + "."
    return {key[len(prefix):]: value for key, value in props.items() if key.startswith(prefix)}


def _openvino_precision(dtype: str | torch.dtype, info: metadata.ExportedInfo) -> str:
    """The OpenVINO inference precision for ``--dtype``: "auto" is f32 (a float file predicts like the
    model), or bf16 for an int8 file whose export check passed in bf16, where this CPU runs it natively."""
    from ssformer.inference.openvino import cpu_has_native_bf16

    if dtype in ("fp32", torch.float32):
        return "f32"
    if dtype in ("bf16", torch.bfloat16):
        return "bf16"
    if dtype == "auto":
        return "bf16" if info.run_precision == "bf16" and cpu_has_native_bf16() else "f32"
    raise UserError(f"--dtype {dtype}: OpenVINO models run fp32 or bf16")


def _openvino_deployment(path: Path, settings: RunSettings) -> Deployment:
    from ssformer.inference.openvino import compile_ir, ir_runner, read_ir, read_metadata

    device = _exported_device(settings.device)
    model = read_ir(path)
    info = metadata.parse(read_metadata(model), str(path))
    precision = _openvino_precision(settings.dtype, info)
    compiled = compile_ir(model, precision, settings.threads)
    label = {"f32": "fp32", "bf16": "bf16"}[precision]
    label = f"int8, {label} elsewhere" if info.precision == "int8" else label
    return Deployment(ExportedRunner(ir_runner(compiled), str(path), info.input_size), info.config,
                      info.preprocessing, info.recipe, "openvino", label, device, str(path),
                      input_size=info.input_size)


def _torch_deployment(source: Any, config: ConfigInput, settings: RunSettings) -> Deployment:
    loaded = load_model(source, config)
    device = resolve_device(settings.device, what="device")
    dtype = resolve_dtype(settings.dtype, device)
    model = loaded.model.to(device=device, dtype=dtype).eval()
    return Deployment(model, model.config, loaded.preprocessing, model.recipe, "pytorch", dtype, device,
                      loaded.source, model=model, notes=loaded.notes)


def load_deployment(source: nn.Module | str | os.PathLike, config: ConfigInput = None,
                    settings: RunSettings | None = None) -> Deployment:
    """The model ``source`` holds, ready to run on its engine (see the module docstring)."""
    settings = settings or RunSettings()
    kind = file_kind(source) if isinstance(source, (str, os.PathLike)) and Path(source).exists() else "checkpoint"
    if kind not in EXPORTED_KINDS:
        if kind not in ("folder", "checkpoint"):
            refuse_unloadable(source, kind)
        return _torch_deployment(source, config, settings)
    if config is not None:
        raise UserError(f"--config does not apply to {source}: {describe(kind)} carries its own settings")
    path = Path(source)
    return _onnx_deployment(path, settings) if kind == "onnx" else _openvino_deployment(path, settings)
