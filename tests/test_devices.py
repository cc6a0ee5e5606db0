"""``ssformer.devices``: emulated bfloat16 does not count as native (``dtype="auto"`` then picks fp16),
and which device each process takes."""

from __future__ import annotations

import pytest
import torch

from ssformer.devices import cuda_bf16_native, resolve_device
from ssformer.precision import resolve_dtype
from tests.test_precision import fake_gpu


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


def test_cpu_device_and_what_names_the_setting(monkeypatch):
    assert resolve_device("auto") == torch.device("cpu") or torch.cuda.is_available()
    assert resolve_device(torch.device("cpu")) == torch.device("cpu")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(ValueError, match="--device=cuda but CUDA is not available"):
        resolve_device("cuda", what="--device")
