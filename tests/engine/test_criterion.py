"""The configured training loss against mmseg 0.24.1's decode-head loss (tools/make_loss_fixtures.py)."""

from __future__ import annotations

import json
from dataclasses import replace

import pytest
import torch
import torch.nn.functional as F

from ssformer.engine.config import TrainSettings, loss_settings
from ssformer.engine.criterion import SegmentationCriterion, build_criterion
from ssformer.engine.loss import segmentation_loss
from tests.conftest import FIXTURES

CASES = torch.load(FIXTURES / "losses_mmseg.pt", weights_only=True)
NAMES = sorted(name for name in CASES if "config" in CASES[name])


def _criterion(config: dict, num_classes: int = 5) -> SegmentationCriterion:
    loss, ohem = loss_settings(config.get("loss", TrainSettings().loss), config.get("ohem"),
                               config.get("avg_non_ignore", False))
    return build_criterion(loss, ohem, num_classes, 255)


@pytest.mark.parametrize("name", NAMES)
def test_loss_and_gradient_equal_mmseg(name, monkeypatch):
    import ssformer.engine.loss as loss_module

    monkeypatch.setattr(loss_module, "_BAND_ELEMENTS_CPU", 300)  # the banded CE path with many bands
    case = CASES[name]
    criterion = _criterion(json.loads(case["config"]))
    logits = case["logits"].clone().requires_grad_()
    loss = criterion(logits, case["labels"].long())
    loss.backward()
    torch.testing.assert_close(loss.detach(), case["loss"], rtol=2e-6, atol=1e-7)
    torch.testing.assert_close(logits.grad, case["grad"], rtol=1e-4, atol=1e-7)


@pytest.mark.parametrize("name", [n for n in NAMES if "ohem_weight" in CASES[n]])
def test_ohem_selection_equals_mmseg_sampler(name):
    from ssformer.engine.loss import per_pixel_cross_entropy
    from ssformer.engine.loss_terms import ohem_pixel_weight

    case = CASES[name]
    config = json.loads(case["config"])
    criterion = _criterion(config)
    labels = case["labels"].long()
    ce = per_pixel_cross_entropy(case["logits"], labels)
    ohem = config["ohem"]
    if ohem["thresh"] is not None:
        weight = ohem_pixel_weight(labels, 255, ohem["min_kept"], ohem["thresh"], true_class_probability=torch.exp(-ce))
    else:
        valid = labels != 255
        ranking = sum(t.weight * ce * (w[labels.masked_fill(~valid, 0)] if w is not None else 1)
                      for t, w in zip(criterion.terms, criterion.class_weights))
        weight = ohem_pixel_weight(labels, 255, ohem["min_kept"], pixel_loss=ranking)
        if "resized" in name:  # duplicated rows of the resize tie at the cut: same loss, any tied pixel
            assert weight.sum() == case["ohem_weight"].sum()
            return
    assert torch.equal(weight, case["ohem_weight"].float())


def test_ohem_cases_exercise_both_threshold_branches():
    # thresh decides: more than min_kept * B pixels are below it; min_kept decides: exactly min_kept * B kept
    thresh_case, min_kept_case = CASES["ohem_thresh"], CASES["ohem_min_kept"]
    assert int(thresh_case["ohem_weight"].sum()) > 2 * json.loads(thresh_case["config"])["ohem"]["min_kept"]
    assert int(min_kept_case["ohem_weight"].sum()) == 2 * json.loads(min_kept_case["config"])["ohem"]["min_kept"]


def test_dice_with_ignored_pixels_is_mmsegs_or_on_request_the_dice_of_the_labelled_pixels():
    case = CASES["dice_ignored"]
    logits, labels = case["logits"], case["labels"].long()
    torch.testing.assert_close(_criterion({"loss": [{"type": "dice"}]})(logits, labels), case["mmseg"],
                               rtol=2e-6, atol=1e-7)
    excluded = _criterion({"loss": [{"type": "dice", "exclude_ignored": True}]})(logits, labels)
    torch.testing.assert_close(excluded, case["mmseg_labelled_only"], rtol=2e-6, atol=1e-7)
    assert abs(excluded.item() - case["mmseg"].item()) > 1e-3  # the departure is real on this case


def _resize_then_weighted_ce(logits, labels, class_weight, avg_non_ignore):
    full = F.interpolate(logits, size=labels.shape[1:], mode="bilinear", align_corners=False)
    per_pixel = F.cross_entropy(full, labels, weight=class_weight, ignore_index=255, reduction="none")
    if avg_non_ignore:
        return per_pixel.sum() / ((labels != 255).sum() + torch.finfo(torch.float32).eps)
    return per_pixel.mean()


