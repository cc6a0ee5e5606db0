"""check_dataset and the ``ssformer check-data`` command: every problem reported, frequencies, exit codes."""

import argparse

import numpy as np
import pytest
import yaml

from ssformer.cli import check_data
from ssformer.data import CamVid
from ssformer.data.check import check_dataset, format_report
from tests.conftest import CAMVID, requires_dir
from tests.data.layouts import label_values, make_camvid, write_image, write_label


def run_cli(argv):
    parser = argparse.ArgumentParser()
    check_data.add_parser(parser.add_subparsers())
    args = parser.parse_args(["check-data", "--no-progress", *argv])
    return args.func(args)


def damaged_camvid(root):
    """Five train pairs, four of them broken in different ways."""
    make_camvid(root, splits=(("train", 5), ("val", 1)))
    bad_values = label_values(values=(0, 3))
    bad_values[0, :2] = (13, 40)
    write_label(root / "trainannot" / "0001TP_000000.png", bad_values)                 # values out of range
    write_image(root / "train" / "0001TP_000001.png", height=11)                         # size mismatch
    (root / "train" / "0001TP_000002.png").write_bytes(b"\x89PNG broken")                # corrupt image
    (root / "trainannot" / "0001TP_000002.png").write_bytes(b"")                         # ...and corrupt label
    (root / "trainannot" / "0001TP_000003.png").unlink()                                 # missing label
    return root


def test_reports_every_problem(tmp_path):
    damaged_camvid(tmp_path)
    dataset = CamVid(tmp_path, "train", allow_missing=True)
    report = check_dataset(dataset)
    text = "\n".join(report.problems)
    assert len(report.problems) == 5, text
    assert "0001TP_000000.png: invalid values 13, 40" in text
    assert "size mismatch: image" in text and "0001TP_000001.png is 11x16" in text
    assert f"cannot read image {tmp_path / 'train' / '0001TP_000002.png'}" in text
    assert f"cannot read label {tmp_path / 'trainannot' / '0001TP_000002.png'}" in text
    assert "missing" in text and "0001TP_000003.png" in text
    assert not report.ok


def test_frequencies_counted_by_hand(tmp_path):
    make_camvid(tmp_path, splits=(("train", 2),))
    write_label(tmp_path / "trainannot" / "0001TP_000000.png", np.array([[0, 0, 3, 11]] * 3 + [[10] * 4] * 9))
    write_image(tmp_path / "train" / "0001TP_000000.png", height=12, width=4)
    write_label(tmp_path / "trainannot" / "0001TP_000001.png", np.full((12, 16), 3))
    report = check_dataset(CamVid(tmp_path, "train"))
    assert report.ok and report.pairs == 2
    expected = np.zeros(11, np.int64)
    expected[0], expected[3], expected[10] = 6, 3 + 12 * 16, 36
    assert np.array_equal(report.class_pixels, expected)
    assert report.ignored_pixels == 3
    text = format_report(report, CamVid(tmp_path, "train").class_names)
    assert "2 pairs, 0 problem(s)" in text
    road = next(line for line in text.splitlines() if " Road " in line)
    assert road.split()[2:4] == ["195", f"{100 * 195 / 237:.3f}"]
    assert "(absent)" in next(line for line in text.splitlines() if " Pole " in line)


def test_cli_with_config_fails_and_lists_problems(tmp_path, capsys):
    damaged_camvid(tmp_path / "camvid")
    config = tmp_path / "cfg.yaml"
    config.write_text(yaml.safe_dump({"data": {"type": "camvid", "root": str(tmp_path / "camvid"),
                                               "train_split": "train", "val_split": "val"},
                                      "train": {"iters": 10}}))
    assert run_cli([str(config)]) == 1
    out = capsys.readouterr().out
    assert "== camvid train" in out and "== camvid val" in out
    # four file problems, and the undeclared values 13 and 40 one line each (summarised per value, not per file)
    assert out.count("PROBLEM:") == 6 and "FAILED" in out
    assert "label value 13 is no class" in out and "label value 40 is no class" in out


