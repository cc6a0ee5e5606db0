"""The demo server (Starlette on uvicorn): predictions, masks, and a JSON answer to every abuse."""

from __future__ import annotations

import http.client
import io
import json
import logging
import socket
import threading
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
import torch
from PIL import Image

import ssformer
from ssformer.inference.serve import make_server
from tests.conftest import tiny_model_kwargs

BODY_TIMEOUT = 1.0
HEADER_TIMEOUT = 1.0


@pytest.fixture(scope="module")
def segmenter():
    torch.manual_seed(0)
    return ssformer.Segmenter(ssformer.SSformer(**tiny_model_kwargs(num_classes=6)),
                              pipeline=ssformer.PipelineOverrides(img_scale=(128, 64)))


@pytest.fixture(scope="module")
def server(segmenter):
    srv = make_server(segmenter, "127.0.0.1", 0, max_bytes=200_000, max_pixels=1_000_000,
                      body_timeout=BODY_TIMEOUT, header_timeout=HEADER_TIMEOUT).start()
    yield srv, segmenter, f"http://127.0.0.1:{srv.address[1]}"
    srv.stop()


@pytest.fixture
def server_log():
    """Records the server's loggers write at WARNING and above (uvicorn's do not propagate)."""
    records: list[logging.LogRecord] = []
    handler = logging.Handler(level=logging.WARNING)
    handler.emit = records.append  # type: ignore[method-assign]
    loggers = [logging.getLogger(name) for name in ("uvicorn.error", "uvicorn", "ssformer.serve")]
    for logger in loggers:
        logger.addHandler(handler)
    yield records
    for logger in loggers:
        logger.removeHandler(handler)


def png_bytes(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format="PNG")
    return buffer.getvalue()


def random_image(seed: int, height: int, width: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8)


def post(url: str, body: bytes, content_type: str = "application/octet-stream") -> tuple[int, str, bytes]:
    request = urllib.request.Request(url, data=body, method="POST", headers={"Content-Type": content_type})
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            return response.status, response.headers["Content-Type"], response.read()
    except urllib.error.HTTPError as e:
        return e.code, e.headers["Content-Type"], e.read()


def multipart(field: str, filename: str, data: bytes) -> tuple[bytes, str]:
    """A multipart/form-data body as ``curl -F field=@filename`` sends it."""
    boundary = "------------------------d74496d66958873e"
    body = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"{field}\"; filename=\"{filename}\"\r\n"
            "Content-Type: image/png\r\n\r\n").encode() + data + f"\r\n--{boundary}--\r\n".encode()
    return body, f"multipart/form-data; boundary={boundary}"


