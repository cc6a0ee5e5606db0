"""``ssformer eval`` on a split with a bomb and a truncated image: the rest evaluated, the failures listed."""

from __future__ import annotations

import json
import shutil

import torch

import ssformer
from ssformer.cli.main import main
from ssformer.engine.config import sample_root
from tests.images_for_faults import bomb_png


def test_eval_skips_unreadable_images_and_exits_1(tmp_path, capsys):
    root = tmp_path / "sample"
    shutil.copytree(sample_root(), root)
    names = [line.split()[0] for line in (root / "val.txt").read_text().split("\n") if line.strip()]
    bomb, truncated = (root / "images" / f"{names[0]}.png"), (root / "images" / f"{names[1]}.png")
    bomb.write_bytes(bomb_png())
    truncated.write_bytes(truncated.read_bytes()[:200])
    torch.manual_seed(0)
    model = tmp_path / "model"
    ssformer.SSformer(num_classes=4, embed_dim=8, depths=(1, 1, 1, 1), num_heads=(1, 1, 2, 2), window_size=4,
                      decoder_dim=8).save_pretrained(model)
    out = tmp_path / "metrics.json"
    argv = ["eval", "sample", "--data-root", str(root), "--checkpoint", str(model), "--out", str(out),
            "--set", "data.test_transform.img_scale=[64,48]", "--set", "eval.num_workers=0"]
    assert main(argv) == 1
    captured = capsys.readouterr()
    record = json.loads(out.read_text())
    assert record["images"] == len(names) - 2 and len(record["failed"]) == 2
    assert any(str(bomb) in m and "decompression bomb" in m.lower() for m in record["failed"])
    assert any(str(truncated) in m for m in record["failed"])
    assert "2 of 16 images could not be read" in captured.err and str(bomb) in captured.err
    assert 0.0 <= record["mIoU"] <= 1.0
