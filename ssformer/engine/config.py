"""Experiment configs: typed sections whose fields carry their default, what they allow and a doc
line; YAML files merged over those defaults, ``--set a.b=c`` overrides, validation.

A config (:class:`TrainingConfig`) has five parts: ``model``, ``data``, ``train``, ``eval`` and
``work_dir``. Every key must be known (a typo is an error naming it) except those of ``data.options``,
the dataset class's own keyword options, which :func:`ssformer.data.build_dataset` checks (the trainer
calls it before any other work). The key table in docs/training.md is generated from the fields
below (``ssformer config keys``), so the defaults, the checks and the docs live in one place.
"""

from __future__ import annotations

import copy
import functools
import math
import os
import re
from collections.abc import Callable, Iterator
from dataclasses import MISSING, Field, asdict, dataclass, field, fields
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from ssformer.data.frequencies import CLASS_WEIGHT_METHODS
from ssformer.data.transforms import MAX_IMAGE_SIDE
from ssformer.errors import UserError
from ssformer.models.budget import Sizes, check_buildable
from ssformer.models.ssformer import VARIANTS

# --- what a key allows: a check and the words the error and the docs use ----------------------------
Check = Callable[[Any], bool]
Allowed = tuple[Check, str]


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    """A finite int or float (``.inf`` and ``.nan`` are YAML floats, never a usable setting)."""
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _int_at_least(low: int) -> Allowed:
    return (lambda v: _is_int(v) and v >= low), f"an integer >= {low}"


def _number_in(low: float, high: float | None = None, low_open: bool = False, high_open: bool = True) -> Allowed:
    def ok(v: Any) -> bool:
        if not _is_number(v) or v < low or (low_open and v == low):
            return False
        return high is None or v < high or (not high_open and v == high)
    bounds = f"{'(' if low_open else '['}{low}, {high}{')' if high_open else ']'}" if high is not None else None
    return ok, f"a number in {bounds}" if bounds else f"a number {'>' if low_open else '>='} {low}"


def _list_of(item: Allowed, length: int | None = None) -> Allowed:
    check, what = item
    ok = (lambda v: isinstance(v, (list, tuple)) and len(v) > 0 and (length is None or len(v) == length)
          and all(check(x) for x in v))
    return ok, f"a list of {length or 'one or more'} values, each {what}"


def _optional(item: Allowed) -> Allowed:
    return (lambda v: v is None or item[0](v)), f"null or {item[1]}"


def _one_of(choices: tuple[str, ...]) -> Allowed:
    return (lambda v: v in choices), "one of " + ", ".join(choices)


BOOL: Allowed = (lambda v: isinstance(v, bool)), "true or false"
STRING: Allowed = (lambda v: isinstance(v, str) and v != ""), "a non-empty string"
SPLITS: Allowed = (lambda v: STRING[0](v) or _list_of(STRING)[0](v)), "a split name or a list of them"
_SIDE: Allowed = (lambda v: _is_int(v) and 1 <= v <= MAX_IMAGE_SIDE), f"an integer in 1..{MAX_IMAGE_SIDE}"
PAIR: Allowed = ((lambda v: _SIDE[0](v) or _list_of(_SIDE, 2)[0](v)),
                 f"a positive int or two positive ints, each at most {MAX_IMAGE_SIDE}")
DEVICE: Allowed = ((lambda v: v in ("auto", "cpu", "cuda") or isinstance(v, str) and re.fullmatch(r"cuda:\d+", v)),
                   "auto, cpu, cuda or cuda:N")
AMP_MODES = ("none", "auto", "bf16", "fp16")
EVAL_MODES = ("whole", "slide")
# Loss term type -> its keys and their defaults (besides ``type`` and ``weight``, default 1.0).
LOSS_KEYS: dict[str, dict[str, Any]] = {
    "cross_entropy": {"class_weight": None, "avg_non_ignore": None},  # None: train.avg_non_ignore
    "dice": {"class_weight": None, "smooth": 1.0, "exponent": 2.0, "exclude_ignored": False},
    "focal": {"class_weight": None, "gamma": 2.0, "alpha": 0.5},
    "lovasz": {"class_weight": None, "classes": "present", "per_image": False},
}


