"""``train.loss`` and ``train.ohem`` as typed entries: one dataclass per loss term type, each
field with its default and check (:mod:`ssformer.settings`), and OHEM's settings.

A config read from YAML gives dicts (``{type: dice, weight: 0.5}``); :func:`loss_terms` turns them
into these entries, naming the entry in an error (``train.loss[1].gamma``). ``to_dict()`` of a
config writes them back as dicts with their ``type``, so recipes round-trip.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields, replace
from typing import Any, ClassVar

from ssformer.data.frequencies import CLASS_WEIGHT_METHODS
from ssformer.errors import UserError
from ssformer.settings import BOOL, Allowed, check_fields, coerce, int_at_least, is_int, is_number, number_in, setting

CLASS_WEIGHT: Allowed = ((lambda v: v is None or v in CLASS_WEIGHT_METHODS or isinstance(v, list) and len(v) > 0
                          and all(is_number(w) and w >= 0 for w in v)),
                         f"null, {' or '.join(CLASS_WEIGHT_METHODS)} or a list of numbers >= 0 (one per class)")
_ALPHA: Allowed = ((lambda v: all(is_number(a) and 0 <= a <= 1 for a in (v if isinstance(v, list) and v else [v]))),
                   "a number in [0, 1] or one such number per class")
_CLASSES: Allowed = ((lambda v: v in ("present", "all") or isinstance(v, list) and len(v) > 0
                      and all(is_int(c) and c >= 0 for c in v)), "present, all or a list of class ids")
_BOOL_OR_DEFAULT: Allowed = (lambda v: v is None or isinstance(v, bool)), "true or false"


@dataclass
class LossTerm:
    """One weighted term of ``train.loss``; ``type`` names its kind in a recipe."""

    type: str = field(default="", init=False)
    weight: float = setting(1.0, number_in(0), "the term's factor in the sum")
    class_weight: str | list[float] | None = setting(None, CLASS_WEIGHT, "a factor per class, or how to compute them "
                                                     "from the training labels")

    def __post_init__(self) -> None:
        check_fields(self)


@dataclass
class CrossEntropyTerm(LossTerm):
    """mmseg's ``CrossEntropyLoss`` on logits resized to the labels."""

    type: str = field(default="cross_entropy", init=False)
    avg_non_ignore: bool | None = setting(None, _BOOL_OR_DEFAULT, "mean over labelled pixels only; null: "
                                          "train.avg_non_ignore")


@dataclass
class DiceTerm(LossTerm):
    """mmseg 0.24.1's ``DiceLoss``."""

    type: str = field(default="dice", init=False)
    smooth: float = setting(1.0, number_in(0), "added to numerator and denominator")
    exponent: float = setting(2.0, number_in(0, low_open=True), "power of the denominator's terms")
    exclude_ignored: bool = setting(False, BOOL, "leave ignored pixels out of the denominator (mmseg keeps them)")


@dataclass
class FocalTerm(LossTerm):
    """mmseg's sigmoid ``FocalLoss``."""

    type: str = field(default="focal", init=False)
    gamma: float = setting(2.0, number_in(0), "focusing power")
    alpha: float | list[float] = setting(0.5, _ALPHA, "balance of positives, one number or one per class")


@dataclass
class LovaszTerm(LossTerm):
    """mmseg's ``LovaszLoss(loss_type='multi_class')``."""

    type: str = field(default="lovasz", init=False)
    classes: str | list[int] = setting("present", _CLASSES, "the classes averaged over")
    per_image: bool = setting(False, BOOL, "per image, then averaged (else over the whole batch)")


TERM_TYPES: dict[str, type[LossTerm]] = {"cross_entropy": CrossEntropyTerm, "dice": DiceTerm, "focal": FocalTerm,
                                         "lovasz": LovaszTerm}


@dataclass
class OhemSettings:
    """``train.ohem``: online hard example mining, as mmseg's ``OHEMPixelSampler``."""

    where: ClassVar[str] = "train.ohem."

    thresh: float | None = setting(None, ((lambda v: v is None or is_number(v) and 0 < v <= 1),
                                          "null or a probability in (0, 1]"),
                                   "keep pixels whose true-class probability is below this; null: rank by loss")
    min_kept: int = setting(100000, int_at_least(2), "pixels kept per image at least")

    def __post_init__(self) -> None:
        check_fields(self, self.where)


def loss_term(entry: LossTerm | dict[str, Any], where: str) -> LossTerm:
    """A typed term from a recipe's dict (or the term itself), errors naming ``where`` (``train.loss[0]``)."""
    if isinstance(entry, LossTerm):
        return entry
    if not isinstance(entry, dict) or entry.get("type") not in TERM_TYPES:
        got = entry.get("type") if isinstance(entry, dict) else entry
        raise UserError(f"{where}.type must be one of {', '.join(TERM_TYPES)}, got {got!r}")
    cls = TERM_TYPES[entry["type"]]
    known = [f.name for f in fields(cls)]
    unknown = sorted(set(entry) - set(known))
    if unknown:
        raise UserError(f"unknown key {where}.{unknown[0]} for type {entry['type']}; known: {', '.join(known)}")
    try:
        return cls(**{k: coerce(v) for k, v in entry.items() if k != "type"})
    except UserError as e:
        raise UserError(f"{where}.{e}") from None


def loss_terms(entries: Any) -> list[LossTerm]:
    """``train.loss`` as typed terms."""
    if not isinstance(entries, (list, tuple)) or not entries:
        raise UserError(f"train.loss must be a non-empty list of terms like [{{type: cross_entropy}}], "
                        f"got {entries!r}")
    return [loss_term(entry, f"train.loss[{i}]") for i, entry in enumerate(entries)]


def with_defaults(terms: list[LossTerm], avg_non_ignore: bool) -> list[LossTerm]:
    """The terms as the criterion runs them: a cross-entropy term's ``avg_non_ignore`` left null
    takes ``train.avg_non_ignore``."""
    return [replace(t, avg_non_ignore=avg_non_ignore) if isinstance(t, CrossEntropyTerm) and t.avg_non_ignore is None
            else t for t in terms]


def ohem_settings(value: OhemSettings | dict[str, Any] | None) -> OhemSettings | None:
    """``train.ohem`` as :class:`OhemSettings` (None: no mining)."""
    if value is None or isinstance(value, OhemSettings):
        return value
    if not isinstance(value, dict):
        raise UserError(f"train.ohem must be null or a mapping {{thresh: 0.7, min_kept: 100000}}, got {value!r}")
    unknown = sorted(set(value) - {f.name for f in fields(OhemSettings)})
    if unknown:
        raise UserError(f"unknown key train.ohem.{unknown[0]}; known: thresh, min_kept")
    return OhemSettings(**{k: coerce(v) for k, v in value.items()})
