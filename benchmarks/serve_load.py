"""Load test of ``ssformer serve`` on this machine (loopback only; bounded count and time).

    PYTHONPATH=. python3 benchmarks/serve_load.py --requests 64 --concurrency 8 --size 480 640

Starts ``ssformer serve --port 0`` in a subprocess (on ``--checkpoint``, default a tiny random
150-class model: what is measured is then the server, not the network), sends ``--requests`` PNG
uploads of random ``--size`` images to ``/api/mask`` with ``--concurrency`` clients at a time, and
prints the latency p50/p99, the throughput, the errors (any reply but 200, or a mask of the wrong
size) and the server's peak RSS (``VmHWM``). Every request goes to 127.0.0.1; the run stops after
``--time-limit`` seconds whatever is left.
"""

from __future__ import annotations

import argparse
import http.client
import io
import json
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor, as_completed
from pathlib import Path

import numpy as np
from PIL import Image


def peak_rss_gib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 2**20
    return float("nan")


def tiny_checkpoint(folder: Path, classes: int) -> Path:
    import torch

    import ssformer

    torch.manual_seed(0)
    ssformer.SSformer(num_classes=classes, embed_dim=8, depths=(2, 2, 2, 2), num_heads=(1, 1, 2, 2), window_size=7,
                      decoder_dim=8).save_pretrained(folder / "tiny")
    return folder / "tiny"


def one_request(port: int, body: bytes, size: tuple[int, int]) -> tuple[float, str | None]:
    start = time.perf_counter()
    try:
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=300)
        connection.request("POST", "/api/mask", body, {"Content-Type": "image/png"})
        response = connection.getresponse()
        data = response.read()
        connection.close()
    except OSError as e:
        return time.perf_counter() - start, f"{type(e).__name__}: {e}"
    seconds = time.perf_counter() - start
    if response.status != 200:
        return seconds, f"HTTP {response.status}: {data[:200]!r}"
    if Image.open(io.BytesIO(data)).size != (size[1], size[0]):
        return seconds, "mask of the wrong size"
    return seconds, None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", help="model to serve (default: a tiny random model)")
    parser.add_argument("--classes", type=int, default=150, help="classes of the tiny model (default 150)")
    parser.add_argument("--requests", type=int, default=64)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--size", type=int, nargs=2, default=(480, 640), metavar=("H", "W"))
    parser.add_argument("--queue", type=int, default=8, help="the server's --queue")
    parser.add_argument("--time-limit", type=float, default=600.0, help="seconds for the whole run (default 600)")
    parser.add_argument("--json", action="store_true", help="print the results as one JSON line")
    args = parser.parse_args(argv)
    if not 1 <= args.requests <= 1000 or not 1 <= args.concurrency <= 64:
        parser.error("--requests must be in 1..1000 and --concurrency in 1..64")

    with tempfile.TemporaryDirectory() as tmp:
        checkpoint = args.checkpoint or str(tiny_checkpoint(Path(tmp), args.classes))
        server = subprocess.Popen([sys.executable, "-m", "ssformer.cli.main", "serve", "--checkpoint", checkpoint,
                                   "--port", "0", "--queue", str(args.queue)],
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        try:
            line = server.stdout.readline()
            if not line.startswith("ssformer serve: http://127.0.0.1:"):
                raise SystemExit(f"server did not start: {line}{server.stderr.read()}")
            port = int(line.split()[2].rstrip("/").rsplit(":", 1)[1])
            rng = np.random.default_rng(0)
            bodies = []
            for _ in range(min(args.requests, 8)):
                buffer = io.BytesIO()
                Image.fromarray(rng.integers(0, 256, (*args.size, 3), dtype=np.uint8)).save(buffer, format="PNG")
                bodies.append(buffer.getvalue())
            latencies, errors = [], []
            deadline = time.monotonic() + args.time_limit
            start = time.perf_counter()
            with ThreadPoolExecutor(args.concurrency) as pool:
                futures = [pool.submit(one_request, port, bodies[i % len(bodies)], tuple(args.size))
                           for i in range(args.requests)]
                for future in as_completed(futures, timeout=max(deadline - time.monotonic(), 1)):
                    seconds, error = future.result()
                    latencies.append(seconds)
                    if error:
                        errors.append(error)
            wall = time.perf_counter() - start
            peak = peak_rss_gib(server.pid)
        finally:
            server.terminate()
            _, log = server.communicate(timeout=60)
    result = {"requests": args.requests, "concurrency": args.concurrency, "size": list(args.size),
              "p50_ms": round(1000 * float(np.percentile(latencies, 50)), 1),
              "p99_ms": round(1000 * float(np.percentile(latencies, 99)), 1),
              "requests_per_s": round(args.requests / wall, 2), "errors": len(errors),
              "server_peak_rss_gib": round(peak, 2), "tracebacks_in_log": log.count("Traceback")}
    if args.json:
        print(json.dumps(result))
    else:
        print(f"{args.requests} requests, {args.concurrency} at a time, {args.size[0]}x{args.size[1]} PNG: "
              f"p50 {result['p50_ms']} ms, p99 {result['p99_ms']} ms, {result['requests_per_s']} req/s, "
              f"{len(errors)} errors, server peak RSS {result['server_peak_rss_gib']} GiB, "
              f"{result['tracebacks_in_log']} tracebacks in its log")
        for error in errors[:5]:
            print(f"  error: {error}")
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
