"""Training checkpoints: atomic writes, ``weights_only`` loading, RNG capture, rotation.

A checkpoint is a dict of tensors and primitive containers only, so ``torch.load(weights_only=True)``
reads it: ``model`` (state dict), ``model_config``, ``optimizer``, ``scaler``, ``iteration`` (number of
completed iterations), ``rng`` (torch/CUDA states as tensors, numpy and Python states as lists),
``best``, ``config`` (the training config: the model's recipe) and ``preprocessing`` (its test
settings), so a training checkpoint loads as a model like any other file
(:func:`ssformer.load_model`).
"""

from __future__ import annotations

import os
import random
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ssformer.checkpoints.io import torch_load, write_torch


def capture_rng() -> dict[str, Any]:
    """Global RNG states as tensors / plain lists."""
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    version, py_state, gauss = random.getstate()
    state: dict[str, Any] = {
        "torch": torch.get_rng_state(),
        "numpy": [kind, torch.from_numpy(keys.astype(np.int64)), int(pos), int(has_gauss), float(cached)],
        "python": [int(version), list(py_state), gauss],
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    kind, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((kind, keys.numpy().astype(np.uint32), pos, has_gauss, cached))
    version, py_state, gauss = state["python"]
    random.setstate((version, tuple(py_state), gauss))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def save_checkpoint(state: dict[str, Any], path: str | os.PathLike) -> Path:
    """Write ``state`` to ``path`` atomically (a crash leaves the previous file intact)."""
    return write_torch(state, path)


def load_checkpoint(path: str | os.PathLike) -> dict[str, Any]:
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint {path} not found")
    state = torch_load(path)
    if not isinstance(state, dict):
        raise ValueError(f"checkpoint {path} is not a dict")
    return state


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
