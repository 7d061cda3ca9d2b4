"""Types of the compiled placement core (crates/placement/src/py/mod.rs).

Use it through ``novalite.placement``; this module is its only importer. Every
method validates its input (``novalite.placement.errors.InvalidInput`` and
subclasses, nothing changed) and releases the GIL while the core works.

The core reads Python objects by attribute (a ``Host``, ``Inventory``,
``Aggregate``, ``RequestSpec``, ``SchedulerConfig`` from ``novalite.placement``);
the stub names those types.
"""

from typing import Any, Final, Mapping, Sequence, final

import numpy as np
import numpy.typing as npt

from novalite.placement.config import SchedulerConfig
from novalite.placement.model import Aggregate, Host, Inventory, RequestSpec

__all__ = ["HostTable", "Scheduler", "PreparedRequest", "RESOURCE_CLASSES", "COLUMNS"]

RESOURCE_CLASSES: Final[list[str]]
"""``["VCPU", "MEMORY_MB", "DISK_GB"]``, in column order."""

COLUMNS: Final[list[str]]
"""The names ``HostTable.column`` accepts."""

# (row, host name, host uuid, weight, availability zone, cell)
_Pick = tuple[int, str, str, float, str, str]

@final
class HostTable:
    """Hosts as columns, with Placement's allocation ledger. Reads run concurrently,
    writes are serialised."""

    def __new__(cls) -> HostTable: ...
    def __len__(self) -> int: ...
    def add_host(self, host: Host) -> int: ...
    def add_hosts(
        self,
        names: Sequence[str],
        uuids: Sequence[str],
        columns: dict[str, npt.NDArray[Any]],
        strings: dict[str, list[str]],
    ) -> None:
        """Appends ``len(names)`` hosts from 1-d contiguous columns (int64, float64
        for ``*_allocation_ratio``, bool for ``enabled``/``up``) and the string
        columns ``hypervisor_type`` and ``cell``. All or nothing."""

    def remove_host(self, name: str) -> None: ...
    def update_host(self, name: str, **fields: Any) -> None: ...
    def set_aggregate(self, agg: Aggregate) -> None: ...
    def remove_aggregate(self, uuid: str) -> None: ...
    def add_host_to_aggregate(self, uuid: str, name: str) -> None: ...
    def remove_host_from_aggregate(self, uuid: str, name: str) -> None: ...
    def add_instance(self, name: str, uuid: str, image_properties: Mapping[str, str] | None = None) -> None: ...
    def remove_instance(self, uuid: str) -> None: ...
    def set_inventory(self, name: str, rc: str, inventory: Inventory, generation: int | None = None) -> int: ...
    def claim(
        self,
        consumer: str,
        allocations: Mapping[str, Mapping[str, int]],
        generations: Mapping[str, int] | None = None,
    ) -> dict[str, int]: ...
    def replace(
        self,
        consumer: str,
        allocations: Mapping[str, Mapping[str, int]],
        generations: Mapping[str, int] | None = None,
    ) -> dict[str, int]: ...
    def release(self, consumer: str) -> None: ...
    def usage(self, name: str) -> dict[str, int]: ...
    def capacity(self, name: str) -> dict[str, int]: ...
    def generation(self, name: str) -> int: ...
    def inventory_tuple(self, name: str, rc: str) -> tuple[int, int, float, int, int, int]:
        """(total, reserved, allocation_ratio, min_unit, max_unit, step_size)"""

    def allocations(self, consumer: str) -> dict[str, dict[str, int]]: ...
    def consumers(self) -> list[str]: ...
    def host_names(self) -> list[str]: ...
    def host_aggregates(self, name: str) -> list[str]: ...
    def instances_on(self, name: str) -> list[str]: ...
    def availability_zone(self, name: str, default_availability_zone: str = "nova") -> str: ...
    def column(self, name: str) -> npt.NDArray[Any]:
        """A read-only numpy view of one column (int64, float64 or bool); a snapshot
        that later writes do not touch."""

@final
class PreparedRequest:
    """A request spec validated once, reusable across calls."""

    @property
    def amounts(self) -> dict[str, int]: ...
    @property
    def num_instances(self) -> int: ...

@final
class Scheduler:
    def __new__(cls, table: HostTable, config: SchedulerConfig) -> Scheduler: ...
    def prepare(self, spec: RequestSpec | PreparedRequest) -> PreparedRequest: ...
    def filter(
        self, spec: RequestSpec | PreparedRequest, index: int | None = None
    ) -> tuple[npt.NDArray[np.bool_], list[tuple[str, int]]]:
        """(mask over all rows, [(check, hosts removed)])"""

    def weigh(self, spec: RequestSpec | PreparedRequest, index: int | None = None) -> npt.NDArray[np.float64]: ...
    def select(
        self,
        spec: RequestSpec | PreparedRequest,
        claim: bool = True,
        seed: int = 0,
        return_alternates: bool = True,
    ) -> tuple[dict[str, int], list[tuple[str, int]], list[tuple[str, list[_Pick]]]]:
        """({rc: amount}, [(check, removed)], [(instance_uuid, [pick, chosen first])])"""
