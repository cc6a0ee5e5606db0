"""``ssformer serve``: a local web page and JSON API to try a model on uploaded images."""

from __future__ import annotations

import argparse
import importlib.util

from ssformer.errors import UserError

SERVE_PACKAGES = {"starlette": "starlette", "uvicorn": "uvicorn", "multipart": "python-multipart"}


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("serve", help="local demo web page (upload an image, see the segmentation)",
                              description="Serves a page where an uploaded image is segmented, plus a JSON API "
                                          "(POST /api/predict, POST /api/mask, GET /health, GET /openapi.json). "
                                          "Bound to 127.0.0.1 unless --host. Needs the serve extra: "
                                          "pip install 'ssformer[serve]'.")
    p.add_argument("--checkpoint", required=True,
                   help="model folder, checkpoint file, Hub repo id, or an exported .onnx / OpenVINO .xml")
    p.add_argument("--config", help="model settings when the checkpoint has none (JSON, folder or variant name)")
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1: this machine only)")
    p.add_argument("--port", type=int, default=8000, help="port (default 8000; 0 picks a free one)")
    p.add_argument("--device", default="auto")
    p.add_argument("--dtype", default="auto", choices=["auto", "fp32", "bf16", "fp16"])
    p.add_argument("--mode", choices=["whole", "slide"])
    p.add_argument("--max-upload-mb", type=float, default=20.0, help="largest accepted upload (default 20 MB)")
    p.add_argument("--queue", type=int, default=8,
                   help="requests admitted at once, running or waiting for the model (default 8); more get 503")
    p.add_argument("--max-uploads", type=int, default=64,
                   help="uploads received at once (default 64; each holds up to --max-upload-mb); more get 503")
    p.add_argument("--access-log", action="store_true", help="log every request (uvicorn's access log)")
    p.set_defaults(func=run)


def missing_serve_packages() -> list[str]:
    return [package for module, package in SERVE_PACKAGES.items() if importlib.util.find_spec(module) is None]


def run(args: argparse.Namespace) -> int:
    missing = missing_serve_packages()
    if missing:
        raise UserError(f"serving needs the serve extra: pip install 'ssformer[serve]' (missing: {', '.join(missing)})")
    from ssformer.inference.segmenter import PipelineOverrides, Segmenter
    from ssformer.inference.serve import LocalServer, ServeLimits

    if not 0 <= args.port <= 65535:
        raise UserError(f"--port must be in 0..65535, got {args.port}")
    if args.max_upload_mb <= 0:
        raise UserError(f"--max-upload-mb must be positive, got {args.max_upload_mb}")
    if args.queue < 1:
        raise UserError(f"--queue must be >= 1, got {args.queue}")
    if args.max_uploads < 1:
        raise UserError(f"--max-uploads must be >= 1, got {args.max_uploads}")
    segmenter = Segmenter(args.checkpoint, device=args.device, dtype=args.dtype,
                          pipeline=PipelineOverrides(mode=args.mode), config=args.config)
    limits = ServeLimits(max_bytes=int(args.max_upload_mb * 1024 * 1024), queue_size=args.queue,
                         max_uploads=args.max_uploads)
    try:
        server = LocalServer(segmenter, args.host, args.port, limits, log_level="info", access_log=args.access_log)
    except OSError as e:
        raise UserError(f"cannot listen on {args.host}:{args.port}: {e.strerror or e}") from e
    host, port = server.address
    print(f"ssformer serve: http://{host}:{port}/  ({segmenter.num_classes} classes; Ctrl-C stops)", flush=True)
    try:
        server.serve_forever()  # uvicorn handles Ctrl-C / SIGTERM: finishes open requests, then returns
    finally:
        server.socket.close()
    return 0
