"""Make tests/fixtures/losses_mmseg.pt: loss values, gradients and OHEM selections from mmseg 0.24.1.

Run with the official interpreter (made by ../shared/reference/setup_official.sh, as in docs/model.md):
    /tmp/ssformer-official/bin/python tools/make_loss_fixtures.py
Every case runs mmseg's own decode-head loss path, ``BaseDecodeHead.losses`` of a ``SegformerHead``
(resize of the low-resolution logits to the label size, ``OHEMPixelSampler``, the ``loss_decode``
list), on fixed random float32 logits and labels, and stores: the logits, the labels, our config for
the same loss (``train.loss`` and ``train.ohem`` as JSON), mmseg's total loss (the sum of its
``loss_*`` entries), the gradient of that total w.r.t. the low-resolution logits and, with a
sampler, the sampler's pixel weights. Labels and OHEM weights are stored as uint8 (the file stays small).
"""

from __future__ import annotations

import json
import os
import sys
import warnings
from pathlib import Path

import torch

REFERENCE = Path(os.environ.get("SSFORMER_SHARED", Path(__file__).resolve().parents[2] / "shared")) / "reference"
sys.path.insert(0, str(REFERENCE))
import official  # noqa: F401  (stubs mmcv.ops/torchvision so mmseg imports)
from mmseg.models.decode_heads import SegformerHead

OUT = Path(__file__).resolve().parents[1] / "tests" / "fixtures" / "losses_mmseg.pt"
K = 5
CW = [0.5, 2.0, 1.0, 3.0, 0.25]


def mmseg_losses(logits, labels, loss_decode, sampler=None):
    head = SegformerHead(in_channels=[4, 4, 4, 4], in_index=[0, 1, 2, 3], channels=4, num_classes=logits.shape[1],
                         norm_cfg={"type": "BN", "requires_grad": True}, align_corners=False,
                         loss_decode=loss_decode, sampler=sampler)
    leaf = logits.clone().requires_grad_()
    losses = head.losses(leaf, labels[:, None])
    total = sum(v for k, v in losses.items() if k.startswith("loss_"))
    total.backward()
    weight = None
    if sampler is not None:
        resized = torch.nn.functional.interpolate(logits, labels.shape[1:], mode="bilinear", align_corners=False)
        weight = head.sampler.sample(resized, labels[:, None])
    return total.detach(), leaf.grad, weight


def inputs(seed, logits_size, label_size, ignore_fraction=0.15, batch=2):
    g = torch.Generator().manual_seed(seed)
    logits = torch.randn(batch, K, *logits_size, generator=g) * 2
    labels = torch.randint(0, K, (batch, *label_size), generator=g)
    labels[torch.rand(labels.shape, generator=g) < ignore_fraction] = 255
    return logits, labels


def ce(**kw):
    name = kw.pop("loss_name", "loss_ce")
    return dict(type="CrossEntropyLoss", use_sigmoid=False, loss_name=name, **kw)


