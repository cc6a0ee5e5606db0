"""A small local demo: upload an image, see the overlay, the legend and per-class pixel shares.

Standard library only (``http.server``). Routes:

* ``GET /``: the page (``demo_page.PAGE``).
* ``POST /api/predict``: the image file as the request body; JSON with the size, per-class pixel
  counts and shares (classes present, largest first), and with ``?overlay=1`` the overlay as a
  PNG data URL.
* ``POST /api/mask``: the same body; the palette-mode PNG of class indices.
* ``GET /api/classes``: class names and colours.

Errors are JSON ``{"error": ...}``: 400 for a body that is not an image, 411 without a length,
413 above the upload limit, 404 for other paths. Requests are served in threads; predictions run
one at a time (the model is shared).
"""

from __future__ import annotations

import base64
import io
import json
import threading
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlparse

import numpy as np
from PIL import Image, UnidentifiedImageError

from ssformer.inference.demo_page import PAGE
from ssformer.inference.images import ImageError, pil_to_rgb
from ssformer.inference.segmenter import Segmenter
from ssformer.inference.visualize import class_shares

DEFAULT_MAX_BYTES = 20 * 1024 * 1024
MAX_PIXELS = 40_000_000  # decompression-bomb guard: refuse images above ~40 megapixels


def decode_upload(data: bytes) -> Image.Image:
    """The uploaded bytes as an RGB image, or :class:`ImageError` saying why not."""
    if not data:
        raise ImageError("the request body is empty: send the image file as the body")
    try:
        with Image.open(io.BytesIO(data)) as image:
            if image.width * image.height > MAX_PIXELS:
                raise ImageError(f"image is {image.width}x{image.height}, more than {MAX_PIXELS} pixels")
            image.load()
            return pil_to_rgb(image, "uploaded image")
    except UnidentifiedImageError as e:
        raise ImageError("the upload is not a readable image (not a format Pillow recognises, "
                         "such as PNG, JPEG, BMP, TIFF or WebP)") from e
    except (OSError, SyntaxError, Image.DecompressionBombError) as e:
        raise ImageError(f"the upload is not a readable image ({e})") from e


def describe_prediction(segmenter: Segmenter, image: Image.Image, mask: np.ndarray,
                        with_overlay: bool) -> dict[str, Any]:
    shares = class_shares(mask, segmenter.num_classes)
    counts = np.bincount(mask.reshape(-1), minlength=segmenter.num_classes)
    present = sorted(np.flatnonzero(counts), key=lambda c: -counts[c])
    result: dict[str, Any] = {
        "width": image.width, "height": image.height,
        "classes": [{"index": int(c), "name": segmenter.class_names[c], "color": list(segmenter.palette[c]),
                     "pixels": int(counts[c]), "share": float(shares[c])} for c in present]}
    if with_overlay:
        buffer = io.BytesIO()
        segmenter.overlay(image, mask).save(buffer, format="PNG")
        result["overlay"] = "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")
    return result


def make_handler(segmenter: Segmenter, max_bytes: int = DEFAULT_MAX_BYTES) -> type[BaseHTTPRequestHandler]:
    lock = threading.Lock()

    class Handler(BaseHTTPRequestHandler):
        server_version = "ssformer-demo"

        def log_message(self, format: str, *args: Any) -> None:  # keep test output quiet; errors still reported
            pass

        def _send(self, status: int, body: bytes, content_type: str) -> None:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.send_header("Cache-Control", "no-store")
            self.end_headers()
            self.wfile.write(body)

        def _json(self, status: int, payload: dict[str, Any]) -> None:
            self._send(status, json.dumps(payload).encode("utf-8"), "application/json")

        def _error(self, status: HTTPStatus, message: str) -> None:
            self._json(status, {"error": message, "status": int(status)})

        def do_GET(self) -> None:
            path = urlparse(self.path).path
            if path in ("/", "/index.html"):
                self._send(200, PAGE.encode("utf-8"), "text/html; charset=utf-8")
            elif path == "/api/classes":
                self._json(200, {"classes": [{"index": i, "name": n, "color": list(c)} for i, (n, c) in
                                             enumerate(zip(segmenter.class_names, segmenter.palette))]})
            else:
                self._error(HTTPStatus.NOT_FOUND, f"no such page: {path}")

        def do_POST(self) -> None:
            url = urlparse(self.path)
            if url.path not in ("/api/predict", "/api/mask"):
                self._error(HTTPStatus.NOT_FOUND, f"no such endpoint: {url.path}")
                return
            length_header = self.headers.get("Content-Length")
            if length_header is None:
                self.close_connection = True
                self._error(HTTPStatus.LENGTH_REQUIRED, "Content-Length is required")
                return
            try:
                length = int(length_header)
            except ValueError:
                self.close_connection = True
                self._error(HTTPStatus.BAD_REQUEST, f"bad Content-Length {length_header!r}")
                return
            if length > max_bytes:
                self.close_connection = True  # the unread body makes the connection unusable
                self._error(HTTPStatus.REQUEST_ENTITY_TOO_LARGE,
                            f"upload of {length} bytes is larger than the limit of {max_bytes} bytes")
                return
            data = self.rfile.read(length)
            try:
                image = decode_upload(data)
            except ImageError as e:
                self._error(HTTPStatus.BAD_REQUEST, str(e))
                return
            with lock:
                mask = segmenter.predict(image)
            if url.path == "/api/mask":
                buffer = io.BytesIO()
                segmenter.mask_image(mask).save(buffer, format="PNG")
                self._send(200, buffer.getvalue(), "image/png")
                return
            query = parse_qs(url.query)
            with_overlay = query.get("overlay", ["0"])[0] in ("1", "true", "yes")
            self._json(200, describe_prediction(segmenter, image, mask, with_overlay))

    return Handler


def make_server(segmenter: Segmenter, host: str = "127.0.0.1", port: int = 8000,
                max_bytes: int = DEFAULT_MAX_BYTES) -> ThreadingHTTPServer:
    """A ready server (``port=0`` picks a free port: see ``server.server_address``)."""
    server = ThreadingHTTPServer((host, port), make_handler(segmenter, max_bytes))
    server.daemon_threads = True
    return server
