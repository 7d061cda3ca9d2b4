"""Pure-Python reference implementation of the placement contract.

This is the oracle of the differential tests against the Rust core and the
"pure-Python baseline" of the benchmarks. It implements
``docs/placement-semantics.md`` the way Nova 34 does it: a Python loop over
HostState-like objects, per-host filter objects with ``host_passes``, weighers with
``_weigh_object`` + ``normalize``, a stable ``sorted(reverse=True)``, and
``random.Random(seed)`` used with ``shuffle``/``choice`` exactly where Nova's
``SchedulerManager._get_sorted_hosts`` calls the module-level ``random``.

It deliberately does not import Nova (nor numpy): only the standard library and
``novalite.placement.{model,config,errors}``. Each rule cites the Nova (or oslo /
packaging) file it comes from; where the contract doc picks a behaviour Nova leaves
open (or would crash on), the comment says so.
"""

from __future__ import annotations

import json
import math
import random
import re
from collections import Counter
from typing import Any, Callable, ClassVar, Iterable, Mapping, Sequence

from novalite.objects.fields import canonicalize_arch, canonicalize_hv_type, canonicalize_vm_mode
from novalite.placement import errors, model
from novalite.placement.config import SchedulerConfig

__all__ = ["HostTable", "Scheduler"]

RC_VCPU = "VCPU"
RC_MEMORY_MB = "MEMORY_MB"
RC_DISK_GB = "DISK_GB"
_RCS: tuple[str, ...] = tuple(model.RESOURCE_CLASSES)

_NO_VALID_HOST_MSG = "There are not enough hosts available."


# --------------------------------------------------------------------------------------
# input validation helpers
# --------------------------------------------------------------------------------------


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _check_int(what: str, value: object, minimum: int | None = None) -> int:
    if not _is_int(value):
        raise errors.InvalidInput(f"{what}: must be an integer, got {value!r}")
    assert isinstance(value, int)
    if minimum is not None and value < minimum:
        raise errors.InvalidInput(f"{what}: must be >= {minimum}, got {value!r}")
    return value


def _check_str(what: str, value: object, allow_empty: bool = True) -> str:
    if not isinstance(value, str):
        raise errors.InvalidInput(f"{what}: must be a string, got {value!r}")
    if not allow_empty and not value:
        raise errors.InvalidInput(f"{what}: must not be empty")
    return value


def _check_bool(what: str, value: object) -> bool:
    if not isinstance(value, bool):
        raise errors.InvalidInput(f"{what}: must be a bool, got {value!r}")
    return value


def _check_str_seq(what: str, value: object) -> tuple[str, ...]:
    # a bare string is a Sequence[str] too, and almost always a caller's mistake
    if isinstance(value, (str, bytes)) or not isinstance(value, (Sequence, set, frozenset)):
        raise errors.InvalidInput(f"{what}: must be a sequence of strings, got {value!r}")
    out = tuple(value)
    for item in out:
        _check_str(what, item)
    return out


def _check_str_map(what: str, value: object) -> dict[str, str]:
    if not isinstance(value, Mapping):
        raise errors.InvalidInput(f"{what}: must be a mapping, got {value!r}")
    out: dict[str, str] = {}
    for k, v in value.items():
        _check_str(f"{what} key", k)
        _check_str(f"{what}[{k}]", v)
        out[k] = v
    return out


def _check_rc(rc: object) -> str:
    if rc not in _RCS:
        raise errors.InvalidInput(f"unknown resource class {rc!r} (known: {', '.join(_RCS)})")
    assert isinstance(rc, str)
    return rc


def _check_inventory(rc: str, inv: object) -> model.Inventory:
    if not isinstance(inv, model.Inventory):
        raise errors.InvalidInput(f"{rc}: inventory must be a model.Inventory, got {inv!r}")
    total = _check_int(f"{rc}.total", inv.total, 0)
    reserved = _check_int(f"{rc}.reserved", inv.reserved, 0)
    if reserved > total:
        raise errors.InvalidInput(f"{rc}: reserved ({reserved}) > total ({total})")
    ratio = inv.allocation_ratio
    if not _is_number(ratio) or not math.isfinite(ratio) or ratio <= 0:
        raise errors.InvalidInput(
            f"{rc}.allocation_ratio: must be a finite number > 0, got {ratio!r}")
    min_unit = _check_int(f"{rc}.min_unit", inv.min_unit, 1)
    max_unit = _check_int(f"{rc}.max_unit", inv.max_unit, 1)
    if min_unit > max_unit:
        raise errors.InvalidInput(f"{rc}: min_unit ({min_unit}) > max_unit ({max_unit})")
    _check_int(f"{rc}.step_size", inv.step_size, 1)
    return inv


def _capacity(inv: model.Inventory) -> int:
    # Placement's _check_capacity_exceeded: int((total - reserved) * allocation_ratio)
    return int((inv.total - inv.reserved) * float(inv.allocation_ratio))


def _unit_ok(inv: model.Inventory, amount: int) -> bool:
    return inv.min_unit <= amount <= inv.max_unit and amount % inv.step_size == 0


# --------------------------------------------------------------------------------------
# the host table
# --------------------------------------------------------------------------------------

# Fields update_host may set, with their validators. The compute-node view
# (nova/scheduler/host_manager.py HostState) plus service and descriptive fields.
_UPDATABLE = (
    "vcpus_used", "free_ram_mb", "free_disk_mb", "num_instances", "num_io_ops",
    "failed_builds", "enabled", "up", "hypervisor_type", "hypervisor_version",
    "supported_instances", "cpu_info", "stats", "metrics", "traits", "cell",
    "free_pci_devs", "host_ip",
)


def _validate_view_field(name: str, value: object) -> object:
    """Validate one compute-view field; return the value to store."""
    if name in ("vcpus_used", "num_instances", "num_io_ops", "failed_builds", "free_pci_devs"):
        return _check_int(name, value, 0)
    if name in ("free_ram_mb", "free_disk_mb"):
        # None: what the resource tracker reports for an empty host (see model.Host).
        # Negative values are allowed: Nova notes free_ram_mb can be negative.
        return None if value is None else _check_int(name, value)
    if name == "hypervisor_version":
        # >= 0: oslo's convert_version_to_str never terminates on a negative int
        return _check_int(name, value, 0)
    if name in ("enabled", "up"):
        return _check_bool(name, value)
    if name in ("hypervisor_type", "cell", "host_ip"):
        return _check_str(name, value)
    if name == "supported_instances":
        if isinstance(value, (str, bytes)) or not isinstance(value, Sequence):
            raise errors.InvalidInput(f"supported_instances: must be a sequence, got {value!r}")
        triples: list[tuple[str, str, str]] = []
        for t in value:
            if isinstance(t, (str, bytes)) or not isinstance(t, Sequence) or len(t) != 3:
                raise errors.InvalidInput(
                    f"supported_instances: each entry must be (arch, hv_type, vm_mode), got {t!r}")
            a, h, m = (_check_str("supported_instances", x) for x in t)
            triples.append((a, h, m))
        return tuple(triples)
    if name == "cpu_info":
        if not isinstance(value, Mapping):
            raise errors.InvalidInput(f"cpu_info: must be a mapping, got {value!r}")
        try:
            text = json.dumps(dict(value))
            parsed = json.loads(text)
        except (TypeError, ValueError) as e:
            raise errors.InvalidInput(f"cpu_info: must be JSON-serialisable: {e}") from None
        return parsed
    if name == "stats":
        return _check_str_map("stats", value)
    if name == "metrics":
        if not isinstance(value, Mapping):
            raise errors.InvalidInput(f"metrics: must be a mapping, got {value!r}")
        metrics: dict[str, float] = {}
        for k, v in value.items():
            _check_str("metrics key", k)
            if not _is_number(v) or not math.isfinite(v):
                raise errors.InvalidInput(f"metrics[{k}]: must be a finite number, got {v!r}")
            metrics[k] = v
        return metrics
    if name == "traits":
        return _check_str_seq("traits", value)
    raise errors.InvalidInput(f"update_host: unknown field {name!r}")  # pragma: no cover


class _Row:
    """One host of the table: Placement's provider record + the compute-node view."""

    __slots__ = (
        "name", "uuid", "inventories", "used", "generation",
        "vcpus_used", "free_ram_mb", "free_disk_mb", "num_instances", "num_io_ops",
        "failed_builds", "enabled", "up", "hypervisor_type", "hypervisor_version",
        "supported_instances", "cpu_info", "cpu_info_json", "stats", "metrics",
        "aggregates", "traits", "instances", "cell", "free_pci_devs", "host_ip",
    )

    name: str
    uuid: str
    inventories: dict[str, model.Inventory]
    used: dict[str, int]
    generation: int
    vcpus_used: int
    free_ram_mb: int
    free_disk_mb: int
    num_instances: int
    num_io_ops: int
    failed_builds: int
    enabled: bool
    up: bool
    hypervisor_type: str
    hypervisor_version: int
    supported_instances: tuple[tuple[str, str, str], ...]
    cpu_info: dict[str, Any]
    cpu_info_json: str
    stats: dict[str, str]
    metrics: dict[str, float]
    aggregates: list[str]
    traits: frozenset[str]
    instances: dict[str, dict[str, str]]
    cell: str
    free_pci_devs: int
    host_ip: str

    def set_view(self, name: str, value: object) -> None:
        if name == "free_ram_mb" and value is None:
            inv = self.inventories[RC_MEMORY_MB]
            value = inv.total - inv.reserved
        elif name == "free_disk_mb" and value is None:
            inv = self.inventories[RC_DISK_GB]
            value = (inv.total - inv.reserved) * 1024
        elif name == "traits":
            assert isinstance(value, tuple)
            value = frozenset(value)
        elif name == "cpu_info":
            assert isinstance(value, dict)
            # Nova's ComputeNode.cpu_info is the JSON text the driver reported
            # (libvirt: jsonutils.dumps); ComputeCapabilitiesFilter json-loads it.
            self.cpu_info_json = json.dumps(value)
        setattr(self, name, value)


