"""The package's shape: imports only point down the layers, no import circle, short functions."""

from __future__ import annotations

import ast
from pathlib import Path

import ssformer

PACKAGE = Path(ssformer.__file__).parent
# Bottom to top: a unit may import only units listed before it (and itself). ``ssformer`` is the
# package root, the public facade (``ssformer.SSformer``, ``ssformer.load_model``...).
LAYERS = ["errors", "utils", "devices", "distributed", "data", "checkpoints", "models", "loading", "metrics", "inference",
          "ssformer", "engine", "analysis", "cli"]
MAX_FUNCTION_LINES = 80


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _is_module(name: str) -> bool:
    """``from pkg import module`` imports a module; ``from pkg import function`` does not."""
    path = PACKAGE.parent.joinpath(*name.split("."))
    return path.with_suffix(".py").is_file() or (path / "__init__.py").is_file()


def _imports(path: Path) -> set[str]:
    """Every ``ssformer`` module ``path`` imports, at the top or inside functions."""
    name, found = _module_name(path), set()
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    tree = ast.parse(path.read_text())
    for block in ast.walk(tree):  # imports only for annotations do not run
        if isinstance(block, ast.If) and ast.unparse(block.test) in ("TYPE_CHECKING", "typing.TYPE_CHECKING"):
            block.body = []
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


def test_no_function_is_longer_than_80_lines():
    long = []
    for module, path in _modules().items():
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                lines = node.end_lineno - node.lineno + 1
                if lines > MAX_FUNCTION_LINES:
                    long.append(f"{module}.{node.name}: {lines} lines")
    assert not long, "\n".join(long)


def test_the_checks_see_the_whole_package():
    modules = _modules()
    assert {"ssformer.engine.trainer", "ssformer.models.swin", "ssformer.cli.main"} <= set(modules)
    assert "ssformer.engine.config" in _imports(modules["ssformer.engine.trainer"])
    assert {_unit(m) for m in modules} == set(LAYERS)
