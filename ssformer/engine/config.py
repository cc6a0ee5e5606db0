"""Experiment configs: YAML files merged over built-in defaults, ``--set a.b=c`` overrides, validation.

A config has five sections: ``model``, ``data``, ``train``, ``eval`` and ``work_dir``. Every key of
``model``, ``train`` and ``eval`` must be known (a typo is an error naming it); the ``data`` section's
dataset options are checked by :func:`ssformer.data.build_dataset`, which the trainer calls before
any other work.
"""

from __future__ import annotations

import copy
import os
import re
from collections.abc import Callable
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

DEFAULTS: dict[str, Any] = {
    "model": {
        "variant": None,          # a create_model name, or None to use the explicit sizes below
        "embed_dim": 96, "depths": [2, 2, 6, 2], "num_heads": [3, 6, 12, 24], "window_size": 7,
        "decoder_dim": 256, "drop_path_rate": 0.2, "dropout": 0.1, "mlp_ratio": 4.0,
        "num_classes": None,      # None: the training dataset's number of classes
        "pretrained": None,       # encoder (or whole-model) weights, loaded with strict=False
    },
    "data": {
        "type": None, "root": None,
        "train_split": "train",   # a split name or a list of split names (concatenated)
        "val_split": "val",       # evaluated during training and by default by `ssformer eval`
        "train_transform": {"img_scale": [2048, 512], "ratio_range": [0.5, 2.0], "crop_size": [512, 512],
                            "cat_max_ratio": 0.75, "flip_prob": 0.5, "photometric": True},
        "test_transform": {"img_scale": [2048, 512]},
        "options": {},            # extra keyword options of the dataset class (e.g. class_names)
    },
    "train": {
        "iters": 160000, "batch_size": 8, "grad_accum": 1, "num_workers": 2,
        "lr": 6.0e-5, "weight_decay": 0.01, "betas": [0.9, 0.999], "eps": 1.0e-8,
        "no_decay_keys": ["absolute_pos_embed", "relative_position_bias_table", "norm"],
        "warmup_iters": 1500, "warmup_ratio": 1.0e-6, "power": 1.0, "min_lr": 0.0,
        "avg_non_ignore": False,  # the default of the cross_entropy terms' avg_non_ignore
        "loss": [{"type": "cross_entropy"}],  # weighted sum of terms, see LOSS_KEYS and docs/training.md
        "ohem": None,             # {thresh: float or null, min_kept: int}: OHEM pixel selection
        "clip_grad": None, "amp": "none", "sync_bn": False, "bn_eval": False,
        "gradient_checkpointing": False, "seed": 0, "device": "auto",
        "num_threads": None,      # CPU threads for torch (None: torch's default); 1 is fastest on a busy CPU
        "log_interval": 50, "eval_interval": 16000, "checkpoint_interval": 16000, "keep_checkpoints": 3,
        "progress": True,
    },
    "eval": {
        "split": None,            # None: data.val_split
        "mode": "whole", "crop_size": [512, 512], "stride": [341, 341],
        "tta": False, "scales": [0.5, 0.75, 1.0, 1.25, 1.5, 1.75], "flip": True,
        "num_workers": 2,
    },
    "work_dir": None,
}

AMP_MODES = ("none", "auto", "bf16", "fp16")
# Loss term type -> its keys and their defaults (besides ``type`` and ``weight``, default 1.0).
LOSS_KEYS: dict[str, dict[str, Any]] = {
    "cross_entropy": {"class_weight": None, "avg_non_ignore": None},  # None: train.avg_non_ignore
    "dice": {"class_weight": None, "smooth": 1.0, "exponent": 2.0},
    "focal": {"class_weight": None, "gamma": 2.0, "alpha": 0.5},
    "lovasz": {"class_weight": None, "classes": "present", "per_image": False},
}
CLASS_WEIGHT_METHODS = ("median_frequency", "enet")
EVAL_MODES = ("whole", "slide")


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
            raise ValueError(f"unknown config key {path!r}; known keys here: {', '.join(sorted(out))}")
        if isinstance(out.get(key), dict) and value is not None:
            if not isinstance(value, dict):
                raise ValueError(f"config key {path!r} must be a mapping, got {value!r}")
            # data.options holds the dataset's own keyword options: any key, merged one by one
            out[key] = _merge(out[key], value, path, open_keys=key == "options")
        else:
            out[key] = _coerce(copy.deepcopy(value))
    return out


