"""Latency, throughput and peak memory of inference or of a training step (``ssformer benchmark``).

Times ``--runs`` calls after ``--warmup`` untimed ones and reports the median and 90th-percentile
latency, images per second (batch / median), parameters, FLOPs (FlopCounterMode, see
``ssformer.models.size``) and the peak memory of the timed part: on CPU the process's peak
resident set (``VmHWM`` from /proc/self/status, reset through /proc/self/clear_refs before the
timed runs, so the model's own weights are in it but earlier activity is not), on CUDA the caching
allocator's peak.

Inference runs the plain ``model.eval()`` / ``model(x)`` call under ``torch.inference_mode()``;
``--dtype bf16`` / ``fp16`` converts the model and the input (``model.to(dtype)``).
``--train`` times one full training step as the trainer runs it (1/4-size logits, the cross-entropy
of ``ssformer.engine.loss`` on random labels, backward, the trainer's AdamW and loss scaler); there
``bf16`` / ``fp16`` means autocast with fp32 weights, as training would use (fp16 with the
GradScaler, on CUDA only).
"""

from __future__ import annotations

import os
import platform
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch

from ssformer import precision
from ssformer.data.transforms import MAX_IMAGE_SIDE
from ssformer.engine.loss import segmentation_loss
from ssformer.engine.optim import build_grad_scaler, build_optimizer
from ssformer.engine.trainer import LogitsAtQuarter
from ssformer.errors import UserError
from ssformer.models.ssformer import SSformer

DTYPES = {name: precision.DTYPES[name] for name in ("fp32", "bf16", "fp16")}  # the names the command offers


@dataclass
class BenchmarkResult:
    model: str
    mode: str  # "inference" or "train"
    height: int
    width: int
    batch: int
    dtype: str
    device: str
    threads: int
    compiled: bool
    params: int | None  # None for exported models
    flops: int | None  # per call (the whole batch), as executed
    latency_median_s: float
    latency_p90_s: float
    images_per_s: float
    peak_memory_bytes: int | None
    peak_memory_kind: str  # "rss" (CPU, whole process) or "cuda-allocated"
    first_call_s: float  # includes torch.compile's compilation when --compile
    latencies_s: list[float] = field(default_factory=list)
    machine: dict[str, str] = field(default_factory=dict)

    def as_dict(self) -> dict:
        return asdict(self)


# --- measuring ---------------------------------------------------------------------------------
def percentile(values: list[float], q: float) -> float:
    """Linear-interpolated ``q``-quantile (0..1) of ``values``."""
    ordered = sorted(values)
    position = q * (len(ordered) - 1)
    low = int(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_call(fn: Callable[[], object], device: torch.device) -> float:
    """Wall-clock seconds of one call, the device synchronised on both sides."""
    synchronize(device)
    start = time.perf_counter()
    fn()
    synchronize(device)
    return time.perf_counter() - start


def _proc_status_kib(field_name: str) -> int | None:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(field_name + ":"):
                return int(line.split()[1])
    except OSError:
        return None
    return None


def reset_peak_memory(device: torch.device) -> bool:
    """Start a new peak-memory window; False where the platform cannot reset it."""
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
        return True
    try:  # Linux: writing 5 resets the peak resident set size (VmHWM) to the current one
        Path("/proc/self/clear_refs").write_text("5")
        return True
    except OSError:
        return False


def peak_memory_bytes(device: torch.device) -> int | None:
    """Peak since :func:`reset_peak_memory`: allocator peak on CUDA, process peak RSS on CPU."""
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device)
    kib = _proc_status_kib("VmHWM")
    if kib is None:  # not Linux: lifetime peak from getrusage (kilobytes on Linux, bytes on macOS)
        import resource

        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        return peak if sys.platform == "darwin" else peak * 1024
    return kib * 1024


def machine_info(device: torch.device) -> dict[str, str]:
    info = {"torch": torch.__version__, "python": platform.python_version(), "cpu": platform.processor()}
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                info["cpu"] = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    info["cpu_count"] = str(os.cpu_count())
    try:
        info["load_average"] = " ".join(f"{v:.2f}" for v in os.getloadavg())
    except OSError:
        pass
    if device.type == "cuda":
        info["gpu"] = torch.cuda.get_device_name(device)
    return info


