"""The GPU figures of docs/gpu.md, in one process: SSformer-B inference and training steps on CUDA.

* inference at ``--size`` (default 512x512), batch 1 and ``--big-batch`` (default 16): fp32 with
  TF32 off, fp32 with TF32 on (matrix products and convolutions), bf16 and fp16 weights;
* a training step (the trainer's: 1/4-size logits, cross-entropy, backward, AdamW, loss scaler) at
  batch ``--train-batch`` (default 8) under fp16 and bf16 autocast, fp32 weights;
* with ``--compile``: ``torch.compile`` (inductor defaults) against eager for bf16 inference at the
  big batch and the bf16 training step, first call (compilation) and steady state.

Each configuration is :func:`ssformer.analysis.benchmark.benchmark` on a fresh random-weight model
(CUDA synchronised around every call; peak memory is the caching allocator's peak over the timed
calls). One line per configuration as it finishes, a markdown table at the end, and every result
in ``--json``:

    python3 benchmarks/gpu_numbers.py --json gpu_numbers.json [--compile | --only-compile]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

import torch  # noqa: E402

import ssformer  # noqa: E402
from ssformer.analysis.benchmark import BenchmarkResult, BenchmarkSettings, benchmark  # noqa: E402


def set_tf32(enabled: bool) -> None:
    """TF32 for fp32 matrix products and convolutions (PyTorch's default: off for matmul, on for cuDNN)."""
    torch.backends.cuda.matmul.allow_tf32 = enabled
    torch.backends.cudnn.allow_tf32 = enabled


def run_one(args: argparse.Namespace, label: str, batch: int, dtype: str, train: bool, tf32: bool,
            compile: bool = False) -> dict:
    set_tf32(tf32)
    torch.manual_seed(0)
    model = ssformer.create_model(args.model, num_classes=args.num_classes)
    runs, warmup = (args.runs, args.warmup) if batch == 1 and not train else (args.runs_big, args.warmup)
    settings = BenchmarkSettings(*args.size, batch=batch, dtype=dtype, device=args.device, compile=compile,
                                 train=train, runs=runs, warmup=warmup, count_flops=False)
    result: BenchmarkResult = benchmark(model, settings, name=args.model)
    row = result.as_dict() | {"label": label, "tf32": tf32}
    print(f"{label:<34} batch {batch:>2}: median {result.latency_median_s * 1e3:8.2f} ms, "
          f"p90 {result.latency_p90_s * 1e3:8.2f} ms, {result.images_per_s:8.1f} images/s, "
          f"peak {result.peak_memory_bytes / 2**30:6.2f} GiB, first call {result.first_call_s:.2f} s", flush=True)
    del model
    torch.cuda.empty_cache()
    return row


def plan(args: argparse.Namespace) -> list[tuple[str, int, str, bool, bool, bool]]:
    """(label, batch, dtype, train, tf32, compile) for every configuration, in the order run."""
    rows = []
    for batch in () if args.only_compile else (1, args.big_batch):
        rows += [("inference fp32 (TF32 off)", batch, "fp32", False, False, False),
                 ("inference fp32 (TF32 on)", batch, "fp32", False, True, False),
                 ("inference bf16", batch, "bf16", False, False, False),
                 ("inference fp16", batch, "fp16", False, False, False)]
    if not args.only_compile:
        rows += [("training step fp16 autocast", args.train_batch, "fp16", True, False, False),
                 ("training step bf16 autocast", args.train_batch, "bf16", True, False, False)]
    if args.compile or args.only_compile:
        rows += [("inference bf16, torch.compile", args.big_batch, "bf16", False, False, True),
                 ("training step bf16, torch.compile", args.train_batch, "bf16", True, False, True)]
    return rows


def table(rows: list[dict]) -> str:
    lines = ["| configuration | batch | median latency (ms) | p90 (ms) | images/s | peak memory (GiB) | first call (s) |",
             "|---|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        lines.append(f"| {r['label']} | {r['batch']} | {r['latency_median_s'] * 1e3:.2f} | "
                     f"{r['latency_p90_s'] * 1e3:.2f} | {r['images_per_s']:.1f} | "
                     f"{r['peak_memory_bytes'] / 2**30:.2f} | {r['first_call_s']:.2f} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="ssformer_swin_b")
    parser.add_argument("--num-classes", type=int, default=150)
    parser.add_argument("--size", nargs=2, type=int, default=(512, 512), metavar=("H", "W"))
    parser.add_argument("--big-batch", type=int, default=16)
    parser.add_argument("--train-batch", type=int, default=8)
    parser.add_argument("--runs", type=int, default=30, help="timed calls at batch 1 (default 30)")
    parser.add_argument("--runs-big", type=int, default=10, help="timed calls at larger batches (default 10)")
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--compile", action="store_true", help="also time torch.compile against eager")
    parser.add_argument("--only-compile", action="store_true",
                        help="only the torch.compile configurations (their eager twins are in the default run)")
    parser.add_argument("--json", type=Path, help="write every result to this JSON file")
    args = parser.parse_args()
    device = torch.device(args.device)
    if device.type == "cuda":
        if not torch.cuda.is_available():
            sys.exit("gpu_numbers.py: no CUDA device is available")
        props = torch.cuda.get_device_properties(device)
        print(f"{props.name}, {props.total_memory / 2**30:.0f} GiB, torch {torch.__version__}, "
              f"CUDA {torch.version.cuda}, cuDNN {torch.backends.cudnn.version()}", flush=True)
    rows, start = [], time.perf_counter()
    for label, batch, dtype, train, tf32, compile in plan(args):
        rows.append(run_one(args, label, batch, dtype, train, tf32, compile))
        if args.json:  # after each one, so a run cut short keeps what it measured
            args.json.write_text(json.dumps(rows, indent=1))
    set_tf32(False)
    print(f"\n{args.model}, {args.size[0]}x{args.size[1]}, {args.num_classes} classes "
          f"({time.perf_counter() - start:.0f} s in all)\n{table(rows)}")


if __name__ == "__main__":
    main()
