"""The local demo server: Starlette on uvicorn (the ``serve`` extra: ``pip install 'ssformer[serve]'``).

Routes (also described at ``GET /openapi.json``):

* ``GET /``: the demo page (``demo_page.PAGE``).
* ``POST /api/predict``: an image as the raw request body or as the file of a multipart form
  (``curl -F file=@photo.jpg``); JSON with the size, per-class pixel counts and shares (classes
  present, largest first), and with ``?overlay=1`` the overlay as a PNG data URL.
* ``POST /api/mask``: the same upload; the palette-mode PNG of class indices.
* ``GET /api/classes``: class names and colours. ``GET /health``: liveness and the queue.

Every error is JSON ``{"error": ..., "status": N}``: 400 malformed request, 404 unknown path, 405
wrong method, 408 stalled upload, 413 upload above the limit (checked against Content-Length and
again while the body streams in, so a missing or chunked length does not get around it), 415 not an
image format Pillow reads, 422 an image that cannot be used (truncated, zero size, above the pixel
limit), 503 queue full (with Retry-After), 500 a server bug. Malformed HTTP (a negative or
non-numeric Content-Length, say) is refused by uvicorn's parser before the app sees it.

One model thread runs the predictions (decode, predict, encode), one request at a time, so memory
is that of one image. A body is read whole (at most ``max_bytes``; at most ``max_uploads`` of them
at once, the rest get 503) before its request asks for the model, so a client that uploads slowly
holds a connection, not a place in the queue; at most ``queue_size`` read requests are admitted
(running or waiting), the rest get 503 at once. Connections that do not finish their headers within ``header_timeout`` seconds
are closed; uploads that send nothing for ``body_timeout`` seconds (or take longer than
``upload_timeout`` in all) get 408 and are closed.
"""

from __future__ import annotations

import asyncio
import base64
import io
import json
import logging
import os
import socket
import threading
import time
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import h11
import numpy as np
import uvicorn
from PIL import Image, UnidentifiedImageError
from starlette.applications import Starlette
from starlette.datastructures import UploadFile
from starlette.exceptions import HTTPException
from starlette.formparsers import MultiPartException, MultiPartParser
from starlette.requests import ClientDisconnect, Request
from starlette.responses import HTMLResponse, JSONResponse, Response
from starlette.routing import Route
from starlette.schemas import SchemaGenerator
from uvicorn.protocols.http.h11_impl import H11Protocol

from ssformer.data.io import ImageError, upright_rgb
from ssformer.errors import UserError
from ssformer.inference.demo_page import PAGE
from ssformer.inference.segmenter import PipelineOverrides, Segmenter
from ssformer.inference.visualize import class_shares

DEFAULT_MAX_BYTES = 20 * 1024 * 1024
MAX_PIXELS = 40_000_000  # decompression-bomb guard: refuse images above ~40 megapixels
NO_STORE = {"Cache-Control": "no-store"}
log = logging.getLogger("ssformer.serve")


@dataclass(frozen=True)
class ServeLimits:
    """What one client may cost the server."""

    max_bytes: int = DEFAULT_MAX_BYTES  # largest upload
    max_pixels: int = MAX_PIXELS  # largest decoded image
    queue_size: int = 8  # requests admitted at once (one running, the others waiting for the model)
    max_uploads: int = 64  # bodies being received at once (each holds up to max_bytes in memory)
    retry_after: int = 5  # seconds, in the 503 reply when the queue is full
    header_timeout: float = 10.0  # seconds to send the request line and headers
    body_timeout: float = 15.0  # seconds without upload bytes before the upload is dropped
    upload_timeout: float = 120.0  # seconds for a whole upload


class UploadError(Exception):
    """A request the client must change: the status and a message for the JSON reply."""

    def __init__(self, status: int, message: str, close: bool = False):
        super().__init__(message)
        self.status, self.message, self.close = status, message, close


