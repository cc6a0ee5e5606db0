"""Print a Markdown table of a training run's curve from WORK_DIR/log.jsonl.

    python3 tools/log_table.py WORK_DIR/log.jsonl [EVERY]

One row per logged iteration that is a multiple of EVERY (default 100) or has an evaluation:
iteration, mean training loss over the last log window, learning rate, elapsed seconds, and the
evaluation's mIoU / aAcc (percent) where there is one.
"""

from __future__ import annotations

import json
import sys


def main(path: str, every: int = 100) -> None:
    train, evals = {}, {}
    for line in open(path):
        record = json.loads(line)
        (train if record["event"] == "train" else evals if record["event"] == "eval" else {})[record["iter"]] = record
    print("| iteration | train loss | lr | elapsed (s) | mIoU (%) | aAcc (%) |")
    print("|---:|---:|---:|---:|---:|---:|")
    for it in sorted(set(train) | set(evals)):
        if it % every and it not in evals:
            continue
        t, e = train.get(it, {}), evals.get(it)
        loss = f"{t['loss']:.4f}" if t else ""
        lr = f"{t['lr']:.2e}" if t else ""
        elapsed = f"{t['elapsed_s']:.0f}" if t else ""
        miou = f"{100 * e['mIoU']:.2f}" if e else ""
        aacc = f"{100 * e['aAcc']:.2f}" if e else ""
        print(f"| {it} | {loss} | {lr} | {elapsed} | {miou} | {aacc} |")


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]) if len(sys.argv) > 2 else 100)
