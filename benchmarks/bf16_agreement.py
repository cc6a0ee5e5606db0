"""How often a bf16 model picks the same class as the fp32 model, per pixel, on real images.

Random weights give near-tied logits, so this needs a trained model: pass a ``save_pretrained``
folder (for example a CamVid run's ``model/``). For each image (ImageNet-normalised, native size)
it compares the fp32 argmax with:

* ``bf16-model``: ``model.to(torch.bfloat16)``, ``model(x)`` with the float32 images (the patch
  embedding then runs in float32 and the rest in bf16);
* ``bf16-model-bf16-in``: the same model on ``x.bfloat16()`` (images rounded to bf16 first);
* ``bf16-autocast``: fp32 weights under ``torch.autocast("cpu", torch.bfloat16)``;
* ``bf16-weights``: the weights rounded to bf16 and back, fp32 arithmetic: the agreement any
  model with bf16 weights can reach, whatever it computes in;

and reports the pixel accuracy of each against the labels when a ``*annot`` folder is next to the images.

    python3 benchmarks/bf16_agreement.py runs/camvid/model --images ../shared/data/CamVid/test
"""

from __future__ import annotations

import argparse
import copy
import json
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

import numpy as np  # noqa: E402
import torch  # noqa: E402
from PIL import Image  # noqa: E402

import ssformer  # noqa: E402

MEAN = torch.tensor((123.675, 116.28, 103.53))[:, None, None]
STD = torch.tensor((58.395, 57.12, 57.375))[:, None, None]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("model_dir", type=Path, help="a save_pretrained folder (config.json + model.safetensors)")
    parser.add_argument("--images", type=Path, default=REPO.parent / "shared" / "data" / "CamVid" / "test")
    parser.add_argument("--num-images", type=int, default=20)
    parser.add_argument("--ignore-index", type=int, default=11, help="label value to skip (CamVid void: 11)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--json", type=Path, help="also write the numbers to this file")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    model = ssformer.SSformer.from_pretrained(args.model_dir).eval()
    model_bf16 = copy.deepcopy(model).to(torch.bfloat16)
    model_rounded = copy.deepcopy(model).to(torch.bfloat16).float()  # bf16 weights, fp32 arithmetic
    files = sorted(p for p in args.images.iterdir() if p.suffix.lower() in {".png", ".jpg", ".jpeg"})
    files = files[:args.num_images]
    if not files:
        raise SystemExit(f"no images in {args.images}")
    labels_dir = args.images.parent / (args.images.name + "annot")
    same = {"bf16-model": 0, "bf16-model-bf16-in": 0, "bf16-autocast": 0, "bf16-weights": 0}
    correct = {"fp32": 0, **{name: 0 for name in same}}
    pixels, labelled = 0, 0
    with torch.inference_mode():
        for path in files:
            rgb = torch.from_numpy(np.asarray(Image.open(path).convert("RGB"), dtype=np.float32)).permute(2, 0, 1)
            x = ((rgb - MEAN) / STD)[None]
            predictions = {"fp32": model(x).argmax(1)[0], "bf16-model": model_bf16(x).argmax(1)[0],
                           "bf16-model-bf16-in": model_bf16(x.bfloat16()).argmax(1)[0],
                           "bf16-weights": model_rounded(x).argmax(1)[0]}
            with torch.autocast("cpu", dtype=torch.bfloat16):
                predictions["bf16-autocast"] = model(x).argmax(1)[0]
            for name in same:
                same[name] += (predictions[name] == predictions["fp32"]).sum().item()
            pixels += predictions["fp32"].numel()
            label_path = labels_dir / path.name
            if label_path.is_file():
                label = torch.from_numpy(np.asarray(Image.open(label_path), dtype=np.int64))
                valid = label != args.ignore_index
                labelled += valid.sum().item()
                for name, p in predictions.items():
                    correct[name] += ((p == label) & valid).sum().item()
    report = {"model_dir": str(args.model_dir), "images": len(files), "pixels": pixels,
              "argmax_agreement_with_fp32": {k: v / pixels for k, v in same.items()},
              "pixel_accuracy": {k: v / labelled for k, v in correct.items()} if labelled else None}
    print(f"{len(files)} images from {args.images}, {pixels} pixels, model {args.model_dir}")
    for name, count in same.items():
        print(f"  argmax identical to fp32, {name:<18}: {100 * count / pixels:.3f}%")
    if labelled:
        for name, count in correct.items():
            print(f"  pixel accuracy vs labels, {name:<18}: {100 * count / labelled:.3f}%")
    if args.json:
        args.json.write_text(json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    main()
