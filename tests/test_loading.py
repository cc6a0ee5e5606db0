"""One model artifact: every file the project writes (and the Hub route) loads the same model,
preprocessing and labels, so it predicts the same masks."""

from __future__ import annotations

import inspect
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import ssformer
from ssformer.cli.main import main
from ssformer.engine.config import sample_root
from ssformer.inference.segmenter import PipelineOverrides, Segmenter
from ssformer.loading import load_model
from tests.conftest import FIXTURES
from tests.engine.conftest import tiny_cli_sets as _sets

TEST_SCALE = (64, 48)  # data.test_transform.img_scale of tiny_overrides (the sample recipe's is 128x96)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A tiny model trained 6 iterations on the shipped sample, evaluated at its last iteration."""
    work = tmp_path_factory.mktemp("loading") / "run"
    assert main(["train", "--work-dir", str(work),
                 *_sets(work, "train.iters=6", "train.eval_interval=6", "train.checkpoint_interval=6")]) == 0
    return work


@pytest.fixture(scope="module")
def picture():
    """An image of another size than the sample's 96x128, so the test scale resizes it (to 32x48)."""
    source = np.asarray(Image.open(next((sample_root() / "images").glob("*.png"))).convert("RGB"))
    return np.asarray(Image.fromarray(source).resize((301, 200), Image.BICUBIC))


def test_trained_model_predicts_the_same_from_every_file(trained, picture, tmp_path, capsys):
    convert_to = {"folder": tmp_path / "converted", "safetensors": tmp_path / "m.safetensors",
                  "pt": tmp_path / "m.pt"}
    for target in convert_to.values():
        assert main(["convert", str(trained / "latest.pt"), str(target)]) == 0
    capsys.readouterr()
    sources = [trained / "model", trained / "latest.pt", trained, *convert_to.values()]
    reference = Segmenter(trained / "model", dtype="fp32")
    assert reference.img_scale == TEST_SCALE  # the recipe's test scale, not the ADE20K default
    assert reference.class_names == ["background", "disc", "box", "triangle"]
    expected = reference.predict(picture)
    explicit = Segmenter(ssformer.SSformer.from_pretrained(trained / "model"), dtype="fp32",
                         pipeline=PipelineOverrides(img_scale=TEST_SCALE))
    np.testing.assert_array_equal(explicit.predict(picture), expected)
    for source in sources:
        loaded = load_model(source)
        assert loaded.notes == [], source
        assert loaded.preprocessing == reference.preprocessing, source
        assert loaded.model.config == reference.model.config, source
        assert loaded.model.recipe is not None and loaded.model.recipe["data"]["type"] == "folder", source
        mask = Segmenter(source, dtype="fp32").predict(picture)
        np.testing.assert_array_equal(mask, expected, err_msg=str(source))


def test_model_folder_is_readable_without_this_package(trained):
    folder = trained / "model"
    assert sorted(p.name for p in folder.iterdir()) == ["config.json", "model.safetensors",
                                                        "preprocessor_config.json", "training_config.json"]
    preprocessing = json.loads((folder / "preprocessor_config.json").read_text())
    assert preprocessing["img_scale"] == list(TEST_SCALE) and preprocessing["mean"] == [123.675, 116.28, 103.53]
    assert json.loads((folder / "config.json").read_text())["palette"][1] == [220, 60, 40]


def test_training_checkpoints_keep_the_recipe_under_training_config(trained):
    from ssformer.checkpoints.io import torch_load

    state = torch_load(trained / "latest.pt")
    assert state["training_config"]["data"]["type"] == "folder" and "config" not in state
    assert state["model_config"]["class_names"] == ["background", "disc", "box", "triangle"]


