"""``ssformer convert SRC DST``: any supported checkpoint -> this project's format.

``DST`` ending in ``.safetensors`` gets a safetensors file, ``.pt`` / ``.pth`` a torch file (both
hold the state dict in this project's naming; a backbone-only source gives an encoder-only
file), anything else a ``save_pretrained`` folder (``config.json`` + ``model.safetensors``) whose
configuration is inferred from the checkpoint's shapes (class names and palette come from an
mmseg checkpoint's ``meta``, when present). Every file is written atomically.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from ssformer.models.ssformer import CONFIG_NAME, SSformer
from ssformer.models.weights import (CheckpointError, LoadReport, class_info, infer_config, load_weights,
                                     read_checkpoint_with_meta, save_state_dict, to_ssformer_state_dict)

FILE_SUFFIXES = {".safetensors", ".pt", ".pth"}


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "convert", help="convert a checkpoint (official, mmseg, Microsoft, timm, Hugging Face) to this project's format",
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("src", metavar="SRC", help="checkpoint file or save_pretrained folder")
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
    """Read ``src`` in any supported format and write it to ``dst`` in this project's format."""
    dst = Path(dst)
    for name, value in (("--num-classes", num_classes), ("--window-size", window_size),
                        ("--decoder-dim", decoder_dim)):
        if value is not None and value < 1:
            raise ValueError(f"{name} must be >= 1, got {value}")
    state, meta = read_checkpoint_with_meta(src)
    fmt, mapped = to_ssformer_state_dict(state)
    config = infer_config(mapped.state)
    has_decoder = "num_classes" in config
    to_folder = dst.suffix not in FILE_SUFFIXES
    if has_decoder and decoder_dim is not None and decoder_dim != config["decoder_dim"]:
        raise ValueError(f"--decoder-dim {decoder_dim} differs from the checkpoint's decoder width "
                         f"{config['decoder_dim']}")
    if not has_decoder:
        if to_folder and num_classes is None:
            raise ValueError(f"{src} has no decoder ({fmt} backbone): pass --num-classes to make a model folder")
        config["decoder_dim"] = decoder_dim or 256
    classifier_replaced = has_decoder and num_classes is not None and num_classes != config["num_classes"]
    if num_classes is not None:
        config["num_classes"] = num_classes
    config.setdefault("num_classes", 1)  # encoder-only file: the decoder is not written
    if window_size is not None:
        config["window_size"] = window_size
    if has_decoder and not classifier_replaced:
        config["class_names"], config["palette"] = _class_names_and_palette(Path(src), meta, int(config["num_classes"]))
    model = SSformer(**config)
    report = load_weights(model, state, strict=False)
    mismatched = [key for key, _, _ in report.mismatched]
    replaced = [k for k in mismatched if classifier_replaced and k.startswith("decoder.classifier.")]
    if report.missing or report.unexpected or set(mismatched) - set(replaced):
        raise CheckpointError(f"{src} does not convert cleanly:\n{report}")
    report.initialised += replaced
    report.mismatched = [m for m in report.mismatched if m[0] not in replaced]
    if to_folder:
        model.save_pretrained(dst)
    else:
        out = {k: v for k, v in model.state_dict().items() if has_decoder or not k.startswith("decoder.")}
        save_state_dict(out, dst)
    return report


def _class_names_and_palette(src: Path, meta: dict, num_classes: int) -> tuple:
    """From an mmseg checkpoint's ``meta`` (``CLASSES``, ``PALETTE``) or a save_pretrained folder's config."""
    config_path = src / CONFIG_NAME
    if src.is_dir() and config_path.is_file():
        try:
            saved = json.loads(config_path.read_text())
        except json.JSONDecodeError as e:
            raise ValueError(f"{config_path} is not valid JSON: {e}") from e
        meta = {"CLASSES": saved.get("class_names"), "PALETTE": saved.get("palette")}
    return class_info(meta, num_classes)


def run(args: argparse.Namespace) -> int:
    report = convert(args.src, args.dst, args.num_classes, args.window_size, args.decoder_dim)
    print(report)
    print(f"wrote {args.dst}", file=sys.stderr)
    return 0
