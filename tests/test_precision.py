"""The precision policy (ssformer.precision): autocast modes and model dtypes for every command, and
refusals that name the setting the user wrote."""

from __future__ import annotations

import pytest
import torch

import ssformer
from ssformer import precision
from ssformer.cli.main import main
from ssformer.engine.config import sample_root
from ssformer.errors import UserError
from ssformer.precision import DTYPES, amp_precision, autocast, resolve_dtype


def fake_gpu(monkeypatch, capability: tuple[int, int], name: str) -> torch.device:
    """A GPU of the given compute capability, as far as device selection can tell; torch 2.13's
    ``is_bf16_supported()`` counts emulation, so it answers True on every GPU unless asked not to."""
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None: capability)
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda device=None: name)
    monkeypatch.setattr(torch.cuda, "is_bf16_supported",
                        lambda including_emulation=True: including_emulation or capability[0] >= 8)
    return torch.device("cuda", 0)


def test_auto_amp_follows_what_the_device_runs_natively(monkeypatch):
    cpu = torch.device("cpu")
    for avx512_bf16, amx, expected in ((False, False, "none"), (True, False, "bf16"), (False, True, "bf16")):
        monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda v=avx512_bf16: v)
        monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda v=amx: v)
        assert amp_precision("auto", cpu).mode == expected
        assert amp_precision("bf16", cpu).mode == "bf16"  # an explicit choice is kept
    monkeypatch.setattr(precision, "cuda_bf16_native", lambda device=None: False)
    assert amp_precision("auto", torch.device("cuda")).mode == "fp16"
    monkeypatch.setattr(precision, "cuda_bf16_native", lambda device=None: True)
    assert amp_precision("auto", torch.device("cuda")).mode == "bf16"


def test_notes_say_what_auto_chose_and_warn_about_emulated_bf16(monkeypatch):
    monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda: False)
    monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: False)
    cpu = torch.device("cpu")
    assert amp_precision("auto", cpu, "train.amp").notes() == ["train.amp auto: none on this CPU"]
    (line,) = amp_precision("bf16", cpu, "--amp").notes()
    assert "emulated" in line and "--amp=bf16" in line and "train.amp" not in line
    assert amp_precision("none", cpu).notes() == []


@pytest.mark.parametrize("setting", ["train.amp", "--amp", "--dtype"])
def test_refusals_name_the_setting_the_caller_used(setting, monkeypatch):
    with pytest.raises(UserError, match=rf"^{setting}=fp16 needs a CUDA device; use {setting}=bf16 or none on CPU$"):
        amp_precision("fp16", torch.device("cpu"), setting)
    with pytest.raises(UserError, match=rf"^{setting}='fp8': allowed values are none, auto, bf16, fp16$"):
        amp_precision("fp8", torch.device("cpu"), setting)
    device = fake_gpu(monkeypatch, (7, 5), "Tesla T4")
    with pytest.raises(UserError, match=rf"^{setting}=bf16: Tesla T4 \(compute capability 7.5\) .* use {setting}=fp16$"):
        amp_precision("bf16", device, setting)
    assert amp_precision("fp16", device, setting).mode == "fp16"  # fp16 is the mode for such GPUs


def test_autocast_of_each_mode(device):
    amp = "fp16" if device.type == "cuda" else "bf16"
    x = torch.randn(4, 4, device=device)
    with autocast(device, amp):
        assert (x @ x).dtype == (torch.float16 if amp == "fp16" else torch.bfloat16)
    with autocast(device, "none"):
        assert (x @ x).dtype == torch.float32


def test_model_dtypes(monkeypatch):
    assert resolve_dtype("auto", torch.device("cpu")) == torch.float32
    assert resolve_dtype("bf16", torch.device("cpu")) == DTYPES["bfloat16"] == torch.bfloat16
    with pytest.raises(UserError, match=r"^--dtype='int8': allowed values are auto, fp32, bf16 and fp16$"):
        resolve_dtype("int8", torch.device("cpu"), "--dtype")
    device = fake_gpu(monkeypatch, (7, 5), "Tesla T4")
    assert resolve_dtype("auto", device) == torch.float16


def test_eval_names_its_amp_flag_not_the_training_key(tmp_path, capsys):
    """``ssformer eval --amp fp16`` on a CPU: the one-line refusal names --amp (before: train.amp)."""
    torch.manual_seed(0)
    model = tmp_path / "model"
    ssformer.SSformer(num_classes=4, embed_dim=8, depths=(1, 1, 1, 1), num_heads=(1, 1, 2, 2), window_size=4,
                      decoder_dim=8).save_pretrained(model)
    argv = ["eval", "sample", "--data-root", str(sample_root()), "--checkpoint", str(model), "--device", "cpu"]
    assert main([*argv, "--amp", "fp16"]) == 2
    err = capsys.readouterr().err
    assert "--amp=fp16 needs a CUDA device" in err and "train.amp" not in err and "Traceback" not in err
    assert main([*argv, "--set", "train.amp=fp16"]) == 2
    assert "train.amp=fp16 needs a CUDA device" in capsys.readouterr().err
