"""``ssformer convert SRC DST``: any supported checkpoint -> this project's format.

``DST`` ending in ``.safetensors`` gets a safetensors file (model settings, preprocessing and recipe
in its metadata), ``.pt`` / ``.pth`` a torch file (the same as entries beside ``state_dict``),
anything else a model folder (``config.json``, ``model.safetensors``, ``preprocessor_config.json``,
``training_config.json``). The model is read as every command reads it (``ssformer.SSformer.from_pretrained``):
class names, palette and test pipeline come from the source (an mmseg checkpoint's ``meta``),
else from the known recipe or the defaults, with a note. A backbone-only source gives an
encoder-only file unless ``--num-classes`` is given. Every file is written atomically.
"""

from __future__ import annotations

import argparse
import sys


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
    parser.add_argument("--img-scale", nargs=2, type=int, metavar=("LONG", "SHORT"),
                        help="test resize (long side, short side) written with the model (default: the source's, "
                             "else the known recipe's or the defaults)")
    parser.add_argument("--mode", choices=("whole", "slide"),
                        help="inference mode written with the model (default: the source's)")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ssformer.loading import convert

    preprocessing = {"img_scale": tuple(args.img_scale) if args.img_scale else None, "mode": args.mode}
    report = convert(args.src, args.dst, args.num_classes, args.window_size, args.decoder_dim, preprocessing)
    print(report)
    print(f"wrote {args.dst}", file=sys.stderr)
    return 0