def test_cli_direct_arguments_ok(tmp_path, capsys):
    make_camvid(tmp_path)
    assert run_cli(["--type", "camvid", "--data-root", str(tmp_path), "--split", "val"]) == 0
    out = capsys.readouterr().out
    assert "2 pairs, 0 problem(s)" in out and "OK: no problems found" in out and "== camvid train" not in out


def test_cli_usage_errors(tmp_path):
    with pytest.raises(ValueError, match="give a CONFIG with a data section, or --type and --data-root"):
        run_cli([])
    with pytest.raises(FileNotFoundError, match="nope.yaml' is neither a file nor a shipped recipe"):
        run_cli([str(tmp_path / "nope.yaml")])
    (tmp_path / "x.yaml").write_text("model: {}\n")
    with pytest.raises(ValueError, match="has no 'data:' section"):
        run_cli([str(tmp_path / "x.yaml")])
    with pytest.raises(ValueError, match="folder not found"):
        run_cli(["--type", "camvid", "--root", str(tmp_path), "--split", "train"])


def test_cli_folder_dataset_options(tmp_path, capsys):
    write_image(tmp_path / "images" / "a.jpg", suffix_format="JPEG")
    write_label(tmp_path / "labels" / "a.png", label_values(values=(0, 1, 5)))
    config = tmp_path / "cfg.yaml"
    config.write_text(yaml.safe_dump({"data": {"type": "folder", "root": str(tmp_path),
                                               "options": {"class_names": ["a", "b"]}}}))
    assert run_cli([str(config)]) == 1
    assert "label value 5 is no class of this dataset" in capsys.readouterr().out


def test_cli_shipped_recipe_with_root(tmp_path, capsys):
    """The camvid_cpu recipe trains on train+val and evaluates on test: all three are checked."""
    make_camvid(tmp_path, splits=(("train", 2), ("val", 1), ("test", 1)))
    assert run_cli(["camvid_cpu", "--data-root", str(tmp_path)]) == 0
    assert run_cli(["camvid_cpu", "--root", str(tmp_path)]) == 0  # the old spelling still works
    out = capsys.readouterr().out
    assert all(f"== camvid {split}" in out for split in ("train", "val", "test"))


@requires_dir(CAMVID, "CamVid")
def test_cli_real_camvid_val(capsys):
    assert run_cli(["--type", "camvid", "--root", str(CAMVID), "--split", "val"]) == 0
    out = capsys.readouterr().out
    assert "101 pairs, 0 problem(s)" in out and "360x480 (101)" in out


def test_files_the_layout_leaves_out_are_problems(tmp_path, capsys):
    """An image saved as .JPG (the recipe says .jpg), a label without an image, an image without a
    label and an RGB label are each reported with their path, not '0 problems'."""
    write_image(tmp_path / "images" / "a.jpg", suffix_format="JPEG")
    write_label(tmp_path / "labels" / "a.png", label_values(values=(0, 1)))
    write_image(tmp_path / "images" / "b.JPG", suffix_format="JPEG")
    write_label(tmp_path / "labels" / "b.png", label_values(values=(0, 1)))
    write_label(tmp_path / "labels" / "c.png", label_values(values=(0, 1)))
    write_image(tmp_path / "images" / "d.jpg", suffix_format="JPEG")  # no label
    write_image(tmp_path / "images" / "e.jpg", suffix_format="JPEG")
    write_image(tmp_path / "labels" / "e.png", suffix_format="PNG")  # an RGB picture where class ids belong
    config = tmp_path / "cfg.yaml"
    config.write_text(yaml.safe_dump({"data": {"type": "folder", "root": str(tmp_path),
                                               "options": {"class_names": ["a", "b"]}}}))
    assert run_cli([str(config)]) == 1
    out = capsys.readouterr().out
    assert "2 pairs, 5 problem(s)" in out
    assert "no label for " + str(tmp_path / "images" / "d.jpg") in out
    assert str(tmp_path / "labels" / "e.png") + ": colour label map" in out
    assert "b.JPG is not used: its ending '.JPG' differs in case from '.jpg'" in out
    assert "label " + str(tmp_path / "labels" / "b.png") + " has no image" in out
    assert "label " + str(tmp_path / "labels" / "c.png") + " has no image" in out
