"""Every user mistake is one line naming what to fix; a bug keeps its traceback (issue 28)."""

from __future__ import annotations

from pathlib import Path

import pytest

from ssformer.cli.main import main
from ssformer.errors import UserError


def run_cli(capsys, *argv: object) -> tuple[int, str, str]:
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def one_line(err: str) -> str:
    """The error output, which must be one line and no traceback."""
    lines = [line for line in err.strip().splitlines() if line.strip()]
    assert len(lines) == 1 and "Traceback" not in err, err
    return lines[0]


# --- 16: user errors have their own type; a plain ValueError is a bug and shows as one ------------
def test_a_plain_value_error_inside_a_command_is_not_hidden(monkeypatch):
    import ssformer.cli.info as info

    def broken(args):
        raise ValueError("an internal invariant broke")

    monkeypatch.setattr(info, "run", broken)
    with pytest.raises(ValueError, match="internal invariant"):
        main(["info", "ssformer_swin_t"])


def test_a_user_error_inside_a_command_is_one_line(monkeypatch, capsys):
    import ssformer.cli.info as info

    def refuse(args):
        raise UserError("model.embed_dim must be positive")

    monkeypatch.setattr(info, "run", refuse)
    code, _, err = run_cli(capsys, "info", "ssformer_swin_t")
    assert code == 2
    assert one_line(err) == "ssformer info: error: model.embed_dim must be positive"


def test_the_package_error_types_are_user_errors():
    from ssformer.checkpoints.io import CheckpointError
    from ssformer.data.io import DataError, ImageError
    from ssformer.engine.checkpoint import CorruptCheckpoint
    from ssformer.inference.export import ExportError
    from ssformer.inference.quantize import AccuracyError

    for kind in (CheckpointError, DataError, CorruptCheckpoint, ExportError, ImageError, AccuracyError):
        assert issubclass(kind, UserError), kind


def test_config_and_argument_mistakes_raise_user_errors():
    from ssformer.data.transforms import TrainTransform, TrainTransformSettings
    from ssformer.engine.config import load_config
    from ssformer.models.ssformer import SSformerConfig

    with pytest.raises(UserError, match="unknown config key"):
        load_config("camvid_cpu", ["train.no_such_key=1"])
    with pytest.raises(UserError, match="window_size"):
        SSformerConfig(num_classes=2, window_size=0)
    with pytest.raises(UserError, match="img_scale"):
        TrainTransform(TrainTransformSettings(img_scale=(0, 4), crop_size=(2, 2)))


def test_permission_denied_is_one_line_naming_the_file(monkeypatch, capsys, tmp_path):
    import ssformer.cli.info as info

    def denied(args):
        raise PermissionError(13, "Permission denied", str(tmp_path / "out.png"))

    monkeypatch.setattr(info, "run", denied)
    code, _, err = run_cli(capsys, "info", "ssformer_swin_t")
    assert code == 2 and str(tmp_path / "out.png") in one_line(err) and "Permission denied" in err


# --- 8: absurd model and image sizes are refused before anything is allocated ------------------------
@pytest.fixture(scope="module")
def tiny_folder(tmp_path_factory):
    from tests.conftest import save_tiny_model

    return save_tiny_model(tmp_path_factory, num_classes=3)


@pytest.mark.parametrize("setting, key", [
    ("model.embed_dim=1000000000", "model.embed_dim"),
    ("model.decoder_dim=1000000000", "model.decoder_dim"),
    ("model.window_size=100000", "model.window_size"),
    ("model.depths=[1000000,1,1,1]", "model.depths"),
    ("model.num_classes=1000000000", "model.num_classes"),
])
def test_absurd_model_sizes_are_one_line_naming_the_key(capsys, tmp_path, setting, key):
    work = tmp_path / "run"
    code, _, err = run_cli(capsys, "train", "--work-dir", work, "--set", setting)
    assert code == 2 and f"{key}=" in one_line(err)
    assert not work.exists()


