"""OpenVINO against the eager model on the CPU: latency and argmax agreement on real images.

Builds a model variant with random weights (BatchNorm statistics randomised too, so the decoder's
normalisation is not the identity), or loads ``--checkpoint``; takes ``--num-images`` images of
``--images`` (CamVid test by default) through the model's own preprocessing, resized to ``--size``,
and compares:

* ``torch-fp32``: the eager model as every command runs it;
* ``ov-fp32`` / ``ov-bf16``: ``ssformer.inference.openvino.export_openvino`` (fixed ``--size``),
  compiled with ``INFERENCE_PRECISION_HINT`` f32 / bf16;
* ``ov-int8`` / ``ov-int8-bf16``: that IR quantized by NNCF as ``ssformer export --int8 --format
  openvino`` does (``quantize_ir``: MIXED preset, TRANSFORMER model type, calibrated on the first
  ``--calib-images`` images of ``--calib``, CamVid train by default), f32 / bf16 elsewhere.

Calls are interleaved round by round (first contender rotating), medians reported; agreement is
each contender's argmax against ``torch-fp32`` on the images.

    python3 benchmarks/openvino_cpu.py ssformer_swin_b --size 512 512 --threads 2 --rounds 5

(Not named openvino.py: the script's folder comes first on sys.path and would shadow the package.)
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

import torch  # noqa: E402

import ssformer  # noqa: E402
from ssformer.inference import quantize  # noqa: E402
from ssformer.inference.openvino import compile_ir, export_openvino, ir_runner, read_ir  # noqa: E402
from ssformer.inference.openvino_int8 import Int8Settings, quantize_ir  # noqa: E402

CAMVID = REPO.parent / "shared" / "data" / "CamVid"


def build(args: argparse.Namespace) -> tuple[torch.nn.Module, ssformer.Preprocessing]:
    if args.checkpoint:
        loaded = ssformer.load_model(args.checkpoint)
        return loaded.model.float().eval(), loaded.preprocessing
    torch.manual_seed(0)
    model = ssformer.create_model(args.variant, num_classes=args.num_classes)
    with torch.no_grad():
        for name, buffer in model.named_buffers():
            if name.endswith("running_var"):
                buffer.uniform_(0.5, 1.5)
            elif name.endswith("running_mean"):
                buffer.normal_(0, 0.2)
    return model.eval(), ssformer.Preprocessing()


def runners(model, preprocessing, args, size) -> dict:
    calibration = quantize.calibration_inputs(args.calib, preprocessing, size, args.calib_images)
    work = Path(tempfile.mkdtemp(prefix="ssformer-openvino-bench-"))
    start = time.perf_counter()
    export_openvino(model, size, work / "fp32.xml")
    print(f"export {time.perf_counter() - start:.0f} s", flush=True)
    float_ir = read_ir(work / "fp32.xml")
    reference = compile_ir(float_ir, "f32", args.threads)
    start = time.perf_counter()
    int8_ir, _ = quantize_ir(float_ir, calibration, calibration, Int8Settings(args.calib), reference)
    print(f"NNCF quantize {time.perf_counter() - start:.0f} s", flush=True)
    return {"torch-fp32": quantize.torch_runner(model), "ov-fp32": ir_runner(reference),
            "ov-bf16": ir_runner(compile_ir(float_ir, "bf16", args.threads)),
            "ov-int8": ir_runner(compile_ir(int8_ir, "f32", args.threads)),
            "ov-int8-bf16": ir_runner(compile_ir(int8_ir, "bf16", args.threads))}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("variant", nargs="?", default="ssformer_swin_b")
    parser.add_argument("--checkpoint", help="a model file or folder instead of a random-weight variant")
    parser.add_argument("--num-classes", type=int, default=150)
    parser.add_argument("--images", default=str(CAMVID / "test"))
    parser.add_argument("--calib", default=str(CAMVID / "train"))
    parser.add_argument("--num-images", type=int, default=4)
    parser.add_argument("--calib-images", type=int, default=8)
    parser.add_argument("--size", type=int, nargs=2, default=(512, 512), metavar=("H", "W"))
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    size = tuple(args.size)
    model, preprocessing = build(args)
    images = quantize.calibration_inputs(args.images, preprocessing, size, args.num_images)
    calls = runners(model, preprocessing, args, size)
    names = list(calls)
    for name in names:  # warm-up
        calls[name](images[0])
    times: dict[str, list[float]] = {name: [] for name in names}
    for step in range(args.rounds):
        x = images[step % len(images)]
        for k in range(len(names)):
            name = names[(step + k) % len(names)]
            start = time.perf_counter()
            calls[name](x)
            times[name].append(time.perf_counter() - start)
    label = args.checkpoint or f"{args.variant} (random weights, {args.num_classes} classes)"
    print(f"{label} at {size[0]}x{size[1]}, {args.threads} threads, {args.rounds} rounds, torch {torch.__version__}")
    base = statistics.median(times["torch-fp32"])
    for name in names:
        median = statistics.median(times[name])
        agreement = quantize.compare_predictions(calls["torch-fp32"], calls[name], images, model.num_classes)
        print(f"  {name:13s} median {median * 1e3:7.1f} ms  {base / median:4.2f}x torch-fp32  "
              f"argmax agreement {100 * agreement.argmax_agreement:6.2f}%")


if __name__ == "__main__":
    main()
