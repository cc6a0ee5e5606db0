"""Whether a work directory already holds a training run, and clearing one when asked to.

A new run never lands on an earlier one by accident: ``latest.pt`` would go back to an earlier
iteration, stale ``iter_N.pt`` would stay beside the new ones and ``log.jsonl`` would mix both runs.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from ssformer.errors import UserError

_RUN_FILES = ("latest.pt", "best.pt", "log.jsonl", "model")  # plus iter_N.pt


def earlier_run(work_dir: Path) -> list[str]:
    """The names of an earlier run's checkpoints, log and model folder in ``work_dir`` (empty: none)."""
    if not work_dir.is_dir():
        return []
    found = [name for name in _RUN_FILES if (work_dir / name).exists()]
    return found + sorted(p.name for p in work_dir.glob("iter_*.pt"))


def refuse_earlier_run(work_dir: Path, how: str = "continue it with --resume, ") -> None:
    """Raise a one-line :class:`UserError` when ``work_dir`` holds an earlier run; ``how`` says how to
    continue it (the demo has no ``--resume``)."""
    found = earlier_run(work_dir)
    if found:
        shown = ", ".join(found[:4]) + (", ..." if len(found) > 4 else "")
        raise UserError(f"{work_dir} already holds a training run ({shown}); {how}give a new --work-dir, "
                        "or --overwrite to delete that run and start over")


def clear_earlier_run(work_dir: Path) -> list[str]:
    """Delete what an earlier run wrote (checkpoints, log, model folder, TensorBoard events); returns the names."""
    found = earlier_run(work_dir)
    if (work_dir / "tensorboard").is_dir():
        found.append("tensorboard")
    for name in found:
        path = work_dir / name
        if path.is_dir():
            shutil.rmtree(path)
        else:
            path.unlink(missing_ok=True)
    return found
