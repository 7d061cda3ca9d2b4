"""Checks of the values a unit of work is given, before its transaction starts:
an Invalid names the field."""

from __future__ import annotations

import math
import re
from typing import Mapping

from novalite import errors
from novalite.objects.records import Inventory

_NAME_MAX = 255
# Resource class and trait names, as Placement spells them.
_UPPER_SNAKE = re.compile(r"^[A-Z0-9_]+$")


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _name(field: str, value: object, *, max_len: int = _NAME_MAX,
          allow_empty: bool = False) -> str:
    if not isinstance(value, str):
        raise errors.Invalid(field, "must be a string")
    if not allow_empty and not value.strip():
        raise errors.Invalid(field, "must not be empty")
    if len(value) > max_len:
        raise errors.Invalid(field, f"at most {max_len} characters")
    if "\x00" in value:
        raise errors.Invalid(field, "must not contain NUL")
    return value


def _positive(field: str, value: object) -> None:
    if not _is_int(value) or value < 1:  # type: ignore[operator]
        raise errors.Invalid(field, "must be an integer >= 1")


def _not_negative(field: str, value: object) -> None:
    if not _is_int(value) or value < 0:  # type: ignore[operator]
        raise errors.Invalid(field, "must be an integer >= 0")


def _string_map(field: str, value: Mapping[str, str]) -> dict[str, str]:
    out = {}
    for k, v in value.items():
        _name(field, k)
        _name(f"{field}.{k}", v, allow_empty=True)
        out[k] = v
    return out


def _trait_name(name: str) -> str:
    _name("traits", name)
    if not _UPPER_SNAKE.match(name):
        raise errors.Invalid("traits", f"{name!r}: upper-case letters, digits and _ only")
    return name


def _valid_inventory(rc: str, inv: Inventory) -> Inventory:
    _name("inventories", rc)
    if not _UPPER_SNAKE.match(rc):
        raise errors.Invalid("inventories", f"{rc!r}: upper-case letters, digits and _ only")
    field = f"inventories.{rc}"
    _positive(f"{field}.total", inv.total)
    _not_negative(f"{field}.reserved", inv.reserved)
    if inv.reserved > inv.total:
        raise errors.Invalid(f"{field}.reserved", "must not exceed total")
    _positive(f"{field}.min_unit", inv.min_unit)
    _positive(f"{field}.max_unit", inv.max_unit)
    if inv.max_unit < inv.min_unit:
        raise errors.Invalid(f"{field}.max_unit", "must be >= min_unit")
    _positive(f"{field}.step_size", inv.step_size)
    ratio = inv.allocation_ratio
    if not isinstance(ratio, (int, float)) or not math.isfinite(ratio) or ratio <= 0:
        raise errors.Invalid(f"{field}.allocation_ratio", "must be a finite number > 0")
    return inv
