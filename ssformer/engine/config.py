"""Experiment configs: typed sections whose fields carry their default, what they allow and a doc
line; YAML files merged over those defaults, ``--set a.b=c`` overrides.

A config (:class:`TrainingConfig`) has five parts: ``model``, ``data``, ``train``, ``eval`` and
``work_dir``. Every section checks its values when it is made (``__post_init__``), so a config built
in Python is refused as one read from YAML, naming the key (``train.lr``). Every key must be known
(a typo is an error naming it) except those of ``data.options``, the dataset class's own keyword
options, which :func:`ssformer.data.build_dataset` checks (the trainer calls it before any other
work). The ``model`` section is the model's own :class:`~ssformer.models.config.Architecture` plus
where its weights come from. The key table in docs/training.md is generated from the fields
(``ssformer config keys``), so the defaults, the checks and the docs live in one place.
"""

from __future__ import annotations

import copy
import os
import re
from collections.abc import Iterator
from dataclasses import Field, asdict, dataclass, field, fields
from importlib import resources
from pathlib import Path
from typing import Any, ClassVar

import yaml

from ssformer.data.frequencies import CLASS_WEIGHT_METHODS
from ssformer.data.transforms import PAIR, TrainTransformSettings
from ssformer.engine.loss_config import (
    CrossEntropyTerm,
    LossTerm,
    OhemSettings,
    loss_terms,
    ohem_settings,
    with_defaults,
)
from ssformer.errors import UserError
from ssformer.models.config import VARIANTS, Architecture, SSformerConfig
from ssformer.settings import (
    BOOL,
    STRING,
    Allowed,
    check_fields,
    coerce,
    int_at_least,
    list_of,
    number_in,
    one_of,
    optional,
    setting,
)

__all__ = ["CLASS_WEIGHT_METHODS", "DEFAULTS", "DataSettings", "EvalSettings", "ModelSettings", "TrainSettings",
           "TrainTransformSettings", "TrainingConfig", "config_dir", "leaves", "load_config", "loss_settings",
           "options_as_overrides", "parse_override", "reference_table", "resolve_config_path", "sample_root"]

SPLITS: Allowed = (lambda v: STRING[0](v) or list_of(STRING)[0](v)), "a split name or a list of them"
DEVICE: Allowed = ((lambda v: v in ("auto", "cpu", "cuda") or isinstance(v, str) and re.fullmatch(r"cuda:\d+", v)),
                   "auto, cpu, cuda or cuda:N")
AMP_MODES = ("none", "auto", "bf16", "fp16")
EVAL_MODES = ("whole", "slide")


def section(cls: type, doc: str) -> Any:
    return field(default_factory=cls, metadata={"section": cls, "doc": doc})


# --- the sections -------------------------------------------------------------------------------------
@dataclass
class ModelSettings(Architecture):
    """``model``: the network to build (the model's own settings, :class:`Architecture`) and its
    initial weights."""

    where: ClassVar[str] = "model."

    num_classes: int | None = setting(None, optional(int_at_least(1)), "null: the training dataset's classes")
    variant: str | None = setting(None, optional(one_of(tuple(sorted(VARIANTS)))),
                                  "a named size: its embed_dim, depths and num_heads replace those above")
    pretrained: str | None = setting(None, optional(STRING), "encoder or whole-model weights in any format of "
                                     "docs/checkpoints.md, loaded with strict=False")

    def __post_init__(self) -> None:
        if isinstance(self.variant, str) and self.variant in VARIANTS:
            named = VARIANTS[self.variant]
            self.embed_dim, self.depths, self.num_heads = named["embed_dim"], named["depths"], named["num_heads"]
        super().__post_init__()
        self.depths, self.num_heads = list(self.depths), list(self.num_heads)

    def to_model_config(self, num_classes: int, class_names=None, palette=None) -> SSformerConfig:
        """The config of the model to train on a dataset of ``num_classes`` classes, names and palette."""
        if self.num_classes is not None and self.num_classes != num_classes:
            raise UserError(f"model.num_classes={self.num_classes} but the dataset has {num_classes} classes")
        shared = {f.name: getattr(self, f.name) for f in fields(Architecture)}
        return SSformerConfig(**{**shared, "num_classes": num_classes},
                              class_names=list(class_names) if class_names else None,
                              palette=[list(c) for c in palette[:num_classes]] if palette else None)


@dataclass
class TestTransformSettings:
    """``data.test_transform``: the resize before inference (logits go back to the label size)."""

    where: ClassVar[str] = "data.test_transform."

    img_scale: list[int] | None = setting([2048, 512], optional(PAIR),
                                          "keep-ratio test resize (long side, short side); null: none", pair=True)

    def __post_init__(self) -> None:
        check_fields(self, self.where)


