"""Regenerate tests/fixtures/official_test_pipeline.npz: mmseg 0.24.1's own test pipeline on real images.

Run with the interpreter made by ../shared/reference/setup_official.sh:

    /tmp/ssformer-official/bin/python tools/make_preprocessing_fixtures.py

For each image and test scale it runs mmseg's pipeline (LoadImageFromFile, MultiScaleFlipAug with
Resize keep_ratio, Normalize to_rgb, ImageToTensor) and stores the uint8 image after the resize
(the step before Normalize) and, for the first image at the first scale, the normalised float32 tensor the model gets.
The scales shrink and enlarge the images by factors that are not integers.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
SHARED = HERE.parent.parent / "shared"
sys.path.insert(0, str((SHARED / "reference").resolve()))
import official  # noqa: E402,F401  (stubs mmcv.ops / torchvision before mmseg is imported)
from mmseg.datasets.pipelines import Compose  # noqa: E402

IMAGES = [SHARED / "data" / "CamVid" / "test" / "0001TP_008550.png",
          SHARED / "data" / "ade20k-sample" / "sampleData" / "images" / "ADE_val_00000001.jpg"]
SCALES = [(300, 130), (620, 400)]  # (long, short) bounds, keep ratio: CamVid x0.36 and x1.11, ADE x0.25 and x0.78
NORM = dict(mean=[123.675, 116.28, 103.53], std=[58.395, 57.12, 57.375], to_rgb=True)


def pipeline(scale, normalise: bool) -> Compose:
    steps = [dict(type="Resize", keep_ratio=True)]
    if normalise:
        steps.append(dict(type="Normalize", **NORM))
    steps += [dict(type="ImageToTensor", keys=["img"]), dict(type="Collect", keys=["img"])]
    return Compose([dict(type="LoadImageFromFile"),
                    dict(type="MultiScaleFlipAug", img_scale=scale, flip=False, transforms=steps)])


def main() -> None:
    out: dict[str, np.ndarray] = {"scales": np.array(SCALES)}
    for i, path in enumerate(IMAGES):
        if not path.is_file():
            raise SystemExit(f"missing {path}")
        out[f"name_{i}"] = np.array(path.name)
        for j, scale in enumerate(SCALES):
            result = pipeline(scale, normalise=False)(dict(img_info=dict(filename=str(path)), img_prefix=None))
            bgr = result["img"][0].numpy().transpose(1, 2, 0)  # CHW float32 of the resized uint8 BGR image
            out[f"resized_{i}_{j}"] = np.ascontiguousarray(bgr[:, :, ::-1]).astype(np.uint8)  # RGB
    result = pipeline(SCALES[0], normalise=True)(dict(img_info=dict(filename=str(IMAGES[0])), img_prefix=None))
    out["normalised_0"] = result["img"][0].numpy().astype(np.float32)
    target = HERE.parent / "tests" / "fixtures" / "official_test_pipeline.npz"
    np.savez_compressed(target, **out)
    print(f"wrote {target} ({target.stat().st_size} bytes)")


if __name__ == "__main__":
    main()
