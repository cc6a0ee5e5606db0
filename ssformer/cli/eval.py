"""``ssformer eval --checkpoint P [CONFIG]``: mIoU and the per-class table on a split, optionally as JSON.

The model is loaded as every command loads it (``ssformer.SSformer.from_pretrained``; an exported ``.onnx`` or
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
from typing import TYPE_CHECKING

from ssformer.engine.config import load_config, options_as_overrides
from ssformer.errors import UserError

if TYPE_CHECKING:
    from ssformer.data.preprocessing import Preprocessing
    from ssformer.distributed import DistInfo
    from ssformer.engine.config import TrainingConfig
    from ssformer.inference.runners import Deployment
    from ssformer.precision import Precision


def add_parser(subparsers) -> None:
    parser = subparsers.add_parser("eval", help="evaluate a model on a dataset split",
                                   description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("config", nargs="?", help="YAML config file or shipped recipe name "
                                                  "(default: the training config the model carries)")
    parser.add_argument("--checkpoint", required=True, help="model folder, latest.pt/best.pt/iter_N.pt, any "
                                                            "checkpoint SSformer.from_pretrained reads, a Hub repo id, "
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
    from ssformer.data.preprocessing import from_training_config
    from ssformer.distributed import distributed_session, session_device
    from ssformer.inference.runners import RunSettings, load_deployment
    from ssformer.precision import amp_precision

    deployment = load_deployment(args.checkpoint, settings=RunSettings(device="cpu"))  # placed below
    if args.config is None and deployment.recipe is None:
        raise UserError(f"--checkpoint {args.checkpoint} carries no training config: give CONFIG (a recipe name or "
                        f"YAML file) to say which dataset to evaluate on")
    overrides = list(args.overrides) + options_as_overrides(vars(args), {
        "data_root": "data.root", "mode": "eval.mode", "amp": "train.amp", "device": "train.device"})
    overrides += ["eval.tta=true"] if args.tta else []
    config = load_config(args.config, overrides, base=None if args.config else eval_recipe(deployment.recipe))
    tc = config.train
    test = from_training_config(config.to_dict())  # the recipe's (or CONFIG's) test settings, with the overrides
    preprocessing = deployment.preprocessing.replace(img_scale=test.img_scale, mode=test.mode, crop_size=test.crop_size,
                                                 stride=test.stride, tta_scales=test.tta_scales, flip=test.flip)
    exported = deployment.model is None  # ONNX / OpenVINO: the CPU, in the precision the file was opened with
    device = session_device("cpu" if exported else tc.device, "--device" if args.device else "train.device")
    precision = amp_precision("none" if exported else tc.amp, device, "--amp" if args.amp else "train.amp")
    with distributed_session(device) as dist_info:
        return _evaluate(args, config, deployment, preprocessing, precision, dist_info)


def _evaluate(args: argparse.Namespace, config: TrainingConfig, deployment: Deployment, preprocessing: Preprocessing,
              precision: Precision, dist_info: DistInfo) -> int:
    """The evaluation inside the session: the dataset, the metrics, the report (rank 0)."""
    from ssformer.devices import set_cpu_threads
    from ssformer.engine.evaluator import evaluate
    from ssformer.engine.trainer import build_eval_dataset
    from ssformer.metrics import format_table, paper_summary
    from ssformer.utils import atomic_write

    tc, device = config.train, precision.device
    set_cpu_threads(tc.num_threads)
    dataset = build_eval_dataset(config, args.split, preprocessing)
    if deployment.num_classes != dataset.num_classes:
        raise UserError(f"checkpoint {args.checkpoint} has {deployment.num_classes} classes but the dataset has "
                        f"{dataset.num_classes}")
    if deployment.model is not None:
        deployment.model.to(device)
    p = preprocessing
    tta = config.eval.tta
    results = evaluate(deployment.runner, dataset, config.eval, p, precision, dist_info, progress=True,
                       skip_unreadable=True)
    failed = results.pop("failed")
    if dist_info.is_main:
        split = args.split or config.eval.split or config.data.val_split
        print(f"{args.checkpoint} on {config.data.type} {split} ({len(dataset) - len(failed)} images, mode {p.mode}"
              f"{', TTA' if tta else ''}):")
        print(format_table(results, dataset.class_names, summary=False))  # the summary once, in words
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
    return 1 if failed else 0
