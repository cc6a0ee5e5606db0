"""RNG capture/restore: the process's own GPU stream only, so a resume may see fewer GPUs."""

from __future__ import annotations

import random
import shutil

import numpy as np
import pytest
import torch
import torch.cuda.random

from ssformer.engine.checkpoint import (
    capture_rng,
    load_checkpoint,
    restore_rng,
    save_checkpoint,
)


class FakeGPUs:
    """``count`` visible GPUs with one RNG state each (a byte tensor holding the GPU's index)."""

    def __init__(self, monkeypatch, count: int, current: int = 0):
        self.count, self.current, self.set_calls = count, current, []
        for module in (torch.cuda, torch.cuda.random):
            monkeypatch.setattr(module, "device_count", lambda: self.count, raising=False)
            monkeypatch.setattr(module, "get_rng_state", self.get, raising=False)
            monkeypatch.setattr(module, "set_rng_state", self.set, raising=False)
        monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
        monkeypatch.setattr(torch.cuda, "is_initialized", lambda: True)
        monkeypatch.setattr(torch.cuda, "current_device", lambda: self.current)

    def _index(self, device) -> int:
        index = device if isinstance(device, int) else torch.device(device).index
        index = self.current if index is None or index == -1 else index
        if index >= self.count:
            raise RuntimeError(f"invalid device ordinal {index} ({self.count} visible)")
        return index

    def get(self, device="cuda"):
        return torch.full((8,), self._index(device), dtype=torch.uint8)

    def set(self, state, device="cuda"):
        self.set_calls.append((self._index(device), int(state[0])))


def test_saves_the_current_gpu_only_and_resumes_with_fewer_gpus(monkeypatch, tmp_path):
    gpus = FakeGPUs(monkeypatch, count=4, current=2)
    state = capture_rng(torch.device("cuda", 2))
    assert torch.equal(state["cuda"], torch.full((8,), 2, dtype=torch.uint8))  # GPU 2's stream, one tensor
    save_checkpoint({"rng": state}, tmp_path / "c.pt")

    gpus.count, gpus.current = 1, 0  # the resume sees one GPU: this process's stream goes to it
    restore_rng(load_checkpoint(tmp_path / "c.pt")["rng"], torch.device("cuda", 0))
    assert gpus.set_calls == [(0, 2)]


def test_default_device_is_the_current_gpu(monkeypatch):
    gpus = FakeGPUs(monkeypatch, count=2, current=1)
    state = capture_rng()
    assert int(state["cuda"][0]) == 1
    restore_rng(state)
    assert gpus.set_calls == [(1, 1)]


def test_cpu_training_saves_no_gpu_state(monkeypatch):
    FakeGPUs(monkeypatch, count=2)
    assert "cuda" not in capture_rng(torch.device("cpu"))


def test_host_streams_round_trip():
    state = capture_rng(torch.device("cpu"))
    expected = (torch.rand(3), np.random.rand(3), random.random())
    restore_rng(state, torch.device("cpu"))
    got = (torch.rand(3), np.random.rand(3), random.random())
    assert torch.equal(got[0], expected[0]) and np.array_equal(got[1], expected[1]) and got[2] == expected[2]


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="a real GPU stream (tools/gpu_check.sh)")
def test_real_gpu_stream_round_trip():
    device = torch.device("cuda", torch.cuda.current_device())
    torch.rand(1, device=device)
    state = capture_rng(device)
    expected = torch.rand(4, device=device)
    restore_rng(state, device)
    torch.testing.assert_close(torch.rand(4, device=device), expected, rtol=0, atol=0)


# --- integrity, foreign and mismatched checkpoints, stale temporaries, a full disk ----------------------
def _zero_bytes_of_a_tensor(path, count=256):
    """Corrupt a torch zip checkpoint as a bad disk would: zero ``count`` bytes inside one tensor's data."""
    import zipfile

    source = path.read_bytes()
    tmp = path.with_suffix(".src")
    tmp.write_bytes(source)
    with zipfile.ZipFile(tmp) as zin, zipfile.ZipFile(path, "w") as zout:
        sizes = {i.filename: i.file_size for i in zin.infolist()}
        victim = max((n for n in sizes if "/data/" in n), key=sizes.get)
        for item in zin.infolist():
            data = zin.read(item.filename)
            if item.filename == victim:
                data = data[:64] + bytes(count) + data[64 + count:]
            zout.writestr(item, data)
    tmp.unlink()