def _edited_copy(folder, tmp_path, name: str, **changes):
    import json
    import shutil

    copy = tmp_path / "model"
    shutil.copytree(folder, copy)
    data = json.loads((copy / name).read_text()) if (copy / name).exists() else {}
    data.update(changes)
    (copy / name).write_text(json.dumps(data))
    return copy


@pytest.mark.parametrize("changes, key", [
    ({"embed_dim": 1000000000}, "embed_dim"),
    ({"decoder_dim": 1000000000}, "decoder_dim"),
    ({"window_size": 100000}, "window_size"),
    ({"depths": [1000000, 1, 1, 1]}, "depths"),
    ({"embed_dim": -16}, "embed_dim"),
    ({"embed_dim": "16"}, "embed_dim"),
    ({"num_classes": "three"}, "num_classes"),
])
def test_absurd_sizes_in_a_model_config_json_name_the_file_and_key(capsys, tmp_path, tiny_folder, changes, key):
    model = _edited_copy(tiny_folder, tmp_path, "config.json", **changes)
    code, _, err = run_cli(capsys, "info", "--checkpoint", model, "--no-flops")
    line = one_line(err)
    assert code == 2 and str(model / "config.json") in line and key in line


def test_an_absurd_img_scale_in_preprocessor_config_names_the_file(capsys, tmp_path, tiny_folder):
    model = _edited_copy(tiny_folder, tmp_path, "preprocessor_config.json", img_scale=[1e7, 1e7])
    code, _, err = run_cli(capsys, "info", "--checkpoint", model, "--no-flops")
    line = one_line(err)
    assert code == 2 and "preprocessor_config.json" in line and "img_scale" in line


# --- 9: thread counts, infinite learning rates, image scales ----------------------------------------
def test_more_threads_than_cpus_are_cut_to_the_cpus_with_a_note(monkeypatch, capsys, tmp_path):
    import torch

    from ssformer.engine.config import sample_root
    from tests.engine.conftest import tiny_cli_sets

    asked = []
    monkeypatch.setattr(torch, "set_num_threads", asked.append)  # 100000 real threads crash torch
    work = tmp_path / "run"
    code, _, err = run_cli(capsys, "train", "--work-dir", work, "--data-root", sample_root(),
                           *tiny_cli_sets(work, "train.iters=1", "train.num_threads=100000"))
    import os

    cpus = len(os.sched_getaffinity(0))
    assert code == 0 and asked and max(asked) <= cpus
    assert f"train.num_threads=100000 is more than the {cpus} CPUs" in err


@pytest.mark.parametrize("setting, key", [
    ("train.lr=.inf", "train.lr"),
    ("train.lr=.nan", "train.lr"),
    ("train.clip_grad=.inf", "train.clip_grad"),
    ("data.train_transform.img_scale=[100000000,1]", "data.train_transform.img_scale"),
    ("data.test_transform.img_scale=[10000000,10000000]", "data.test_transform.img_scale"),
    ("eval.crop_size=100000", "eval.crop_size"),
])
def test_infinite_numbers_and_huge_image_sizes_are_refused_naming_the_key(capsys, tmp_path, setting, key):
    work = tmp_path / "run"
    code, _, err = run_cli(capsys, "train", "--work-dir", work, "--set", setting)
    assert code == 2 and one_line(err).startswith(f"ssformer train: error: {key} must be")
    assert not work.exists()


def test_a_one_pixel_wide_flipped_crop_reaches_the_model():
    """img_scale [16384, 1] makes 1-pixel-wide images; flipped, numpy kept a negative stride torch refused."""
    import numpy as np

    from ssformer.data.transforms import TrainTransform, TrainTransformSettings

    transform = TrainTransform(TrainTransformSettings(img_scale=(16384, 1), ratio_range=(0.5, 0.6), crop_size=(8, 8), flip_prob=1.0,
                               photometric=False, cat_max_ratio=1.0))
    image = np.zeros((6, 4, 3), np.uint8)
    label = np.ones((6, 4), np.uint8)
    out_image, out_label = transform(image, label, np.random.default_rng(0))
    assert tuple(out_image.shape) == (3, 8, 8) and tuple(out_label.shape) == (8, 8)
    assert (out_label == 1).sum() >= 1 and (out_label == 255).sum() >= 8 * 8 - 2


