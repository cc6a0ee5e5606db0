"""``ssformer eval CONFIG --checkpoint P``: mIoU and the per-class table on a split, optionally as JSON."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from ssformer.engine.config import load_config, options_as_overrides


def add_parser(subparsers) -> None:
    parser = subparsers.add_parser("eval", help="evaluate a checkpoint",
                                   description="Evaluate a training checkpoint (or save_pretrained folder) on "
                                               "a dataset split; run under torchrun to split the images.")
    parser.add_argument("config", help="YAML config file or shipped recipe name")
    parser.add_argument("--checkpoint", required=True, help="latest.pt/best.pt/iter_N.pt, or any weights file "
                                                            "or save_pretrained folder ssformer.load_weights reads")
    parser.add_argument("--data-root", help="dataset folder (sets data.root)")
    parser.add_argument("--split", help="split to evaluate (default: eval.split or data.val_split)")
    parser.add_argument("--mode", choices=("whole", "slide"), help="inference mode (default: eval.mode)")
    parser.add_argument("--tta", action="store_true", help="multi-scale + flip test-time augmentation")
    parser.add_argument("--amp", choices=("none", "bf16", "fp16"), help="autocast (default: train.amp)")
    parser.add_argument("--device", help="cpu, cuda or cuda:N (default: train.device)")
    parser.add_argument("--out", help="write the metrics as JSON to this file")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="override a config entry (repeatable)")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import torch

    import ssformer
    from ssformer.engine.checkpoint import load_checkpoint
    from ssformer.engine.distributed import init_distributed
    from ssformer.engine.evaluator import evaluate
    from ssformer.engine.trainer import build_eval_dataset, model_config, resolve_device
    from ssformer.metrics import format_table
    from ssformer.models.ssformer import SSformerConfig
    from ssformer.utils import atomic_write

    overrides = list(args.overrides) + options_as_overrides(vars(args), {
        "data_root": "data.root", "mode": "eval.mode", "amp": "train.amp", "device": "train.device"})
    config = load_config(args.config, overrides)
    checkpoint = Path(args.checkpoint)
    if not checkpoint.exists():
        raise FileNotFoundError(f"--checkpoint: {checkpoint} does not exist")
    tc, ec = config["train"], config["eval"]
    device_name = tc["device"] if tc["device"] != "auto" else ("cuda" if torch.cuda.is_available() else "cpu")
    dist_info = init_distributed("cuda" if device_name.startswith("cuda") else "cpu")
    device = resolve_device(device_name, dist_info.local_rank)
    if tc["num_threads"] is not None:
        torch.set_num_threads(tc["num_threads"])
    dataset = build_eval_dataset(config, args.split)

    if checkpoint.is_file() and checkpoint.suffix == ".pt":
        state = load_checkpoint(checkpoint)
        if "model_config" in state and "model" in state:
            model = ssformer.SSformer.from_config(SSformerConfig.from_dict(state["model_config"]))
            model.load_state_dict(state["model"])
        else:
            model = ssformer.SSformer.from_config(model_config(config, dataset.num_classes))
            ssformer.load_weights(model, state, strict=True)
    elif checkpoint.is_dir():
        model = ssformer.SSformer.from_pretrained(checkpoint)
    else:
        model = ssformer.SSformer.from_config(model_config(config, dataset.num_classes))
        ssformer.load_weights(model, checkpoint, strict=True)
    if model.num_classes != dataset.num_classes:
        raise ValueError(f"checkpoint {checkpoint} has {model.num_classes} classes but the dataset has "
                         f"{dataset.num_classes}")
    model.to(device)
    results = evaluate(model, dataset, dataset.num_classes, dataset.ignore_index, ec["mode"], ec["crop_size"],
                       ec["stride"], tta=args.tta, scales=ec["scales"], flip=ec["flip"], device=device,
                       amp=tc["amp"], num_workers=ec["num_workers"], dist_info=dist_info, progress=True,
                       skip_unreadable=True)
    failed = results.pop("failed")
    if dist_info.is_main:
        split = args.split or ec["split"] or config["data"]["val_split"]
        print(f"{checkpoint} on {config['data']['type']} {split} ({len(dataset) - len(failed)} images, mode {ec['mode']}"
              f"{', TTA' if args.tta else ''}):")
        print(format_table(results, dataset.class_names))
        if args.out:
            record = {"checkpoint": str(checkpoint), "split": split, "mode": ec["mode"], "tta": args.tta,
                      "images": len(dataset) - len(failed), "failed": failed,
                      "class_names": list(dataset.class_names), **results}
            out = Path(args.out)
            with atomic_write(out) as tmp:
                tmp.write_text(json.dumps(record, indent=2) + "\n")
            print(f"metrics written to {out}")
        if failed:
            print(f"ssformer eval: {len(failed)} of {len(dataset)} images could not be read and were left out:",
                  file=sys.stderr)
            for message in failed:
                print(f"  {message}", file=sys.stderr)
    return 1 if failed else 0
