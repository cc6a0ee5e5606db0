"""What kind of file a path is, read from its name and first bytes, so a file no loader takes is
named as what it is (a TorchScript file, a YAML config) instead of failing inside ``torch.load``."""

from __future__ import annotations

import os
import zipfile
from pathlib import Path

from ssformer.errors import UserError

# Files that hold a whole exported model: they run through their engine (ssformer.inference.runners).
EXPORTED_KINDS = ("onnx", "openvino")
_DESCRIPTIONS = {
    "onnx": "an ONNX file",
    "openvino": "an OpenVINO model (.xml + .bin)",
    "openvino-weights": "the weights half of an OpenVINO model",
    "torchscript": "a TorchScript file",
    "exported-program": "a torch.export program (.pt2)",
    "yaml": "a YAML config",
    "json": "a JSON file",
}


def _zip_kind(path: Path) -> str | None:
    try:
        with zipfile.ZipFile(path) as archive:
            names = archive.namelist()
    except (zipfile.BadZipFile, OSError):
        return None
    if any(n.endswith("/constants.pkl") or "/code/__torch__" in n for n in names):
        return "torchscript"
    if any(n.endswith("/models/model.json") or n.endswith("/archive_format") for n in names):
        return "exported-program"
    return None


def file_kind(path: str | os.PathLike) -> str:
    """``onnx``, ``openvino``, ``openvino-weights``, ``torchscript``, ``exported-program``, ``yaml``,
    ``json``, ``folder`` or ``checkpoint`` (anything else: a torch or safetensors file, read later)."""
    path = Path(path)
    if path.is_dir():
        return "folder"
    suffix = path.suffix.lower()
    if suffix == ".onnx":
        return "onnx"
    if suffix == ".xml":
        return "openvino"
    if suffix in (".yaml", ".yml"):
        return "yaml"
    if suffix == ".json":
        return "json"
    if suffix == ".bin" and path.with_suffix(".xml").is_file() and not zipfile.is_zipfile(path):
        return "openvino-weights"
    if path.is_file() and zipfile.is_zipfile(path):
        return _zip_kind(path) or "checkpoint"
    return "checkpoint"


def describe(kind: str) -> str:
    return _DESCRIPTIONS.get(kind, "a file")


def refuse_unloadable(path: str | os.PathLike, kind: str) -> None:
    """Raise :class:`UserError` naming ``path``'s kind when it holds no PyTorch model ssformer can build."""
    what = describe(kind)
    if kind in EXPORTED_KINDS:
        raise UserError(f"{path} is {what}: predict, eval, serve and benchmark run it, but it holds no PyTorch "
                        f"model to build (export, convert and train need the checkpoint it was exported from)")
    if kind == "openvino-weights":
        raise UserError(f"{path} is {what}: give its .xml file ({Path(path).with_suffix('.xml')})")
    if kind in ("torchscript", "exported-program"):
        raise UserError(f"{path} is {what}: ssformer runs PyTorch checkpoints and model folders, ONNX (.onnx) and "
                        f"OpenVINO (.xml) models; give the checkpoint it was exported from, or export with "
                        f"--format onnx or openvino")
    if kind in ("yaml", "json"):
        raise UserError(f"{path} is {what}, not a model: give a model folder, checkpoint, .onnx or .xml file "
                        f"(a training recipe goes in the CONFIG argument)")
