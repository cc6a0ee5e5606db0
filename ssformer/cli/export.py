"""``ssformer export``: ONNX, TorchScript or torch.export program, checked against PyTorch on the spot."""

from __future__ import annotations

import argparse

from ssformer.data.transforms import MAX_IMAGE_SIDE
from ssformer.errors import UserError


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("export", help="export a model to ONNX, OpenVINO, TorchScript or a torch.export program",
                              description="Exports with a (1, 3, H, W) input named 'images' and (1, K, H, W) "
                                          "logits, then runs the written file once and prints the largest "
                                          "absolute logit difference to PyTorch (ONNX: via onnxruntime). ONNX "
                                          "and OpenVINO files carry the model's preprocessing, class names and "
                                          "palette: predict, eval, serve and benchmark run them.")
    p.add_argument("--checkpoint", required=True, help="model folder, checkpoint file or Hub repo id")
    p.add_argument("--config", help="model settings when the checkpoint has none (JSON, folder or variant name)")
    p.add_argument("--format", required=True, choices=["onnx", "openvino", "torchscript", "exported-program"],
                   help="openvino: an IR, NAME.xml with its weights in NAME.bin (pip install 'ssformer[openvino]')")
    p.add_argument("--size", required=True, type=int, nargs=2, metavar=("H", "W"), help="input size to trace at")
    p.add_argument("--dynamic", action="store_true",
                   help="onnx and openvino: one graph for any input height and width (--size is the trace size, "
                        "at least 32x32); checked at that size, 45x70 and 203x317")
    p.add_argument("--opset", type=int, help="ONNX opset (default: the exporter's)")
    p.add_argument("--tolerance", type=float, default=1e-3,
                   help="fail when the exported logits differ by more than this (default 1e-3)")
    p.add_argument("--int8", action="store_true",
                   help="onnx: an int8 model by ONNX Runtime static quantization of every MatMul, Gemm and Conv; "
                        "openvino: an int8 IR by NNCF (SmoothQuant, bias correction; accuracy control when the "
                        "plain result falls short), run with bf16 elsewhere where the CPU has it natively; both "
                        "calibrated on --calib images and checked against the float model")
    p.add_argument("--calib", metavar="DIR", help="with --int8: images of your dataset to calibrate on")
    p.add_argument("--calib-images", type=int, default=16, metavar="N",
                   help="with --int8: use the first N images of --calib (and of --check; default 16)")
    p.add_argument("--check", metavar="DIR",
                   help="with --int8: images to compare int8 and float masks on (default: the calibration images)")
    p.add_argument("--check-labels", metavar="DIR",
                   help="with --int8 --format openvino: label maps of the --check images (same relative name, .png): "
                        "also prints the float and the int8 model's mIoU against them (values outside 0..K-1 ignored)")
    p.add_argument("--min-agreement", type=float, default=0.99, metavar="F",
                   help="with --int8: fail, writing nothing, when the int8 and float argmax agree on fewer than "
                        "this share of pixels (default 0.99)")
    p.add_argument("--accuracy-control", action="store_true",
                   help="with --int8 --format openvino: when the plain int8 model falls below --min-agreement, "
                        "let NNCF put the most costly layers back in float (many model evaluations: slow)")
    p.add_argument("--out", required=True, help="file to write")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ssformer.inference.export import export_model
    from ssformer.loading import load_model

    if min(args.size) < 1:
        raise UserError(f"--size must be positive, got {args.size}")
    if max(args.size) > MAX_IMAGE_SIDE:
        raise UserError(f"--size {args.size[0]} {args.size[1]}: each side must be at most {MAX_IMAGE_SIDE}")
    if args.int8:
        return _run_int8(args)
    if args.calib or args.check or args.check_labels:
        raise UserError("--calib, --check and --check-labels only apply with --int8")
    if args.accuracy_control:
        raise UserError("--accuracy-control only applies with --int8 --format openvino")
    model = load_model(args.checkpoint, args.config).model
    if args.format == "openvino":
        from ssformer.inference.openvino import check_ir_path, export_openvino

        check_ir_path(args.out)
        result = export_openvino(model, tuple(args.size), args.out, dynamic=args.dynamic, opset=args.opset)
    else:
        result = export_model(model, args.format, tuple(args.size), args.out, dynamic=args.dynamic, opset=args.opset)
    for (h, w), diff in result.checks:
        print(f"ssformer export: {args.format} at {h}x{w}: max |logit difference| to PyTorch = {diff:.3g}")
    if result.max_abs_diff > args.tolerance:
        print(f"ssformer export: error: difference {result.max_abs_diff:.3g} is above --tolerance {args.tolerance}; "
              f"{args.out} is not trustworthy")
        return 1
    print(f"ssformer export: wrote {args.out}")
    if args.format in ("onnx", "openvino") and not args.dynamic:
        h, w = args.size
        print(f"ssformer export: note: predict, eval and serve run this file on {h}x{w} inputs only (slide mode with "
              f"--crop {h} {w}, or images that resize to {h}x{w}); --dynamic exports run the model's test pipeline "
              f"on any image")
    return 0


