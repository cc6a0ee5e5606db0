"""``ssformer convert SRC DST``: any supported checkpoint -> this project's format.

``DST`` ending in ``.safetensors`` gets a safetensors file (model settings, preprocessing and recipe
in its metadata), ``.pt`` / ``.pth`` a torch file (the same as entries beside ``state_dict``),
anything else a model folder (``config.json``, ``model.safetensors``, ``preprocessor_config.json``,
``training_config.json``). The model is read as every command reads it (``ssformer.load_model``):
class names, palette and test pipeline come from the source (an mmseg checkpoint's ``meta``),
else from the known recipe or the defaults, with a note. A backbone-only source gives an
encoder-only file unless ``--num-classes`` is given. Every file is written atomically.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ssformer.checkpoints.artifact import FILE_SUFFIXES
from ssformer.checkpoints.io import write_state_dict
from ssformer.checkpoints.weights import LoadReport


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "convert", help="convert a checkpoint (official, mmseg, Microsoft, timm, Hugging Face) to this project's format",
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("src", metavar="SRC", help="checkpoint file, model folder or Hub repo id")
    parser.add_argument("dst", metavar="DST", help="output: *.safetensors, *.pt / *.pth, or a folder")
    parser.add_argument("--num-classes", type=int, metavar="K",
                        help="classes of the model (required for a folder from a backbone-only checkpoint; "
                             "if it differs from the checkpoint's, the classifier is re-initialised)")
    parser.add_argument("--window-size", type=int, metavar="W",
                        help="window size of the model (relative position tables are resized bicubically)")
    parser.add_argument("--decoder-dim", type=int, metavar="E",
                        help="decoder width when the checkpoint has no decoder (default 256)")
    parser.set_defaults(func=run)


def convert(src: str | Path, dst: str | Path, num_classes: int | None = None, window_size: int | None = None,
            decoder_dim: int | None = None) -> LoadReport:
    """Read ``src`` in any supported format and write it to ``dst`` in this project's format, with its
    preprocessing, labels and recipe (see :func:`ssformer.load_model`)."""
    from ssformer.checkpoints.artifact import read_model_files
    from ssformer.checkpoints.hub import download, looks_like_repo_id
    from ssformer.checkpoints.keymaps import infer_config, to_ssformer_state_dict
    from ssformer.loading import build_model

    dst = Path(dst)
    for name, value in (("--num-classes", num_classes), ("--window-size", window_size),
                        ("--decoder-dim", decoder_dim)):
        if value is not None and value < 1:
            raise ValueError(f"{name} must be >= 1, got {value}")
    to_folder = dst.suffix not in FILE_SUFFIXES
    files = read_model_files(download(str(src)) if looks_like_repo_id(src) else src)
    inferred = infer_config(to_ssformer_state_dict(files.state)[1].state)
    has_decoder = "num_classes" in inferred
    if has_decoder and decoder_dim is not None and decoder_dim != inferred["decoder_dim"]:
        raise ValueError(f"--decoder-dim {decoder_dim} differs from the checkpoint's decoder width "
                         f"{inferred['decoder_dim']}")
    if not has_decoder and to_folder and num_classes is None:
        raise ValueError(f"{src} has no decoder (backbone weights): pass --num-classes to make a model folder")
    overrides = {k: v for k, v in (("window_size", window_size), ("decoder_dim", decoder_dim)) if v is not None}
    encoder_only = not has_decoder and num_classes is None
    loaded = build_model(files, config=overrides or None, num_classes=1 if encoder_only else num_classes)
    model = loaded.model
    if to_folder:
        model.save_pretrained(dst)
    elif encoder_only:
        encoder = {k: v for k, v in model.state_dict().items() if not k.startswith("decoder.")}
        write_state_dict(encoder, dst)
    else:
        model.save_file(dst)
    return loaded.report


def run(args: argparse.Namespace) -> int:
    report = convert(args.src, args.dst, args.num_classes, args.window_size, args.decoder_dim)
    print(report)
    print(f"wrote {args.dst}", file=sys.stderr)
    return 0
