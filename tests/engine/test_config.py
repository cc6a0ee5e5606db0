"""Config loading: shipped recipes, overrides, and clear errors naming the bad key."""

from __future__ import annotations

import pytest

from ssformer.engine.config import (
    DataSettings,
    ModelSettings,
    TrainingConfig,
    TrainSettings,
    config_dir,
    load_config,
    parse_override,
)
from ssformer.engine.loss_config import CrossEntropyTerm, DiceTerm, FocalTerm, LovaszTerm, OhemSettings
from ssformer.models.config import SSformerConfig


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
        assert config.data.root == root


def test_paper_recipe_values(root):
    c = load_config("ade20k_swin_b_512x512_160k", [f"data.root={root}"])
    t = c.train
    assert (t.lr, t.weight_decay, t.iters, t.batch_size, t.warmup_iters) == (6e-5, 0.01, 160000, 8, 1500)
    assert t.warmup_ratio == 1e-6 and t.power == 1.0 and t.min_lr == 0.0 and t.clip_grad is None
    assert c.data.train_transform.crop_size == [512, 512]
    c = load_config("cityscapes_swin_b_1024x1024_80k", [f"data.root={root}"])
    assert c.train.batch_size == 2 and c.train.iters == 80000
    assert c.data.train_transform.crop_size == [1024, 1024]


def test_overrides_are_yaml_typed(root):
    c = load_config("sample", [f"data.root={root}", "train.iters=7", "train.lr=1e-2", "model.depths=[1,1,1,2]",
                               "train.clip_grad=null"])
    assert c.train.iters == 7 and c.train.lr == 0.01 and c.model.depths == [1, 1, 1, 2]
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


def test_loss_defaults_to_plain_cross_entropy(root):
    c = load_config("sample", [f"data.root={root}"])
    assert c.train.loss == [CrossEntropyTerm(weight=1.0, class_weight=None, avg_non_ignore=None)]
    assert c.train.loss_terms() == [CrossEntropyTerm(avg_non_ignore=False)]
    assert c.train.ohem is None
    c = load_config("sample", [f"data.root={root}", "train.avg_non_ignore=true"])
    assert c.train.loss_terms()[0].avg_non_ignore is True


def test_loss_list_and_ohem_are_filled_in(root):
    loss = ("train.loss=[{type: cross_entropy, class_weight: median_frequency}, {type: dice, weight: 0.5}, "
            "{type: lovasz, classes: [0, 2], per_image: true}, {type: focal, alpha: [0.25, 0.5, 0.5, 0.75], gamma: 1}]")
    c = load_config("sample", [f"data.root={root}", loss, "train.ohem={thresh: 0.7}"])
    ce, dice, lovasz, focal = c.train.loss
    assert ce == CrossEntropyTerm(weight=1.0, class_weight="median_frequency", avg_non_ignore=None)
    assert dice == DiceTerm(weight=0.5, class_weight=None, smooth=1.0, exponent=2.0, exclude_ignored=False)
    assert isinstance(lovasz, LovaszTerm) and lovasz.classes == [0, 2] and lovasz.per_image is True
    assert isinstance(focal, FocalTerm) and focal.gamma == 1 and focal.alpha == [0.25, 0.5, 0.5, 0.75]
    assert c.train.ohem == OhemSettings(thresh=0.7, min_kept=100000)
    # the typed entries go back to the recipe's dicts, and those read back to the same config
    recipe = c.to_dict()
    assert recipe["train"]["loss"][1] == {"type": "dice", "weight": 0.5, "class_weight": None, "smooth": 1.0,
                                          "exponent": 2.0, "exclude_ignored": False}
    assert recipe["train"]["ohem"] == {"thresh": 0.7, "min_kept": 100000}
    assert TrainingConfig.from_dict(recipe) == c


