"""Predicting many images into a folder: masks, overlays, probabilities and ``predictions.json``.

Every input is tried; a file that cannot be read, predicted or written is reported with its path
and listed in ``predictions.json``, and the others carry on. Images whose outputs exist are kept
(a stopped run resumes) unless ``overwrite``. Images are decoded in DataLoader workers; under
torchrun each process takes every N-th input and rank 0 writes one merged ``predictions.json``
(a process of a sharded run that stops early keeps its part as ``predictions.rankR.json``).
"""

from __future__ import annotations

import functools
import json
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch.utils.data import DataLoader, Dataset

from ssformer.distributed import DistInfo
from ssformer.inference.files import InputImage, refuse_outputs_over_inputs
from ssformer.inference.images import load_rgb
from ssformer.inference.segmenter import Segmenter
from ssformer.inference.visualize import class_shares
from ssformer.utils import atomic_write, die_with_parent

PROGRESS_SECONDS = 30.0  # a text line this often when stderr is not a terminal
PREDICT_ERRORS = (ValueError, RuntimeError, MemoryError)  # what one image can raise in the model


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

    def __init__(self, total: int, enabled: bool, command: str = "predict"):
        from tqdm import tqdm

        self.total, self.done, self.start, self.last = total, 0, time.monotonic(), time.monotonic()
        self.command = command
        self.text = enabled and not sys.stderr.isatty()
        self.bar = tqdm(total=total, unit="img", desc=command, file=sys.stderr, disable=not enabled or self.text)

    def write(self, line: str) -> None:
        self.bar.write(line, file=sys.stderr)

    def update(self, count: int = 1) -> None:
        self.bar.update(count)
        self.done += count
        now = time.monotonic()
        if self.text and (now - self.last >= PROGRESS_SECONDS or self.done == self.total):
            self.last = now
            rate = self.done / max(now - self.start, 1e-9)
            print(f"ssformer {self.command}: {self.done}/{self.total} images ({rate:.2f}/s)", file=sys.stderr,
                  flush=True)

    def close(self) -> None:
        self.bar.close()


@dataclass
class Outputs:
    """What to write per image."""

    overlay: bool = True
    proba: bool = False
    alpha: float = 0.5


def item_paths(out: Path, item: InputImage, outputs: Outputs) -> list[Path]:
    """The files written for one image: mask, then overlay and probabilities when asked for."""
    base = out / item.relative
    names = [".png"] + (["_overlay.jpg"] if outputs.overlay else []) + (["_proba.npy"] if outputs.proba else [])
    return [base.parent / (base.name + suffix) for suffix in names]


def all_paths(out: Path, items: list[InputImage], outputs: Outputs, world_size: int = 1) -> list[Path]:
    """Every file a run over ``items`` may write: per-image outputs, the legend and the summaries."""
    shared = [out / "legend.png", out / "predictions.json"] + \
        [out / f"predictions.rank{rank}.json" for rank in range(world_size)]
    return shared + [path for item in items for path in item_paths(out, item, outputs)]