def setting(default: Any, allowed: Allowed | None, doc: str, pair: bool = False) -> Any:
    """A config key: its default (copied for every config), what it allows (None: checked by its own
    validator) and one line of docs; ``pair``: a single int ``n`` means ``[n, n]``."""
    return field(default_factory=functools.partial(copy.deepcopy, default),
                 metadata={"allowed": allowed, "doc": doc, "pair": pair})


def section(cls: type, doc: str) -> Any:
    return field(default_factory=cls, metadata={"section": cls, "doc": doc})


# --- the sections -------------------------------------------------------------------------------------
@dataclass
class ModelSettings:
    """``model``: the network to build and its initial weights."""

    variant: str | None = setting(None, _optional(_one_of(tuple(sorted(VARIANTS)))),
                                  "a named size; null: the explicit embed_dim, depths and num_heads")
    embed_dim: int = setting(96, _int_at_least(1), "channels of the first Swin stage (C)")
    depths: list[int] = setting([2, 2, 6, 2], _list_of(_int_at_least(1)), "Swin blocks per stage")
    num_heads: list[int] = setting([3, 6, 12, 24], _list_of(_int_at_least(1)),
                                   "attention heads per stage (one per entry of depths)")
    window_size: int = setting(7, _int_at_least(1), "attention window side, in tokens")
    decoder_dim: int = setting(256, _int_at_least(1), "channels of the all-MLP decoder")
    drop_path_rate: float = setting(0.2, _number_in(0, 1), "stochastic depth, rising linearly to this over the blocks")
    dropout: float = setting(0.1, _number_in(0, 1), "dropout before the classifier")
    mlp_ratio: float = setting(4.0, _number_in(0, low_open=True), "hidden width of the Swin MLPs / channels")
    num_classes: int | None = setting(None, _optional(_int_at_least(1)), "null: the training dataset's classes")
    pretrained: str | None = setting(None, _optional(STRING), "encoder or whole-model weights in any format of "
                                     "docs/checkpoints.md, loaded with strict=False")
    fast_path: bool | None = setting(None, _optional(BOOL), "the fast CPU kernels (true) or the plain formulation "
                                     "(false; same numbers, slower); null: SSFORMER_FAST_PATH, default on")


@dataclass
class TrainTransformSettings:
    """``data.train_transform``: the official training pipeline's settings."""

    img_scale: list[int] = setting([2048, 512], PAIR, "keep-ratio rescale target (long side, short side)", pair=True)
    ratio_range: list[float] | None = setting([0.5, 2.0], _optional(_list_of(_number_in(0, low_open=True), 2)),
                                              "random rescale factors [low, high]; null: none")
    crop_size: list[int] = setting([512, 512], PAIR, "random crop (height, width)", pair=True)
    cat_max_ratio: float = setting(0.75, _number_in(0, 1, low_open=True, high_open=False),
                                   "a crop is redrawn (up to 10 times) while one class covers more than this")
    flip_prob: float = setting(0.5, _number_in(0, 1, high_open=False), "horizontal flip probability")
    photometric: bool = setting(True, BOOL, "mmseg's PhotoMetricDistortion (brightness, contrast, saturation, hue)")


@dataclass
class TestTransformSettings:
    """``data.test_transform``: the resize before inference (logits go back to the label size)."""

    img_scale: list[int] | None = setting([2048, 512], _optional(PAIR),
                                          "keep-ratio test resize (long side, short side); null: none", pair=True)