# --- 10: outputs that cannot be written ---------------------------------------------------------------
def test_convert_under_a_file_is_one_line_and_writes_nothing(capsys, tmp_path, tiny_folder):
    blocker = tmp_path / "passwd"
    blocker.write_text("root:x:0:0\n")
    code, _, err = run_cli(capsys, "convert", tiny_folder, blocker / "x")
    line = one_line(err)
    assert code == 2 and f"{blocker} is a file" in line
    assert blocker.read_text() == "root:x:0:0\n"


def test_predict_out_on_an_existing_file_is_one_line_and_keeps_it(capsys, tmp_path, tiny_folder):
    from ssformer.engine.config import sample_root

    image = sorted((sample_root() / "images").iterdir())[0]
    out = tmp_path / "results.txt"
    out.write_text("keep me")
    code, _, err = run_cli(capsys, "predict", "--checkpoint", tiny_folder, image, "--out", out)
    assert code == 2 and f"--out {out} is a file" in one_line(err)
    assert out.read_text() == "keep me"


def test_predict_out_on_a_read_only_place_is_one_line(monkeypatch, capsys, tmp_path, tiny_folder):
    import os

    from ssformer.engine.config import sample_root

    image = sorted((sample_root() / "images").iterdir())[0]
    read_only = tmp_path / "ro"
    read_only.mkdir()
    real_access = os.access
    monkeypatch.setattr(os, "access", lambda p, mode: False if str(p) == str(read_only) else real_access(p, mode))
    code, _, err = run_cli(capsys, "predict", "--checkpoint", tiny_folder, image, "--out", read_only / "masks")
    assert code == 2 and "not writable" in one_line(err) and str(read_only) in err
    assert not (read_only / "masks").exists()


def test_a_read_only_file_system_met_while_writing_is_one_line(monkeypatch, capsys):
    import errno

    import ssformer.cli.info as info

    def read_only(args):
        raise OSError(errno.EROFS, "Read-only file system", "/mnt/ro/model.safetensors")

    monkeypatch.setattr(info, "run", read_only)
    code, _, err = run_cli(capsys, "info", "ssformer_swin_t")
    assert code == 2 and one_line(err).endswith("Read-only file system: /mnt/ro/model.safetensors")


# --- 11: a folder dataset without class names ------------------------------------------------------
@pytest.fixture
def unnamed_folder(tmp_path):
    """The shipped sample without its classes.txt."""
    import shutil

    from ssformer.engine.config import sample_root

    root = tmp_path / "data"
    shutil.copytree(sample_root(), root)
    (root / "classes.txt").unlink()
    return root


def test_train_on_a_folder_without_class_names_is_one_line_with_the_ways_out(capsys, tmp_path, unnamed_folder):
    from tests.engine.conftest import tiny_cli_sets

    work = tmp_path / "run"
    config = tmp_path / "mine.yaml"
    config.write_text("data: {type: folder, train_split: train.txt, val_split: val.txt, options: {img_suffix: .png}}\n")
    code, _, err = run_cli(capsys, "train", config, "--work-dir", work, "--data-root", unnamed_folder,
                           *tiny_cli_sets(work, "train.iters=1"))
    line = one_line(err)
    assert code == 2 and "data.options.class_names" in line and str(unnamed_folder / "classes.txt") in line
    assert not work.exists()


def test_check_data_on_a_folder_takes_class_names(capsys, tmp_path, unnamed_folder):
    code, _, err = run_cli(capsys, "check-data", "--type", "folder", "--data-root", unnamed_folder, "--no-progress")
    assert code == 2 and "--class-names" in one_line(err)
    config = tmp_path / "data.yaml"
    config.write_text("data: {type: folder, options: {img_suffix: .png}}\n")
    check = ["check-data", config, "--data-root", unnamed_folder, "--no-progress", "--split", "val.txt"]
    code, out, err = run_cli(capsys, *check, "--class-names", "background,disc,box,triangle")
    assert code == 0 and "triangle" in out and "Traceback" not in err
    (unnamed_folder / "classes.txt").write_text("background\ndisc\nbox\ntriangle\n")
    code, out, _ = run_cli(capsys, *check)
    assert code == 0 and "triangle" in out


