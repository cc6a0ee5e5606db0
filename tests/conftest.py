"""Shared test settings: data paths, small models, deterministic threads."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parent.parent
FIXTURES = Path(__file__).resolve().parent / "fixtures"
SHARED = Path(os.environ.get("SSFORMER_SHARED", REPO.parent / "shared"))
CAMVID = Path(os.environ.get("SSFORMER_CAMVID", SHARED / "data" / "CamVid"))
ADE_SAMPLE = Path(os.environ.get("SSFORMER_ADE_SAMPLE", SHARED / "data" / "ade20k-sample"))

torch.set_num_threads(min(2, os.cpu_count() or 1))

# Every device this machine has: tests taking the ``device`` fixture run once per entry (the CPU
# always, CUDA when present). SSFORMER_TEST_DEVICES=cuda keeps the CUDA entries and the tests marked
# ``cuda`` alone: tools/gpu_check.sh runs that on a GPU machine, whose CPU entries CI already runs.
DEVICES = os.environ.get("SSFORMER_TEST_DEVICES", "").split(",") if os.environ.get("SSFORMER_TEST_DEVICES") else (
    ["cpu"] + (["cuda"] if torch.cuda.is_available() else []))


def pytest_collection_modifyitems(config, items):
    """With SSFORMER_TEST_DEVICES naming no CPU, deselect the tests that would run on the CPU only."""
    if "cpu" in DEVICES:
        return
    keep = [item for item in items if "device" in getattr(item, "fixturenames", ()) or item.get_closest_marker("cuda")]
    config.hook.pytest_deselected(items=[item for item in items if item not in keep])
    items[:] = keep


@pytest.fixture(params=DEVICES)
def device(request) -> torch.device:
    return torch.device(request.param)


def tiny_model_kwargs(num_classes: int = 4) -> dict:
    """A few-thousand-parameter SSformer for fast tests."""
    return dict(num_classes=num_classes, embed_dim=8, depths=(2, 2, 2, 2), num_heads=(1, 1, 2, 2),
                window_size=7, decoder_dim=8, drop_path_rate=0.1)


def save_tiny_model(tmp_path_factory, num_classes: int, name: str = "tiny"):
    """A seeded tiny model written with save_pretrained into a fresh folder (for module-scoped fixtures)."""
    import ssformer

    torch.manual_seed(0)
    folder = tmp_path_factory.mktemp("model") / name
    ssformer.SSformer(**tiny_model_kwargs(num_classes=num_classes)).save_pretrained(folder)
    return folder


@pytest.fixture
def tiny_model():
    import ssformer

    torch.manual_seed(0)
    return ssformer.SSformer(**tiny_model_kwargs())


PATH_VARIABLES = {CAMVID: "SSFORMER_CAMVID", ADE_SAMPLE: "SSFORMER_ADE_SAMPLE"}


def requires_dir(path: Path, what: str):
    """Skip marker for tests that need a shared data folder; the reason names the folder and its variable."""
    variable = PATH_VARIABLES.get(path, "SSFORMER_SHARED")
    return pytest.mark.skipif(not path.is_dir(), reason=f"{what} not found at {path}: set {variable} to its folder")
