"""Reading any input image as the 8-bit RGB picture the model was trained on; errors name the file."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from ssformer.errors import UserError

ImageInput = str | os.PathLike | Image.Image | np.ndarray

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp", ".gif", ".ppm", ".pgm")



class ImageError(UserError):
    """An input that is not a usable image (a ValueError, so the CLI prints one line)."""


def _high_bit_depth_to_uint8(array: np.ndarray) -> np.ndarray:
    """16/32-bit integer grey -> 8 bits by the 16-bit range (65535 -> 255). Floats in [0, 1] (the
    convention of scikit-image, matplotlib and ``ToTensor``) are scaled by 255; other floats are
    read as 0..255 and clipped. An all-[0, 1] array taken as 0..255 would be black: 65.7% of the
    right mask on a test image."""
    if np.issubdtype(array.dtype, np.floating):
        finite = array[np.isfinite(array)]
        if finite.size and finite.min() >= 0 and finite.max() <= 1:
            array = array * 255.0
        return np.clip(np.rint(np.nan_to_num(array)), 0, 255).astype(np.uint8)
    return np.clip(np.rint(array.astype(np.float64) / 257.0), 0, 255).astype(np.uint8)


def pil_to_rgb(image: Image.Image, name: str = "image") -> Image.Image:
    """Upright 8-bit RGB: EXIF orientation applied; grey, palette, RGBA/LA (alpha dropped), CMYK and
    16-bit images converted."""
    image = ImageOps.exif_transpose(image)
    if image.width == 0 or image.height == 0:
        raise ImageError(f"{name} has zero size ({image.width}x{image.height})")
    if image.mode in ("I", "I;16", "I;16B", "I;16L", "I;16N", "F"):
        return Image.fromarray(_high_bit_depth_to_uint8(np.asarray(image)), mode="L").convert("RGB")
    if image.mode == "P" and "transparency" in image.info:
        image = image.convert("RGBA")
    return image if image.mode == "RGB" else image.convert("RGB")


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
        array = _high_bit_depth_to_uint8(array)
    array = np.ascontiguousarray(array[:, :, :3] if array.ndim == 3 else array)
    return Image.fromarray(array).convert("RGB")


def open_image(path: str | os.PathLike) -> Image.Image:
    """Decode ``path`` fully (truncated files fail here, not later) and return it as RGB."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"image {path} does not exist")
    if not path.is_file():
        raise ImageError(f"image {path} is not a file")
    try:
        with Image.open(path) as image:
            image.load()
            return pil_to_rgb(image, str(path))
    except ImageError:
        raise
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError, Image.DecompressionBombError) as e:
        raise ImageError(f"cannot read image {path}: {e}") from e


def load_rgb(source: ImageInput) -> Image.Image:
    """A path, PIL image or array as an upright 8-bit RGB PIL image."""
    if isinstance(source, (str, os.PathLike)):
        return open_image(source)
    if isinstance(source, Image.Image):
        return pil_to_rgb(source)
    if isinstance(source, np.ndarray):
        return array_to_rgb(source)
    raise TypeError(f"expected a path, PIL image or numpy array, got {type(source).__name__}")