CASES = {
    # name: (seed, logits size, label size, ignored share, mmseg loss_decode, sampler, our train.loss, train.ohem)
    "ce": (1, (7, 9), (27, 35), 0.15, ce(loss_weight=1.0), None, [{"type": "cross_entropy"}], None),
    "ce_class_weight": (2, (7, 9), (27, 35), 0.15, ce(loss_weight=0.7, class_weight=CW), None,
                        [{"type": "cross_entropy", "weight": 0.7, "class_weight": CW}], None),
    "ce_avg_non_ignore": (3, (5, 6), (19, 23), 0.3, ce(loss_weight=1.0, avg_non_ignore=True), None,
                          [{"type": "cross_entropy", "avg_non_ignore": True}], None),
    "ce_class_weight_avg_non_ignore": (
        4, (5, 6), (19, 23), 0.3, ce(loss_weight=1.0, class_weight=CW, avg_non_ignore=True), None,
        [{"type": "cross_entropy", "class_weight": CW, "avg_non_ignore": True}], None),
    # OHEM by threshold: thresh decides (few pixels needed) / min_kept decides (threshold above thresh)
    "ohem_thresh": (5, (13, 17), (13, 17), 0.1, ce(loss_weight=1.0), {"type": "OHEMPixelSampler", "thresh": 0.7,
                    "min_kept": 20}, [{"type": "cross_entropy"}], {"thresh": 0.7, "min_kept": 20}),
    "ohem_min_kept": (6, (13, 17), (13, 17), 0.1, ce(loss_weight=1.0, class_weight=CW),
                      {"type": "OHEMPixelSampler", "thresh": 0.05, "min_kept": 150},
                      [{"type": "cross_entropy", "class_weight": CW}], {"thresh": 0.05, "min_kept": 150}),
    "ohem_thresh_resized_avg_non_ignore": (
        7, (7, 9), (27, 35), 0.15, ce(loss_weight=1.0, avg_non_ignore=True),
        {"type": "OHEMPixelSampler", "thresh": 0.6, "min_kept": 100},
        [{"type": "cross_entropy", "avg_non_ignore": True}], {"thresh": 0.6, "min_kept": 100}),
    # OHEM by loss ranking (no thresh): the top min_kept * B pixels of the summed CE terms
    "ohem_top_loss": (8, (13, 17), (13, 17), 0.1,
                      [ce(loss_weight=1.0, class_weight=CW), ce(loss_weight=0.5, loss_name="loss_ce2")],
                      {"type": "OHEMPixelSampler", "thresh": None, "min_kept": 60},
                      [{"type": "cross_entropy", "class_weight": CW}, {"type": "cross_entropy", "weight": 0.5}],
                      {"thresh": None, "min_kept": 60}),
    "ohem_top_loss_resized": (9, (7, 9), (27, 35), 0.15, ce(loss_weight=1.0),
                              {"type": "OHEMPixelSampler", "thresh": None, "min_kept": 300},
                              [{"type": "cross_entropy"}], {"thresh": None, "min_kept": 300}),
    # Dice, without and with ignored pixels (mmseg 0.24.1 keeps those in its denominator: dice_loss's docstring)
    "dice_ignored_pixels": (20, (7, 9), (27, 35), 0.15, {"type": "DiceLoss", "loss_weight": 1.0}, None,
                            [{"type": "dice"}], None),
    "dice_options_ignored_pixels": (21, (7, 9), (27, 35), 0.25,
                                    {"type": "DiceLoss", "loss_weight": 0.5, "smooth": 0.5, "exponent": 1,
                                     "class_weight": CW}, None,
                                    [{"type": "dice", "weight": 0.5, "smooth": 0.5, "exponent": 1,
                                      "class_weight": CW}], None),
    "ohem_ce_dice_ignored_pixels": (22, (7, 9), (27, 35), 0.15,
                                    [ce(loss_weight=1.0), {"type": "DiceLoss", "loss_weight": 0.5}],
                                    {"type": "OHEMPixelSampler", "thresh": 0.7, "min_kept": 200},
                                    [{"type": "cross_entropy"}, {"type": "dice", "weight": 0.5}],
                                    {"thresh": 0.7, "min_kept": 200}),
    "dice": (10, (7, 9), (27, 35), 0.0, {"type": "DiceLoss", "loss_weight": 1.0}, None, [{"type": "dice"}], None),
    "dice_options": (11, (7, 9), (27, 35), 0.0,
                     {"type": "DiceLoss", "loss_weight": 0.5, "smooth": 0.5, "exponent": 1, "class_weight": CW}, None,
                     [{"type": "dice", "weight": 0.5, "smooth": 0.5, "exponent": 1, "class_weight": CW}], None),
    "focal": (12, (7, 9), (27, 35), 0.15, {"type": "FocalLoss", "loss_weight": 1.0}, None, [{"type": "focal"}], None),
    "focal_options": (13, (7, 9), (27, 35), 0.15,
                      {"type": "FocalLoss", "loss_weight": 2.0, "gamma": 1.5, "alpha": [0.1, 0.3, 0.5, 0.7, 0.9],
                           "class_weight": CW}, None,
                      [{"type": "focal", "weight": 2.0, "gamma": 1.5, "alpha": [0.1, 0.3, 0.5, 0.7, 0.9],
                        "class_weight": CW}], None),
    "lovasz": (14, (7, 9), (27, 35), 0.15, {"type": "LovaszLoss", "loss_weight": 1.0, "reduction": "none"}, None,
               [{"type": "lovasz"}], None),
    "lovasz_all_class_weight": (15, (7, 9), (27, 35), 0.15,
                                {"type": "LovaszLoss", "loss_weight": 0.3, "reduction": "none", "classes": "all",
                                     "class_weight": CW}, None,
                                [{"type": "lovasz", "weight": 0.3, "classes": "all", "class_weight": CW}], None),
    "lovasz_per_image_classes": (16, (7, 9), (27, 35), 0.15,
                                 {"type": "LovaszLoss", "loss_weight": 1.0, "per_image": True, "reduction": "mean",
                                      "classes": [0, 2, 3]}, None,
                                 [{"type": "lovasz", "classes": [0, 2, 3], "per_image": True}], None),
    # mmseg's loss_decode list, with and without OHEM (Dice and Lovasz ignore the sampler's weights)
    "ce_dice_focal": (17, (7, 9), (27, 35), 0.0,
                      [ce(loss_weight=1.0, class_weight=CW), {"type": "DiceLoss", "loss_weight": 0.5},
                       {"type": "FocalLoss", "loss_weight": 2.0}], None,
                      [{"type": "cross_entropy", "class_weight": CW}, {"type": "dice", "weight": 0.5},
                       {"type": "focal", "weight": 2.0}], None),
    "ohem_ce_lovasz": (18, (7, 9), (27, 35), 0.15,
                       [ce(loss_weight=1.0), {"type": "LovaszLoss", "loss_weight": 0.5, "reduction": "none"}],
                       {"type": "OHEMPixelSampler", "thresh": 0.7, "min_kept": 200},
                       [{"type": "cross_entropy"}, {"type": "lovasz", "weight": 0.5}],
                       {"thresh": 0.7, "min_kept": 200}),
    "ohem_ce_dice": (19, (7, 9), (27, 35), 0.0,
                     [ce(loss_weight=1.0, class_weight=CW), {"type": "DiceLoss", "loss_weight": 0.5}],
                     {"type": "OHEMPixelSampler", "thresh": 0.7, "min_kept": 200},
                     [{"type": "cross_entropy", "class_weight": CW}, {"type": "dice", "weight": 0.5}],
                     {"thresh": 0.7, "min_kept": 200}),
}


