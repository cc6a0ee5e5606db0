"""The real CamVid copy (SegNet layout) in the shared data folder."""

import numpy as np
import pytest

from ssformer.data import CamVid, TrainTransform, TrainTransformSettings, build_dataset
from tests.conftest import CAMVID, requires_dir

pytestmark = requires_dir(CAMVID, "CamVid")


@pytest.mark.parametrize("split,count", [("train", 367), ("val", 101), ("test", 233)])
def test_split_sizes(split, count):
    dataset = CamVid(CAMVID, split)
    assert len(dataset) == count
    assert dataset.num_classes == 11
    assert all(image.startswith(str(CAMVID / split)) and label.startswith(str(CAMVID / f"{split}annot"))
               for image, label in dataset.pairs)


def test_every_label_value_in_range():
    """Every stored label value of every split is 0..11, read directly with Pillow (not through the
    dataset's own check); every image is 480x360 like its label; a few go through ``load``."""
    from PIL import Image

    for split in ("train", "val", "test"):
        dataset = CamVid(CAMVID, split)
        for image_path, label_path in dataset.pairs:
            stored = np.asarray(Image.open(label_path))
            assert stored.ndim == 2 and stored.shape == (360, 480), label_path
            assert stored.max() <= 11, label_path
            with Image.open(image_path) as image:
                assert image.size == (480, 360) and image.mode == "RGB", image_path
        for i in range(0, len(dataset), 50):
            image, label = dataset.load(i)
            assert image.shape == (360, 480, 3) and image.dtype == np.uint8
            assert set(np.unique(label).tolist()) <= set(range(11)) | {255}


def test_train_sample_from_config():
    dataset = build_dataset({"type": "camvid", "root": str(CAMVID), "split": "train"},
                            transform=TrainTransform(TrainTransformSettings(img_scale=(960, 720), crop_size=(256, 256))))
    sample = dataset[(5, 123)]
    again = dataset[(5, 123)]
    assert sample["image"].shape == (3, 256, 256) and sample["label"].shape == (256, 256)
    assert sample["path"].endswith(".png")
    assert (sample["image"] == again["image"]).all() and (sample["label"] == again["label"]).all()
