"""Exporting a trained SSformer to ONNX, TorchScript or a ``torch.export`` program, checked on the spot.

The example inputs follow the model's device (a GPU model exports a GPU program; ONNX is traced
from a CPU copy). Every export runs the saved file on a random image of the export size (dynamic ONNX: also at
45x70 and 203x317) and reports the largest absolute logit difference to the PyTorch model (ONNX
through onnxruntime), so a broken export fails here, not in deployment.

Fixed-size exports come from a strict ``torch.export`` program. ``dynamic=True`` (ONNX only) gives
one graph for every input height and width: the model is traced by the TorchScript-based ONNX
exporter with ``dynamic_axes``, where it records the size arithmetic of the plain window
attention (:mod:`ssformer.models.attention`) as graph ops. ``torch.export`` with symbolic
sizes still specialises on the many floor-divided stage sizes (view/stride guards), so
dynamic exported programs are refused with :class:`ExportError`; see docs/inference.md.
"""

from __future__ import annotations

import contextlib
import copy
import logging
import os
import warnings
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn

from ssformer.data.transforms import MAX_IMAGE_SIDE
from ssformer.errors import UserError
from ssformer.inference import metadata
from ssformer.utils import atomic_write

FORMATS = ("onnx", "torchscript", "exported-program")


class ExportError(UserError):
    """The model could not be exported, or the exported file does not reproduce it."""


@dataclass
class ExportResult:
    path: Path
    format: str
    checks: list[tuple[tuple[int, int], float]] = field(default_factory=list)  # (size, max |diff|)

    @property
    def max_abs_diff(self) -> float:
        return max(diff for _, diff in self.checks)


def _example(size: tuple[int, int], seed: int = 0, device: torch.device | str = "cpu") -> torch.Tensor:
    """The same random image on every device (drawn on the CPU, then moved)."""
    generator = torch.Generator().manual_seed(seed)
    return torch.randn(1, 3, *size, generator=generator).to(device)


def model_device(model: nn.Module) -> torch.device:
    """Where ``model``'s parameters live; example inputs follow it (a CUDA model gets CUDA inputs)."""
    for tensor in model.parameters():
        return tensor.device
    for tensor in model.buffers():
        return tensor.device
    return torch.device("cpu")


def export_program(model: nn.Module, size: tuple[int, int], dynamic: bool = False,
                   max_size: int = 4096) -> torch.export.ExportedProgram:
    """``torch.export`` of ``model`` (eval mode) on a (1, 3, H, W) input; H and W symbolic when
    ``dynamic`` (from 32 to ``max_size``), which currently raises :class:`ExportError` (the stage
    sizes' floor divisions end in guards that specialise them)."""
    example = _example(size, device=model_device(model))
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


@contextlib.contextmanager
def quiet_onnx_exporter() -> Iterator[None]:
    """The dynamo ONNX exporter without its noise: a "torchvision is not installed" line per torchvision
    op it skips (the model uses none) and a FutureWarning torch's own pytree code raises while tracing."""
    registration = logging.getLogger("torch.onnx._internal.exporter._registration")
    level = registration.level
    registration.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", category=FutureWarning, message=".*LeafSpec")
            yield
    finally:
        registration.setLevel(level)


def write_onnx_metadata(path: str | os.PathLike, entries: Mapping[str, str]) -> None:
    """Store ``entries`` in the ONNX file's ``metadata_props`` as ``ssformer.<name>`` (replacing old ones)."""
    import onnx

    proto = onnx.load(str(path), load_external_data=False)
    kept = [p for p in proto.metadata_props if not p.key.startswith(metadata.PREFIX + ".")]
    del proto.metadata_props[:]
    proto.metadata_props.extend(kept)
    for name, value in entries.items():
        proto.metadata_props.add(key=f"{metadata.PREFIX}.{name}", value=value)
    onnx.save(proto, str(path))