def decode_upload(data: bytes, max_pixels: int = MAX_PIXELS) -> Image.Image:
    """The uploaded bytes as an RGB image, or :class:`UploadError` (415 / 422) saying why not."""
    if not data:
        raise UploadError(400, "the upload is empty: send the image file as the body or as a form file")
    try:
        with Image.open(io.BytesIO(data)) as image:
            if image.width * image.height > max_pixels:
                raise UploadError(422, f"image is {image.width}x{image.height}, more than {max_pixels} pixels")
            image.load()
            return upright_rgb(image, "uploaded image")
    except UnidentifiedImageError as e:
        raise UploadError(415, "the upload is not a readable image (not a format Pillow recognises, "
                               "such as PNG, JPEG, BMP, TIFF or WebP)") from e
    except ImageError as e:
        raise UploadError(422, str(e)) from e
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as e:
        raise UploadError(422, f"the upload is not a usable image ({e})") from e


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


async def limited_body(request: Request, limits: ServeLimits) -> AsyncIterator[bytes]:
    """The request body chunk by chunk, stopped with 413 past ``max_bytes`` and 408 when stalled."""
    length = request.headers.get("content-length")
    if length is not None and int(length) > limits.max_bytes:  # uvicorn's parser only lets digits through
        raise UploadError(413, f"upload of {length} bytes is larger than the limit of {limits.max_bytes} bytes",
                          close=True)
    stream = request.stream().__aiter__()
    deadline = time.monotonic() + limits.upload_timeout
    received = 0
    while True:
        wait = min(limits.body_timeout, deadline - time.monotonic())
        try:
            chunk = await asyncio.wait_for(stream.__anext__(), max(wait, 0.001))
        except StopAsyncIteration:
            return
        except asyncio.TimeoutError:
            raise UploadError(408, f"upload stalled: nothing received for {wait:.0f} s (limit {limits.body_timeout:g} s "
                                   f"without data, {limits.upload_timeout:g} s in all)", close=True) from None
        received += len(chunk)
        if received > limits.max_bytes:
            raise UploadError(413, f"upload is larger than the limit of {limits.max_bytes} bytes", close=True)
        yield chunk


async def read_upload(request: Request, limits: ServeLimits) -> bytes:
    """The image bytes: the raw body, or the file part of a ``multipart/form-data`` body."""
    if not request.headers.get("content-type", "").lower().startswith("multipart/form-data"):
        return b"".join([chunk async for chunk in limited_body(request, limits)])
    parser = MultiPartParser(request.headers, limited_body(request, limits), max_files=1, max_fields=16)
    try:
        form = await parser.parse()
    except MultiPartException as e:
        raise UploadError(400, f"malformed multipart upload: {e.message}") from e
    try:
        files = [value for _, value in form.multi_items() if isinstance(value, UploadFile)]
        if not files:
            raise UploadError(400, "the multipart upload has no file part (send it as -F file=@image.png)")
        return await files[0].read()
    finally:
        await form.close()


class _Admission:
    """At most ``limit`` requests at a stage (receiving, or in the model's queue); the event loop's
    single thread makes the counter safe."""

    def __init__(self, limit: int):
        self.limit, self.active = limit, 0

    def enter(self) -> bool:
        if self.active >= self.limit:
            return False
        self.active += 1
        return True

    def leave(self) -> None:
        self.active -= 1


def _error(status: int, message: str, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"error": message, "status": status}, status_code=status, headers={**NO_STORE, **(headers or {})})


