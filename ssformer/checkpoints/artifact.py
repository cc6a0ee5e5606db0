"""The files a model lives in, read into one description (:class:`ModelFiles`) and written back.

A model folder follows the Hugging Face layout and is readable without this package:
``config.json`` (architecture, class names, palette), ``model.safetensors`` (weights),
``preprocessor_config.json`` (test pipeline and label conventions, :mod:`ssformer.data.preprocessing`)
and, for trained models, ``training_config.json`` (the recipe). A single ``.safetensors`` file
carries the same JSON documents in its metadata; a ``.pt`` file carries them as entries beside
``state_dict``. In both, the architecture is under ``model_config`` and the recipe under
``training_config`` (:data:`ENTRY_NAMES`); files written with the older name ``config`` (the
architecture in ``.safetensors`` metadata, the recipe in training checkpoints) still load. Training checkpoints (``latest.pt``, ``best.pt``, ``iter_N.pt``), official mmseg
checkpoints (``meta`` with CLASSES, PALETTE and the config text) and plain Swin weights are read too.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from ssformer.checkpoints.filekind import file_kind, refuse_unloadable
from ssformer.checkpoints.io import (
    CheckpointError,
    StateDict,
    read_json,
    read_safetensors,
    torch_load,
    unwrap,
    write_safetensors,
    write_torch,
)
from ssformer.data.preprocessing import PREPROCESSOR_NAME

CONFIG_NAME = "config.json"
WEIGHTS_NAME = "model.safetensors"
RECIPE_NAME = "training_config.json"
FILE_SUFFIXES = (".safetensors", ".pt", ".pth", ".bin", ".ckpt")
# What each JSON document is called inside a single file (safetensors metadata, torch file entries).
MODEL_CONFIG_KEY, PREPROCESSING_KEY, RECIPE_KEY = "model_config", "preprocessing", "training_config"
OLD_KEY = "config"  # the architecture in older .safetensors metadata, the recipe in older training checkpoints


@dataclass
class ModelFiles:
    """Everything a source holds, before a model is built: tensors in the file's own naming, plus
    whichever of model settings, preprocessing, recipe and mmseg ``meta`` it carries."""

    path: Path
    kind: str  # folder | safetensors | training-checkpoint | torch
    state: StateDict
    model_config: dict[str, Any] | None = None
    preprocessing: dict[str, Any] | None = None
    recipe: dict[str, Any] | None = None
    meta: dict[str, Any] = field(default_factory=dict)


def _json_entry(metadata: Mapping[str, str], key: str, path: Path) -> dict[str, Any] | None:
    if key not in metadata:
        return None
    try:
        value = json.loads(metadata[key])
    except json.JSONDecodeError as e:
        raise CheckpointError(f"{path}: metadata entry {key!r} is not valid JSON: {e}") from e
    if not isinstance(value, dict):
        raise CheckpointError(f"{path}: metadata entry {key!r} must be a JSON object")
    return value


def _dict_or_none(value: Any) -> dict[str, Any] | None:
    return dict(value) if isinstance(value, Mapping) else None


def read_folder(directory: Path) -> ModelFiles:
    config_path = directory / CONFIG_NAME
    if not config_path.is_file():
        if (directory / "model" / CONFIG_NAME).is_file():  # a training work directory
            return read_folder(directory / "model")
        raise FileNotFoundError(f"{directory} is not a model folder: {CONFIG_NAME} not found")
    model_config = read_json(config_path, "model config")
    if _is_transformers_config(model_config):  # a transformers save_pretrained folder: its weights alone
        return _transformers_folder(directory)
    extra = {name: read_json(directory / name, what) if (directory / name).is_file() else None
             for name, what in ((PREPROCESSOR_NAME, "preprocessing"), (RECIPE_NAME, "training config"))}
    state, _ = read_safetensors(_existing(directory / WEIGHTS_NAME))
    return ModelFiles(directory, "folder", state, model_config, extra[PREPROCESSOR_NAME], extra[RECIPE_NAME])


# Keys every ``transformers`` config.json has (``PretrainedConfig.to_dict``), and none of ours.
_TRANSFORMERS_KEYS = ("model_type", "transformers_version", "architectures")
_TRANSFORMERS_WEIGHTS = ("model.safetensors", "pytorch_model.bin")


def _is_transformers_config(config: Mapping[str, Any]) -> bool:
    return any(key in config for key in _TRANSFORMERS_KEYS)


def _transformers_folder(directory: Path) -> ModelFiles:
    """The weights of a Hugging Face ``transformers`` folder (its config describes their model, not ours:
    the settings are read off the tensors, as for any bare checkpoint)."""
    for name in _TRANSFORMERS_WEIGHTS:
        path = directory / name
        if path.is_file():
            state = read_safetensors(path)[0] if path.suffix == ".safetensors" else unwrap(torch_load(path), source=str(path))
            return ModelFiles(path, "safetensors" if path.suffix == ".safetensors" else "torch", state)
    raise FileNotFoundError(f"{directory} is a transformers folder without weights: neither "
                            f"{' nor '.join(_TRANSFORMERS_WEIGHTS)} is there (sharded checkpoints are not read)")


def _existing(path: Path) -> Path:
    if not path.is_file():
        raise FileNotFoundError(f"{path} does not exist")
    return path


def read_model_files(path: str | os.PathLike) -> ModelFiles:
    """Read a model folder, a training work directory, a ``.safetensors`` file or any torch checkpoint."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"checkpoint {path} does not exist")
    if path.is_dir():
        return read_folder(path)
    refuse_unloadable(path, file_kind(path))  # exported models, configs: named as what they are
    if path.suffix == ".safetensors":
        state, metadata = read_safetensors(path)
        model_config = MODEL_CONFIG_KEY if MODEL_CONFIG_KEY in metadata else OLD_KEY
        return ModelFiles(path, "safetensors", state, _json_entry(metadata, model_config, path),
                          _json_entry(metadata, PREPROCESSING_KEY, path), _json_entry(metadata, RECIPE_KEY, path))
    obj = torch_load(path)
    if not isinstance(obj, Mapping):
        raise CheckpointError(f"{path} holds no state dict (got {type(obj).__name__})")
    meta = dict(obj["meta"]) if isinstance(obj.get("meta"), Mapping) else {}
    training = isinstance(obj.get("model"), Mapping) and "iteration" in obj
    recipe = _dict_or_none(obj.get(RECIPE_KEY, obj.get(OLD_KEY)))
    return ModelFiles(path, "training-checkpoint" if training else "torch", unwrap(obj, source=str(path)),
                      _dict_or_none(obj.get(MODEL_CONFIG_KEY)), _dict_or_none(obj.get(PREPROCESSING_KEY)), recipe, meta)