class HostTable:
    """Hosts (rows in insertion order), aggregates, instances and allocations."""

    def __init__(self, hosts: Iterable[model.Host] = (),
                 aggregates: Iterable[model.Aggregate] = (),
                 default_availability_zone: str = "nova") -> None:
        self.default_availability_zone = _check_str(
            "default_availability_zone", default_availability_zone, allow_empty=False)
        self._rows: list[_Row] = []
        self._by_name: dict[str, _Row] = {}
        self._row_index: dict[str, int] = {}
        self._uuids: set[str] = set()
        self._aggregates: dict[str, model.Aggregate] = {}
        # consumer -> host name -> rc -> amount (insertion-ordered)
        self._allocations: dict[str, dict[str, dict[str, int]]] = {}
        # instance uuid -> host name
        self._instance_host: dict[str, str] = {}
        for agg in aggregates:
            self.set_aggregate(agg)
        for host in hosts:
            self.add_host(host)

    # ---------------------------------------------------------------- hosts

    def __len__(self) -> int:
        return len(self._rows)

    def _row(self, name: object) -> _Row:
        if not isinstance(name, str) or name not in self._by_name:
            raise errors.UnknownHost(f"no host named {name!r}")
        return self._by_name[name]

    def _reindex(self) -> None:
        self._row_index = {r.name: i for i, r in enumerate(self._rows)}

    def row_of(self, name: str) -> int:
        """The current table row of a host."""
        self._row(name)
        return self._row_index[name]

    def add_host(self, host: model.Host) -> int:
        if not isinstance(host, model.Host):
            raise errors.InvalidInput(f"add_host: expected a model.Host, got {host!r}")
        name = _check_str("name", host.name, allow_empty=False)
        uuid = _check_str("uuid", host.uuid, allow_empty=False)
        if name in self._by_name:
            raise errors.InvalidInput(f"a host named {name!r} already exists")
        if uuid in self._uuids:
            raise errors.InvalidInput(f"a host with uuid {uuid!r} already exists")
        invs = {
            RC_VCPU: _check_inventory(RC_VCPU, host.vcpu),
            RC_MEMORY_MB: _check_inventory(RC_MEMORY_MB, host.memory_mb),
            RC_DISK_GB: _check_inventory(RC_DISK_GB, host.disk_gb),
        }
        view = {f: _validate_view_field(f, getattr(host, f)) for f in _UPDATABLE}
        aggs = _check_str_seq("aggregates", host.aggregates)
        if len(set(aggs)) != len(aggs):
            raise errors.InvalidInput("aggregates: an aggregate is listed twice")
        for a in aggs:
            if a not in self._aggregates:
                raise errors.UnknownAggregate(f"no aggregate with uuid {a!r}")
        if not isinstance(host.instances, Mapping):
            raise errors.InvalidInput("instances: must be a mapping of uuid -> image properties")
        instances: dict[str, dict[str, str]] = {}
        for iuuid, props in host.instances.items():
            _check_str("instance uuid", iuuid, allow_empty=False)
            if iuuid in self._instance_host:
                raise errors.InvalidInput(f"instance {iuuid!r} is already on a host")
            instances[iuuid] = _check_str_map("image_properties", props)

        row = _Row()
        row.name, row.uuid = name, uuid
        row.inventories = invs
        row.used = {rc: 0 for rc in _RCS}
        row.generation = 0
        for f, v in view.items():
            row.set_view(f, v)
        row.aggregates = list(aggs)
        row.instances = instances
        self._rows.append(row)
        self._by_name[name] = row
        self._row_index[name] = len(self._rows) - 1
        self._uuids.add(uuid)
        for iuuid in instances:
            self._instance_host[iuuid] = name
        return len(self._rows) - 1

    def remove_host(self, name: str) -> None:
        row = self._row(name)
        holders = [c for c, a in self._allocations.items() if name in a]
        if holders:
            raise errors.ClaimConflict(
                f"host {name!r} still has allocations (consumers: {', '.join(holders)})")
        self._rows.remove(row)
        del self._by_name[name]
        self._uuids.discard(row.uuid)
        for iuuid in row.instances:
            del self._instance_host[iuuid]
        self._reindex()

    def update_host(self, name: str, **fields: object) -> None:
        row = self._row(name)
        unknown = [f for f in fields if f not in _UPDATABLE]
        if unknown:
            raise errors.InvalidInput(
                f"update_host: unknown field {unknown[0]!r} (allowed: {', '.join(_UPDATABLE)})")
        nulls = [f for f, v in fields.items() if v is None]
        if nulls:
            raise errors.InvalidInput(f"update_host: {nulls[0]} must not be None")
        validated = {f: _validate_view_field(f, v) for f, v in fields.items()}
        for f, v in validated.items():
            row.set_view(f, v)
        if "traits" in validated:
            # Placement's PUT /resource_providers/{uuid}/traits bumps the generation
            row.generation += 1

    def host_names(self) -> list[str]:
        return [r.name for r in self._rows]

    def host_aggregates(self, name: str) -> list[str]:
        return list(self._row(name).aggregates)

    def instances_on(self, name: str) -> list[str]:
        return list(self._row(name).instances)

    # ---------------------------------------------------------------- aggregates

    def set_aggregate(self, agg: model.Aggregate) -> None:
        if not isinstance(agg, model.Aggregate):
            raise errors.InvalidInput(f"set_aggregate: expected a model.Aggregate, got {agg!r}")
        uuid = _check_str("aggregate uuid", agg.uuid, allow_empty=False)
        name = _check_str("aggregate name", agg.name)
        metadata = _check_str_map("aggregate metadata", agg.metadata)
        self._aggregates[uuid] = model.Aggregate(uuid=uuid, name=name, metadata=metadata)

    def _aggregate(self, uuid: object) -> model.Aggregate:
        if not isinstance(uuid, str) or uuid not in self._aggregates:
            raise errors.UnknownAggregate(f"no aggregate with uuid {uuid!r}")
        return self._aggregates[uuid]

    def remove_aggregate(self, uuid: str) -> None:
        self._aggregate(uuid)
        for row in self._rows:
            if uuid in row.aggregates:
                row.aggregates.remove(uuid)
                row.generation += 1  # membership is a Placement provider attribute
        del self._aggregates[uuid]

    def add_host_to_aggregate(self, uuid: str, name: str) -> None:
        self._aggregate(uuid)
        row = self._row(name)
        if uuid in row.aggregates:
            return  # already a member: nothing changes (as the core does)
        row.aggregates.append(uuid)
        row.generation += 1

    def remove_host_from_aggregate(self, uuid: str, name: str) -> None:
        self._aggregate(uuid)
        row = self._row(name)
        if uuid not in row.aggregates:
            return  # not a member: nothing changes
        row.aggregates.remove(uuid)
        row.generation += 1

    def aggregate(self, uuid: str) -> model.Aggregate:
        return self._aggregate(uuid)

    def availability_zone(self, name: str) -> str:
        return self._zone_of(self._row(name), self.default_availability_zone)

    def _zone_of(self, row: _Row, default: str) -> str:
        # nova/availability_zones.py: the host's aggregates' availability_zone
        # metadata; the doc picks the smallest value when several differ.
        zones = [self._aggregates[a].metadata.get("availability_zone", "") for a in row.aggregates]
        zones = [z for z in zones if z]
        return min(zones) if zones else default

    # ---------------------------------------------------------------- instances

    def add_instance(self, name: str, uuid: str,
                     image_properties: Mapping[str, str] | None = None) -> None:
        row = self._row(name)
        _check_str("instance uuid", uuid, allow_empty=False)
        if uuid in self._instance_host:
            raise errors.InvalidInput(f"instance {uuid!r} is already on host "
                                      f"{self._instance_host[uuid]!r}")
        props = _check_str_map("image_properties", image_properties or {})
        row.instances[uuid] = props
        self._instance_host[uuid] = name

    def remove_instance(self, uuid: str) -> None:
        if not isinstance(uuid, str) or uuid not in self._instance_host:
            raise errors.InvalidInput(f"no instance {uuid!r} on any host")
        host = self._instance_host.pop(uuid)
        del self._by_name[host].instances[uuid]

    # ---------------------------------------------------------------- inventories

    def set_inventory(self, name: str, rc: str, inventory: model.Inventory,
                      generation: int | None = None) -> int:
        row = self._row(name)
        _check_rc(rc)
        inv = _check_inventory(rc, inventory)
        if generation is not None:
            _check_int("generation", generation)
            if generation != row.generation:
                raise errors.GenerationConflict(
                    f"host {name!r}: generation {generation} != current {row.generation}")
        # shrinking below the current usage is allowed (Placement only refuses it
        # when allocations exceed the new capacity... and the doc keeps it allowed)
        row.inventories[rc] = inv
        row.generation += 1
        return row.generation

    def inventory(self, name: str, rc: str) -> model.Inventory:
        row = self._row(name)
        return row.inventories[_check_rc(rc)]

    def usage(self, name: str) -> dict[str, int]:
        return dict(self._row(name).used)

    def capacity(self, name: str) -> dict[str, int]:
        row = self._row(name)
        return {rc: _capacity(row.inventories[rc]) for rc in _RCS}

    def generation(self, name: str) -> int:
        return self._row(name).generation

    # ---------------------------------------------------------------- allocations

    def allocations(self, consumer: str) -> dict[str, dict[str, int]]:
        return {h: dict(a) for h, a in self._allocations.get(consumer, {}).items()}

    def consumers(self) -> list[str]:
        return list(self._allocations)

    def _validate_allocations(self, allocations: object,
                              allow_empty: bool) -> dict[str, dict[str, int]]:
        if not isinstance(allocations, Mapping):
            raise errors.InvalidInput(f"allocations: must be a mapping, got {allocations!r}")
        if not allocations and not allow_empty:
            raise errors.InvalidInput("allocations: must not be empty")
        out: dict[str, dict[str, int]] = {}
        for host, per_rc in allocations.items():
            self._row(host)
            if not isinstance(per_rc, Mapping) or not per_rc:
                raise errors.InvalidInput(
                    f"allocations[{host}]: must be a non-empty mapping of rc -> amount")
            amounts: dict[str, int] = {}
            for rc, amount in per_rc.items():
                _check_rc(rc)
                amounts[rc] = _check_int(f"allocations[{host}][{rc}]", amount, 1)
            out[host] = amounts
        return out

    def _check_generations(self, generations: object) -> None:
        if generations is None:
            return
        if not isinstance(generations, Mapping):
            raise errors.InvalidInput(f"generations: must be a mapping, got {generations!r}")
        for host, gen in generations.items():
            row = self._row(host)
            _check_int(f"generations[{host}]", gen)
        for host, gen in generations.items():
            row = self._by_name[host]
            if gen != row.generation:
                raise errors.GenerationConflict(
                    f"host {host!r}: generation {gen} != current {row.generation}")

    def _write(self, consumer: str, new: dict[str, dict[str, int]]) -> dict[str, int]:
        """Placement's _set_allocations: replace what ``consumer`` holds by ``new``,
        checking units and capacity (placement/objects/allocation.py
        _check_capacity_exceeded). Raises before changing anything."""
        old = self._allocations.get(consumer, {})
        for host, amounts in new.items():
            row = self._by_name[host]
            for rc, amount in amounts.items():
                inv = row.inventories[rc]
                if not _unit_ok(inv, amount):
                    raise errors.CapacityExceeded(
                        f"host {host!r} {rc}: amount {amount} breaks min_unit={inv.min_unit} "
                        f"max_unit={inv.max_unit} step_size={inv.step_size}")
        touched = [r.name for r in self._rows if r.name in old or r.name in new]
        for host in touched:
            row = self._by_name[host]
            for rc in _RCS:
                before = row.used[rc]
                after = before - old.get(host, {}).get(rc, 0) + new.get(host, {}).get(rc, 0)
                cap = _capacity(row.inventories[rc])
                # only a write that increases an over-capacity usage is refused
                if after > cap and after > before:
                    raise errors.CapacityExceeded(
                        f"host {host!r} {rc}: usage {after} would exceed capacity {cap}")
        for host in touched:
            row = self._by_name[host]
            for rc in _RCS:
                row.used[rc] += new.get(host, {}).get(rc, 0) - old.get(host, {}).get(rc, 0)
            row.generation += 1
        if new:
            self._allocations[consumer] = {h: dict(a) for h, a in new.items()}
        else:
            self._allocations.pop(consumer, None)
        return {host: self._by_name[host].generation for host in touched}

    def claim(self, consumer: str, allocations: Mapping[str, Mapping[str, int]],
              generations: Mapping[str, int] | None = None) -> dict[str, int]:
        _check_str("consumer", consumer, allow_empty=False)
        new = self._validate_allocations(allocations, allow_empty=False)
        if consumer in self._allocations:
            raise errors.ClaimConflict(f"consumer {consumer!r} already holds allocations")
        self._check_generations(generations)
        return self._write(consumer, new)

    def replace(self, consumer: str, allocations: Mapping[str, Mapping[str, int]],
                generations: Mapping[str, int] | None = None) -> dict[str, int]:
        _check_str("consumer", consumer, allow_empty=False)
        new = self._validate_allocations(allocations, allow_empty=True)
        if not new and consumer not in self._allocations:
            raise errors.UnknownConsumer(f"consumer {consumer!r} holds no allocations")
        self._check_generations(generations)
        return self._write(consumer, new)

    def release(self, consumer: str) -> None:
        if not isinstance(consumer, str) or consumer not in self._allocations:
            raise errors.UnknownConsumer(f"consumer {consumer!r} holds no allocations")
        self._write(consumer, {})