class SegmentationAPI:
    """The routes of ``ssformer serve`` over one :class:`Segmenter`: one model thread behind a bounded
    queue; every answer, errors included, is JSON (or the PNG / HTML asked for). The handlers' docstrings
    are their OpenAPI descriptions (``/openapi.json``)."""

    def __init__(self, segmenter: Segmenter, limits: ServeLimits | None = None):
        limits = limits or ServeLimits()
        if min(limits.queue_size, limits.max_bytes, limits.max_uploads) < 1:
            raise UserError(f"queue_size, max_uploads and max_bytes must be positive, got {limits}")
        self.segmenter, self.limits = segmenter, limits
        self.model_thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="ssformer-model")
        self.admission = _Admission(limits.queue_size)
        self.uploads = _Admission(limits.max_uploads)
        self.schemas = SchemaGenerator({"openapi": "3.0.0", "info": {"title": "ssformer serve", "version": "1"}})

    def segment(self, data: bytes, as_mask: bool, with_overlay: bool) -> Response:
        image = decode_upload(data, self.limits.max_pixels)
        mask = self.segmenter.predict(image)
        if as_mask:
            buffer = io.BytesIO()
            self.segmenter.mask_image(mask).save(buffer, format="PNG")
            return Response(buffer.getvalue(), media_type="image/png", headers=NO_STORE)
        return JSONResponse(describe_prediction(self.segmenter, image, mask, with_overlay), headers=NO_STORE)

    def _busy(self, what: str) -> Response:
        return _error(503, f"{what}; retry later", {"Retry-After": str(self.limits.retry_after)})

    async def receive(self, request: Request) -> bytes | Response:
        """The whole (bounded) body, or the error reply. Bodies are read before the model's queue is
        entered, so a client that sends slowly holds a connection, never a place in the queue."""
        if not self.uploads.enter():
            return self._busy(f"too many uploads are being received ({self.limits.max_uploads})")
        try:
            return await read_upload(request, self.limits)
        except UploadError as e:
            return _error(e.status, e.message, {"Connection": "close"} if e.close else None)
        except ClientDisconnect:
            return Response(status_code=400)  # nobody is listening; nothing to log
        finally:
            self.uploads.leave()

    async def run_upload(self, request: Request, as_mask: bool) -> Response:
        with_overlay = request.query_params.get("overlay", "0").lower() in ("1", "true", "yes")
        data = await self.receive(request)
        if isinstance(data, Response):
            return data
        if not self.admission.enter():
            return self._busy(f"the model queue is full ({self.limits.queue_size} requests)")
        try:
            loop = asyncio.get_running_loop()
            return await loop.run_in_executor(self.model_thread, self.segment, data, as_mask, with_overlay)
        except UploadError as e:
            return _error(e.status, e.message, {"Connection": "close"} if e.close else None)
        except ValueError as e:  # the segmenter refusing an input (sizes and the like)
            return _error(422, str(e))
        finally:
            self.admission.leave()

    async def predict(self, request: Request) -> Response:
        """
        summary: Segment an image; class shares as JSON
        description: Image as the raw body or as a multipart form file. ?overlay=1 adds the overlay as a PNG data URL.
        parameters:
          - {name: overlay, in: query, required: false, schema: {type: string, enum: ["0", "1"]}}
        requestBody:
          content:
            application/octet-stream: {schema: {type: string, format: binary}}
            multipart/form-data: {schema: {type: object, properties: {file: {type: string, format: binary}}}}
        responses:
          200: {description: "width, height, classes [{index, name, color, pixels, share}], overlay"}
          400: {description: empty or malformed upload}
          408: {description: upload stalled}
          413: {description: upload above the size limit}
          415: {description: not an image format Pillow reads}
          422: {description: unusable image (truncated, zero size, too many pixels)}
          503: {description: queue full; see Retry-After}
        """
        return await self.run_upload(request, as_mask=False)

    async def mask(self, request: Request) -> Response:
        """
        summary: Segment an image; the palette-mode PNG of class indices
        description: Same upload and errors as /api/predict.
        requestBody:
          content:
            application/octet-stream: {schema: {type: string, format: binary}}
            multipart/form-data: {schema: {type: object, properties: {file: {type: string, format: binary}}}}
        responses:
          200: {description: PNG, mode P, one index per pixel, content: {image/png: {}}}
        """
        return await self.run_upload(request, as_mask=True)

    async def page(self, request: Request) -> Response:
        """
        summary: The demo page (HTML)
        responses:
          200: {description: HTML page}
        """
        return HTMLResponse(PAGE, headers=NO_STORE)

    async def classes(self, request: Request) -> Response:
        """
        summary: Class names and colours
        responses:
          200: {description: "classes [{index, name, color}]"}
        """
        return JSONResponse({"classes": [{"index": i, "name": n, "color": list(c)} for i, (n, c) in
                                         enumerate(zip(self.segmenter.class_names, self.segmenter.palette))]})

    async def health(self, request: Request) -> Response:
        """
        summary: Liveness, the model and the queue
        responses:
          200: {description: "status ok, queue {active, capacity}, model"}
        """
        return JSONResponse({"status": "ok", "queue": {"active": self.admission.active, "capacity": self.limits.queue_size},
                             "uploads": {"active": self.uploads.active, "capacity": self.limits.max_uploads},
                             "model": self.segmenter.describe()}, headers=NO_STORE)

    async def openapi(self, request: Request) -> Response:
        return JSONResponse(self.schemas.get_schema(routes=self.routes()))

    async def http_error(self, request: Request, exc: Exception) -> Response:
        assert isinstance(exc, HTTPException)
        message = {404: f"no such endpoint: {request.url.path}",
                   405: f"method {request.method} is not allowed on {request.url.path}"}.get(exc.status_code, exc.detail)
        return _error(exc.status_code, message, dict(exc.headers or {}))

    async def server_error(self, request: Request, exc: Exception) -> Response:
        log.exception("ssformer serve: error on %s %s", request.method, request.url.path)
        return _error(500, f"internal server error ({type(exc).__name__}); see the server log")

    def routes(self) -> list[Route]:
        return [Route("/", self.page, methods=["GET"]),
                Route("/index.html", self.page, methods=["GET"], include_in_schema=False),
                Route("/api/predict", self.predict, methods=["POST"]), Route("/api/mask", self.mask, methods=["POST"]),
                Route("/api/classes", self.classes, methods=["GET"]), Route("/health", self.health, methods=["GET"]),
                Route("/openapi.json", self.openapi, methods=["GET"], include_in_schema=False)]

    def app(self) -> Starlette:
        return Starlette(routes=self.routes(),
                         exception_handlers={HTTPException: self.http_error, Exception: self.server_error})