def _model_documents(model: nn.Module, size: tuple[int, int], dynamic: bool) -> dict[str, str]:
    """The metadata of an export of ``model``: none for a plain module that is no SSformer."""
    if not hasattr(model, "config"):
        return {}
    return metadata.documents(model, "fp32", None if dynamic else size)


def _max_diff(a: torch.Tensor, b: torch.Tensor) -> float:
    if a.shape != b.shape:
        raise ExportError(f"exported model gives shape {tuple(a.shape)}, PyTorch {tuple(b.shape)}")
    return float((a.float().cpu() - b.float().cpu()).abs().max())


# At 32 px or more every stage's feature map is smaller than the first one, so the trace records
# the decoder's resizes (see _export_onnx_dynamic); the exported graph itself runs at any size.
MIN_DYNAMIC_TRACE_SIZE = 32
DYNAMIC_CHECK_SIZES = ((45, 70), (203, 317))  # no multiples of 32, 4 or the window; 203x317 spans many windows


def _check_sizes(size: tuple[int, int], dynamic: bool) -> list[tuple[int, int]]:
    """The export size, and for dynamic exports also sizes that are no multiple of 32 or the window."""
    sizes = [size]
    if dynamic:
        sizes += [s for s in DYNAMIC_CHECK_SIZES if s != size]
    return sizes


def expected_logits(model: nn.Module, size: tuple[int, int], dynamic: bool) -> dict[tuple[int, int], torch.Tensor]:
    """PyTorch's logits on the check images of an export at ``size`` (see :func:`check_export`)."""
    device = model_device(model)
    with torch.no_grad():
        return {s: model(_example(s, seed=i, device=device)).cpu() for i, s in enumerate(_check_sizes(size, dynamic))}


def check_export(run: Callable[[torch.Tensor], torch.Tensor], expected: dict[tuple[int, int], torch.Tensor]
                 ) -> list[tuple[tuple[int, int], float]]:
    """(size, max |logit difference|) of ``run`` (an exported model on CPU tensors) against ``expected``."""
    return [(s, _max_diff(run(_example(s, i)), logits)) for i, (s, logits) in enumerate(expected.items())]


def _export_onnx_dynamic(model: nn.Module, size: tuple[int, int], path: Path, opset: int | None) -> None:
    """One ONNX graph for any (H, W): the TorchScript-based exporter with ``dynamic_axes``.

    Tracing records ``x.shape`` arithmetic as ONNX shape ops, and while tracing the model takes its
    plain path (always-pad, roll by slices, mask from aranges, every decoder feature resized),
    whose graph has no size-specific branches; its input check is recorded as passed.
    """
    axes = {"images": {2: "height", 3: "width"}, "logits": {2: "height", 3: "width"}}
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=torch.jit.TracerWarning)
        # torch >= 2.9 calls this exporter legacy; it is the one that records size arithmetic as graph ops
        warnings.filterwarnings("ignore", message=".*legacy TorchScript-based ONNX export", category=DeprecationWarning)
        warnings.filterwarnings("ignore", category=DeprecationWarning, module=r"torch\.onnx")
        try:
            torch.onnx.export(model, (_example(size),), str(path), input_names=["images"], output_names=["logits"],
                              dynamic_axes=axes, opset_version=opset or 17, dynamo=False)
        except Exception as e:  # the tracer and the ONNX symbolic functions raise many types
            first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            raise ExportError(f"dynamic ONNX export failed: {type(e).__name__}: {first}") from e


