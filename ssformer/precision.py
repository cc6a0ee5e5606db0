"""The precision policy of every command: autocast modes (train, eval) and model dtypes (predict, benchmark).

One place decides what ``auto`` means on a device (what it computes natively:
:func:`ssformer.devices.cuda_bf16_native`, :func:`ssformer.devices.cpu_bf16_native`) and which
modes a device cannot run; the caller passes the name of the setting it read the mode from
(``train.amp``, ``--amp``, ``--dtype``), so every refusal names what the user wrote.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass

import torch

from ssformer.devices import cpu_bf16_native, cuda_bf16_native
from ssformer.errors import UserError

AMP_MODES = ("none", "auto", "bf16", "fp16")
DTYPES = {"fp32": torch.float32, "float32": torch.float32, "bf16": torch.bfloat16, "bfloat16": torch.bfloat16,
          "fp16": torch.float16, "float16": torch.float16}


@dataclass(frozen=True)
class Precision:
    """An autocast mode resolved and checked for a device: ``mode`` is none, bf16 or fp16;
    ``requested`` what the setting ``setting`` said (``auto`` included)."""

    mode: str
    device: torch.device
    setting: str = "train.amp"
    requested: str = "none"

    @property
    def dtype(self) -> torch.dtype | None:
        """The autocast dtype; None for none (fp32)."""
        return {"bf16": torch.bfloat16, "fp16": torch.float16}.get(self.mode)

    def autocast(self) -> contextlib.AbstractContextManager:
        """bf16/fp16 autocast on the device, nothing for none."""
        if self.dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=self.dtype)

    def notes(self) -> list[str]:
        """What to tell the user: the mode ``auto`` chose, and bf16 that this CPU only emulates."""
        if self.requested == "auto":
            return [f"{self.setting} auto: {self.mode} on this {self.device.type.upper()}"]
        if self.mode == "bf16" and self.device.type == "cpu" and not cpu_bf16_native():
            return [f"warning: {self.setting}=bf16 on a CPU without native bfloat16 (no AVX-512 BF16 or AMX): it is "
                    f"emulated and several times slower than fp32 here; use {self.setting}=none"]
        return []


def auto_amp(device: torch.device) -> str:
    """``auto``: bf16 where the device runs it natively (CPUs with AVX-512 BF16 or AMX, GPUs of compute
    capability 8.0+), fp16 on older GPUs, none (fp32) on other CPUs."""
    if device.type == "cuda":
        return "bf16" if cuda_bf16_native(device) else "fp16"
    return "bf16" if device.type == "cpu" and cpu_bf16_native() else "none"


def amp_precision(mode: str, device: torch.device | str, setting: str = "train.amp") -> Precision:
    """Resolve ``auto`` for ``device`` and refuse modes it cannot run natively (fp16 off CUDA, bf16 on
    GPUs before Ampere), naming ``setting`` in the error."""
    device = torch.device(device)
    if mode not in AMP_MODES:
        raise UserError(f"{setting}={mode!r}: allowed values are {', '.join(AMP_MODES)}")
    resolved = auto_amp(device) if mode == "auto" else mode
    if resolved == "fp16" and device.type != "cuda":
        raise UserError(f"{setting}=fp16 needs a CUDA device; use {setting}=bf16 or none on CPU")
    if resolved == "bf16" and device.type == "cuda" and not cuda_bf16_native(device):
        major, minor = torch.cuda.get_device_capability(device)
        raise UserError(f"{setting}=bf16: {torch.cuda.get_device_name(device)} (compute capability "
                        f"{major}.{minor}) has no native bfloat16 (it needs 8.0 or newer, Ampere on); "
                        f"use {setting}=fp16")
    return Precision(resolved, device, setting, mode)


def autocast(device: torch.device | str, mode: str, setting: str = "train.amp") -> contextlib.AbstractContextManager:
    """The autocast context of ``mode`` on ``device`` (:func:`amp_precision`, then :meth:`Precision.autocast`)."""
    return amp_precision(mode, device, setting).autocast()


def resolve_dtype(dtype: str | torch.dtype, device: torch.device, setting: str = "dtype") -> torch.dtype:
    """The dtype a model is converted to for inference. ``auto``: float32 on the CPU (exact, and reduced
    precision is rarely faster there); bfloat16 on GPUs that run it natively (8.0+), else float16."""
    if isinstance(dtype, torch.dtype):
        return dtype
    if dtype == "auto":
        if device.type == "cuda":
            return torch.bfloat16 if cuda_bf16_native(device) else torch.float16
        return torch.float32
    if dtype not in DTYPES:
        raise UserError(f"{setting}={dtype!r}: allowed values are auto, fp32, bf16 and fp16")
    return DTYPES[dtype]