@dataclass
class DataSettings:
    """``data``: which dataset, where, which splits, and the pipelines."""

    type: str | None = setting(None, _optional(STRING), "camvid, ade20k, cityscapes, voc or folder")
    root: str | None = setting(None, _optional(STRING), "the dataset folder (or --data-root)")
    train_split: str | list[str] = setting("train", SPLITS, "the training split(s), concatenated")
    val_split: str = setting("val", STRING, "evaluated during training and by default by ssformer eval")
    train_transform: TrainTransformSettings = section(TrainTransformSettings, "training pipeline")
    test_transform: TestTransformSettings = section(TestTransformSettings, "test pipeline")
    options: dict[str, Any] = setting({}, ((lambda v: isinstance(v, dict)), "a mapping"), "the dataset class's own options (e.g. class_names), merged key by key; "
                                      "docs/datasets.md")


@dataclass
class TrainSettings:
    """``train``: optimiser, schedule, loss, precision, devices, logging and checkpoints."""

    iters: int = setting(160000, _int_at_least(1), "optimiser updates")
    batch_size: int = setting(8, _int_at_least(1), "images per process and micro-batch")
    grad_accum: int = setting(1, _int_at_least(1), "micro-batches per update")
    num_workers: int = setting(2, _int_at_least(0), "DataLoader worker processes")
    lr: float = setting(6.0e-5, _number_in(0, low_open=True), "peak learning rate (AdamW)")
    weight_decay: float = setting(0.01, _number_in(0), "AdamW weight decay")
    betas: list[float] = setting([0.9, 0.999], _list_of(_number_in(0, 1), 2), "AdamW betas")
    eps: float = setting(1.0e-8, _number_in(0, low_open=True), "AdamW eps")
    no_decay_keys: list[str] = setting(["absolute_pos_embed", "relative_position_bias_table", "norm"],
                                       _list_of(STRING), "parameters whose name holds one of these get no decay")
    warmup_iters: int = setting(1500, _int_at_least(0), "linear warmup length")
    warmup_ratio: float = setting(1.0e-6, _number_in(0, 1, low_open=True, high_open=False),
                                  "warmup starts at lr * this")
    power: float = setting(1.0, _number_in(0), "poly schedule power")
    min_lr: float = setting(0.0, _number_in(0), "poly schedule floor")
    avg_non_ignore: bool = setting(False, BOOL, "default of the cross_entropy terms' avg_non_ignore")
    loss: list[dict[str, Any]] = setting([{"type": "cross_entropy"}], None,
                                         "weighted sum of loss terms (see Losses below)")
    ohem: dict[str, Any] | None = setting(None, None, "{thresh, min_kept}: online hard example mining (see Losses)")
    clip_grad: float | None = setting(None, _optional(_number_in(0, low_open=True)), "max gradient norm; null: none")
    amp: str = setting("none", _one_of(AMP_MODES), "autocast: auto picks bf16 only where it is native")
    sync_bn: bool = setting(False, BOOL, "SyncBatchNorm across processes (CUDA)")
    bn_eval: bool = setting(False, BOOL, "keep BatchNorm statistics frozen")
    gradient_checkpointing: bool = setting(False, BOOL, "recompute Swin blocks in the backward pass")
    seed: int = setting(0, _int_at_least(0), "initial weights, data order and augmentation")
    device: str = setting("auto", DEVICE, "auto: CUDA when present; under torchrun each process takes LOCAL_RANK")
    num_threads: int | None = setting(None, _optional(_int_at_least(1)),
                                      "CPU threads for torch (more than the CPUs: cut to them, with a note); "
                                      "null: torch's default")
    log_interval: int = setting(50, _int_at_least(1), "iterations between log lines")
    eval_interval: int = setting(16000, _int_at_least(1), "iterations between evaluations (and at the end)")
    checkpoint_interval: int = setting(16000, _int_at_least(1), "iterations between latest.pt (and iter_N.pt) writes")
    keep_checkpoints: int = setting(3, _int_at_least(0), "newest iter_N.pt files kept")
    progress: bool = setting(True, BOOL, "progress bar")


