"""Huge-page advice for the full-size logits: given where it should be, same values and layout always."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

import ssformer
from ssformer.models.fast import hugepages
from ssformer.models.ssformer import upsample_logits
from tests.conftest import tiny_model_kwargs

linux_only = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="madvise advice is Linux-only")


def advised_for_huge_pages(address: int) -> bool:
    """Whether the mapping holding ``address`` carries the MADV_HUGEPAGE flag ("hg") in /proc/self/smaps."""
    inside = False
    for line in Path("/proc/self/smaps").read_text().splitlines():
        first = line.split()[0]
        if "-" in first and ":" not in first:  # a mapping's header line: "start-end perms ..."
            start, end = (int(part, 16) for part in first.split("-"))
            inside = start <= address < end
        elif inside and first == "VmFlags:":
            return "hg" in line.split()[1:]
    raise AssertionError(f"address {address:#x} is in no mapping")


@linux_only
def test_large_tensor_is_advised_and_keeps_its_values():
    tensor = hugepages.empty((40, 1 << 20), torch.float32)  # 160 MiB
    middle = tensor.data_ptr() + tensor.nbytes // 2
    assert advised_for_huge_pages(middle)
    tensor.fill_(3.0)
    assert tensor.sum().item() == 3.0 * tensor.numel()


def test_small_tensor_is_left_alone():
    tensor = torch.empty(1024)
    assert not hugepages.advise_huge_pages(tensor)


@pytest.mark.parametrize("channels_last", [True, False])
@pytest.mark.parametrize("shape", [(1, 150, 128, 128), (2, 19, 33, 47), (1, 1, 64, 64), (1, 150, 1, 1), (2, 3, 1, 5)])
@pytest.mark.parametrize("mode", ["inference", "no_grad", "grad"])
def test_upsample_logits_equals_interpolate(shape, channels_last, mode):
    x = torch.randn(shape, requires_grad=mode == "grad")
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    context = {"inference": torch.inference_mode(), "no_grad": torch.no_grad()}.get(mode, torch.enable_grad())
    for size in [(512, 512), (401, 299)]:
        with context:
            ours = upsample_logits(x, size)
            expected = F.interpolate(x, size=size, mode="bilinear", align_corners=False)
        assert torch.equal(ours, expected)
        assert ours.stride() == expected.stride()
        assert ours.requires_grad == expected.requires_grad


@linux_only
def test_model_output_in_inference_is_advised():
    model = ssformer.SSformer(**{**tiny_model_kwargs(), "num_classes": 150}).eval()
    with torch.inference_mode():
        logits = model(torch.randn(1, 3, 256, 256))  # 150 x 256 x 256 floats: 39 MB
    assert advised_for_huge_pages(logits.data_ptr() + logits.untyped_storage().nbytes() // 2)


def test_upsample_logits_of_a_strided_view_equals_interpolate():
    x = torch.randn(1, 150, 64, 96)[:, :, ::2, 1::3]  # neither layout: F.interpolate picks one
    with torch.inference_mode():
        ours = upsample_logits(x, (99, 101))
        expected = F.interpolate(x, size=(99, 101), mode="bilinear", align_corners=False)
    assert torch.equal(ours, expected) and ours.stride() == expected.stride()


@linux_only
def test_window_gather_equals_index_select_and_is_advised():
    from ssformer.models.fast.windows import _gather_rows

    rows = torch.randn(300_000, 32)  # 38 MB of q/k/v rows, gathered in a shuffled order
    index = torch.randperm(rows.shape[0])
    with torch.inference_mode():
        gathered = _gather_rows(rows, index)
    assert torch.equal(gathered, rows.index_select(0, index))
    assert advised_for_huge_pages(gathered.data_ptr() + gathered.nbytes // 2)
