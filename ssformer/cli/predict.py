"""``ssformer predict``: class masks, overlays and a legend for images, folders and globs."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from ssformer.errors import UserError
from ssformer.utils import check_writable

if TYPE_CHECKING:
    import torch

    from ssformer.distributed import DistInfo
    from ssformer.inference.files import InputImage


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "predict", help="segment images: palette PNG masks, overlays, a legend",
        description="Writes for every input OUT/<name>.png (palette-mode PNG of class indices), "
                    "OUT/<name>_overlay.jpg, optionally OUT/<name>_proba.npy, and OUT/legend.png. "
                    "Names mirror the inputs; paths under a folder input are kept. Images whose outputs exist "
                    "are skipped (--overwrite redoes them); under torchrun each process takes a share of the "
                    "images and rank 0 writes one predictions.json. Exits 1 if any image failed.")
    p.add_argument("inputs", nargs="+", metavar="INPUT", help="image files, folders (searched recursively) or globs")
    p.add_argument("--checkpoint", required=True,
                   help="model folder, checkpoint file, Hub repo id, or an exported .onnx / OpenVINO .xml "
                        "(from ssformer export; runs on the CPU)")
    p.add_argument("--config", help="model settings: JSON file, save_pretrained folder or variant name "
                                    "(default: from the checkpoint)")
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--device", default="auto", help="auto (default), cpu, cuda, cuda:1, ...")
    p.add_argument("--dtype", default="auto", choices=["auto", "fp32", "bf16", "fp16"],
                   help="auto: fp32 on CPU, bf16 (or fp16) on GPU")
    p.add_argument("--mode", choices=["whole", "slide"], help="default: the model's")
    p.add_argument("--crop", type=int, nargs=2, metavar=("H", "W"), help="slide window (default: the model's)")
    p.add_argument("--stride", type=int, nargs=2, metavar=("H", "W"), help="slide stride (default: the model's)")
    p.add_argument("--img-scale", type=int, nargs=2, metavar=("LONG", "SHORT"),
                   help="keep-ratio test scale (default: the model's)")
    p.add_argument("--original-size", action="store_true", help="no test-scale resize: feed images as they are")
    p.add_argument("--tta", action="store_true", help="average over the model's TTA scales x flip (slow)")
    p.add_argument("--batch-size", type=int, default=4)
    p.add_argument("--alpha", type=float, default=0.5, help="overlay colour weight (default 0.5)")
    p.add_argument("--save-proba", action="store_true", help="also write (K, H, W) float16 probabilities as .npy")
    p.add_argument("--no-overlay", action="store_true")
    p.add_argument("--num-workers", type=int, default=2, help="processes decoding images (default 2; 0: this one)")
    p.add_argument("--overwrite", action="store_true",
                   help="redo images whose outputs already exist (default: skip them, so a stopped run resumes)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ssformer.distributed import distributed_session, session_device, torchrun_env
    from ssformer.inference.batch import Outputs, all_paths
    from ssformer.inference.files import expand_inputs, refuse_outputs_over_inputs

    if args.batch_size < 1:
        raise UserError(f"--batch-size must be >= 1, got {args.batch_size}")
    if args.num_workers < 0:
        raise UserError(f"--num-workers must be >= 0, got {args.num_workers}")
    if not 0 <= args.alpha <= 1:
        raise UserError(f"--alpha must be in [0, 1], got {args.alpha}")
    check_writable(args.out, "--out", folder=True)
    items = expand_inputs(args.inputs)
    layout = torchrun_env()  # under torchrun: one share of the files per process, one GPU each
    outputs = Outputs(not args.no_overlay, args.save_proba, args.alpha)
    out = Path(args.out)
    refuse_outputs_over_inputs(args.inputs, items, out, all_paths(out, items, outputs, layout.world_size))
    device = session_device(args.device, what="--device")
    with distributed_session(device) as dist_info:
        return _predict(args, items, device, dist_info)


def _predict(args: argparse.Namespace, items: list[InputImage], device: torch.device | str,
             dist_info: DistInfo) -> int:
    from ssformer.checkpoints.filekind import EXPORTED_KINDS, file_kind
    from ssformer.inference.batch import FolderPredictor, Outputs
    from ssformer.inference.segmenter import PipelineOverrides, Segmenter

    img_scale = None if args.original_size else (tuple(args.img_scale) if args.img_scale else "auto")
    if args.device == "auto" and file_kind(args.checkpoint) in EXPORTED_KINDS:
        device = "auto"  # ONNX / OpenVINO files run on the CPU whatever GPUs there are
    pipeline = PipelineOverrides(mode=args.mode, crop=args.crop, stride=args.stride, tta=args.tta, img_scale=img_scale)
    segmenter = Segmenter(args.checkpoint, device=device, dtype=args.dtype, pipeline=pipeline, config=args.config)
    predictor = FolderPredictor(segmenter, args.out, Outputs(not args.no_overlay, args.save_proba, args.alpha),
                                args.batch_size, args.num_workers, args.overwrite, dist_info)
    predictor.run(items)
    if dist_info.is_main:
        note = f" ({predictor.skipped} already there, kept; --overwrite redoes them)" if predictor.skipped else ""
        print(f"ssformer predict: {len(predictor.summary)} masks in {args.out}{note}")
        if predictor.failures:
            print(f"ssformer predict: {len(predictor.failures)} of {len(items)} inputs failed:", file=sys.stderr)
            for path, message in predictor.failures.items():
                print(f"  {path}: {message}", file=sys.stderr)
    return 1 if predictor.failures else 0