# --------------------------------------------------------------------------------------
# value parsing shared by filters and weighers
# --------------------------------------------------------------------------------------

# nova/scheduler/filters/extra_specs_ops.py
_OP_METHODS: dict[str, Callable[[Any, Any], bool]] = {
    "=": lambda x, y: float(x) >= float(y),
    "<in>": lambda x, y: y in x,
    "<all-in>": lambda x, y: all(val in x for val in y),
    "==": lambda x, y: float(x) == float(y),
    "!=": lambda x, y: float(x) != float(y),
    ">=": lambda x, y: float(x) >= float(y),
    "<=": lambda x, y: float(x) <= float(y),
    "s==": lambda x, y: bool(x == y),
    "s!=": lambda x, y: bool(x != y),
    "s<": lambda x, y: bool(x < y),
    "s<=": lambda x, y: bool(x <= y),
    "s>": lambda x, y: bool(x > y),
    "s>=": lambda x, y: bool(x >= y),
}


def extra_specs_match(value: str, req: str) -> bool:
    """nova/scheduler/filters/extra_specs_ops.py ``match``. Where Nova raises
    (``float()`` of a non-number, ``<or>`` with nothing after it) this returns False."""
    words = req.split()
    op: str | None = None
    method: Callable[[Any, Any], bool] | None = None
    if words:
        op = words.pop(0)
        method = _OP_METHODS.get(op)
    if op != "<or>" and method is None:
        return value == req
    if op == "<or>":  # Ex: <or> v1 <or> v2 <or> v3 (the separators are not checked)
        while True:
            if not words:
                return False
            if words.pop(0) == value:
                return True
            if not words:
                break
            words.pop(0)  # remove a keyword <or>
            if not words:
                break
        return False
    assert method is not None
    if words:
        try:
            if op == "<all-in>":
                return method(value, words)
            return method(value, words[0])
        except ValueError:
            return False
    return False


def _agg_values(hs: "_HostState", key: str) -> set[str]:
    """nova/scheduler/filters/utils.py aggregate_values_from_key (raw values)."""
    return {a.metadata[key] for a in hs.aggregates if key in a.metadata}


def _agg_metadata(hs: "_HostState") -> dict[str, set[str]]:
    """nova/scheduler/filters/utils.py aggregate_metadata_get_by_host (key=None):
    every key of every aggregate, values comma-split and stripped."""
    cached = hs.agg_metadata
    if cached is None:
        cached = {}
        for a in hs.aggregates:
            for k, v in a.metadata.items():
                cached.setdefault(k, set()).update(x.strip() for x in v.split(","))
        hs.agg_metadata = cached
    return cached


def _agg_int(hs: "_HostState", key: str, default: int) -> int:
    """AggregateIoOpsFilter / AggregateNumInstancesFilter: validate_num_values(...,
    cast_to=int) -- the minimum; any value int() rejects -> the option."""
    vals = _agg_values(hs, key)
    if not vals:
        return default
    try:
        return min(int(v) for v in vals)
    except ValueError:
        return default


def _agg_multiplier(hs: "_HostState", key: str, default: float) -> float:
    """nova/scheduler/utils.py get_weight_multiplier: the minimum of the host's
    aggregates' values (float()), the option when absent or unparseable. The doc adds:
    a non-finite result (any NaN, or a min of +-inf) also falls back to the option."""
    cache = hs.multipliers
    hit = cache.get(key)
    if hit is not None:
        return hit
    vals = _agg_values(hs, key)
    result = float(default)
    if vals:
        try:
            parsed = [float(v) for v in vals]
        except ValueError:
            parsed = []
        if parsed and not any(math.isnan(p) for p in parsed):
            m = min(parsed)
            if math.isfinite(m):
                result = m
    cache[key] = result
    return result


# ---- nova/objects/fields.py Architecture / HVType / VMMode canonicalize ----

class _Invalid:
    """An image value Nova's enum fields would refuse: set, but matches nothing."""

    def __repr__(self) -> str:
        return "<invalid>"


_INVALID = _Invalid()


def _canon_image(value: str | None, canon: Callable[[str | None], str | None]) -> object:
    if value is None:
        return None
    c = canon(value)
    return _INVALID if c is None else c


# ---- PEP 440 (packaging.version.Version, as oslo_utils.versionutils uses it) ----

