"""``ssformer predict`` over a folder with broken files: every good mask written, every failure listed."""

from __future__ import annotations

import json
import os
import stat

import numpy as np
import pytest
from PIL import Image

import ssformer
from ssformer.cli.main import main
from tests.conftest import save_tiny_model
from tests.images_for_faults import write_bad_images


@pytest.fixture(scope="module")
def tiny150(tmp_path_factory):
    return save_tiny_model(tmp_path_factory, 150, "tiny150")


@pytest.fixture
def umask_022():
    old = os.umask(0o022)
    yield
    os.umask(old)


def test_a_folder_with_bad_files(tiny150, tmp_path, capsys, umask_022):
    inputs = tmp_path / "in"
    bad = write_bad_images(inputs / "bad")
    rng = np.random.default_rng(1)
    good = {"a": rng.integers(0, 256, (30, 40, 3), dtype=np.uint8), "z/b": rng.integers(0, 256, (25, 19, 3), dtype=np.uint8),
            "thin": rng.integers(0, 256, (1, 40000, 3), dtype=np.uint8)}  # 1x40000: a mask, not a crash
    for name, array in good.items():
        (inputs / name).parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(array).save(inputs / f"{name}.png")
    out = tmp_path / "out"
    assert main(["predict", "--checkpoint", str(tiny150), str(inputs), "--out", str(out), "--batch-size", "2"]) == 1
    err = capsys.readouterr().err
    summary = json.loads((out / "predictions.json").read_text())
    assert sorted(summary["images"]) == ["a", "thin", "z/b"]
    assert sorted(summary["failed"]) == sorted(str(inputs / "bad" / name) for name in bad)
    assert "decompression bomb" in summary["failed"][str(inputs / "bad" / "bomb.png")].lower()
    assert f"{len(bad)} of {len(bad) + len(good)} inputs failed" in err
    for name in bad:
        assert f"skipped {inputs / 'bad' / name}: " in err
    segmenter = ssformer.Segmenter(tiny150)
    for name, array in good.items():
        mask = Image.open(out / f"{name}.png")
        assert mask.size == (array.shape[1], array.shape[0])
        np.testing.assert_array_equal(np.asarray(mask), segmenter.predict(array))
    written = [p for p in out.rglob("*") if p.is_file()]
    assert {p.relative_to(out).as_posix() for p in written} == {
        "legend.png", "predictions.json", "a.png", "a_overlay.jpg", "thin.png", "thin_overlay.jpg",
        "z/b.png", "z/b_overlay.jpg"}
    for path in written:  # like any other tool's output under umask 022
        assert stat.S_IMODE(path.stat().st_mode) == 0o644, (path, oct(path.stat().st_mode))


def test_save_proba_too_large_is_a_per_file_error(tiny150, tmp_path, capsys, monkeypatch):
    from ssformer.inference import segmenter as segmenter_module

    monkeypatch.setattr(segmenter_module, "MAX_FULL_SIZE_BYTES", 150 * 30 * 30 * 4)
    inputs = tmp_path / "in"
    inputs.mkdir()
    rng = np.random.default_rng(2)
    Image.fromarray(rng.integers(0, 256, (30, 30, 3), dtype=np.uint8)).save(inputs / "small.png")
    Image.fromarray(rng.integers(0, 256, (31, 30, 3), dtype=np.uint8)).save(inputs / "large.png")
    out = tmp_path / "out"
    assert main(["predict", "--checkpoint", str(tiny150), str(inputs), "--out", str(out), "--save-proba"]) == 1
    summary = json.loads((out / "predictions.json").read_text())
    assert list(summary["images"]) == ["small"]
    message = summary["failed"][str(inputs / "large.png")]
    assert message.startswith("probabilities for a 31x30 image needs") and "above the limit" in message
    assert np.load(out / "small_proba.npy").shape == (150, 30, 30)
    assert "large.png" in capsys.readouterr().err


def _snapshot(folder):
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in folder.rglob("*") if p.is_file()}


