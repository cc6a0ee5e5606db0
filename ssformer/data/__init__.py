"""Datasets, transforms and class tables for semantic segmentation."""

from ssformer.data.classes import dataset_classes, default_palette
from ssformer.data.datasets import (
    ADE20K,
    DATASETS,
    CamVid,
    Cityscapes,
    FolderDataset,
    FolderOptions,
    PascalVOC,
    SegmentationDataset,
    build_dataset,
)
from ssformer.data.io import DataError, ImageError, read_image, read_label
from ssformer.data.preprocessing import Preprocessing, TestTransform
from ssformer.data.transforms import IMAGENET_MEAN, IMAGENET_STD, Normalize, TrainTransform, TrainTransformSettings

__all__ = [
    "ADE20K", "DATASETS", "CamVid", "Cityscapes", "DataError", "FolderDataset", "FolderOptions", "IMAGENET_MEAN",
    "IMAGENET_STD", "ImageError", "Normalize", "PascalVOC", "Preprocessing", "SegmentationDataset", "TestTransform", "TrainTransform",
    "TrainTransformSettings", "build_dataset", "dataset_classes", "default_palette", "read_image", "read_label",
]
