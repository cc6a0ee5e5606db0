"""Regenerate the built-in sample dataset shipped in ssformer/data/sample/ (deterministic).

    python3 tools/make_sample.py [OUT_DIR]

Synthetic street-free scenes, so the package can ship them (CamVid is CC BY-NC): textured
discs, boxes and triangles on a smooth background, 4 classes, 96x128 RGB PNGs with 8-bit
class-id label PNGs (a 1-pixel ring around every object is 255 = ignore, like annotation
borders). 48 training and 16 validation images; the layout is a ``folder`` dataset:
``images/NAME.png``, ``labels/NAME.png``, ``train.txt``, ``val.txt``.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
from PIL import Image

CLASSES = ("background", "disc", "box", "triangle")
PALETTE = ((0, 0, 0), (220, 60, 40), (40, 90, 220), (60, 180, 70))
HEIGHT, WIDTH = 96, 128
COUNTS = {"train": 48, "val": 16}
DEFAULT_OUT = Path(__file__).resolve().parent.parent / "ssformer" / "data" / "sample"


def _texture(kind: int, yy: np.ndarray, xx: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A per-class pattern in [0, 1]: stripes (disc), checkers (box), diagonal bands (triangle)."""
    period = rng.uniform(5, 9)
    phase = rng.uniform(0, period)
    if kind == 1:
        return 0.5 + 0.5 * np.sin(2 * np.pi * (yy + phase) / period)
    if kind == 2:
        return (((yy + phase) // (period / 2) + (xx + phase) // (period / 2)) % 2).astype(np.float64)
    return 0.5 + 0.5 * np.sin(2 * np.pi * (xx + yy + phase) / period)


def _shape_mask(kind: int, yy: np.ndarray, xx: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    cy, cx = rng.uniform(10, HEIGHT - 10), rng.uniform(10, WIDTH - 10)
    size = rng.uniform(12, 30)
    if kind == 1:
        ry, rx = size * rng.uniform(0.7, 1.3), size * rng.uniform(0.7, 1.3)
        return ((yy - cy) / ry) ** 2 + ((xx - cx) / rx) ** 2 <= 1
    if kind == 2:
        hy, hx = size * rng.uniform(0.5, 1.0), size * rng.uniform(0.5, 1.0)
        return (np.abs(yy - cy) <= hy) & (np.abs(xx - cx) <= hx)
    # upright triangle: apex at the top, base at the bottom
    top, bottom = cy - size, cy + size * 0.8
    half = (yy - top) / (bottom - top) * size
    return (yy >= top) & (yy <= bottom) & (np.abs(xx - cx) <= half)


def make_image(seed: int) -> tuple[np.ndarray, np.ndarray]:
    """One (image uint8 HxWx3, label uint8 HxW) pair from its seed."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:HEIGHT, 0:WIDTH].astype(np.float64)
    top, bottom = rng.uniform(60, 200, 3), rng.uniform(60, 200, 3)
    image = top + (bottom - top) * (yy / HEIGHT)[..., None]
    label = np.zeros((HEIGHT, WIDTH), np.uint8)
    for _ in range(rng.integers(2, 5)):
        kind = int(rng.integers(1, 4))
        mask = _shape_mask(kind, yy, xx, rng)
        colour = np.clip(np.array(PALETTE[kind], np.float64) + rng.normal(0, 25, 3), 0, 255)
        pattern = _texture(kind, yy, xx, rng)[..., None]
        image[mask] = (colour * (0.55 + 0.45 * pattern))[mask]
        label[mask] = kind
    # 1-pixel ignore ring where the class changes (like annotation borders)
    edge = np.zeros_like(label, bool)
    edge[1:] |= label[1:] != label[:-1]
    edge[:, 1:] |= label[:, 1:] != label[:, :-1]
    label[edge] = 255
    return np.clip(image, 0, 255).round().astype(np.uint8), label


def write_sample(out: Path) -> None:
    (out / "images").mkdir(parents=True, exist_ok=True)
    (out / "labels").mkdir(parents=True, exist_ok=True)
    seed = 0
    for split, count in COUNTS.items():
        names = []
        for i in range(count):
            name = f"{split}_{i:03d}"
            image, label = make_image(seed)
            seed += 1
            Image.fromarray(image).save(out / "images" / f"{name}.png", optimize=True)
            Image.fromarray(label).save(out / "labels" / f"{name}.png", optimize=True)
            names.append(name)
        (out / f"{split}.txt").write_text("\n".join(names) + "\n")
    (out / "classes.txt").write_text("\n".join(CLASSES) + "\n")


if __name__ == "__main__":
    write_sample(Path(sys.argv[1]) if len(sys.argv) > 1 else DEFAULT_OUT)
