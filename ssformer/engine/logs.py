"""What a training run reports: ``log.jsonl`` (strict JSON, one record per event), TensorBoard
scalars when installed, and progress on a terminal (tqdm) or, in logs and batch jobs, as text lines."""

from __future__ import annotations

import json
import math
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from tqdm import tqdm


def strict(value: Any) -> Any:
    """``value`` with NaN and infinities as None: JSON has no such numbers (``null`` for an undefined metric)."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: strict(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [strict(v) for v in value]
    return value


def read_log(path: Path) -> list[dict[str, Any]]:
    """The complete records of a ``log.jsonl``; a line cut short (a crash or a full disk mid-write) is dropped."""
    records = []
    for line in path.read_text(errors="replace").splitlines():
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(record, dict):
            records.append(record)
    return records


class JsonLog:
    """Appends one JSON object per line, each written whole with one ``write`` and flushed.

    ``keep_until`` (on resume: the checkpoint's iteration) first rewrites the file without the records
    of later iterations, which the resumed run writes again, and without incomplete lines.
    """

    def __init__(self, path: Path, enabled: bool, keep_until: int | None = None):
        self.path, self.enabled, self.tb = path, enabled, None
        if not enabled:
            return
        if keep_until is not None and path.is_file():
            kept = [r for r in read_log(path) if int(r.get("iter", 0)) <= keep_until]
            tmp = path.with_name(f".{path.name}.tmp")
            tmp.write_text("".join(json.dumps(r, allow_nan=False) + "\n" for r in kept))
            os.replace(tmp, path)
        try:
            from torch.utils.tensorboard import SummaryWriter
            self.tb = SummaryWriter(str(path.parent / "tensorboard"))
        except Exception:  # tensorboard is optional
            self.tb = None

    def write(self, record: dict[str, Any]) -> None:
        if not self.enabled:
            return
        line = (json.dumps(strict(record), allow_nan=False) + "\n").encode()
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o666)
        try:
            os.write(fd, line)
        finally:
            os.close(fd)
        if self.tb is not None:
            for key, value in record.items():
                if isinstance(value, (int, float)) and key != "iter" and math.isfinite(value):
                    self.tb.add_scalar(f"{record.get('event', 'train')}/{key}", value, record["iter"])
            self.tb.flush()

    def close(self) -> None:
        if self.tb is not None:
            self.tb.close()


class Progress:
    """The tqdm bar on a terminal, text lines otherwise (``echo``), and the ``train`` records of
    ``log.jsonl``: loss, lr and speed averaged over each ``log_interval`` window."""

    def __init__(self, log: JsonLog, iters: int, start: int, log_interval: int, show: bool,
                 echo: Callable[[str], object] | None = None):
        self.log, self.iters, self.log_interval = log, iters, log_interval
        # a line per log_interval wherever stdout is not a terminal (a file, nohup, SLURM, CI); the bar
        # on a terminal's stderr
        self.text = echo if show and echo is not None and not sys.stdout.isatty() else None
        self.bar = tqdm(total=iters, initial=start, disable=None if show else True, dynamic_ncols=True, desc="train")
        self.loss, self.count, self.window_start, self.run_start = 0.0, 0, time.time(), time.time()

    def step(self, iteration: int, lr: float, loss: float) -> None:
        self.loss, self.count = self.loss + loss, self.count + 1
        self.bar.update(1)
        if iteration % self.log_interval and iteration != self.iters:
            return
        sec_per_iter = (time.time() - self.window_start) / self.count
        record = {"event": "train", "iter": iteration, "lr": lr, "loss": self.loss / self.count,
                  "sec_per_iter": sec_per_iter, "eta_s": sec_per_iter * (self.iters - iteration),
                  "elapsed_s": time.time() - self.run_start}
        self.log.write(record)
        self.bar.set_postfix(loss=f"{record['loss']:.4f}", lr=f"{lr:.2e}", s_it=f"{sec_per_iter:.2f}")
        if self.text is not None:
            memory = resident_mib()
            self.text(f"iter {iteration}/{self.iters}  loss {record['loss']:.4f}  lr {lr:.3g}  "
                      f"{sec_per_iter:.2f} s/iter  eta {record['eta_s'] / 60:.1f} min"
                      + (f"  mem {memory:.0f} MiB" if memory is not None else ""))
        self.loss, self.count, self.window_start = 0.0, 0, time.time()

    def write(self, line: str) -> None:
        """A message between bar updates (on the terminal) or as its own line."""
        if self.text is not None:
            self.text(line)
        else:
            self.bar.write(line)

    def close(self) -> None:
        self.bar.close()


def resident_mib() -> float | None:
    """This process's peak resident memory in MiB (``VmHWM``), where /proc tells it; plus the CUDA peak."""
    peak = None
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    peak = int(line.split()[1]) / 1024
    except OSError:
        pass
    import torch

    if torch.cuda.is_available() and torch.cuda.is_initialized():
        peak = (peak or 0.0) + torch.cuda.max_memory_allocated() / 2**20
    return peak
