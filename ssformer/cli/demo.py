"""``ssformer demo``: train, evaluate and predict on the synthetic sample shipped with the package.

A few minutes on a CPU: it trains the built-in ``sample`` recipe from random initialisation, prints
the per-class table of the final model on the sample's validation split (also written as
``metrics.json``) and writes colour predictions of those images to ``WORK_DIR/predictions``.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from ssformer.engine.config import load_config, sample_root


def add_parser(subparsers) -> None:
    parser = subparsers.add_parser("demo", help="train + evaluate + predict on the built-in sample",
                                   description=__doc__.split("\n\n")[1])
    parser.add_argument("--work-dir", default="ssformer-demo", help="output folder (default: ssformer-demo)")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="override an entry of the sample recipe, e.g. --set train.iters=100")
    parser.add_argument("--overwrite", action="store_true",
                        help="WORK_DIR holds an earlier run: delete it and run the demo again (default: refuse)")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import numpy as np
    import torch
    from PIL import Image

    from ssformer.engine.evaluator import evaluate
    from ssformer.engine.trainer import build_eval_dataset, train
    from ssformer.engine.workdir import refuse_earlier_run
    from ssformer.metrics import format_table
    from ssformer.precision import amp_precision, autocast
    from ssformer.utils import atomic_write

    config = load_config("sample", [f"data.root={sample_root()}", *args.overrides, f"work_dir={args.work_dir}"])
    work_dir = Path(args.work_dir)
    if not args.overwrite:
        refuse_earlier_run(work_dir, how="")  # the demo has no --resume
    summary = train(config, overwrite=args.overwrite)
    model = _final_model(work_dir)
    dataset = build_eval_dataset(config)
    results = evaluate(model, dataset, config.eval, precision=amp_precision(config.train.amp, "cpu"))
    print(f"final model ({summary['iterations']} iterations) on the sample's val split ({len(dataset)} images):")
    print(format_table(results, dataset.class_names))
    with atomic_write(work_dir / "metrics.json") as tmp:
        tmp.write_text(json.dumps({"class_names": list(dataset.class_names), **results}, indent=2) + "\n")

    out_dir = work_dir / "predictions"
    out_dir.mkdir(parents=True, exist_ok=True)
    palette = np.array(dataset.palette[:dataset.num_classes], dtype=np.uint8)
    model.eval()
    for i in range(len(dataset)):
        item = dataset[i]
        with torch.no_grad(), autocast(torch.device("cpu"), config.train.amp):
            logits = model(item["image"][None]).float()
        logits = torch.nn.functional.interpolate(logits, size=item["label"].shape, mode="bilinear",
                                                 align_corners=False)
        pred = logits.argmax(1)[0].numpy()
        Image.fromarray(palette[pred]).save(out_dir / (Path(item["path"]).stem + ".png"))
    print(f"metrics: {work_dir / 'metrics.json'}; {len(dataset)} colour predictions in {out_dir}")
    return 0


def _final_model(work_dir: Path):
    import ssformer

    return ssformer.SSformer.from_pretrained(work_dir / "model")
