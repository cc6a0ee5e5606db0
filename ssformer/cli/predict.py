"""``ssformer predict``: class masks, overlays and a legend for images, folders and globs."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "predict", help="segment images: palette PNG masks, overlays, a legend",
        description="Writes for every input OUT/<name>.png (palette-mode PNG of class indices), "
                    "OUT/<name>_overlay.jpg, optionally OUT/<name>_proba.npy, and OUT/legend.png. "
                    "Names mirror the inputs; paths under a folder input are kept.")
    p.add_argument("inputs", nargs="+", metavar="INPUT", help="image files, folders (searched recursively) or globs")
    p.add_argument("--checkpoint", required=True, help="save_pretrained folder or checkpoint file")
    p.add_argument("--config", help="model settings: JSON file, save_pretrained folder or variant name "
                                    "(default: from the checkpoint)")
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--device", default="auto", help="auto (default), cpu, cuda, cuda:1, ...")
    p.add_argument("--dtype", default="auto", choices=["auto", "fp32", "bf16", "fp16"],
                   help="auto: fp32 on CPU, bf16 (or fp16) on GPU")
    p.add_argument("--mode", choices=["whole", "slide"], help="default: the checkpoint's, else whole")
    p.add_argument("--crop", type=int, nargs=2, metavar=("H", "W"), help="slide window (default 512 512)")
    p.add_argument("--stride", type=int, nargs=2, metavar=("H", "W"), help="slide stride (default 341 341)")
    p.add_argument("--img-scale", type=int, nargs=2, metavar=("LONG", "SHORT"),
                   help="keep-ratio test scale (default: the checkpoint's, else 2048 512)")
    p.add_argument("--original-size", action="store_true", help="no test-scale resize: feed images as they are")
    p.add_argument("--tta", action="store_true", help="average over 6 scales x flip (slow)")
    p.add_argument("--batch-size", type=int, default=4)
    p.add_argument("--alpha", type=float, default=0.5, help="overlay colour weight (default 0.5)")
    p.add_argument("--save-proba", action="store_true", help="also write (K, H, W) float16 probabilities as .npy")
    p.add_argument("--no-overlay", action="store_true")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from ssformer.inference.files import expand_inputs
    from ssformer.inference.images import load_rgb
    from ssformer.inference.segmenter import Segmenter
    from ssformer.inference.visualize import class_shares
    from ssformer.utils import atomic_write

    if args.batch_size < 1:
        raise ValueError(f"--batch-size must be >= 1, got {args.batch_size}")
    if not 0 <= args.alpha <= 1:
        raise ValueError(f"--alpha must be in [0, 1], got {args.alpha}")
    items = expand_inputs(args.inputs)
    img_scale = None if args.original_size else (tuple(args.img_scale) if args.img_scale else "auto")
    segmenter = Segmenter(args.checkpoint, device=args.device, dtype=args.dtype, mode=args.mode, crop=args.crop,
                          stride=args.stride, tta=args.tta, img_scale=img_scale, config=args.config)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    with atomic_write(out / "legend.png") as tmp:
        segmenter.legend().save(tmp, format="PNG")

    failures: list[tuple[Path, str]] = []
    summary: dict[str, dict] = {}

    def fail(item, error: Exception) -> None:
        failures.append((item.path, str(error)))
        progress.write(f"ssformer predict: skipped {item.path}: {error}", file=sys.stderr)

    def write(item, image, mask: np.ndarray, proba: np.ndarray | None) -> None:
        base = out / item.relative
        with atomic_write(base.parent / (base.name + ".png")) as tmp:
            segmenter.mask_image(mask).save(tmp, format="PNG")
        if not args.no_overlay:
            with atomic_write(base.parent / (base.name + "_overlay.jpg")) as tmp:
                segmenter.overlay(image, mask, args.alpha).save(tmp, format="JPEG", quality=90)
        if proba is not None:
            with atomic_write(base.parent / (base.name + "_proba.npy")) as tmp:
                with open(tmp, "wb") as f:
                    np.save(f, proba.astype(np.float16))
        shares = class_shares(mask, segmenter.num_classes)
        summary[str(item.relative)] = {
            "input": str(item.path), "height": int(mask.shape[0]), "width": int(mask.shape[1]),
            "classes": {segmenter.class_names[c]: round(float(shares[c]), 6) for c in np.flatnonzero(shares)}}

    def predict(images: list) -> tuple[list, list]:
        if args.save_proba:
            probas = segmenter.predict_proba_batch(images, args.batch_size)
            return probas, [p.argmax(axis=0) for p in probas]
        return [None] * len(images), segmenter.predict_batch(images, args.batch_size)

    # Every input is tried; a file that cannot be read, predicted or written is reported with its
    # path and listed in predictions.json, and the others carry on (exit code 1 at the end).
    progress = tqdm(total=len(items), unit="img", desc="predict", file=sys.stderr, disable=None)
    try:
        for first in range(0, len(items), args.batch_size):
            chunk, images = [], []
            for item in items[first:first + args.batch_size]:
                try:
                    images.append(load_rgb(item.path))
                    chunk.append(item)
                except (ValueError, OSError) as e:  # ImageError is a ValueError
                    fail(item, e)
                    progress.update(1)
            if not chunk:
                continue
            try:
                probas, masks = predict(images)
                results = list(zip(chunk, images, probas, masks))
            except (ValueError, RuntimeError, MemoryError):  # find the image(s) at fault, one at a time
                results = []
                for item, image in zip(chunk, images):
                    try:
                        (proba,), (mask,) = predict([image])
                        results.append((item, image, proba, mask))
                    except (ValueError, RuntimeError, MemoryError) as e:
                        fail(item, e)
                        progress.update(1)
            del images
            for item, image, proba, mask in results:
                try:
                    write(item, image, mask, proba)
                except (ValueError, OSError) as e:  # e.g. wider than JPEG allows
                    fail(item, e)
                progress.update(1)
            del results
    finally:
        progress.close()
        with atomic_write(out / "predictions.json") as tmp:
            tmp.write_text(json.dumps({"model": segmenter.describe(), "images": summary,
                                       "failed": {str(p): msg for p, msg in failures}}, indent=2) + "\n")
    print(f"ssformer predict: wrote {len(summary)} masks to {out}")
    if failures:
        print(f"ssformer predict: {len(failures)} of {len(items)} inputs failed:", file=sys.stderr)
        for path, message in failures:
            print(f"  {path}: {message}", file=sys.stderr)
        return 1
    return 0
