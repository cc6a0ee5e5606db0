"""Reading images and label maps with Pillow; every failure names the file."""

from __future__ import annotations

import os
from collections.abc import Sequence

import numpy as np
from PIL import Image, UnidentifiedImageError

from ssformer.errors import UserError

Color = tuple[int, int, int]



class DataError(UserError):
    """A problem with a dataset file or folder. A ValueError, so the CLI prints it as one line."""


def _open(path: str | os.PathLike, what: str) -> Image.Image:
    """Open and fully decode ``path`` (``load()`` catches truncated files, not just bad headers)."""
    if not os.path.isfile(path):
        raise DataError(f"{what} file not found: {path}")
    try:
        image = Image.open(path)
        image.load()
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError, Image.DecompressionBombError) as e:
        raise DataError(f"cannot read {what} {path}: {e}") from e
    if image.width == 0 or image.height == 0:
        raise DataError(f"{what} {path} has zero size ({image.width}x{image.height})")
    return image


def read_image(path: str | os.PathLike) -> np.ndarray:
    """The image as a uint8 (H, W, 3) RGB array; grey, palette, RGBA and CMYK files are converted.

    EXIF orientation is deliberately not applied: label maps are stored in the file's pixel order.
    """
    image = _open(path, "image")
    if image.mode != "RGB":
        image = image.convert("RGB")
    return np.asarray(image)


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
