"""``ssformer train CONFIG``: iteration-based training from a YAML recipe (shipped name or path)."""

from __future__ import annotations

import argparse
import sys

from ssformer.engine.config import TrainingConfig, load_config, options_as_overrides, sample_root


def add_parser(subparsers) -> None:
    parser = subparsers.add_parser("train", help="train a model from a config",
                                   description="Train SSformer from a YAML config (a path or a shipped recipe "
                                               "name such as camvid_cpu). Run it under torchrun for DDP.")
    parser.add_argument("config", nargs="?", default=None,
                        help="YAML config file or shipped recipe name (default: the built-in sample recipe "
                             "on the sample data shipped with the package)")
    parser.add_argument("--data-root", help="dataset folder (sets data.root)")
    parser.add_argument("--work-dir", help="output folder for checkpoints and logs (sets work_dir)")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="override a config entry, e.g. --set train.iters=1000 (repeatable)")
    parser.add_argument("--resume", action="store_true", help="continue exactly from WORK_DIR/latest.pt")
    parser.add_argument("--overwrite", action="store_true",
                        help="WORK_DIR holds an earlier run: delete its checkpoints, log.jsonl, model/ and "
                             "TensorBoard events and start over (default: refuse)")
    parser.set_defaults(func=run)


def config_from_args(args: argparse.Namespace) -> TrainingConfig:
    overrides = list(args.overrides) + options_as_overrides(vars(args), {
        "data_root": "data.root", "work_dir": "work_dir"})
    if args.config is None:
        if args.data_root is None:
            overrides.insert(0, f"data.root={sample_root()}")
        return load_config("sample", overrides)
    return load_config(args.config, overrides)


def run(args: argparse.Namespace) -> int:
    from ssformer.engine.trainer import TrainingDiverged, train

    config = config_from_args(args)
    try:
        summary = train(config, resume=args.resume, overwrite=args.overwrite)
    except TrainingDiverged as e:
        print(f"ssformer train: error: {e}", file=sys.stderr)
        return 1
    if summary["rank"] == 0:
        best = summary["best"]
        print(f"done: {summary['iterations']} iterations; best mIoU {100 * best['mIoU']:.2f} at iteration "
              f"{best['iter']}; checkpoints in {summary['work_dir']}")
    return 0