def parse_override(text: str) -> tuple[list[str], Any]:
    """``a.b=c`` -> (["a", "b"], YAML value of c)."""
    if "=" not in text:
        raise ValueError(f"--set expects key=value, got {text!r}")
    key, raw = text.split("=", 1)
    if not key or any(not part for part in key.split(".")):
        raise ValueError(f"--set: bad key {key!r} in {text!r}")
    try:
        value = yaml.safe_load(raw) if raw.strip() else None
    except yaml.YAMLError as e:
        raise ValueError(f"--set {key}: value {raw!r} is not valid YAML: {e}") from e
    return key.split("."), value


def options_as_overrides(options: dict[str, Any], keys: dict[str, str]) -> list[str]:
    """``--set`` strings for the command-line options given (not None): option name -> config key."""
    return [f"{key}={options[name]}" for name, key in keys.items() if options.get(name) is not None]


def _nest(keys: list[str], value: Any) -> dict[str, Any]:
    for key in reversed(keys):
        value = {key: value}
    return value


def load_config(path: str | os.PathLike | None = None, overrides: list[str] = (), base: dict[str, Any] | None = None,
                validate: bool = True, **section_updates: Any) -> dict[str, Any]:
    """Defaults <- ``base`` (a config dict, e.g. a model's recipe) <- YAML file <- ``--set`` overrides
    <- keyword sections; then validated (``validate=False`` only merges, e.g. to print a recipe)."""
    config = copy.deepcopy(DEFAULTS)
    if base is not None:
        config = _merge(config, base, "", open_keys=False)
    if path is not None:
        file = resolve_config_path(path)
        try:
            loaded = yaml.safe_load(file.read_text()) or {}
        except yaml.YAMLError as e:
            raise ValueError(f"config {file} is not valid YAML: {e}") from e
        if not isinstance(loaded, dict):
            raise ValueError(f"config {file} must be a mapping of sections, got {type(loaded).__name__}")
        config = _merge(config, loaded, "", open_keys=False)
    for text in overrides:
        keys, value = parse_override(text)
        config = _merge(config, _nest(keys, value), "", open_keys=False)
    for section, value in section_updates.items():
        config = _merge(config, {section: value}, "", open_keys=False)
    if validate:
        validate_config(config)
    return config


def _positive_int(section: dict, key: str, where: str, allow_zero: bool = False) -> None:
    value = section[key]
    if isinstance(value, bool) or not isinstance(value, int) or value < (0 if allow_zero else 1):
        raise ValueError(f"{where}.{key} must be an integer >= {0 if allow_zero else 1}, got {value!r}")


def _pair(section: dict, key: str, where: str) -> None:
    value = section[key]
    if isinstance(value, int) and not isinstance(value, bool):
        section[key] = value = [value, value]
    if not (isinstance(value, (list, tuple)) and len(value) == 2
            and all(isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in value)):
        raise ValueError(f"{where}.{key} must be a positive int or two positive ints, got {value!r}")


def _number(section: dict, key: str, where: str, low: float = 0.0, strict: bool = False) -> None:
    value = section[key]
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value < low or (strict and value == low):
        raise ValueError(f"{where}.{key} must be a number {'>' if strict else '>='} {low}, got {value!r}")


# --- types: every key's allowed values, checked before anything reads them --------------------------
Check = Callable[[Any], bool]


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _int_at_least(low: int) -> tuple[Check, str]:
    return (lambda v: _is_int(v) and v >= low), f"an integer >= {low}"


def _number_in(low: float, high: float | None = None, low_open: bool = False, high_open: bool = True
               ) -> tuple[Check, str]:
    def ok(v: Any) -> bool:
        if not _is_number(v) or v < low or (low_open and v == low):
            return False
        return high is None or v < high or (not high_open and v == high)
    bounds = f"{'(' if low_open else '['}{low}, {high}{')' if high_open else ']'}" if high is not None else None
    return ok, f"a number in {bounds}" if bounds else f"a number {'>' if low_open else '>='} {low}"