@dataclass
class DataSettings:
    """``data``: which dataset, where, which splits, and the pipelines."""

    where: ClassVar[str] = "data."

    type: str | None = setting(None, optional(STRING), "camvid, ade20k, cityscapes, voc or folder")
    root: str | None = setting(None, optional(STRING), "the dataset folder (or --data-root)")
    train_split: str | list[str] = setting("train", SPLITS, "the training split(s), concatenated")
    val_split: str = setting("val", STRING, "evaluated during training and by default by ssformer eval")
    train_transform: TrainTransformSettings = section(TrainTransformSettings, "training pipeline")
    test_transform: TestTransformSettings = section(TestTransformSettings, "test pipeline")
    options: dict[str, Any] = setting({}, ((lambda v: isinstance(v, dict)), "a mapping"), "the dataset class's own "
                                      "options (e.g. class_names), merged key by key; docs/datasets.md")

    def __post_init__(self) -> None:
        check_fields(self, self.where)
        tt = self.train_transform
        largest = max(tt.img_scale) * (tt.ratio_range[1] if tt.ratio_range else 1.0)
        if min(tt.crop_size) > largest:
            raise UserError(f"data.train_transform.crop_size {tt.crop_size} is larger than any rescaled image "
                            f"(img_scale {tt.img_scale} x ratio up to {tt.ratio_range})")


@dataclass
class TrainSettings:
    """``train``: optimiser, schedule, loss, precision, devices, logging and checkpoints."""

    where: ClassVar[str] = "train."

    iters: int = setting(160000, int_at_least(1), "optimiser updates")
    batch_size: int = setting(8, int_at_least(1), "images per process and micro-batch")
    grad_accum: int = setting(1, int_at_least(1), "micro-batches per update")
    num_workers: int = setting(2, int_at_least(0), "DataLoader worker processes")
    lr: float = setting(6.0e-5, number_in(0, low_open=True), "peak learning rate (AdamW)")
    weight_decay: float = setting(0.01, number_in(0), "AdamW weight decay")
    betas: list[float] = setting([0.9, 0.999], list_of(number_in(0, 1), 2), "AdamW betas")
    eps: float = setting(1.0e-8, number_in(0, low_open=True), "AdamW eps")
    no_decay_keys: list[str] = setting(["absolute_pos_embed", "relative_position_bias_table", "norm"],
                                       list_of(STRING), "parameters whose name holds one of these get no decay")
    warmup_iters: int = setting(1500, int_at_least(0), "linear warmup length")
    warmup_ratio: float = setting(1.0e-6, number_in(0, 1, low_open=True, high_open=False),
                                  "warmup starts at lr * this")
    power: float = setting(1.0, number_in(0), "poly schedule power")
    min_lr: float = setting(0.0, number_in(0), "poly schedule floor")
    avg_non_ignore: bool = setting(False, BOOL, "default of the cross_entropy terms' avg_non_ignore")
    loss: list[LossTerm] = setting([CrossEntropyTerm()], None, "weighted sum of loss terms (see Losses below)")
    ohem: OhemSettings | None = setting(None, None, "{thresh, min_kept}: online hard example mining (see Losses)")
    clip_grad: float | None = setting(None, optional(number_in(0, low_open=True)), "max gradient norm; null: none")
    amp: str = setting("none", one_of(AMP_MODES), "autocast: auto picks bf16 only where it is native")
    sync_bn: bool = setting(False, BOOL, "SyncBatchNorm across processes (CUDA)")
    bn_eval: bool = setting(False, BOOL, "keep BatchNorm statistics frozen")
    gradient_checkpointing: bool = setting(False, BOOL, "recompute Swin blocks in the backward pass")
    seed: int = setting(0, int_at_least(0), "initial weights, data order and augmentation")
    device: str = setting("auto", DEVICE, "auto: CUDA when present; under torchrun each process takes LOCAL_RANK")
    num_threads: int | None = setting(None, optional(int_at_least(1)),
                                      "CPU threads for torch (more than the CPUs: cut to them, with a note); "
                                      "null: torch's default")
    log_interval: int = setting(50, int_at_least(1), "iterations between log lines")
    eval_interval: int = setting(16000, int_at_least(1), "iterations between evaluations (and at the end)")
    checkpoint_interval: int = setting(16000, int_at_least(1), "iterations between latest.pt (and iter_N.pt) writes")
    keep_checkpoints: int = setting(3, int_at_least(0), "newest iter_N.pt files kept")
    progress: bool = setting(True, BOOL, "progress bar")

    def __post_init__(self) -> None:
        check_fields(self, self.where)
        self.loss = loss_terms(self.loss)
        self.ohem = ohem_settings(self.ohem)
        if self.min_lr > self.lr:
            raise UserError(f"train.min_lr {self.min_lr} is larger than train.lr {self.lr}")
        if self.ohem is not None and self.ohem.thresh is None \
                and not any(isinstance(t, CrossEntropyTerm) for t in self.loss):
            raise UserError("train.ohem.thresh: null ranks pixels by the cross_entropy terms' loss, but train.loss "
                            "has no cross_entropy term; give a thresh")

    def loss_terms(self) -> list[LossTerm]:
        """``loss`` as the criterion runs it (``avg_non_ignore`` of cross-entropy terms filled in)."""
        return with_defaults(self.loss, self.avg_non_ignore)


