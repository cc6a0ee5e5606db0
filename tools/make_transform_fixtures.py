"""Make tests/fixtures/transforms_pipeline.npz: mmseg 0.24.1's train pipeline with every random draw recorded.

Run with the official interpreter (made by ../shared/reference/setup_official.sh, as in docs/model.md):
    /tmp/ssformer-official/bin/python tools/make_transform_fixtures.py
mmseg's Resize (keep ratio, ratio range), RandomCrop (cat_max_ratio), RandomFlip and
PhotoMetricDistortion run on a small image; numpy's global random functions they call are wrapped
so that each call's kind, bounds and result are recorded in order. The test replays those draws
into ssformer's transforms, which must ask for the same kinds with the same bounds in the same
order, and compares the outputs (resizing differs slightly: OpenCV vs Pillow). A second set runs
PhotoMetricDistortion alone on unresized images.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import numpy as np

REFERENCE = Path(os.environ.get("SSFORMER_SHARED", Path(__file__).resolve().parents[2] / "shared")) / "reference"
sys.path.insert(0, str(REFERENCE))
import official  # noqa: E402,F401  (stubs mmcv.ops/torchvision so mmseg imports)
from mmseg.datasets.pipelines import transforms as T  # noqa: E402

OUT = Path(__file__).resolve().parents[1] / "tests" / "fixtures" / "transforms_pipeline.npz"
KINDS = {"random": 0, "integers": 1, "uniform": 2}


class Recorder:
    """Wraps a RandomState; records (kind, low, high, value) for every draw."""

    def __init__(self, seed: int):
        self.state = np.random.RandomState(seed)
        self.log: list[tuple[int, float, float, float]] = []

    def random_sample(self):
        value = self.state.random_sample()
        self.log.append((KINDS["random"], 0.0, 1.0, value))
        return value

    rand = random_sample

    def randint(self, low, high=None):
        low, high = (0, low) if high is None else (low, high)
        value = int(self.state.randint(low, high))
        self.log.append((KINDS["integers"], low, high, value))
        return value

    def uniform(self, low, high):
        value = float(self.state.uniform(low, high))
        self.log.append((KINDS["uniform"], low, high, value))
        return value


def scene(height: int, width: int, seed: int, dominant: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
    """A smooth colourful RGB image and a blocky label with 4 classes and some ignore; with
    ``dominant`` that share of the blocks is class 0 (so that crops get rejected and retried)."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width] / max(height, width)
    phase = rng.random(3) * 6
    image = np.stack([127 + 120 * np.sin(5 * x + 3 * y + p) for p in phase], axis=2)
    image = np.clip(image + rng.normal(0, 3, image.shape), 0, 255).astype(np.uint8)
    blocks = rng.integers(0, 4, (height // 6 + 1, width // 6 + 1))
    blocks[rng.random(blocks.shape) < dominant] = 0
    label = np.kron(blocks, np.ones((6, 6), dtype=np.int64))[:height, :width].astype(np.uint8)
    label[rng.random((height, width)) < 0.03] = 255
    return image, label


def main() -> None:
    resize = T.Resize(img_scale=(80, 60), ratio_range=(0.5, 2.0), keep_ratio=True)
    crop = T.RandomCrop(crop_size=(32, 32), cat_max_ratio=0.75)
    flip = T.RandomFlip(prob=0.5)
    photo = T.PhotoMetricDistortion()
    arrays: dict[str, np.ndarray] = {}
    for case in range(8):
        image, label = scene(45, 60, case, dominant=0.9 if case % 2 else 0.0)
        recorder = Recorder(case)
        T.np.random, saved_np, saved_random = recorder, T.np.random, T.random  # wrap the globals mmseg uses
        T.random = recorder
        try:
            results = {"img": image[..., ::-1].copy(), "gt_semantic_seg": label.copy(),
                       "seg_fields": ["gt_semantic_seg"]}
            for step in (resize, crop, flip, photo):
                results = step(results)
        finally:
            T.np.random, T.random = saved_np, saved_random
        arrays[f"pipeline_image_{case}"] = image
        arrays[f"pipeline_label_{case}"] = label
        arrays[f"pipeline_draws_{case}"] = np.array(recorder.log, dtype=np.float64)
        arrays[f"pipeline_out_image_{case}"] = results["img"][..., ::-1].copy()  # back to RGB
        arrays[f"pipeline_out_label_{case}"] = results["gt_semantic_seg"]
        arrays[f"pipeline_flip_{case}"] = np.array(results["flip"])
    for case in range(12):
        image, _ = scene(24, 32, 100 + case)
        recorder = Recorder(100 + case)
        saved_random, T.random = T.random, recorder
        try:
            out = photo({"img": image[..., ::-1].copy()})["img"][..., ::-1].copy()
        finally:
            T.random = saved_random
        arrays[f"photo_image_{case}"] = image
        arrays[f"photo_draws_{case}"] = np.array(recorder.log, dtype=np.float64)
        arrays[f"photo_out_{case}"] = out
    np.savez_compressed(OUT, **arrays)
    print(OUT, OUT.stat().st_size, "bytes")


if __name__ == "__main__":
    main()
