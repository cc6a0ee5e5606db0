"""int8 against float, side by side: latency and argmax agreement on real images.

Loads a model (any file ``ssformer.load_model`` reads; a trained one, since random weights have
logit margins too small to mean anything), takes ``--num-images`` images of ``--images`` (CamVid test
images by default) through the model's own preprocessing, resized to ``--size``, and compares:

* ``torch-fp32``: the model as every command runs it;
* ``torch-int8``: the same after ``ssformer.inference.quantize.quantize_linears`` (torchao: int8
  weights, int8 activations scaled per token at run time);
* ``ort-fp32``: the model exported to ONNX (fixed ``--size``) in ONNX Runtime;
* ``ort-int8``: that file quantized by ``ssformer.inference.quantize.quantize_onnx`` (static QDQ,
  calibrated on the first ``--calib-images`` images of ``--calib``, default CamVid train).

Calls are interleaved round by round over the images (first contender rotating), medians reported.
Agreement: int8 argmax against its own float counterpart (torch-int8 vs torch-fp32, ort-int8 vs
ort-fp32), with the mIoU of the int8 masks taken against the float masks.

    python3 benchmarks/int8.py runs/camvid/latest.pt --threads 2 --num-images 20
"""

from __future__ import annotations

import argparse
import copy
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

import torch  # noqa: E402

from ssformer.inference import quantize  # noqa: E402
from ssformer.inference.export import export_model  # noqa: E402
from ssformer.loading import load_model  # noqa: E402

CAMVID = REPO.parent / "shared" / "data" / "CamVid"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("checkpoint")
    parser.add_argument("--images", default=str(CAMVID / "test"), help="images to time and compare on")
    parser.add_argument("--calib", default=str(CAMVID / "train"), help="images to calibrate ONNX Runtime on")
    parser.add_argument("--num-images", type=int, default=20)
    parser.add_argument("--calib-images", type=int, default=16)
    parser.add_argument("--size", type=int, nargs=2, default=(360, 480), metavar=("H", "W"))
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=1, help="passes over the images")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    size = tuple(args.size)

    loaded = load_model(args.checkpoint)
    model = loaded.model.float().eval()
    images = quantize.calibration_inputs(args.images, loaded.preprocessing, size, args.num_images)
    calibration = quantize.calibration_inputs(args.calib, loaded.preprocessing, size, args.calib_images)
    int8 = quantize.quantize_linears(copy.deepcopy(model))
    work = Path(tempfile.mkdtemp(prefix="ssformer-int8-bench-"))
    export_model(model, "onnx", size, work / "fp32.onnx")
    quantize.quantize_onnx(work / "fp32.onnx", work / "int8.onnx", calibration)
    runners = {"torch-fp32": quantize.torch_runner(model), "torch-int8": quantize.torch_runner(int8),
               "ort-fp32": quantize.onnx_runner(work / "fp32.onnx", args.threads),
               "ort-int8": quantize.onnx_runner(work / "int8.onnx", args.threads)}
    names = list(runners)
    for name in names:  # warm-up
        runners[name](images[0])
    times: dict[str, list[float]] = {name: [] for name in names}
    for step in range(args.rounds * len(images)):
        x = images[step % len(images)]
        for k in range(len(names)):
            name = names[(step + k) % len(names)]
            start = time.perf_counter()
            runners[name](x)
            times[name].append(time.perf_counter() - start)

    print(f"{args.checkpoint}: {len(images)} images of {args.images} at {size[0]}x{size[1]}, {args.threads} threads, "
          f"torch {torch.__version__}")
    medians = {name: statistics.median(values) for name, values in times.items()}
    for name in names:
        float_name = name.replace("int8", "fp32")
        ratio = f", {medians[float_name] / medians[name]:.2f}x its fp32" if name != float_name else ""
        print(f"  {name:11s} median {medians[name] * 1e3:7.1f} ms{ratio}")
    for backend in ("torch", "ort"):
        agreement = quantize.compare_predictions(runners[f"{backend}-fp32"], runners[f"{backend}-int8"], images,
                                                 model.num_classes)
        print(f"  {backend}-int8 against {backend}-fp32: {agreement.summary()}")


if __name__ == "__main__":
    main()
