"""The test pipeline of an mmseg checkpoint, read from the config text in its ``meta`` as data.

mmseg's ``tools/train.py`` stores ``cfg.pretty_text`` in every checkpoint's ``meta['config']``:
Python source made only of assignments of literals and ``dict(...)`` calls. It is parsed with
:mod:`ast` and evaluated by a walker that knows those forms and nothing else, so no code in a
checkpoint ever runs.
"""

from __future__ import annotations

import ast
from collections.abc import Mapping
from typing import Any

from ssformer.data.preprocessing import Preprocessing
from ssformer.errors import UserError


class _Unsupported(Exception):
    pass


def _evaluate(node: ast.AST, names: Mapping[str, Any]) -> Any:
    if isinstance(node, ast.Constant):
        return node.value
    if isinstance(node, (ast.List, ast.Tuple)):
        items = [_evaluate(e, names) for e in node.elts]
        return items if isinstance(node, ast.List) else tuple(items)
    if isinstance(node, ast.Dict):
        if any(k is None for k in node.keys):
            raise _Unsupported
        return {_evaluate(k, names): _evaluate(v, names) for k, v in zip(node.keys, node.values)}  # type: ignore[arg-type]
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "dict" and not node.args:
        if any(k.arg is None for k in node.keywords):
            raise _Unsupported
        return {k.arg: _evaluate(k.value, names) for k in node.keywords}
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, (ast.USub, ast.UAdd)):
        value = _evaluate(node.operand, names)
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return -value if isinstance(node.op, ast.USub) else value
    if isinstance(node, ast.Name) and node.id in names:
        return names[node.id]
    raise _Unsupported


def parse_config_text(text: str) -> dict[str, Any]:
    """Top-level ``name = value`` assignments of an mmcv config text; other statements and values
    outside the literal forms are skipped."""
    try:
        tree = ast.parse(text)
    except SyntaxError as e:
        raise UserError(f"the checkpoint's config text is not valid Python syntax: {e}") from e
    names: dict[str, Any] = {}
    for statement in tree.body:
        if (isinstance(statement, ast.Assign) and len(statement.targets) == 1
                and isinstance(statement.targets[0], ast.Name)):
            try:
                names[statement.targets[0].id] = _evaluate(statement.value, names)
            except _Unsupported:
                continue
    return names


def _find(pipeline: Any, kind: str) -> dict[str, Any] | None:
    """The first step of type ``kind`` in a (possibly nested) mmseg pipeline."""
    for step in pipeline if isinstance(pipeline, (list, tuple)) else ():
        if isinstance(step, dict):
            if step.get("type") == kind:
                return step
            found = _find(step.get("transforms"), kind)
            if found is not None:
                return found
    return None


def preprocessing_from_config(config: Mapping[str, Any]) -> tuple[Preprocessing | None, list[str]]:
    """(test settings, notes about what could not be taken) from a parsed mmseg config."""
    notes: list[str] = []
    data = config.get("data") if isinstance(config.get("data"), dict) else {}
    test = data.get("test") if isinstance(data.get("test"), dict) else {}
    pipeline = test.get("pipeline", config.get("test_pipeline"))
    aug, resize, norm = (_find(pipeline, k) for k in ("MultiScaleFlipAug", "Resize", "Normalize"))
    if aug is None and resize is None:
        return None, ["the checkpoint's config has no test pipeline"]
    settings: dict[str, Any] = {}
    scale = (aug or {}).get("img_scale", (resize or {}).get("img_scale"))
    if isinstance(scale, list) and scale and isinstance(scale[0], (list, tuple)):
        notes.append(f"test img_scale lists several scales {scale}; the first is used")
        scale = scale[0]
    settings["img_scale"] = scale
    settings["keep_ratio"] = (resize or {}).get("keep_ratio", True)
    ratios = (aug or {}).get("img_ratios")
    if isinstance(ratios, (list, tuple)) and len(ratios) > 1:
        settings["tta_scales"] = ratios
    if norm is not None:
        settings["mean"], settings["std"] = norm.get("mean"), norm.get("std")
        if norm.get("to_rgb", True) is False:
            notes.append("the config normalises BGR images (to_rgb=False); this package feeds RGB")
    model = config.get("model") if isinstance(config.get("model"), dict) else {}
    test_cfg = model.get("test_cfg") if isinstance(model.get("test_cfg"), dict) else {}
    if test_cfg.get("mode") in ("whole", "slide"):
        settings["mode"] = test_cfg["mode"]
    for key in ("crop_size", "stride"):
        if test_cfg.get(key) is not None:
            settings[key] = test_cfg[key]
    head = model.get("decode_head") if isinstance(model.get("decode_head"), dict) else {}
    settings["ignore_index"] = test.get("ignore_index", head.get("ignore_index", 255))
    settings["reduce_zero_label"] = test.get("reduce_zero_label", test.get("type") == "ADE20KDataset")
    settings = {k: v for k, v in settings.items() if v is not None}
    try:
        return Preprocessing.from_dict(settings, where="the checkpoint's test pipeline"), notes
    except ValueError as e:
        return None, [str(e)]
