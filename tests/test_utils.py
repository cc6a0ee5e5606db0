"""``cuda_bf16_native``: emulated bfloat16 does not count (``dtype="auto"`` then picks fp16)."""

from __future__ import annotations

import torch

from ssformer.inference.segmenter import resolve_dtype
from ssformer.utils import cuda_bf16_native
from tests.engine.test_evaluator import fake_gpu


def test_auto_dtype_is_fp16_on_a_pre_ampere_gpu(monkeypatch):
    device = fake_gpu(monkeypatch, (7, 0), "Tesla V100")
    assert not cuda_bf16_native(device)
    assert resolve_dtype("auto", device) == torch.float16


def test_auto_dtype_is_bf16_on_ampere(monkeypatch):
    device = fake_gpu(monkeypatch, (8, 6), "RTX 3090")
    assert cuda_bf16_native(device)
    assert resolve_dtype("auto", device) == torch.bfloat16


def test_no_gpu_has_no_native_bf16(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert not cuda_bf16_native()
    assert resolve_dtype("auto", torch.device("cpu")) == torch.float32