def create_app(segmenter: Segmenter, limits: ServeLimits | None = None) -> Starlette:
    """The ASGI app for ``segmenter`` (run it with uvicorn, or :class:`LocalServer`)."""
    return SegmentationAPI(segmenter, limits).app()


def header_timeout_protocol(seconds: float) -> type[H11Protocol]:
    """uvicorn's h11 protocol, closing connections that do not complete a request's headers within
    ``seconds`` (uvicorn only times out idle keep-alive connections)."""

    class Protocol(H11Protocol):
        _header_timer: asyncio.TimerHandle | None = None

        def _awaiting_headers(self) -> bool:
            return self.conn.their_state is h11.IDLE and (self.cycle is None or self.cycle.response_complete)

        def _arm(self) -> None:
            if self._header_timer is None:
                self._header_timer = self.loop.call_later(seconds, self._expire)

        def _disarm(self) -> None:
            if self._header_timer is not None:
                self._header_timer.cancel()
                self._header_timer = None

        def _expire(self) -> None:
            self._header_timer = None
            if self._awaiting_headers() and not self.transport.is_closing():
                self.transport.close()

        def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
            super().connection_made(transport)
            self._arm()

        def data_received(self, data: bytes) -> None:
            super().data_received(data)
            if self._awaiting_headers():
                self._arm()  # a deadline from the first byte: dripping bytes does not extend it
            else:
                self._disarm()

        def connection_lost(self, exc: Exception | None) -> None:
            self._disarm()
            super().connection_lost(exc)

        def send_400_response(self, msg: str) -> None:
            """Malformed HTTP (h11 refused it): the JSON error every other status gets."""
            body = json.dumps({"error": "malformed HTTP request, refused by the HTTP parser (for example a negative "
                               "or non-numeric Content-Length, or a bad header line)", "status": 400}).encode()
            headers = [(b"content-type", b"application/json"), (b"connection", b"close")]
            for event in (h11.Response(status_code=400, headers=headers, reason=b"Bad Request"), h11.Data(data=body),
                          h11.EndOfMessage()):
                self.transport.write(self.conn.send(event))
            self.transport.close()

    return Protocol