class FolderPredictor:
    """Writes ``OUT/<name>.png`` (palette mask), ``OUT/<name>_overlay.jpg``, optionally
    ``OUT/<name>_proba.npy``, ``OUT/legend.png`` and ``OUT/predictions.json`` for a list of inputs."""

    def __init__(self, segmenter: Segmenter, out: str | Path, outputs: Outputs, batch_size: int = 4,
                 num_workers: int = 2, overwrite: bool = False, dist_info: DistInfo | None = None):
        self.segmenter, self.out, self.outputs = segmenter, Path(out), outputs
        self.batch_size, self.num_workers, self.overwrite = batch_size, num_workers, overwrite
        self.dist_info = dist_info or DistInfo()
        self.failures: dict[str, str] = {}
        self.summary: dict[str, dict] = {}
        self.skipped = 0
        self.progress: Progress | None = None

    # --- one image ---------------------------------------------------------------------------------
    def paths(self, item: InputImage) -> list[Path]:
        return item_paths(self.out, item, self.outputs)

    def record(self, item: InputImage, mask: np.ndarray) -> None:
        shares = class_shares(mask, self.segmenter.num_classes)
        names = self.segmenter.class_names
        self.summary[str(item.relative)] = {
            "input": str(item.path), "height": int(mask.shape[0]), "width": int(mask.shape[1]),
            "classes": {names[c]: round(float(shares[c]), 6) for c in np.flatnonzero(shares)}}

    def fail(self, item: InputImage, error: Exception | str) -> None:
        self.failures[str(item.path)] = str(error)
        self.progress.write(f"ssformer predict: skipped {item.path}: {error}")
        self.progress.update(1)

    def write(self, item: InputImage, image, mask: np.ndarray, proba: np.ndarray | None) -> None:
        paths = self.paths(item)
        with atomic_write(paths[0]) as tmp:
            self.segmenter.mask_image(mask).save(tmp, format="PNG")
        if self.outputs.overlay:
            with atomic_write(paths[1]) as tmp:
                self.segmenter.overlay(image, mask, self.outputs.alpha).save(tmp, format="JPEG", quality=90)
        if proba is not None:
            with atomic_write(paths[-1]) as tmp, open(tmp, "wb") as f:
                np.save(f, proba.astype(np.float16))
        self.record(item, mask)

    def _kept(self, item: InputImage) -> bool:
        """Whether an earlier run wrote every output of ``item`` (its entry is then read back)."""
        if self.overwrite or not all(path.is_file() for path in self.paths(item)):
            return False
        try:
            with Image.open(self.paths(item)[0]) as mask_file:
                self.record(item, np.asarray(mask_file).astype(np.int64))
            return True
        except (OSError, ValueError):
            return False  # an unreadable earlier mask: redo it

    # --- batches -----------------------------------------------------------------------------------
    def _predict(self, images: list) -> tuple[list, list]:
        if self.outputs.proba:
            probas = self.segmenter.predict_proba_batch(images, self.batch_size)
            return probas, [p.argmax(axis=0) for p in probas]
        return [None] * len(images), self.segmenter.predict_batch(images, self.batch_size)

    def _run_chunk(self, chunk: list[tuple[InputImage, object]]) -> None:
        try:
            probas, masks = self._predict([image for _, image in chunk])
            results = [(item, image, proba, mask) for (item, image), proba, mask in zip(chunk, probas, masks)]
        except PREDICT_ERRORS:  # find the image(s) at fault, one at a time
            results = []
            for item, image in chunk:
                try:
                    (proba,), (mask,) = self._predict([image])
                    results.append((item, image, proba, mask))
                except PREDICT_ERRORS as e:
                    self.fail(item, e)
        for item, image, proba, mask in results:
            try:
                self.write(item, image, mask, proba)
                self.progress.update(1)
            except (ValueError, OSError) as e:  # e.g. wider than JPEG allows
                self.fail(item, e)

    def _predict_all(self, todo: list[InputImage]) -> None:
        loader = DataLoader(DecodeImages(todo), batch_size=None, shuffle=False, num_workers=self.num_workers,
                            collate_fn=_as_is, worker_init_fn=functools.partial(die_with_parent, os.getpid()))
        chunk: list[tuple[InputImage, object]] = []
        for index, image, error in loader:
            if error is not None:
                self.fail(todo[index], error)
                continue
            chunk.append((todo[index], image))
            if len(chunk) == self.batch_size:
                self._run_chunk(chunk)
                chunk = []
        if chunk:
            self._run_chunk(chunk)

    # --- the whole folder --------------------------------------------------------------------------
    def run(self, items: list[InputImage]) -> None:
        """Predict this process's share of ``items``; ``predictions.json`` is written even on an interrupt."""
        dist = self.dist_info
        refuse_outputs_over_inputs([], items, self.out, all_paths(self.out, items, self.outputs, dist.world_size))
        self.out.mkdir(parents=True, exist_ok=True)
        if dist.is_main:
            with atomic_write(self.out / "legend.png") as tmp:
                self.segmenter.legend().save(tmp, format="PNG")
        mine = items[dist.rank::dist.world_size]
        self.progress = Progress(len(mine), enabled=dist.is_main)
        todo = []
        for item in mine:
            if self._kept(item):
                self.progress.update(1)
            else:
                todo.append(item)
        self.skipped = len(mine) - len(todo)
        finished = False
        try:
            self._predict_all(todo)
            finished = True
        finally:
            self.progress.close()
            self._write_summary(items, finished)

    def _write_summary(self, items: list[InputImage], finished: bool) -> None:
        dist = self.dist_info
        if dist.enabled and finished:
            parts: list = [None] * dist.world_size
            torch.distributed.all_gather_object(parts, (self.summary, self.failures, self.skipped))
            self.summary, self.failures, self.skipped = {}, {}, 0
            for part_summary, part_failures, part_skipped in parts:
                self.summary.update(part_summary)
                self.failures.update(part_failures)
                self.skipped += part_skipped
        order = {str(item.relative): i for i, item in enumerate(items)}
        name = "predictions.json" if dist.is_main and (finished or not dist.enabled) \
            else f"predictions.rank{dist.rank}.json"  # a stopped process of a sharded run keeps its part
        if finished and not dist.is_main:
            return
        with atomic_write(self.out / name) as tmp:
            tmp.write_text(json.dumps({"model": self.segmenter.describe(),
                                       "images": dict(sorted(self.summary.items(), key=lambda kv: order[kv[0]])),
                                       "failed": self.failures}, indent=2) + "\n")
