"""``ssformer benchmark``: the command over :mod:`ssformer.analysis.benchmark` (see its docstring for
what is timed and how)."""

from __future__ import annotations

import argparse
import json

from ssformer.analysis.benchmark import DTYPES, benchmark, check_settings, format_result
from ssformer.models.ssformer import SSformer, create_model, list_models


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("benchmark", help="latency, throughput and peak memory of a model",
                                   description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("name", nargs="?", choices=list_models(), help="a model variant (random weights)")
    parser.add_argument("--checkpoint", metavar="PATH",
                        help="a model folder, checkpoint file or Hub repo id (any format the loader reads)")
    parser.add_argument("--num-classes", type=int, default=150, metavar="K",
                        help="classes of a named variant (default 150)")
    parser.add_argument("--size", nargs=2, type=int, default=(512, 512), metavar=("H", "W"))
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--dtype", choices=sorted(DTYPES), default="fp32")
    parser.add_argument("--device", default="cpu", help="cpu or cuda (default cpu)")
    parser.add_argument("--compile", action="store_true", help="wrap the model in torch.compile")
    parser.add_argument("--train", action="store_true", help="time a training step instead of inference")
    parser.add_argument("--gradient-checkpointing", action="store_true",
                        help="with --train: recompute encoder blocks in the backward pass")
    parser.add_argument("--runs", type=int, default=10, help="timed runs (default 10)")
    parser.add_argument("--warmup", type=int, default=2, help="untimed runs first (default 2)")
    parser.add_argument("--threads", type=int, help="torch CPU threads (default: torch's)")
    parser.add_argument("--no-flops", action="store_true", help="skip the FLOP count (one extra forward)")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.set_defaults(func=run)


def build_model(name: str | None, checkpoint: str | None, num_classes: int) -> tuple[SSformer, str]:
    if (name is None) == (checkpoint is None):
        raise ValueError("give either a model name or --checkpoint (not both)")
    if name is not None:
        if num_classes < 1:
            raise ValueError(f"--num-classes must be >= 1, got {num_classes}")
        return create_model(name, num_classes=num_classes), name
    from ssformer.loading import load_model

    model = load_model(checkpoint).model
    return model, str(checkpoint)


def run(args: argparse.Namespace) -> int:
    import torch

    if args.threads is not None:
        if args.threads < 1:
            raise ValueError(f"--threads must be >= 1, got {args.threads}")
        torch.set_num_threads(args.threads)
    if args.gradient_checkpointing and not args.train:
        raise ValueError("--gradient-checkpointing only applies with --train")
    check_settings(*args.size, args.batch, args.dtype, args.device, args.runs, args.warmup)
    model, label = build_model(args.name, args.checkpoint, args.num_classes)
    model.set_gradient_checkpointing(args.gradient_checkpointing)
    result = benchmark(model, *args.size, batch=args.batch, dtype=args.dtype, device=args.device,
                       compile=args.compile, train=args.train, runs=args.runs, warmup=args.warmup,
                       count_flops=not args.no_flops, name=label)
    if args.json:
        print(json.dumps(result.as_dict()))
    else:
        print(format_result(result))
    return 0