def dice_with_ignored_pixels() -> dict:
    """mmseg's Dice with ignored pixels, and on the labelled pixels alone (what ``exclude_ignored: true`` computes).

    Each image has the same number of labelled pixels, so those pixels alone form a (B, K, P, 1) batch.
    """
    g = torch.Generator().manual_seed(20)
    logits = torch.randn(2, K, 12, 10, generator=g) * 2
    labels = torch.randint(0, K, (2, 12, 10), generator=g)
    for b in range(2):
        labels[b].view(-1)[torch.randperm(120, generator=g)[:30]] = 255
    full, _, _ = mmseg_losses(logits, labels, {"type": "DiceLoss", "loss_weight": 1.0})
    valid = labels != 255
    compact_logits = torch.stack([logits[b][:, valid[b]] for b in range(2)])[..., None]  # (B, K, 90, 1)
    compact_labels = torch.stack([labels[b][valid[b]] for b in range(2)])[..., None]
    compact, _, _ = mmseg_losses(compact_logits, compact_labels, {"type": "DiceLoss", "loss_weight": 1.0})
    return {"logits": logits, "labels": labels.to(torch.uint8), "mmseg": full, "mmseg_labelled_only": compact}


def main() -> None:
    warnings.filterwarnings("ignore")
    torch.manual_seed(0)
    fixtures = {}
    for name, (seed, logits_size, label_size, ignored, decode, sampler, loss, ohem) in CASES.items():
        logits, labels = inputs(seed, logits_size, label_size, ignored)
        total, grad, weight = mmseg_losses(logits, labels, decode, sampler)
        case = {"logits": logits, "labels": labels.to(torch.uint8), "loss": total, "grad": grad,
                "config": json.dumps({"loss": loss, "ohem": ohem})}
        if weight is not None:
            case["ohem_weight"] = weight.to(torch.uint8)  # 0/1
        fixtures[name] = case
        print(f"{name}: loss {total.item():.6f}" + (f", OHEM kept {int(weight.sum())}" if weight is not None else ""))
    fixtures["dice_ignored"] = dice_with_ignored_pixels()
    OUT.parent.mkdir(parents=True, exist_ok=True)
    torch.save(fixtures, OUT)
    print(f"wrote {OUT} ({OUT.stat().st_size} bytes)")


if __name__ == "__main__":
    main()