_VERSION_PATTERN = r"""
    v?
    (?a:
        (?:(?P<epoch>[0-9]+)!)?
        (?P<release>[0-9]+(?:\.[0-9]+)*)
        (?P<pre>
            [._-]?
            (?P<pre_l>alpha|a|beta|b|preview|pre|c|rc)
            [._-]?
            (?P<pre_n>[0-9]+)?
        )?
        (?P<post>
            (?:-(?P<post_n1>[0-9]+))
            |
            (?:
                [._-]?
                (?P<post_l>post|rev|r)
                [._-]?
                (?P<post_n2>[0-9]+)?
            )
        )?
        (?P<dev>
            [._-]?
            (?P<dev_l>dev)
            [._-]?
            (?P<dev_n>[0-9]+)?
        )?
    )
    (?a:\+
        (?P<local>
            [a-z0-9]+
            (?:[._-][a-z0-9]+)*
        )
    )?
"""
_VERSION_RE = re.compile(r"\s*" + _VERSION_PATTERN + r"\s*", re.VERBOSE | re.IGNORECASE)
_LETTER_NORMALIZATION = {"alpha": "a", "beta": "b", "c": "rc", "pre": "rc",
                         "preview": "rc", "rev": "post", "r": "post"}
_PRE_RANK = {"a": 0, "b": 1, "rc": 2}
_SIMPLE_VERSION_CHARS = frozenset(".0123456789")


def _letter_version(letter: str | None, number: str | None) -> tuple[str, int] | None:
    if letter:
        letter = letter.lower()
        return _LETTER_NORMALIZATION.get(letter, letter), int(number or 0)
    if number:
        return "post", int(number)
    return None


def pep440_key(version: str) -> tuple[Any, ...]:
    """packaging.version.Version(version)._key; ValueError when invalid."""
    if _SIMPLE_VERSION_CHARS.issuperset(version):
        parts = version.split(".")
        if "" in parts:
            raise ValueError(f"Invalid version: {version!r}")
        epoch, release = 0, tuple(int(p) for p in parts)
        pre = post = dev = None
        local: tuple[int | str, ...] | None = None
    else:
        m = _VERSION_RE.fullmatch(version)
        if not m:
            raise ValueError(f"Invalid version: {version!r}")
        epoch = int(m.group("epoch")) if m.group("epoch") else 0
        release = tuple(int(p) for p in m.group("release").split("."))
        pre = _letter_version(m.group("pre_l"), m.group("pre_n"))
        post = _letter_version(m.group("post_l"), m.group("post_n1") or m.group("post_n2"))
        dev = _letter_version(m.group("dev_l"), m.group("dev_n"))
        lv = m.group("local")
        local = None if lv is None else tuple(
            p.lower() if not p.isdigit() else int(p) for p in re.split(r"[\._-]", lv))
    i = len(release)
    while i and release[i - 1] == 0:
        i -= 1
    trimmed = release[:i]
    if pre is None and post is None and dev is None and local is None:
        return (epoch, trimmed, (3, 0, 0, 0, 1, 0))
    if pre is None and post is None and dev is not None:
        pre_rank, pre_n = -1, 0
    elif pre is None:
        pre_rank, pre_n = 3, 0
    else:
        pre_rank, pre_n = _PRE_RANK[pre[0]], pre[1]
    suffix = (pre_rank, pre_n, 0 if post is None else 1, 0 if post is None else post[1],
              1 if dev is None else 0, 0 if dev is None else dev[1])
    if local is None:
        return (epoch, trimmed, suffix)
    return (epoch, trimmed, suffix,
            tuple((s, "") if isinstance(s, int) else (-1, s) for s in local))


_PREDICATE_RE = re.compile(r"^\s*(<=|>=|<|>|!=|==)\s*([^\s]+)\s*$")
_CMP: dict[str, Callable[[Any, Any], bool]] = {
    "<": lambda a, b: bool(a < b), "<=": lambda a, b: bool(a <= b),
    "==": lambda a, b: bool(a == b), ">": lambda a, b: bool(a > b),
    ">=": lambda a, b: bool(a >= b), "!=": lambda a, b: bool(a != b),
}


def version_predicate_satisfied(predicate: str, version: str) -> bool:
    """oslo_utils.versionutils.VersionPredicate(predicate).satisfied_by(version);
    ValueError when the predicate or a version does not parse."""
    preds = []
    for part in predicate.split(","):
        m = _PREDICATE_RE.match(part)
        if not m:
            raise ValueError(f"bad package restriction syntax: {part}")
        cond, ver = m.groups()
        preds.append((cond, pep440_key(ver)))
    key = pep440_key(version)
    return all(_CMP[cond](key, ver) for cond, ver in preds)