def raw_exchange(port: int, data: bytes, wait: float = 20.0) -> tuple[bytes, float]:
    """Send ``data`` as is; everything the server sends until it closes, and how long that took."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=wait)
    start = time.monotonic()
    sock.sendall(data)
    received = b""
    try:
        while chunk := sock.recv(65536):
            received += chunk
    except TimeoutError:
        received += b"<still open>"
    finally:
        sock.close()
    return received, time.monotonic() - start


def json_body(reply: bytes) -> dict:
    return json.loads(reply.split(b"\r\n\r\n", 1)[1])


def test_binds_to_localhost_by_default(server):
    srv, _, _ = server
    assert srv.address[0] == "127.0.0.1"


def test_predict_returns_the_class_histogram(server):
    _, segmenter, base = server
    image = random_image(1, 30, 44)
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
    image = random_image(2, 21, 17)
    status, kind, body = post(base + "/api/mask", png_bytes(image))
    assert status == 200 and kind == "image/png"
    mask = Image.open(io.BytesIO(body))
    assert mask.mode == "P" and mask.size == (17, 21)
    np.testing.assert_array_equal(np.asarray(mask), segmenter.predict(image))


def test_multipart_uploads_as_curl_sends_them(server):
    _, segmenter, base = server
    image = random_image(3, 19, 23)
    body, content_type = multipart("file", "photo.png", png_bytes(image))
    status, kind, reply = post(base + "/api/mask", body, content_type)
    assert status == 200 and kind == "image/png"
    np.testing.assert_array_equal(np.asarray(Image.open(io.BytesIO(reply))), segmenter.predict(image))
    body, content_type = multipart("image", "photo.png", png_bytes(image))  # any field name
    assert post(base + "/api/predict", body, content_type)[0] == 200
    status, _, reply = post(base + "/api/predict", b"--x\r\nContent-Disposition: form-data; name=\"a\"\r\n\r\n1\r\n--x--\r\n",
                            "multipart/form-data; boundary=x")
    assert status == 400 and "no file part" in json.loads(reply)["error"]


def test_page_health_classes_and_openapi(server):
    _, segmenter, base = server
    with urllib.request.urlopen(base + "/", timeout=30) as response:
        assert response.headers["Content-Type"].startswith("text/html")
        assert '<input type="file"' in response.read().decode()
    with urllib.request.urlopen(base + "/api/classes", timeout=30) as response:
        classes = json.loads(response.read())["classes"]
    assert [c["color"] for c in classes] == [list(c) for c in segmenter.palette]
    with urllib.request.urlopen(base + "/health", timeout=30) as response:
        health = json.loads(response.read())
    assert health["status"] == "ok" and health["queue"] == {"active": 0, "capacity": 8}
    assert health["model"]["num_classes"] == 6
    with urllib.request.urlopen(base + "/openapi.json", timeout=30) as response:
        schema = json.loads(response.read())
    assert {"/", "/api/predict", "/api/mask", "/api/classes", "/health"} <= set(schema["paths"])
    assert "413" in schema["paths"]["/api/predict"]["post"]["responses"]


def test_bad_uploads_get_json_errors(server):
    _, _, base = server
    status, kind, body = post(base + "/api/predict", b"just some text, not an image")
    assert status == 415 and kind == "application/json"
    assert "not a readable image" in json.loads(body)["error"]
    status, _, body = post(base + "/api/predict", b"")
    assert status == 400 and "empty" in json.loads(body)["error"]
    truncated = png_bytes(random_image(4, 40, 40))[:-200]
    status, _, body = post(base + "/api/predict", truncated)
    assert status == 422 and "not a usable image" in json.loads(body)["error"]
    too_many_pixels = png_bytes(np.zeros((1001, 1000, 3), np.uint8))  # small file, over max_pixels=1e6
    status, _, body = post(base + "/api/predict", too_many_pixels)
    assert status == 422 and "1000x1001, more than 1000000 pixels" in json.loads(body)["error"]
    status, kind, body = post(base + "/api/elsewhere", b"x")
    assert status == 404 and kind == "application/json" and "no such endpoint: /api/elsewhere" in json.loads(body)["error"]


def test_wrong_methods_get_json_405(server):
    srv, _, _ = server
    for method in ("PUT", "DELETE", "BREW"):
        reply, _ = raw_exchange(srv.address[1], f"{method} /api/predict HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n"
                                                "Connection: close\r\n\r\n".encode())
        assert reply.startswith(b"HTTP/1.1 405 ") and b"allow: post" in reply.lower()
        assert json_body(reply) == {"error": f"method {method} is not allowed on /api/predict", "status": 405}


def test_declared_length_over_the_limit_is_refused_before_reading(server):
    srv, _, _ = server
    connection = http.client.HTTPConnection("127.0.0.1", srv.address[1], timeout=60)
    connection.putrequest("POST", "/api/predict")
    connection.putheader("Content-Length", "300000")
    connection.endheaders()
    response = connection.getresponse()
    assert response.status == 413
    assert "larger than the limit of 200000 bytes" in json.loads(response.read())["error"]
    connection.close()


def test_negative_and_non_numeric_content_length_are_refused(server):
    srv, _, _ = server
    image = png_bytes(random_image(5, 20, 20))
    for length in ("-1", "abc", "12, 13"):
        reply, _ = raw_exchange(srv.address[1], f"POST /api/predict HTTP/1.1\r\nHost: x\r\nContent-Length: {length}\r\n"
                                                "\r\n".encode() + image)
        assert reply.startswith(b"HTTP/1.1 400 "), reply[:200]
        assert "malformed HTTP request" in json_body(reply)["error"]


def test_chunked_upload_over_the_limit_is_cut_off_while_streaming(server):
    srv, _, _ = server
    chunk = b"x" * 50_000
    body = b"".join(b"%x\r\n%s\r\n" % (len(chunk), chunk) for _ in range(6)) + b"0\r\n\r\n"
    reply, _ = raw_exchange(srv.address[1], b"POST /api/predict HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n"
                                            b"\r\n" + body)
    assert reply.startswith(b"HTTP/1.1 413 ")
    assert json_body(reply)["error"] == "upload is larger than the limit of 200000 bytes"


def test_a_stalled_upload_is_dropped(server):
    """Content-Length announces more than is sent (a mismatched length, or a client that stalls)."""
    srv, _, _ = server
    image = png_bytes(random_image(6, 20, 20))
    reply, seconds = raw_exchange(srv.address[1], b"POST /api/predict HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n"
                                  % (len(image) + 100) + image)
    assert reply.startswith(b"HTTP/1.1 408 ") and b"connection: close" in reply.lower()
    assert "upload stalled" in json_body(reply)["error"]
    assert BODY_TIMEOUT <= seconds < BODY_TIMEOUT + 5


def test_stalled_headers_are_dropped(server):
    srv, _, _ = server
    reply, seconds = raw_exchange(srv.address[1], b"POST /api/predict HTTP/1.1\r\nHost: x\r\n")
    assert reply == b"" and HEADER_TIMEOUT <= seconds < HEADER_TIMEOUT + 5
    reply, seconds = raw_exchange(srv.address[1], b"")  # connects and says nothing
    assert reply == b"" and HEADER_TIMEOUT <= seconds < HEADER_TIMEOUT + 5


def test_degenerate_sizes_get_masks(server):
    _, segmenter, base = server
    for height, width in ((1, 40000), (40000, 1), (1, 1)):
        image = random_image(7, height, width)
        status, _, body = post(base + "/api/mask", png_bytes(image))
        assert status == 200, body
        mask = np.asarray(Image.open(io.BytesIO(body)))
        assert mask.shape == (height, width)
        np.testing.assert_array_equal(mask, segmenter.predict(image))


def test_32_requests_8_way_parallel_are_all_correct(server):
    _, segmenter, base = server
    images = [random_image(100 + i, 20 + i % 5, 30 + i % 7) for i in range(32)]
    with ThreadPoolExecutor(8) as pool:
        replies = list(pool.map(lambda image: post(base + "/api/mask", png_bytes(image)), images))
    for image, (status, _, body) in zip(images, replies):
        assert status == 200
        np.testing.assert_array_equal(np.asarray(Image.open(io.BytesIO(body))), segmenter.predict(image))


def test_client_aborts_leave_no_traceback(server, server_log):
    srv, _, base = server
    image = png_bytes(random_image(8, 30, 30))
    for sent in (0, 10, len(image) // 2):
        sock = socket.create_connection(("127.0.0.1", srv.address[1]), timeout=10)
        sock.sendall(b"POST /api/predict HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n" % len(image) + image[:sent])
        sock.close()
    body, content_type = multipart("file", "a.png", image)
    sock = socket.create_connection(("127.0.0.1", srv.address[1]), timeout=10)
    sock.sendall(b"POST /api/predict HTTP/1.1\r\nHost: x\r\nContent-Type: %s\r\nContent-Length: %d\r\n\r\n"
                 % (content_type.encode(), len(body)) + body[:len(body) // 2])
    sock.close()
    # a client that leaves while its image is being segmented
    sock = socket.create_connection(("127.0.0.1", srv.address[1]), timeout=10)
    sock.sendall(b"POST /api/predict HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n" % len(image) + image)
    sock.close()
    time.sleep(1.0)
    assert post(base + "/api/predict", image)[0] == 200  # still serving
    assert [r.getMessage() for r in server_log] == []


def test_a_full_queue_answers_503_with_retry_after():
    """One request holds the model, queue_size=1: the next is refused at once, and served after."""
    torch.manual_seed(0)
    segmenter = ssformer.Segmenter(ssformer.SSformer(**tiny_model_kwargs(num_classes=3)),
                                   pipeline=ssformer.PipelineOverrides(img_scale=(64, 32)))
    release, entered = threading.Event(), threading.Event()
    predict = segmenter.predict

    def slow_predict(image):
        entered.set()
        release.wait(30)
        return predict(image)

    segmenter.predict = slow_predict  # type: ignore[method-assign]
    srv = make_server(segmenter, "127.0.0.1", 0, queue_size=1, retry_after=7).start()
    base = f"http://127.0.0.1:{srv.address[1]}"
    image = png_bytes(random_image(9, 16, 16))
    try:
        with ThreadPoolExecutor(1) as pool:
            first = pool.submit(post, base + "/api/predict", image)
            assert entered.wait(30)
            request = urllib.request.Request(base + "/api/predict", data=image, method="POST")
            with pytest.raises(urllib.error.HTTPError) as refused:
                urllib.request.urlopen(request, timeout=30)
            assert refused.value.code == 503 and refused.value.headers["Retry-After"] == "7"
            assert "queue is full" in json.loads(refused.value.read())["error"]
            release.set()
            assert first.result(timeout=60)[0] == 200
        assert post(base + "/api/predict", image)[0] == 200
    finally:
        release.set()
        srv.stop()


def test_slow_uploads_cost_a_connection_not_the_model_queue(segmenter):
    """As many clients as the queue holds trickle their bodies in; other uploads are still served."""
    srv = make_server(segmenter, "127.0.0.1", 0, queue_size=2, body_timeout=2.0, upload_timeout=30.0).start()
    base = f"http://127.0.0.1:{srv.address[1]}"
    image = png_bytes(random_image(10, 16, 16))
    slow = [socket.create_connection(("127.0.0.1", srv.address[1]), timeout=10) for _ in range(2)]
    stop = threading.Event()

    def trickle():
        while not stop.wait(0.3):
            for sock in slow:
                sock.sendall(b"\0")

    try:
        for sock in slow:
            sock.sendall(b"POST /api/predict HTTP/1.1\r\nHost: x\r\nContent-Length: 100000\r\n\r\n\0")
        dripping = threading.Thread(target=trickle, daemon=True)
        dripping.start()
        time.sleep(0.5)  # both slow uploads are in and being received
        for _ in range(3):
            status, _, body = post(base + "/api/predict", image)
            assert status == 200, body
        health = json.loads(urllib.request.urlopen(base + "/health", timeout=10).read())
        assert health["queue"]["active"] == 0 and health["uploads"]["active"] == 2, health
    finally:
        stop.set()
        for sock in slow:
            sock.close()
        srv.stop()


def test_too_many_uploads_at_once_answer_503():
    torch.manual_seed(0)
    segmenter = ssformer.Segmenter(ssformer.SSformer(**tiny_model_kwargs(num_classes=3)),
                                   pipeline=ssformer.PipelineOverrides(img_scale=(64, 32)))
    srv = make_server(segmenter, "127.0.0.1", 0, max_uploads=1, retry_after=3, body_timeout=5.0).start()
    base = f"http://127.0.0.1:{srv.address[1]}"
    slow = socket.create_connection(("127.0.0.1", srv.address[1]), timeout=10)
    try:
        slow.sendall(b"POST /api/predict HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\n\0")
        time.sleep(0.3)
        request = urllib.request.Request(base + "/api/predict", data=png_bytes(random_image(11, 8, 8)), method="POST")
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(request, timeout=10)
        assert refused.value.code == 503 and refused.value.headers["Retry-After"] == "3"
        assert "uploads" in json.loads(refused.value.read())["error"]
    finally:
        slow.close()
        srv.stop()


def test_app_from_environment_for_uvicorn_workers(tmp_path, monkeypatch):
    from starlette.applications import Starlette

    from ssformer.inference.serve import (
        HeaderTimeoutProtocol,
        ServeLimits,
        app_from_environment,
    )

    monkeypatch.delenv("SSFORMER_CHECKPOINT", raising=False)
    with pytest.raises(ValueError, match="set SSFORMER_CHECKPOINT"):
        app_from_environment()
    torch.manual_seed(0)
    ssformer.SSformer(**tiny_model_kwargs(num_classes=3)).save_pretrained(tmp_path / "m")
    monkeypatch.setenv("SSFORMER_CHECKPOINT", str(tmp_path / "m"))
    monkeypatch.setenv("SSFORMER_QUEUE", "3")
    app = app_from_environment()
    assert isinstance(app, Starlette) and {r.path for r in app.routes} >= {"/api/predict", "/health"}
    assert ServeLimits().header_timeout == 10.0 and HeaderTimeoutProtocol.__mro__[1].__name__ == "H11Protocol"