# For uvicorn's command line: ``--http ssformer.inference.serve:HeaderTimeoutProtocol`` (10 s).
HeaderTimeoutProtocol = header_timeout_protocol(ServeLimits.header_timeout)


def _bind(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.create_server((host, port), family=family, reuse_port=False)
    sock.set_inheritable(True)
    return sock


class LocalServer:
    """uvicorn serving ``create_app(segmenter, limits)`` on a socket bound at construction
    (``port=0`` picks a free one: see ``address``), in this thread or a background one."""

    def __init__(self, segmenter: Segmenter, host: str = "127.0.0.1", port: int = 8000,
                 limits: ServeLimits | None = None, log_level: str = "warning", access_log: bool = False):
        limits = limits or ServeLimits()
        self.socket = _bind(host, port)
        self.address: tuple[str, int] = self.socket.getsockname()[:2]
        # No uvicorn limit_concurrency: its 503 is plain text. The app bounds the bodies being received
        # (max_uploads) and, once read, the requests waiting for the model (queue_size); idle
        # connections cost little and time out.
        config = uvicorn.Config(create_app(segmenter, limits), http=header_timeout_protocol(limits.header_timeout),
                                lifespan="off", log_level=log_level, access_log=access_log, timeout_keep_alive=5,
                                timeout_graceful_shutdown=5)
        self.server = uvicorn.Server(config)
        self._thread: threading.Thread | None = None

    def serve_forever(self) -> None:
        self.server.run(sockets=[self.socket])

    def start(self) -> LocalServer:
        """Serve in a daemon thread; returns once it accepts connections."""
        self._thread = threading.Thread(target=self.serve_forever, daemon=True, name="ssformer-serve")
        self._thread.start()
        while not self.server.started and self._thread.is_alive():
            time.sleep(0.01)
        return self

    def stop(self) -> None:
        self.server.should_exit = True
        if self._thread is not None:
            self._thread.join(timeout=30)
        self.socket.close()


def make_server(segmenter: Segmenter, host: str = "127.0.0.1", port: int = 8000,
                max_bytes: int = DEFAULT_MAX_BYTES, **limits: Any) -> LocalServer:
    """A ready :class:`LocalServer` (other :class:`ServeLimits` fields as keywords)."""
    return LocalServer(segmenter, host, port, ServeLimits(max_bytes=max_bytes, **limits))


def app_from_environment() -> Starlette:
    """An app for ``uvicorn --factory ssformer.inference.serve:app_from_environment --workers N``:
    each worker process loads ``SSFORMER_CHECKPOINT`` (optional ``SSFORMER_CONFIG``,
    ``SSFORMER_DEVICE``, ``SSFORMER_DTYPE``, ``SSFORMER_MODE``, ``SSFORMER_MAX_UPLOAD_MB``,
    ``SSFORMER_QUEUE``, ``SSFORMER_MAX_UPLOADS``)."""
    checkpoint = os.environ.get("SSFORMER_CHECKPOINT")
    if not checkpoint:
        raise UserError("set SSFORMER_CHECKPOINT to the model to serve (save_pretrained folder or checkpoint file)")
    segmenter = Segmenter(checkpoint, device=os.environ.get("SSFORMER_DEVICE", "auto"),
                          dtype=os.environ.get("SSFORMER_DTYPE", "auto"),
                          pipeline=PipelineOverrides(mode=os.environ.get("SSFORMER_MODE") or None),
                          config=os.environ.get("SSFORMER_CONFIG") or None)
    limits = ServeLimits(max_bytes=int(float(os.environ.get("SSFORMER_MAX_UPLOAD_MB", "20")) * 1024 * 1024),
                         queue_size=int(os.environ.get("SSFORMER_QUEUE", "8")),
                         max_uploads=int(os.environ.get("SSFORMER_MAX_UPLOADS", "64")))
    return create_app(segmenter, limits)
