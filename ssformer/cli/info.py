"""``ssformer info``: parameters and compute of a named model or of a checkpoint's model."""

from __future__ import annotations

import argparse
import json
from dataclasses import replace

from ssformer.errors import UserError
from ssformer.models.size import format_size, measure
from ssformer.models.ssformer import VARIANTS, SSformerConfig, list_models


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "info", help="parameters, MACs and FLOPs of a model",
        description="Print the parameter count (total / encoder / decoder), the MACs in the official "
                    "SSformer convention (mmcv's counter: attention products not counted) and, "
                    "unless --no-flops, the FLOPs this implementation executes (FlopCounterMode); "
                    "docs/model.md explains each number.")
    parser.add_argument("name", nargs="?", metavar="NAME", help=f"a model variant: {', '.join(list_models())}")
    parser.add_argument("--checkpoint", metavar="PATH",
                        help="a model folder, checkpoint file or Hub repo id (any format the loader reads)")
    parser.add_argument("--size", nargs=2, type=int, default=(512, 512), metavar=("H", "W"),
                        help="input height and width (default 512 512)")
    parser.add_argument("--num-classes", "--classes", dest="num_classes", type=int, metavar="K",
                        help="number of classes (default: the checkpoint's, or 150; needed for backbone weights)")
    parser.add_argument("--no-flops", action="store_true",
                        help="skip the FlopCounterMode count (it runs one forward pass on the CPU)")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.set_defaults(func=run)


def config_from_checkpoint(path: str, num_classes: int | None = None) -> tuple[str, SSformerConfig]:
    """The checkpoint's format and its model configuration (as the loader builds it)."""
    from ssformer.loading import load_model

    loaded = load_model(path, num_classes=num_classes)
    return loaded.format, loaded.model.config


def run(args: argparse.Namespace) -> int:
    height, width = args.size
    if height < 1 or width < 1:
        raise UserError(f"--size must be positive, got {height} {width}")
    if args.num_classes is not None and args.num_classes < 1:
        raise UserError(f"--num-classes must be >= 1, got {args.num_classes}")
    if (args.name is None) == (args.checkpoint is None):
        raise UserError(f"give a model variant ({', '.join(list_models())}) or --checkpoint PATH, not both or neither")
    if args.name is not None and args.name not in VARIANTS:
        raise UserError(f"unknown model {args.name!r}; choose one of {', '.join(list_models())}")
    if args.checkpoint:
        fmt, config = config_from_checkpoint(args.checkpoint, args.num_classes)
        label = f"{args.checkpoint} ({fmt})"
    else:
        fmt, config = None, SSformerConfig(**VARIANTS[args.name])
        label = args.name
    if args.num_classes is not None:
        config = replace(config, num_classes=args.num_classes, class_names=None, palette=None)
    size = measure(config, height, width, flops=not args.no_flops)
    if args.json:
        print(json.dumps({"model": label, "format": fmt, "num_classes": config.num_classes,
                          "embed_dim": config.embed_dim, "depths": list(config.depths),
                          "num_heads": list(config.num_heads), "window_size": config.window_size,
                          "decoder_dim": config.decoder_dim, **size.as_dict()}))
    else:
        print(f"model: {label}: embed_dim {config.embed_dim}, depths {list(config.depths)}, "
              f"heads {list(config.num_heads)}, window {config.window_size}, decoder {config.decoder_dim}, "
              f"{config.num_classes} classes")
        print(format_size(size))
    return 0