def _check_request(fmt: str, size: tuple[int, int], dynamic: bool) -> tuple[int, int]:
    """Refuse an export that cannot be made (format, size, dynamic shapes, missing packages); the size as ints."""
    if fmt not in FORMATS:
        raise UserError(f"format must be one of {', '.join(FORMATS)}, got {fmt!r}")
    if len(size) != 2 or min(size) < 1 or max(size) > MAX_IMAGE_SIDE:
        raise UserError(f"size must be two positive ints (H, W) of at most {MAX_IMAGE_SIDE}, got {size}")
    size = (int(size[0]), int(size[1]))
    if dynamic and fmt != "onnx":
        raise ExportError(f"dynamic shapes are supported for onnx only: {fmt} files are fixed to the export size "
                          f"(torch.export specialises on the model's stage sizes)")
    if dynamic and min(size) < MIN_DYNAMIC_TRACE_SIZE:
        raise UserError(f"a dynamic export is traced at its size, which must be at least "
                        f"{MIN_DYNAMIC_TRACE_SIZE}x{MIN_DYNAMIC_TRACE_SIZE}, got {size[0]}x{size[1]}")
    if fmt == "onnx":
        try:
            import onnxruntime  # noqa: F401  (checks the file after writing)
        except ImportError as e:
            raise ExportError("ONNX export needs onnx, onnxscript and onnxruntime: pip install 'ssformer[onnx]'") from e
    return size


def export_model(model: nn.Module, fmt: str, size: tuple[int, int], out: str | os.PathLike,
                 dynamic: bool = False, opset: int | None = None) -> ExportResult:
    """Write ``model`` as ``fmt`` to ``out`` (atomically) and check the written file against PyTorch."""
    size = _check_request(fmt, size, dynamic)
    out = Path(out)
    if fmt == "onnx" and model_device(model).type != "cpu":
        # ONNX files are device-neutral and checked in onnxruntime on the CPU: trace a CPU copy, which
        # also keeps CUDA-only attention kernels out of the graph
        model = copy.deepcopy(model).cpu()
    model = model.float().eval()
    device = model_device(model)
    sizes = _check_sizes(size, dynamic)
    expected = expected_logits(model, size, dynamic)
    result = ExportResult(out, fmt)

    if fmt == "onnx" and dynamic:
        with atomic_write(out) as tmp, torch.no_grad():
            _export_onnx_dynamic(model, size, tmp, opset)
            write_onnx_metadata(tmp, _model_documents(model, size, dynamic))
        return _check_onnx(out, sizes, expected, result)
    program = export_program(model, size)
    if fmt == "torchscript":
        # Traced from the exported program: its graph is plain aten ops, so Python-side caches and
        # custom autograd functions in the model never reach the tracer.
        with torch.no_grad():
            traced = torch.jit.trace(program.module(), (_example(size, device=device),), check_trace=False)
        with atomic_write(out) as tmp:
            torch.jit.save(traced, str(tmp))
        loaded = torch.jit.load(str(out), map_location=device)
        with torch.no_grad():
            result.checks = [(s, _max_diff(loaded(_example(s, i, device)), expected[s])) for i, s in enumerate(sizes)]
        return result

    if fmt == "exported-program":
        with atomic_write(out) as tmp, open(tmp, "wb") as f:  # a file object: the name need not end in .pt2
            torch.export.save(program, f)
        loaded = torch.export.load(out).module()
        with torch.no_grad():
            result.checks = [(s, _max_diff(loaded(_example(s, i, device)), expected[s])) for i, s in enumerate(sizes)]
        return result

    kwargs = {} if opset is None else {"opset_version": opset}
    with quiet_onnx_exporter():
        onnx_program = torch.onnx.export(program, (_example(size, device=device),), input_names=["images"],
                                         output_names=["logits"], dynamo=True, verbose=False, **kwargs)
    with atomic_write(out) as tmp:
        onnx_program.save(str(tmp))
        write_onnx_metadata(tmp, _model_documents(model, size, dynamic))
    return _check_onnx(out, sizes, expected, result)


def _check_onnx(path: Path, sizes: list[tuple[int, int]], expected: dict[tuple[int, int], torch.Tensor],
                result: ExportResult) -> ExportResult:
    """Run the written ONNX file in onnxruntime at each size and record the difference to PyTorch."""
    import onnxruntime

    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name
    for i, s in enumerate(sizes):
        got = torch.from_numpy(session.run(None, {name: _example(s, i).numpy()})[0])
        result.checks.append((s, _max_diff(got, expected[s])))
    return result