def convert_version_to_str(version_int: int) -> str:
    """oslo_utils.versionutils.convert_version_to_str (2011002 -> '2.11.2')."""
    numbers: list[int] = []
    factor = 1000
    while version_int != 0:
        numbers.insert(0, version_int - (version_int // factor * factor))
        version_int = version_int // factor
    return ".".join(map(str, numbers))


# --------------------------------------------------------------------------------------
# request and host state
# --------------------------------------------------------------------------------------


class _Request:
    """A validated RequestSpec plus what Nova derives from it (ResourceRequest,
    the mutable instance_uuid and instance_group.hosts)."""

    def __init__(self, spec: model.RequestSpec) -> None:
        if not isinstance(spec, model.RequestSpec):
            raise errors.InvalidInput(f"expected a model.RequestSpec, got {spec!r}")
        self.spec = spec
        flavor = spec.flavor
        if not isinstance(flavor, model.Flavor):
            raise errors.InvalidInput(f"flavor: expected a model.Flavor, got {flavor!r}")
        _check_str("flavor.name", flavor.name)
        self.vcpus = _check_int("flavor.vcpus", flavor.vcpus, 0)
        self.memory_mb = _check_int("flavor.memory_mb", flavor.memory_mb, 0)
        self.root_gb = _check_int("flavor.root_gb", flavor.root_gb, 0)
        self.ephemeral_gb = _check_int("flavor.ephemeral_gb", flavor.ephemeral_gb, 0)
        swap = _check_int("flavor.swap", flavor.swap, 0)
        self.extra_specs = _check_str_map("flavor.extra_specs", flavor.extra_specs)
        self.uuids = _check_str_seq("instance_uuids", spec.instance_uuids)
        if not self.uuids:
            raise errors.InvalidInput("instance_uuids: at least one instance is needed")
        if len(set(self.uuids)) != len(self.uuids) or not all(self.uuids):
            raise errors.InvalidInput("instance_uuids: must be unique non-empty strings")
        self.is_bfv = _check_bool("is_bfv", spec.is_bfv)
        self.is_rebuild = _check_bool("is_rebuild", spec.is_rebuild)
        _check_bool("allow_cross_cell_move", spec.allow_cross_cell_move)
        _check_str("project_id", spec.project_id)
        for opt in ("availability_zone", "requested_host", "requested_node", "requested_cell"):
            v = getattr(spec, opt)
            if v is not None:
                _check_str(opt, v)
        if spec.requested_node and spec.requested_host is None:
            raise errors.InvalidInput("requested_node needs requested_host")
        self.same_host = _check_str_seq("same_host", spec.same_host)
        self.different_host = _check_str_seq("different_host", spec.different_host)
        self.ignore_hosts = _check_str_seq("ignore_hosts", spec.ignore_hosts)
        self.force_hosts = _check_str_seq("force_hosts", spec.force_hosts)
        self.force_nodes = _check_str_seq("force_nodes", spec.force_nodes)
        self.forbidden_aggregates = frozenset(
            _check_str_seq("forbidden_aggregates", spec.forbidden_aggregates))
        if isinstance(spec.member_of, (str, bytes)) or not isinstance(spec.member_of, Sequence):
            raise errors.InvalidInput("member_of: must be a sequence of sequences of uuids")
        self.member_of = [frozenset(_check_str_seq("member_of", g)) for g in spec.member_of]

        # ResourceRequest.from_request_spec (nova/scheduler/utils.py): flavor amounts,
        # then resources:RC=N overrides (invalid amounts ignored, as Nova's
        # RequestGroup.add_resource does), then zero amounts stripped.
        amounts = {
            RC_VCPU: self.vcpus,
            RC_MEMORY_MB: self.memory_mb,
            RC_DISK_GB: (0 if self.is_bfv else self.root_gb) + self.ephemeral_gb
            + -(-swap // 1024),
        }
        required = set(_check_str_seq("required_traits", spec.required_traits))
        forbidden = set(_check_str_seq("forbidden_traits", spec.forbidden_traits))
        for key, val in self.extra_specs.items():
            if key.startswith("resources:"):
                rc = key[len("resources:"):]
                try:
                    amount = int(val)
                except ValueError:
                    amount = -1
                if amount < 0:
                    raise errors.InvalidInput(
                        f"flavor.extra_specs {key!r}: amount must be an integer >= 0, got {val!r}")
                if rc not in _RCS:
                    if amount == 0:
                        continue
                    raise errors.InvalidInput(
                        f"extra spec {key}: resource class {rc!r} is not modelled "
                        f"(known: {', '.join(_RCS)})")
                amounts[rc] = amount
            elif key.startswith("trait:"):
                if val == "required":
                    required.add(key[len("trait:"):])
                elif val == "forbidden":
                    forbidden.add(key[len("trait:"):])
                else:
                    raise errors.InvalidInput(
                        f"flavor.extra_specs {key!r}: must be 'required' or 'forbidden', got {val!r}")
        self.resources = {rc: a for rc, a in amounts.items() if a > 0}
        if not self.resources:
            raise errors.InvalidInput("the request asks for no resources")
        both = required & forbidden
        if both:
            # Placement answers 400 to such a query
            raise errors.InvalidInput(f"trait {sorted(both)[0]!r} is both required and forbidden")
        self.required_traits = frozenset(required)
        self.forbidden_traits = frozenset(forbidden)

        image = spec.image
        if image is not None and not isinstance(image, model.Image):
            raise errors.InvalidInput(f"image: expected a model.Image, got {image!r}")
        self.image_id = None if image is None else image.id
        self.image_props: dict[str, str] = (
            {} if image is None else _check_str_map("image.properties", image.properties))
        # ImagePropertiesWeigher's requested_props, kept in image order so the sum
        # is deterministic (Nova iterates a set)
        self.image_pairs = sorted((k, str(v)) for k, v in self.image_props.items())
        self._validate_image()

        group = spec.instance_group
        self.group = group
        self.group_hosts: list[str] = []
        self.group_members: frozenset[str] = frozenset()
        self.max_server_per_host = 1
        if group is not None:
            if not isinstance(group, model.InstanceGroup):
                raise errors.InvalidInput(f"instance_group: expected a model.InstanceGroup, "
                                          f"got {group!r}")
            if group.policy not in ("affinity", "anti-affinity", "soft-affinity",
                                    "soft-anti-affinity"):
                raise errors.InvalidInput(f"instance_group.policy: unknown {group.policy!r}")
            self.group_hosts = list(_check_str_seq("instance_group.hosts", group.hosts))
            self.group_members = frozenset(
                _check_str_seq("instance_group.members", group.members))
            if group.max_server_per_host is not None:
                if group.policy != "anti-affinity":
                    raise errors.InvalidInput(
                        "instance_group.max_server_per_host: only the anti-affinity policy takes rules")
                self.max_server_per_host = _check_int(
                    "instance_group.max_server_per_host", group.max_server_per_host, 1)
        self.instance_uuid = self.uuids[0]

    def _validate_image(self) -> None:
        _validate_image_props(self.image_props)


def _validate_image_props(props: Mapping[str, str]) -> None:
    """Nova's ImageMetaProps fields refuse these values before scheduling; so does
    novalite (InvalidInput)."""
    for key, canon in (("hw_architecture", canonicalize_arch), ("img_hv_type", canonicalize_hv_type),
                       ("hw_vm_mode", canonicalize_vm_mode)):
        if key in props and canon(props[key]) is None:
            raise errors.InvalidInput(f"image property {key}: unknown value {props[key]!r}")
    pred = props.get("img_hv_requested_version")
    if pred:
        for part in pred.split(","):
            m = _PREDICATE_RE.match(part)
            if not m or not re.fullmatch(r"[0-9]+(\.[0-9]+)*", m.group(2)):
                raise errors.InvalidInput(
                    f"image property img_hv_requested_version: bad predicate {part!r} "
                    "(an operator and a release version, digits and dots)")
    bits = props.get("hw_maxphysaddr_bits")
    if bits is not None:
        try:
            ok = int(bits) >= 0
        except ValueError:
            ok = False
        if not ok:
            raise errors.InvalidInput(
                f"image property hw_maxphysaddr_bits must be an integer >= 0, got {bits!r}")


class _HostState:
    """nova/scheduler/host_manager.py HostState: the mutable view one request
    consumes from, over a table row (read-only during the request)."""

    __slots__ = ("row", "index", "host", "nodename", "uuid", "cell_uuid",
                 "free_ram_mb", "free_disk_mb", "vcpus_used", "num_instances",
                 "num_io_ops", "instances", "aggregates", "agg_metadata", "multipliers")

    def __init__(self, row: _Row, index: int, aggregates: list[model.Aggregate]) -> None:
        self.row = row
        self.index = index
        self.host = row.name
        self.nodename = row.name
        self.uuid = row.uuid
        self.cell_uuid = row.cell
        self.free_ram_mb = row.free_ram_mb
        self.free_disk_mb = row.free_disk_mb
        self.vcpus_used = row.vcpus_used
        self.num_instances = row.num_instances
        self.num_io_ops = row.num_io_ops
        # copied on write (only server-group requests add to it)
        self.instances: dict[str, dict[str, str]] = row.instances
        self.aggregates = aggregates
        self.agg_metadata: dict[str, set[str]] | None = None
        self.multipliers: dict[str, float] = {}

    def consume_from_request(self, req: _Request) -> None:
        # HostState._locked_consume_from_request
        self.free_ram_mb -= req.memory_mb
        self.free_disk_mb -= (req.root_gb + req.ephemeral_gb) * 1024
        self.vcpus_used += req.vcpus
        self.num_instances += 1
        self.num_io_ops += 1

    def __repr__(self) -> str:
        return (f"({self.host}) ram: {self.free_ram_mb}MB disk: {self.free_disk_mb}MB "
                f"io_ops: {self.num_io_ops} instances: {self.num_instances}")


# HostState attributes ComputeCapabilitiesFilter can compare (the doc's list), and
# how to read them. Reading happens at index 0 only (the filter runs once per request).
_MODELLED_ATTRS: dict[str, Callable[[_HostState], object]] = {
    "host": lambda h: h.host,
    "nodename": lambda h: h.nodename,
    "uuid": lambda h: h.uuid,
    "hypervisor_hostname": lambda h: h.host,
    "hypervisor_type": lambda h: h.row.hypervisor_type,
    "hypervisor_version": lambda h: h.row.hypervisor_version,
    "free_ram_mb": lambda h: h.free_ram_mb,
    "free_disk_mb": lambda h: h.free_disk_mb,
    "total_usable_ram_mb": lambda h: h.row.inventories[RC_MEMORY_MB].total,
    "total_usable_disk_gb": lambda h: h.row.inventories[RC_DISK_GB].total,
    # compute's local_gb_used * 1024 == local_gb * 1024 - free_disk_mb
    "disk_mb_used": lambda h: h.row.inventories[RC_DISK_GB].total * 1024 - h.free_disk_mb,
    "vcpus_total": lambda h: h.row.inventories[RC_VCPU].total,
    "vcpus_used": lambda h: h.vcpus_used,
    "num_instances": lambda h: h.num_instances,
    "num_io_ops": lambda h: h.num_io_ops,
    "failed_builds": lambda h: h.row.failed_builds,
    "cpu_allocation_ratio": lambda h: float(h.row.inventories[RC_VCPU].allocation_ratio),
    "ram_allocation_ratio": lambda h: float(h.row.inventories[RC_MEMORY_MB].allocation_ratio),
    "disk_allocation_ratio": lambda h: float(h.row.inventories[RC_DISK_GB].allocation_ratio),
    "cell_uuid": lambda h: h.cell_uuid,
    "host_ip": lambda h: h.row.host_ip,
    "cpu_info": lambda h: h.row.cpu_info_json,
}
# The other attributes (and methods) of Nova 34's HostState: hasattr() is true in
# Nova, but they hold objects; the doc makes a spec naming one fail every host.
_OBJECT_ATTRS = frozenset((
    "pci_stats", "numa_topology", "supported_instances", "limits", "metrics",
    "aggregates", "instances", "updated", "allocation_candidates", "service", "stats",
    "_lock_name", "update", "consume_from_request", "_update_from_compute_node",
    "_locked_consume_from_request",
))

_FAIL = object()


def _get_capabilities(hs: _HostState, scope: list[str]) -> object:
    """ComputeCapabilitiesFilter._get_capabilities: walk ``scope`` from the host
    state (attribute, else stats key), json-loading strings on the way down.
    Returns _FAIL where Nova returns None."""
    cap: object = hs
    for name in scope:
        if isinstance(cap, str):
            try:
                cap = json.loads(cap)
            except ValueError:
                return _FAIL
        if cap is hs:
            if name in _MODELLED_ATTRS:
                cap = _MODELLED_ATTRS[name](hs)
            elif name in _OBJECT_ATTRS:
                return _FAIL
            else:
                cap = hs.row.stats.get(name)
        elif isinstance(cap, dict):
            cap = cap.get(name)
        else:
            # Nova would getattr() a plain JSON value (and then fail on .stats)
            return _FAIL
        if cap is None:
            return _FAIL
    return cap


# --------------------------------------------------------------------------------------
# filters (nova/scheduler/filters/*.py)
# --------------------------------------------------------------------------------------


class BaseHostFilter:
    """nova/filters.py BaseFilter + nova/scheduler/filters/__init__.py BaseHostFilter."""

    run_filter_once_per_request: ClassVar[bool] = False
    RUN_ON_REBUILD: ClassVar[bool] = False

    def __init__(self, config: SchedulerConfig) -> None:
        self.config = config

    @property
    def name(self) -> str:
        return type(self).__name__

    def run_filter_for_index(self, index: int) -> bool:
        return not (self.run_filter_once_per_request and index > 0)

    def filter_all(self, hosts: list[_HostState], req: _Request) -> list[_HostState]:
        if not self.RUN_ON_REBUILD and req.is_rebuild:
            # BaseHostFilter._filter_one: a non-rebuild filter passes every host
            return list(hosts)
        return [h for h in hosts if self.host_passes(h, req)]

    def host_passes(self, hs: _HostState, req: _Request) -> bool:
        raise NotImplementedError


class AllHostsFilter(BaseHostFilter):
    run_filter_once_per_request = True

    def host_passes(self, hs: _HostState, req: _Request) -> bool:
        return True


class ComputeFilter(BaseHostFilter):
    run_filter_once_per_request = True

    def host_passes(self, hs: _HostState, req: _Request) -> bool:
        return hs.row.enabled and hs.row.up


class ComputeCapabilitiesFilter(BaseHostFilter):
    run_filter_once_per_request = True

    def host_passes(self, hs: _HostState, req: _Request) -> bool:
        especs = dict(req.extra_specs)
        bits = especs.get("hw:maxphysaddr_bits")
        if bits is not None:
            especs["capabilities:cpu_info:maxphysaddr:bits"] = ">= " + bits
            del especs["hw:maxphysaddr_bits"]
        for key, want in especs.items():
            scope = key.split(":")
            if len(scope) == 1:
                # unscoped: only when HostState has that attribute or stats key
                if not (key in _MODELLED_ATTRS or key in _OBJECT_ATTRS or key in hs.row.stats):
                    continue
            elif scope[0] != "capabilities":
                continue
            else:
                del scope[0]
            cap = _get_capabilities(hs, scope)
            if cap is _FAIL:
                return False
            if not extra_specs_match(str(cap), want):
                return False
        return True


class ImagePropertiesFilter(BaseHostFilter):
    run_filter_once_per_request = True
    RUN_ON_REBUILD = True

    def host_passes(self, hs: _HostState, req: _Request) -> bool:
        props = req.image_props
        img_arch = props.get("hw_architecture", self.config.image_properties_default_architecture)
        checked = (
            _canon_image(img_arch, canonicalize_arch),
            _canon_image(props.get("img_hv_type"), canonicalize_hv_type),
            _canon_image(props.get("hw_vm_mode"), canonicalize_vm_mode),
        )
        # supported if no compute-related instance properties are specified
        if not any(checked):
            return True
        supp = hs.row.supported_instances
        if not supp:
            return False
        for arch, hv_type, vm_mode in supp:
            # nova's HVSpec fields canonicalize what the compute reports
            other = (canonicalize_arch(arch), canonicalize_hv_type(hv_type),
                     canonicalize_vm_mode(vm_mode))
            if all((not i) or (i in other) for i in checked):
                if self._version_ok(hs, props) and self._maxphysaddr_ok(hs, props):
                    return True
        return False

    @staticmethod
    def _version_ok(hs: _HostState, props: Mapping[str, str]) -> bool:
        required = props.get("img_hv_requested_version")
        version = hs.row.hypervisor_version
        if not (version and required):
            return True
        try:
            return version_predicate_satisfied(required, convert_version_to_str(version))
        except ValueError:
            return False  # Nova's image field refuses such a predicate up front

    @staticmethod
    def _maxphysaddr_ok(hs: _HostState, props: Mapping[str, str]) -> bool:
        raw = props.get("hw_maxphysaddr_bits")
        if raw is None:
            return True
        try:
            required = int(raw)  # an IntegerField in Nova's ImageMetaProps
        except ValueError:
            return False
        if not required:
            return True
        maxphys = hs.row.cpu_info.get("maxphysaddr", {})
        if not isinstance(maxphys, dict):
            return False
        bits = maxphys.get("bits")
        if not bits:
            return True
        if not _is_number(bits) and not isinstance(bits, bool):
            return False  # Nova: TypeError comparing it to an int
        return bool(bits >= required)


class ServerGroupAntiAffinityFilter(BaseHostFilter):
    def host_passes(self, hs: _HostState, req: _Request) -> bool:
        if req.group is None or req.group.policy != "anti-affinity":
            return True
        # a move may check the host the instance is already on
        if req.instance_uuid in hs.instances:
            return True
        on_host = sum(1 for u in hs.instances if u in req.group_members)
        return on_host < req.max_server_per_host


class ServerGroupAffinityFilter(BaseHostFilter):
    def host_passes(self, hs: _HostState, req: _Request) -> bool:
        if req.group is None or req.group.policy != "affinity":
            return True
        if req.group_hosts:
            return hs.host in req.group_hosts
        return True


class SameHostFilter(BaseHostFilter):
    run_filter_once_per_request = True

    def host_passes(self, hs: _HostState, req: _Request) -> bool:
        if req.same_host:
            return any(u in hs.instances for u in req.same_host)
        return True


class DifferentHostFilter(BaseHostFilter):
    run_filter_once_per_request = True

    def host_passes(self, hs: _HostState, req: _Request) -> bool:
        if req.different_host:
            return not any(u in hs.instances for u in req.different_host)
        return True


class AggregateInstanceExtraSpecsFilter(BaseHostFilter):
    run_filter_once_per_request = True
    _SCOPE = "aggregate_instance_extra_specs"

    def host_passes(self, hs: _HostState, req: _Request) -> bool:
        if not req.extra_specs:
            return True
        metadata = _agg_metadata(hs)
        for key, want in req.extra_specs.items():
            scope = key.split(":", 1)
            if len(scope) > 1:
                if scope[0] != self._SCOPE:
                    continue
                del scope[0]
            vals = metadata.get(scope[0])
            if not vals:
                return False
            # a value whose comparison would raise in Nova simply does not match
            if not any(extra_specs_match(v, want) for v in vals):
                return False
        return True


class AggregateMultiTenancyIsolation(BaseHostFilter):
    run_filter_once_per_request = True

    def host_passes(self, hs: _HostState, req: _Request) -> bool:
        metadata = _agg_metadata(hs)
        tenants: set[str] = set()
        for key, values in metadata.items():
            if key.startswith("filter_tenant_id"):
                tenants.update(values)
        if tenants and req.spec.project_id not in tenants:
            return False
        return True


class AggregateTypeAffinityFilter(BaseHostFilter):
    run_filter_once_per_request = True

    def host_passes(self, hs: _HostState, req: _Request) -> bool:
        vals = _agg_values(hs, "instance_type")
        for val in vals:
            if req.spec.flavor.name in [x.strip() for x in val.split(",")]:
                return True
        return not vals


class AggregateImagePropertiesIsolation(BaseHostFilter):
    run_filter_once_per_request = True
    RUN_ON_REBUILD = True

    def host_passes(self, hs: _HostState, req: _Request) -> bool:
        ns = self.config.aggregate_image_properties_isolation_namespace
        sep = self.config.aggregate_image_properties_isolation_separator
        for key, options in _agg_metadata(hs).items():
            if ns and not key.startswith(ns + sep):
                continue
            prop = req.image_props.get(key)
            if prop and str(prop) not in options:
                return False
        return True


class IsolatedHostsFilter(BaseHostFilter):
    run_filter_once_per_request = True
    RUN_ON_REBUILD = True

    def host_passes(self, hs: _HostState, req: _Request) -> bool:
        cfg = self.config
        restrict = cfg.restrict_isolated_hosts_to_isolated_images
        if not cfg.isolated_images:
            return (not restrict) or (hs.host not in cfg.isolated_hosts)
        image_isolated = req.image_id is not None and req.image_id in cfg.isolated_images
        host_isolated = hs.host in cfg.isolated_hosts
        if restrict:
            return image_isolated == host_isolated
        return (not image_isolated) or host_isolated


class IoOpsFilter(BaseHostFilter):
    def _max(self, hs: _HostState) -> int:
        return self.config.max_io_ops_per_host

    def host_passes(self, hs: _HostState, req: _Request) -> bool:
        return hs.num_io_ops < self._max(hs)


class AggregateIoOpsFilter(IoOpsFilter):
    def _max(self, hs: _HostState) -> int:
        return _agg_int(hs, "max_io_ops_per_host", self.config.max_io_ops_per_host)


class NumInstancesFilter(BaseHostFilter):
    def _max(self, hs: _HostState) -> int:
        return self.config.max_instances_per_host

    def host_passes(self, hs: _HostState, req: _Request) -> bool:
        return hs.num_instances < self._max(hs)


class AggregateNumInstancesFilter(NumInstancesFilter):
    def _max(self, hs: _HostState) -> int:
        return _agg_int(hs, "max_instances_per_host", self.config.max_instances_per_host)


class MetricsFilter(BaseHostFilter):
    def host_passes(self, hs: _HostState, req: _Request) -> bool:
        return all(k in hs.row.metrics for k in self.config.metrics_weight_setting)


_FILTER_CLASSES: dict[str, type[BaseHostFilter]] = {
    c.__name__: c for c in (
        AllHostsFilter, ComputeFilter, ComputeCapabilitiesFilter, ImagePropertiesFilter,
        ServerGroupAntiAffinityFilter, ServerGroupAffinityFilter, SameHostFilter,
        DifferentHostFilter, AggregateInstanceExtraSpecsFilter,
        AggregateMultiTenancyIsolation, AggregateTypeAffinityFilter,
        AggregateImagePropertiesIsolation, IsolatedHostsFilter, IoOpsFilter,
        AggregateIoOpsFilter, NumInstancesFilter, AggregateNumInstancesFilter, MetricsFilter,
    )
}


# --------------------------------------------------------------------------------------
# weighers (nova/weights.py, nova/scheduler/weights/*.py)
# --------------------------------------------------------------------------------------


def normalize(weights: Sequence[float], minval: float | None = None) -> list[float]:
    """nova/weights.py normalize (maxval is never set by Nova's host weighers).
    Note: "all equal" means lo == hi -- with minval=0 equal non-zero raw values
    normalise to 1.0, not 0."""
    if not weights:
        return []
    hi = float(max(weights))
    lo = float(min(weights)) if minval is None else float(minval)
    if lo == hi:
        return [0.0] * len(weights)
    rng = hi - lo
    return [(w - lo) / rng for w in weights]


class BaseHostWeigher:
    minval: ClassVar[float | None] = None
    option: ClassVar[str] = ""

    def __init__(self, config: SchedulerConfig) -> None:
        self.config = config

    @property
    def name(self) -> str:
        return type(self).__name__

    def weight_multiplier(self, hs: _HostState) -> float:
        return _agg_multiplier(hs, self.option, getattr(self.config, self.option))

    def _weigh_object(self, hs: _HostState, req: _Request) -> float:
        raise NotImplementedError

    def weigh_objects(self, hosts: Sequence[_HostState], req: _Request) -> list[float]:
        out: list[float] = []
        for hs in hosts:
            w = self._weigh_object(hs, req)
            if self.minval is not None:
                w = max(w, self.minval)  # don't let the weight go below minval
            out.append(w)
        return out


class RAMWeigher(BaseHostWeigher):
    minval = 0
    option = "ram_weight_multiplier"

    def _weigh_object(self, hs: _HostState, req: _Request) -> float:
        return hs.free_ram_mb


class CPUWeigher(BaseHostWeigher):
    minval = 0
    option = "cpu_weight_multiplier"

    def _weigh_object(self, hs: _HostState, req: _Request) -> float:
        inv = hs.row.inventories[RC_VCPU]
        return inv.total * float(inv.allocation_ratio) - hs.vcpus_used


class DiskWeigher(BaseHostWeigher):
    minval = 0
    option = "disk_weight_multiplier"

    def _weigh_object(self, hs: _HostState, req: _Request) -> float:
        return hs.free_disk_mb


class IoOpsWeigher(BaseHostWeigher):
    minval = 0
    option = "io_ops_weight_multiplier"

    def _weigh_object(self, hs: _HostState, req: _Request) -> float:
        return hs.num_io_ops


class NumInstancesWeigher(BaseHostWeigher):
    option = "num_instances_weight_multiplier"

    def _weigh_object(self, hs: _HostState, req: _Request) -> float:
        return hs.num_instances


class HypervisorVersionWeigher(BaseHostWeigher):
    option = "hypervisor_version_weight_multiplier"

    def _weigh_object(self, hs: _HostState, req: _Request) -> float:
        return hs.row.hypervisor_version or 0


class BuildFailureWeigher(BaseHostWeigher):
    option = "build_failure_weight_multiplier"

    def weight_multiplier(self, hs: _HostState) -> float:
        # negated: more failed builds, lower weight
        return -1 * super().weight_multiplier(hs)

    def _weigh_object(self, hs: _HostState, req: _Request) -> float:
        return hs.row.failed_builds


class CrossCellWeigher(BaseHostWeigher):
    option = "cross_cell_move_weight_multiplier"

    def _weigh_object(self, hs: _HostState, req: _Request) -> float:
        spec = req.spec
        if spec.requested_cell and spec.allow_cross_cell_move:
            return 1 if hs.cell_uuid == spec.requested_cell else -1
        return 0


class PCIWeigher(BaseHostWeigher):
    option = "pci_weight_multiplier"
    MAX_DEVS = 100

    def _weigh_object(self, hs: _HostState, req: _Request) -> float:
        return self.MAX_DEVS - min(hs.row.free_pci_devs, self.MAX_DEVS - 1)


class _SoftAffinityWeigherBase(BaseHostWeigher):
    policy_name: ClassVar[str] = ""

    def _members_on_host(self, hs: _HostState, req: _Request) -> int:
        if req.group is None or req.group.policy != self.policy_name:
            return 0
        return sum(1 for u in hs.instances if u in req.group_members)


class ServerGroupSoftAffinityWeigher(_SoftAffinityWeigherBase):
    option = "soft_affinity_weight_multiplier"
    policy_name = "soft-affinity"

    def _weigh_object(self, hs: _HostState, req: _Request) -> float:
        return self._members_on_host(hs, req)


class ServerGroupSoftAntiAffinityWeigher(_SoftAffinityWeigherBase):
    option = "soft_anti_affinity_weight_multiplier"
    policy_name = "soft-anti-affinity"

    def _weigh_object(self, hs: _HostState, req: _Request) -> float:
        return -1 * self._members_on_host(hs, req)


class MetricsWeigher(BaseHostWeigher):
    option = "metrics_weight_multiplier"

    def _weigh_object(self, hs: _HostState, req: _Request) -> float:
        value = 0.0
        metrics = hs.row.metrics
        for name, ratio in self.config.metrics_weight_setting.items():
            if name in metrics:
                value += metrics[name] * ratio
            elif self.config.metrics_required:
                # nova raises ComputeHostMetricNotFound out of the scheduler
                raise errors.PlacementError(
                    f"metric {name!r} not found on host {hs.host!r} (metrics_required)")
            elif ratio * self.weight_multiplier(hs) != 0:
                # the unavailable metric makes the host the least preferred
                return self.config.metrics_weight_of_unavailable
        return value


class ImagePropertiesWeigher(BaseHostWeigher):
    option = "image_props_weight_multiplier"

    def _weigh_object(self, hs: _HostState, req: _Request) -> float:
        weight = 0.0
        # disabled by the option (not the per-aggregate value), as in Nova
        if self.config.image_props_weight_multiplier == 0.0:
            return weight
        if not req.image_pairs or not hs.instances:
            return weight
        existing: Counter[tuple[str, str]] = Counter()
        for props in hs.instances.values():
            existing.update({(k, str(v)) for k, v in props.items()})
        setting = self.config.image_props_weight_setting
        for pair in req.image_pairs:
            count = existing.get(pair, 0)
            if count:
                if setting:
                    weight += setting.get(pair[0], 0.0) * count
                else:
                    weight += count
        return weight


_WEIGHER_CLASSES: dict[str, type[BaseHostWeigher]] = {
    c.__name__: c for c in (
        RAMWeigher, CPUWeigher, DiskWeigher, IoOpsWeigher, NumInstancesWeigher,
        HypervisorVersionWeigher, BuildFailureWeigher, CrossCellWeigher, PCIWeigher,
        ServerGroupSoftAffinityWeigher, ServerGroupSoftAntiAffinityWeigher,
        MetricsWeigher, ImagePropertiesWeigher,
    )
}


# --------------------------------------------------------------------------------------
# the scheduler
# --------------------------------------------------------------------------------------

Counts = list[tuple[str, int]]


class Scheduler:
    """nova/scheduler/manager.py SchedulerManager + host_manager.HostManager over a
    HostTable."""

    def __init__(self, table: HostTable, config: SchedulerConfig | None = None) -> None:
        if not isinstance(table, HostTable):
            raise errors.InvalidInput(f"expected a HostTable, got {table!r}")
        if config is None:
            config = SchedulerConfig()
        if not isinstance(config, SchedulerConfig):
            raise errors.InvalidInput(f"expected a SchedulerConfig, got {config!r}")
        self.table = table
        self.config = config
        self.filters = [_FILTER_CLASSES[n](config) for n in config.enabled_filters]
        self.weighers = [_WEIGHER_CLASSES[n](config) for n in config.weight_classes]

    # ------------------------------------------------------------ placement stage

    def _host_states(self) -> list[_HostState]:
        aggs = self.table._aggregates
        return [_HostState(r, i, [aggs[a] for a in r.aggregates])
                for i, r in enumerate(self.table._rows)]

    def _placement_stage(self, req: _Request) -> tuple[list[_HostState], Counts]:
        """The allocation-candidates query plus Nova's request pre-filters
        (nova/scheduler/request_filter.py): each host counted against the first
        check it fails."""
        spec = req.spec
        checks: list[tuple[str, Callable[[_HostState], bool]]] = [
            ("COMPUTE_STATUS_DISABLED", lambda h: h.row.enabled),
        ]
        for rc, amount in req.resources.items():
            def fits(h: _HostState, rc: str = rc, amount: int = amount) -> bool:
                inv = h.row.inventories[rc]
                return h.row.used[rc] + amount <= _capacity(inv) and _unit_ok(inv, amount)
            checks.append((rc, fits))
        if req.required_traits:
            checks.append(("required_traits", lambda h: req.required_traits <= h.row.traits))
        if req.forbidden_traits:
            checks.append(("forbidden_traits",
                           lambda h: not (req.forbidden_traits & h.row.traits)))
        if req.member_of:
            checks.append(("member_of", lambda h: all(
                any(a in g for a in h.row.aggregates) for g in req.member_of)))
        if req.forbidden_aggregates:
            checks.append(("forbidden_aggregates", lambda h: not any(
                a in req.forbidden_aggregates for a in h.row.aggregates)))
        if spec.availability_zone:
            zone = spec.availability_zone
            # map_az_to_placement_aggregate: the aggregates naming that zone, if any
            zone_aggs = frozenset(
                u for u, a in self.table._aggregates.items()
                if a.metadata.get("availability_zone") == zone)
            checks.append(("availability_zone", lambda h: (not zone_aggs) or any(
                a in zone_aggs for a in h.row.aggregates)))
        counts = [0] * len(checks)
        passed: list[_HostState] = []
        for hs in self._host_states():
            for i, (_, check) in enumerate(checks):
                if not check(hs):
                    counts[i] += 1
                    break
            else:
                passed.append(hs)
        return passed, [(name, counts[i]) for i, (name, _) in enumerate(checks)]

    # ------------------------------------------------------------ one pass

    def _filtered_hosts(self, hosts: list[_HostState], req: _Request,
                        index: int) -> tuple[list[_HostState], Counts]:
        """HostManager.get_filtered_hosts + BaseFilterHandler.get_filtered_objects.
        Stops at the first step that leaves no host."""
        spec = req.spec
        counts: Counts = []

        def step(name: str, kept: list[_HostState]) -> list[_HostState]:
            counts.append((name, len(hosts) - len(kept)))
            return kept

        if not hosts:
            return [], counts
        if spec.requested_host is not None:
            hosts = step("requested_destination", [
                h for h in hosts if h.host == spec.requested_host
                and (not spec.requested_node or h.nodename == spec.requested_node)])
            if not hosts:
                return [], counts
        if req.ignore_hosts:
            ignored = {x.lower() for x in req.ignore_hosts}
            hosts = step("ignore_hosts", [h for h in hosts if h.host.lower() not in ignored])
            if not hosts:
                return [], counts
        if req.force_hosts:
            forced = {x.lower() for x in req.force_hosts}
            hosts = step("force_hosts", [h for h in hosts if h.host.lower() in forced])
            if not hosts:
                return [], counts
        if req.force_nodes:
            hosts = step("force_nodes", [h for h in hosts if h.nodename in req.force_nodes])
            if not hosts:
                return [], counts
        if (req.force_hosts or req.force_nodes) and not req.is_rebuild:
            return hosts, counts  # forcing skips the filters (unless a rebuild)
        for f in self.filters:
            if not f.run_filter_for_index(index):
                continue
            hosts = step(f.name, f.filter_all(hosts, req))
            if not hosts:
                break
        return hosts, counts

    def _weighed(self, hosts: list[_HostState], req: _Request) -> list[float]:
        """BaseWeightHandler.get_weighed_objects, without the sort: the total weight
        of each host, in the given order."""
        totals = [0.0] * len(hosts)
        if len(hosts) <= 1:
            return totals
        for weigher in self.weighers:
            norm = normalize(weigher.weigh_objects(hosts, req), weigher.minval)
            for i, hs in enumerate(hosts):
                totals[i] += weigher.weight_multiplier(hs) * norm[i]
        return totals

    def _sorted_hosts(self, hosts: list[_HostState], req: _Request,
                      rng: random.Random) -> tuple[list[_HostState], dict[int, float]]:
        """SchedulerManager._get_sorted_hosts after filtering: weigh, stable sort,
        optional shuffle of the best, random choice among the first
        host_subset_size."""
        weights = self._weighed(hosts, req)
        order = sorted(range(len(hosts)), key=lambda i: weights[i], reverse=True)
        ranked = [(hosts[i], weights[i]) for i in order]
        if self.config.shuffle_best_same_weighed_hosts:
            best = [x for x in ranked if x[1] == ranked[0][1]]
            rng.shuffle(best)
            ranked = best + ranked[len(best):]
        ordered = [h for h, _ in ranked]
        subset = ordered[:self.config.host_subset_size]
        chosen = rng.choice(subset)
        ordered.remove(chosen)
        by_host = {id(h): w for h, w in ranked}
        return [chosen] + ordered, by_host

    # ------------------------------------------------------------ public API

    def prepare(self, spec: model.RequestSpec) -> model.RequestSpec:
        """Validate a request (InvalidInput when it is malformed); the reference has
        nothing to precompute, so the spec itself is returned."""
        _Request(spec)
        return spec

    def _request(self, spec: model.RequestSpec, index: int) -> _Request:
        req = _Request(spec)
        _check_int("index", index, 0)
        if index >= len(req.uuids):
            raise errors.InvalidInput(
                f"index {index} out of range for {len(req.uuids)} instance(s)")
        req.instance_uuid = req.uuids[index]
        return req

    def _filter(self, spec: model.RequestSpec,
                index: int) -> tuple[_Request, list[_HostState], Counts]:
        req = self._request(spec, index)
        candidates, counts = self._placement_stage(req)
        passed, pass_counts = self._filtered_hosts(candidates, req, index)
        return req, passed, counts + pass_counts

    def filter(self, spec: model.RequestSpec, index: int = 0) -> model.FilterResult:
        """The placement stage, then pass ``index`` over every candidate host."""
        _, passed, counts = self._filter(spec, index)
        mask = [False] * len(self.table)
        for hs in passed:
            mask[hs.index] = True
        return model.FilterResult(mask=mask, rejections=counts)

    def weigh(self, spec: model.RequestSpec, index: int = 0) -> list[float]:
        """Total weight per row of the hosts passing ``filter(spec, index)``; NaN for
        the others."""
        req, passed, _ = self._filter(spec, index)
        out = [math.nan] * len(self.table)
        for hs, w in zip(passed, self._weighed(passed, req)):
            out[hs.index] = w
        return out

    def select_destinations(self, spec: model.RequestSpec, *, claim: bool = True,
                            seed: int | None = 0,
                            return_alternates: bool = True) -> list[list[model.Selection]]:
        """SchedulerManager._schedule with claims, then _get_alternate_hosts.
        All or nothing: the table only changes when every instance was placed."""
        req = _Request(spec)
        _check_bool("claim", claim)
        _check_bool("return_alternates", return_alternates)
        if seed is not None:
            _check_int("seed", seed)
        if claim:
            held = [u for u in req.uuids if u in self.table._allocations]
            if held:
                raise errors.ClaimConflict(f"consumer {held[0]!r} already holds allocations")
        rng = random.Random(seed)

        candidates, placement_counts = self._placement_stage(req)
        if not candidates:
            raise errors.NoValidHost(_NO_VALID_HOST_MSG, placement_counts, 0)

        # simulated claims: what earlier instances of this request took, per host
        taken: dict[int, dict[str, int]] = {}
        group_props = dict(req.image_props)
        hosts = candidates
        weights: dict[int, float] = {}
        chosen: list[tuple[_HostState, float]] = []
        for index, uuid in enumerate(req.uuids):
            req.instance_uuid = uuid
            passed, pass_counts = self._filtered_hosts(hosts, req, index)
            if not passed:
                raise errors.NoValidHost(_NO_VALID_HOST_MSG, placement_counts + pass_counts,
                                         index)
            hosts, weights = self._sorted_hosts(passed, req, rng)
            claimed: _HostState | None = None
            failed: Counter[str] = Counter()
            for hs in hosts:
                short = self._claim_shortfall(hs, req, taken.get(hs.index, {}))
                if short is None:
                    claimed = hs
                    break
                failed[short] += 1
            if claimed is None:
                counts = [(name, n + failed.get(name, 0)) for name, n in placement_counts]
                raise errors.NoValidHost(_NO_VALID_HOST_MSG, counts + pass_counts, index)
            t = taken.setdefault(claimed.index, {})
            for rc, amount in req.resources.items():
                t[rc] = t.get(rc, 0) + amount
            chosen.append((claimed, weights[id(claimed)]))
            # SchedulerManager._consume_selected_host
            claimed.consume_from_request(req)
            if req.group is not None:
                req.group_hosts.append(claimed.host)
                if uuid not in claimed.instances:
                    claimed.instances = dict(claimed.instances)
                    claimed.instances[uuid] = group_props

        # _get_alternate_hosts
        num_alts = self.config.max_attempts - 1 if return_alternates else 0
        last = len(req.uuids) - 1
        if last > 0 and num_alts > 0:
            passed, _ = self._filtered_hosts(hosts, req, last)
            if passed:
                hosts, weights = self._sorted_hosts(passed, req, rng)
            else:
                hosts, weights = [], {}
        selected_ids = {id(hs) for hs, _ in chosen}

        if claim:
            self._commit(req, chosen)

        allocation = dict(req.resources)
        result: list[list[model.Selection]] = []
        for hs, weight in chosen:
            sels = [self._selection(hs, allocation, weight)]
            for alt in hosts:
                if len(sels) >= num_alts + 1:
                    break
                if alt.cell_uuid == hs.cell_uuid and id(alt) not in selected_ids:
                    sels.append(self._selection(alt, allocation, weights[id(alt)]))
            result.append(sels)
        return result

    # ------------------------------------------------------------ claims

    @staticmethod
    def _claim_shortfall(hs: _HostState, req: _Request, taken: Mapping[str, int]) -> str | None:
        """The first resource class the claim of ``req`` on ``hs`` would not fit in
        (capacity; units were checked by the placement stage), or None."""
        row = hs.row
        for rc, amount in req.resources.items():
            inv = row.inventories[rc]
            if row.used[rc] + taken.get(rc, 0) + amount > _capacity(inv) \
                    or not _unit_ok(inv, amount):
                return rc
        return None

    def _commit(self, req: _Request, chosen: list[tuple[_HostState, float]]) -> None:
        """Write what the request did: one claim (and generation bump) per instance,
        the consumed compute view, and each instance recorded on its host."""
        table = self.table
        for uuid, (hs, _) in zip(req.uuids, chosen):
            row = hs.row
            table._allocations[uuid] = {row.name: dict(req.resources)}
            for rc, amount in req.resources.items():
                row.used[rc] += amount
            row.generation += 1
            old = table._instance_host.get(uuid)
            if old is not None:
                del table._by_name[old].instances[uuid]
            row.instances[uuid] = dict(req.image_props)
            table._instance_host[uuid] = row.name
        for hs in {id(h): h for h, _ in chosen}.values():
            row = hs.row
            row.free_ram_mb = hs.free_ram_mb
            row.free_disk_mb = hs.free_disk_mb
            row.vcpus_used = hs.vcpus_used
            row.num_instances = hs.num_instances
            row.num_io_ops = hs.num_io_ops

    def _selection(self, hs: _HostState, allocation: Mapping[str, int],
                   weight: float) -> model.Selection:
        return model.Selection(
            host=hs.host, host_uuid=hs.uuid, row=self.table._row_index[hs.host],
            allocation=dict(allocation),
            availability_zone=self.table._zone_of(hs.row, self.config.default_availability_zone),
            cell=hs.cell_uuid, weight=float(weight))