@dataclass
class EvalSettings:
    """``eval``: how evaluation (during training and by ssformer eval) runs the model."""

    split: str | None = setting(None, _optional(STRING), "null: data.val_split")
    mode: str = setting("whole", _one_of(EVAL_MODES), "whole image, or sliding windows")
    crop_size: list[int] = setting([512, 512], PAIR, "slide window (height, width)", pair=True)
    stride: list[int] = setting([341, 341], PAIR, "slide step (height, width)", pair=True)
    tta: bool = setting(False, BOOL, "multi-scale and flip test-time augmentation")
    scales: list[float] = setting([0.5, 0.75, 1.0, 1.25, 1.5, 1.75], _list_of(_number_in(0, low_open=True)),
                                  "TTA scale factors")
    flip: bool = setting(True, BOOL, "TTA adds horizontal flips")
    num_workers: int = setting(2, _int_at_least(0), "DataLoader worker processes")


@dataclass
class TrainingConfig:
    """A whole experiment; ``to_dict()`` is the YAML/recipe form every model carries."""

    model: ModelSettings = section(ModelSettings, "the network")
    data: DataSettings = section(DataSettings, "the dataset")
    train: TrainSettings = section(TrainSettings, "the optimisation")
    eval: EvalSettings = section(EvalSettings, "the evaluation")
    work_dir: str | None = setting(None, _optional(STRING), "checkpoints, logs and model/ (or --work-dir)")

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


def _default(f: Field) -> Any:
    return f.default_factory() if f.default_factory is not MISSING else f.default


DEFAULTS: dict[str, Any] = TrainingConfig().to_dict()  # derived from the fields above, for merging


def reference_table() -> str:
    """Every key as a markdown table (key, default, allowed values, meaning): docs/training.md."""
    def inline(value: Any) -> str:
        text = yaml.safe_dump(value, default_flow_style=True, width=10**6).strip()
        return text.removesuffix("...").strip()
    rows = ["| key | default | allowed | meaning |", "|---|---|---|---|"]
    for key, f in leaves():
        allowed = f.metadata["allowed"][1] if f.metadata["allowed"] else "see [Losses](#losses)"
        rows.append(f"| `{key}` | `{inline(_default(f))}` | {allowed} | {f.metadata['doc']} |")
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


_EXPONENT_FLOAT = re.compile(r"^[+-]?(\d+\.?\d*|\.\d+)[eE][+-]?\d+$")


