"""Make tests/fixtures/metrics_*.npz: inputs and mmseg 0.24.1 ``eval_metrics`` outputs.

Run with the official interpreter (made by ../shared/reference/setup_official.sh, as in docs/model.md):
    /tmp/ssformer-official/bin/python tools/make_metric_fixtures.py
Each file holds pred_<i>/label_<i> arrays, num_classes, ignore_index, and mmseg's aAcc and
per-class IoU/Acc/Dice/Fscore/Precision/Recall, plus the nan-means mmseg's dataset ``evaluate``
reports (mIoU, ...). The cases cover ignored pixels, classes absent from the labels, classes
absent from the predictions, classes absent from both, and classes present in both without overlap.
"""

from __future__ import annotations

import os
import sys
import warnings
from pathlib import Path

import numpy as np

REFERENCE = Path(os.environ.get("SSFORMER_SHARED", Path(__file__).resolve().parents[2] / "shared")) / "reference"
sys.path.insert(0, str(REFERENCE))
import official  # noqa: E402,F401  (stubs mmcv.ops/torchvision so mmseg imports)
from mmseg.core.evaluation.metrics import eval_metrics  # noqa: E402

OUT = Path(__file__).resolve().parents[1] / "tests" / "fixtures"
PER_CLASS = ("IoU", "Acc", "Dice", "Fscore", "Precision", "Recall")


def handmade_case(rng: np.random.Generator):
    """6 classes: 3 in neither, 4 only predicted, 5 only labelled, 1 and 2 labelled/predicted
    but never on the same pixel; a quarter of the pixels ignored."""
    preds, labels = [], []
    for shape in [(12, 17), (9, 9), (20, 5)]:
        label = rng.choice([0, 1, 5], size=shape).astype(np.uint8)
        pred = label.copy()
        pred[label == 5] = rng.choice([0, 4], size=int((label == 5).sum()))
        pred[label == 1] = 2  # class 1 never predicted where it is; class 2 predicted, never labelled...
        noise = rng.random(shape) < 0.2
        pred[noise] = rng.choice([0, 4], size=int(noise.sum()))
        label[rng.random(shape) < 0.25] = 255
        preds.append(pred)
        labels.append(label)
    labels[1][0, :3] = 2  # ...except here, where the prediction is not 2 (never 2 on a label-2 pixel)
    preds[1][0, :3] = 0
    return preds, labels, 6, 255


def random_case(rng: np.random.Generator, num_classes: int, ignore_index: int, shapes):
    preds, labels = [], []
    for shape in shapes:
        label = rng.integers(0, num_classes, size=shape)
        pred = np.where(rng.random(shape) < 0.6, label, rng.integers(0, num_classes, size=shape))
        label[rng.random(shape) < 0.1] = ignore_index
        preds.append(pred.astype(np.int64))
        labels.append(label.astype(np.int64))
    return preds, labels, num_classes, ignore_index


def save(name: str, preds, labels, num_classes: int, ignore_index: int) -> None:
    result = eval_metrics(preds, labels, num_classes, ignore_index, metrics=["mIoU", "mDice", "mFscore"])
    arrays = {f"pred_{i}": p for i, p in enumerate(preds)} | {f"label_{i}": l for i, l in enumerate(labels)}
    arrays |= {"num_classes": np.array(num_classes), "ignore_index": np.array(ignore_index),
               "aAcc": np.array(result["aAcc"], dtype=np.float64)}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        for key in PER_CLASS:
            arrays[key] = np.asarray(result[key], dtype=np.float64)
            arrays["m" + key] = np.array(np.nanmean(result[key]), dtype=np.float64)
    np.savez_compressed(OUT / f"metrics_{name}.npz", **arrays)
    print(name, {k: np.round(v, 4).tolist() for k, v in arrays.items() if k[0] in "maIDFPR"})


def main() -> None:
    rng = np.random.default_rng(2024)
    save("handmade", *handmade_case(rng))
    save("random19", *random_case(rng, 19, 255, [(32, 48), (40, 24), (17, 31)]))
    save("ignore0", *random_case(rng, 4, 0, [(10, 10), (7, 13)]))


if __name__ == "__main__":
    main()