@pytest.mark.parametrize("avg_non_ignore", [False, True])
def test_class_weighted_banded_ce_equals_the_formula_in_float64(avg_non_ignore, monkeypatch):
    import ssformer.engine.loss as loss_module

    monkeypatch.setattr(loss_module, "_BAND_ELEMENTS_CPU", 200)
    g = torch.Generator().manual_seed(3)
    logits = torch.randn(2, 4, 6, 7, generator=g, dtype=torch.float64) * 3
    labels = torch.randint(0, 4, (2, 23, 29), generator=g)
    labels[:, ::4, ::3] = 255
    weights = [0.2, 1.5, 4.0, 0.7]
    criterion = _criterion({"loss": [{"type": "cross_entropy", "class_weight": weights,
                                      "avg_non_ignore": avg_non_ignore}]}, 4)
    ours, reference = logits.clone().requires_grad_(), logits.clone().requires_grad_()
    loss = criterion(ours, labels)
    expected = _resize_then_weighted_ce(reference, labels, torch.tensor(weights, dtype=torch.float64), avg_non_ignore)
    loss.backward()
    expected.backward()
    torch.testing.assert_close(loss.double(), expected, rtol=1e-6, atol=1e-8)
    torch.testing.assert_close(ours.grad, reference.grad, rtol=1e-5, atol=1e-9)


def test_default_config_is_exactly_the_plain_banded_loss():
    criterion = _criterion({})
    assert criterion.plain
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(2, 3, 4, 5, generator=g)
    labels = torch.randint(0, 3, (2, 16, 20), generator=g)
    labels[0, :3] = 255
    assert torch.equal(criterion(logits, labels), segmentation_loss(logits, labels))
    averaged = _criterion({"avg_non_ignore": True})
    assert averaged.terms[0].avg_non_ignore is True
    assert torch.equal(averaged(logits, labels), segmentation_loss(logits, labels, avg_non_ignore=True))


def test_named_class_weights_are_computed_once_and_checked():
    calls = []

    def source(method):
        calls.append(method)
        return [1.0, 2.0, 3.0]

    loss, _ = loss_settings([{"type": "cross_entropy", "class_weight": "median_frequency"},
                             {"type": "dice", "class_weight": "median_frequency"}])
    criterion = build_criterion(loss, None, 3, 255, source)
    assert calls == ["median_frequency"]
    assert criterion.class_weights[1].tolist() == [1.0, 2.0, 3.0]
    with pytest.raises(ValueError, match=r"train.loss\[0\].class_weight has 2 values but the dataset has 3"):
        build_criterion([replace(loss[0], class_weight=[1.0, 2.0])], None, 3, 255)


def test_per_class_settings_must_fit_the_dataset():
    loss, _ = loss_settings([{"type": "focal", "alpha": [0.5, 0.5]}, {"type": "lovasz", "classes": [0, 3]}])
    with pytest.raises(ValueError, match=r"train.loss\[0\].alpha has 2 values but the dataset has 3 classes"):
        build_criterion(loss, None, 3, 255)
    loss[0] = replace(loss[0], alpha=0.5)
    with pytest.raises(ValueError, match=r"train.loss\[1\].classes \[0, 3\] names classes outside \[0, 2\]"):
        build_criterion(loss, None, 3, 255)
    loss[0] = replace(loss[0], class_weight="enet")
    with pytest.raises(ValueError, match=r"train.loss\[0\].class_weight: 'enet' needs the training set"):
        build_criterion(loss, None, 4, 255)


def test_bf16_channels_last_logits_through_every_term():
    config = {"loss": [{"type": "cross_entropy", "class_weight": [1.0, 2.0, 0.5]},
                       {"type": "dice"}, {"type": "focal"}, {"type": "lovasz"}],
              "ohem": {"thresh": 0.7, "min_kept": 50}}
    criterion = _criterion(config, 3)
    g = torch.Generator().manual_seed(1)
    logits = torch.randn(2, 3, 6, 5, generator=g).to(torch.bfloat16).contiguous(memory_format=torch.channels_last)
    labels = torch.randint(0, 3, (2, 24, 20), generator=g)
    labels[:, 0] = 255
    low = logits.detach().requires_grad_()
    criterion(low, labels).backward()
    high = logits.detach().float().requires_grad_()
    criterion(high, labels).backward()
    assert low.grad.dtype == torch.bfloat16
    torch.testing.assert_close(low.grad.float(), high.grad, rtol=2e-2, atol=1e-4)
