"""Evaluation over a dataset: whole / sliding-window / TTA inference, mIoU from confusion counts.

Each image arrives resized by the test transform (keep-ratio to ``img_scale``) with its label at the
original size; the logits are resized back to the label size before the argmax, as mmseg does.
In distributed runs every process evaluates a strided share of the images and the counts are summed.
"""

from __future__ import annotations

import contextlib
from typing import Any

import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset, Subset
from tqdm import tqdm

from ssformer.devices import cuda_bf16_native, resolve_amp
from ssformer.distributed import DistInfo
from ssformer.inference.runners import Runner
from ssformer.inference.sliding import infer
from ssformer.metrics import IoUMetric


def check_amp(device: torch.device, amp: str) -> None:
    """Refuse autocast modes the device cannot run natively (fp16 off CUDA, emulated bf16 GPUs)."""
    if amp == "fp16" and device.type != "cuda":
        raise ValueError("train.amp=fp16 needs a CUDA device; use train.amp=auto or bf16 on CPU")
    if amp == "bf16" and device.type == "cuda" and not cuda_bf16_native(device):
        major, minor = torch.cuda.get_device_capability(device)
        raise ValueError(f"train.amp=bf16: {torch.cuda.get_device_name(device)} (compute capability "
                         f"{major}.{minor}) has no native bfloat16 (it needs 8.0 or newer, Ampere on); "
                         f"use train.amp=fp16")


def autocast_context(device: torch.device, amp: str):
    """bf16/fp16 autocast for ``amp`` in {"bf16", "fp16"} ("auto": what the device runs natively),
    nothing for "none"."""
    amp = resolve_amp(amp, device)
    if amp == "none":
        return contextlib.nullcontext()
    check_amp(device, amp)
    return torch.autocast(device.type, dtype=torch.bfloat16 if amp == "bf16" else torch.float16)


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
        except ValueError as e:
            return {"error": str(e)}


def _gather(items: list[str]) -> list[str]:
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        parts: list[list[str] | None] = [None] * torch.distributed.get_world_size()
        torch.distributed.all_gather_object(parts, items)
        return [item for part in parts for item in part or []]
    return items


@torch.no_grad()
def evaluate(model: nn.Module | Runner, dataset, num_classes: int, ignore_index: int = 255, mode: str = "whole",
             crop_size=(512, 512), stride=(341, 341), tta: bool = False, scales=(1.0,), flip: bool = True,
             device: torch.device | str = "cpu", amp: str = "none", num_workers: int = 0,
             dist_info: DistInfo | None = None, progress: bool = False,
             skip_unreadable: bool = False) -> dict[str, Any]:
    """mmseg metrics (fractions) of ``model`` on ``dataset`` (items: dict with image, label); ``model``
    may be any runner (:mod:`ssformer.inference.runners`: an ONNX or OpenVINO file's).

    ``skip_unreadable``: pairs that cannot be read are left out and listed (messages naming the
    file) under ``"failed"`` instead of stopping the evaluation.
    """
    device = torch.device(device)
    dist_info = dist_info or DistInfo()
    was_training = isinstance(model, nn.Module) and model.training
    if isinstance(model, nn.Module):
        model.eval()
    indices = list(range(dist_info.rank, len(dataset), dist_info.world_size))
    source = SkipUnreadable(dataset) if skip_unreadable else dataset
    loader = DataLoader(Subset(source, indices), batch_size=1, shuffle=False, num_workers=num_workers,
                        generator=torch.Generator())
    metric = IoUMetric(num_classes, ignore_index)
    bar = tqdm(loader, desc="eval", leave=False, disable=None if progress and dist_info.is_main else True, dynamic_ncols=True)
    failed: list[str] = []
    for batch in bar:
        if "error" in batch:
            failed += batch["error"]
            bar.write(f"eval: skipped: {batch['error'][0]}")
            continue
        image = batch["image"].to(device)
        label = batch["label"]
        with autocast_context(device, amp):
            scores = infer(model, image, num_classes, tuple(label.shape[1:]), mode, tuple(crop_size), tuple(stride),
                           tta, tuple(scales), flip)
        metric.update(scores.float().argmax(dim=1).cpu(), label)
    metric.all_reduce()
    if was_training:
        model.train()
    results = metric.compute()
    if skip_unreadable:
        results["failed"] = _gather(failed)
    return results
