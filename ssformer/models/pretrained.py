"""Loading and saving a model as one artifact (weights, architecture, preprocessing, labels, recipe).

:class:`PretrainedModel` is the base of :class:`ssformer.SSformer`, as ``PreTrainedModel`` is in
Hugging Face transformers: ``from_pretrained`` turns anything a user holds into the model (the
commands use :func:`ssformer.loading.load_model`, which also returns the load report and notes),
``save_pretrained`` / ``save_file`` / ``push_to_hub`` write it back. It builds the subclass it is called on (``cls.config_class``, ``cls.variants``,
``cls.from_config``), so nothing here imports the model and no import runs back up the layers.
"""

from __future__ import annotations

import logging
import os
import tempfile
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from torch import nn

from ssformer.checkpoints.artifact import CONFIG_NAME, ModelFiles, read_model_files, write_file, write_folder
from ssformer.checkpoints.hub import download, looks_like_repo_id, upload
from ssformer.checkpoints.io import CheckpointError, read_json
from ssformer.checkpoints.keymaps import infer_config, to_ssformer_state_dict
from ssformer.checkpoints.mmseg_config import parse_config_text, preprocessing_from_config
from ssformer.checkpoints.weights import LoadReport, load_weights
from ssformer.data.classes import dataset_classes
from ssformer.data.preprocessing import KNOWN_BY_CLASSES, PREPROCESSOR_NAME, Preprocessing, from_training_config
from ssformer.errors import UserError

logger = logging.getLogger("ssformer")

ConfigInput = Any | Mapping | str | os.PathLike | None  # a config dataclass, mapping, JSON file, folder or variant


@dataclass
class LoadedModel:
    """A model in eval mode (``model.preprocessing``, ``model.recipe`` and the class names and palette
    in ``model.config`` set), what loading did, and notes on settings that had to be assumed."""

    model: Any
    report: LoadReport
    source: str
    format: str
    notes: list[str] = field(default_factory=list)

    @property
    def preprocessing(self) -> Preprocessing:
        return self.model.preprocessing or Preprocessing()


def _class_info(meta: Mapping[str, Any], num_classes: int) -> tuple[list[str] | None, list[list[int]] | None]:
    """Class names and palette from an mmseg ``meta`` dict, when they fit ``num_classes``."""
    names, palette = meta.get("CLASSES"), meta.get("PALETTE")
    names = [str(n) for n in names] if isinstance(names, (list, tuple)) and len(names) == num_classes else None
    ok = (isinstance(palette, (list, tuple)) and len(palette) == num_classes
          and all(isinstance(c, (list, tuple)) and len(c) == 3 for c in palette))
    return names, [[int(v) for v in c] for c in palette] if ok else None


def _settings_source(files: ModelFiles, config: Any) -> str:
    """Where a model's settings came from, for error messages."""
    if isinstance(config, (str, os.PathLike)):
        return f"model config {config}"
    if config is not None:
        return "the model config given"
    return str(files.path / CONFIG_NAME) if files.kind == "folder" else f"{files.path} (its model settings)"


def _preprocessing(files: ModelFiles, fmt: str, num_classes: int, notes: list[str]) -> tuple[Preprocessing, str | None]:
    """The file's own test settings; else its recipe's; else a known recipe or the defaults, with a note.
    Also returns the dataset whose labels were assumed (for class names), if any."""
    where = f"{files.path}"
    if files.preprocessing is not None:
        source = files.path / PREPROCESSOR_NAME if files.kind == "folder" else f"{where} (its preprocessing)"
        return Preprocessing.from_dict(files.preprocessing, where=str(source)), None
    if files.recipe is not None:
        try:
            return from_training_config(files.recipe), None
        except ValueError as e:
            notes.append(f"{where}: its training config gives no usable test settings ({e})")
    parsed: dict[str, Any] = {}
    if isinstance(files.meta.get("config"), str):
        try:
            parsed = parse_config_text(files.meta["config"])
        except ValueError as e:
            notes.append(f"{where}: {e}")
    if "model" in parsed or "data" in parsed:  # an mmseg config (meta['config'] of its tools/train.py)
        found, problems = preprocessing_from_config(parsed)
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
                 f"ImageNet mean/std, whole image); predict and convert take --img-scale / --mode to change them")
    return defaults, None