def test_eval_needs_only_the_model(trained, tmp_path, capsys):
    logged = [json.loads(line) for line in (trained / "log.jsonl").read_text().splitlines()]
    final = [r for r in logged if "mIoU" in r and r.get("iter") == 6]
    assert final, logged
    out = tmp_path / "m.json"
    assert main(["eval", "--checkpoint", str(trained / "model"), "--out", str(out)]) == 0
    record = json.loads(out.read_text())
    assert record["mIoU"] == pytest.approx(final[-1]["mIoU"], abs=1e-9)
    assert record["preprocessing"]["img_scale"] == list(TEST_SCALE)
    # flags and --set override the model's settings: a slide window covering the whole image changes nothing
    assert main(["eval", "--checkpoint", str(trained / "latest.pt"), "--mode", "slide",
                 "--set", "eval.crop_size=[48,64]", "--out", str(tmp_path / "s.json")]) == 0
    slide = json.loads((tmp_path / "s.json").read_text())
    assert slide["mode"] == "slide" and slide["mIoU"] == pytest.approx(record["mIoU"], abs=1e-9)
    assert main(["eval", "--checkpoint", str(trained / "model"), "--set", "eval.tta=true", "--set", "eval.scales=[1.0]",
                 "--set", "eval.flip=false", "--out", str(tmp_path / "t.json")]) == 0  # eval.tta is read
    tta = json.loads((tmp_path / "t.json").read_text())
    assert tta["tta"] is True and tta["preprocessing"]["tta_scales"] == [1.0]
    assert tta["mIoU"] == pytest.approx(record["mIoU"], abs=1e-9)  # one scale, no flip: the same argmax
    # CONFIG is still accepted and overrides the model's test settings (the sample recipe tests at 128x96)
    assert main(["eval", "sample", "--data-root", str(sample_root()), "--checkpoint", str(trained / "model"),
                 "--out", str(tmp_path / "c.json")]) == 0
    assert json.loads((tmp_path / "c.json").read_text())["preprocessing"]["img_scale"] == [128, 96]


def test_eval_of_a_model_without_recipe_asks_for_config(tmp_path, capsys):
    assert main(["convert", str(FIXTURES / "official_w7.pth"), str(tmp_path / "w7")]) == 0
    capsys.readouterr()
    assert main(["eval", "--checkpoint", str(tmp_path / "w7")]) == 2
    assert "carries no training config: give CONFIG" in capsys.readouterr().err


def test_official_checkpoint_converted_predicts_the_same(tmp_path, picture, capsys):
    source = FIXTURES / "official_w7.pth"
    io = torch.load(FIXTURES / "official_w7_io.pt", weights_only=True)
    loaded = load_model(source)
    assert loaded.format == "mmseg" and loaded.report.ok
    assert any("carries no test pipeline: using the defaults" in note for note in loaded.notes), loaded.notes
    case = io["cases"][1]
    with torch.no_grad():
        torch.testing.assert_close(loaded.model(case["input"]), case["logits"], rtol=0, atol=1e-4)
    expected = Segmenter(source, dtype="fp32").predict(picture)
    for target in (tmp_path / "folder", tmp_path / "w7.safetensors", tmp_path / "w7.pt"):
        assert main(["convert", str(source), str(target)]) == 0
        np.testing.assert_array_equal(Segmenter(target, dtype="fp32").predict(picture), expected, err_msg=str(target))
        assert load_model(target).preprocessing == loaded.preprocessing
    capsys.readouterr()


def test_official_150_class_checkpoint_gets_the_ade20k_recipe(tmp_path):
    """Without a config in meta, a 150-class official checkpoint is read with ADE20K's test pipeline and labels."""
    official = torch.load(FIXTURES / "official_w7.pth", weights_only=True)
    state = dict(official["state_dict"])
    state["decode_head.conv_seg.weight"] = torch.zeros(150, *state["decode_head.conv_seg.weight"].shape[1:])
    state["decode_head.conv_seg.bias"] = torch.zeros(150)
    path = tmp_path / "official150.pth"
    torch.save({"state_dict": state}, path)
    loaded = load_model(path)
    assert loaded.preprocessing.img_scale == (2048, 512) and loaded.preprocessing.reduce_zero_label
    assert loaded.model.config.class_names[:3] == ["wall", "building", "sky"]
    assert any("official ade20k one" in note for note in loaded.notes), loaded.notes