def _list_of(item: tuple[Check, str], length: int | None = None) -> tuple[Check, str]:
    check, what = item
    ok = (lambda v: isinstance(v, (list, tuple)) and len(v) > 0 and (length is None or len(v) == length)
          and all(check(x) for x in v))
    return ok, f"a list of {length or 'one or more'} values, each {what}"


def _optional(item: tuple[Check, str]) -> tuple[Check, str]:
    return (lambda v: v is None or item[0](v)), f"null or {item[1]}"


BOOL: tuple[Check, str] = (lambda v: isinstance(v, bool)), "true or false"
STRING: tuple[Check, str] = (lambda v: isinstance(v, str) and v != ""), "a non-empty string"
SPLITS: tuple[Check, str] = (lambda v: STRING[0](v) or _list_of(STRING)[0](v)), "a split name or a list of them"
TYPES: dict[str, tuple[Check, str]] = {
    "model.embed_dim": _int_at_least(1), "model.window_size": _int_at_least(1), "model.decoder_dim": _int_at_least(1),
    "model.depths": _list_of(_int_at_least(1)), "model.num_heads": _list_of(_int_at_least(1)),
    "model.drop_path_rate": _number_in(0, 1), "model.dropout": _number_in(0, 1),
    "model.mlp_ratio": _number_in(0, low_open=True), "model.num_classes": _optional(_int_at_least(1)),
    "model.variant": _optional(STRING), "model.pretrained": _optional(STRING),
    "data.type": _optional(STRING), "data.train_split": SPLITS, "data.val_split": STRING,
    "data.train_transform.ratio_range": _optional(_list_of(_number_in(0, low_open=True), 2)),
    "data.train_transform.cat_max_ratio": _number_in(0, 1, low_open=True, high_open=False),
    "data.train_transform.flip_prob": _number_in(0, 1, high_open=False), "data.train_transform.photometric": BOOL,
    "train.iters": _int_at_least(1), "train.batch_size": _int_at_least(1), "train.grad_accum": _int_at_least(1),
    "train.num_workers": _int_at_least(0), "train.lr": _number_in(0, low_open=True),
    "train.weight_decay": _number_in(0), "train.betas": _list_of(_number_in(0, 1), 2),
    "train.eps": _number_in(0, low_open=True), "train.no_decay_keys": _list_of(STRING),
    "train.warmup_iters": _int_at_least(0), "train.warmup_ratio": _number_in(0, 1, low_open=True, high_open=False),
    "train.power": _number_in(0), "train.min_lr": _number_in(0), "train.avg_non_ignore": BOOL,
    "train.clip_grad": _optional(_number_in(0, low_open=True)), "train.sync_bn": BOOL, "train.bn_eval": BOOL,
    "train.gradient_checkpointing": BOOL, "train.seed": _int_at_least(0),
    "train.num_threads": _optional(_int_at_least(1)), "train.log_interval": _int_at_least(1),
    "train.eval_interval": _int_at_least(1), "train.checkpoint_interval": _int_at_least(1),
    "train.keep_checkpoints": _int_at_least(0), "train.progress": BOOL,
    "eval.split": _optional(STRING), "eval.tta": BOOL, "eval.flip": BOOL,
    "eval.scales": _list_of(_number_in(0, low_open=True)), "eval.num_workers": _int_at_least(0),
}


def check_types(config: dict[str, Any]) -> None:
    """One line naming the key, the value and what is allowed, for the first key of the wrong type."""
    for path, (ok, allowed) in TYPES.items():
        value: Any = config
        for part in path.split("."):
            value = value[part]
        if not ok(value):
            raise ValueError(f"{path} must be {allowed}, got {value!r}")
    if not isinstance(config["data"]["options"], dict):
        raise ValueError(f"data.options must be a mapping of dataset options, got {config['data']['options']!r}")


