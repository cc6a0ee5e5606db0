"""The demo server's JSON API: predictions, masks, and clear errors for bad uploads."""

from __future__ import annotations

import http.client
import io
import json
import threading
import urllib.error
import urllib.request

import numpy as np
import pytest
import torch
from PIL import Image

import ssformer
from ssformer.inference.serve import make_server
from tests.conftest import tiny_model_kwargs


@pytest.fixture(scope="module")
def server():
    torch.manual_seed(0)
    segmenter = ssformer.Segmenter(ssformer.SSformer(**tiny_model_kwargs(num_classes=6)), img_scale=(128, 64))
    srv = make_server(segmenter, "127.0.0.1", 0, max_bytes=200_000)
    thread = threading.Thread(target=srv.serve_forever, daemon=True)
    thread.start()
    yield srv, segmenter, f"http://127.0.0.1:{srv.server_address[1]}"
    srv.shutdown()
    srv.server_close()


def png_bytes(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format="PNG")
    return buffer.getvalue()


def post(url: str, body: bytes) -> tuple[int, str, bytes]:
    request = urllib.request.Request(url, data=body, method="POST", headers={"Content-Type": "application/octet-stream"})
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            return response.status, response.headers["Content-Type"], response.read()
    except urllib.error.HTTPError as e:
        return e.code, e.headers["Content-Type"], e.read()


def test_binds_to_localhost_by_default(server):
    srv, _, _ = server
    assert srv.server_address[0] == "127.0.0.1"


def test_predict_returns_the_class_histogram(server):
    _, segmenter, base = server
    image = np.random.default_rng(1).integers(0, 256, (30, 44, 3), dtype=np.uint8)
    status, kind, body = post(base + "/api/predict?overlay=1", png_bytes(image))
    assert status == 200 and kind == "application/json"
    payload = json.loads(body)
    mask = segmenter.predict(image)
    assert (payload["width"], payload["height"]) == (44, 30)
    counts = np.bincount(mask.ravel(), minlength=6)
    assert {c["index"]: c["pixels"] for c in payload["classes"]} == {i: int(n) for i, n in enumerate(counts) if n}
    assert sum(c["share"] for c in payload["classes"]) == pytest.approx(1.0)
    assert [c["pixels"] for c in payload["classes"]] == sorted((c["pixels"] for c in payload["classes"]), reverse=True)
    assert payload["overlay"].startswith("data:image/png;base64,")


def test_mask_endpoint_returns_the_palette_png(server):
    _, segmenter, base = server
    image = np.random.default_rng(2).integers(0, 256, (21, 17, 3), dtype=np.uint8)
    status, kind, body = post(base + "/api/mask", png_bytes(image))
    assert status == 200 and kind == "image/png"
    mask = Image.open(io.BytesIO(body))
    assert mask.mode == "P" and mask.size == (17, 21)
    np.testing.assert_array_equal(np.asarray(mask), segmenter.predict(image))


def test_page_and_class_list(server):
    _, segmenter, base = server
    with urllib.request.urlopen(base + "/", timeout=30) as response:
        assert response.headers["Content-Type"].startswith("text/html")
        assert '<input type="file"' in response.read().decode()
    with urllib.request.urlopen(base + "/api/classes", timeout=30) as response:
        classes = json.loads(response.read())["classes"]
    assert [c["color"] for c in classes] == [list(c) for c in segmenter.palette]


def test_bad_uploads_get_json_errors(server):
    _, _, base = server
    status, kind, body = post(base + "/api/predict", b"just some text, not an image")
    assert status == 400 and kind == "application/json"
    assert "not a readable image" in json.loads(body)["error"]
    status, _, body = post(base + "/api/predict", b"")
    assert status == 400 and "empty" in json.loads(body)["error"]
    # announce a body over the limit: refused from the header, before any of it is read
    connection = http.client.HTTPConnection("127.0.0.1", int(base.rsplit(":", 1)[1]), timeout=60)
    connection.putrequest("POST", "/api/predict")
    connection.putheader("Content-Length", "300000")
    connection.endheaders()
    response = connection.getresponse()
    assert response.status == 413
    assert "larger than the limit of 200000 bytes" in json.loads(response.read())["error"]
    connection.close()
    status, _, body = post(base + "/api/elsewhere", b"x")
    assert status == 404 and "no such endpoint" in json.loads(body)["error"]