class PretrainedModel(nn.Module):
    """Persistence for a model whose ``config`` dataclass (``config_class``) rebuilds it; subclasses
    set ``config_class`` and ``variants`` (named configurations) and define ``from_config``."""

    config_class: ClassVar[type]
    variants: ClassVar[Mapping[str, Mapping[str, Any]]] = {}

    def __init__(self) -> None:
        super().__init__()
        self.preprocessing: Preprocessing | None = None
        self.recipe: dict[str, Any] | None = None

    # --- writing ---------------------------------------------------------------------------------
    def _documents(self) -> tuple[dict[str, Any], dict[str, Any] | None, dict[str, Any] | None]:
        preprocessing = self.preprocessing.to_dict() if self.preprocessing is not None else None
        return self.config.to_dict(), preprocessing, self.recipe

    def save_pretrained(self, directory: str | os.PathLike) -> Path:
        """Write a model folder: ``config.json``, ``model.safetensors`` and, when known,
        ``preprocessor_config.json`` and ``training_config.json`` (each atomically)."""
        return write_folder(directory, self.state_dict(), *self._documents())

    def save_file(self, path: str | os.PathLike) -> Path:
        """The whole model in one file: ``.safetensors`` (settings in its metadata) or a torch file."""
        return write_file(path, self.state_dict(), *self._documents())

    def push_to_hub(self, repo_id: str, private: bool | None = None, token: str | None = None,
                    commit_message: str = "Upload SSformer model") -> str:
        """Upload the model folder to the Hugging Face Hub (needs the ``hub`` extra); returns the commit URL."""
        with tempfile.TemporaryDirectory() as tmp:
            self.save_pretrained(tmp)
            return upload(tmp, repo_id, private=private, token=token, commit_message=commit_message)

    # --- reading ---------------------------------------------------------------------------------
    @classmethod
    def from_pretrained(cls, source: str | os.PathLike, config: ConfigInput = None, num_classes: int | None = None,
                        strict: bool = True, revision: str | None = None) -> PretrainedModel:
        """The model ``source`` holds, in eval mode, with its preprocessing, labels and recipe: a model
        folder (``save_pretrained``, the trainer's ``model/``, a work directory), a training checkpoint,
        a converted ``.safetensors`` / ``.pt``, an official SSformer or mmseg checkpoint (also as the
        official tools publish it), Microsoft, timm, Hugging Face or mmseg Swin weights, or a Hub repo
        id (``org/name``, at ``revision``).

        ``config`` overrides the model settings the source carries (else they are read off the tensor
        shapes). ``num_classes`` gives a backbone-only checkpoint its decoder, or re-initialises the
        classifier of a full one for another class count. Settings that had to be assumed (no test
        pipeline in the file) are logged as warnings.
        """
        return cls._load(source, config, num_classes, strict, revision).model

    @classmethod
    def _load(cls, source: Any, config: ConfigInput = None, num_classes: int | None = None, strict: bool = True,
              revision: str | None = None) -> LoadedModel:
        """:meth:`from_pretrained` with the load report and notes (an in-memory model passes through)."""
        if isinstance(source, cls):
            return LoadedModel(source.eval(), LoadReport(format="in-memory"), "in-memory model", "in-memory")
        if not isinstance(source, (str, os.PathLike)):
            raise TypeError(f"expected an {cls.__name__}, a path or a Hub repo id, got {type(source).__name__}")
        path = download(str(source), revision) if looks_like_repo_id(source) else Path(source)
        return cls._from_files(read_model_files(path), config, num_classes, strict)

    @classmethod
    def _config_dict(cls, config: ConfigInput) -> dict[str, Any] | None:
        """Model settings given by the caller: a config dataclass, a mapping, a JSON file, a model folder
        or a variant name (``ssformer_swin_b``; the class count then comes from the checkpoint)."""
        if config is None:
            return None
        if isinstance(config, cls.config_class):
            return asdict(config)
        if isinstance(config, Mapping):
            return dict(config)
        if isinstance(config, str) and config in cls.variants:
            return dict(cls.variants[config])
        path = Path(config)
        if path.is_dir():
            path = path / CONFIG_NAME
        if not path.is_file():
            raise FileNotFoundError(f"model config {config} is neither a JSON file, a model folder nor one of "
                                    f"{sorted(cls.variants)}")
        data = read_json(path, "model config")
        return dict(data["model_config"]) if isinstance(data.get("model_config"), dict) else data

    @classmethod
    def _built(cls, settings: dict[str, Any], source: str, build: bool = True) -> PretrainedModel | None:
        """The model for ``settings`` (``build=False``: only check them); a wrong or absurd setting
        (``embed_dim: -16``, ``"16"``, ``1000000000``) is one line naming the file it came from."""
        try:
            config = cls.config_class.from_dict(settings)
            return cls.from_config(config) if build else None
        except UserError as e:
            raise CheckpointError(f"{source}: {e}") from None

    @classmethod
    def _from_files(cls, files: ModelFiles, config: ConfigInput = None, num_classes: int | None = None,
                    strict: bool = True) -> LoadedModel:
        """:meth:`_load` for files already read (:func:`ssformer.checkpoints.artifact.read_model_files`)."""
        fmt, mapped = to_ssformer_state_dict(files.state)
        inferred = infer_config(mapped.state)
        settings = cls._config_dict(config) or files.model_config
        settings = {**inferred, **(settings or {})}
        source = _settings_source(files, config)
        cls._built({**settings, "class_names": None, "palette": None}, source, build=False)  # types, before int()
        has_decoder = "num_classes" in inferred
        if not has_decoder and num_classes is None and "num_classes" not in (files.model_config or {}):
            raise CheckpointError(f"{files.path} has no decoder ({fmt} backbone weights), so it cannot predict: "
                                  f"train a model from it (model.pretrained in a training config), or give "
                                  f"num_classes (ssformer convert / info --num-classes) for an untrained model")
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
        model = cls._built(settings, source)
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
