"""Read any supported checkpoint, map its keys onto :class:`SSformer`, and report what happened.

Formats are recognised by their keys, never by file name:

* this project's own (``encoder.*`` / ``decoder.*``), from ``save_pretrained`` or ``convert``;
* official SSformer / mmseg checkpoints (``backbone.*`` + ``decode_head.*``, optionally wrapped in
  ``{'state_dict': ..., 'meta': ...}``) and mmseg-converted Swin backbones (no prefix);
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn

StateDict = dict[str, torch.Tensor]


class CheckpointError(ValueError):
    """A checkpoint could not be read or does not fit the model."""


@dataclass
class LoadReport:
    """What :func:`load_weights` did: keys are in this project's naming."""

    format: str
    loaded: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)
    unexpected: list[str] = field(default_factory=list)
    mismatched: list[tuple[str, tuple[int, ...], tuple[int, ...]]] = field(default_factory=list)
    resized: list[str] = field(default_factory=list)

    def __str__(self) -> str:
        lines = [f"format: {self.format}; loaded {len(self.loaded)} tensors"]
        if self.resized:
            lines.append(f"resized relative position tables: {len(self.resized)}")
        if self.missing:
            lines.append(f"missing ({len(self.missing)}): " + ", ".join(self.missing))
        if self.unexpected:
            lines.append(f"unexpected ({len(self.unexpected)}): " + ", ".join(self.unexpected))
        for key, want, got in self.mismatched:
            lines.append(f"shape mismatch: {key}: model {want}, checkpoint {got}")
        return "\n".join(lines)


# --- reading ----------------------------------------------------------------------------------
def read_checkpoint(path: str | os.PathLike) -> StateDict:
    """Load a state dict from ``.safetensors`` or a torch file (``weights_only=True``), unwrapped."""
    path = Path(path)
    if path.is_dir():
        from ssformer.models.ssformer import WEIGHTS_NAME

        path = path / WEIGHTS_NAME
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint {path} does not exist")
    if path.suffix == ".safetensors":
        from safetensors import SafetensorError
        from safetensors.torch import load_file

        try:
            return load_file(str(path))
        except (SafetensorError, OSError, ValueError) as e:
            raise CheckpointError(f"{path} is not a readable safetensors file: {e}") from e
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # torch raises many types here (pickle, zip, EOF, runtime)
        raise CheckpointError(f"{path} is not a readable PyTorch checkpoint ({type(e).__name__}: {e})") from e
    return unwrap(obj, source=str(path))


def unwrap(obj: object, source: str = "checkpoint") -> StateDict:
    """Find the tensor mapping inside common wrappers (``state_dict``, ``model``, ``module.``)."""
    for key in ("state_dict", "model", "module"):
        if isinstance(obj, Mapping) and key in obj and isinstance(obj[key], Mapping):
            obj = obj[key]
            break
    if not isinstance(obj, Mapping) or not obj:
        raise CheckpointError(f"{source} holds no state dict (got {type(obj).__name__})")
    tensors = {k: v for k, v in obj.items() if isinstance(v, torch.Tensor)}
    if not tensors:
        raise CheckpointError(f"{source} holds no tensors")
    if all(k.startswith("module.") for k in tensors):
        tensors = {k[len("module."):]: v for k, v in tensors.items()}
    return tensors


# --- key mapping ------------------------------------------------------------------------------
_MMSEG_BACKBONE_RULES: list[tuple[str, str]] = [
    (r"^patch_embed\.projection\.", "patch_embed.proj."),
    (r"^stages\.(\d+)\.blocks\.(\d+)\.attn\.w_msa\.", r"stages.\1.blocks.\2.attn."),
    (r"^stages\.(\d+)\.blocks\.(\d+)\.ffn\.layers\.0\.0\.", r"stages.\1.blocks.\2.mlp.fc1."),
    (r"^stages\.(\d+)\.blocks\.(\d+)\.ffn\.layers\.1\.", r"stages.\1.blocks.\2.mlp.fc2."),
    (r"^norm(\d)\.", r"norms.\1."),
]
_MMSEG_HEAD_RULES: list[tuple[str, str]] = [
    (r"^convs\.(\d+)\.", r"projections.\1."),
    (r"^fusion_conv\.", "fuse."),
    (r"^conv_seg\.", "classifier."),
]
_DROPPED = re.compile(r"(relative_position_index|attn_mask)$")


