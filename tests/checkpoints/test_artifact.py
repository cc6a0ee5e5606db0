"""A single-file model names its documents by what they hold (``model_config``, ``preprocessing``,
``training_config``); files written with the older, ambiguous key ``config`` still load."""

from __future__ import annotations

import json

import pytest
import torch

import ssformer
from ssformer.checkpoints.io import read_safetensors, torch_load, write_safetensors, write_torch
from ssformer.data.preprocessing import Preprocessing
from tests.conftest import tiny_model_kwargs

NAMES = ["sky", "road", "car", "person"]
RECIPE = {"data": {"type": "folder"}, "train": {"iters": 6}}


@pytest.fixture
def model() -> ssformer.SSformer:
    torch.manual_seed(0)
    model = ssformer.SSformer(**tiny_model_kwargs(), class_names=NAMES)
    model.preprocessing, model.recipe = Preprocessing(img_scale=(64, 48)), RECIPE
    return model


def _assert_same_model(loaded: ssformer.SSformer, model: ssformer.SSformer) -> None:
    assert loaded.config.class_names == NAMES
    assert loaded.preprocessing == model.preprocessing
    assert loaded.recipe == RECIPE
    for key, value in model.state_dict().items():
        assert torch.equal(loaded.state_dict()[key], value), key


def test_new_files_use_the_clear_keys(model, tmp_path):
    model.save_file(tmp_path / "m.safetensors")
    metadata = read_safetensors(tmp_path / "m.safetensors")[1]
    assert {"model_config", "preprocessing", "training_config"} <= set(metadata) and "config" not in metadata
    assert json.loads(metadata["model_config"])["class_names"] == NAMES
    model.save_file(tmp_path / "m.pt")
    entries = torch_load(tmp_path / "m.pt")
    assert {"model_config", "preprocessing", "training_config"} <= set(entries) and "config" not in entries
    for name in ("m.safetensors", "m.pt"):
        _assert_same_model(ssformer.SSformer.from_pretrained(tmp_path / name), model)


def test_old_safetensors_with_config_for_the_architecture_still_load(model, tmp_path):
    metadata = {"config": json.dumps(model.config.to_dict()), "preprocessing": json.dumps(model.preprocessing.to_dict()),
                "training_config": json.dumps(RECIPE)}
    write_safetensors(model.state_dict(), tmp_path / "old.safetensors", metadata)
    _assert_same_model(ssformer.SSformer.from_pretrained(tmp_path / "old.safetensors"), model)


def test_old_training_checkpoints_with_config_for_the_recipe_still_load(model, tmp_path):
    old = {"model": model.state_dict(), "model_config": model.config.to_dict(), "iteration": 6,
           "preprocessing": model.preprocessing.to_dict(), "config": RECIPE}
    write_torch(old, tmp_path / "iter_6.pt")
    _assert_same_model(ssformer.SSformer.from_pretrained(tmp_path / "iter_6.pt"), model)
