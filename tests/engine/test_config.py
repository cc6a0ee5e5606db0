"""Config loading: shipped recipes, overrides, and clear errors naming the bad key."""

from __future__ import annotations

import pytest

from ssformer.engine.config import config_dir, load_config, parse_override


@pytest.fixture
def root(tmp_path):
    return str(tmp_path)


def test_every_shipped_recipe_loads(root):
    names = sorted(p.stem for p in config_dir().glob("*.yaml"))
    assert {"ade20k_swin_b_512x512_160k", "cityscapes_swin_b_768x768_80k", "cityscapes_swin_b_768x768_160k",
            "cityscapes_swin_b_1024x1024_80k", "cityscapes_swin_b_1024x1024_160k", "camvid_cpu",
            "sample"} <= set(names)
    for name in names:
        config = load_config(name, [f"data.root={root}"])
        assert config["data"]["root"] == root


def test_paper_recipe_values(root):
    c = load_config("ade20k_swin_b_512x512_160k", [f"data.root={root}"])
    t = c["train"]
    assert (t["lr"], t["weight_decay"], t["iters"], t["batch_size"], t["warmup_iters"]) == (6e-5, 0.01, 160000, 8, 1500)
    assert t["warmup_ratio"] == 1e-6 and t["power"] == 1.0 and t["min_lr"] == 0.0 and t["clip_grad"] is None
    assert c["data"]["train_transform"]["crop_size"] == [512, 512]
    c = load_config("cityscapes_swin_b_1024x1024_80k", [f"data.root={root}"])
    assert c["train"]["batch_size"] == 2 and c["train"]["iters"] == 80000
    assert c["data"]["train_transform"]["crop_size"] == [1024, 1024]


def test_overrides_are_yaml_typed(root):
    c = load_config("sample", [f"data.root={root}", "train.iters=7", "train.lr=1e-2", "model.depths=[1,1,1,2]",
                               "train.clip_grad=null"])
    assert c["train"]["iters"] == 7 and c["train"]["lr"] == 0.01 and c["model"]["depths"] == [1, 1, 1, 2]
    assert parse_override("a.b=") == (["a", "b"], None)


@pytest.mark.parametrize("override, match", [
    ("train.itres=5", "train.itres"),
    ("modle.embed_dim=5", "modle"),
    ("data.train_transform.crop=5", "crop"),
    ("train.batch_size=0", "train.batch_size"),
    ("train.lr=-0.1", "train.lr"),
    ("train.lr=0", "train.lr"),
    ("train.amp=fp8", "train.amp"),
    ("data.train_transform.crop_size=[4096,4096]", "crop_size"),
    ("eval.mode=tiles", "eval.mode"),
    ("model.dropout=1.5", "model.dropout"),
    ("train.warmup_ratio=0", "train.warmup_ratio"),
    ("train.grad_accum=0", "train.grad_accum"),
    ("model.depths=[1,1,1]", "model.depths"),
])
def test_bad_settings_name_the_key(root, override, match):
    with pytest.raises(ValueError, match=match.replace("[", r"\[")):
        load_config("sample", [f"data.root={root}", override])


def test_missing_and_absent_data_root(tmp_path):
    with pytest.raises(ValueError, match="data.root"):
        load_config("camvid_cpu")
    with pytest.raises(FileNotFoundError, match="data.root"):
        load_config("camvid_cpu", [f"data.root={tmp_path / 'nowhere'}"])


def test_bad_files_and_syntax(tmp_path, root):
    with pytest.raises(FileNotFoundError, match="no_such_recipe"):
        load_config("no_such_recipe")
    bad = tmp_path / "bad.yaml"
    bad.write_text("train: [1, 2\n")
    with pytest.raises(ValueError, match="bad.yaml"):
        load_config(bad)
    with pytest.raises(ValueError, match="key=value"):
        load_config("sample", [f"data.root={root}", "train.iters"])