# --- 12: a split list that is not UTF-8 ----------------------------------------------------------------
def test_a_split_list_in_another_encoding_names_the_file_and_line(capsys, unnamed_folder):
    listing = unnamed_folder / "val.txt"
    listing.write_bytes(listing.read_bytes() + "caf\u00e9_001\n".encode("latin-1"))
    lines = listing.read_bytes().count(b"\n")
    code, _, err = run_cli(capsys, "check-data", "--type", "folder", "--data-root", unnamed_folder, "--no-progress",
                           "--class-names", "background,disc,box,triangle", "--split", "val.txt")
    line = one_line(err)
    assert code == 2 and str(listing) in line and f"line {lines}" in line and "UTF-8" in line


# --- 13 (part): an empty or cut-short latest.pt points to the newest good checkpoint ---------------
@pytest.mark.parametrize("damage", ["truncate", "empty"])
def test_a_cut_short_checkpoint_names_the_newest_good_one(tmp_path, damage):
    import os

    import torch

    from ssformer.engine.checkpoint import CorruptCheckpoint, load_checkpoint, save_checkpoint

    save_checkpoint({"w": torch.ones(1000)}, tmp_path / "iter_4.pt")
    latest = save_checkpoint({"w": torch.zeros(1000)}, tmp_path / "latest.pt")
    os.utime(tmp_path / "iter_4.pt", (1, 1))  # older than latest.pt
    data = latest.read_bytes()
    latest.write_bytes(data[: len(data) // 2] if damage == "truncate" else b"")
    with pytest.raises(CorruptCheckpoint, match=r"latest\.pt .*newest good checkpoint there is .*iter_4\.pt"):
        load_checkpoint(latest)


def test_resume_from_an_empty_latest_is_one_line_naming_the_good_one(tmp_path, capsys):
    from tests.engine.conftest import tiny_cli_sets

    work = tmp_path / "run"
    assert main(["train", "--work-dir", str(work), *tiny_cli_sets(work)]) == 0
    (work / "latest.pt").write_bytes(b"")
    capsys.readouterr()
    code, _, err = run_cli(capsys, "train", "--work-dir", work, "--resume", *tiny_cli_sets(work))
    line = one_line(err)
    assert code == 2 and "latest.pt" in line and "iter_6.pt" in line


# --- 14: load_weights with another architecture ---------------------------------------------------------
def test_load_weights_of_another_architecture_summarises_the_difference(tmp_path):
    import ssformer
    from ssformer.checkpoints.io import CheckpointError

    small = tmp_path / "small"
    ssformer.SSformer(num_classes=11, embed_dim=32, depths=(2, 2, 6, 2), num_heads=(1, 2, 4, 8)).save_pretrained(small)
    with pytest.raises(CheckpointError) as caught:
        ssformer.load_weights(ssformer.SSformer(num_classes=150), small)
    message = str(caught.value)
    assert len(message) < 3000, message  # the full key list was 22,749 characters
    first = message.splitlines()[0]
    assert "embed_dim 32 vs 128" in first and "num_classes 11 vs 150" in first
    assert f"ssformer.SSformer.from_pretrained('{small}')" in first


# --- 15: float images in [0, 1] ----------------------------------------------------------------------------
def test_a_float_image_in_0_1_predicts_as_its_uint8_original():
    import numpy as np
    import torch

    import ssformer
    from ssformer.inference.segmenter import PipelineOverrides, Segmenter
    from tests.conftest import tiny_model_kwargs

    torch.manual_seed(0)
    segmenter = Segmenter(ssformer.SSformer(**tiny_model_kwargs(num_classes=5)).eval(),
                          pipeline=PipelineOverrides(img_scale=None))
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, (48, 64, 3)).astype(np.uint8)
    expected = segmenter.predict(image)
    assert np.array_equal(segmenter.predict(image.astype(np.float32) / 255.0), expected)
    assert np.array_equal(segmenter.predict(image.astype(np.float64)), expected)  # 0..255 floats as before


# --- 17: transformers folders, and notes that name only flags the command has ---------------------------------
@pytest.fixture(scope="module")
def hf_folder(tmp_path_factory):
    transformers = pytest.importorskip("transformers")
    config = transformers.SwinConfig(image_size=32, window_size=2, embed_dim=8, depths=[1, 1, 1, 1],
                                     num_heads=[1, 1, 2, 2], out_features=["stage1", "stage2", "stage3", "stage4"])
    folder = tmp_path_factory.mktemp("hf") / "swin"
    transformers.SwinBackbone(config).save_pretrained(folder)
    return folder


def _long_options(command: str) -> set[str]:
    from ssformer.cli.main import build_parser

    sub = build_parser()._subparsers._group_actions[0].choices[command]
    return {o for action in sub._actions for o in action.option_strings if o.startswith("--")}


def test_convert_reads_a_transformers_folder_and_writes_test_settings(capsys, tmp_path, hf_folder):
    import json
    import re

    out = tmp_path / "converted"
    code, _, err = run_cli(capsys, "convert", hf_folder, out, "--num-classes", 3, "--img-scale", 512, 256,
                           "--mode", "slide")
    assert code == 0, err
    for flag in re.findall(r"--[a-z-]+", err):  # the note about the missing test pipeline
        assert flag in _long_options("convert"), flag
    settings = json.loads((out / "preprocessor_config.json").read_text())
    assert settings["img_scale"] == [512, 256] and settings["mode"] == "slide"
    assert json.loads((out / "config.json").read_text())["embed_dim"] == 8


def test_predict_on_backbone_weights_names_no_flag_predict_lacks(capsys, tmp_path, hf_folder):
    import re

    from ssformer.engine.config import sample_root

    image = sorted((sample_root() / "images").iterdir())[0]
    code, _, err = run_cli(capsys, "predict", "--checkpoint", hf_folder, image, "--out", tmp_path / "masks")
    line = one_line(err)
    assert code == 2 and "cannot predict" in line
    for flag in re.findall(r"--[a-z-]+", line.replace("ssformer convert / info --num-classes", "")):
        assert flag in _long_options("predict"), flag


# --- 18: eval shows progress (text lines off a terminal) ------------------------------------------------
@pytest.fixture(scope="module")
def trained_sample(tmp_path_factory):
    from tests.engine.conftest import tiny_cli_sets

    work = tmp_path_factory.mktemp("trained") / "run"
    assert main(["train", "--work-dir", str(work), *tiny_cli_sets(work, "train.iters=2")]) == 0
    return work


def test_eval_reports_progress_off_a_terminal(capsys, trained_sample):
    from ssformer.engine.config import sample_root
    from tests.engine.conftest import tiny_cli_sets

    capsys.readouterr()
    code, out, err = run_cli(capsys, "eval", "sample", "--data-root", sample_root(), "--checkpoint",
                             trained_sample / "model", *tiny_cli_sets(trained_sample))
    assert code == 0 and "mIoU" in out
    assert "ssformer eval: 16/16 images" in err


# --- 19: check-data summarises an undeclared label value ---------------------------------------------------
def test_check_data_summarises_an_undeclared_label_value_per_value(capsys, tmp_path, unnamed_folder):
    import numpy as np
    from PIL import Image

    labels = sorted((unnamed_folder / "labels").glob("val_*.png"))
    for path in labels:
        array = np.asarray(Image.open(path)).copy()
        array[0, :3] = 7  # the sample declares 0..3 and 255
        Image.fromarray(array).save(path)
    config = tmp_path / "data.yaml"
    config.write_text("data: {type: folder, options: {img_suffix: .png, class_names: [bg, disc, box, tri]}}\n")
    code, out, _ = run_cli(capsys, "check-data", config, "--data-root", unnamed_folder, "--no-progress",
                           "--split", "val.txt")
    problems = [line for line in out.splitlines() if "PROBLEM" in line]
    assert code == 1 and len(problems) == 1, problems
    assert "label value 7" in problems[0] and f"in {len(labels)} of {len(labels)} labels" in problems[0]
    assert "data.options.ignore_index: 7" in problems[0]
    table = [line.split() for line in out.splitlines() if line.strip().startswith(("0 ", "1 "))]
    assert table and all(int(row[2]) > 0 for row in table), out  # the declared pixels are still counted


# --- 20: Cityscapes city folders that are symbolic links --------------------------------------------------
def test_cityscapes_city_folders_may_be_symbolic_links(tmp_path):
    import numpy as np
    from PIL import Image

    from ssformer.data.datasets import Cityscapes

    store, root = tmp_path / "store", tmp_path / "cityscapes"
    for split in ("leftImg8bit", "gtFine"):
        (store / split / "aachen").mkdir(parents=True)
        (root / split / "val").mkdir(parents=True)
        (root / split / "val" / "aachen").symlink_to(store / split / "aachen", target_is_directory=True)
        (store / split / "aachen" / "loop").symlink_to(store / split, target_is_directory=True)  # entered once
    Image.fromarray(np.zeros((4, 8, 3), np.uint8)).save(store / "leftImg8bit" / "aachen" / "a_0_leftImg8bit.png")
    Image.fromarray(np.zeros((4, 8), np.uint8)).save(store / "gtFine" / "aachen" / "a_0_gtFine_labelTrainIds.png")
    dataset = Cityscapes(root, "val")
    assert [Path(i).name for i, _ in dataset.pairs] == ["a_0_leftImg8bit.png"]


# --- 21: messages that name the way out; help that reads as text ------------------------------------------
def test_the_int8_refusal_names_min_agreement(monkeypatch, capsys, tmp_path, tiny_folder):
    pytest.importorskip("nncf", reason="nncf is in the dev extra")
    import ssformer.inference.openvino_int8 as openvino_int8
    from ssformer.inference.quantize import AccuracyError

    def disagree(*args, **kwargs):
        raise AccuracyError("int8 model: argmax agreement 97.00%, below the minimum agreement 99.00%")

    monkeypatch.setattr(openvino_int8, "export_int8_openvino", disagree)
    code, out, err = run_cli(capsys, "export", "--checkpoint", tiny_folder, "--format", "openvino", "--size", 32, 32,
                             "--int8", "--calib", tmp_path, "--out", tmp_path / "m.xml")
    assert code == 1 and "--min-agreement 0.99" in out + err


def test_a_set_without_equals_gets_the_subcommand_usage_and_the_fix(capsys):
    with pytest.raises(SystemExit) as caught:
        main(["train", "sample", "--set", "train.iters", "40"])
    err = capsys.readouterr().err
    assert caught.value.code == 2 and "usage: ssformer train" in err
    assert "--set train.iters=40" in err


def test_no_pairs_found_names_the_suffixes_looked_for(tmp_path):
    from ssformer.data.datasets import FolderDataset, FolderOptions
    from ssformer.data.io import DataError

    (tmp_path / "images").mkdir()
    (tmp_path / "labels").mkdir()
    (tmp_path / "images" / "a.png").write_bytes(b"")
    with pytest.raises(DataError, match=r"no image/label pairs.*\*\.jpg.*\*\.png.*img_suffix"):
        FolderDataset(tmp_path, FolderOptions(["a", "b"]))


def test_help_is_plain_text_and_shows_defaults():
    import argparse

    from ssformer.cli.help import subcommands
    from ssformer.cli.main import build_parser

    for name, sub in subcommands(build_parser()).items():
        text = sub.format_help()
        assert "``" not in text and ":mod:" not in text and ":func:" not in text, name
        formatter = sub._get_formatter()
        for action in sub._actions:
            default = action.default
            if (not action.option_strings or isinstance(default, bool) or default in (None, argparse.SUPPRESS)
                    or default == []):
                continue
            shown = formatter._get_help_string(action) if action.help else ""
            assert "default" in shown.lower(), (name, action.option_strings, action.help)


# --- 22: the eval table: no nan, the summary once ----------------------------------------------------------
def test_eval_table_has_no_nan_and_one_summary(capsys, trained_sample):
    from ssformer.engine.config import sample_root
    from tests.engine.conftest import tiny_cli_sets

    capsys.readouterr()
    code, out, _ = run_cli(capsys, "eval", "sample", "--data-root", sample_root(), "--checkpoint",
                           trained_sample / "model", *tiny_cli_sets(trained_sample), "--set", "eval.num_workers=0")
    assert code == 0 and "nan" not in out
    assert sum("mIoU" in line for line in out.splitlines()) == 1, out


def test_format_table_marks_undefined_values_and_says_why():
    import numpy as np

    from ssformer.metrics import IoUMetric, format_table

    metric = IoUMetric(3)
    metric.update(np.array([0, 1, 1, 0]), np.array([0, 1, 0, 255]))  # class 2: never labelled, never predicted
    table = format_table(metric.compute(), ["road", "car", "sky"])
    assert "nan" not in table
    assert table.splitlines()[4].split()[1] == "-"
    assert any(line.startswith("-:") for line in table.splitlines())


# --- 22: docs that agree with behaviour ------------------------------------------------------------------------
def test_the_readme_install_names_every_extra():
    import re

    from tests.conftest import REPO

    project = (REPO / "pyproject.toml").read_text()  # tomllib is Python 3.11+; the package supports 3.10
    section = project[project.index("[project.optional-dependencies]"):]
    section = section[:section.index("\n[", 1)] if "\n[" in section[1:] else section
    extras = re.findall(r"^(\w+) = \[", section, re.M)
    assert "openvino" in extras and "dev" in extras
    readme = (REPO / "README.md").read_text()
    install = readme[readme.index("## Install"):readme.index("\n## ", readme.index("## Install") + 1)]
    named = set(re.findall(r"`\.\[(\w+)\]`", install))
    assert set(extras) <= named, sorted(set(extras) - named)


def test_docs_explain_each_number_info_prints(capsys):
    from tests.conftest import REPO

    assert main(["info", "ssformer_swin_t", "--size", "64", "64", "--no-flops"]) == 0
    printed = capsys.readouterr().out
    model_doc = (REPO / "docs" / "model.md").read_text()
    for label in ("MACs, official convention", "window-attention MACs", "FLOPs executed by this implementation"):
        assert label in printed or label.startswith("FLOPs")
        assert f"**{label[0].upper() + label[1:]}" in model_doc, label


def test_benchmark_threads_above_the_cpus_are_cut_to_them(monkeypatch, capsys):
    import os

    import torch

    asked = []
    monkeypatch.setattr(torch, "set_num_threads", asked.append)
    code, _, err = run_cli(capsys, "benchmark", "ssformer_swin_t", "--threads", 100000, "--size", 32, 32,
                           "--runs", 1, "--warmup", 0, "--no-flops")
    assert code == 0 and asked == [len(os.sched_getaffinity(0))] and "--threads=100000 is more than" in err


@pytest.mark.parametrize("argv", [
    ["info", "ssformer_swin_t", "--size", "100000", "100000"],
    ["benchmark", "ssformer_swin_t", "--size", "100000", "100000"],
])
def test_huge_input_sizes_are_refused_before_running_the_model(capsys, argv):
    code, _, err = run_cli(capsys, *argv)
    assert code == 2 and "16384" in one_line(err)


def test_huge_export_sizes_are_refused_before_tracing(capsys, tmp_path, tiny_folder):
    code, _, err = run_cli(capsys, "export", "--checkpoint", tiny_folder, "--format", "onnx", "--size", 100000, 100000,
                           "--out", tmp_path / "m.onnx")
    assert code == 2 and "16384" in one_line(err) and not (tmp_path / "m.onnx").exists()