def _apply_rules(key: str, rules: list[tuple[str, str]]) -> str:
    for pattern, replacement in rules:
        key, n = re.subn(pattern, replacement, key)
        if n:
            break
    return key


def from_mmseg(sd: StateDict) -> StateDict:
    """Official SSformer / mmseg keys (``backbone.*``, ``decode_head.*`` or a bare backbone)."""
    out: StateDict = {}
    for key, value in sd.items():
        if _DROPPED.search(key):
            continue
        if key.startswith("backbone."):
            out["encoder." + _apply_rules(key[len("backbone."):], _MMSEG_BACKBONE_RULES)] = value
        elif key.startswith("decode_head."):
            out["decoder." + _apply_rules(key[len("decode_head."):], _MMSEG_HEAD_RULES)] = value
        elif key.startswith("auxiliary_head."):
            continue
        else:
            out["encoder." + _apply_rules(key, _MMSEG_BACKBONE_RULES)] = value
    return out


def from_ssformer(sd: StateDict) -> StateDict:
    return {k: v for k, v in sd.items() if not _DROPPED.search(k)}


def detect_format(sd: Mapping[str, torch.Tensor]) -> str:
    keys = list(sd)
    if any(k.startswith(("encoder.patch_embed.", "decoder.")) for k in keys):
        return "ssformer"
    if any(k.startswith(("backbone.", "decode_head.")) for k in keys):
        return "mmseg"
    if any(k.startswith("stages.") and ".w_msa." in k for k in keys):
        return "mmseg-backbone"
    raise CheckpointError("unrecognised checkpoint format; first keys: " + ", ".join(keys[:5]))


CONVERTERS: dict[str, Callable[[StateDict], StateDict]] = {
    "ssformer": from_ssformer,
    "mmseg": from_mmseg,
    "mmseg-backbone": from_mmseg,
}


def to_ssformer_state_dict(sd: StateDict) -> tuple[str, StateDict]:
    """Detect the format of ``sd`` and return it with keys in this project's naming."""
    fmt = detect_format(sd)
    return fmt, CONVERTERS[fmt](sd)


# --- loading ----------------------------------------------------------------------------------
def load_weights(model: nn.Module, checkpoint: str | os.PathLike | Mapping[str, torch.Tensor],
                 strict: bool = True) -> LoadReport:
    """Copy a checkpoint's tensors into ``model``, whatever the supported format.

    ``strict=True`` raises :class:`CheckpointError` listing every missing, unexpected and wrongly
    shaped key. An encoder-only checkpoint always fills the encoder and leaves the decoder as
    initialised; the report names what stayed initialised.
    """
    sd = read_checkpoint(checkpoint) if isinstance(checkpoint, (str, os.PathLike)) else unwrap(checkpoint)
    fmt, mapped = to_ssformer_state_dict(sd)
    own = model.state_dict()
    report = LoadReport(format=fmt)
    encoder_only = not any(k.startswith("decoder.") for k in mapped)
    to_load: StateDict = {}
    for key, value in mapped.items():
        if key not in own:
            report.unexpected.append(key)
        elif own[key].shape != value.shape:
            report.mismatched.append((key, tuple(own[key].shape), tuple(value.shape)))
        else:
            to_load[key] = value
    report.missing = [k for k in own if k not in mapped and not (encoder_only and k.startswith("decoder."))]
    initialised_decoder = [k for k in own if encoder_only and k.startswith("decoder.")]
    if strict and (report.missing or report.unexpected or report.mismatched):
        raise CheckpointError(f"checkpoint does not fit the model (strict):\n{report}")
    with torch.no_grad():
        for key, value in to_load.items():
            own[key].copy_(value)
    report.loaded = sorted(to_load)
    report.missing += initialised_decoder
    return report
