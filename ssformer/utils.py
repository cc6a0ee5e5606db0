"""Small helpers shared across the package."""

from __future__ import annotations

import contextlib
import errno
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

from ssformer.errors import UserError


class DiskFullError(OSError):
    """No space left where a file was being written; the message names the folder and the sizes."""


def current_umask() -> int:
    """The process umask, read without changing it where Linux reports it (``os.umask`` can only
    be read by setting it, which races with other threads creating files)."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except OSError:
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


@contextlib.contextmanager
def atomic_write(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on success it replaces ``path`` in one rename.

    A crash or exception leaves any previous file at ``path`` untouched and removes the temporary.
    The file gets the permissions a plain ``open(path, "w")`` would (0666 minus the umask), not
    the temporary's private 0600.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        with open(tmp_path, "rb") as f:
            os.fsync(f.fileno())
        os.chmod(tmp_path, 0o666 & ~current_umask())
        os.replace(tmp_path, path)
    except OSError as e:
        if e.errno not in (errno.ENOSPC, errno.EDQUOT):
            raise
        written = tmp_path.stat().st_size if tmp_path.exists() else 0
        free = shutil.disk_usage(path.parent).free
        raise DiskFullError(e.errno, f"no space left on the disk of {path.parent} to write {path.name} "
                                     f"({written / 2**20:.0f} MiB written before it ran out, {free / 2**20:.0f} MiB "
                                     f"free now); the previous {path.name}, if any, is intact") from None
    finally:
        if tmp_path.exists():
            tmp_path.unlink()


def remove_stale_temporaries(directory: str | os.PathLike) -> list[Path]:
    """Delete the ``.NAME.*.tmp`` files :func:`atomic_write` leaves when its process is killed mid-write."""
    removed = []
    for tmp in Path(directory).glob(".*.tmp"):
        if tmp.is_file():
            tmp.unlink(missing_ok=True)
            removed.append(tmp)
    return removed


def check_writable(path: str | os.PathLike, what: str, folder: bool) -> None:
    """Refuse, before any work, an output ``path`` that cannot be written: a file where a folder is
    wanted (or the reverse), a file in the way of a parent folder (``/etc/passwd/x``), or a
    read-only or forbidden place. ``what`` names the argument in the one-line error."""
    path = Path(path)
    if path.exists() and path.is_dir() != folder:
        raise UserError(f"{what} {path} is {'a file' if folder else 'a folder'}; give "
                        f"{'a folder (new or existing)' if folder else 'a file path'}")
    existing = path if path.exists() else path.parent
    while not existing.exists():
        existing = existing.parent
    if not existing.is_dir():
        raise UserError(f"{what} {path}: {existing} is a file, so no folder can be made under it")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise UserError(f"{what} {path}: {existing} is not writable (a read-only file system or no permission); "
                        f"choose another place")
