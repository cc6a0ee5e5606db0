"""GEMM throughput of the SSformer-B linears on this CPU: ``F.linear`` (MKL in fp32) vs oneDNN.

Why ``ssformer.models.fast.linear`` routes CPU inference through oneDNN, and what bounds the whole
model: the matrix products are most of its work, so their best rate here sets the floor of the
latency. For each (tokens, in, out) shape of SSformer-B at 512x512 (stages 1-4: qkv, fc1, fc2) it
prints GFLOP/s of ``F.linear`` and of ``torch.ops.mkldnn._linear_pointwise`` on the same plain
weight, in fp32 and bf16, and the FLOP-weighted time of the whole encoder's linears.

    python3 benchmarks/linear_backends.py --threads 2
"""

from __future__ import annotations

import argparse
import time

import torch
import torch.nn.functional as F

# (tokens, in, out, calls per forward) of SSformer-B at 512x512, batch 1: per stage qkv, proj, fc1, fc2.
SHAPES = [(tokens, c_in, c_out, depth)
          for tokens, dim, depth in ((128 * 128, 128, 2), (64 * 64, 256, 2), (32 * 32, 512, 18), (16 * 16, 1024, 2))
          for c_in, c_out in ((dim, 3 * dim), (dim, dim), (dim, 4 * dim), (4 * dim, dim))]


def seconds_per_call(fn, repeats: int) -> float:
    for _ in range(2):
        fn()
    start = time.perf_counter()
    for _ in range(repeats):
        fn()
    return (time.perf_counter() - start) / repeats


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=10)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    onednn = torch.ops.mkldnn._linear_pointwise
    print(f"torch {torch.__version__}, {args.threads} threads, {torch.backends.cpu.get_cpu_capability()}")
    for dtype in (torch.float32, torch.bfloat16):
        totals = {"F.linear": 0.0, "oneDNN": 0.0}
        flops_total = 0
        for tokens, c_in, c_out, calls in SHAPES:
            x, w, b = torch.randn(tokens, c_in, dtype=dtype), torch.randn(c_out, c_in, dtype=dtype), torch.randn(c_out, dtype=dtype)
            flops = 2 * tokens * c_in * c_out
            with torch.inference_mode():
                plain = seconds_per_call(lambda: F.linear(x, w, b), args.repeats)
                fast = seconds_per_call(lambda: onednn(x, w, b, "none", [], ""), args.repeats)
            totals["F.linear"] += plain * calls
            totals["oneDNN"] += fast * calls
            flops_total += flops * calls
            print(f"  {str(dtype):15} {tokens:6d} x {c_in:4d} -> {c_out:4d}   F.linear {flops / plain / 1e9:6.1f} GFLOP/s"
                  f"   oneDNN {flops / fast / 1e9:6.1f} GFLOP/s")
        print(f"{dtype}: block linears {flops_total / 1e9:.1f} GFLOP: "
              + ", ".join(f"{k} {v * 1e3:.0f} ms ({flops_total / v / 1e9:.0f} GFLOP/s)" for k, v in totals.items()))


if __name__ == "__main__":
    main()