@pytest.mark.parametrize("override, match", [
    ("train.loss=[]", r"train.loss must be a non-empty list"),
    ("train.loss=[{type: hinge}]", r"train.loss\[0\].type must be one of cross_entropy, dice, focal, lovasz, got 'hinge'"),
    ("train.loss=[cross_entropy]", r"train.loss\[0\].type must be one of .*got 'cross_entropy'"),
    ("train.loss=[{type: dice}, {type: dice, gamma: 2}]", r"unknown key train.loss\[1\].gamma for type dice"),
    ("train.loss=[{type: dice, weight: -1}]", r"train.loss\[0\].weight must be a number >= 0, got -1"),
    ("train.loss=[{type: cross_entropy, class_weight: balanced}]",
     r"train.loss\[0\].class_weight must be null, median_frequency or enet or a list .*got 'balanced'"),
    ("train.loss=[{type: cross_entropy, class_weight: [1, -2]}]", r"train.loss\[0\].class_weight must be"),
    ("train.loss=[{type: cross_entropy, avg_non_ignore: 1}]", r"train.loss\[0\].avg_non_ignore must be true or false"),
    ("train.loss=[{type: dice, exponent: 0}]", r"train.loss\[0\].exponent must be a number > 0"),
    ("train.loss=[{type: focal, alpha: 1.5}]", r"train.loss\[0\].alpha must be a number in \[0, 1\]"),
    ("train.loss=[{type: lovasz, classes: some}]", r"train.loss\[0\].classes must be present, all or a list"),
    ("train.loss=[{type: lovasz, per_image: yes please}]", r"train.loss\[0\].per_image must be true or false"),
    ("train.ohem=0.7", r"train.ohem must be null or a mapping"),
    ("train.ohem={thres: 0.7}", r"unknown key train.ohem.thres; known: thresh, min_kept"),
    ("train.ohem={thresh: 1.5}", r"train.ohem.thresh must be null or a probability in \(0, 1\], got 1.5"),
    ("train.ohem={min_kept: 1}", r"train.ohem.min_kept must be an integer >= 2"),
])
def test_bad_loss_settings_name_the_key(root, override, match):
    with pytest.raises(ValueError, match=match):
        load_config("sample", [f"data.root={root}", override])


def test_ohem_ranking_needs_a_cross_entropy_term(root):
    with pytest.raises(ValueError, match=r"train.ohem.thresh: null ranks pixels by the cross_entropy terms"):
        load_config("sample", [f"data.root={root}", "train.loss=[{type: dice}]", "train.ohem={min_kept: 1000}"])


@pytest.mark.parametrize("override, message", [
    ("model.depths=5", "model.depths must be a list of one or more values, each an integer >= 1, got 5"),
    ("model.drop_path_rate=x", "model.drop_path_rate must be a number in [0, 1), got 'x'"),
    ("train.betas=0.9", "train.betas must be a list of 2 values, each a number in [0, 1), got 0.9"),
    ("eval.scales=5", "eval.scales must be a list of one or more values, each a number > 0, got 5"),
    ("model.mlp_ratio=-1", "model.mlp_ratio must be a number > 0, got -1"),
    ("train.batch_size=0", "train.batch_size must be an integer >= 1, got 0"),
    ("train.iters=-3", "train.iters must be an integer >= 1, got -3"),
    ("train.lr=abc", "train.lr must be a number > 0, got 'abc'"),
    ("model.window_size=0", "model.window_size must be an integer >= 1, got 0"),
    ("eval.flip=maybe", "eval.flip must be true or false, got 'maybe'"),
    ("data.options=3", "config key 'data.options' must be a mapping, got 3"),
])
def test_wrong_types_name_the_key_the_value_and_what_is_allowed(root, override, message):
    with pytest.raises(ValueError) as error:
        load_config("sample", [f"data.root={root}", override])
    assert str(error.value).startswith(message), str(error.value)


def test_zero_crop_is_refused(root):
    with pytest.raises(ValueError, match="data.train_transform.crop_size must be a positive int"):
        load_config("sample", [f"data.root={root}", "data.train_transform.crop_size=0"])


def test_set_merges_into_dataset_options(root):
    config = load_config("sample", [f"data.root={root}", "data.options.img_suffix=.jpg"])
    assert config.data.options["img_suffix"] == ".jpg"
    assert config.data.options["class_names"] == ["background", "disc", "box", "triangle"]  # kept


