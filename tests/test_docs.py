"""The documentation reads as a product's: no paths of a development machine, no diary wording,
and every dotted ``ssformer.module.name`` it cites exists where it says."""

from __future__ import annotations

import importlib
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
DOCS = sorted((ROOT / "docs").glob("*.md")) + [ROOT / "README.md"]
DIARY = ("previous session", "this session", "that session", "same session", "not yet explained",
         "the aim is not met", "not met yet", "development machine", "before the fix", "the first run changed")


@pytest.mark.parametrize("doc", DOCS, ids=lambda p: p.name)
def test_no_development_machine_paths(doc):
    lines = [f"{doc.name}:{i}: {line}" for i, line in enumerate(doc.read_text().splitlines(), 1) if "/work/" in line]
    assert lines == []


@pytest.mark.parametrize("doc", DOCS, ids=lambda p: p.name)
def test_no_diary_wording(doc):
    text = doc.read_text().lower()
    assert [phrase for phrase in DIARY if phrase in text] == []


def _resolves(dotted: str) -> bool:
    parts = dotted.split(".")
    for i in range(len(parts), 1, -1):
        try:
            obj = importlib.import_module(".".join(parts[:i]))
        except ImportError:
            continue
        try:
            for name in parts[i:]:
                obj = getattr(obj, name)
        except AttributeError:
            return False
        return True
    return False


@pytest.mark.parametrize("doc", DOCS, ids=lambda p: p.name)
def test_cited_module_names_exist(doc):
    """``ssformer.sub.module.name`` (a submodule of the package, then what is in it) must resolve."""
    cited = set(re.findall(r"\bssformer(?:\.[A-Za-z_]\w*){2,}", doc.read_text()))
    package = ROOT / "ssformer"
    modules = {c for c in cited if (package / c.split(".")[1]).with_suffix(".py").is_file()
               or (package / c.split(".")[1] / "__init__.py").is_file()}
    assert sorted(c for c in modules if not _resolves(c)) == []
