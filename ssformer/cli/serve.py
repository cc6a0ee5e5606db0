"""``ssformer serve``: a local web page to try a model on uploaded images."""

from __future__ import annotations

import argparse


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("serve", help="local demo web page (upload an image, see the segmentation)",
                              description="Serves a page where an uploaded image is segmented, plus a JSON API "
                                          "(POST /api/predict, POST /api/mask). Bound to 127.0.0.1 unless --host.")
    p.add_argument("--checkpoint", required=True, help="model folder, checkpoint file or Hub repo id")
    p.add_argument("--config", help="model settings when the checkpoint has none (JSON, folder or variant name)")
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1: this machine only)")
    p.add_argument("--port", type=int, default=8000, help="port (default 8000; 0 picks a free one)")
    p.add_argument("--device", default="auto")
    p.add_argument("--dtype", default="auto", choices=["auto", "fp32", "bf16", "fp16"])
    p.add_argument("--mode", choices=["whole", "slide"])
    p.add_argument("--max-upload-mb", type=float, default=20.0, help="largest accepted upload (default 20 MB)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ssformer.inference.segmenter import Segmenter
    from ssformer.inference.serve import make_server

    if not 0 <= args.port <= 65535:
        raise ValueError(f"--port must be in 0..65535, got {args.port}")
    if args.max_upload_mb <= 0:
        raise ValueError(f"--max-upload-mb must be positive, got {args.max_upload_mb}")
    segmenter = Segmenter(args.checkpoint, device=args.device, dtype=args.dtype, mode=args.mode, config=args.config)
    try:
        server = make_server(segmenter, args.host, args.port, int(args.max_upload_mb * 1024 * 1024))
    except OSError as e:
        raise ValueError(f"cannot listen on {args.host}:{args.port}: {e.strerror or e}") from e
    host, port = server.server_address[:2]
    print(f"ssformer serve: http://{host}:{port}/  ({segmenter.num_classes} classes; Ctrl-C stops)", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
    return 0
