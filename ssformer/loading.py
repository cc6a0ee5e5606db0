"""The one route from anything a user holds to a ready model: ``load_model(source)``.

``source`` may be a model folder (``save_pretrained``, the trainer's ``model/``, a work
directory), a training checkpoint (``latest.pt``, ``best.pt``, ``iter_N.pt``), a file written by
``convert`` (``.safetensors`` / ``.pt``), an official SSformer or mmseg checkpoint (also as the
official tools publish it), Microsoft, timm, Hugging Face or mmseg Swin weights, or a Hub repo id
(``org/name``). The model comes back with its preprocessing, labels and recipe attached, plus a
load report and notes on what had to be assumed. Every command and the Python API load through
here (:meth:`ssformer.models.pretrained.PretrainedModel.load` does the work), so a model predicts
the same from every file it is kept in.
"""

from __future__ import annotations

import os
from typing import Any

from ssformer.checkpoints.artifact import ModelFiles
from ssformer.models.pretrained import ConfigInput, LoadedModel
from ssformer.models.ssformer import SSformer

__all__ = ["ConfigInput", "LoadedModel", "build_model", "load_model"]


def load_model(source: SSformer | str | os.PathLike, config: ConfigInput = None, num_classes: int | None = None,
               strict: bool = True, revision: str | None = None) -> LoadedModel:
    """The model ``source`` holds, in eval mode (see :meth:`SSformer.load` for the arguments)."""
    return SSformer.load(source, config=config, num_classes=num_classes, strict=strict, revision=revision)


def build_model(files: ModelFiles, **kwargs: Any) -> LoadedModel:
    """:func:`load_model` for files already read (:func:`ssformer.checkpoints.artifact.read_model_files`)."""
    return SSformer.from_files(files, **kwargs)