def _run_int8(args: argparse.Namespace) -> int:
    from ssformer.inference.quantize import AccuracyError, Int8Settings, export_int8_onnx
    from ssformer.loading import load_model

    if args.format not in ("onnx", "openvino"):
        raise UserError(f"--int8 applies to --format onnx (ONNX Runtime) or openvino (NNCF); got --format "
                        f"{args.format}")
    if not args.calib:
        raise UserError("--int8 needs --calib DIR: a few images of your dataset to calibrate on")
    if not 0 <= args.min_agreement <= 1:
        raise UserError(f"--min-agreement must be in [0, 1], got {args.min_agreement}")
    if args.format == "openvino":
        return _run_int8_openvino(args)
    if args.accuracy_control or args.check_labels:
        raise UserError("--accuracy-control and --check-labels apply to --format openvino (NNCF int8)")
    loaded = load_model(args.checkpoint, args.config)
    try:
        settings = Int8Settings(args.calib, args.calib_images, args.check, args.min_agreement, args.tolerance)
        result = export_int8_onnx(loaded.model, loaded.preprocessing, tuple(args.size), args.out, settings,
                                  dynamic=args.dynamic, opset=args.opset)
    except AccuracyError as e:
        print(f"ssformer export: error: {e} (--min-agreement {args.min_agreement} asked for: lower it to accept "
              f"this model, or calibrate on more images with --calib-images)")
        return 1
    for (h, w), diff in result.float_checks:
        print(f"ssformer export: float onnx at {h}x{w}: max |logit difference| to PyTorch = {diff:.3g}")
    print(f"ssformer export: int8 against float onnx: {result.agreement.summary()}")
    print(f"ssformer export: wrote {result.path}")
    return 0


def _run_int8_openvino(args: argparse.Namespace) -> int:
    from ssformer.inference.openvino import check_ir_path
    from ssformer.inference.openvino_int8 import Int8Settings, export_int8_openvino
    from ssformer.inference.quantize import AccuracyError
    from ssformer.loading import load_model

    check_ir_path(args.out)
    loaded = load_model(args.checkpoint, args.config)
    settings = Int8Settings(args.calib, args.calib_images, args.check, args.min_agreement, args.tolerance,
                            args.accuracy_control, check_labels=args.check_labels)
    try:
        result = export_int8_openvino(loaded.model, loaded.preprocessing, tuple(args.size), args.out, settings,
                                      dynamic=args.dynamic)
    except AccuracyError as e:
        print(f"ssformer export: error: {e} (--min-agreement {args.min_agreement} asked for: lower it to accept "
              f"this model, or calibrate on more images with --calib-images)")
        return 1
    for (h, w), diff in result.float_checks:
        print(f"ssformer export: float openvino at {h}x{w}: max |logit difference| to PyTorch = {diff:.3g}")
    how = "NNCF with accuracy control" if result.accuracy_control else "NNCF"
    print(f"ssformer export: int8 ({how}), f32 elsewhere, against the float model: {result.agreement.summary()}")
    if result.bf16_agreement is not None:
        print(f"ssformer export: int8, bf16 elsewhere, against the float model: {result.bf16_agreement.summary()}")
    if result.label_miou is not None:
        print(f"ssformer export: mIoU against --check-labels: float {100 * result.label_miou[0]:.2f}%, int8 "
              f"{100 * result.label_miou[1]:.2f}% ({result.agreement.images} images)")
    default = "bf16 elsewhere" if result.run_precision == "bf16" else "f32 elsewhere (--dtype bf16 to run bf16)"
    print(f"ssformer export: wrote {result.path} (runs int8, {default})")
    return 0
