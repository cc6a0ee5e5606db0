"""Forward + backward time of each training-loss term on a camvid_cpu-sized batch.

8 crops of 192x256, 11 classes, logits at 1/4 size (48x64), the top 10 label rows ignored; median
of 5 runs of ``criterion(logits, labels).backward()`` per configuration, in milliseconds.

    python3 benchmarks/loss_cost.py --threads 1
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

import torch

from ssformer.engine.config import loss_settings
from ssformer.engine.criterion import build_criterion

CASES = {
    "cross_entropy (default)": ([{"type": "cross_entropy"}], None),
    "cross_entropy + class_weight": ([{"type": "cross_entropy", "class_weight": [1.0] * 11}], None),
    "cross_entropy + OHEM thresh 0.7": ([{"type": "cross_entropy"}], {"thresh": 0.7, "min_kept": 10000}),
    "cross_entropy + OHEM top-loss": ([{"type": "cross_entropy"}], {"thresh": None, "min_kept": 10000}),
    "dice": ([{"type": "dice"}], None),
    "focal": ([{"type": "focal"}], None),
    "lovasz": ([{"type": "lovasz"}], None),
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(8, 11, 48, 64, generator=g)
    labels = torch.randint(0, 11, (8, 192, 256), generator=g)
    labels[:, :10] = 255
    print("| train.loss / train.ohem | ms (forward + backward) |\n|---|---|")
    for name, (loss, ohem) in CASES.items():
        criterion = build_criterion(*loss_settings(loss, ohem), 11, 255)
        times = []
        for _ in range(args.runs):
            leaf = logits.clone().requires_grad_()
            start = time.perf_counter()
            criterion(leaf, labels).backward()
            times.append(time.perf_counter() - start)
        print(f"| {name} | {1000 * statistics.median(times):.0f} |")


if __name__ == "__main__":
    main()