# --- what is timed -----------------------------------------------------------------------------
def inference_step(model: torch.nn.Module, images: torch.Tensor) -> Callable[[], object]:
    def step() -> object:
        with torch.inference_mode():
            return model(images)

    return step


def training_step(model: torch.nn.Module, images: torch.Tensor, labels: torch.Tensor,
                  optimizer: torch.optim.Optimizer, amp: str = "none",
                  scaler: torch.amp.GradScaler | None = None) -> Callable[[], object]:
    """The trainer's step: 1/4-size logits under its autocast, its cross-entropy (ignore index 255),
    backward and optimiser step through its loss scaler (enabled for fp16)."""
    device = images.device
    scaler = scaler or build_grad_scaler(amp, device)

    def step() -> object:
        with precision.autocast(device, amp, "--dtype"):
            logits = model(images)
        loss = segmentation_loss(logits, labels, ignore_index=255)
        scaler.scale(loss).backward()
        scaler.step(optimizer)
        scaler.update()
        optimizer.zero_grad(set_to_none=True)
        return loss

    return step


@dataclass(frozen=True)
class BenchmarkSettings:
    """What to measure and how: the input shape, precision, device and run counts (``ssformer benchmark``'s
    options). Impossible settings are refused when made, before any model is built."""

    height: int
    width: int
    batch: int = 1
    dtype: str = "fp32"  # a key of DTYPES
    device: str = "cpu"
    compile: bool = False
    train: bool = False  # time a training step instead of inference
    runs: int = 10
    warmup: int = 2
    count_flops: bool = True
    seed: int = 0  # of the random input (and labels)

    def __post_init__(self) -> None:
        if self.dtype not in DTYPES:
            raise UserError(f"dtype must be one of {sorted(DTYPES)}, got {self.dtype!r}")
        if max(self.height, self.width) > MAX_IMAGE_SIDE:
            raise UserError(f"--size {self.height} {self.width}: each side must be at most {MAX_IMAGE_SIDE}")
        if min(self.height, self.width, self.batch) < 1 or self.runs < 1 or self.warmup < 0:
            raise UserError(f"size, batch and runs must be >= 1 and warmup >= 0 (got {self.height}x{self.width}, "
                            f"batch {self.batch}, runs {self.runs}, warmup {self.warmup})")
        if self.target.type == "cuda" and not torch.cuda.is_available():
            raise UserError("--device cuda: no CUDA device is available")

    @property
    def target(self) -> torch.device:
        try:
            return torch.device(self.device)
        except RuntimeError as e:
            raise UserError(f"--device {self.device!r} is not a device: {e}") from None


def timed_runs(step: Callable[[], object], target: torch.device, runs: int, warmup: int) -> tuple[list[float], float]:
    """Latencies of ``runs`` calls after ``warmup`` untimed ones, and the first call's time."""
    latencies, first_call = [], 0.0
    for i in range(warmup + runs):
        if i == warmup:  # the peak covers the timed runs (and, with no warm-up, the first call's setup)
            reset_peak_memory(target)
        seconds = time_call(step, target)
        first_call = first_call or seconds
        if i >= warmup:
            latencies.append(seconds)
    return latencies, first_call


@dataclass(frozen=True)
class ExportedTarget:
    """An exported model to time: its runner (:mod:`ssformer.inference.runners`) and how it runs."""

    runner: Callable[[torch.Tensor], torch.Tensor]
    name: str
    engine: str  # onnxruntime | openvino
    dtype: str  # the precision it runs at, as the runner reports it
    threads: int | None


