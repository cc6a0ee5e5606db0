"""Training, check-data and prediction read an image file by the same rules (EXIF rotation, 16-bit scaling)."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from ssformer.data.io import ImageError, read_image
from ssformer.inference.images import load_rgb


@pytest.fixture
def picture() -> np.ndarray:
    return np.random.default_rng(0).integers(0, 256, (30, 50, 3), dtype=np.uint8)


def test_exif_orientation_is_applied_by_every_reader(picture, tmp_path):
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 CW to display"
    Image.fromarray(picture).save(tmp_path / "rotated.png", exif=exif)
    upright = np.rot90(picture, k=-1)  # 90 degrees clockwise: 50 high, 30 wide
    np.testing.assert_array_equal(read_image(tmp_path / "rotated.png"), upright)
    np.testing.assert_array_equal(np.asarray(load_rgb(tmp_path / "rotated.png")), upright)
    np.testing.assert_array_equal(np.asarray(load_rgb(Image.open(tmp_path / "rotated.png"))), upright)


def test_16_bit_grey_is_scaled_by_its_range_by_every_reader(picture, tmp_path):
    grey = picture[:, :, 0]
    Image.fromarray(grey.astype(np.uint16) * 257).save(tmp_path / "g16.png")
    assert Image.open(tmp_path / "g16.png").mode.startswith("I")
    expected = np.stack([grey] * 3, axis=-1)
    np.testing.assert_array_equal(read_image(tmp_path / "g16.png"), expected)
    np.testing.assert_array_equal(np.asarray(load_rgb(tmp_path / "g16.png")), expected)
    np.testing.assert_array_equal(np.asarray(load_rgb(grey.astype(np.uint16) * 257)), expected)


def test_an_unreadable_image_is_an_image_error_naming_the_file(tmp_path):
    (tmp_path / "notes.png").write_text("text, not an image")
    with pytest.raises(ImageError, match="notes.png"):
        read_image(tmp_path / "notes.png")
    with pytest.raises(ImageError, match="notes.png"):
        load_rgb(tmp_path / "notes.png")
