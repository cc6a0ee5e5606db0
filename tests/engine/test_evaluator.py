"""Autocast modes the device cannot run natively are refused before training or evaluation starts."""

from __future__ import annotations

import pytest
import torch

from ssformer.engine.evaluator import autocast_context, check_amp


def fake_gpu(monkeypatch, capability: tuple[int, int], name: str) -> torch.device:
    """A GPU of the given compute capability, as far as device selection can tell; torch 2.13's
    ``is_bf16_supported()`` counts emulation, so it answers True on every GPU unless asked not to."""
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None: capability)
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda device=None: name)
    monkeypatch.setattr(torch.cuda, "is_bf16_supported",
                        lambda including_emulation=True: including_emulation or capability[0] >= 8)
    return torch.device("cuda", 0)


def test_bf16_autocast_on_a_pre_ampere_gpu_is_refused(monkeypatch):
    device = fake_gpu(monkeypatch, (7, 5), "Tesla T4")
    with pytest.raises(ValueError, match=r"Tesla T4 \(compute capability 7.5\) has no native bfloat16.*amp=fp16"):
        autocast_context(device, "bf16")
    check_amp(device, "fp16")  # fp16 is the mode for such GPUs


def test_bf16_autocast_on_ampere_is_accepted(monkeypatch):
    device = fake_gpu(monkeypatch, (8, 0), "A100")
    check_amp(device, "bf16")


def test_fp16_off_cuda_is_refused():
    with pytest.raises(ValueError, match="train.amp=fp16 needs a CUDA device"):
        check_amp(torch.device("cpu"), "fp16")


def test_autocast_runs_on_every_device(device):
    amp = "fp16" if device.type == "cuda" else "bf16"
    x = torch.randn(4, 4, device=device)
    with autocast_context(device, amp):
        y = x @ x
    assert y.dtype == (torch.float16 if amp == "fp16" else torch.bfloat16)
    with autocast_context(device, "none"):
        assert (x @ x).dtype == torch.float32
