"""Peak RSS of one whole-image inference of the official SSformer-B (for docs/benchmarks.md).

Builds the official model (150 classes), runs one warm-up call, resets the peak resident set
(/proc/self/clear_refs), runs one timed call and prints the peak, as ``ssformer benchmark
--warmup 1 --runs 1`` does for this project. Run with the official venv's interpreter:

    /tmp/ssformer-official/bin/python benchmarks/official_memory.py 1024 2048
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent.parent / "shared" / "reference"))
import torch  # noqa: E402
from official import build_official  # noqa: E402


def status_bytes(field: str) -> int:
    line = next(x for x in Path("/proc/self/status").read_text().splitlines() if x.startswith(field + ":"))
    return int(line.split()[1]) * 1024


def main() -> None:
    height, width = (int(v) for v in sys.argv[1:3]) if len(sys.argv) >= 3 else (1024, 2048)
    torch.set_num_threads(2)
    model = build_official(num_classes=150).eval()
    x = torch.randn(1, 3, height, width)
    with torch.inference_mode():
        model.encode_decode(x, None)
        Path("/proc/self/clear_refs").write_text("5")
        before = status_bytes("VmRSS")
        start = time.perf_counter()
        model.encode_decode(x, None)
        seconds = time.perf_counter() - start
    print(json.dumps({"official_peak_rss": status_bytes("VmHWM"), "rss_before": before, "seconds": seconds}))


if __name__ == "__main__":
    main()
