"""Eager against ``torch.compile`` for SSformer inference on CPU, interleaved in one process.

Under ``torch.compile`` the fast path is off (``ssformer.models.fast.in_effect()`` is False
while compiling), so inductor compiles the plain path. The modes:

* ``eager``: the model as users call it (fast path on);
* ``eager-plain``: the same under ``fast_path(model, False)``, the graph inductor starts from;
* ``compile``: ``torch.compile(model)`` with inductor's defaults;
* ``compile-freeze``: the same with ``torch._inductor.config.freezing = True`` (weights folded as
  constants, which lets inductor pre-pack linear weights for oneDNN on CPU).

Each mode's first call (compilation included) is printed, then ``--runs`` rounds in which every
mode runs once, in turn; medians and ratios to ``eager`` come last. ``--profile MODE`` prints the
profiler's top operators of one more call of that mode.

    python3 benchmarks/compile_modes.py --dtype bf16 --threads 2
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

import torch  # noqa: E402

import ssformer  # noqa: E402
from ssformer.models import fast  # noqa: E402

MODES = ("eager", "eager-plain", "compile", "compile-freeze")


def build_runner(model: torch.nn.Module, mode: str) -> Callable[[torch.Tensor], torch.Tensor]:
    if mode == "eager":
        return model
    if mode == "eager-plain":
        def plain(x: torch.Tensor) -> torch.Tensor:
            with fast.fast_path(model, False):
                return model(x)
        return plain
    # A separate backend per mode, so the two modes do not share one cached graph.
    return torch.compile(model, options={"freezing": mode == "compile-freeze"})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--variant", default="ssformer_swin_b")
    parser.add_argument("--size", type=int, nargs=2, default=(512, 512))
    parser.add_argument("--dtype", choices=("fp32", "bf16"), default="fp32")
    parser.add_argument("--modes", nargs="+", choices=MODES, default=list(MODES))
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--profile", choices=MODES, default=None)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    dtype = {"fp32": torch.float32, "bf16": torch.bfloat16}[args.dtype]
    images = torch.randn(1, 3, *args.size).to(dtype)
    print(f"{args.variant} {args.size[0]}x{args.size[1]} {args.dtype}, {torch.get_num_threads()} threads, "
          f"torch {torch.__version__}, AMX {torch.cpu._is_amx_tile_supported()}")
    runners, reference = {}, None
    for mode in args.modes:
        # One model per mode: freezing folds the weights of the model it compiles.
        torch.manual_seed(0)
        model = ssformer.create_model(args.variant, num_classes=150).eval().to(dtype)
        runner = build_runner(model, mode)
        start = time.perf_counter()
        with torch.inference_mode():
            out = runner(images)
        print(f"{mode:15s} first call {time.perf_counter() - start:7.1f} s", flush=True)
        reference = out if reference is None else reference
        agree = (out.argmax(1) == reference.argmax(1)).float().mean().item()
        print(f"{'':15s} argmax agreement with {args.modes[0]}: {agree:.4%}", flush=True)
        runners[mode] = runner
    times: dict[str, list[float]] = {mode: [] for mode in runners}
    with torch.inference_mode():
        for _ in range(args.runs + 1):  # one untimed round first
            for mode, runner in runners.items():
                start = time.perf_counter()
                runner(images)
                times[mode].append(time.perf_counter() - start)
    medians = {mode: statistics.median(t[1:]) for mode, t in times.items()}
    base = medians.get("eager", next(iter(medians.values())))
    for mode, median in medians.items():
        print(f"{mode:15s} {median * 1e3:8.1f} ms  x{median / base:5.2f} of eager")
    if args.profile:
        with torch.inference_mode(), torch.profiler.profile() as prof:
            runners[args.profile](images)
        print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=20))


if __name__ == "__main__":
    main()
