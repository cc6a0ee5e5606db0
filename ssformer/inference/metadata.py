"""What an exported model file carries besides its graph, so it is an artifact like a model folder.

The same JSON documents as a ``.safetensors`` model (``model_config`` with class names and palette,
``preprocessing``, ``training_config``) plus ``precision`` (fp32 or int8) and ``input_size``
(``[H, W]`` of a fixed-shape export, ``null`` for a dynamic one) and ``run_precision`` (the
OpenVINO inference precision the file was checked at: f32, or bf16 for an int8 IR checked so). ONNX keeps them in the model's
``metadata_props`` as ``ssformer.<name>``; OpenVINO in the runtime info under ``ssformer/<name>``.
Files exported before the key was named ``model_config`` hold it as ``config``; both are read.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from typing import Any

from ssformer.data.preprocessing import Preprocessing
from ssformer.errors import UserError
from ssformer.models.ssformer import SSformerConfig

PREFIX = "ssformer"
NAMES = ("model_config", "preprocessing", "training_config", "precision", "input_size", "run_precision")
LEGACY_NAMES = {"config": "model_config"}  # the keys of files exported before the rename


def documents(model: Any, precision: str = "fp32", input_size: tuple[int, int] | None = None,
              run_precision: str = "f32") -> dict[str, str]:
    """The metadata entries of an export of ``model`` (an SSformer): name -> JSON text. ``run_precision``:
    what the rest of the graph runs at by default (bf16 for an int8 IR whose check passed in bf16)."""
    preprocessing = model.preprocessing.to_dict() if getattr(model, "preprocessing", None) is not None else None
    values = {"model_config": asdict(model.config), "preprocessing": preprocessing,
              "training_config": getattr(model, "recipe", None), "precision": precision,
              "input_size": list(input_size) if input_size is not None else None, "run_precision": run_precision}
    return {name: json.dumps(value) for name, value in values.items()}


@dataclass(frozen=True)
class ExportedInfo:
    """An exported file's metadata, parsed and checked."""

    config: SSformerConfig
    preprocessing: Preprocessing
    recipe: dict[str, Any] | None
    precision: str
    input_size: tuple[int, int] | None
    run_precision: str  # f32 or bf16: the OpenVINO inference precision "auto" means for this file


def parse(entries: dict[str, str], where: str) -> ExportedInfo:
    """Read the entries :func:`documents` wrote; a file without them is not an ssformer export."""
    entries = {LEGACY_NAMES.get(name, name): value for name, value in entries.items()}
    if "model_config" not in entries:
        raise UserError(f"{where} carries no ssformer metadata (class count, preprocessing): it is not a model "
                        f"written by ssformer export; export it again with ssformer export")
    try:
        values = {name: json.loads(entries[name]) for name in NAMES if name in entries}
        config = SSformerConfig.from_dict(values["model_config"])
    except (ValueError, TypeError, KeyError) as e:
        raise UserError(f"{where}: its ssformer metadata cannot be read ({e}); export it again") from e
    preprocessing = Preprocessing.from_dict(values["preprocessing"], where=f"{where} (its preprocessing)") \
        if values.get("preprocessing") else Preprocessing()
    size = values.get("input_size")
    return ExportedInfo(config, preprocessing, values.get("training_config"), str(values.get("precision", "fp32")),
                        (int(size[0]), int(size[1])) if size else None,
                        "bf16" if values.get("run_precision") == "bf16" else "f32")
