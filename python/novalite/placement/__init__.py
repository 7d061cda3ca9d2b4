"""novalite.placement: Nova's filters, weighers, selection and claims over a columnar
host table, computed in Rust.

    from novalite.placement import HostTable, Scheduler, RequestSpec, Flavor

    table = HostTable.from_columns(names, vcpu_total=vcpus, memory_mb_total=ram, disk_gb_total=disk)
    sched = Scheduler(table)                        # SchedulerConfig() = Nova's defaults
    spec = RequestSpec(flavor=Flavor("m1.small", 1, 2048, 20), instance_uuids=["i-1"])
    sched.filter(spec).mask                         # numpy bool per host
    sched.weigh(spec)                               # numpy float64 per host (NaN: filtered)
    sched.select_destinations(spec, seed=7)         # claims, like Nova's select_destinations

This module is the only importer of the compiled ``novalite._placement``; the semantics
are in docs/placement-semantics.md, and ``novalite.placement.reference`` implements the
same contract in pure Python.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from typing import Any, Iterable, Mapping, Sequence

import numpy as np
import numpy.typing as npt

from types import MappingProxyType, ModuleType

from .config import ALL_WEIGHERS, AVAILABLE_FILTERS, DEFAULT_FILTERS, ConfigError, SchedulerConfig
from .errors import (
    CapacityExceeded,
    ClaimConflict,
    GenerationConflict,
    InvalidInput,
    NoValidHost,
    PlacementError,
    UnknownAggregate,
    UnknownConsumer,
    UnknownHost,
)
from .model import (
    MAX_UNIT_DEFAULT,
    RESOURCE_CLASSES,
    Aggregate,
    FilterResult,
    Flavor,
    Host,
    Image,
    InstanceGroup,
    Inventory,
    RequestSpec,
    Selection,
)

__all__ = [
    "ALL_WEIGHERS", "AVAILABLE_FILTERS", "DEFAULT_FILTERS", "MAX_UNIT_DEFAULT", "RESOURCE_CLASSES",
    "Aggregate", "CapacityExceeded", "ClaimConflict", "ConfigError", "FilterResult", "Flavor",
    "GenerationConflict", "Host", "HostTable", "Image", "InstanceGroup", "InvalidInput", "Inventory",
    "NoValidHost", "Placement", "PlacementError", "PreparedRequest", "RequestSpec", "Scheduler", "SchedulerConfig",
    "Selection", "UnknownAggregate", "UnknownConsumer", "UnknownHost",
]


def _core() -> ModuleType:
    """The compiled core, imported on first use: the pure-Python parts of this package
    (model, config, errors, reference) work without it."""
    from novalite import _placement

    return _placement


def __getattr__(name: str) -> Any:
    if name == "PreparedRequest":
        return _core().PreparedRequest
    if name == "COLUMNS":
        return tuple(_core().COLUMNS)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")

_FLOAT_COLUMNS = {"vcpu_allocation_ratio", "memory_mb_allocation_ratio", "disk_gb_allocation_ratio"}
_BOOL_COLUMNS = {"enabled", "up"}


def _as_column(name: str, values: Any, n: int) -> npt.NDArray[Any]:
    """A column as the dtype it must have. A numpy array must already have it; a list
    or scalar is converted only when that loses nothing: a fractional size, a string
    or a bool in a numeric column is an error naming the column (integers are fine
    for a float column)."""
    if name in _BOOL_COLUMNS:
        dtype: type = np.bool_
        kinds = "b"
    elif name in _FLOAT_COLUMNS:
        dtype = np.float64
        kinds = "fiu"
    else:
        dtype = np.int64
        kinds = "iu"
    if isinstance(values, np.ndarray) and values.dtype != dtype:
        # an array the caller built: its dtype is a statement, so it must be right
        raise InvalidInput(f"column {name!r} must be {np.dtype(dtype)}, got {values.dtype}")
    try:
        array = np.asarray(values)
    except (TypeError, ValueError) as e:
        raise InvalidInput(f"column {name!r}: {e}") from None
    if array.ndim == 0:
        array = np.full(n, array)
    if array.dtype.kind not in kinds:
        raise InvalidInput(f"column {name!r} must be {np.dtype(dtype)}, got {array.dtype}")
    if array.ndim != 1:
        raise InvalidInput(f"column {name!r} must be 1-dimensional, got shape {array.shape}")
    if array.dtype != dtype:
        if array.dtype.kind == "u" and array.size and int(array.max()) > np.iinfo(np.int64).max:
            raise InvalidInput(f"column {name!r}: values too large for int64")
        array = array.astype(dtype)
    return np.ascontiguousarray(array)


class HostTable:
    """Hosts (compute nodes) as columns, with Placement's allocation ledger.

    Safe to share between threads: reads run concurrently, writes are serialised,
    and the GIL is released while the core works.
    """

    __slots__ = ("_t", "default_availability_zone")

    def __init__(self, hosts: Iterable[Host] = (), aggregates: Iterable[Aggregate] = (),
                 default_availability_zone: str = "nova") -> None:
        self._t = _core().HostTable()
        self.default_availability_zone = default_availability_zone
        for agg in aggregates:
            self.set_aggregate(agg)
        for host in hosts:
            self.add_host(host)

    @classmethod
    def from_columns(cls, names: Sequence[str], *, uuids: Sequence[str] | None = None,
                     hypervisor_type: str | Sequence[str] | None = None,
                     cell: str | Sequence[str] | None = None,
                     default_availability_zone: str = "nova",
                     **columns: Any) -> "HostTable":
        """Build a table of ``len(names)`` hosts from numpy columns.

        Columns (one entry per host; a scalar is broadcast): ``{vcpu,memory_mb,disk_gb}_
        {total,reserved,min_unit,max_unit,step_size}`` (int64),
        ``{vcpu,memory_mb,disk_gb}_allocation_ratio`` (float64), ``vcpus_used``,
        ``free_ram_mb``, ``free_disk_mb``, ``num_instances``, ``num_io_ops``,
        ``failed_builds``, ``hypervisor_version``, ``free_pci_devs`` (int64), ``enabled``,
        ``up`` (bool). Missing columns take the ``Host`` defaults.
        """
        table = cls(default_availability_zone=default_availability_zone)
        table.add_hosts(names, uuids=uuids, hypervisor_type=hypervisor_type, cell=cell, **columns)
        return table

    def add_hosts(self, names: Sequence[str], *, uuids: Sequence[str] | None = None,
                  hypervisor_type: str | Sequence[str] | None = None,
                  cell: str | Sequence[str] | None = None, **columns: Any) -> None:
        """Append hosts from columns (see ``from_columns``); all or nothing."""
        names = list(names)
        n = len(names)
        uuid_list = list(uuids) if uuids is not None else [f"uuid-{name}" for name in names]
        cols = {k: _as_column(k, v, n) for k, v in columns.items()}
        strings: dict[str, list[str]] = {}
        for key, value in (("hypervisor_type", hypervisor_type), ("cell", cell)):
            if value is None:
                continue
            if isinstance(value, str):
                strings[key] = [value] * n
            elif isinstance(value, (list, tuple, np.ndarray)) and all(isinstance(v, str) for v in value):
                strings[key] = [str(v) for v in value]
            else:
                raise InvalidInput(f"{key} must be a string or a list of strings, got {type(value).__name__}")
        self._t.add_hosts(names, uuid_list, cols, strings)

    def __len__(self) -> int:
        return len(self._t)

    def add_host(self, host: Host) -> int:
        return int(self._t.add_host(host))

    def remove_host(self, name: str) -> None:
        self._t.remove_host(name)

    def update_host(self, name: str, **fields: Any) -> None:
        self._t.update_host(name, **fields)

    def set_aggregate(self, aggregate: Aggregate) -> None:
        self._t.set_aggregate(aggregate)

    def remove_aggregate(self, uuid: str) -> None:
        self._t.remove_aggregate(uuid)

    def add_host_to_aggregate(self, uuid: str, name: str) -> None:
        self._t.add_host_to_aggregate(uuid, name)

    def remove_host_from_aggregate(self, uuid: str, name: str) -> None:
        self._t.remove_host_from_aggregate(uuid, name)

    def add_instance(self, name: str, uuid: str, image_properties: Mapping[str, str] | None = None) -> None:
        self._t.add_instance(name, uuid, image_properties)

    def remove_instance(self, uuid: str) -> None:
        self._t.remove_instance(uuid)

    def set_inventory(self, name: str, rc: str, inventory: Inventory, generation: int | None = None) -> int:
        return int(self._t.set_inventory(name, rc, inventory, generation))

    def claim(self, consumer: str, allocations: Mapping[str, Mapping[str, int]],
              generations: Mapping[str, int] | None = None) -> dict[str, int]:
        return dict(self._t.claim(consumer, allocations, generations))

    def replace(self, consumer: str, allocations: Mapping[str, Mapping[str, int]],
                generations: Mapping[str, int] | None = None) -> dict[str, int]:
        return dict(self._t.replace(consumer, allocations, generations))

    def release(self, consumer: str) -> None:
        self._t.release(consumer)

    def usage(self, name: str) -> dict[str, int]:
        return dict(self._t.usage(name))

    def capacity(self, name: str) -> dict[str, int]:
        return dict(self._t.capacity(name))

    def generation(self, name: str) -> int:
        return int(self._t.generation(name))

    def inventory(self, name: str, rc: str) -> Inventory:
        total, reserved, ratio, min_unit, max_unit, step = self._t.inventory_tuple(name, rc)
        return Inventory(total, reserved, ratio, min_unit, max_unit, step)

    def allocations(self, consumer: str) -> dict[str, dict[str, int]]:
        return {h: dict(a) for h, a in self._t.allocations(consumer).items()}

    def consumers(self) -> list[str]:
        return list(self._t.consumers())

    def host_names(self) -> list[str]:
        return list(self._t.host_names())

    def host_aggregates(self, name: str) -> list[str]:
        return list(self._t.host_aggregates(name))

    def instances_on(self, name: str) -> list[str]:
        return list(self._t.instances_on(name))

    def availability_zone(self, name: str) -> str:
        return str(self._t.availability_zone(name, self.default_availability_zone))

    def column(self, name: str) -> npt.NDArray[Any]:
        """A read-only numpy view of a column, without a copy. It is a snapshot:
        later changes to the table do not show through it."""
        return self._t.column(name)  # type: ignore[no-any-return]


def _seed(seed: int | None) -> int:
    """``random.Random(seed)`` semantics: |seed|; None draws a fresh one."""
    if seed is None:
        return secrets.randbits(64)
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise InvalidInput(f"seed must be an integer or None, got {type(seed).__name__}")
    seed = abs(seed)
    if seed >= 2**128:
        raise InvalidInput("seed must be below 2**128")
    return seed


class Scheduler:
    """Nova's filter scheduler over a ``HostTable``, configured like Nova."""

    __slots__ = ("_s", "table", "config")

    def __init__(self, table: HostTable, config: SchedulerConfig | None = None) -> None:
        self.table = table
        self.config = config if config is not None else SchedulerConfig()
        self._s = _core().Scheduler(table._t, self.config)

    def prepare(self, spec: RequestSpec) -> Any:
        """Validate a request once; the result can be passed wherever a spec goes."""
        return self._s.prepare(spec)

    def filter(self, spec: RequestSpec | Any, index: int = 0) -> FilterResult:
        mask, rejections = self._s.filter(spec, index)
        return FilterResult(mask=mask, rejections=[(str(n), int(c)) for n, c in rejections])

    def weigh(self, spec: RequestSpec | Any, index: int = 0) -> npt.NDArray[np.float64]:
        return self._s.weigh(spec, index)  # type: ignore[no-any-return]

    def select(self, spec: RequestSpec | Any, *, claim: bool = True, seed: int | None = 0,
               return_alternates: bool = True) -> "Placement":
        """Nova's select_destinations, with what the checks rejected on the way.

        With ``claim=True`` the allocations (consumer = instance uuid) and Nova's
        host-state consumption are written to the table; with ``claim=False`` nothing
        changes (a what-if). Raises ``NoValidHost`` with per-check rejection counts.
        """
        amounts, rejections, out = self._s.select(spec, claim, _seed(seed), return_alternates)
        # every selection of a request carries the same (read-only) allocation
        allocation = MappingProxyType(dict(amounts))
        make = Selection._make
        selections: list[list[Selection]] = [
            [make((host, host_uuid, row, allocation, az, cell, weight))
             for row, host, host_uuid, weight, az, cell in picks]
            for _uuid, picks in out
        ]
        return Placement(selections=selections, rejections=[(str(n), int(c)) for n, c in rejections])

    def select_destinations(self, spec: RequestSpec | Any, *, claim: bool = True, seed: int | None = 0,
                            return_alternates: bool = True) -> list[list[Selection]]:
        """One list per instance: the chosen host, then its alternates (see ``select``)."""
        return self.select(spec, claim=claim, seed=seed, return_alternates=return_alternates).selections


@dataclass(frozen=True)
class Placement:
    """What ``Scheduler.select`` returns: per instance the chosen host and its
    alternates, and how many hosts each check removed in the first pass."""

    selections: list[list[Selection]]
    rejections: list[tuple[str, int]]
