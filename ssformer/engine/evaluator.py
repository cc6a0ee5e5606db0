"""Evaluation over a dataset: whole / sliding-window / TTA inference, mIoU from confusion counts.

Each image arrives resized by the test transform (keep-ratio to ``img_scale``) with its label at the
original size; the logits are resized back to the label size before the argmax, as mmseg does.
In distributed runs every process evaluates a strided share of the images and the counts are summed.
"""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset, Subset

from ssformer.data.preprocessing import Preprocessing, from_training_config
from ssformer.distributed import DistInfo
from ssformer.engine.config import EvalSettings
from ssformer.errors import UserError
from ssformer.inference.batch import Progress
from ssformer.inference.runners import Runner
from ssformer.inference.sliding import infer
from ssformer.metrics import IoUMetric
from ssformer.precision import Precision, amp_precision


class SkipUnreadable(Dataset):
    """``dataset`` whose unreadable pairs (a ``ValueError``: bombs, truncated or zero-size files,
    bad labels) become ``{"error": message}`` items, so one bad file does not end an evaluation."""

    def __init__(self, dataset):
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int) -> dict[str, Any]:
        try:
            return self.dataset[index]
        except UserError as e:  # a bad file; any other exception is a bug and shows
            return {"error": str(e)}


def _gather(items: list[str]) -> list[str]:
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        parts: list[list[str] | None] = [None] * torch.distributed.get_world_size()
        torch.distributed.all_gather_object(parts, items)
        return [item for part in parts for item in part or []]
    return items


@torch.no_grad()
def evaluate(model: nn.Module | Runner, dataset, settings: EvalSettings | None = None,
             preprocessing: Preprocessing | None = None, precision: Precision | None = None,
             dist_info: DistInfo | None = None, progress: bool = False, skip_unreadable: bool = False) -> dict[str, Any]:
    """mmseg metrics (fractions) of ``model`` on ``dataset`` (items: dict with image, label; the dataset
    gives ``num_classes`` and ``ignore_index``); ``model`` may be any runner
    (:mod:`ssformer.inference.runners`: an ONNX or OpenVINO file's).

    ``settings`` is the config's ``eval`` section (``tta``, ``num_workers``; default: its defaults);
    ``preprocessing`` how the model is run (mode, crop, stride, TTA scales, flip; default: those of
    ``settings``); ``precision`` the device and autocast (default: fp32 on the CPU).
    ``skip_unreadable``: pairs that cannot be read are left out and listed (messages naming the
    file) under ``"failed"`` instead of stopping the evaluation.
    """
    settings = settings or EvalSettings()
    preprocessing = preprocessing or from_training_config({"eval": asdict(settings)})
    precision = precision or amp_precision("none", "cpu")
    device = precision.device
    dist_info = dist_info or DistInfo()
    was_training = isinstance(model, nn.Module) and model.training
    if isinstance(model, nn.Module):
        model.eval()
    indices = list(range(dist_info.rank, len(dataset), dist_info.world_size))
    source = SkipUnreadable(dataset) if skip_unreadable else dataset
    loader = DataLoader(Subset(source, indices), batch_size=1, shuffle=False, num_workers=settings.num_workers,
                        generator=torch.Generator())
    num_classes = dataset.num_classes
    metric = IoUMetric(num_classes, dataset.ignore_index)
    # tqdm on a terminal, a text line every few seconds elsewhere (as predict's)
    bar = Progress(len(indices), enabled=progress and dist_info.is_main, command="eval")
    failed: list[str] = []
    for batch in loader:
        bar.update(1)
        if "error" in batch:
            failed += batch["error"]
            bar.write(f"eval: skipped: {batch['error'][0]}")
            continue
        image = batch["image"].to(device)
        label = batch["label"]
        with precision.autocast():
            scores = infer(model, image, num_classes, tuple(label.shape[1:]), preprocessing, settings.tta)
        metric.update(scores.float().argmax(dim=1).cpu(), label)
    bar.close()
    metric.all_reduce()
    if was_training:
        model.train()
    results = metric.compute()
    if skip_unreadable:
        results["failed"] = _gather(failed)
    return results
