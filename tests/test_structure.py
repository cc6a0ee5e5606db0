"""The package's shape: imports only point down the layers, no import circle, short functions."""

from __future__ import annotations

import ast
import re
import sys
from pathlib import Path

import ssformer

PACKAGE = Path(ssformer.__file__).parent
# Bottom to top: a unit may import only units listed before it (and itself). ``ssformer`` is the
# package root, the public facade (``ssformer.SSformer``, ``ssformer.create_model``...).
LAYERS = ["errors", "settings", "utils", "devices", "precision", "distributed", "data", "checkpoints", "models", "loading", "metrics", "inference",
          "ssformer", "engine", "analysis", "cli"]
MAX_FUNCTION_LINES = 60
MAX_PARAMETERS = 8  # settings travel as objects (Preprocessing, config sections, Precision), not field by field
# Signatures over MAX_PARAMETERS that are still to be reduced; none may be added, and each one fixed leaves the list.
LONG_SIGNATURES: set[str] = set()


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _is_module(name: str) -> bool:
    """``from pkg import module`` imports a module; ``from pkg import function`` does not."""
    path = PACKAGE.parent.joinpath(*name.split("."))
    return path.with_suffix(".py").is_file() or (path / "__init__.py").is_file()


def _annotation_modules(tree: ast.AST) -> set[str]:
    """Modules named in annotations by their dotted path (``x: "ssformer.models.attention.Layer"``):
    under ``from __future__ import annotations`` such a hint needs no import to run, but it still
    makes the annotated module depend on the named one."""
    hints = []
    for node in ast.walk(tree):
        if isinstance(node, ast.arg) and node.annotation is not None:
            hints.append(node.annotation)
        elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.returns is not None:
            hints.append(node.returns)
        elif isinstance(node, ast.AnnAssign):
            hints.append(node.annotation)
    found = set()
    for hint in hints:
        text = hint.value if isinstance(hint, ast.Constant) and isinstance(hint.value, str) else ast.unparse(hint)
        for dotted in re.findall(r"\bssformer(?:\.\w+)+", text):
            parts = dotted.split(".")
            found |= {".".join(parts[:i]) for i in range(2, len(parts) + 1) if _is_module(".".join(parts[:i]))}
    return found


def _imports(path: Path) -> set[str]:
    """Every ``ssformer`` module ``path`` imports, at the top or inside functions, and those it imports
    or names only for annotations (``if TYPE_CHECKING:`` blocks, dotted names in hints): they never
    run, but an import circle or an upward import through them is one in the design all the same."""
    name, found = _module_name(path), set(_annotation_modules(ast.parse(path.read_text())))
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    tree = ast.parse(path.read_text())
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[:len(package.split(".")) - node.level + 1]
                base = ".".join(anchor + ([node.module] if node.module else []))
            found.add(base)
            found |= {f"{base}.{alias.name}" for alias in node.names if _is_module(f"{base}.{alias.name}")}
    return {m for m in found if m == "ssformer" or m.startswith("ssformer.")}


def _unit(module: str) -> str:
    return module.split(".")[1] if "." in module else "ssformer"


def _modules() -> dict[str, Path]:
    return {_module_name(p): p for p in PACKAGE.rglob("*.py")}


def test_imports_only_point_down_the_layers():
    wrong = []
    for module, path in _modules().items():
        unit = _unit(module)
        for target in _imports(path):
            other = _unit(target)
            if other == unit:
                continue
            if other not in LAYERS or LAYERS.index(other) > LAYERS.index(unit):
                wrong.append(f"{module} imports {target}")
    assert not wrong, "\n".join(sorted(wrong))


def test_no_import_circle_between_modules():
    modules = _modules()
    graph = {m: {t for t in _imports(p) if t in modules and t != m and not m.startswith(t + ".")}
             for m, p in modules.items()}
    state: dict[str, int] = {}
    circles = []

    def visit(module: str, trail: list[str]) -> None:
        state[module] = 1
        for target in sorted(graph[module]):
            if state.get(target) == 1:
                circles.append(" -> ".join(trail[trail.index(target):] + [target]))
            elif target not in state:
                visit(target, trail + [target])
        state[module] = 2

    for module in sorted(graph):
        if module not in state:
            visit(module, [module])
    assert not circles, "\n".join(circles)


def test_no_function_is_longer_than_60_lines():
    long = []
    for module, path in _modules().items():
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                lines = node.end_lineno - node.lineno + 1
                if lines > MAX_FUNCTION_LINES:
                    long.append(f"{module}.{node.name}: {lines} lines")
    assert not long, "\n".join(long)


def test_no_public_function_takes_more_than_8_parameters():
    long = set()
    for module, path in _modules().items():
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and not node.name.startswith("_") \
                    or getattr(node, "name", None) == "__init__":
                a = node.args
                names = [x.arg for x in a.posonlyargs + a.args + a.kwonlyargs if x.arg not in ("self", "cls")]
                if len(names) > MAX_PARAMETERS:
                    long.add(f"{module}.{node.name}")
    assert long <= LONG_SIGNATURES, "\n".join(sorted(long - LONG_SIGNATURES))
    assert long == LONG_SIGNATURES, f"shorter now, take them off LONG_SIGNATURES: {sorted(LONG_SIGNATURES - long)}"


def test_the_checks_see_the_whole_package():
    modules = _modules()
    assert {"ssformer.engine.trainer", "ssformer.models.swin", "ssformer.cli.main"} <= set(modules)
    assert "ssformer.engine.config" in _imports(modules["ssformer.engine.trainer"])
    assert "ssformer.distributed" in _imports(modules["ssformer.cli.predict"])  # in ``if TYPE_CHECKING:``


def test_type_hint_imports_count(tmp_path, monkeypatch):
    """An import under ``if TYPE_CHECKING:`` and a dotted name in a string hint are dependencies."""
    models = tmp_path / "ssformer" / "models"
    models.mkdir(parents=True)
    for name in ("__init__", "decoder", "attention"):
        (models / f"{name}.py").write_text("")
    (models / "hinted.py").write_text(
        "from __future__ import annotations\nfrom typing import TYPE_CHECKING\n"
        "if TYPE_CHECKING:\n    from ssformer.models.decoder import ConvBNReLU\n"
        "def f(block: ConvBNReLU, x: 'ssformer.models.attention.ShiftedWindowAttention') -> None: ...\n")
    monkeypatch.setattr(sys.modules[__name__], "PACKAGE", tmp_path / "ssformer")
    assert {"ssformer.models.decoder", "ssformer.models.attention"} <= _imports(models / "hinted.py")
