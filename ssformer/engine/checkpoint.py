"""Training checkpoints: atomic writes, ``weights_only`` loading, RNG capture, rotation.

A checkpoint is a dict of tensors and primitive containers only, so ``weights_only`` loading
reads it: ``model`` (state dict), ``model_config``, ``optimizer``, ``scaler``, ``iteration`` (number of
completed iterations), ``rng`` (torch and the process's own GPU states as tensors, numpy and Python states as lists),
``best``, ``training_config`` (the model's recipe; older files call it ``config``) and ``preprocessing`` (its test settings), so a training checkpoint loads as a model
like any other file (``ssformer.SSformer.from_pretrained``).
"""

from __future__ import annotations

import hashlib
import os
import random
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ssformer.checkpoints.io import CheckpointError, torch_load, write_torch
from ssformer.errors import UserError


def capture_rng(device: torch.device | str | None = None) -> dict[str, Any]:
    """Global RNG states as tensors / plain lists; with a CUDA ``device``, that GPU's state only.

    One state per process, not ``get_rng_state_all()``: a resume may see fewer GPUs, and each
    process's stream belongs to its rank, not to a physical GPU index.
    """
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    version, py_state, gauss = random.getstate()
    state: dict[str, Any] = {
        "torch": torch.get_rng_state(),
        "numpy": [kind, torch.from_numpy(keys.astype(np.int64)), int(pos), int(has_gauss), float(cached)],
        "python": [int(version), list(py_state), gauss],
    }
    device = _cuda_device(device)
    if device is not None:
        state["cuda"] = torch.cuda.get_rng_state(device)
    return state


def _cuda_device(device: torch.device | str | None) -> torch.device | None:
    """The CUDA device whose RNG state is saved / restored: ``device``, or the current GPU if in use."""
    if device is not None:
        device = torch.device(device)
        if device.type != "cuda":
            return None
        return device if device.index is not None else torch.device("cuda", torch.cuda.current_device())
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        return torch.device("cuda", torch.cuda.current_device())
    return None


def restore_rng(state: dict[str, Any], device: torch.device | str | None = None) -> None:
    """Inverse of :func:`capture_rng`: the saved CUDA state goes to ``device`` (default: the current GPU)."""
    torch.set_rng_state(state["torch"])
    kind, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((kind, keys.numpy().astype(np.uint32), pos, has_gauss, cached))
    version, py_state, gauss = state["python"]
    random.setstate((version, tuple(py_state), gauss))
    cuda = state.get("cuda")
    target = _cuda_device(device) if torch.cuda.is_available() else None
    if cuda is None or target is None:
        return
    torch.cuda.set_rng_state(cuda, target)


def content_hash(state: dict[str, Any]) -> str:
    """SHA-256 over every tensor of ``state`` (names, dtypes, shapes and bytes), in a fixed order."""
    digest = hashlib.sha256()

    def visit(prefix: str, value: Any) -> None:
        if isinstance(value, torch.Tensor):
            tensor = value.detach().cpu().contiguous()
            digest.update(f"{prefix}:{tensor.dtype}:{tuple(tensor.shape)};".encode())
            digest.update(tensor.view(-1).view(torch.uint8).numpy() if tensor.numel() else b"")
        elif isinstance(value, dict):
            for key in sorted(value, key=str):
                visit(f"{prefix}/{key}", value[key])
        elif isinstance(value, (list, tuple)):
            for i, item in enumerate(value):
                visit(f"{prefix}/{i}", item)

    visit("", {k: v for k, v in state.items() if k != "sha256"})
    return digest.hexdigest()


def save_checkpoint(state: dict[str, Any], path: str | os.PathLike) -> Path:
    """Write ``state`` to ``path`` atomically (a crash leaves the previous file intact), with the
    :func:`content_hash` of its tensors, which :func:`load_checkpoint` verifies."""
    return write_torch({**state, "sha256": content_hash(state)}, path)


class CorruptCheckpoint(UserError):
    """A checkpoint whose tensors no longer match the hash written with them."""


def load_checkpoint(path: str | os.PathLike) -> dict[str, Any]:
    """A training checkpoint, its content hash verified (files written before hashes load unverified)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint {path} not found")
    try:
        state = torch_load(path)
    except CheckpointError as e:  # empty or cut short (a crash or a full disk mid-copy)
        raise CorruptCheckpoint(f"{e}; it may be empty or cut short{_good_hint(path)}") from None
    if not isinstance(state, dict):
        raise UserError(f"checkpoint {path} is not a dict")
    if "sha256" in state and content_hash(state) != state["sha256"]:
        raise CorruptCheckpoint(f"checkpoint {path} is corrupt (its tensors do not match the hash written with "
                                f"them){_good_hint(path)}")
    return state


def _good_hint(bad: Path) -> str:
    good = _newest_good_checkpoint(bad)
    return f"; the newest good checkpoint there is {good}" if good else "; no other checkpoint there is good"


def _newest_good_checkpoint(bad: Path) -> Path | None:
    for other in sorted((p for p in bad.parent.glob("*.pt") if p != bad), key=lambda p: p.stat().st_mtime,
                        reverse=True):
        try:
            state = torch_load(other)
        except ValueError:
            continue
        if isinstance(state, dict) and state.get("sha256") == content_hash(state):
            return other
    return None


def rotate_checkpoints(directory: str | os.PathLike, keep: int, prefix: str = "iter_") -> list[Path]:
    """Delete all but the newest ``keep`` ``iter_N.pt`` files; returns the deleted paths."""
    files = []
    for p in Path(directory).glob(f"{prefix}*.pt"):
        try:
            files.append((int(p.stem[len(prefix):]), p))
        except ValueError:
            continue
    files.sort()
    doomed = [p for _, p in files[:-keep]] if keep > 0 else [p for _, p in files]
    for p in doomed:
        p.unlink(missing_ok=True)
    return doomed