def write_folder(directory: str | os.PathLike, state: Mapping[str, torch.Tensor], model_config: Mapping[str, Any],
                 preprocessing: Mapping[str, Any] | None, recipe: Mapping[str, Any] | None) -> Path:
    """Write a model folder, each file atomically; files of a previous save that no longer apply are removed."""
    from ssformer.utils import atomic_write

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    documents = {CONFIG_NAME: model_config, PREPROCESSOR_NAME: preprocessing, RECIPE_NAME: recipe}
    for name, document in documents.items():
        if document is None:
            (directory / name).unlink(missing_ok=True)
            continue
        with atomic_write(directory / name) as tmp:
            tmp.write_text(json.dumps(document, indent=2) + "\n")
    write_safetensors(state, directory / WEIGHTS_NAME)
    return directory


def write_file(path: str | os.PathLike, state: Mapping[str, torch.Tensor], model_config: Mapping[str, Any] | None,
               preprocessing: Mapping[str, Any] | None, recipe: Mapping[str, Any] | None) -> Path:
    """One file holding the model: ``.safetensors`` (JSON documents in its metadata) or a torch file."""
    path = Path(path)
    documents = {MODEL_CONFIG_KEY: model_config, PREPROCESSING_KEY: preprocessing, RECIPE_KEY: recipe}
    documents = {k: v for k, v in documents.items() if v is not None}
    if path.suffix == ".safetensors":
        return write_safetensors(state, path, {k: json.dumps(v) for k, v in documents.items()})
    tensors = {k: v.detach().contiguous().cpu() for k, v in state.items()}
    return write_torch({"state_dict": tensors, **documents}, path)
