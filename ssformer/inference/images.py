"""Any input image (a path, PIL image or array) as the 8-bit RGB picture the model was trained on.

Files and PIL images follow the rules training reads its images by (:func:`ssformer.data.io.upright_rgb`);
errors name the file."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
from PIL import Image

from ssformer.data.io import ImageError, high_bit_depth_to_uint8, read_rgb, upright_rgb

ImageInput = str | os.PathLike | Image.Image | np.ndarray

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp", ".gif", ".ppm", ".pgm")


def array_to_rgb(array: np.ndarray, name: str = "array") -> Image.Image:
    """(H, W), (H, W, 1), (H, W, 3) or (H, W, 4) array -> RGB image (uint8 as is, 16-bit scaled,
    floats in [0, 1] times 255, other floats as 0..255)."""
    if array.ndim == 3 and array.shape[2] == 1:
        array = array[:, :, 0]
    if array.ndim not in (2, 3) or (array.ndim == 3 and array.shape[2] not in (3, 4)):
        raise ImageError(f"{name}: expected an (H, W), (H, W, 3) or (H, W, 4) image array, got shape {array.shape}")
    if array.shape[0] == 0 or array.shape[1] == 0:
        raise ImageError(f"{name} has zero size {array.shape}")
    if array.dtype == bool:
        array = array.astype(np.uint8) * 255
    elif array.dtype != np.uint8:
        if not (np.issubdtype(array.dtype, np.integer) or np.issubdtype(array.dtype, np.floating)):
            raise ImageError(f"{name}: unsupported array dtype {array.dtype}")
        array = high_bit_depth_to_uint8(array)
    array = np.ascontiguousarray(array[:, :, :3] if array.ndim == 3 else array)
    return Image.fromarray(array).convert("RGB")


def open_image(path: str | os.PathLike) -> Image.Image:
    """Decode ``path`` fully (truncated files fail here, not later) and return it as RGB."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"image {path} does not exist")
    if not path.is_file():
        raise ImageError(f"image {path} is not a file")
    return read_rgb(path)


def load_rgb(source: ImageInput) -> Image.Image:
    """A path, PIL image or array as an upright 8-bit RGB PIL image."""
    if isinstance(source, (str, os.PathLike)):
        return open_image(source)
    if isinstance(source, Image.Image):
        return upright_rgb(source)
    if isinstance(source, np.ndarray):
        return array_to_rgb(source)
    raise TypeError(f"expected a path, PIL image or numpy array, got {type(source).__name__}")