def test_hub_repo_id_resolves_through_the_offline_cache(trained, picture, tmp_path):
    """A pre-filled Hugging Face cache, HF_HUB_OFFLINE=1: ``Segmenter("org/name")`` needs no network."""
    pytest.importorskip("huggingface_hub", reason="the hub extra (huggingface_hub) is not installed")
    snapshot = tmp_path / "cache" / "models--ssformer-test--tiny" / "snapshots" / "0123abcd"
    snapshot.mkdir(parents=True)
    for file in (trained / "model").iterdir():
        (snapshot / file.name).write_bytes(file.read_bytes())
    (snapshot.parent.parent / "refs").mkdir()
    (snapshot.parent.parent / "refs" / "main").write_text("0123abcd")
    np.save(tmp_path / "picture.npy", picture)
    script = ("import numpy as np, sys; from ssformer import Segmenter, SSformer\n"
              "seg = Segmenter('ssformer-test/tiny', dtype='fp32')\n"
              "assert SSformer.from_pretrained('ssformer-test/tiny').config == seg.model.config\n"
              "np.save(sys.argv[2], seg.predict(np.load(sys.argv[1])))\n")
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_HUB_CACHE": str(tmp_path / "cache")}
    run = subprocess.run([sys.executable, "-c", script, str(tmp_path / "picture.npy"), str(tmp_path / "mask.npy")],
                         env=env, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr
    expected = Segmenter(trained / "model", dtype="fp32").predict(picture)
    np.testing.assert_array_equal(np.load(tmp_path / "mask.npy"), expected)
    absent = "import ssformer; ssformer.SSformer.from_pretrained('ssformer-test/absent')"
    missing = subprocess.run([sys.executable, "-c", absent], env=env, capture_output=True, text=True, timeout=300)
    assert missing.returncode != 0 and "neither a local path nor a Hub model" in missing.stderr


def test_push_to_hub_uploads_the_model_folder(trained, monkeypatch):
    hub = pytest.importorskip("huggingface_hub", reason="the hub extra (huggingface_hub) is not installed")
    calls: dict[str, object] = {}

    def create_repo(self, repo_id, **kwargs):
        calls["create"] = (repo_id, kwargs)

    def upload_folder(self, folder_path, repo_id, **kwargs):
        calls["files"] = sorted(p.name for p in Path(folder_path).iterdir())
        calls["upload"] = (repo_id, kwargs)
        return "https://huggingface.co/org/tiny/commit/1"

    monkeypatch.setattr(hub.HfApi, "create_repo", create_repo)
    monkeypatch.setattr(hub.HfApi, "upload_folder", upload_folder)
    url = ssformer.SSformer.from_pretrained(trained / "model").push_to_hub("org/tiny", private=True)
    assert url.endswith("/commit/1")
    assert calls["create"] == ("org/tiny", {"private": True, "exist_ok": True, "repo_type": "model"})
    assert calls["files"] == ["config.json", "model.safetensors", "preprocessor_config.json", "training_config.json"]


def test_the_public_ways_in_are_from_pretrained_create_model_and_load_weights():
    """One way to build a trained model, one for a fresh one, one to put weights into a model you have."""
    assert {"SSformer", "create_model", "load_weights"} <= set(ssformer.__all__)
    assert not {"load_model", "LoadedModel"} & set(dir(ssformer))
    assert not hasattr(ssformer.SSformer, "load") and not hasattr(ssformer.SSformer, "from_files")
    assert "pretrained" not in inspect.signature(ssformer.create_model).parameters


def test_source_errors_name_the_source(tmp_path):
    with pytest.raises(FileNotFoundError, match="no/such.pt"):
        load_model("no/such.pt")
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="not a model folder"):
        load_model(tmp_path / "empty")
    with pytest.raises(TypeError, match="expected an SSformer, a path or a Hub repo id"):
        load_model(42)  # type: ignore[arg-type]


def test_flags_override_the_model_and_predictions_json_records_them(trained, picture, tmp_path, capsys):
    Image.fromarray(picture).save(tmp_path / "big.png")
    out = tmp_path / "pred"
    assert main(["predict", "--checkpoint", str(trained / "model"), str(tmp_path / "big.png"), "--out", str(out),
                 "--img-scale", "96", "72", "--mode", "slide", "--crop", "32", "32", "--stride", "24", "24"]) == 0
    capsys.readouterr()
    used = json.loads((out / "predictions.json").read_text())["model"]["preprocessing"]
    assert (used["img_scale"], used["mode"], used["crop_size"], used["stride"]) == ([96, 72], "slide", [32, 32],
                                                                                  [24, 24])
    mask = np.asarray(Image.open(out / "big.png"))
    pipeline = PipelineOverrides(mode="slide", crop=32, stride=24, img_scale=(96, 72))
    expected = Segmenter(trained / "model", dtype="fp32", pipeline=pipeline).predict(picture)
    np.testing.assert_array_equal(mask, expected)
