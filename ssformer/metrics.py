"""Semantic segmentation metrics with mmseg 0.24.1's definitions (``eval_metrics``).

Counts are accumulated over the whole evaluation set per class: intersection I, union U,
predicted area P and labelled area L, ignoring pixels whose label is the ignore index. Then
IoU = I/U, Acc = Recall = I/L, Dice = 2I/(P+L), Precision = I/P, Fscore = 2PR/(P+R) from those
precision/recall values; a zero denominator gives NaN, and the m-values are means over the
classes that are not NaN. aAcc = sum(I) / sum(L). All values are fractions, not percents.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence

import numpy as np
import torch

from ssformer.distributed import all_reduce_sum
from ssformer.errors import UserError

PER_CLASS = ("IoU", "Acc", "Dice", "Fscore", "Precision", "Recall")


class IoUMetric:
    """Accumulates int64 confusion counts; ``compute()`` turns them into the metrics.

    ``counts`` is a (4, K) int64 tensor with rows intersection, union, predicted area, labelled
    area; it is additive across images and processes (see ``all_reduce``).
    """

    def __init__(self, num_classes: int, ignore_index: int = 255) -> None:
        if num_classes < 1:
            raise ValueError(f"num_classes must be >= 1, got {num_classes}")
        self.num_classes = num_classes
        self.ignore_index = ignore_index
        self.counts = torch.zeros(4, num_classes, dtype=torch.int64)

    def reset(self) -> None:
        self.counts.zero_()

    @staticmethod
    def _as_tensor(values: torch.Tensor | np.ndarray, name: str) -> torch.Tensor:
        tensor = values if isinstance(values, torch.Tensor) else torch.from_numpy(np.asarray(values))
        if tensor.dtype.is_floating_point or tensor.dtype == torch.bool or tensor.is_complex():
            raise ValueError(f"{name} must hold integer class ids, got dtype {tensor.dtype}")
        return tensor.detach().reshape(-1).to(torch.int64)

    def update(self, pred: torch.Tensor | np.ndarray, target: torch.Tensor | np.ndarray) -> None:
        """Add one prediction/label pair (any shape, the same for both; e.g. (H, W) or (B, H, W))."""
        if tuple(pred.shape) != tuple(target.shape):
            raise ValueError(f"prediction shape {tuple(pred.shape)} differs from label shape {tuple(target.shape)}")
        pred_t = self._as_tensor(pred, "prediction")  # counted where the prediction is (GPU stays GPU)
        target_t = self._as_tensor(target, "label").to(pred_t.device)
        keep = target_t != self.ignore_index
        pred_t, target_t = pred_t[keep], target_t[keep]
        k = self.num_classes
        for name, values in (("label", target_t), ("prediction", pred_t)):
            if values.numel() and (values.min() < 0 or values.max() >= k):
                bad = torch.unique(values[(values < 0) | (values >= k)])[:20].tolist()
                raise UserError(f"{name} values {bad} are outside [0, {k}) and not the ignore index "
                                 f"{self.ignore_index}")
        area_intersect = torch.bincount(target_t[pred_t == target_t], minlength=k)
        area_pred = torch.bincount(pred_t, minlength=k)
        area_label = torch.bincount(target_t, minlength=k)
        batch = torch.stack([area_intersect, area_pred + area_label - area_intersect, area_pred, area_label])
        self.counts += batch.cpu()

    def all_reduce(self) -> None:
        """Sum the counts over all processes (no-op unless torch.distributed is initialised)."""
        all_reduce_sum(self.counts)  # on the group's device (the GPU under NCCL)

    def compute(self) -> dict:
        """aAcc, mIoU, mAcc, mDice, mFscore, mPrecision, mRecall (floats) and per-class lists."""
        intersect, union, pred, label = self.counts.double().numpy()
        with np.errstate(divide="ignore", invalid="ignore"):
            per_class = {
                "IoU": intersect / union,
                "Acc": intersect / label,
                "Dice": 2 * intersect / (pred + label),
                "Precision": intersect / pred,
                "Recall": intersect / label,
            }
            precision, recall = per_class["Precision"], per_class["Recall"]
            per_class["Fscore"] = 2 * precision * recall / (precision + recall)
            all_acc = intersect.sum() / label.sum()
        results: dict = {"aAcc": float(all_acc)}
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # nanmean of all-NaN is NaN, as wanted
            for name in PER_CLASS:
                results[f"m{name}"] = float(np.nanmean(per_class[name]))
        for name in PER_CLASS:
            results[name] = [float(v) for v in per_class[name]]
        return results


def format_table(results: dict, class_names: Sequence[str] | None = None, summary: bool = True) -> str:
    """A plain-text table: per-class IoU/Acc/Dice/Fscore/Precision/Recall in percent, then the means
    (and, with ``summary``, a line with aAcc, mIoU and mAcc). A value that is 0/0 (a class absent
    from the labels, or never predicted for Precision) shows as ``-`` with a note, not ``nan``."""
    count = len(results["IoU"])
    names = list(class_names) if class_names is not None else [str(i) for i in range(count)]
    if len(names) != count:
        raise ValueError(f"{len(names)} class names for {count} classes")

    def pct(value: float) -> str:
        return "-" if math.isnan(value) else f"{100 * value:.2f}"

    width = max([len("Class"), len("mean"), *(len(n) for n in names)])
    header = f"{'Class':<{width}}  " + "  ".join(f"{c:>9}" for c in PER_CLASS)
    rule = "-" * len(header)
    lines = [header, rule]
    for i, name in enumerate(names):
        lines.append(f"{name:<{width}}  " + "  ".join(f"{pct(results[c][i]):>9}" for c in PER_CLASS))
    lines.append(rule)
    lines.append(f"{'mean':<{width}}  " + "  ".join(f"{pct(results['m' + c]):>9}" for c in PER_CLASS))
    if any(math.isnan(v) for c in PER_CLASS for v in results[c]):
        lines.append("-: undefined, 0/0 (a class with no labelled pixel, or Precision of a class never predicted); "
                     "left out of the mean")
    if summary:
        lines.append(f"aAcc {pct(results['aAcc'])}  mIoU {pct(results['mIoU'])}  mAcc {pct(results['mAcc'])}  "
                     f"(percent)")
    return "\n".join(lines)


def paper_summary(results: dict) -> str:
    """One line with the three numbers CamVid papers (SegNet, ENet) tabulate, in percent.

    Global accuracy is aAcc = sum(I) / sum(L) over all labelled pixels; class-average accuracy is
    mAcc, the mean over classes of Acc = I / L; class IoU is mIoU.
    """
    def pct(value: float) -> str:
        return "-" if math.isnan(value) else f"{100 * value:.2f}"

    return (f"global accuracy (aAcc) {pct(results['aAcc'])}  class-average accuracy (mAcc) {pct(results['mAcc'])}  "
            f"mean IoU (mIoU) {pct(results['mIoU'])}  (percent)")
