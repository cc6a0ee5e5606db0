"""``ssformer benchmark``: the command over :mod:`ssformer.analysis.benchmark` (see its docstring for
what is timed and how)."""

from __future__ import annotations

import argparse
import json
import logging

from ssformer.analysis.benchmark import DTYPES, BenchmarkSettings, benchmark, format_result
from ssformer.errors import UserError
from ssformer.models.ssformer import SSformer, create_model, list_models


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("benchmark", help="latency, throughput and peak memory of a model",
                                   description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("name", nargs="?", choices=list_models(), help="a model variant (random weights)")
    parser.add_argument("--checkpoint", metavar="PATH",
                        help="a model folder, checkpoint file or Hub repo id (any format the loader reads), or an "
                             "exported .onnx (ONNX Runtime) or OpenVINO .xml (--dtype fp32 or bf16), on the CPU")
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


def model_to_time(name: str | None, checkpoint: str | None, num_classes: int) -> tuple[SSformer, str]:
    if (name is None) == (checkpoint is None):
        raise UserError("give either a model name or --checkpoint (not both)")
    if name is not None:
        if num_classes < 1:
            raise UserError(f"--num-classes must be >= 1, got {num_classes}")
        return create_model(name, num_classes=num_classes), name
    from ssformer.loading import load_model

    loaded = load_model(checkpoint)
    return loaded.model, str(checkpoint)


COMPILE_ON_CPU_NOTE = (
    "torch.compile on the CPU compiles the model's plain path and runs slower than eager SSformer (bf16 2.2-2.6x, "
    "fp32 1.4x slower on an Intel Xeon with AMX; docs/benchmarks.md); for fast CPU inference export the model for "
    "OpenVINO: ssformer export --format openvino")
def is_exported(checkpoint: str) -> bool:
    from pathlib import Path

    from ssformer.checkpoints.filekind import EXPORTED_KINDS, file_kind

    return Path(checkpoint).is_file() and file_kind(checkpoint) in EXPORTED_KINDS


def run_exported(args: argparse.Namespace, settings: BenchmarkSettings) -> int:
    """Time an ONNX / OpenVINO file in its engine, on the CPU."""
    from ssformer.analysis.benchmark import ExportedTarget, benchmark_exported
    from ssformer.errors import UserError
    from ssformer.inference.runners import RunSettings, load_deployment

    if args.name or args.train or args.compile or args.gradient_checkpointing or args.device != "cpu":
        raise UserError(f"{args.checkpoint} is an exported model: benchmark times its inference on the CPU; leave "
                        f"out the model name, --train, --compile and --device")
    deployment = load_deployment(args.checkpoint, settings=RunSettings("cpu", args.dtype, args.threads))
    target = ExportedTarget(deployment.runner, str(args.checkpoint), deployment.engine, str(deployment.dtype),
                            args.threads)
    result = benchmark_exported(target, settings)
    print(json.dumps(result.as_dict()) if args.json else format_result(result))
    return 0


def run(args: argparse.Namespace) -> int:
    from ssformer.devices import set_cpu_threads

    if args.threads is not None:
        if args.threads < 1:
            raise UserError(f"--threads must be >= 1, got {args.threads}")
        set_cpu_threads(args.threads, "--threads")  # more than the CPUs: cut to them, with a note
    if args.gradient_checkpointing and not args.train:
        raise UserError("--gradient-checkpointing only applies with --train")
    settings = BenchmarkSettings(*args.size, batch=args.batch, dtype=args.dtype, device=args.device,
                                 compile=args.compile, train=args.train, runs=args.runs, warmup=args.warmup,
                                 count_flops=not args.no_flops)
    if args.checkpoint and is_exported(args.checkpoint):
        return run_exported(args, settings)
    if args.compile and settings.target.type == "cpu":
        logging.getLogger("ssformer").warning(COMPILE_ON_CPU_NOTE)
    model, label = model_to_time(args.name, args.checkpoint, args.num_classes)
    model.set_gradient_checkpointing(args.gradient_checkpointing)
    result = benchmark(model, settings, name=label)
    print(json.dumps(result.as_dict()) if args.json else format_result(result))
    return 0
