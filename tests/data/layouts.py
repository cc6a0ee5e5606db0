"""Tiny datasets written in the real folder layouts, for the dataset tests."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image


def write_image(path: Path, height: int = 12, width: int = 16, seed: int = 0, suffix_format: str | None = None) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    pixels = np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(path, format=suffix_format)
    return path


def write_label(path: Path, values: np.ndarray, palette: list[int] | None = None) -> Path:
    """Single-channel PNG (mode L), or a palette PNG (mode P) when ``palette`` is given."""
    path.parent.mkdir(parents=True, exist_ok=True)
    image = Image.fromarray(np.asarray(values, dtype=np.uint8), mode="L")
    if palette is not None:
        image = image.convert("P")
        image.putpalette(palette)
    image.save(path)
    return path


def label_values(height: int = 12, width: int = 16, values=(0, 1, 2), seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).choice(values, size=(height, width)).astype(np.uint8)


def make_camvid(root: Path, splits=(("train", 3), ("val", 2)), list_files: bool = True) -> Path:
    for split, count in splits:
        lines = []
        for i in range(count):
            name = f"0001TP_{i:06d}.png"
            write_image(root / split / name, seed=i)
            write_label(root / f"{split}annot" / name, label_values(values=(0, 3, 10, 11), seed=i))
            lines.append(f"/SegNet/CamVid/{split}/{name} /SegNet/CamVid/{split}annot/{name}")
        if list_files:
            (root / f"{split}.txt").write_text("\n".join(lines) + "\n")
    return root


def make_ade(root: Path, count: int = 3) -> Path:
    base = root / "ADEChallengeData2016"
    for folder, prefix in (("training", "ADE_train"), ("validation", "ADE_val")):
        for i in range(count):
            write_image(base / "images" / folder / f"{prefix}_{i:08d}.jpg", seed=i, suffix_format="JPEG")
            write_label(base / "annotations" / folder / f"{prefix}_{i:08d}.png",
                        label_values(values=(0, 1, 75, 150), seed=i))
    return root


def make_cityscapes(root: Path, train_ids: bool = True) -> Path:
    for split in ("train", "val"):
        for city in ("aachen", "bremen"):
            for i in range(2):
                stem = f"{city}_{i:06d}_000019"
                write_image(root / "leftImg8bit" / split / city / f"{stem}_leftImg8bit.png", seed=i)
                ids = label_values(values=(0, 7, 26, 33), seed=i)
                write_label(root / "gtFine" / split / city / f"{stem}_gtFine_labelIds.png", ids)
                if train_ids:
                    lut = {0: 255, 7: 0, 26: 13, 33: 18}
                    write_label(root / "gtFine" / split / city / f"{stem}_gtFine_labelTrainIds.png",
                                np.vectorize(lut.get)(ids))
    return root


def voc_palette() -> list[int]:
    from ssformer.data.classes import voc_color

    return [v for i in range(256) for v in voc_color(i)]


def make_voc(root: Path, names=("2007_000032", "2007_000039", "2007_000063")) -> Path:
    base = root / "VOCdevkit" / "VOC2012"
    for i, name in enumerate(names):
        write_image(base / "JPEGImages" / f"{name}.jpg", seed=i, suffix_format="JPEG")
        write_label(base / "SegmentationClass" / f"{name}.png", label_values(values=(0, 15, 20, 255), seed=i),
                    palette=voc_palette())
    sets = base / "ImageSets" / "Segmentation"
    sets.mkdir(parents=True)
    (sets / "train.txt").write_text("\n".join(names[:2]) + "\n")
    (sets / "val.txt").write_text(names[2] + "\n")
    return root
