"""Reading images and label maps with Pillow; every failure names the file.

One set of rules turns any picture into the 8-bit RGB the model sees, for training, evaluation
and prediction alike (:func:`upright_rgb`): EXIF orientation applied (as mmcv's ``imread`` does for
colour images), 16-bit grey scaled by its range, alpha dropped. Label maps keep their stored values
and their file's pixel order.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from ssformer.errors import UserError

Color = tuple[int, int, int]



class DataError(UserError):
    """A problem with a dataset file or folder. A ValueError, so the CLI prints it as one line."""


class ImageError(DataError):
    """An input that is not a usable image (a ValueError, so the CLI prints one line)."""


def _open(path: str | os.PathLike, what: str) -> Image.Image:
    """Open and fully decode ``path`` (``load()`` catches truncated files, not just bad headers)."""
    if not os.path.isfile(path):
        raise DataError(f"{what} file not found: {path}")
    try:
        image = Image.open(path)
        image.load()
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError, Image.DecompressionBombError) as e:
        raise ImageError(f"cannot read {what} {path}: {e}") from e
    if image.width == 0 or image.height == 0:
        raise ImageError(f"{what} {path} has zero size ({image.width}x{image.height})")
    return image


def high_bit_depth_to_uint8(array: np.ndarray) -> np.ndarray:
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


def upright_rgb(image: Image.Image, name: str = "image") -> Image.Image:
    """Upright 8-bit RGB: EXIF orientation applied; grey, palette, RGBA/LA (alpha dropped), CMYK and
    16-bit images converted."""
    image = ImageOps.exif_transpose(image)
    if image.width == 0 or image.height == 0:
        raise ImageError(f"{name} has zero size ({image.width}x{image.height})")
    if image.mode in ("I", "I;16", "I;16B", "I;16L", "I;16N", "F"):
        return Image.fromarray(high_bit_depth_to_uint8(np.asarray(image)), mode="L").convert("RGB")
    if image.mode == "P" and "transparency" in image.info:
        image = image.convert("RGBA")
    return image if image.mode == "RGB" else image.convert("RGB")


def read_rgb(path: str | os.PathLike) -> Image.Image:
    """The picture in ``path``, fully decoded (truncated files fail here), as :func:`upright_rgb`."""
    with _open(path, "image") as image:
        return upright_rgb(image, str(path))


def read_image(path: str | os.PathLike) -> np.ndarray:
    """:func:`read_rgb` as a uint8 (H, W, 3) array (what the datasets and ``check-data`` read)."""
    return np.asarray(read_rgb(path))


def read_label(path: str | os.PathLike) -> np.ndarray:
    """The stored values of a label map as an (H, W) integer array, or (H, W, 3) for RGB files.

    Palette ("P") PNGs give their indices, not their colours, which is what VOC's
    SegmentationClass files need. Callers map and validate the values.
    """
    image = _open(path, "label")
    if image.mode in ("L", "P", "I", "I;16", "I;16B", "I;16L", "1"):
        array = np.asarray(image)
        if array.dtype == bool:
            array = array.astype(np.uint8)
        return array
    if image.mode in ("RGB", "RGBA", "LA"):
        return np.asarray(image.convert("RGB"))
    raise DataError(f"label {path}: unsupported image mode {image.mode!r} (expected a single-channel PNG)")


def colors_to_indices(rgb: np.ndarray, palette: Sequence[Color], path: str | os.PathLike,
                      ignore_index: int = 255, ignore_colors: Sequence[Color] = ()) -> np.ndarray:
    """Map an (H, W, 3) colour-coded label map to class indices via ``palette``.

    ``ignore_colors`` map to ``ignore_index``; any other colour not in the palette is an error that
    lists the unknown colours.
    """
    codes = (rgb[..., 0].astype(np.int64) << 16) | (rgb[..., 1].astype(np.int64) << 8) | rgb[..., 2]
    table = {(r << 16) | (g << 8) | b: i for i, (r, g, b) in enumerate(palette)}
    for r, g, b in ignore_colors:
        table[(r << 16) | (g << 8) | b] = ignore_index
    unique, inverse = np.unique(codes, return_inverse=True)
    unknown = [int(c) for c in unique if int(c) not in table]
    if unknown:
        shown = ", ".join(f"({c >> 16}, {(c >> 8) & 255}, {c & 255})" for c in unknown[:10])
        more = f" and {len(unknown) - 10} more" if len(unknown) > 10 else ""
        raise DataError(f"label {path}: colours not in the palette: {shown}{more}")
    mapped = np.array([table[int(c)] for c in unique], dtype=np.int64)
    return mapped[inverse].reshape(codes.shape)