def test_a_corrupted_checkpoint_is_refused_naming_the_previous_one(tmp_path):
    from ssformer.engine.checkpoint import CorruptCheckpoint, load_checkpoint, save_checkpoint
    from ssformer.engine.trainer import train
    from tests.engine.conftest import tiny_config

    train(tiny_config(tmp_path))  # latest.pt, iter_3.pt, iter_6.pt
    state = load_checkpoint(tmp_path / "latest.pt")
    assert len(state["sha256"]) == 64
    _zero_bytes_of_a_tensor(tmp_path / "latest.pt")
    with pytest.raises(CorruptCheckpoint, match=r"latest.pt is corrupt .*newest good checkpoint there is .*iter_6.pt"):
        load_checkpoint(tmp_path / "latest.pt")
    with pytest.raises(CorruptCheckpoint):
        train(tiny_config(tmp_path), resume=True)
    save_checkpoint({"w": torch.ones(3)}, tmp_path / "plain.pt")
    assert torch.equal(load_checkpoint(tmp_path / "plain.pt")["w"], torch.ones(3))


def test_resume_refuses_another_architecture_and_foreign_files(tmp_path, capsys):
    from ssformer.cli.main import main
    from ssformer.engine.config import sample_root
    from tests.engine.conftest import tiny_cli_sets

    work = tmp_path / "run"
    assert main(["train", "--work-dir", str(work), *tiny_cli_sets(work, "train.iters=3")]) == 0
    capsys.readouterr()
    assert main(["train", "--work-dir", str(work), "--resume", *tiny_cli_sets(work, "model.embed_dim=16")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "model embed_dim 8 there, 16 here" in err[0] and "config.yaml" in err[0]
    torch.save({"state_dict": {"w": torch.zeros(2)}}, work / "latest.pt")
    assert main(["train", "--work-dir", str(work), "--resume", "--data-root", str(sample_root()),
                 *tiny_cli_sets(work)]) == 2
    assert "is not a training checkpoint of this package" in capsys.readouterr().err


def test_stale_temporaries_are_removed_at_start(tmp_path):
    from ssformer.engine.trainer import train
    from tests.engine.conftest import tiny_config

    tmp_path.mkdir(exist_ok=True)
    stale = tmp_path / ".latest.pt.k2j3h4.tmp"
    stale.write_bytes(b"half a checkpoint")
    messages: list[str] = []
    train(tiny_config(tmp_path, "train.iters=1"), echo=messages.append)
    assert not stale.exists() and any(str(stale) in m for m in messages)


def test_a_full_disk_is_one_line_naming_the_path(tmp_path, monkeypatch, capsys):
    import errno

    from ssformer.cli.main import main
    from ssformer.utils import DiskFullError, atomic_write
    from tests.engine.conftest import tiny_cli_sets

    target = tmp_path / "latest.pt"
    target.write_text("previous")
    with pytest.raises(DiskFullError, match="no space left on the disk of .* to write latest.pt .*intact"):
        with atomic_write(target) as tmp:
            tmp.write_bytes(b"x" * 1000)
            raise OSError(errno.ENOSPC, "No space left on device")
    assert target.read_text() == "previous" and not list(tmp_path.glob(".*.tmp"))

    def full_disk(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(torch, "save", full_disk)
    work = tmp_path / "run"
    assert main(["train", "--work-dir", str(work), *tiny_cli_sets(work, "train.iters=3")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "no space left on the disk of" in err[0] and f"{work} to write best.pt" in err[0]


def test_resume_from_a_corrupted_latest_is_one_line(tmp_path, capsys):
    from ssformer.cli.main import main
    from tests.engine.conftest import tiny_cli_sets

    work = tmp_path / "run"
    assert main(["train", "--work-dir", str(work), *tiny_cli_sets(work)]) == 0
    _zero_bytes_of_a_tensor(work / "latest.pt")
    capsys.readouterr()
    assert main(["train", "--work-dir", str(work), "--resume", *tiny_cli_sets(work)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "latest.pt is corrupt" in err[0] and "iter_6.pt" in err[0]


def _files(folder):
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in folder.rglob("*") if p.is_file()}


def test_training_over_an_earlier_run_is_refused_unless_asked(tmp_path, capsys):
    import json

    from ssformer.cli.main import main
    from tests.engine.conftest import tiny_cli_sets

    work = tmp_path / "run"
    assert main(["train", "--work-dir", str(work), *tiny_cli_sets(work)]) == 0  # iter_3.pt, iter_6.pt, latest.pt
    before = _files(work)
    capsys.readouterr()
    assert main(["train", "--work-dir", str(work), *tiny_cli_sets(work, "train.iters=2")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and str(work) in err[0] and "--resume" in err[0] and "--work-dir" in err[0] \
        and "--overwrite" in err[0], err
    assert _files(work) == before  # nothing written, nothing removed
    # asked explicitly: the earlier run's checkpoints, log and model go, so nothing stale is left to mix in
    assert main(["train", "--work-dir", str(work), "--overwrite", *tiny_cli_sets(work, "train.iters=2")]) == 0
    assert sorted(p.name for p in work.glob("*.pt")) == ["best.pt", "iter_2.pt", "latest.pt"]
    assert load_checkpoint(work / "latest.pt")["iteration"] == 2
    records = [json.loads(line) for line in (work / "log.jsonl").read_text().splitlines()]
    assert [r["iter"] for r in records if r["event"] == "train"] == [1, 2]
    capsys.readouterr()
    assert main(["train", "--work-dir", str(work), "--overwrite", "--resume", *tiny_cli_sets(work)]) == 2
    assert "--overwrite" in capsys.readouterr().err


def test_a_run_refused_for_its_data_writes_nothing(tmp_path):
    import numpy as np
    from PIL import Image

    from ssformer.data import DataError
    from ssformer.engine.config import sample_root
    from ssformer.engine.trainer import train
    from tests.engine.conftest import tiny_config

    root = tmp_path / "sample"
    shutil.copytree(sample_root(), root)
    for label in (root / "labels").glob("train_*.png"):  # every training label holds a class the sample lacks
        array = np.asarray(Image.open(label)).copy()
        array[0, 0] = 9
        Image.fromarray(array).save(label)
    work = tmp_path / "run"
    with pytest.raises(DataError):
        train(tiny_config(work, f"data.root={root}"))
    assert not work.exists() or not any(work.iterdir()), sorted(work.rglob("*"))


def test_a_disk_that_fills_inside_torch_save_is_one_line_and_keeps_earlier_checkpoints(tmp_path, monkeypatch, capsys):
    from ssformer.cli.main import main
    from tests.engine.conftest import tiny_cli_sets

    real_save, calls = torch.save, {"n": 0}

    def fills_up(obj, f, *args, **kwargs):  # what torch raises when the disk fills mid-write
        calls["n"] += 1
        if calls["n"] <= 2:  # latest.pt and iter_3.pt of iteration 3 fit
            return real_save(obj, f, *args, **kwargs)
        with open(f, "wb") as partial:
            partial.write(b"PK" + b"\0" * 4096)
        raise RuntimeError("[enforce fail at inline_container.cc:778] . PytorchStreamWriter failed writing file "
                           "data/17: file write failed")

    monkeypatch.setattr(torch, "save", fills_up)
    work = tmp_path / "run"
    assert main(["train", "--work-dir", str(work), *tiny_cli_sets(work, "train.iters=6")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "Traceback" not in err[0], err
    assert f"{work}" in err[0] and ".pt" in err[0] and "disk" in err[0] and "intact" in err[0], err
    assert load_checkpoint(work / "latest.pt")["iteration"] == 3
    assert load_checkpoint(work / "iter_3.pt")["iteration"] == 3
    assert not list(work.glob(".*.tmp"))
