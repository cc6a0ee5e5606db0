"""``ssformer serve`` as users run it: the extra it needs, a clean log, memory on a large image."""

from __future__ import annotations

import http.client
import importlib.util
import io
import json
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from ssformer.cli.main import main
from tests.conftest import save_tiny_model

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def tiny150(tmp_path_factory):
    return save_tiny_model(tmp_path_factory, 150, "tiny150")


def test_serve_without_the_extra_names_it(tiny150, monkeypatch, capsys):
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "uvicorn" else real(name, *a))
    assert main(["serve", "--checkpoint", str(tiny150)]) == 2
    err = capsys.readouterr().err.strip()
    assert err == "ssformer serve: error: serving needs the serve extra: pip install 'ssformer[serve]' (missing: uvicorn)"


def start_serve(checkpoint: Path) -> tuple[subprocess.Popen, int]:
    process = subprocess.Popen([sys.executable, "-m", "ssformer.cli.main", "serve", "--checkpoint", str(checkpoint),
                                "--port", "0"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT)
    line = process.stdout.readline()
    assert line.startswith("ssformer serve: http://127.0.0.1:"), line + process.stderr.read()
    return process, int(line.split()[2].rstrip("/").rsplit(":", 1)[1])


def peak_rss_gib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 2**20
    raise AssertionError("no VmHWM")


def request(port: int, path: str, body: bytes, headers: dict[str, str]) -> tuple[int, bytes]:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=600)
    connection.request("POST", path, body, headers)
    response = connection.getresponse()
    data = response.read()
    connection.close()
    return response.status, data


def png(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format="PNG")
    return buffer.getvalue()


@pytest.mark.slow
@pytest.mark.skipif(not Path("/proc/self/status").is_file(), reason="reads peak memory from /proc")
def test_serve_log_stays_clean_and_a_large_image_stays_small(tiny150):
    """Multipart as curl sends it, aborted uploads (no traceback in the log), then a 6000x6000 image
    (a 105 KB PNG) on the 150-class model: answered, with the server's peak memory under 3 GB
    (the full-size logits alone would be 20 GiB)."""
    process, port = start_serve(tiny150)
    try:
        small = png(np.random.default_rng(0).integers(0, 256, (40, 50, 3), dtype=np.uint8))
        boundary = "xyzzy"
        body = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"a.png\"\r\n"
                "Content-Type: image/png\r\n\r\n").encode() + small + f"\r\n--{boundary}--\r\n".encode()
        status, reply = request(port, "/api/predict", body, {"Content-Type": f"multipart/form-data; boundary={boundary}"})
        assert status == 200 and json.loads(reply)["width"] == 50
        for sent in (5, len(small) // 2):
            sock = socket.create_connection(("127.0.0.1", port), timeout=10)
            sock.sendall(b"POST /api/predict HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n" % len(small) + small[:sent])
            sock.close()
        y, x = np.mgrid[0:6000, 0:6000]
        large = png(np.stack([(x // 24) % 256, (y // 24) % 256, ((x + y) // 47) % 256], -1).astype(np.uint8))
        assert len(large) < 2_000_000
        start = time.monotonic()
        status, reply = request(port, "/api/mask", large, {"Content-Type": "image/png"})
        assert status == 200, reply[:300]
        assert Image.open(io.BytesIO(reply)).size == (6000, 6000)
        peak = peak_rss_gib(process.pid)
        print(f"6000x6000, 150 classes: {time.monotonic() - start:.1f} s, server peak RSS {peak:.2f} GiB")
        assert peak < 3.0
    finally:
        process.terminate()
        _, err = process.communicate(timeout=60)
    assert "Traceback" not in err and "Exception" not in err, err