def _coerce(value: Any) -> Any:
    """YAML 1.1 reads ``1e-3`` (no dot) as a string; treat such strings as the numbers they spell."""
    if isinstance(value, str) and _EXPONENT_FLOAT.match(value):
        return float(value)
    if isinstance(value, list):
        return [_coerce(v) for v in value]
    return value


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
            out[key] = _coerce(copy.deepcopy(value))
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
    <- keyword sections; then validated (``validate=False`` only merges, e.g. to print a recipe)."""
    config = copy.deepcopy(DEFAULTS)
    if base is not None:
        config = _merge(config, base, "", open_keys=False)
    if path is not None:
        file = resolve_config_path(path)
        try:
            loaded = yaml.safe_load(file.read_text()) or {}
        except (yaml.YAMLError, UnicodeDecodeError) as e:
            raise UserError(f"config {file} is not valid YAML (UTF-8 text): {e}") from None
        if not isinstance(loaded, dict):
            raise UserError(f"config {file} must be a mapping of sections, got {type(loaded).__name__}")
        config = _merge(config, loaded, "", open_keys=False)
    for text in overrides:
        keys, value = parse_override(text)
        config = _merge(config, _nest(keys, value), "", open_keys=False)
    for name, value in section_updates.items():
        config = _merge(config, {name: value}, "", open_keys=False)
    if validate:
        validate_config(config)
    return TrainingConfig.from_dict(config)


def check_types(config: dict[str, Any]) -> None:
    """One line naming the key, the value and what is allowed, for the first key of the wrong type;
    a single int for a (height, width) pair becomes ``[n, n]``."""
    for key, f in leaves():
        *parents, name = key.split(".")
        holder: Any = config
        for part in parents:
            holder = holder[part]
        value, allowed = holder[name], f.metadata["allowed"]
        if allowed is not None and not allowed[0](value):
            raise UserError(f"{key} must be {allowed[1]}, got {value!r}")
        if f.metadata["pair"] and _is_int(value):
            holder[name] = [value, value]


def validate_config(config: dict[str, Any]) -> None:
    """Raise ValueError naming the key for impossible settings (before any work is done)."""
    check_types(config)
    model, data, train = config["model"], config["data"], config["train"]
    if len(model["depths"]) != len(model["num_heads"]):
        raise UserError(f"model.depths {model['depths']} and model.num_heads {model['num_heads']} differ in length")
    _check_model_size(model)
    if model["pretrained"] is not None and not Path(model["pretrained"]).exists():
        raise FileNotFoundError(f"model.pretrained: {model['pretrained']} does not exist")

    if data["type"] is None:
        raise UserError("data.type is not set (camvid, ade20k, cityscapes, voc or folder)")
    if data["root"] is None:
        raise UserError("data.root is not set: give --data-root DIR or --set data.root=DIR")
    if not Path(data["root"]).is_dir():
        raise FileNotFoundError(f"data.root: {data['root']} is not a directory")
    tt = data["train_transform"]
    if tt["ratio_range"] is not None and tt["ratio_range"][0] > tt["ratio_range"][1]:
        raise UserError(f"data.train_transform.ratio_range must be [low, high] with low <= high, "
                        f"got {tt['ratio_range']!r}")
    largest = max(tt["img_scale"]) * (tt["ratio_range"][1] if tt["ratio_range"] else 1.0)
    if min(tt["crop_size"]) > largest:
        raise UserError(f"data.train_transform.crop_size {tt['crop_size']} is larger than any rescaled image "
                        f"(img_scale {tt['img_scale']} x ratio up to {tt['ratio_range']})")
    if train["min_lr"] > train["lr"]:
        raise UserError(f"train.min_lr {train['min_lr']} is larger than train.lr {train['lr']}")
    _validate_loss(train)


def _check_model_size(model: dict[str, Any]) -> None:
    """Refuse, naming the key, a model too big to build (``model.embed_dim=1000000000``), before any work."""
    named = VARIANTS[model["variant"]] if model["variant"] is not None else model
    sizes = Sizes(embed_dim=named["embed_dim"], depths=tuple(named["depths"]), num_heads=tuple(named["num_heads"]),
                  window_size=model["window_size"], decoder_dim=model["decoder_dim"],
                  num_classes=model["num_classes"] or 1, mlp_ratio=model["mlp_ratio"])
    check_buildable(sizes, prefix="model.")


def _number(section: dict, key: str, where: str, low: float = 0.0, strict: bool = False) -> None:
    value = section[key]
    if not _is_number(value) or value < low or (strict and value == low):
        raise UserError(f"{where}.{key} must be a number {'>' if strict else '>='} {low}, got {value!r}")


def loss_settings(loss: list[dict[str, Any]], ohem: dict[str, Any] | None = None, avg_non_ignore: bool = False
                  ) -> tuple[list[dict[str, Any]], dict[str, Any] | None]:
    """``train.loss`` and ``train.ohem`` checked and filled in as in a config, for code that builds a
    criterion without a whole config (tests, benchmarks)."""
    train = {"loss": copy.deepcopy(loss), "ohem": copy.deepcopy(ohem), "avg_non_ignore": avg_non_ignore}
    _validate_loss(train)
    return train["loss"], train["ohem"]


def _validate_loss(train: dict[str, Any]) -> None:
    """Check ``train.loss`` / ``train.ohem`` and fill in every term's defaults (in place)."""
    terms = train["loss"]
    if not isinstance(terms, list) or not terms:
        raise UserError(f"train.loss must be a non-empty list of terms like [{{type: cross_entropy}}], got {terms!r}")
    filled = []
    for i, term in enumerate(terms):
        where = f"train.loss[{i}]"
        if not isinstance(term, dict) or term.get("type") not in LOSS_KEYS:
            got = term.get("type") if isinstance(term, dict) else term
            raise UserError(f"{where}.type must be one of {', '.join(LOSS_KEYS)}, got {got!r}")
        allowed = {"type": term["type"], "weight": 1.0, **LOSS_KEYS[term["type"]]}
        unknown = sorted(set(term) - set(allowed))
        if unknown:
            raise UserError(f"unknown key {where}.{unknown[0]} for type {term['type']}; known: {', '.join(allowed)}")
        term = {**allowed, **term}
        term["weight"] = _coerce(term["weight"])
        if not _is_number(term["weight"]) or term["weight"] < 0:
            raise UserError(f"{where}.weight must be a number >= 0, got {term['weight']!r}")
        weight = _coerce(term["class_weight"])
        if not (weight is None or weight in CLASS_WEIGHT_METHODS or isinstance(weight, list) and weight
                and all(_is_number(w) and w >= 0 for w in weight)):
            raise UserError(f"{where}.class_weight must be null, {' or '.join(CLASS_WEIGHT_METHODS)} or a list of "
                            f"numbers >= 0 (one per class), got {weight!r}")
        term["class_weight"] = weight
        if term["type"] == "cross_entropy":
            if term["avg_non_ignore"] is None:
                term["avg_non_ignore"] = train["avg_non_ignore"]
            if not isinstance(term["avg_non_ignore"], bool):
                raise UserError(f"{where}.avg_non_ignore must be true or false, got {term['avg_non_ignore']!r}")
        for key, low, strict in (("smooth", 0.0, False), ("exponent", 0.0, True), ("gamma", 0.0, False)):
            if key in term:
                term[key] = _coerce(term[key])
                _number(term, key, where, low, strict)
        if "alpha" in term:
            alpha = term["alpha"] = _coerce(term["alpha"])
            values = alpha if isinstance(alpha, list) and alpha else [alpha]
            if not all(_is_number(a) and 0 <= a <= 1 for a in values):
                raise UserError(f"{where}.alpha must be a number in [0, 1] or one such number per class, got {alpha!r}")
        if "classes" in term and term["classes"] not in ("present", "all") and not (
                isinstance(term["classes"], list) and term["classes"]
                and all(isinstance(c, int) and not isinstance(c, bool) and c >= 0 for c in term["classes"])):
            raise UserError(f"{where}.classes must be present, all or a list of class ids, got {term['classes']!r}")
        for key in ("per_image", "exclude_ignored"):
            if key in term and not isinstance(term[key], bool):
                raise UserError(f"{where}.{key} must be true or false, got {term[key]!r}")
        filled.append(term)
    train["loss"] = filled

    ohem = train["ohem"]
    if ohem is None:
        return
    if not isinstance(ohem, dict):
        raise UserError(f"train.ohem must be null or a mapping {{thresh: 0.7, min_kept: 100000}}, "  # noqa: TRY004
                        f"got {ohem!r}")  # (config errors are ValueErrors: the CLI prints them as one line)
    unknown = sorted(set(ohem) - {"thresh", "min_kept"})
    if unknown:
        raise UserError(f"unknown key train.ohem.{unknown[0]}; known: thresh, min_kept")
    ohem = train["ohem"] = {"thresh": None, "min_kept": 100000, **{k: _coerce(v) for k, v in ohem.items()}}
    if ohem["thresh"] is not None and not (_is_number(ohem["thresh"]) and 0 < ohem["thresh"] <= 1):
        raise UserError(f"train.ohem.thresh must be null or a probability in (0, 1], got {ohem['thresh']!r}")
    if isinstance(ohem["min_kept"], bool) or not isinstance(ohem["min_kept"], int) or ohem["min_kept"] < 2:
        raise UserError(f"train.ohem.min_kept must be an integer >= 2 (pixels per image), got {ohem['min_kept']!r}")
    if ohem["thresh"] is None and not any(t["type"] == "cross_entropy" for t in filled):
        raise UserError("train.ohem.thresh: null ranks pixels by the cross_entropy terms' loss, but train.loss "
                        "has no cross_entropy term; give a thresh")
