"""What one inference call of this project's model costs, with switches for the fast-path pieces.

Builds a variant (random weights), warms it up, then times ``--runs`` calls and reports the median
latency, the peak resident set of the timed calls (``VmHWM``, reset through /proc/self/clear_refs
after the warm-up; model weights included), and the minor page faults and system CPU time per call
(``getrusage``: fresh large allocations are faulted in page by page). ``--profile`` adds a
``torch.profiler`` table of one more call. For A/B runs of the pieces of ``ssformer.models``:

* ``--no-onednn``: linears take ``F.linear`` instead of the oneDNN call (``ssformer.models.fast.linear``);
* ``--no-hugepages``: no huge-page advice for the logits and window gathers (``ssformer.models.fast.hugepages``);
* ``--plain``: the plain path of the model files, no fast kernels at all (``ssformer.models.fast``).

    python3 benchmarks/inference_cost.py ssformer_swin_b --size 1024 2048 --dtype bf16 --runs 1
"""

from __future__ import annotations

import argparse
import resource
import statistics
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

import torch  # noqa: E402

import ssformer  # noqa: E402
from ssformer.models import fast  # noqa: E402

DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16}


def peak_rss_mib() -> int:
    line = next(line for line in Path("/proc/self/status").read_text().splitlines() if line.startswith("VmHWM"))
    return int(line.split()[1]) // 1024


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("model", choices=ssformer.list_models())
    parser.add_argument("--size", type=int, nargs=2, default=(512, 512), metavar=("H", "W"))
    parser.add_argument("--dtype", choices=sorted(DTYPES), default="fp32")
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--no-onednn", action="store_true")
    parser.add_argument("--no-hugepages", action="store_true")
    parser.add_argument("--plain", action="store_true")
    parser.add_argument("--profile", action="store_true")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    if args.no_onednn:
        fast.linear._ONEDNN_LINEAR = False
    if args.no_hugepages:
        fast.hugepages.MIN_BYTES = float("inf")
    if args.plain:
        fast.set_fast_path(False)
    dtype = DTYPES[args.dtype]
    model = ssformer.create_model(args.model).eval().to(dtype)
    x = torch.randn(1, 3, *args.size).to(dtype)
    with torch.inference_mode():
        model(x)
        Path("/proc/self/clear_refs").write_text("5")
        before = resource.getrusage(resource.RUSAGE_SELF)
        latencies = []
        for _ in range(args.runs):
            start = time.perf_counter()
            model(x)
            latencies.append(time.perf_counter() - start)
        after = resource.getrusage(resource.RUSAGE_SELF)
        print(f"{args.model} 1x3x{args.size[0]}x{args.size[1]} {args.dtype}, {args.threads} threads"
              f"{', no oneDNN' if args.no_onednn else ''}"
              f"{', no huge pages' if args.no_hugepages else ''}"
              f"{', plain path' if args.plain else ''}"
              f": median {statistics.median(latencies) * 1e3:.0f} ms, "
              f"peak RSS {peak_rss_mib()} MiB, {(after.ru_minflt - before.ru_minflt) / args.runs:.0f} minor page "
              f"faults and {(after.ru_stime - before.ru_stime) / args.runs * 1e3:.0f} ms system time per call")
        if args.profile:
            with torch.profiler.profile() as profile:
                model(x)
            print(profile.key_averages().table(sort_by="self_cpu_time_total", row_limit=15))


if __name__ == "__main__":
    main()
