"""Small helpers shared across the package."""

from __future__ import annotations

import contextlib
import ctypes
import errno
import os
import shutil
import signal
import sys
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
    except Exception as e:
        failure = _write_failure(e)
        if failure is None:
            raise
        raise _disk_error(path, tmp_path, failure) from None
    finally:
        if tmp_path.exists():
            tmp_path.unlink()


# How a failed write shows when it is not a plain OSError: torch's zip writer raises RuntimeError
# ("PytorchStreamWriter failed writing file data/3: file write failed", "unexpected pos ..."), and
# safetensors its own error carrying the OS error ("No space left on device (os error 28)").
_NO_SPACE = ("No space left on device", "os error 28", "Disk quota exceeded", "os error 122", "StorageFull")
_WRITE_FAILED = ("file write failed", "PytorchStreamWriter failed", "unexpected pos")


def _write_failure(error: BaseException) -> str | None:
    """``"no space"`` for a full disk or quota, ``"write failed"`` for a write the library saw fail
    without saying why, None for any other exception (which is not a disk fault)."""
    if isinstance(error, OSError) and error.errno in (errno.ENOSPC, errno.EDQUOT):
        return "no space"
    text = str(error)
    if isinstance(error, OSError) and error.errno is not None:
        return None  # another OS error (permissions, a missing folder) keeps its own message
    if any(marker in text for marker in _NO_SPACE):
        return "no space"
    if any(marker in text for marker in _WRITE_FAILED):
        return "write failed"
    return None


def _disk_error(path: Path, tmp_path: Path, failure: str) -> DiskFullError:
    written = tmp_path.stat().st_size if tmp_path.exists() else 0
    free = shutil.disk_usage(path.parent).free
    sizes = f"{written / 2**20:.0f} MiB written before it stopped, {free / 2**20:.0f} MiB free now"
    if failure == "no space":
        what = f"no space left on the disk of {path.parent} to write {path.name} ({sizes})"
    else:
        what = (f"writing {path.name} in {path.parent} failed ({sizes}): most likely its disk is full; "
                "free some space there")
    return DiskFullError(errno.ENOSPC, f"{what}; the previous {path.name}, if any, is intact")


def remove_stale_temporaries(directory: str | os.PathLike) -> list[Path]:
    """Delete the ``.NAME.*.tmp`` files :func:`atomic_write` leaves when its process is killed mid-write."""
    removed = []
    for tmp in Path(directory).glob(".*.tmp"):
        if tmp.is_file():
            tmp.unlink(missing_ok=True)
            removed.append(tmp)
    return removed


class _SignalStack(ctypes.Structure):  # stack_t of sigaltstack(2)
    _fields_ = [("ss_sp", ctypes.c_void_p), ("ss_flags", ctypes.c_int), ("ss_size", ctypes.c_size_t)]


@contextlib.contextmanager
def keep_signal_stack() -> Iterator[None]:
    """Put the calling thread's alternate signal stack back after the block (Linux; elsewhere nothing).

    Compiling an OpenVINO model replaces the thread's alternate signal stack with one of its own
    that it frees later; the next signal handled there (the SIGCHLD of an image-decoding worker
    ending, since Python's handlers run on that stack) then kills the process with SIGSEGV."""
    libc = None
    if sys.platform.startswith("linux"):
        with contextlib.suppress(OSError, AttributeError):
            libc = ctypes.CDLL(None, use_errno=True)
    saved = _SignalStack()
    if libc is None or libc.sigaltstack(None, ctypes.byref(saved)) != 0:
        yield
        return
    try:
        yield
    finally:
        libc.sigaltstack(ctypes.byref(saved), None)


_PR_SET_PDEATHSIG = 1  # linux/prctl.h


def die_with_parent(parent_pid: int, worker_id: int | None = None) -> None:
    """Run in a worker process (a DataLoader ``worker_init_fn``): have Linux kill it when its parent
    dies, so a command killed with SIGKILL leaves no orphaned worker holding memory (a worker blocked
    on a full result pipe never notices its parent is gone). Elsewhere it does nothing."""
    if not sys.platform.startswith("linux"):
        return
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        if libc.prctl(_PR_SET_PDEATHSIG, int(signal.SIGKILL), 0, 0, 0) != 0:
            return
    except (OSError, AttributeError):
        return
    if os.getppid() != parent_pid:  # the parent died before the signal was armed
        os._exit(1)
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
