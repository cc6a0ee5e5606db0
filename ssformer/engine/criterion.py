"""The training loss: a weighted sum of loss terms with optional OHEM, as mmseg's ``loss_decode`` list.

The terms come from ``train.loss`` (typed entries of ``ssformer.engine.loss_config``):
``cross_entropy`` (banded, never materialising the full-size logits), ``dice``, ``focal`` and
``lovasz`` (on the logits resized to the label size). ``train.ohem`` selects hard pixels once per
step as mmseg's ``OHEMPixelSampler`` does; its 0/1 weights scale the cross-entropy (and focal) terms,
while Dice and Lovász ignore them, as in mmseg 0.24.1 (whose Dice and Lovász drop the weight);
Dice keeps ignored pixels in its denominator as mmseg 0.24.1 does unless ``exclude_ignored``.
With the default ``[{type: cross_entropy}]`` and no OHEM the loss is exactly
:func:`ssformer.engine.loss.segmentation_loss`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import replace

import torch
import torch.nn.functional as F

from ssformer.engine.loss import per_pixel_cross_entropy, segmentation_loss
from ssformer.engine.loss_config import CrossEntropyTerm, DiceTerm, FocalTerm, LossTerm, LovaszTerm, OhemSettings
from ssformer.engine.loss_terms import (
    dice_loss,
    focal_loss,
    lovasz_softmax_loss,
    ohem_pixel_weight,
)
from ssformer.errors import UserError

_EPS = torch.finfo(torch.float32).eps


class SegmentationCriterion:
    """``criterion(logits (B, K, h, w), labels (B, H, W)) -> scalar loss``.

    ``terms`` are typed ``train.loss`` entries whose ``class_weight`` is None or a list of K numbers
    (names like ``median_frequency`` resolved by :func:`build_criterion`).
    """

    def __init__(self, terms: Sequence[LossTerm], ignore_index: int = 255, ohem: OhemSettings | None = None) -> None:
        self.terms = list(terms)
        self.ignore_index, self.ohem = ignore_index, ohem
        self.class_weights = [None if t.class_weight is None else torch.tensor(t.class_weight, dtype=torch.float32)
                              for t in self.terms]
        first = self.terms[0]
        self.plain = (not ohem and len(self.terms) == 1 and isinstance(first, CrossEntropyTerm)
                      and first.weight == 1 and first.class_weight is None)

    def __call__(self, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        if self.plain:
            return segmentation_loss(logits, labels, self.ignore_index, bool(self.terms[0].avg_non_ignore))
        valid = labels != self.ignore_index
        target = labels.masked_fill(~valid, 0).long()
        need_ce = self.ohem or any(isinstance(t, CrossEntropyTerm) for t in self.terms)
        ce = per_pixel_cross_entropy(logits, labels, self.ignore_index) if need_ce else None
        full = None
        if any(not isinstance(t, CrossEntropyTerm) for t in self.terms):
            full = F.interpolate(logits.float(), size=labels.shape[1:], mode="bilinear", align_corners=False)

        def weighted_ce(weight: torch.Tensor | None) -> torch.Tensor:
            return ce if weight is None else ce * weight.to(ce.device)[target]

        pixel_weight = self._ohem_weight(labels, ce, weighted_ce)
        total = logits.new_zeros((), dtype=torch.float32)
        for term, weight in zip(self.terms, self.class_weights):
            weight = weight.to(logits.device) if weight is not None else None
            if isinstance(term, CrossEntropyTerm):
                per_pixel = weighted_ce(weight)
                if pixel_weight is not None:
                    per_pixel = per_pixel * pixel_weight
                value = (per_pixel.sum() / (valid.sum() + _EPS) if term.avg_non_ignore else per_pixel.mean())
            elif isinstance(term, DiceTerm):
                value = dice_loss(full, labels, self.ignore_index, term.smooth, term.exponent, weight,
                                  term.exclude_ignored)
            elif isinstance(term, FocalTerm):
                value = focal_loss(full, labels, self.ignore_index, term.gamma, term.alpha, weight, pixel_weight)
            else:
                value = lovasz_softmax_loss(full, labels, self.ignore_index, term.classes, term.per_image, weight)
            total = total + term.weight * value
        return total

    def _ohem_weight(self, labels: torch.Tensor, ce: torch.Tensor | None,
                     weighted_ce: Callable[[torch.Tensor | None], torch.Tensor]) -> torch.Tensor | None:
        """OHEM's 0/1 pixel weights (None without OHEM): by true-class probability, or by the summed
        cross-entropy terms when ``thresh`` is null."""
        if not self.ohem:
            return None
        if self.ohem.thresh is not None:
            return ohem_pixel_weight(labels, self.ignore_index, self.ohem.min_kept, self.ohem.thresh,
                                     true_class_probability=torch.exp(-ce.detach()))
        ranking = sum(t.weight * weighted_ce(w).detach() for t, w in zip(self.terms, self.class_weights)
                      if isinstance(t, CrossEntropyTerm))
        return ohem_pixel_weight(labels, self.ignore_index, self.ohem.min_kept, pixel_loss=ranking)


def build_criterion(loss: Sequence[LossTerm], ohem: OhemSettings | None, num_classes: int, ignore_index: int,
                    class_weight_source: Callable[[str], Sequence[float]] | None = None,
                    echo: Callable[[str], None] | None = None) -> SegmentationCriterion:
    """The criterion of a config's ``train.loss`` terms and ``train.ohem`` for a dataset of
    ``num_classes`` classes.

    ``class_weight_source(method)`` computes named class weights (e.g. median frequency balancing of
    the training labels, ``ssformer.data.frequencies.class_weights``); it is called once per method.
    """
    computed: dict[str, list[float]] = {}
    terms = []
    for i, term in enumerate(loss):
        where, weight = f"train.loss[{i}].class_weight", term.class_weight
        if isinstance(weight, str):
            if weight not in computed:
                if class_weight_source is None:
                    raise UserError(f"{where}: {weight!r} needs the training set to count class frequencies")
                computed[weight] = [float(w) for w in class_weight_source(weight)]
                if echo is not None:
                    echo(f"{where} {weight}: " + ", ".join(f"{w:.4f}" for w in computed[weight]))
            term = replace(term, class_weight=computed[weight])
        elif weight is not None and len(weight) != num_classes:
            raise UserError(f"{where} has {len(weight)} values but the dataset has {num_classes} classes")
        if isinstance(term, FocalTerm) and isinstance(term.alpha, list) and len(term.alpha) != num_classes:
            raise UserError(f"train.loss[{i}].alpha has {len(term.alpha)} values but the dataset has "
                            f"{num_classes} classes")
        if isinstance(term, LovaszTerm) and isinstance(term.classes, list) and any(c >= num_classes for c in term.classes):
            raise UserError(f"train.loss[{i}].classes {term.classes} names classes outside [0, {num_classes - 1}]")
        terms.append(term)
    return SegmentationCriterion(terms, ignore_index, ohem)
