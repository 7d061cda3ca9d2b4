"""The placement exception hierarchy.

Defined in Python so that the Rust core (which raises these through its binding
layer) and the pure-Python reference raise the very same classes.
"""

from __future__ import annotations

from typing import Sequence


class PlacementError(Exception):
    """Base of every error the placement core raises."""


class InvalidInput(PlacementError, ValueError):
    """Bad input (wrong dtype or length, negative size, NaN ratio, unknown name...).
    Nothing was changed."""


class UnknownHost(InvalidInput):
    """No host of that name (or uuid) in the table."""


class UnknownConsumer(InvalidInput):
    """No allocations are held by that consumer."""


class UnknownAggregate(InvalidInput):
    """No aggregate of that uuid."""


class NoValidHost(PlacementError):
    """No host could take (all of) the request.

    ``rejections`` lists, in the order the checks ran, how many hosts each check
    removed (placement stage, then the failing pass); ``instance_index`` is the index
    of the instance that could not be placed.
    """

    def __init__(self, message: str, rejections: Sequence[tuple[str, int]] = (),
                 instance_index: int = 0) -> None:
        super().__init__(message)
        self.rejections: list[tuple[str, int]] = [(str(n), int(c)) for n, c in rejections]
        self.instance_index = int(instance_index)

    def __reduce__(self) -> tuple[object, ...]:
        return (type(self), (self.args[0], self.rejections, self.instance_index))


class ClaimConflict(PlacementError):
    """A claim could not be written: it would exceed capacity or break a unit
    constraint, or the consumer already holds allocations."""


class CapacityExceeded(ClaimConflict):
    """used + amount would exceed int((total - reserved) * allocation_ratio), or the
    amount breaks min_unit / max_unit / step_size."""


class GenerationConflict(ClaimConflict):
    """The host's generation changed since the caller read it."""


__all__ = [
    "PlacementError",
    "InvalidInput",
    "UnknownHost",
    "UnknownConsumer",
    "UnknownAggregate",
    "NoValidHost",
    "ClaimConflict",
    "CapacityExceeded",
    "GenerationConflict",
]
