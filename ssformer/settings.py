"""Typed settings: dataclass fields that carry their default, what they allow and a doc line.

A settings dataclass calls :func:`check_fields` in its ``__post_init__``, so one built in Python is
refused exactly as one read from YAML or ``--set``: one line naming the setting (``train.lr must
be a number > 0, got -1``). The model's config, the training recipe's sections and the loss terms
are all written this way; ``ssformer config keys`` prints the fields as the docs' key table.
"""

from __future__ import annotations

import copy
import functools
import math
import re
from collections.abc import Callable
from dataclasses import field, fields
from typing import Any

from ssformer.errors import UserError

Check = Callable[[Any], bool]
Allowed = tuple[Check, str]  # a check and the words the error and the docs use


def is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def is_number(value: Any) -> bool:
    """A finite int or float (``.inf`` and ``.nan`` are YAML floats, never a usable setting)."""
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def int_at_least(low: int) -> Allowed:
    return (lambda v: is_int(v) and v >= low), f"an integer >= {low}"


def number_in(low: float, high: float | None = None, low_open: bool = False, high_open: bool = True) -> Allowed:
    def ok(v: Any) -> bool:
        if not is_number(v) or v < low or (low_open and v == low):
            return False
        return high is None or v < high or (not high_open and v == high)
    bounds = f"{'(' if low_open else '['}{low}, {high}{')' if high_open else ']'}" if high is not None else None
    return ok, f"a number in {bounds}" if bounds else f"a number {'>' if low_open else '>='} {low}"


def list_of(item: Allowed, length: int | None = None) -> Allowed:
    check, what = item
    ok = (lambda v: isinstance(v, (list, tuple)) and len(v) > 0 and (length is None or len(v) == length)
          and all(check(x) for x in v))
    return ok, f"a list of {length or 'one or more'} values, each {what}"


def optional(item: Allowed) -> Allowed:
    return (lambda v: v is None or item[0](v)), f"null or {item[1]}"


def one_of(choices: tuple[str, ...]) -> Allowed:
    return (lambda v: v in choices), "one of " + ", ".join(choices)


BOOL: Allowed = (lambda v: isinstance(v, bool)), "true or false"
STRING: Allowed = (lambda v: isinstance(v, str) and v != ""), "a non-empty string"


def setting(default: Any, allowed: Allowed | None, doc: str, pair: bool = False) -> Any:
    """A settings field: its default (copied for every instance), what it allows (None: checked by
    its class's own ``__post_init__``) and one line of docs; ``pair``: an int ``n`` means ``[n, n]``."""
    return field(default_factory=functools.partial(copy.deepcopy, default),
                 metadata={"allowed": allowed, "doc": doc, "pair": pair})


def check_fields(settings: Any, where: str = "") -> None:
    """Refuse the first field whose value its ``allowed`` refuses, naming ``where`` + the field; a
    single int for a (height, width) pair becomes ``[n, n]``."""
    for f in fields(settings):
        allowed = f.metadata.get("allowed")
        value = getattr(settings, f.name)
        if allowed is not None and not allowed[0](value):
            raise UserError(f"{where}{f.name} must be {allowed[1]}, got {value!r}")
        if f.metadata.get("pair") and is_int(value):
            setattr(settings, f.name, [value, value])


_EXPONENT_FLOAT = re.compile(r"^[+-]?(\d+\.?\d*|\.\d+)[eE][+-]?\d+$")


def coerce(value: Any) -> Any:
    """YAML 1.1 reads ``1e-3`` (no dot) as a string; treat such strings as the numbers they spell."""
    if isinstance(value, str) and _EXPONENT_FLOAT.match(value):
        return float(value)
    if isinstance(value, list):
        return [coerce(v) for v in value]
    return value
