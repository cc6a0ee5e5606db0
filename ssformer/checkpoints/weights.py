"""Copying a checkpoint's tensors into a model you already have, whatever the format, and reporting
what happened (``ssformer.load_weights``: e.g. ImageNet Swin weights into a fresh model; a whole
trained model is built by ``SSformer.from_pretrained``)."""

from __future__ import annotations

import math
import os
from collections.abc import Mapping
from dataclasses import dataclass, field

import torch
from torch import nn

from ssformer.checkpoints.artifact import read_model_files
from ssformer.checkpoints.io import CheckpointError, StateDict, unwrap
from ssformer.checkpoints.keymaps import (
    infer_config,
    is_resizable_bias_table,
    resize_bias_table,
    to_ssformer_state_dict,
)


@dataclass
class LoadReport:
    """What :func:`load_weights` did. Model keys are in this project's naming, ``ignored`` in the file's.

    ``missing`` keys are errors in strict mode; ``initialised`` keys are parts the checkpoint's
    format cannot hold (the decoder of a backbone checkpoint, the stage norms of a classifier),
    left as initialised.
    """

    format: str
    loaded: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)
    unexpected: list[str] = field(default_factory=list)
    mismatched: list[tuple[str, tuple[int, ...], tuple[int, ...]]] = field(default_factory=list)
    resized: list[str] = field(default_factory=list)
    initialised: list[str] = field(default_factory=list)
    ignored: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """True when nothing is missing, unexpected or wrongly shaped."""
        return not (self.missing or self.unexpected or self.mismatched)

    def __str__(self) -> str:
        lines = [f"format: {self.format}; loaded {len(self.loaded)} tensors"]
        if self.resized:
            lines.append(f"resized relative position tables ({len(self.resized)}): " + ", ".join(self.resized))
        if self.initialised:
            lines.append(f"left as initialised ({len(self.initialised)}): " + _summarise(self.initialised))
        if self.ignored:
            lines.append(f"ignored from the checkpoint ({len(self.ignored)}): " + _summarise(self.ignored))
        if self.missing:
            lines.append(f"missing ({len(self.missing)}): " + _summarise(self.missing))
        if self.unexpected:
            lines.append(f"unexpected ({len(self.unexpected)}): " + _summarise(self.unexpected))
        for key, want, got in self.mismatched[:8]:
            lines.append(f"shape mismatch: {key}: model {want}, checkpoint {got}")
        if len(self.mismatched) > 8:
            lines.append(f"... and {len(self.mismatched) - 8} more shape mismatches")
        return "\n".join(lines)


def _summarise(keys: list[str], limit: int = 8) -> str:
    shown = ", ".join(keys[:limit])
    return shown + (f", ... ({len(keys) - limit} more)" if len(keys) > limit else "")



FLOAT_DTYPES = (torch.float32, torch.float16, torch.bfloat16, torch.float64)  # what float weights may be stored as


def check_values(key: str, want: torch.Tensor, value: torch.Tensor) -> None:
    """Raise :class:`CheckpointError` naming ``key`` when ``value`` cannot stand for the model's ``want``:
    an integer, bool or fp8 tensor where a float one belongs (``copy_`` would convert it silently), or
    NaN / inf weights. Integer buffers (BatchNorm's ``num_batches_tracked``) stay integers."""
    if not want.is_floating_point():
        return
    if value.dtype not in FLOAT_DTYPES:
        raise CheckpointError(f"checkpoint tensor {key} is stored as {str(value.dtype).removeprefix('torch.')}, "
                              "where the model needs floating-point weights (float32, float16 or bfloat16): the "
                              "file is damaged or was not written as a model checkpoint")
    if not bool(torch.isfinite(value).all()):
        raise CheckpointError(f"checkpoint tensor {key} holds NaN or inf values: these weights cannot predict "
                              "(a diverged training run or a damaged file); use an earlier checkpoint")


