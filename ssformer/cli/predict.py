"""``ssformer predict``: class masks, overlays and a legend for images, folders and globs."""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
from PIL import Image
from torch.utils.data import Dataset

from ssformer.inference.files import InputImage
from ssformer.inference.images import load_rgb

PROGRESS_SECONDS = 30.0  # a text line this often when stderr is not a terminal


class DecodeImages(Dataset):
    """``(index, RGB image or None, error or None)`` per input, decoded in DataLoader workers."""

    def __init__(self, items: list[InputImage]):
        self.items = items

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, index: int):
        try:
            return index, load_rgb(self.items[index].path), None
        except (ValueError, OSError) as e:  # ImageError is a ValueError
            return index, None, str(e)


def _as_is(sample):
    return sample


class Progress:
    """tqdm on a terminal; otherwise a line every ``PROGRESS_SECONDS`` and at the end (logs, CI)."""

    def __init__(self, total: int, enabled: bool):
        from tqdm import tqdm

        self.total, self.done, self.start, self.last = total, 0, time.monotonic(), time.monotonic()
        self.text = enabled and not sys.stderr.isatty()
        self.bar = tqdm(total=total, unit="img", desc="predict", file=sys.stderr, disable=not enabled or self.text)

    def write(self, line: str) -> None:
        self.bar.write(line, file=sys.stderr)

    def update(self, count: int = 1) -> None:
        self.bar.update(count)
        self.done += count
        now = time.monotonic()
        if self.text and (now - self.last >= PROGRESS_SECONDS or self.done == self.total):
            self.last = now
            rate = self.done / max(now - self.start, 1e-9)
            print(f"ssformer predict: {self.done}/{self.total} images ({rate:.2f}/s)", file=sys.stderr, flush=True)

    def close(self) -> None:
        self.bar.close()


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "predict", help="segment images: palette PNG masks, overlays, a legend",
        description="Writes for every input OUT/<name>.png (palette-mode PNG of class indices), "
                    "OUT/<name>_overlay.jpg, optionally OUT/<name>_proba.npy, and OUT/legend.png. "
                    "Names mirror the inputs; paths under a folder input are kept. Images whose outputs exist "
                    "are skipped (--overwrite redoes them); under torchrun each process takes a share of the "
                    "images and rank 0 writes one predictions.json. Exits 1 if any image failed.")
    p.add_argument("inputs", nargs="+", metavar="INPUT", help="image files, folders (searched recursively) or globs")
    p.add_argument("--checkpoint", required=True, help="model folder, checkpoint file or Hub repo id")
    p.add_argument("--config", help="model settings: JSON file, save_pretrained folder or variant name "
                                    "(default: from the checkpoint)")
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--device", default="auto", help="auto (default), cpu, cuda, cuda:1, ...")
    p.add_argument("--dtype", default="auto", choices=["auto", "fp32", "bf16", "fp16"],
                   help="auto: fp32 on CPU, bf16 (or fp16) on GPU")
    p.add_argument("--mode", choices=["whole", "slide"], help="default: the model's")
    p.add_argument("--crop", type=int, nargs=2, metavar=("H", "W"), help="slide window (default: the model's)")
    p.add_argument("--stride", type=int, nargs=2, metavar=("H", "W"), help="slide stride (default: the model's)")
    p.add_argument("--img-scale", type=int, nargs=2, metavar=("LONG", "SHORT"),
                   help="keep-ratio test scale (default: the model's)")
    p.add_argument("--original-size", action="store_true", help="no test-scale resize: feed images as they are")
    p.add_argument("--tta", action="store_true", help="average over the model's TTA scales x flip (slow)")
    p.add_argument("--batch-size", type=int, default=4)
    p.add_argument("--alpha", type=float, default=0.5, help="overlay colour weight (default 0.5)")
    p.add_argument("--save-proba", action="store_true", help="also write (K, H, W) float16 probabilities as .npy")
    p.add_argument("--no-overlay", action="store_true")
    p.add_argument("--num-workers", type=int, default=2, help="processes decoding images (default 2; 0: this one)")
    p.add_argument("--overwrite", action="store_true",
                   help="redo images whose outputs already exist (default: skip them, so a stopped run resumes)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import torch
    from torch.utils.data import DataLoader

    from ssformer.engine.distributed import init_distributed
    from ssformer.inference.files import expand_inputs
    from ssformer.inference.segmenter import Segmenter
    from ssformer.inference.visualize import class_shares
    from ssformer.utils import atomic_write

    if args.batch_size < 1:
        raise ValueError(f"--batch-size must be >= 1, got {args.batch_size}")
    if args.num_workers < 0:
        raise ValueError(f"--num-workers must be >= 0, got {args.num_workers}")
    if not 0 <= args.alpha <= 1:
        raise ValueError(f"--alpha must be in [0, 1], got {args.alpha}")
    items = expand_inputs(args.inputs)
    cuda = args.device.startswith("cuda") or (args.device == "auto" and torch.cuda.is_available())
    dist_info = init_distributed("cuda" if cuda else "cpu")  # under torchrun: one share of the files per process
    device = f"cuda:{dist_info.local_rank}" if cuda and dist_info.enabled and args.device in ("auto", "cuda") \
        else args.device
    img_scale = None if args.original_size else (tuple(args.img_scale) if args.img_scale else "auto")
    segmenter = Segmenter(args.checkpoint, device=device, dtype=args.dtype, mode=args.mode, crop=args.crop,
                          stride=args.stride, tta=args.tta, img_scale=img_scale, config=args.config)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    if dist_info.is_main:
        with atomic_write(out / "legend.png") as tmp:
            segmenter.legend().save(tmp, format="PNG")

    failures: dict[str, str] = {}
    summary: dict[str, dict] = {}

    def outputs(item: InputImage) -> list[Path]:
        base = out / item.relative
        names = [".png"] + ([] if args.no_overlay else ["_overlay.jpg"]) + (["_proba.npy"] if args.save_proba else [])
        return [base.parent / (base.name + suffix) for suffix in names]

    def record(item: InputImage, mask: np.ndarray) -> None:
        shares = class_shares(mask, segmenter.num_classes)
        summary[str(item.relative)] = {
            "input": str(item.path), "height": int(mask.shape[0]), "width": int(mask.shape[1]),
            "classes": {segmenter.class_names[c]: round(float(shares[c]), 6) for c in np.flatnonzero(shares)}}

    def fail(item: InputImage, error: Exception | str) -> None:
        failures[str(item.path)] = str(error)
        progress.write(f"ssformer predict: skipped {item.path}: {error}")

    def write(item: InputImage, image, mask: np.ndarray, proba: np.ndarray | None) -> None:
        paths = outputs(item)
        with atomic_write(paths[0]) as tmp:
            segmenter.mask_image(mask).save(tmp, format="PNG")
        if not args.no_overlay:
            with atomic_write(paths[1]) as tmp:
                segmenter.overlay(image, mask, args.alpha).save(tmp, format="JPEG", quality=90)
        if proba is not None:
            with atomic_write(paths[-1]) as tmp, open(tmp, "wb") as f:
                np.save(f, proba.astype(np.float16))
        record(item, mask)

    def predict(images: list) -> tuple[list, list]:
        if args.save_proba:
            probas = segmenter.predict_proba_batch(images, args.batch_size)
            return probas, [p.argmax(axis=0) for p in probas]
        return [None] * len(images), segmenter.predict_batch(images, args.batch_size)

    def run_chunk(chunk: list[tuple[InputImage, object]]) -> None:
        items_, images = [c[0] for c in chunk], [c[1] for c in chunk]
        try:
            probas, masks = predict(images)
            results = list(zip(items_, images, probas, masks))
        except (ValueError, RuntimeError, MemoryError):  # find the image(s) at fault, one at a time
            results = []
            for item, image in chunk:
                try:
                    (proba,), (mask,) = predict([image])
                    results.append((item, image, proba, mask))
                except (ValueError, RuntimeError, MemoryError) as e:
                    fail(item, e)
                    progress.update(1)
        for item, image, proba, mask in results:
            try:
                write(item, image, mask, proba)
            except (ValueError, OSError) as e:  # e.g. wider than JPEG allows
                fail(item, e)
            progress.update(1)

    # Every input is tried; a file that cannot be read, predicted or written is reported with its
    # path and listed in predictions.json, and the others carry on (exit code 1 at the end).
    mine = items[dist_info.rank::dist_info.world_size]
    progress = Progress(len(mine), enabled=dist_info.is_main)
    todo: list[InputImage] = []
    for item in mine:
        if not args.overwrite and all(path.is_file() for path in outputs(item)):
            try:  # done by an earlier run: keep its entry
                with Image.open(outputs(item)[0]) as mask_file:
                    record(item, np.asarray(mask_file).astype(np.int64))
                progress.update(1)
                continue
            except (OSError, ValueError):
                pass  # an unreadable earlier mask: redo it
        todo.append(item)
    skipped = len(mine) - len(todo)
    finished = False
    try:
        loader = DataLoader(DecodeImages(todo), batch_size=None, shuffle=False, num_workers=args.num_workers,
                            collate_fn=_as_is)
        chunk: list[tuple[InputImage, object]] = []
        for index, image, error in loader:
            if error is not None:
                fail(todo[index], error)
                progress.update(1)
                continue
            chunk.append((todo[index], image))
            if len(chunk) == args.batch_size:
                run_chunk(chunk)
                chunk = []
        if chunk:
            run_chunk(chunk)
        finished = True
    finally:
        progress.close()
        if dist_info.enabled and finished:
            parts: list = [None] * dist_info.world_size
            torch.distributed.all_gather_object(parts, (summary, failures, skipped))
            summary, failures, skipped = {}, {}, 0
            for part_summary, part_failures, part_skipped in parts:
                summary.update(part_summary)
                failures.update(part_failures)
                skipped += part_skipped
        order = {str(item.relative): i for i, item in enumerate(items)}
        name = "predictions.json" if dist_info.is_main and (finished or not dist_info.enabled) \
            else f"predictions.rank{dist_info.rank}.json"  # a stopped process of a sharded run keeps its part
        if finished is False or dist_info.is_main:
            with atomic_write(out / name) as tmp:
                tmp.write_text(json.dumps({"model": segmenter.describe(),
                                           "images": dict(sorted(summary.items(), key=lambda kv: order[kv[0]])),
                                           "failed": failures}, indent=2) + "\n")
    if dist_info.is_main:
        note = f" ({skipped} already there, kept; --overwrite redoes them)" if skipped else ""
        print(f"ssformer predict: {len(summary)} masks in {out}{note}")
        if failures:
            print(f"ssformer predict: {len(failures)} of {len(items)} inputs failed:", file=sys.stderr)
            for path, message in failures.items():
                print(f"  {path}: {message}", file=sys.stderr)
    return 1 if failures else 0
