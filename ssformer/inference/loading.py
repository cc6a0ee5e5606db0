"""Building a ready-to-run SSformer from a model object, a save_pretrained folder or a checkpoint file."""

from __future__ import annotations

import json
import os
from dataclasses import asdict
from pathlib import Path
from typing import Any, Union

import torch

from ssformer.models.ssformer import CONFIG_NAME, VARIANTS, SSformer, SSformerConfig

ConfigInput = Union[SSformerConfig, dict, str, os.PathLike, None]


def _config_dict(config: ConfigInput) -> dict[str, Any] | None:
    """``config`` as a dict: an SSformerConfig, a dict, a JSON file, a save_pretrained folder or a
    variant name (``ssformer_swin_b``; the class count is then taken from the checkpoint)."""
    if config is None:
        return None
    if isinstance(config, SSformerConfig):
        return asdict(config)
    if isinstance(config, dict):
        return dict(config)
    if isinstance(config, str) and config in VARIANTS:
        return dict(VARIANTS[config])
    path = Path(config)
    if path.is_dir():
        path = path / CONFIG_NAME
    if not path.is_file():
        raise FileNotFoundError(f"model config {config} is neither a JSON file, a save_pretrained folder nor one "
                                f"of {sorted(VARIANTS)}")
    try:
        data = json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise ValueError(f"model config {path} is not valid JSON: {e}") from e
    if not isinstance(data, dict):
        raise ValueError(f"model config {path} must hold a JSON object")
    return data.get("model_config", data) if isinstance(data.get("model_config"), dict) else data


def _read_file(path: Path) -> tuple[dict[str, torch.Tensor] | dict[str, Any], dict[str, Any]]:
    """The checkpoint object and the extra settings it carries (engine checkpoints: model_config, config)."""
    from ssformer.models.weights import CheckpointError, read_checkpoint

    if path.suffix == ".safetensors":
        return read_checkpoint(path), {}
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # torch raises many types for non-checkpoints
        raise CheckpointError(f"{path} is not a readable PyTorch checkpoint ({type(e).__name__}: {e})") from e
    if not isinstance(obj, dict):
        raise CheckpointError(f"{path} holds no state dict (got {type(obj).__name__})")
    extra = {k: obj[k] for k in ("model_config", "config") if isinstance(obj.get(k), dict)}
    return obj, extra


def test_settings(training_config: dict[str, Any] | None) -> dict[str, Any]:
    """Test-time settings from a training config stored in a checkpoint: img_scale, mode, crop, stride."""
    if not training_config:
        return {}
    out: dict[str, Any] = {}
    scale = training_config.get("data", {}).get("test_transform", {}).get("img_scale")
    if scale is not None:
        out["img_scale"] = tuple(int(s) for s in scale)
    evaluation = training_config.get("eval", {})
    if evaluation.get("mode") in ("whole", "slide"):
        out["mode"] = evaluation["mode"]
    for key, name in (("crop_size", "crop"), ("stride", "stride")):
        if evaluation.get(key) is not None:
            out[name] = tuple(int(s) for s in evaluation[key])
    return out


def load_model(model_or_path: SSformer | str | os.PathLike, config: ConfigInput = None
               ) -> tuple[SSformer, dict[str, Any]]:
    """(model in eval mode, test settings found in the checkpoint).

    Model settings come from, in order: ``config``; the folder's ``config.json``; the
    checkpoint's ``model_config`` (engine checkpoints); the tensor shapes.
    """
    if isinstance(model_or_path, SSformer):
        return model_or_path.eval(), {}
    if not isinstance(model_or_path, (str, os.PathLike)):
        raise TypeError(f"expected an SSformer or a path, got {type(model_or_path).__name__}")
    from ssformer.models.weights import CheckpointError, infer_config, load_weights, to_ssformer_state_dict, unwrap

    path = Path(model_or_path)
    if not path.exists():
        raise FileNotFoundError(f"checkpoint {path} does not exist")
    settings = _config_dict(config)
    if path.is_dir():
        if settings is None:
            return SSformer.from_pretrained(path).eval(), {}
        checkpoint, extra = _read_file(path / "model.safetensors")
    else:
        checkpoint, extra = _read_file(path)
    if settings is None:
        settings = extra.get("model_config")
    state = unwrap(checkpoint, source=str(path))
    inferred = infer_config(to_ssformer_state_dict(state)[1].state)
    if "num_classes" not in inferred:
        raise CheckpointError(f"{path} has no decode head (a backbone-only checkpoint): it cannot predict")
    if settings is None:
        settings = inferred
    elif "num_classes" in settings and int(settings["num_classes"]) != inferred["num_classes"]:
        raise CheckpointError(f"{path} is a model for {inferred['num_classes']} classes, but the model config "
                              f"asks for {settings['num_classes']}")
    else:
        settings = {"num_classes": inferred["num_classes"], **settings}
    model = SSformer.from_config(SSformerConfig.from_dict(settings))
    load_weights(model, state, strict=True)
    return model.eval(), test_settings(extra.get("config"))