def test_bad_set_on_the_command_line_is_one_line(capsys, tmp_path):
    from ssformer.cli.main import main

    assert main(["train", "--work-dir", str(tmp_path / "w"), "--set", "model.depths=5"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["ssformer train: error: model.depths must be a list of one or more values, each an integer >= 1, "
                   "got 5"]
    assert not (tmp_path / "w").exists()


@pytest.mark.parametrize("build, message", [
    (lambda: TrainSettings(lr=-1.0), "train.lr must be a number > 0, got -1.0"),
    (lambda: TrainSettings(min_lr=1.0, lr=0.1), "train.min_lr 1.0 is larger than train.lr 0.1"),
    (lambda: TrainSettings(loss=[{"type": "dice", "weight": -1}]), "train.loss[0].weight must be a number >= 0, got -1"),
    (lambda: TrainSettings(loss=[DiceTerm()], ohem={"min_kept": 1000}), "train.ohem.thresh: null ranks pixels"),
    (lambda: TrainSettings(ohem=OhemSettings(thresh=2.0)), "train.ohem.thresh must be null or a probability"),
    (lambda: DiceTerm(exponent=0), "exponent must be a number > 0, got 0"),
    (lambda: ModelSettings(dropout=1.5), "model.dropout must be a number in [0, 1), got 1.5"),
    (lambda: ModelSettings(depths=[1, 1, 1]), "model.depths [1, 1, 1] and model.num_heads [4, 8, 16, 32] differ"),
    (lambda: ModelSettings(variant="swin_huge"), "model.variant must be null or one of ssformer_swin_b"),
    (lambda: ModelSettings(embed_dim=1 << 30, depths=[1], num_heads=[1]), "model.embed_dim="),
    (lambda: SSformerConfig(window_size=0), "window_size must be an integer >= 1, got 0"),
    (lambda: SSformerConfig(embed_dim=10), "num_heads: stage 0 width 10"),
    (lambda: DataSettings(val_split=""), "data.val_split must be a non-empty string"),
    (lambda: TrainingConfig(work_dir=3), "work_dir must be null or a non-empty string, got 3"),
])
def test_a_config_built_in_python_is_checked_as_one_read_from_yaml(build, message):
    with pytest.raises(ValueError) as error:
        build()
    assert str(error.value).startswith(message), str(error.value)


def test_the_recipe_model_section_and_the_model_share_one_config():
    """Each model setting's default is written once (models/config.py): the recipe's model section
    holds the model's own fields, and the model it builds has exactly the settings given."""
    section, model = ModelSettings(), SSformerConfig()
    shared = ("embed_dim", "depths", "num_heads", "window_size", "mlp_ratio", "decoder_dim", "drop_path_rate",
              "dropout", "in_channels", "fast_path")
    assert {k: list(getattr(section, k)) if k in ("depths", "num_heads") else getattr(section, k) for k in shared} \
        == {k: list(getattr(model, k)) if k in ("depths", "num_heads") else getattr(model, k) for k in shared}
    named = ModelSettings(variant="ssformer_swin_t", window_size=8).to_model_config(5, ["a", "b", "c", "d", "e"])
    assert (named.embed_dim, named.depths, named.num_heads, named.window_size) == (96, (2, 2, 6, 2), (3, 6, 12, 24), 8)
    assert named.num_classes == 5 and named.class_names == ["a", "b", "c", "d", "e"]
    with pytest.raises(ValueError, match="model.num_classes=4 but the dataset has 5 classes"):
        ModelSettings(num_classes=4).to_model_config(5)


def test_an_old_recipe_still_reads(root):
    """A recipe written before the model section shared the model's fields (variant with the old
    explicit defaults filled in, loss terms as dicts) reads, the variant's sizes winning as before."""
    old = {"model": {"variant": "ssformer_swin_b", "embed_dim": 96, "depths": [2, 2, 6, 2], "num_heads": [3, 6, 12, 24],
                     "window_size": 7, "decoder_dim": 256, "drop_path_rate": 0.2, "dropout": 0.1, "mlp_ratio": 4.0,
                     "num_classes": None, "pretrained": None, "fast_path": None},
           "train": {"loss": [{"type": "cross_entropy", "weight": 1.0, "class_weight": None, "avg_non_ignore": False}],
                     "ohem": None}}
    config = load_config(base=old, overrides=[f"data.root={root}", "data.type=folder"])
    assert (config.model.embed_dim, config.model.depths, config.model.num_heads) == (128, [2, 2, 18, 2], [4, 8, 16, 32])
    assert config.model.drop_path_rate == 0.2 and config.train.loss == [CrossEntropyTerm(avg_non_ignore=False)]
