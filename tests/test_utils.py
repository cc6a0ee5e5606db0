"""atomic_write: all or nothing, and the permissions a plain open() would give."""

from __future__ import annotations

import os
import stat

import pytest

from ssformer.utils import atomic_write, current_umask


@pytest.mark.parametrize("umask, mode", [(0o022, 0o644), (0o002, 0o664), (0o077, 0o600)])
def test_files_follow_the_umask(tmp_path, umask, mode):
    old = os.umask(umask)
    try:
        assert current_umask() == umask
        with atomic_write(tmp_path / "out.txt") as tmp:
            tmp.write_text("x")
        plain = tmp_path / "plain.txt"
        plain.write_text("x")
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "out.txt").stat().st_mode) == mode == stat.S_IMODE(plain.stat().st_mode)


def test_a_failed_write_leaves_the_old_file_and_no_temporary(tmp_path):
    target = tmp_path / "out.txt"
    target.write_text("old")
    with pytest.raises(RuntimeError), atomic_write(target) as tmp:
        tmp.write_text("new")
        raise RuntimeError("crash")
    assert target.read_text() == "old" and [p.name for p in tmp_path.iterdir()] == ["out.txt"]


def test_checkpoints_follow_the_umask(tmp_path):
    import torch

    import ssformer
    from ssformer.engine.checkpoint import save_checkpoint
    from tests.conftest import tiny_model_kwargs

    old = os.umask(0o022)
    try:
        model = ssformer.SSformer(**tiny_model_kwargs())
        model.save_pretrained(tmp_path / "model")
        save_checkpoint({"model": model.state_dict(), "iter": torch.tensor(1)}, tmp_path / "latest.pt")
    finally:
        os.umask(old)
    files = [p for p in tmp_path.rglob("*") if p.is_file()]
    assert len(files) >= 3
    assert {stat.S_IMODE(p.stat().st_mode) for p in files} == {0o644}


def test_library_write_failures_become_one_disk_line_and_other_errors_stay(tmp_path):
    import pytest

    from ssformer.utils import DiskFullError, atomic_write

    target = tmp_path / "weights.safetensors"
    target.write_text("previous")
    with pytest.raises(DiskFullError, match=r"no space left on the disk of .* to write weights.safetensors .*intact"):
        with atomic_write(target):
            raise RuntimeError("Error while serializing: IoError(Os { code: 28, kind: StorageFull, message: "
                               "\"No space left on device\" })")
    with pytest.raises(RuntimeError, match="shape mismatch"):  # not a disk fault: unchanged
        with atomic_write(target):
            raise RuntimeError("shape mismatch")
    with pytest.raises(PermissionError):
        with atomic_write(target):
            raise PermissionError(13, "Permission denied")
    assert target.read_text() == "previous" and not list(tmp_path.glob(".*.tmp"))
