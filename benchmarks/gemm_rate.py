"""This CPU's GEMM rate, and the share of it the model's linears reach inside the model.

The matrix products are most of SSformer's work, so the best rate this machine reaches on one
large matrix product sets the floor of the latency: the linears can not take less than their
FLOPs at that rate. Three figures per dtype (fp32, bf16):

1. **peak**: the best rate of large matrix products (4096 rows, K and N from 1024 to 4096),
   through ``torch.mm`` (MKL in fp32, oneDNN in bf16) and through oneDNN's linear
   (``torch.ops.mkldnn._linear_pointwise``, the kernel ``ssformer.models.fast.linear`` calls);
2. **isolated**: the same linears as the model's, each shape timed alone, FLOP-weighted
   (the shapes of ``benchmarks/linear_backends.py``: SSformer-B at 512x512);
3. **in the model**: ``torch.profiler``'s self time of every oneDNN linear over one call of the
   model (``--model``, random weights, ``--size``), with their FLOPs from the recorded shapes.

The share of the floor is (FLOPs / peak rate) / time: 100% would be every linear at the peak.

    python3 benchmarks/gemm_rate.py --threads 2
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

import torch  # noqa: E402

import ssformer  # noqa: E402
from benchmarks.linear_backends import SHAPES  # noqa: E402

PEAK_SHAPES = [(4096, 1024, 4096), (4096, 4096, 1024), (4096, 2048, 2048)]  # (rows, K, N)
ONEDNN_LINEAR = "mkldnn::_linear_pointwise"


def best_seconds(fn, repeats: int) -> float:
    """Fastest of ``repeats`` calls after two warm-up calls (a rate benchmark wants the best case)."""
    for _ in range(2):
        fn()
    best = math.inf
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
    return best


def onednn_linear(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None = None) -> torch.Tensor:
    return torch.ops.mkldnn._linear_pointwise(x, weight, bias, "none", [], "")


def peak_rate(dtype: torch.dtype, repeats: int) -> dict[str, float]:
    """Best GFLOP/s of each backend over :data:`PEAK_SHAPES`."""
    rates = {"torch.mm": 0.0, "oneDNN linear": 0.0}
    for rows, k, n in PEAK_SHAPES:
        x, w = torch.randn(rows, k, dtype=dtype), torch.randn(n, k, dtype=dtype)
        wt = w.t().contiguous()
        flops = 2 * rows * k * n
        with torch.inference_mode():
            rates["torch.mm"] = max(rates["torch.mm"], flops / best_seconds(lambda: torch.mm(x, wt), repeats) / 1e9)
            rates["oneDNN linear"] = max(rates["oneDNN linear"],
                                         flops / best_seconds(lambda: onednn_linear(x, w), repeats) / 1e9)
    return rates


def isolated_linears(dtype: torch.dtype, repeats: int) -> tuple[float, float]:
    """(FLOPs, seconds) of the SSformer-B block linears, each shape through oneDNN alone."""
    flops_total, seconds_total = 0, 0.0
    for tokens, c_in, c_out, calls in SHAPES:
        x, w, b = torch.randn(tokens, c_in, dtype=dtype), torch.randn(c_out, c_in, dtype=dtype), torch.randn(c_out, dtype=dtype)
        with torch.inference_mode():
            seconds_total += best_seconds(lambda: onednn_linear(x, w, b), repeats) * calls
        flops_total += 2 * tokens * c_in * c_out * calls
    return flops_total, seconds_total


def linears_in_model(model_name: str, size: tuple[int, int], dtype: torch.dtype) -> tuple[float, float, int]:
    """(FLOPs, seconds, calls) of the oneDNN linears in one profiled call of the model."""
    model = ssformer.create_model(model_name).eval().to(dtype)
    x = torch.randn(1, 3, *size).to(dtype)
    with torch.inference_mode():
        model(x)
        model(x)
        with torch.profiler.profile(record_shapes=True) as profile:
            model(x)
    flops, seconds, calls = 0, 0.0, 0
    for event in profile.events():
        if event.name != ONEDNN_LINEAR:
            continue
        x_shape, w_shape = event.input_shapes[0], event.input_shapes[1]
        flops += 2 * math.prod(x_shape[:-1]) * w_shape[1] * w_shape[0]
        seconds += event.self_cpu_time_total / 1e6
        calls += 1
    return flops, seconds, calls


def cpu_name() -> str:
    cpuinfo = Path("/proc/cpuinfo")
    if not cpuinfo.exists():
        return "?"
    text = cpuinfo.read_text()
    name = next((line.split(":", 1)[1].strip() for line in text.splitlines() if line.startswith("model name")), "?")
    amx = sorted({flag for flag in text.split() if flag.startswith("amx")})
    return f"{name}, {'AMX: ' + ' '.join(amx) if amx else 'no AMX'}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--model", choices=ssformer.list_models(), default="ssformer_swin_b")
    parser.add_argument("--size", type=int, nargs=2, default=(512, 512), metavar=("H", "W"))
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print(f"{cpu_name()}; torch {torch.__version__}, {args.threads} threads, "
          f"{torch.backends.cpu.get_cpu_capability()}")
    for name, dtype in (("fp32", torch.float32), ("bf16", torch.bfloat16)):
        rates = peak_rate(dtype, args.repeats)
        peak = max(rates.values())
        print(f"{name}: peak " + ", ".join(f"{k} {v:.0f} GFLOP/s" for k, v in rates.items()))
        flops, seconds = isolated_linears(dtype, args.repeats)
        print(f"  block linears alone (SSformer-B 512x512 shapes): {flops / 1e9:.1f} GFLOP in {seconds * 1e3:.0f} ms, {flops / seconds / 1e9:.0f} "
              f"GFLOP/s, {flops / peak / 1e9 / seconds:.0%} of the floor")
        flops, seconds, calls = linears_in_model(args.model, tuple(args.size), dtype)
        floor = flops / peak / 1e9
        print(f"  in the model ({args.model} {args.size[0]}x{args.size[1]}, {calls} linears): {flops / 1e9:.1f} GFLOP "
              f"in {seconds * 1e3:.0f} ms, {flops / seconds / 1e9:.0f} GFLOP/s; floor {floor * 1e3:.0f} ms, "
              f"{floor / seconds:.0%} of the floor")


if __name__ == "__main__":
    main()