@dataclass
class EvalSettings:
    """``eval``: how evaluation (during training and by ssformer eval) runs the model."""

    where: ClassVar[str] = "eval."

    split: str | None = setting(None, optional(STRING), "null: data.val_split")
    mode: str = setting("whole", one_of(EVAL_MODES), "whole image, or sliding windows")
    crop_size: list[int] = setting([512, 512], PAIR, "slide window (height, width)", pair=True)
    stride: list[int] = setting([341, 341], PAIR, "slide step (height, width)", pair=True)
    tta: bool = setting(False, BOOL, "multi-scale and flip test-time augmentation")
    scales: list[float] = setting([0.5, 0.75, 1.0, 1.25, 1.5, 1.75], list_of(number_in(0, low_open=True)),
                                  "TTA scale factors")
    flip: bool = setting(True, BOOL, "TTA adds horizontal flips")
    num_workers: int = setting(2, int_at_least(0), "DataLoader worker processes")

    def __post_init__(self) -> None:
        check_fields(self, self.where)


@dataclass
class TrainingConfig:
    """A whole experiment; ``to_dict()`` is the YAML/recipe form every model carries."""

    model: ModelSettings = section(ModelSettings, "the network")
    data: DataSettings = section(DataSettings, "the dataset")
    train: TrainSettings = section(TrainSettings, "the optimisation")
    eval: EvalSettings = section(EvalSettings, "the evaluation")
    work_dir: str | None = setting(None, optional(STRING), "checkpoints, logs and model/ (or --work-dir)")

    def __post_init__(self) -> None:
        check_fields(self)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> TrainingConfig:
        """From a complete dict (every key present: defaults merged in, as :func:`load_config` does)."""
        return _build(cls, values)


def _build(cls: type, values: dict[str, Any]) -> Any:
    return cls(**{f.name: _build(f.metadata["section"], values[f.name]) if "section" in f.metadata
                  else copy.deepcopy(values[f.name]) for f in fields(cls)})


def leaves(cls: type = TrainingConfig, prefix: str = "") -> Iterator[tuple[str, Field]]:
    """(dotted key, field) of every key, sections expanded, in declaration order."""
    for f in fields(cls):
        if "section" in f.metadata:
            yield from leaves(f.metadata["section"], f"{prefix}{f.name}.")
        else:
            yield f"{prefix}{f.name}", f


DEFAULTS: dict[str, Any] = TrainingConfig().to_dict()  # derived from the fields above, for merging


def reference_table() -> str:
    """Every key as a markdown table (key, default, allowed values, meaning): docs/training.md."""
    def inline(value: Any) -> str:
        text = yaml.safe_dump(value, default_flow_style=True, width=10**6, sort_keys=False).strip()
        return text.removesuffix("...").strip()
    rows = ["| key | default | allowed | meaning |", "|---|---|---|---|"]
    for key, f in leaves():
        allowed = f.metadata["allowed"][1] if f.metadata["allowed"] else "see [Losses](#losses)"
        default: Any = DEFAULTS
        for part in key.split("."):
            default = default[part]
        rows.append(f"| `{key}` | `{inline(default)}` | {allowed} | {f.metadata['doc']} |")
    return "\n".join(rows) + "\n"


def config_dir() -> Path:
    """The folder of the shipped recipes (package data ``ssformer/configs``)."""
    return Path(str(resources.files("ssformer") / "configs"))


def sample_root() -> Path:
    """The synthetic sample dataset shipped with the package (package data ``ssformer/data/sample``)."""
    return Path(str(resources.files("ssformer") / "data" / "sample"))


def resolve_config_path(name: str | os.PathLike) -> Path:
    """A YAML path, or the name of a shipped recipe (``camvid_cpu`` or ``camvid_cpu.yaml``)."""
    path = Path(name)
    if path.is_file():
        return path
    shipped = config_dir() / (path.name if path.suffix in (".yaml", ".yml") else f"{path.name}.yaml")
    if shipped.is_file() and len(path.parts) == 1:
        return shipped
    names = sorted(p.stem for p in config_dir().glob("*.yaml"))
    raise FileNotFoundError(f"config {str(name)!r} is neither a file nor a shipped recipe ({', '.join(names)})")