def validate_config(config: dict[str, Any]) -> None:
    """Raise ValueError naming the key for impossible settings (before any work is done)."""
    check_types(config)
    model, data, train, ev = config["model"], config["data"], config["train"], config["eval"]
    for key in ("embed_dim", "window_size", "decoder_dim"):
        _positive_int(model, key, "model")
    if model["num_classes"] is not None:
        _positive_int(model, "num_classes", "model")
    if len(model["depths"]) != len(model["num_heads"]):
        raise ValueError(f"model.depths {model['depths']} and model.num_heads {model['num_heads']} differ in length")
    for key in ("drop_path_rate", "dropout"):
        if not 0 <= model[key] < 1:
            raise ValueError(f"model.{key} must be in [0, 1), got {model[key]!r}")
    if model["pretrained"] is not None and not Path(model["pretrained"]).exists():
        raise FileNotFoundError(f"model.pretrained: {model['pretrained']} does not exist")

    if data["type"] is None:
        raise ValueError("data.type is not set (camvid, ade20k, cityscapes, voc or folder)")
    if data["root"] is None:
        raise ValueError("data.root is not set: give --data-root DIR or --set data.root=DIR")
    if not Path(data["root"]).is_dir():
        raise FileNotFoundError(f"data.root: {data['root']} is not a directory")
    tt = data["train_transform"]
    unknown = set(tt) - set(DEFAULTS["data"]["train_transform"])
    if unknown:
        raise ValueError(f"unknown config key(s) data.train_transform.{', '.join(sorted(unknown))}")
    _pair(tt, "crop_size", "data.train_transform")
    _pair(tt, "img_scale", "data.train_transform")
    if tt["ratio_range"] is not None and not (len(tt["ratio_range"]) == 2 and 0 < tt["ratio_range"][0] <= tt["ratio_range"][1]):
        raise ValueError(f"data.train_transform.ratio_range must be [low, high] with 0 < low <= high, "
                         f"got {tt['ratio_range']!r}")
    largest = max(tt["img_scale"]) * (tt["ratio_range"][1] if tt["ratio_range"] else 1.0)
    if min(tt["crop_size"]) > largest:
        raise ValueError(f"data.train_transform.crop_size {tt['crop_size']} is larger than any rescaled image "
                         f"(img_scale {tt['img_scale']} x ratio up to {tt['ratio_range']})")
    te = data["test_transform"]
    if te.get("img_scale") is not None:
        _pair(te, "img_scale", "data.test_transform")

    for key in ("iters", "batch_size", "grad_accum", "log_interval", "eval_interval", "checkpoint_interval"):
        _positive_int(train, key, "train")
    if train["num_threads"] is not None:
        _positive_int(train, "num_threads", "train")
    for key in ("num_workers", "warmup_iters", "keep_checkpoints"):
        _positive_int(train, key, "train", allow_zero=True)
    _number(train, "lr", "train", strict=True)
    _number(train, "weight_decay", "train")
    _number(train, "min_lr", "train")
    _number(train, "power", "train")
    if not 0 < train["warmup_ratio"] <= 1:
        raise ValueError(f"train.warmup_ratio must be in (0, 1], got {train['warmup_ratio']!r}")
    if train["min_lr"] > train["lr"]:
        raise ValueError(f"train.min_lr {train['min_lr']} is larger than train.lr {train['lr']}")
    if train["clip_grad"] is not None:
        _number(train, "clip_grad", "train", strict=True)
    if train["amp"] not in AMP_MODES:
        raise ValueError(f"train.amp must be one of {', '.join(AMP_MODES)}, got {train['amp']!r}")
    if train["device"] not in ("auto", "cpu", "cuda") and not str(train["device"]).startswith("cuda:"):
        raise ValueError(f"train.device must be auto, cpu or cuda[:N], got {train['device']!r}")
    if len(train["betas"]) != 2 or not all(0 <= b < 1 for b in train["betas"]):
        raise ValueError(f"train.betas must be two numbers in [0, 1), got {train['betas']!r}")
    _validate_loss(train)

    if ev["mode"] not in EVAL_MODES:
        raise ValueError(f"eval.mode must be whole or slide, got {ev['mode']!r}")
    _pair(ev, "crop_size", "eval")
    _pair(ev, "stride", "eval")
    if not ev["scales"] or any(not isinstance(s, (int, float)) or s <= 0 for s in ev["scales"]):
        raise ValueError(f"eval.scales must be positive factors, got {ev['scales']!r}")
    _positive_int(ev, "num_workers", "eval", allow_zero=True)


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _validate_loss(train: dict[str, Any]) -> None:
    """Check ``train.loss`` / ``train.ohem`` and fill in every term's defaults (in place)."""
    terms = train["loss"]
    if not isinstance(terms, list) or not terms:
        raise ValueError(f"train.loss must be a non-empty list of terms like [{{type: cross_entropy}}], got {terms!r}")
    filled = []
    for i, term in enumerate(terms):
        where = f"train.loss[{i}]"
        if not isinstance(term, dict) or term.get("type") not in LOSS_KEYS:
            got = term.get("type") if isinstance(term, dict) else term
            raise ValueError(f"{where}.type must be one of {', '.join(LOSS_KEYS)}, got {got!r}")
        allowed = {"type": term["type"], "weight": 1.0, **LOSS_KEYS[term["type"]]}
        unknown = sorted(set(term) - set(allowed))
        if unknown:
            raise ValueError(f"unknown key {where}.{unknown[0]} for type {term['type']}; known: {', '.join(allowed)}")
        term = {**allowed, **term}
        term["weight"] = _coerce(term["weight"])
        if not _is_number(term["weight"]) or term["weight"] < 0:
            raise ValueError(f"{where}.weight must be a number >= 0, got {term['weight']!r}")
        weight = _coerce(term["class_weight"])
        if not (weight is None or weight in CLASS_WEIGHT_METHODS or isinstance(weight, list) and weight
                and all(_is_number(w) and w >= 0 for w in weight)):
            raise ValueError(f"{where}.class_weight must be null, {' or '.join(CLASS_WEIGHT_METHODS)} or a list of "
                             f"numbers >= 0 (one per class), got {weight!r}")
        term["class_weight"] = weight
        if term["type"] == "cross_entropy":
            if term["avg_non_ignore"] is None:
                term["avg_non_ignore"] = train["avg_non_ignore"]
            if not isinstance(term["avg_non_ignore"], bool):
                raise ValueError(f"{where}.avg_non_ignore must be true or false, got {term['avg_non_ignore']!r}")
        for key, low, strict in (("smooth", 0.0, False), ("exponent", 0.0, True), ("gamma", 0.0, False)):
            if key in term:
                term[key] = _coerce(term[key])
                _number(term, key, where, low, strict)
        if "alpha" in term:
            alpha = term["alpha"] = _coerce(term["alpha"])
            values = alpha if isinstance(alpha, list) and alpha else [alpha]
            if not all(_is_number(a) and 0 <= a <= 1 for a in values):
                raise ValueError(f"{where}.alpha must be a number in [0, 1] or one such number per class, got {alpha!r}")
        if "classes" in term and term["classes"] not in ("present", "all") and not (
                isinstance(term["classes"], list) and term["classes"]
                and all(isinstance(c, int) and not isinstance(c, bool) and c >= 0 for c in term["classes"])):
            raise ValueError(f"{where}.classes must be present, all or a list of class ids, got {term['classes']!r}")
        if "per_image" in term and not isinstance(term["per_image"], bool):
            raise ValueError(f"{where}.per_image must be true or false, got {term['per_image']!r}")
        filled.append(term)
    train["loss"] = filled

    ohem = train["ohem"]
    if ohem is None:
        return
    if not isinstance(ohem, dict):
        raise ValueError(f"train.ohem must be null or a mapping {{thresh: 0.7, min_kept: 100000}}, "  # noqa: TRY004
                         f"got {ohem!r}")  # (config errors are ValueErrors: the CLI prints them as one line)
    unknown = sorted(set(ohem) - {"thresh", "min_kept"})
    if unknown:
        raise ValueError(f"unknown key train.ohem.{unknown[0]}; known: thresh, min_kept")
    ohem = train["ohem"] = {"thresh": None, "min_kept": 100000, **{k: _coerce(v) for k, v in ohem.items()}}
    if ohem["thresh"] is not None and not (_is_number(ohem["thresh"]) and 0 < ohem["thresh"] <= 1):
        raise ValueError(f"train.ohem.thresh must be null or a probability in (0, 1], got {ohem['thresh']!r}")
    if isinstance(ohem["min_kept"], bool) or not isinstance(ohem["min_kept"], int) or ohem["min_kept"] < 2:
        raise ValueError(f"train.ohem.min_kept must be an integer >= 2 (pixels per image), got {ohem['min_kept']!r}")
    if ohem["thresh"] is None and not any(t["type"] == "cross_entropy" for t in filled):
        raise ValueError("train.ohem.thresh: null ranks pixels by the cross_entropy terms' loss, but train.loss "
                         "has no cross_entropy term; give a thresh")
