"""The CPU engines against the eager model: latency and argmax agreement on real images.

Builds a model variant with random weights (BatchNorm statistics randomised too, so the decoder's
normalisation is not the identity), or loads ``--checkpoint`` (any file ``SSformer.from_pretrained``
reads; a trained model for agreement figures that mean something: random weights have tiny logit
margins); takes ``--num-images`` images of ``--images`` (CamVid test by default) through the model's
own preprocessing, resized to ``--size``, and times, interleaved in one process
(``benchmarks/common.py``):

* ``torch-fp32`` (and ``torch-bf16`` where the CPU has native bf16): the eager model as every
  command runs it;
* ``onnxruntime-fp32``, ``openvino-fp32`` / ``-bf16``: the model exported to ONNX at ``--size``, in
  ONNX Runtime and converted to OpenVINO (``INFERENCE_PRECISION_HINT`` f32 / bf16);
* ``openvino-int8`` / ``-int8-bf16``: that IR quantized by NNCF as ``ssformer export --format
  openvino --int8`` does, calibrated on the first ``--calib-images`` images of ``--calib`` (CamVid
  train by default), f32 / bf16 elsewhere;
* ``onnxruntime-int8``: ONNX Runtime static QDQ of the same ONNX file (``export --format onnx --int8``),
  calibrated on the same images;

Each round runs every contender once on the next image (first contender rotating); medians and the
spread (min-max) are reported. Agreement: each contender's argmax against ``torch-fp32`` on all the
images, and the mIoU of its masks with ``torch-fp32``'s as labels.

    python3 benchmarks/openvino_cpu.py ssformer_swin_b --size 512 512 --threads 2 --rounds 5
    python3 benchmarks/openvino_cpu.py --checkpoint runs/camvid/model --size 360 480 --num-images 8

(Not named openvino.py: the script's folder comes first on sys.path and would shadow the package.)
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

import torch  # noqa: E402
from common import engine_runners, interleaved, summarise  # noqa: E402

import ssformer  # noqa: E402
from ssformer.inference import quantize  # noqa: E402
from ssformer.inference.openvino import cpu_has_native_bf16  # noqa: E402
from ssformer.loading import load_model  # noqa: E402

CAMVID = REPO.parent / "shared" / "data" / "CamVid"


def build(args: argparse.Namespace) -> tuple[torch.nn.Module, ssformer.Preprocessing]:
    if args.checkpoint:
        loaded = load_model(args.checkpoint)
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


def bf16_runner(model: torch.nn.Module) -> quantize.Runner:
    half = copy.deepcopy(model).to(torch.bfloat16).eval()

    def run(tensor: torch.Tensor) -> torch.Tensor:
        with torch.inference_mode():
            return half(tensor.bfloat16()).float()
    return run


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
    parser.add_argument("--json", type=Path, help="also write the numbers to this JSON file")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    size = tuple(args.size)
    model, preprocessing = build(args)
    images = quantize.calibration_inputs(args.images, preprocessing, size, args.num_images)
    calibration = quantize.calibration_inputs(args.calib, preprocessing, size, args.calib_images)
    runners = {"torch-fp32": quantize.torch_runner(model)}
    if cpu_has_native_bf16():
        runners["torch-bf16"] = bf16_runner(model)
    runners.update(engine_runners(model, size, calibration, args.threads))
    rounds = {name: _cycling(run, images) for name, run in runners.items()}
    stats = summarise(interleaved(rounds, args.rounds, warmup=1))
    label = args.checkpoint or f"{args.variant} (random weights, {args.num_classes} classes)"
    print(f"{label} at {size[0]}x{size[1]}, {args.threads} threads, {args.rounds} rounds, torch {torch.__version__}, "
          f"load average {os.getloadavg()[0]:.1f}")
    base = stats["torch-fp32"]["median_s"]
    for name, s in stats.items():
        agreement = quantize.compare_predictions(runners["torch-fp32"], runners[name], images, model.num_classes)
        s.update(argmax_agreement=agreement.argmax_agreement, miou_vs_torch_fp32=agreement.miou)
        print(f"  {name:18s} median {s['median_s'] * 1e3:8.1f} ms (min {s['min_s'] * 1e3:7.1f}, max "
              f"{s['max_s'] * 1e3:7.1f})  {base / s['median_s']:5.2f}x torch-fp32  argmax agreement "
              f"{100 * agreement.argmax_agreement:6.2f}%  mIoU vs torch-fp32 {100 * agreement.miou:6.2f}%")
    if args.json:
        args.json.write_text(json.dumps({"command": " ".join(sys.argv), "stats": stats}, indent=2) + "\n")


def _cycling(run: quantize.Runner, images: list[torch.Tensor]):
    """A zero-argument call that runs the next image each time (all contenders see the same sequence)."""
    state = {"i": 0}

    def call() -> torch.Tensor:
        state["i"] += 1
        return run(images[(state["i"] - 1) % len(images)])
    return call


if __name__ == "__main__":
    main()
