"""``ssformer.devices``: emulated bfloat16 does not count as native (``dtype="auto"`` then picks fp16)."""

from __future__ import annotations

import pytest
import torch

from ssformer.devices import DTYPES, cuda_bf16_native, resolve_device, resolve_dtype
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


def test_dtype_names_and_errors():
    assert resolve_dtype("bf16", torch.device("cpu")) == DTYPES["bfloat16"] == torch.bfloat16
    with pytest.raises(ValueError, match="dtype must be auto, fp32, bf16 or fp16, got 'int8'"):
        resolve_dtype("int8", torch.device("cpu"))


def test_cpu_device_and_what_names_the_setting(monkeypatch):
    assert resolve_device("auto") == torch.device("cpu") or torch.cuda.is_available()
    assert resolve_device(torch.device("cpu")) == torch.device("cpu")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(ValueError, match="--device=cuda but CUDA is not available"):
        resolve_device("cuda", what="--device")


def test_auto_amp_follows_what_the_device_runs_natively(monkeypatch):
    from ssformer import devices

    cpu = torch.device("cpu")
    for avx512_bf16, amx, expected in ((False, False, "none"), (True, False, "bf16"), (False, True, "bf16")):
        monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda v=avx512_bf16: v)
        monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda v=amx: v)
        assert devices.resolve_amp("auto", cpu) == expected
        assert devices.resolve_amp("bf16", cpu) == "bf16"  # an explicit choice is kept
    monkeypatch.setattr(devices, "cuda_bf16_native", lambda device=None: False)
    assert devices.resolve_amp("auto", torch.device("cuda")) == "fp16"
    monkeypatch.setattr(devices, "cuda_bf16_native", lambda device=None: True)
    assert devices.resolve_amp("auto", torch.device("cuda")) == "bf16"


def test_training_records_the_resolved_amp_and_warns_about_emulated_bf16(monkeypatch):
    from ssformer.engine import trainer
    from ssformer.engine.config import TrainSettings

    lines = []
    monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda: False)
    monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: False)
    section = TrainSettings(amp="auto")
    trainer.note_amp(torch.device("cpu"), section, lines.append)
    assert section.amp == "none" and lines == ["train.amp auto: none on this CPU"]
    section = TrainSettings(amp="bf16")
    trainer.note_amp(torch.device("cpu"), section, lines.append)
    assert section.amp == "bf16" and "emulated" in lines[-1]
