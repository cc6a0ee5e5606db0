"""``ssformer predict`` on many files: decode workers, resuming, text progress, torchrun shards."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from ssformer.cli.main import main
from ssformer.inference import batch as predict_batch
from tests.conftest import save_tiny_model

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    return save_tiny_model(tmp_path_factory, 5, "tiny")


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    root = tmp_path_factory.mktemp("images")
    rng = np.random.default_rng(0)
    for i in range(7):
        path = root / ("sub" if i % 2 else ".") / f"img{i}.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(rng.integers(0, 256, (20 + i, 30 - i, 3), dtype=np.uint8)).save(path)
    return root


def masks(out: Path) -> dict[str, np.ndarray]:
    return {p.relative_to(out).as_posix(): np.asarray(Image.open(p)) for p in sorted(out.rglob("img*.png"))}


def test_workers_resume_and_overwrite(tiny, folder, tmp_path, capsys):
    reference = tmp_path / "reference"
    assert main(["predict", "--checkpoint", str(tiny), str(folder), "--out", str(reference), "--num-workers", "0"]) == 0
    out = tmp_path / "out"
    assert main(["predict", "--checkpoint", str(tiny), str(folder), "--out", str(out), "--num-workers", "2",
                 "--batch-size", "3"]) == 0
    assert len(masks(out)) == 7 and all(np.array_equal(masks(out)[k], v) for k, v in masks(reference).items())
    first = json.loads((out / "predictions.json").read_text())
    capsys.readouterr()
    # a second run writes nothing new: every output is there; predictions.json keeps every entry
    stamp = {p: p.stat().st_mtime_ns for p in out.rglob("img*")}
    (out / "sub" / "img1.png").unlink()  # ...except the one mask removed here, which is redone
    assert main(["predict", "--checkpoint", str(tiny), str(folder), "--out", str(out), "--num-workers", "0"]) == 0
    assert "6 already there, kept" in capsys.readouterr().out
    assert {p: p.stat().st_mtime_ns for p in out.rglob("img*") if not p.name.startswith("img1")} == \
        {p: t for p, t in stamp.items() if not p.name.startswith("img1")}
    assert json.loads((out / "predictions.json").read_text()) == first
    assert np.array_equal(masks(out)["sub/img1.png"], masks(reference)["sub/img1.png"])
    assert main(["predict", "--checkpoint", str(tiny), str(folder), "--out", str(out), "--overwrite"]) == 0
    assert "already there" not in capsys.readouterr().out
    assert all(p.stat().st_mtime_ns != t for p, t in stamp.items() if p.exists())


def test_text_progress_lines_when_not_a_terminal(tiny, folder, tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(predict_batch, "PROGRESS_SECONDS", 0.0)  # a line per image
    assert main(["predict", "--checkpoint", str(tiny), str(folder), "--out", str(tmp_path / "o"),
                 "--num-workers", "0", "--batch-size", "1"]) == 0
    lines = [line for line in capsys.readouterr().err.splitlines() if line.startswith("ssformer predict: ")]
    notes = [line for line in lines if line.startswith("ssformer predict: note: ")]  # the model has no pipeline
    assert len(notes) == 1 and "carries no test pipeline" in notes[0]
    assert [line.split()[2] for line in lines if line not in notes] == [f"{i}/7" for i in range(1, 8)]


@pytest.mark.slow
def test_torchrun_shards_write_exactly_the_single_process_masks(tiny, folder, tmp_path):
    single = tmp_path / "single"
    assert main(["predict", "--checkpoint", str(tiny), str(folder), "--out", str(single), "--num-workers", "0"]) == 0
    sharded = tmp_path / "sharded"
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    done = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
                           "-m", "ssformer.cli.main", "predict", "--checkpoint", str(tiny), str(folder),
                           "--out", str(sharded), "--device", "cpu", "--num-workers", "0"],
                          check=False, capture_output=True, text=True, timeout=600, env=env, cwd=ROOT)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.count("ssformer predict: 7 masks in") == 1  # rank 0 reports for both
    one, two = masks(single), masks(sharded)
    assert sorted(one) == sorted(two) and all(np.array_equal(one[k], two[k]) for k in one)
    merged = json.loads((sharded / "predictions.json").read_text())
    assert merged["images"] == json.loads((single / "predictions.json").read_text())["images"]
    assert list(merged["images"]) == list(json.loads((single / "predictions.json").read_text())["images"])
    assert not list(sharded.glob("predictions.rank*.json"))
