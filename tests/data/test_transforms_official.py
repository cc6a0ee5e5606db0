"""ssformer's train transforms against mmseg 0.24.1's, replaying mmseg's recorded random draws.

Fixture: tools/make_transform_fixtures.py (run with the official interpreter). Each draw mmseg made
is stored as (kind, low, high, value); the replaying generator below checks that ssformer asks
for the same kind with the same bounds in the same order, so the pipelines make the same random
decisions. The outputs then agree up to the resize implementations (OpenCV vs Pillow).
"""

import numpy as np
import pytest

from ssformer.data.transforms import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    TrainTransform,
    TrainTransformSettings,
    photometric_distortion,
)
from tests.conftest import FIXTURES

DATA = np.load(FIXTURES / "transforms_pipeline.npz")
KINDS = ("random", "integers", "uniform")


class Replay:
    """A numpy Generator stand-in that answers with mmseg's recorded draws, checking each request."""

    def __init__(self, draws: np.ndarray):
        self.draws = [tuple(row) for row in draws]

    def _next(self, kind: str, low: float, high: float) -> float:
        assert self.draws, f"ssformer drew more than mmseg ({kind})"
        recorded_kind, recorded_low, recorded_high, value = self.draws.pop(0)
        assert (KINDS[int(recorded_kind)], recorded_low, recorded_high) == (kind, low, high)
        return value

    def random(self) -> float:
        return self._next("random", 0.0, 1.0)

    def integers(self, low, high=None) -> int:
        low, high = (0, low) if high is None else (low, high)
        return int(self._next("integers", low, high))

    def uniform(self, low, high) -> float:
        return self._next("uniform", low, high)


@pytest.mark.parametrize("case", range(8))
def test_pipeline_matches_mmseg(case):
    image, label = DATA[f"pipeline_image_{case}"], DATA[f"pipeline_label_{case}"].astype(np.int64)
    expected_image, expected_label = DATA[f"pipeline_out_image_{case}"], DATA[f"pipeline_out_label_{case}"]
    replay = Replay(DATA[f"pipeline_draws_{case}"])
    transform = TrainTransform(TrainTransformSettings(img_scale=(80, 60), ratio_range=(0.5, 2.0), crop_size=(32, 32), cat_max_ratio=0.75))
    out_image, out_label = transform(image, label, replay)
    assert not replay.draws, "ssformer drew fewer values than mmseg"
    h, w = expected_label.shape
    assert (out_label[h:, :] == 255).all() and (out_label[:, w:] == 255).all()  # padding beyond mmseg's crop
    agree = (out_label[:h, :w].numpy() == expected_label).mean()
    assert agree > 0.9, agree  # nearest-neighbour conventions differ only along label edges
    std, mean = np.array(IMAGENET_STD)[:, None, None], np.array(IMAGENET_MEAN)[:, None, None]
    pixels = (out_image[:, :h, :w].numpy() * std + mean).transpose(1, 2, 0)
    diff = np.abs(pixels - expected_image.astype(np.float64))
    assert diff.mean() < 4, diff.mean()  # bilinear resizes differ (OpenCV vs Pillow), then the same ops


@pytest.mark.parametrize("case", range(12))
def test_photometric_matches_mmseg(case):
    image = DATA[f"photo_image_{case}"]
    replay = Replay(DATA[f"photo_draws_{case}"])
    out = photometric_distortion(image, replay)
    assert not replay.draws
    diff = np.abs(out.astype(int) - DATA[f"photo_out_{case}"].astype(int))
    # same ops with the same values; OpenCV's 8-bit HSV image (hue in 2-degree steps) rounds more
    assert diff.max() <= 6 and diff.mean() < 1.0, (diff.max(), diff.mean())
