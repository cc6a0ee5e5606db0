"""Turning class-index masks into pictures: palette PNGs, overlays, a legend, per-class shares."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from ssformer.errors import UserError

Color = tuple[int, int, int]


def class_palette(num_classes: int, palette: Sequence[Sequence[int]] | None = None) -> list[Color]:
    """``palette`` checked against the class count, or distinct default colours for ``num_classes``."""
    if palette is None:
        from ssformer.data.classes import default_palette

        return [tuple(int(v) for v in c) for c in default_palette(num_classes)]  # type: ignore[misc]
    colors = [tuple(int(v) for v in c) for c in palette]
    if len(colors) < num_classes:
        raise UserError(f"palette has {len(colors)} colours for {num_classes} classes")
    for c in colors:
        if len(c) != 3 or min(c) < 0 or max(c) > 255:
            raise UserError(f"palette colours must be three values in 0..255, got {c}")
    return colors  # type: ignore[return-value]


def class_labels(num_classes: int, class_names: Sequence[str] | None = None) -> list[str]:
    """Class names, or ``class 0``, ``class 1``, ... when the model has none."""
    if class_names is None:
        return [f"class {i}" for i in range(num_classes)]
    if len(class_names) != num_classes:
        raise UserError(f"{len(class_names)} class names for {num_classes} classes")
    return [str(n) for n in class_names]


def mask_image(mask: np.ndarray, palette: Sequence[Color]) -> Image.Image:
    """A lossless image of the class indices: palette mode ("P") when they fit in 8 bits, so any
    viewer shows the class colours while the pixel values stay the indices; 16-bit grey ("I;16")
    for more than 256 classes."""
    mask = np.asarray(mask)
    if mask.ndim != 2:
        raise ValueError(f"a mask must be (H, W), got shape {mask.shape}")
    if mask.size and (mask.min() < 0 or mask.max() >= 65536):
        raise ValueError(f"mask values must be in 0..65535, got {mask.min()}..{mask.max()}")
    if len(palette) <= 256:
        image = Image.fromarray(mask.astype(np.uint8), mode="P")
        flat = [v for color in palette for v in color]
        image.putpalette(flat + [0] * (768 - len(flat)))
        return image
    return Image.fromarray(mask.astype(np.uint16), mode="I;16")


def colorize(mask: np.ndarray, palette: Sequence[Color]) -> np.ndarray:
    """(H, W) class indices -> (H, W, 3) uint8 colours."""
    table = np.asarray(palette, dtype=np.uint8).reshape(-1, 3)
    mask = np.asarray(mask)
    if mask.size and mask.max() >= len(table):
        raise ValueError(f"mask holds class {mask.max()} but the palette has {len(table)} colours")
    return table[mask]


def overlay(image: Image.Image | np.ndarray, mask: np.ndarray, palette: Sequence[Color],
            alpha: float = 0.5) -> Image.Image:
    """The RGB image with the class colours blended in: ``(1 - alpha) * image + alpha * colour``."""
    if not 0.0 <= alpha <= 1.0:
        raise UserError(f"alpha must be in [0, 1], got {alpha}")
    rgb = np.asarray(image.convert("RGB") if isinstance(image, Image.Image) else image)
    if rgb.shape[:2] != np.asarray(mask).shape:
        raise ValueError(f"image size {rgb.shape[:2]} and mask size {np.asarray(mask).shape} differ")
    blended = (1.0 - alpha) * rgb.astype(np.float32) + alpha * colorize(mask, palette).astype(np.float32)
    return Image.fromarray(np.clip(np.rint(blended), 0, 255).astype(np.uint8), mode="RGB")


def class_shares(mask: np.ndarray, num_classes: int) -> np.ndarray:
    """Fraction of the pixels assigned to each class, (num_classes,) summing to 1."""
    mask = np.asarray(mask)
    counts = np.bincount(mask.reshape(-1), minlength=num_classes)[:num_classes]
    return counts / max(mask.size, 1)


def legend(class_names: Sequence[str], palette: Sequence[Color], classes: Sequence[int] | None = None,
           swatch: int = 16, columns: int | None = None) -> Image.Image:
    """An RGB image listing ``classes`` (default: all) as colour swatch + ``index name`` rows."""
    indices = list(range(len(class_names))) if classes is None else [int(i) for i in classes]
    font = ImageFont.load_default()
    texts = [f"{i} {class_names[i]}" for i in indices]
    text_w = max((int(font.getlength(t)) for t in texts), default=0)
    cell_w, cell_h = swatch + 6 + text_w + 12, swatch + 4
    columns = columns or max(1, min(len(indices), -(-len(indices) // 40)))
    rows = max(1, -(-len(indices) // columns))
    image = Image.new("RGB", (columns * cell_w + 4, rows * cell_h + 4), (255, 255, 255))
    draw = ImageDraw.Draw(image)
    for k, (i, text) in enumerate(zip(indices, texts)):
        x, y = 2 + (k // rows) * cell_w, 2 + (k % rows) * cell_h
        draw.rectangle([x, y + 2, x + swatch - 1, y + swatch + 1], fill=tuple(palette[i]), outline=(0, 0, 0))
        draw.text((x + swatch + 6, y + 3), text, fill=(0, 0, 0), font=font)
    return image
