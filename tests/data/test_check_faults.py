"""check-data reports bombs, truncated and empty files with their paths and carries on."""

from __future__ import annotations

import argparse

from ssformer.cli import check_data
from ssformer.data import CamVid
from ssformer.data.check import check_dataset
from tests.data.layouts import make_camvid
from tests.images_for_faults import bomb_png


def test_bombs_truncated_and_empty_files_are_problems_not_crashes(tmp_path, capsys):
    make_camvid(tmp_path, splits=(("train", 5),))
    image = tmp_path / "train" / "0001TP_{:06d}.png"
    (tmp_path / "train" / "0001TP_000000.png").write_bytes(bomb_png())
    good = (tmp_path / "train" / "0001TP_000001.png").read_bytes()
    (tmp_path / "train" / "0001TP_000001.png").write_bytes(good[: len(good) // 2])
    (tmp_path / "trainannot" / "0001TP_000002.png").write_bytes(bomb_png(1, 900_000_000))  # a 1x900M bomb label
    (tmp_path / "train" / "0001TP_000003.png").write_bytes(b"")
    report = check_dataset(CamVid(tmp_path, "train"))
    text = "\n".join(report.problems)
    assert len(report.problems) == 4, text
    assert f"cannot read image {str(image).format(0)}: " in text and "decompression bomb" in text.lower()
    assert f"cannot read image {str(image).format(1)}: " in text
    assert f"cannot read label {tmp_path / 'trainannot' / '0001TP_000002.png'}: " in text
    assert f"cannot read image {str(image).format(3)}: " in text
    assert report.sizes[(12, 16)] == 1  # the one good pair was still read

    parser = argparse.ArgumentParser()
    check_data.add_parser(parser.add_subparsers())
    args = parser.parse_args(["check-data", "--no-progress", "--type", "camvid", "--root", str(tmp_path),
                              "--split", "train"])
    assert args.func(args) == 1
    assert capsys.readouterr().out.count("PROBLEM:") == 4
