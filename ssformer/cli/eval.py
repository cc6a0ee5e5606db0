"""``ssformer eval --checkpoint P [CONFIG]``: mIoU and the per-class table on a split, optionally as JSON.

The model is loaded as every command loads it (``ssformer.load_model``; an exported ``.onnx`` or
OpenVINO ``.xml`` runs in its engine on the CPU); its recipe says which dataset and split to
evaluate on and its preprocessing how. ``CONFIG`` (a recipe name or YAML
file), ``--set`` and the flags override them; a model that carries no recipe (e.g. a converted
official checkpoint) needs ``CONFIG``.
"""

from __future__ import annotations

import argparse
import copy
import json
import sys
from pathlib import Path

from ssformer.engine.config import load_config, options_as_overrides


def add_parser(subparsers) -> None:
    parser = subparsers.add_parser("eval", help="evaluate a model on a dataset split",
                                   description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("config", nargs="?", help="YAML config file or shipped recipe name "
                                                  "(default: the training config the model carries)")
    parser.add_argument("--checkpoint", required=True, help="model folder, latest.pt/best.pt/iter_N.pt, any "
                                                            "checkpoint ssformer.load_model reads, a Hub repo id, "
                                                            "or an exported .onnx / OpenVINO .xml (run on the CPU)")
    parser.add_argument("--data-root", help="dataset folder (sets data.root)")
    parser.add_argument("--split", help="split to evaluate (default: eval.split or data.val_split)")
    parser.add_argument("--mode", choices=("whole", "slide"), help="inference mode (default: the model's)")
    parser.add_argument("--tta", action="store_true",
                        help="multi-scale + flip test-time augmentation (default: eval.tta)")
    parser.add_argument("--amp", choices=("none", "bf16", "fp16"), help="autocast (default: train.amp)")
    parser.add_argument("--device", help="cpu, cuda or cuda:N (default: train.device)")
    parser.add_argument("--out", help="write the metrics as JSON to this file")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="override a config entry (repeatable)")
    parser.set_defaults(func=run)


def eval_recipe(recipe: dict) -> dict:
    """A model's training config as the base of an evaluation: its pretrained-weights path no longer matters."""
    recipe = copy.deepcopy(recipe)
    recipe.get("model", {})["pretrained"] = None
    return recipe


def run(args: argparse.Namespace) -> int:
    import torch

    from ssformer.data.preprocessing import from_training_config
    from ssformer.devices import resolve_device
    from ssformer.distributed import cleanup, init_distributed, torchrun_env
    from ssformer.engine.evaluator import evaluate
    from ssformer.engine.trainer import build_eval_dataset
    from ssformer.inference.runners import RunSettings, load_deployment
    from ssformer.metrics import format_table, paper_summary
    from ssformer.utils import atomic_write

    deployment = load_deployment(args.checkpoint, settings=RunSettings(device="cpu"))  # placed below
    if args.config is None and deployment.recipe is None:
        raise ValueError(f"--checkpoint {args.checkpoint} carries no training config: give CONFIG (a recipe name or "
                         f"YAML file) to say which dataset to evaluate on")
    overrides = list(args.overrides) + options_as_overrides(vars(args), {
        "data_root": "data.root", "mode": "eval.mode", "amp": "train.amp", "device": "train.device"})
    config = load_config(args.config, overrides, base=None if args.config else eval_recipe(deployment.recipe))
    tc = config.train
    test = from_training_config(config.to_dict())  # the recipe's (or CONFIG's) test settings, with the overrides
    preprocessing = deployment.preprocessing.replace(img_scale=test.img_scale, mode=test.mode, crop_size=test.crop_size,
                                                 stride=test.stride, tta_scales=test.tta_scales, flip=test.flip)
    layout = torchrun_env()  # the device is resolved (and checked) before joining the group, as in training
    exported = deployment.model is None  # ONNX / OpenVINO: the CPU, in the precision the file was opened with
    device = torch.device("cpu") if exported else resolve_device(tc.device, layout.local_rank, layout.enabled)
    dist_info = init_distributed(device.type)
    if tc.num_threads is not None:
        torch.set_num_threads(tc.num_threads)
    dataset = build_eval_dataset(config, args.split, preprocessing)
    if deployment.num_classes != dataset.num_classes:
        raise ValueError(f"checkpoint {args.checkpoint} has {deployment.num_classes} classes but the dataset has "
                         f"{dataset.num_classes}")
    if deployment.model is not None:
        deployment.model.to(device)
    p = preprocessing
    tta = args.tta or config.eval.tta
    results = evaluate(deployment.runner, dataset, dataset.num_classes, dataset.ignore_index, p.mode, p.crop_size,
                       p.stride, tta=tta, scales=p.tta_scales, flip=p.flip, device=device,
                       amp="none" if exported else tc.amp,
                       num_workers=config.eval.num_workers, dist_info=dist_info, progress=True,
                       skip_unreadable=True)
    failed = results.pop("failed")
    if dist_info.is_main:
        split = args.split or config.eval.split or config.data.val_split
        print(f"{args.checkpoint} on {config.data.type} {split} ({len(dataset) - len(failed)} images, mode {p.mode}"
              f"{', TTA' if tta else ''}):")
        print(format_table(results, dataset.class_names))
        print(paper_summary(results))
        if args.out:
            record = {"checkpoint": str(args.checkpoint), "split": split, "mode": p.mode, "tta": tta,
                      "images": len(dataset) - len(failed), "failed": failed, "preprocessing": p.to_dict(),
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
    if dist_info.created_group:
        cleanup()
    return 1 if failed else 0
