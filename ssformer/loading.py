"""The commands' route from anything a user holds to a ready model: ``load_model(source)``.

The Python API is :meth:`ssformer.SSformer.from_pretrained` (the same route, the model only);
``load_model`` also returns what the commands print: the load report, the format and notes on
what had to be assumed. ``source`` may be a model folder (``save_pretrained``, the trainer's ``model/``, a work
directory), a training checkpoint (``latest.pt``, ``best.pt``, ``iter_N.pt``), a file written by
``convert`` (``.safetensors`` / ``.pt``), an official SSformer or mmseg checkpoint (also as the
official tools publish it), Microsoft, timm, Hugging Face or mmseg Swin weights, or a Hub repo id
(``org/name``). The model comes back with its preprocessing, labels and recipe attached, plus a
load report and notes on what had to be assumed. Every command and the Python API load through
:class:`ssformer.models.pretrained.PretrainedModel`, so a model predicts the same from every file
it is kept in.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from ssformer.checkpoints.artifact import FILE_SUFFIXES, read_model_files
from ssformer.checkpoints.hub import download, looks_like_repo_id
from ssformer.checkpoints.io import write_state_dict
from ssformer.checkpoints.keymaps import infer_config, to_ssformer_state_dict
from ssformer.checkpoints.weights import LoadReport
from ssformer.errors import UserError
from ssformer.models.pretrained import ConfigInput, LoadedModel
from ssformer.models.ssformer import SSformer
from ssformer.utils import check_writable

__all__ = ["ConfigInput", "LoadedModel", "convert", "load_model"]


def load_model(source: SSformer | str | os.PathLike, config: ConfigInput = None, num_classes: int | None = None,
               strict: bool = True, revision: str | None = None) -> LoadedModel:
    """The model ``source`` holds, in eval mode, with its load report and notes (the arguments are
    :meth:`SSformer.from_pretrained`'s; an :class:`SSformer` passes through)."""
    return SSformer._load(source, config, num_classes, strict, revision)


def convert(src: str | Path, dst: str | Path, num_classes: int | None = None, window_size: int | None = None,
            decoder_dim: int | None = None, preprocessing: dict[str, Any] | None = None) -> LoadReport:
    """Read ``src`` in any supported format (as :func:`load_model` does) and write it to ``dst``: a model
    folder, or one ``.safetensors`` / ``.pt`` file, with its preprocessing, labels and recipe. A
    backbone-only source gives an encoder-only file unless ``num_classes`` is given. ``preprocessing``
    replaces test settings (e.g. ``{"img_scale": (2048, 1024), "mode": "slide"}``; None values are ignored)."""
    dst = Path(dst)
    for name, value in (("--num-classes", num_classes), ("--window-size", window_size),
                        ("--decoder-dim", decoder_dim)):
        if value is not None and value < 1:
            raise UserError(f"{name} must be >= 1, got {value}")
    to_folder = dst.suffix not in FILE_SUFFIXES
    check_writable(dst, "DST", folder=to_folder)  # before the (slow) read, so nothing is half done
    files = read_model_files(download(str(src)) if looks_like_repo_id(src) else src)
    inferred = infer_config(to_ssformer_state_dict(files.state)[1].state)
    has_decoder = "num_classes" in inferred
    if has_decoder and decoder_dim is not None and decoder_dim != inferred["decoder_dim"]:
        raise UserError(f"--decoder-dim {decoder_dim} differs from the checkpoint's decoder width "
                        f"{inferred['decoder_dim']}")
    if not has_decoder and to_folder and num_classes is None:
        raise UserError(f"{src} has no decoder (backbone weights): pass --num-classes to make a model folder")
    overrides = {k: v for k, v in (("window_size", window_size), ("decoder_dim", decoder_dim)) if v is not None}
    encoder_only = not has_decoder and num_classes is None
    loaded = SSformer._from_files(files, overrides or None, 1 if encoder_only else num_classes)
    model = loaded.model
    if preprocessing and model.preprocessing is not None:
        model.preprocessing = model.preprocessing.replace(**preprocessing)
    if to_folder:
        model.save_pretrained(dst)
    elif encoder_only:
        encoder = {k: v for k, v in model.state_dict().items() if not k.startswith("decoder.")}
        write_state_dict(encoder, dst)
    else:
        model.save_file(dst)
    return loaded.report
