"""What the benchmark scripts share: interleaved timing and the CPU engines as contenders.

Timing: one call of each contender per round, the first one rotating, so that the drift of these
shared machines hits every contender alike; medians over the rounds, with the minor page faults and
system CPU seconds of each call (``getrusage``).

Engines: one float model exported once to ONNX (fixed size) and run by ONNX Runtime and, converted
from that file, by OpenVINO in f32 and (where the CPU has it natively) bf16; NNCF's int8 IR as
``ssformer export --format openvino --int8`` makes it, run with f32 and bf16 elsewhere; and ONNX
Runtime's static QDQ int8 of the same ONNX file, as ``ssformer export --format onnx --int8`` makes it.
(torchao's dynamic int8 was measured beside these at commit 5825a82 and removed: docs/benchmarks.md.)
"""

from __future__ import annotations

import resource
import statistics
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import NamedTuple

import numpy as np
import torch

from ssformer.inference import quantize
from ssformer.inference.export import export_model
from ssformer.inference.openvino import compile_ir, convert_onnx, cpu_has_native_bf16, ir_runner
from ssformer.inference.openvino_int8 import Int8Settings, quantize_ir

Runner = Callable[[torch.Tensor], torch.Tensor]


class Call(NamedTuple):
    """One timed call: wall seconds, and the minor page faults and system CPU seconds it took."""

    seconds: float
    page_faults: int
    system_seconds: float


def synchronize(device: torch.device | None) -> None:
    """Wait for queued GPU work, so a call's wall time includes its kernels (no-op on the CPU)."""
    if device is not None and device.type == "cuda":
        torch.cuda.synchronize(device)


def interleaved(contenders: dict[str, Callable[[], object]], runs: int, warmup: int,
                device: torch.device | None = None) -> dict[str, list[Call]]:
    """Every call of each contender, one call each per round, the first one rotating."""
    names = list(contenders)
    for _ in range(warmup):
        for name in names:
            contenders[name]()
    calls: dict[str, list[Call]] = {name: [] for name in names}
    for r in range(runs):
        for name in names[r % len(names):] + names[:r % len(names)]:
            synchronize(device)
            before = resource.getrusage(resource.RUSAGE_SELF)
            start = time.perf_counter()
            contenders[name]()
            synchronize(device)
            seconds = time.perf_counter() - start
            after = resource.getrusage(resource.RUSAGE_SELF)
            calls[name].append(Call(seconds, after.ru_minflt - before.ru_minflt, after.ru_stime - before.ru_stime))
    return calls


def summarise(calls: dict[str, list[Call]]) -> dict[str, dict[str, float]]:
    stats = {}
    for name, c in calls.items():
        seconds = [call.seconds for call in c]
        stats[name] = {"median_s": statistics.median(seconds), "p90_s": float(np.percentile(seconds, 90)),
                       "min_s": min(seconds), "max_s": max(seconds), "runs": len(c),
                       "median_page_faults": statistics.median(call.page_faults for call in c),
                       "median_system_s": statistics.median(call.system_seconds for call in c)}
    return stats


def onnx_runner(path: Path, threads: int) -> Runner:
    """The ONNX file at ``path`` in ONNX Runtime on the CPU."""
    import onnxruntime

    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = threads
    session = onnxruntime.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name
    return lambda tensor: torch.from_numpy(session.run(None, {name: tensor.numpy()})[0])


def engine_runners(model: torch.nn.Module, size: tuple[int, int], calibration: Sequence[torch.Tensor],
                   threads: int) -> dict[str, Runner]:
    """``model`` (float, eval, CPU) in each CPU engine at the fixed ``size``; int8 calibrated on ``calibration``."""
    work = Path(tempfile.mkdtemp(prefix="ssformer-engines-"))
    onnx_path = work / "fp32.onnx"
    start = time.perf_counter()
    export_model(model, "onnx", size, onnx_path)
    float_ir = convert_onnx(onnx_path, {})
    reference = compile_ir(float_ir, "f32", threads)
    print(f"ONNX export and OpenVINO conversion {time.perf_counter() - start:.0f} s", flush=True)
    start = time.perf_counter()
    int8_ir, _ = quantize_ir(float_ir, calibration, calibration, Int8Settings("calibration"), reference)
    print(f"NNCF quantization {time.perf_counter() - start:.0f} s", flush=True)
    precisions = ["f32", "bf16"] if cpu_has_native_bf16() else ["f32"]
    runners: dict[str, Runner] = {"onnxruntime-fp32": onnx_runner(onnx_path, threads)}
    for precision in precisions:
        tag = "fp32" if precision == "f32" else precision
        runners[f"openvino-{tag}"] = ir_runner(reference if precision == "f32"
                                               else compile_ir(float_ir, precision, threads))
        runners["openvino-int8" + ("" if precision == "f32" else "-bf16")] = \
            ir_runner(compile_ir(int8_ir, precision, threads))
    quantize.quantize_onnx(onnx_path, work / "int8.onnx", calibration)
    runners["onnxruntime-int8"] = onnx_runner(work / "int8.onnx", threads)
    return runners
