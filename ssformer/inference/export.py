"""Exporting a trained SSformer to ONNX, TorchScript or a ``torch.export`` program, checked on the spot.

Every export runs the saved file once, on a random image of the export size, and reports the
largest absolute logit difference to the PyTorch model (ONNX through onnxruntime), so a broken
export fails here, not in deployment.

Graphs are traced at one input size. ``dynamic=True`` asks ``torch.export`` for symbolic height
and width; it fails with :class:`ExportError` when the model's shape logic cannot be expressed
symbolically (see docs/inference.md for the current state).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn

from ssformer.utils import atomic_write

FORMATS = ("onnx", "torchscript", "exported-program")


class ExportError(ValueError):
    """The model could not be exported, or the exported file does not reproduce it."""


@dataclass
class ExportResult:
    path: Path
    format: str
    checks: list[tuple[tuple[int, int], float]] = field(default_factory=list)  # (size, max |diff|)

    @property
    def max_abs_diff(self) -> float:
        return max(diff for _, diff in self.checks)


def _example(size: tuple[int, int], seed: int = 0) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    return torch.randn(1, 3, *size, generator=generator)


def export_program(model: nn.Module, size: tuple[int, int], dynamic: bool = False,
                   max_size: int = 4096) -> torch.export.ExportedProgram:
    """``torch.export`` of ``model`` (eval mode) on a (1, 3, H, W) input; H and W symbolic when
    ``dynamic`` (from 32 to ``max_size``)."""
    example = _example(size)
    dynamic_shapes = None
    if dynamic:
        height = torch.export.Dim("height", min=32, max=max_size)
        width = torch.export.Dim("width", min=32, max=max_size)
        dynamic_shapes = ({2: height, 3: width},)
    try:
        # strict: traced by TorchDynamo, where the model's Python-side caches are bypassed
        return torch.export.export(model.eval(), (example,), dynamic_shapes=dynamic_shapes, strict=True)
    except Exception as e:  # torch raises many types (UserError, guard violations, unsupported ops)
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        what = "dynamic-shape" if dynamic else f"{size[0]}x{size[1]}"
        raise ExportError(f"torch.export failed for a {what} export: {type(e).__name__}: {first}") from e


def _max_diff(a: torch.Tensor, b: torch.Tensor) -> float:
    if a.shape != b.shape:
        raise ExportError(f"exported model gives shape {tuple(a.shape)}, PyTorch {tuple(b.shape)}")
    return float((a.float() - b.float()).abs().max())


def _check_sizes(size: tuple[int, int], dynamic: bool) -> list[tuple[int, int]]:
    """The export size, and for dynamic exports also a size that is no multiple of 32 or the window."""
    sizes = [size]
    if dynamic:
        sizes.append((size[0] + 37, max(32, size[1] - 19)))
    return sizes


def export_model(model: nn.Module, fmt: str, size: tuple[int, int], out: str | os.PathLike,
                 dynamic: bool = False, opset: int | None = None) -> ExportResult:
    """Write ``model`` as ``fmt`` to ``out`` (atomically) and check the written file against PyTorch."""
    if fmt not in FORMATS:
        raise ValueError(f"format must be one of {', '.join(FORMATS)}, got {fmt!r}")
    if len(size) != 2 or min(size) < 1:
        raise ValueError(f"size must be two positive ints (H, W), got {size}")
    size = (int(size[0]), int(size[1]))
    if fmt == "onnx":
        try:
            import onnxruntime
        except ImportError as e:
            raise ExportError("ONNX export needs onnx, onnxscript and onnxruntime: pip install 'ssformer[onnx]'") from e
    out = Path(out)
    model = model.float().eval()
    sizes = _check_sizes(size, dynamic)
    with torch.no_grad():
        expected = {s: model(_example(s, seed=i)) for i, s in enumerate(sizes)}
    result = ExportResult(out, fmt)

    if fmt == "torchscript" and dynamic:
        raise ExportError("TorchScript traces are fixed to the export size; use --format onnx or "
                          "exported-program for dynamic shapes")
    program = export_program(model, size, dynamic)
    if fmt == "torchscript":
        # Traced from the exported program: its graph is plain aten ops, so Python-side caches and
        # custom autograd functions in the model never reach the tracer.
        with torch.no_grad():
            traced = torch.jit.trace(program.module(), (_example(size),), check_trace=False)
        with atomic_write(out) as tmp:
            torch.jit.save(traced, str(tmp))
        loaded = torch.jit.load(str(out))
        with torch.no_grad():
            result.checks = [(s, _max_diff(loaded(_example(s, i)), expected[s])) for i, s in enumerate(sizes)]
        return result

    if fmt == "exported-program":
        with atomic_write(out) as tmp, open(tmp, "wb") as f:  # a file object: the name need not end in .pt2
            torch.export.save(program, f)
        loaded = torch.export.load(out).module()
        with torch.no_grad():
            result.checks = [(s, _max_diff(loaded(_example(s, i)), expected[s])) for i, s in enumerate(sizes)]
        return result

    kwargs = {} if opset is None else {"opset_version": opset}
    onnx_program = torch.onnx.export(program, (_example(size),), input_names=["images"], output_names=["logits"],
                                     dynamo=True, verbose=False, **kwargs)
    with atomic_write(out) as tmp:
        onnx_program.save(str(tmp))
    session = onnxruntime.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name
    for i, s in enumerate(sizes):
        got = torch.from_numpy(session.run(None, {name: _example(s, i).numpy()})[0])
        result.checks.append((s, _max_diff(got, expected[s])))
    return result
