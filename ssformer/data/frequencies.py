"""Class pixel frequencies of a training set and the class weights balanced losses derive from them.

Counted on the stored labels at their original size (training ids, ignored pixels excluded), not on
augmented crops, as SegNet and ENet did.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np
from tqdm import tqdm

from ssformer.data.datasets import SegmentationDataset
from ssformer.data.io import read_label
from ssformer.errors import UserError

CLASS_WEIGHT_METHODS = ("median_frequency", "enet")


@dataclass
class ClassPixels:
    """``pixels[c]``: pixels of class c; ``image_pixels[c]``: all pixels of the images containing c."""

    pixels: np.ndarray
    image_pixels: np.ndarray
    labelled_pixels: int


def count_class_pixels(datasets: Iterable[SegmentationDataset], progress: bool = False) -> ClassPixels:
    """Read every label of the datasets (which must share their classes) and count class pixels."""
    datasets = list(datasets)
    num_classes = datasets[0].num_classes
    pixels = np.zeros(num_classes, dtype=np.int64)
    image_pixels = np.zeros(num_classes, dtype=np.int64)
    labelled = 0
    for dataset in datasets:
        if dataset.num_classes != num_classes:
            raise UserError(f"datasets with {num_classes} and {dataset.num_classes} classes cannot share weights")
        for _, label_path in tqdm(dataset.pairs, desc="class frequencies", disable=None if progress else True,
                                  leave=False):
            label = dataset.decode_label(read_label(label_path), label_path).reshape(-1)
            counts = np.bincount(label[label != dataset.ignore_index], minlength=num_classes)[:num_classes]
            pixels += counts
            image_pixels[counts > 0] += label.size
            labelled += int(counts.sum())
    return ClassPixels(pixels, image_pixels, labelled)


def median_frequency_weights(counts: ClassPixels) -> np.ndarray:
    """SegNet's median frequency balancing (Eigen & Fergus 2015): ``median(f) / f_c``.

    ``f_c`` = pixels of class c / total pixels of the images where c is present. A class that
    never occurs gets weight 0 and is left out of the median.
    """
    present = counts.pixels > 0
    if not present.any():
        raise UserError("no labelled pixel in the training set: cannot compute class frequencies")
    frequency = np.zeros(len(counts.pixels))
    frequency[present] = counts.pixels[present] / counts.image_pixels[present]
    weights = np.zeros_like(frequency)
    weights[present] = np.median(frequency[present]) / frequency[present]
    return weights


def enet_weights(counts: ClassPixels, c: float = 1.02) -> np.ndarray:
    """ENet's weighting (Paszke et al. 2016): ``1 / ln(c + p_c)``, p_c the share of labelled pixels."""
    if counts.labelled_pixels == 0:
        raise UserError("no labelled pixel in the training set: cannot compute class frequencies")
    return 1.0 / np.log(c + counts.pixels / counts.labelled_pixels)


def class_weights(method: str, datasets: Iterable[SegmentationDataset], progress: bool = False) -> np.ndarray:
    """Class weights by name (``median_frequency`` or ``enet``) from the datasets' labels."""
    if method not in CLASS_WEIGHT_METHODS:
        raise UserError(f"class weight method must be one of {', '.join(CLASS_WEIGHT_METHODS)}, got {method!r}")
    counts = count_class_pixels(datasets, progress)
    return median_frequency_weights(counts) if method == "median_frequency" else enet_weights(counts)