def load_weights(model: nn.Module, checkpoint: str | os.PathLike | Mapping[str, torch.Tensor],
                 strict: bool = True) -> LoadReport:
    """Copy the tensors of ``checkpoint`` (a state dict, or any file or model folder
    :func:`~ssformer.checkpoints.artifact.read_model_files` reads) into ``model``.

    ``strict=True`` raises :class:`CheckpointError` listing every missing, unexpected and wrongly
    shaped key, before anything is copied. Parts the format cannot hold (the decoder of a backbone
    checkpoint, the stage norms of an ImageNet classifier) are left as initialised and listed in
    ``report.initialised``; that is not an error.
    """
    sd = read_model_files(checkpoint).state if isinstance(checkpoint, (str, os.PathLike)) else unwrap(checkpoint)
    fmt, mapped = to_ssformer_state_dict(sd)
    own = model.state_dict()
    report = LoadReport(format=fmt, ignored=sorted(mapped.ignored), unexpected=list(mapped.unmapped))
    to_load: StateDict = {}
    for key, value in mapped.state.items():
        if key not in own:
            report.unexpected.append(key)
        elif own[key].shape == value.shape:
            check_values(key, own[key], value)
            to_load[key] = value
        elif is_resizable_bias_table(key, own[key].shape, value.shape):
            check_values(key, own[key], value)
            to_load[key] = resize_bias_table(value, (math.isqrt(own[key].shape[0]) + 1) // 2)
            report.resized.append(key)
        else:
            report.mismatched.append((key, tuple(own[key].shape), tuple(value.shape)))

    def cannot_hold(key: str) -> bool:
        return ((not mapped.has_decoder and key.startswith("decoder."))
                or (not mapped.has_stage_norms and key.startswith("encoder.norms.")))

    absent = [k for k in own if k not in mapped.state]
    report.initialised = [k for k in absent if cannot_hold(k)]
    report.missing = [k for k in absent if not cannot_hold(k)]
    if strict and not report.ok:
        raise CheckpointError(_misfit(report, mapped.state, own, checkpoint))
    with torch.no_grad():
        for key, value in to_load.items():
            own[key].copy_(value)
    report.loaded = sorted(to_load)
    return report


def _architecture(state: Mapping[str, torch.Tensor]) -> dict[str, object]:
    try:
        return infer_config(state)
    except CheckpointError:
        return {}


def _misfit(report: LoadReport, theirs: Mapping[str, torch.Tensor], own: Mapping[str, torch.Tensor],
            source: object) -> str:
    """Why a strict load failed: for another architecture, the settings that differ (embed_dim 32
    there, 128 here) and where to go instead, not the thousands of keys that follow from them."""
    there, here = _architecture(theirs), _architecture(own)
    differ = [k for k in ("embed_dim", "depths", "num_heads", "window_size", "mlp_ratio", "in_channels",
                          "decoder_dim", "num_classes") if k in there and k in here and there[k] != here[k]]
    name = f"checkpoint {source}" if isinstance(source, (str, os.PathLike)) else "the checkpoint"
    if not differ:
        return f"{name} does not fit the model (strict):\n{report}"
    counts = ", ".join(f"{n} {what}" for n, what in ((len(report.missing), "missing"),
                                                      (len(report.unexpected), "unexpected"),
                                                      (len(report.mismatched), "of another shape")) if n)
    settings = ", ".join(f"{k} {_plain(there[k])} vs {_plain(here[k])}" for k in differ)
    load = (f"ssformer.SSformer.from_pretrained({str(source)!r})" if isinstance(source, (str, os.PathLike))
            else "ssformer.SSformer.from_pretrained")
    return (f"{name} is another architecture than the model (checkpoint vs model: {settings}; tensors: {counts}): "
            f"build the model it holds with {load} instead of loading it into this one\n{report}")


def _plain(value: object) -> object:
    return list(value) if isinstance(value, tuple) else value
