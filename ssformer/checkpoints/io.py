"""Reading and writing checkpoint files: the one ``torch.load`` of the package, safetensors, wrappers.

Every torch file is read with ``weights_only=True``. The only globals allowed beyond torch's own
are the numpy scalar and dtype constructors that mmcv writes into ``meta['hook_msgs']`` (the best
score of an ``EvalHook`` is a numpy float): without them no checkpoint published by the official
tools would load. Nothing here executes code from a file.
"""

from __future__ import annotations

import json
import os
import pickle
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ssformer.errors import UserError

StateDict = dict[str, torch.Tensor]



class CheckpointError(UserError):
    """A checkpoint could not be read or does not fit the model."""


def _numpy_safe_globals() -> list[Any]:
    """numpy's scalar reconstructor (under its numpy 2 and numpy 1 names: the released official
    checkpoints were pickled under numpy 1) and the dtype classes of plain numbers (what mmcv's meta holds)."""
    try:
        from numpy._core.multiarray import scalar  # numpy >= 2
    except ImportError:  # pragma: no cover - numpy 1.x
        from numpy.core.multiarray import scalar  # type: ignore[no-redef]
    numbers = (np.bool_, np.int8, np.int16, np.int32, np.int64, np.uint8, np.uint16, np.uint32, np.uint64,
               np.float16, np.float32, np.float64)
    names = [(scalar, f"{module}.multiarray.scalar") for module in ("numpy._core", "numpy.core")]
    return [*names, np.dtype, *{type(np.dtype(t)) for t in numbers}]


NUMPY_SAFE_GLOBALS = _numpy_safe_globals()


def _first_line(e: BaseException) -> str:
    return str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__


def torch_load(path: str | os.PathLike) -> Any:
    """``torch.load(path, weights_only=True)`` on the CPU, also for files written by mmcv's runner."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint {path} does not exist")
    try:
        with torch.serialization.safe_globals(NUMPY_SAFE_GLOBALS):
            return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        if "weights only load failed" not in str(e).lower():
            raise CheckpointError(f"{path} is not a readable PyTorch checkpoint (UnpicklingError: "
                                  f"{_first_line(e)})") from e
        raise CheckpointError(f"{path} is not a readable PyTorch checkpoint: it holds pickled Python objects beyond "
                              f"tensors and plain containers (such as a whole model saved with torch.save(model)), "
                              f"which ssformer does not run; save model.state_dict() instead") from e
    except Exception as e:  # torch raises many types here (zip, EOF, runtime)
        raise CheckpointError(f"{path} is not a readable PyTorch checkpoint with weights_only=True "
                              f"({type(e).__name__}: {_first_line(e)})") from e


def read_safetensors(path: str | os.PathLike) -> tuple[StateDict, dict[str, str]]:
    """Tensors and the string metadata of a ``.safetensors`` file."""
    from safetensors import SafetensorError, safe_open

    try:
        with safe_open(str(path), framework="pt") as f:
            return {k: f.get_tensor(k) for k in f.keys()}, dict(f.metadata() or {})
    except (SafetensorError, OSError, ValueError) as e:
        raise CheckpointError(f"{path} is not a readable safetensors file: {e}") from e


def write_safetensors(tensors: Mapping[str, torch.Tensor], path: str | os.PathLike,
                      metadata: Mapping[str, str] | None = None) -> Path:
    """Atomically write tensors (made contiguous, on the CPU) with string metadata."""
    from safetensors.torch import save_file

    from ssformer.utils import atomic_write

    path = Path(path)
    plain = {k: v.detach().contiguous().cpu() for k, v in tensors.items()}
    with atomic_write(path) as tmp:
        save_file(plain, str(tmp), metadata={"format": "ssformer", **(metadata or {})})
    return path


def write_torch(obj: Any, path: str | os.PathLike) -> Path:
    """Atomically ``torch.save`` an object of tensors and primitive containers (readable with weights_only)."""
    from ssformer.utils import atomic_write

    path = Path(path)
    with atomic_write(path) as tmp:
        torch.save(obj, tmp)
    return path


def write_state_dict(state: Mapping[str, torch.Tensor], path: str | os.PathLike) -> Path:
    """Atomically write bare tensors: safetensors for a ``.safetensors`` path, else a torch file."""
    if Path(path).suffix == ".safetensors":
        return write_safetensors(state, path)
    return write_torch({k: v.detach().contiguous().cpu() for k, v in state.items()}, path)


def unwrap(obj: object, source: str = "checkpoint") -> StateDict:
    """Find the tensor mapping inside common wrappers (``state_dict``, ``model``, ``module.``)."""
    for key in ("state_dict", "model", "module"):
        if isinstance(obj, Mapping) and key in obj and isinstance(obj[key], Mapping):
            obj = obj[key]
            break
    if not isinstance(obj, Mapping) or not obj:
        raise CheckpointError(f"{source} holds no state dict (got {type(obj).__name__})")
    tensors = {k: v for k, v in obj.items() if isinstance(k, str) and isinstance(v, torch.Tensor)}
    if not tensors:
        raise CheckpointError(f"{source} holds no tensors")
    if all(k.startswith("module.") for k in tensors):
        tensors = {k[len("module."):]: v for k, v in tensors.items()}
    return tensors


def read_json(path: Path, what: str) -> dict[str, Any]:
    """A JSON object from ``path``; errors name the file and what it should have been."""
    try:
        data = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError) as e:
        raise CheckpointError(f"{what} {path} cannot be read: {e}") from e
    except json.JSONDecodeError as e:
        raise CheckpointError(f"{what} {path} is not valid JSON: {e}") from e
    if not isinstance(data, dict):
        raise CheckpointError(f"{what} {path} must hold a JSON object, got {type(data).__name__}")
    return data
