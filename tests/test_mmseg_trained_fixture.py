"""The mmseg-trained fixture is what mmseg 0.24.1's own tools write, and agrees with itself.

tests/fixtures/mmseg_trained/ comes from tools/make_mmseg_trained_fixture.py (mmseg's
tools/train.py + tools/publish_model.py + inference_segmentor). These checks need only torch,
numpy and Pillow: they pin what such a checkpoint holds (the numpy globals that weights_only
loading must allow, the meta entries a loader reads) and that the recorded masks, shapes and
mIoU fit the checkpoint, the images and the labels.
"""

from __future__ import annotations

import json
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from tests.conftest import FIXTURES

ROOT = FIXTURES / "mmseg_trained"
INFO = json.loads((ROOT / "info.json").read_text())
# Exactly what mmcv's runner pickles into meta['hook_msgs']['best_score'] (a numpy float32) when
# saved under numpy 2: the scalar reconstructor, the dtype class and the dtype's own type.
SAFE_GLOBALS = [np._core.multiarray.scalar, np.dtype, np.dtypes.Float32DType]
CHECKPOINTS = [INFO["published"], INFO["raw"]]


def load(name: str) -> dict:
    with torch.serialization.safe_globals(SAFE_GLOBALS):
        return torch.load(ROOT / name, map_location="cpu", weights_only=True)


def test_fixture_is_small_and_complete():
    files = [INFO["config"], *CHECKPOINTS, *INFO["images"], *INFO["labels"], "expected.npz"]
    for name in files:
        assert (ROOT / name).is_file(), name
    total = sum(p.stat().st_size for p in ROOT.rglob("*") if p.is_file())
    assert total < 3 * 2**20


@pytest.mark.parametrize("name", CHECKPOINTS)
def test_plain_weights_only_load_refuses_the_numpy_scalar(name):
    with pytest.raises(pickle.UnpicklingError, match="numpy._core.multiarray.scalar"):
        torch.load(ROOT / name, map_location="cpu", weights_only=True)


@pytest.mark.parametrize("missing", range(len(SAFE_GLOBALS)))
def test_every_safe_global_is_needed(missing):
    allowed = SAFE_GLOBALS[:missing] + SAFE_GLOBALS[missing + 1:]
    with torch.serialization.safe_globals(allowed), pytest.raises(pickle.UnpicklingError):
        torch.load(ROOT / INFO["published"], map_location="cpu", weights_only=True)


@pytest.mark.parametrize("name", CHECKPOINTS)
def test_meta_is_what_mmseg_train_writes(name):
    meta = load(name)["meta"]
    assert meta["CLASSES"] == tuple(INFO["classes"])
    assert meta["PALETTE"] == INFO["palette"]
    assert meta["mmseg_version"].startswith("0.24.1")
    assert meta["exp_name"] == INFO["config"]
    assert meta["seed"] == INFO["seed"]
    best = meta["hook_msgs"]["best_score"]
    assert isinstance(best, np.float32)
    assert float(best) == pytest.approx(INFO["val_mIoU"], abs=1e-6)
    assert meta["iter"] + 1 == INFO["best_iter"]  # mmcv stores the 0-based iteration
    config = meta["config"]  # mmcv's Config.pretty_text: data to read, never code to run
    assert "type='SegformerHead'" in config and "type='SwinTransformer'" in config
    assert f"img_scale=({INFO['test_img_scale'][0]}, {INFO['test_img_scale'][1]})" in config
    assert "keep_ratio=True" in config


def test_published_is_raw_without_optimizer():
    published, raw = load(INFO["published"]), load(INFO["raw"])
    assert set(published) == {"meta", "state_dict"}
    assert set(raw) == {"meta", "state_dict", "optimizer"}
    assert published["state_dict"].keys() == raw["state_dict"].keys()
    for key, value in published["state_dict"].items():
        assert torch.equal(value, raw["state_dict"][key]), key


def test_state_dict_is_an_official_ssformer_with_trained_batchnorm():
    state = load(INFO["published"])["state_dict"]
    assert {k.split(".")[0] for k in state} == {"backbone", "decode_head"}
    assert state["decode_head.conv_seg.weight"].shape[0] == INFO["num_classes"]
    assert "backbone.stages.0.blocks.1.attn.w_msa.relative_position_bias_table" in state
    for name in ["convs.0", "convs.3", "fusion_conv"]:
        bn = f"decode_head.{name}.bn."
        assert state[bn + "running_mean"].abs().min() > 0
        assert (state[bn + "running_var"] - 1).abs().max() > 0.1
        assert state[bn + "num_batches_tracked"].item() == INFO["best_iter"]


def mmcv_rescaled_size(h: int, w: int, scale: tuple[int, int]) -> tuple[int, int]:
    """mmcv.imrescale's output size: the largest factor that fits both edges, rounded half up."""
    factor = min(max(scale) / max(h, w), min(scale) / min(h, w))
    return int(h * factor + 0.5), int(w * factor + 0.5)


def test_expected_shapes_follow_the_test_pipeline():
    expected = np.load(ROOT / "expected.npz")
    for path in INFO["images"]:
        name = Path(path).stem
        w, h = Image.open(ROOT / path).size
        mask = expected[f"{name}/mask"]
        assert mask.shape == (h, w) == tuple(expected[f"{name}/ori_shape"])
        rh, rw = mmcv_rescaled_size(h, w, tuple(INFO["test_img_scale"]))
        assert rh < h and rw < w, "the fixture's test scale must shrink the image"
        assert tuple(expected[f"{name}/img_shape"]) == (rh, rw)
        assert expected[f"{name}/resized_rgb"].shape == (rh, rw, 3)
        assert expected[f"{name}/head_logits"].shape == (INFO["num_classes"], -(-rh // 4), -(-rw // 4))
        assert mask.max() < INFO["num_classes"]


def test_recorded_masks_give_the_logged_miou():
    expected = np.load(ROOT / "expected.npz")
    k = INFO["num_classes"]
    confusion = np.zeros((k, k), np.int64)
    for image, label in zip(INFO["images"], INFO["labels"]):
        gt = np.asarray(Image.open(ROOT / label)).astype(np.int64)
        pred = expected[f"{Path(image).stem}/mask"].astype(np.int64)
        keep = gt != INFO["ignore_index"]
        confusion += np.bincount(gt[keep] * k + pred[keep], minlength=k * k).reshape(k, k)
    inter = np.diag(confusion)
    union = confusion.sum(0) + confusion.sum(1) - inter
    with np.errstate(invalid="ignore", divide="ignore"):
        miou = np.nanmean(inter / union)
    assert miou == pytest.approx(INFO["val_mIoU"], abs=5e-5)  # mmseg logs mIoU rounded to 0.01%