def _merge(base: dict[str, Any], update: dict[str, Any], where: str, open_keys: bool) -> dict[str, Any]:
    out = copy.deepcopy(base)
    for key, value in update.items():
        path = f"{where}.{key}" if where else key
        if key not in out and not open_keys:
            raise UserError(f"unknown config key {path!r}; known keys here: {', '.join(sorted(out))}")
        if isinstance(out.get(key), dict):
            value = {} if value is None else value  # an empty section (`eval:` alone) keeps the defaults
            if not isinstance(value, dict):
                raise UserError(f"config key {path!r} must be a mapping, got {value!r}")
            # data.options holds the dataset's own keyword options: any key, merged one by one
            out[key] = _merge(out[key], value, path, open_keys=key == "options")
        else:
            out[key] = coerce(copy.deepcopy(value))
    return out


def parse_override(text: str) -> tuple[list[str], Any]:
    """``a.b=c`` -> (["a", "b"], YAML value of c)."""
    if "=" not in text:
        raise UserError(f"--set expects key=value, got {text!r}")
    key, raw = text.split("=", 1)
    if not key or any(not part for part in key.split(".")):
        raise UserError(f"--set: bad key {key!r} in {text!r}")
    try:
        value = yaml.safe_load(raw) if raw.strip() else None
    except yaml.YAMLError as e:
        raise UserError(f"--set {key}: value {raw!r} is not valid YAML: {e}") from e
    return key.split("."), value


def options_as_overrides(options: dict[str, Any], keys: dict[str, str]) -> list[str]:
    """``--set`` strings for the command-line options given (not None): option name -> config key."""
    return [f"{key}={options[name]}" for name, key in keys.items() if options.get(name) is not None]


def _nest(keys: list[str], value: Any) -> dict[str, Any]:
    for key in reversed(keys):
        value = {key: value}
    return value


def load_config(path: str | os.PathLike | None = None, overrides: list[str] = (), base: dict[str, Any] | None = None,
                validate: bool = True, **section_updates: Any) -> TrainingConfig:
    """Defaults <- ``base`` (a config dict, e.g. a model's recipe) <- YAML file <- ``--set`` overrides
    <- keyword sections. Every value is checked as the sections are built; ``validate`` also checks
    the config against this machine (:func:`check_runnable`; ``False``: e.g. to print a recipe)."""
    config = copy.deepcopy(DEFAULTS)
    if base is not None:
        config = _merge(config, base, "", open_keys=False)
    if path is not None:
        config = _merge(config, _read_yaml(resolve_config_path(path)), "", open_keys=False)
    for text in overrides:
        keys, value = parse_override(text)
        config = _merge(config, _nest(keys, value), "", open_keys=False)
    for name, value in section_updates.items():
        config = _merge(config, {name: value}, "", open_keys=False)
    built = TrainingConfig.from_dict(config)
    if validate:
        check_runnable(built)
    return built


def _read_yaml(file: Path) -> dict[str, Any]:
    try:
        loaded = yaml.safe_load(file.read_text()) or {}
    except (yaml.YAMLError, UnicodeDecodeError) as e:
        raise UserError(f"config {file} is not valid YAML (UTF-8 text): {e}") from None
    if not isinstance(loaded, dict):
        raise UserError(f"config {file} must be a mapping of sections, got {type(loaded).__name__}")
    return loaded


def check_runnable(config: TrainingConfig) -> None:
    """What the values alone cannot say (before any work is done): the dataset is named and its
    folder, like the pretrained weights, is on this machine."""
    pretrained, data = config.model.pretrained, config.data
    if pretrained is not None and not Path(pretrained).exists():
        raise FileNotFoundError(f"model.pretrained: {pretrained} does not exist")
    if data.type is None:
        raise UserError("data.type is not set (camvid, ade20k, cityscapes, voc or folder)")
    if data.root is None:
        raise UserError("data.root is not set: give --data-root DIR or --set data.root=DIR")
    if not Path(data.root).is_dir():
        raise FileNotFoundError(f"data.root: {data.root} is not a directory")


def loss_settings(loss: list[LossTerm | dict[str, Any]], ohem: OhemSettings | dict[str, Any] | None = None,
                  avg_non_ignore: bool = False) -> tuple[list[LossTerm], OhemSettings | None]:
    """``train.loss`` and ``train.ohem`` checked and typed as in a config, for code that builds a
    criterion without a whole config (tests, benchmarks)."""
    train = TrainSettings(loss=list(loss), ohem=ohem, avg_non_ignore=avg_non_ignore)
    return train.loss_terms(), train.ohem
