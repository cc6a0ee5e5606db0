"""``evaluate`` takes its settings whole: the config's eval section, the Preprocessing, the Precision."""

from __future__ import annotations

import torch
from torch import nn
from torch.utils.data import Dataset

from ssformer.data.preprocessing import Preprocessing
from ssformer.engine.config import EvalSettings
from ssformer.engine.evaluator import evaluate
from ssformer.precision import amp_precision


class TwoImages(Dataset):
    """Two 8x12 images, every pixel of class 1 except an ignored column."""

    num_classes = 2
    ignore_index = 7

    def __len__(self) -> int:
        return 2

    def __getitem__(self, index: int) -> dict:
        label = torch.ones(8, 12, dtype=torch.long)
        label[:, 0] = self.ignore_index
        return {"image": torch.randn(3, 8, 12), "label": label}


class SaysClassOne(nn.Module):
    """Class 1 everywhere but column 0 (ignored by the labels); records the width of every input."""

    def __init__(self):
        super().__init__()
        self.widths: list[int] = []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.widths.append(x.shape[3])
        logits = torch.zeros(x.shape[0], 2, *x.shape[2:])
        logits[:, 1] = 1.0
        logits[:, 1, :, 0] = -1.0 if x.shape[3] == 12 else 1.0
        return logits


def test_preprocessing_chooses_the_procedure_and_the_dataset_the_classes():
    model = SaysClassOne()
    results = evaluate(model, TwoImages(), EvalSettings(num_workers=0),
                       Preprocessing(mode="slide", crop_size=(8, 4), stride=(8, 4)), amp_precision("none", "cpu"))
    assert model.widths == [4, 4, 4] * 2
    assert results["aAcc"] == 1.0  # column 0 is ignored (ignore_index 7, the dataset's)


def test_settings_give_the_procedure_when_no_preprocessing_is_given():
    model = SaysClassOne()
    evaluate(model, TwoImages(), EvalSettings(num_workers=0, mode="slide", crop_size=[8, 6], stride=[8, 6]))
    assert model.widths == [6, 6] * 2
    model.widths.clear()
    evaluate(model, TwoImages(), EvalSettings(num_workers=0, tta=True, scales=[1.0], flip=True))
    assert model.widths == [12, 12] * 2  # as is and flipped