def benchmark_exported(target: ExportedTarget, settings: BenchmarkSettings) -> BenchmarkResult:
    """Inference latency of an ONNX / OpenVINO model on random (batch, 3, height, width) input, on the CPU
    at the runner's own precision: of ``settings`` it uses the shape, run counts and seed."""
    s, cpu = settings, torch.device("cpu")
    images = torch.randn(s.batch, 3, s.height, s.width, generator=torch.Generator().manual_seed(s.seed))
    latencies, first_call = timed_runs(lambda: target.runner(images), cpu, s.runs, s.warmup)
    median = statistics.median(latencies)
    return BenchmarkResult(
        model=target.name, mode="inference", height=s.height, width=s.width, batch=s.batch,
        dtype=f"{target.dtype} ({target.engine})", device="cpu",
        threads=target.threads or os.cpu_count() or 1, compiled=False, params=None, flops=None,
        latency_median_s=median, latency_p90_s=percentile(latencies, 0.9), images_per_s=s.batch / median,
        peak_memory_bytes=peak_memory_bytes(cpu), peak_memory_kind="rss", first_call_s=first_call,
        latencies_s=latencies, machine=machine_info(cpu))


def benchmark(model: SSformer, settings: BenchmarkSettings, name: str = "model") -> BenchmarkResult:
    """Measure ``model`` (moved to the settings' device; converted to their dtype for inference) on random
    input; ``name`` labels the result."""
    s, target = settings, settings.target
    generator = torch.Generator().manual_seed(s.seed)
    images = torch.randn(s.batch, model.config.in_channels, s.height, s.width, generator=generator).to(target)
    model = model.to(target)
    if s.train:
        model.train()
        labels = torch.randint(0, model.num_classes, (s.batch, s.height, s.width), generator=generator).to(target)
        optimizer = build_optimizer(model, lr=6e-5, weight_decay=0.01)  # the trainer's AdamW groups
        quarter = LogitsAtQuarter(model)
        runner: torch.nn.Module = torch.compile(quarter) if s.compile else quarter
        amp = "none" if s.dtype == "fp32" else s.dtype
        step = training_step(runner, images, labels, optimizer, amp, build_grad_scaler(amp, target))
    else:
        model.eval().to(DTYPES[s.dtype])
        images = images.to(DTYPES[s.dtype])
        runner = torch.compile(model) if s.compile else model
        step = inference_step(runner, images)
    flops = None
    if s.count_flops:
        from ssformer.models.size import count_flops as count

        flops = count(model.eval() if not s.train else model, images)
        if s.train:
            model.train()
    latencies, first_call = timed_runs(step, target, s.runs, s.warmup)
    median = statistics.median(latencies)
    return BenchmarkResult(
        model=name, mode="train" if s.train else "inference", height=s.height, width=s.width, batch=s.batch,
        dtype=s.dtype, device=str(target), threads=torch.get_num_threads(), compiled=s.compile,
        params=sum(p.numel() for p in model.parameters()), flops=flops, latency_median_s=median,
        latency_p90_s=percentile(latencies, 0.9), images_per_s=s.batch / median,
        peak_memory_bytes=peak_memory_bytes(target),
        peak_memory_kind="cuda-allocated" if target.type == "cuda" else "rss",
        first_call_s=first_call, latencies_s=latencies, machine=machine_info(target))


def format_result(r: BenchmarkResult) -> str:
    flops = "n/a" if r.flops is None else f"{r.flops / 1e9:.2f} GFLOPs"
    memory = "n/a" if r.peak_memory_bytes is None else f"{r.peak_memory_bytes / 2 ** 20:.0f} MiB ({r.peak_memory_kind})"
    return "\n".join([
        f"{r.model}: {r.mode}, {r.batch}x{r.height}x{r.width}, {r.dtype}, {r.device}, {r.threads} threads"
        + (", compiled" if r.compiled else ""),
        f"params {'n/a' if r.params is None else f'{r.params:,}'}; {flops} per call",
        f"latency median {r.latency_median_s * 1e3:.1f} ms, p90 {r.latency_p90_s * 1e3:.1f} ms "
        f"({len(r.latencies_s)} runs); {r.images_per_s:.2f} images/s",
        f"peak memory {memory}; first call {r.first_call_s:.2f} s",
        f"machine: {r.machine.get('cpu', '?')}, torch {r.machine.get('torch')}, "
        f"load average {r.machine.get('load_average', '?')}",
    ])


# --- command line ------------------------------------------------------------------------------
