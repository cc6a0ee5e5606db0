"""The one route from anything a user holds to a ready model.

``load_model(source)`` takes a model folder (``save_pretrained``, the trainer's ``model/``, a work
directory), a training checkpoint (``latest.pt``, ``best.pt``, ``iter_N.pt``), a file written by
``convert`` (``.safetensors`` / ``.pt``), an official SSformer or mmseg checkpoint (also as the
official tools publish it), Microsoft, timm, Hugging Face or mmseg Swin weights, or a Hub repo id
(``org/name``), and returns the model with its preprocessing, labels and recipe attached plus a
load report. Every command and the Python API load through here, so a model predicts the same
from every file it is kept in.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Union

from ssformer.checkpoints.artifact import CONFIG_NAME, ModelFiles, read_model_files
from ssformer.checkpoints.hub import download, looks_like_repo_id
from ssformer.checkpoints.io import CheckpointError, read_json
from ssformer.checkpoints.keymaps import infer_config, to_ssformer_state_dict
from ssformer.checkpoints.mmseg_config import parse_config_text, preprocessing_from_config
from ssformer.checkpoints.weights import LoadReport, load_weights
from ssformer.data.classes import dataset_classes
from ssformer.data.preprocessing import KNOWN_BY_CLASSES, Preprocessing, from_training_config
from ssformer.models.ssformer import VARIANTS, SSformer, SSformerConfig

logger = logging.getLogger("ssformer")

ConfigInput = Union[SSformerConfig, Mapping, str, os.PathLike, None]
Source = Union[SSformer, str, os.PathLike]


@dataclass
class LoadedModel:
    """A model in eval mode (``model.preprocessing``, ``model.recipe`` and the class names and palette
    in ``model.config`` set), what loading did, and notes on settings that had to be assumed."""

    model: SSformer
    report: LoadReport
    source: str
    format: str
    notes: list[str] = field(default_factory=list)

    @property
    def preprocessing(self) -> Preprocessing:
        return self.model.preprocessing or Preprocessing()


def _config_dict(config: ConfigInput) -> dict[str, Any] | None:
    """Model settings given by the caller: an SSformerConfig, a mapping, a JSON file, a model folder
    or a variant name (``ssformer_swin_b``; the class count then comes from the checkpoint)."""
    if config is None:
        return None
    if isinstance(config, SSformerConfig):
        return asdict(config)
    if isinstance(config, Mapping):
        return dict(config)
    if isinstance(config, str) and config in VARIANTS:
        return dict(VARIANTS[config])
    path = Path(config)
    if path.is_dir():
        path = path / CONFIG_NAME
    if not path.is_file():
        raise FileNotFoundError(f"model config {config} is neither a JSON file, a model folder nor one of "
                                f"{sorted(VARIANTS)}")
    data = read_json(path, "model config")
    return dict(data["model_config"]) if isinstance(data.get("model_config"), dict) else data


def _class_info(meta: Mapping[str, Any], num_classes: int) -> tuple[list[str] | None, list[list[int]] | None]:
    """Class names and palette from an mmseg ``meta`` dict, when they fit ``num_classes``."""
    names, palette = meta.get("CLASSES"), meta.get("PALETTE")
    names = [str(n) for n in names] if isinstance(names, (list, tuple)) and len(names) == num_classes else None
    ok = (isinstance(palette, (list, tuple)) and len(palette) == num_classes
          and all(isinstance(c, (list, tuple)) and len(c) == 3 for c in palette))
    return names, [[int(v) for v in c] for c in palette] if ok else None


def _preprocessing(files: ModelFiles, fmt: str, num_classes: int, notes: list[str]) -> tuple[Preprocessing, str | None]:
    """The file's own test settings; else its recipe's; else a known recipe or the defaults, with a note.
    Also returns the dataset whose labels were assumed (for class names), if any."""
    where = f"{files.path}"
    if files.preprocessing is not None:
        return Preprocessing.from_dict(files.preprocessing, where=f"{where} preprocessing"), None
    if files.recipe is not None:
        try:
            return from_training_config(files.recipe), None
        except ValueError as e:
            notes.append(f"{where}: its training config gives no usable test settings ({e})")
    if isinstance(files.meta.get("config"), str):
        found, problems = preprocessing_from_config(parse_config_text(files.meta["config"]))
        notes.extend(f"{where}: {p}" for p in problems)
        if found is not None:
            return found, None
    if fmt == "mmseg" and num_classes in KNOWN_BY_CLASSES:
        dataset, recipe = KNOWN_BY_CLASSES[num_classes]
        notes.append(f"{where} carries no test pipeline: using the official {dataset} one for its {num_classes} "
                     f"classes (img_scale {recipe.img_scale}, keep ratio, whole image)")
        return recipe, dataset
    defaults = Preprocessing()
    notes.append(f"{where} carries no test pipeline: using the defaults (img_scale {defaults.img_scale} keep ratio, "
                 f"ImageNet mean/std, whole image); pass --img-scale / --mode to change them")
    return defaults, None


def load_model(source: Source, config: ConfigInput = None, num_classes: int | None = None,
               strict: bool = True, revision: str | None = None) -> LoadedModel:
    """Build the model ``source`` holds (see the module docstring for what ``source`` may be).

    ``config`` overrides the model settings the source carries (else they are read off the tensor
    shapes). ``num_classes`` gives a backbone-only checkpoint its decoder, or re-initialises the
    classifier of a full one for another class count (reported as ``initialised``).
    ``revision`` selects a Hub revision.
    """
    if isinstance(source, SSformer):
        return LoadedModel(source.eval(), LoadReport(format="in-memory"), "in-memory model", "in-memory")
    if not isinstance(source, (str, os.PathLike)):
        raise TypeError(f"expected an SSformer, a path or a Hub repo id, got {type(source).__name__}")
    path = download(str(source), revision) if looks_like_repo_id(source) else Path(source)
    return build_model(read_model_files(path), config, num_classes, strict)


def build_model(files: ModelFiles, config: ConfigInput = None, num_classes: int | None = None,
                strict: bool = True) -> LoadedModel:
    """:func:`load_model` for files already read (:func:`ssformer.checkpoints.artifact.read_model_files`)."""
    fmt, mapped = to_ssformer_state_dict(files.state)
    inferred = infer_config(mapped.state)
    settings = _config_dict(config) or files.model_config
    settings = {**inferred, **(settings or {})}
    has_decoder = "num_classes" in inferred
    if not has_decoder and num_classes is None and "num_classes" not in (files.model_config or {}):
        raise CheckpointError(f"{files.path} has no decoder ({fmt} backbone weights): it cannot predict; give "
                              f"num_classes (--num-classes) to build a model around it for training")
    if has_decoder and int(settings["num_classes"]) != inferred["num_classes"] and num_classes is None:
        raise CheckpointError(f"{files.path} is a model for {inferred['num_classes']} classes, but the model config "
                              f"asks for {settings['num_classes']}")
    replace_classifier = has_decoder and num_classes is not None and num_classes != inferred["num_classes"]
    if num_classes is not None:
        settings["num_classes"] = num_classes
    notes: list[str] = []
    preprocessing, assumed_dataset = _preprocessing(files, fmt, int(settings["num_classes"]), notes)
    if replace_classifier or not has_decoder:
        settings["class_names"] = settings["palette"] = None
    elif settings.get("class_names") is None:
        names, palette = _class_info(files.meta, int(settings["num_classes"]))
        if names is None and assumed_dataset is not None:
            names, palette = (list(v) for v in dataset_classes(assumed_dataset))
            palette = [list(c) for c in palette]
        settings["class_names"], settings["palette"] = names, palette if names is not None else None
    model = SSformer.from_config(SSformerConfig.from_dict(settings))
    report = load_weights(model, files.state, strict=strict and not replace_classifier)
    if replace_classifier:
        replaced = [k for k, _, _ in report.mismatched if k.startswith("decoder.classifier.")]
        if report.missing or report.unexpected or len(replaced) != len(report.mismatched):
            raise CheckpointError(f"checkpoint {files.path} does not fit the model (strict):\n{report}")
        report.initialised += replaced
        report.mismatched = []
    model.preprocessing, model.recipe = preprocessing, files.recipe
    for note in notes:
        logger.warning(note)
    return LoadedModel(model.eval(), report, str(files.path), fmt, notes)