@pytest.mark.parametrize("layout", ["same-folder", "inside-input", "file-over-file", "glob"])
def test_outputs_never_land_on_the_inputs(tiny150, tmp_path, capsys, layout):
    photos = tmp_path / "photos"
    photos.mkdir()
    rng = np.random.default_rng(2)
    for name in ("a.png", "b.jpg"):
        Image.fromarray(rng.integers(0, 256, (20, 24, 3), dtype=np.uint8)).save(photos / name)
    before = _snapshot(tmp_path)
    inputs, out = {"same-folder": ([str(photos)], photos), "inside-input": ([str(photos)], photos / "masks"),
                   "file-over-file": ([str(photos / "a.png")], photos),
                   "glob": ([str(photos / "*.png")], photos)}[layout]
    assert main(["predict", "--checkpoint", str(tiny150), *inputs, "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--out" in err[0] and str(out) in err[0], err
    assert _snapshot(tmp_path) == before and not (photos / "masks").exists()  # nothing written, nothing changed


def test_an_output_folder_beside_the_inputs_is_fine(tiny150, tmp_path):
    photos = tmp_path / "photos"
    photos.mkdir()
    Image.fromarray(np.zeros((20, 24, 3), dtype=np.uint8)).save(photos / "a.jpg")
    assert main(["predict", "--checkpoint", str(tiny150), str(photos / "a.jpg"), "--out", str(photos),
                 "--no-overlay"]) == 0  # a.jpg -> a.png: another file, the input is untouched
    assert (photos / "a.png").is_file() and (photos / "a.jpg").is_file()


@pytest.mark.parametrize("fault", ["int64", "bool", "float8", "nan", "inf"])
def test_weights_that_are_not_what_the_model_needs_are_refused(tiny150, tmp_path, capsys, fault):
    import shutil

    import torch
    from safetensors.torch import load_file, save_file

    folder = tmp_path / "model"
    shutil.copytree(tiny150, folder)
    state = load_file(folder / "model.safetensors")
    name = next(k for k in state if k.endswith("qkv.weight"))
    tensor = state[name]
    state[name] = {"int64": lambda: tensor.round().long(), "bool": lambda: tensor > 0,
                   "float8": lambda: tensor.to(torch.float8_e4m3fn),
                   "nan": lambda: tensor.index_fill(0, torch.tensor([1]), float("nan")),
                   "inf": lambda: tensor.index_fill(0, torch.tensor([0]), float("-inf"))}[fault]()
    save_file(state, folder / "model.safetensors")
    Image.fromarray(np.zeros((20, 24, 3), dtype=np.uint8)).save(tmp_path / "a.png")
    out = tmp_path / "out"
    assert main(["predict", "--checkpoint", str(folder), str(tmp_path / "a.png"), "--out", str(out)]) == 2
    err = [line for line in capsys.readouterr().err.strip().splitlines() if ": note: " not in line]
    assert len(err) == 1 and name in err[0], err
    assert ("NaN or inf" if fault in ("nan", "inf") else str(state[name].dtype).removeprefix("torch.")) in err[0]
    assert not out.exists()



def _children(pid: int) -> list[int]:
    found = []
    for stat_file in __import__("pathlib").Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat_file.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:  # fields: state, ppid, ...
            found.append(int(stat_file.parent.name))
    return found


def _alive(pid: int) -> bool:
    try:
        state = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


@pytest.mark.skipif(not os.path.isdir("/proc"), reason="reads the process table from /proc (Linux)")
def test_decoding_workers_die_with_a_killed_predict(tiny150, tmp_path):
    import signal
    import subprocess
    import sys
    import time

    images = tmp_path / "big"
    images.mkdir()
    for i in range(60):  # 5.8 MB decoded each: a worker's result does not fit in the pipe and it blocks
        Image.fromarray(np.full((1200, 1600, 3), i, dtype=np.uint8)).save(images / f"{i:03d}.png")
    repo = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    env = {**os.environ, "PYTHONPATH": repo}
    proc = subprocess.Popen([sys.executable, "-m", "ssformer.cli.main", "predict", "--checkpoint", str(tiny150),
                             str(images), "--out", str(tmp_path / "out"), "--img-scale", "64", "48",
                             "--batch-size", "1", "--num-workers", "2", "--no-overlay"],
                            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    workers: list[int] = []
    try:
        deadline = time.monotonic() + 120
        while len(workers) < 2 and time.monotonic() < deadline and proc.poll() is None:
            time.sleep(0.1)
            workers = [pid for pid in _children(proc.pid) if _alive(pid)]
        assert len(workers) >= 2, "the workers never started"
        time.sleep(1.0)  # let them decode ahead and block on the full pipe
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        deadline = time.monotonic() + 15
        while any(_alive(pid) for pid in workers) and time.monotonic() < deadline:
            time.sleep(0.2)
        left = [pid for pid in workers if _alive(pid)]
        assert not left, f"decoding workers {left} outlived their killed parent"
    finally:
        for pid in set(_children(proc.pid) + [pid for pid in workers if _alive(pid)]):
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        proc.kill()
