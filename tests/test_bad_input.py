"""Bad input to the Rust-backed facade: a clear exception (InvalidInput or a subclass,
whose message names the offending field or column; ConfigError for options) and a
table left exactly as it was (issue 2, item 8; docs/placement-semantics.md)."""

from __future__ import annotations

import contextlib
import math
from typing import Any, Callable, Iterator

import numpy as np
import pytest

from novalite import placement as core
from novalite.placement import errors, model
from novalite.placement.config import ConfigError, SchedulerConfig

from snapshots import snapshot

Inventory = model.Inventory
N = 3  # hosts per bulk load


def populated() -> core.HostTable:
    """A table with something of everything in it: aggregates, instances, a claim."""
    agg = model.Aggregate("agg-1", "one", {"availability_zone": "az1"})
    t = core.HostTable([
        model.Host(f"h{i}", f"uuid-h{i}", Inventory(8, allocation_ratio=2.0), Inventory(4096, reserved=512),
                   Inventory(40), aggregates=["agg-1"] if i == 0 else [], traits=["HW_A"],
                   instances={f"inst-{i}": {"os_distro": "ubuntu"}})
        for i in range(3)
    ], aggregates=[agg])
    t.claim("c-1", {"h0": {"VCPU": 2, "MEMORY_MB": 512}, "h1": {"DISK_GB": 10}})
    return t


@pytest.fixture
def table() -> core.HostTable:
    return populated()


@contextlib.contextmanager
def refused(t: core.HostTable, exc: type[BaseException], *words: str) -> Iterator[None]:
    """The body raises ``exc`` whose message names each of ``words``, and the table
    reads back exactly as before."""
    before = snapshot(t)
    with pytest.raises(exc) as info:
        yield
    message = str(info.value)
    for w in words:
        assert w in message, f"{type(info.value).__name__}({message!r}) does not name {w!r}"
    assert snapshot(t) == before, "a refused call changed the table"


# ------------------------------------------------------------------ bulk columns

def _names(n: int = N) -> list[str]:
    return [f"new-{i}" for i in range(n)]


def _last_bad(good: Any, bad: Any, dtype: Any = np.int64) -> Any:
    """A column whose last entry only is bad: all or nothing must still hold."""
    return np.array([good] * (N - 1) + [bad], dtype=dtype)


# (columns, the words the message must contain)
BAD_COLUMNS: dict[str, tuple[dict[str, Any], tuple[str, ...]]] = {
    # wrong dtype
    "float64 for an int column": ({"vcpu_total": np.full(N, 8.0)}, ("vcpu_total",)),
    "float32 for an int column": ({"memory_mb_total": np.full(N, 1024, dtype=np.float32)}, ("memory_mb_total",)),
    "int32 for an int64 column": ({"disk_gb_total": np.full(N, 10, dtype=np.int32)}, ("disk_gb_total",)),
    "int for a float column": ({"vcpu_allocation_ratio": np.full(N, 2)}, ("vcpu_allocation_ratio",)),
    "int for a bool column": ({"enabled": np.ones(N, dtype=np.int64)}, ("enabled",)),
    "object array": ({"vcpu_total": np.array([8, 8, None], dtype=object)}, ("vcpu_total",)),
    "a list with fractional sizes": ({"memory_mb_total": [1024.5, 2048.0, 512.25]}, ("memory_mb_total",)),
    "a fractional scalar": ({"disk_gb_total": 10.5}, ("disk_gb_total",)),
    "a string scalar": ({"vcpu_total": "8"}, ("vcpu_total",)),
    "a bool scalar for an int column": ({"vcpu_total": True}, ("vcpu_total",)),
    # wrong shape
    "too short": ({"vcpu_total": np.full(N - 1, 8)}, ("vcpu_total",)),
    "too long": ({"vcpu_allocation_ratio": np.full(N + 1, 1.0)}, ("vcpu_allocation_ratio",)),
    "2-d": ({"vcpu_total": np.full((N, 1), 8)}, ("vcpu_total",)),
    "2-d, right size": ({"num_io_ops": np.zeros((1, N), dtype=np.int64)}, ("num_io_ops",)),
    # bad values (last row only)
    "negative total": ({"vcpu_total": _last_bad(8, -1)}, ("VCPU", "total")),
    "negative reserved": ({"memory_mb_total": np.full(N, 1024), "memory_mb_reserved": _last_bad(0, -1)},
                          ("MEMORY_MB", "reserved")),
    "reserved > total": ({"disk_gb_total": np.full(N, 10), "disk_gb_reserved": _last_bad(0, 11)},
                         ("DISK_GB", "reserved")),
    "NaN ratio": ({"vcpu_allocation_ratio": _last_bad(1.0, math.nan, np.float64)}, ("allocation_ratio",)),
    "inf ratio": ({"memory_mb_allocation_ratio": _last_bad(1.0, math.inf, np.float64)}, ("allocation_ratio",)),
    "-inf ratio": ({"disk_gb_allocation_ratio": _last_bad(1.0, -math.inf, np.float64)}, ("allocation_ratio",)),
    "zero ratio": ({"vcpu_allocation_ratio": _last_bad(1.0, 0.0, np.float64)}, ("allocation_ratio",)),
    "negative ratio": ({"vcpu_allocation_ratio": _last_bad(1.0, -2.0, np.float64)}, ("allocation_ratio",)),
    "min_unit > max_unit": ({"vcpu_min_unit": _last_bad(1, 4), "vcpu_max_unit": _last_bad(8, 2)},
                            ("min_unit", "max_unit")),
    "min_unit 0": ({"vcpu_min_unit": _last_bad(1, 0)}, ("min_unit",)),
    "step_size 0": ({"memory_mb_step_size": _last_bad(1, 0)}, ("step_size",)),
    "max_unit above 2**31-1": ({"disk_gb_max_unit": _last_bad(10, 2**31)}, ("max_unit",)),
    "total above 2**31-1": ({"memory_mb_total": _last_bad(1024, 2**31)}, ("total",)),
    "negative vcpus_used": ({"vcpus_used": _last_bad(0, -1)}, ("vcpus_used",)),
    "negative num_io_ops": ({"num_io_ops": _last_bad(0, -3)}, ("num_io_ops",)),
    "negative num_instances": ({"num_instances": _last_bad(0, -1)}, ("num_instances",)),
    "negative failed_builds": ({"failed_builds": _last_bad(0, -1)}, ("failed_builds",)),
    "negative hypervisor_version": ({"hypervisor_version": _last_bad(0, -1)}, ("hypervisor_version",)),
    "negative free_pci_devs": ({"free_pci_devs": _last_bad(0, -1)}, ("free_pci_devs",)),
    # unknown names
    "unknown column": ({"vcpu_totl": np.full(N, 8)}, ("vcpu_totl",)),
    "a read-only column": ({"generation": np.zeros(N, dtype=np.int64)}, ("generation",)),
    "a derived column": ({"vcpu_capacity": np.full(N, 8)}, ("vcpu_capacity",)),
    "used is not loadable": ({"memory_mb_used": np.zeros(N, dtype=np.int64)}, ("memory_mb_used",)),
}


@pytest.mark.parametrize("case", sorted(BAD_COLUMNS))
def test_from_columns_refuses_bad_columns(case: str) -> None:
    columns, words = BAD_COLUMNS[case]
    with pytest.raises(errors.InvalidInput) as info:
        core.HostTable.from_columns(_names(), **columns)
    for w in words:
        assert w in str(info.value), f"{info.value!r} does not name {w!r}"


@pytest.mark.parametrize("case", sorted(BAD_COLUMNS))
def test_add_hosts_refuses_bad_columns_and_adds_nothing(table: core.HostTable, case: str) -> None:
    columns, words = BAD_COLUMNS[case]
    with refused(table, errors.InvalidInput, *words):
        table.add_hosts(_names(), **columns)


@pytest.mark.parametrize("kwargs, words", [
    ({"uuids": ["u-0", "u-1"]}, ("uuids",)),
    ({"hypervisor_type": ["QEMU", "kvm"]}, ("hypervisor_type",)),
    ({"cell": ["c1"] * (N + 1)}, ("cell",)),
    ({"cell": 3}, ("cell",)),
    ({"hypervisor_type": 7}, ("hypervisor_type",)),
    ({"hypervisor_type": ["QEMU", "kvm", 3]}, ("hypervisor_type",)),
], ids=["uuids too short", "strings too short", "strings too long", "cell not a string",
        "hypervisor_type not a string", "a non-string in a string column"])
def test_add_hosts_refuses_bad_names_and_string_columns(table: core.HostTable, kwargs: dict[str, Any],
                                                        words: tuple[str, ...]) -> None:
    with refused(table, errors.InvalidInput, *words):
        table.add_hosts(_names(), vcpu_total=8, **kwargs)


@pytest.mark.parametrize("names, uuids, word", [
    (["new-0", "new-1", "new-0"], None, "new-0"),
    (["new-0", "h1"], None, "h1"),
    (["new-0", "new-1"], ["u-x", "u-x"], "u-x"),
    (["new-0", "new-1"], ["u-x", "uuid-h2"], "uuid-h2"),
    (["new-0", ""], None, "name"),
], ids=["name twice in the batch", "name already in the table", "uuid twice in the batch",
        "uuid already in the table", "empty name"])
def test_add_hosts_refuses_duplicates_atomically(table: core.HostTable, names: list[str],
                                                  uuids: list[str] | None, word: str) -> None:
    with refused(table, errors.InvalidInput, word):
        table.add_hosts(names, uuids=uuids, vcpu_total=8)


# ------------------------------------------------------------------ add_host

def _host(name: str = "hx", uuid: str = "uuid-hx", **kw: Any) -> model.Host:
    return model.Host(name, uuid, kw.pop("vcpu", Inventory(8)), kw.pop("memory_mb", Inventory(1024)),
                      kw.pop("disk_gb", Inventory(10)), **kw)


@pytest.mark.parametrize("host, exc, words", [
    (_host("h1"), errors.InvalidInput, ("h1",)),
    (_host(uuid="uuid-h0"), errors.InvalidInput, ("uuid-h0",)),
    (_host(instances={"inst-2": {}}), errors.InvalidInput, ("inst-2",)),
    (_host(aggregates=["agg-nope"]), errors.UnknownAggregate, ("agg-nope",)),
    (_host(vcpu=Inventory(-1)), errors.InvalidInput, ("VCPU", "total")),
    (_host(memory_mb=Inventory(1024, allocation_ratio=math.nan)), errors.InvalidInput, ("allocation_ratio",)),
    (_host(disk_gb=Inventory(10, reserved=20)), errors.InvalidInput, ("reserved",)),
    (_host(vcpu=Inventory(8, min_unit=4, max_unit=2)), errors.InvalidInput, ("max_unit",)),
    (_host(vcpu=Inventory(8.0)), errors.InvalidInput, ("total",)),  # type: ignore[arg-type]
    (_host(num_io_ops=-1), errors.InvalidInput, ("num_io_ops",)),
    (_host(vcpus_used=1.5), errors.InvalidInput, ("vcpus_used",)),  # type: ignore[arg-type]
    (_host(metrics={"cpu.percent": math.inf}), errors.InvalidInput, ("cpu.percent",)),
    (_host(enabled=1), errors.InvalidInput, ("enabled",)),  # type: ignore[arg-type]
    (_host(traits="HW_A"), errors.InvalidInput, ("traits",)),
    (_host(name=""), errors.InvalidInput, ("name",)),
], ids=["duplicate name", "duplicate uuid", "instance already on a host", "unknown aggregate",
        "negative total", "NaN ratio", "reserved > total", "min_unit > max_unit", "float total",
        "negative count", "float count", "infinite metric", "int for a bool", "a string for traits",
        "empty name"])
def test_add_host_refuses(table: core.HostTable, host: model.Host, exc: type[Exception],
                          words: tuple[str, ...]) -> None:
    with refused(table, exc, *words):
        table.add_host(host)


# ------------------------------------------------------------------ update_host

@pytest.mark.parametrize("fields, words", [
    ({"bogus": 1}, ("bogus",)),
    ({"num_io_ops": 2, "bogus": 1}, ("bogus",)),
    ({"free_ram_mb": 100, "uuid": "other"}, ("uuid",)),
    ({"vcpus_used": "3"}, ("vcpus_used",)),
    ({"vcpus_used": 3.0}, ("vcpus_used",)),
    ({"num_instances": True}, ("num_instances",)),
    ({"enabled": 1}, ("enabled",)),
    ({"up": "yes"}, ("up",)),
    ({"traits": "HW_A"}, ("traits",)),
    ({"traits": ["HW_A", 3]}, ("traits",)),
    ({"hypervisor_version": "7000000"}, ("hypervisor_version",)),
    ({"supported_instances": [("x86_64", "kvm")]}, ("supported_instances",)),
    ({"stats": {"gpu": 2}}, ("stats",)),
    ({"metrics": {"cpu.percent": math.nan}}, ("cpu.percent",)),
    ({"cpu_info": [1, 2]}, ("cpu_info",)),
    ({"vcpus_used": -1}, ("vcpus_used",)),
    ({"num_io_ops": -1}, ("num_io_ops",)),
    ({"num_instances": -1}, ("num_instances",)),
    ({"failed_builds": -1}, ("failed_builds",)),
    ({"free_pci_devs": -1}, ("free_pci_devs",)),
    ({"hypervisor_version": -1}, ("hypervisor_version",)),
    ({"num_io_ops": 3, "traits": ["CUSTOM_Y"], "failed_builds": -1}, ("failed_builds",)),
], ids=lambda v: ",".join(f"{k}={v[k]!r}" for k in v) if isinstance(v, dict) else None)
def test_update_host_refuses(table: core.HostTable, fields: dict[str, Any], words: tuple[str, ...]) -> None:
    with refused(table, errors.InvalidInput, *words):
        table.update_host("h1", **fields)


def test_update_host_of_an_unknown_host(table: core.HostTable) -> None:
    with refused(table, errors.UnknownHost, "nope"):
        table.update_host("nope", num_io_ops=1)


# ------------------------------------------------------------------ claims

@pytest.mark.parametrize("allocations, exc, words", [
    ({"nope": {"VCPU": 1}}, errors.UnknownHost, ("nope",)),
    ({"h2": {"VCPU": 1}, "nope": {"VCPU": 1}}, errors.UnknownHost, ("nope",)),
    ({"h2": {"GPU": 1}}, errors.InvalidInput, ("GPU",)),
    ({"h2": {"vcpu": 1}}, errors.InvalidInput, ("vcpu",)),
    ({"h2": {"VCPU": 0}}, errors.InvalidInput, ("VCPU",)),
    ({"h2": {"VCPU": -2}}, errors.InvalidInput, ("VCPU",)),
    ({"h2": {"VCPU": 1, "MEMORY_MB": 0}}, errors.InvalidInput, ("MEMORY_MB",)),
    ({"h2": {"VCPU": 1}, "h1": {"DISK_GB": -1}}, errors.InvalidInput, ("DISK_GB",)),
    ({"h2": {"VCPU": 1.0}}, errors.InvalidInput, ("VCPU",)),
    ({"h2": {"VCPU": 1.5}}, errors.InvalidInput, ("VCPU",)),
    ({"h2": {"VCPU": "1"}}, errors.InvalidInput, ("VCPU",)),
    ({"h2": {"VCPU": True}}, errors.InvalidInput, ("VCPU",)),
    ({"h2": {"VCPU": None}}, errors.InvalidInput, ("VCPU",)),
    ({"h2": {"VCPU": 2**31}}, errors.InvalidInput, ("VCPU",)),
    ({}, errors.InvalidInput, ()),
    ({"h2": {}}, errors.InvalidInput, ("h2",)),
    ({"h2": {"VCPU": 1}, "h1": {}}, errors.InvalidInput, ("h1",)),
    ([("h2", {"VCPU": 1})], errors.InvalidInput, ("allocations",)),
    ({"h2": [("VCPU", 1)]}, errors.InvalidInput, ("h2",)),
], ids=["unknown host", "one host unknown", "unknown resource class", "lower-case class", "zero",
        "negative", "one amount zero", "negative on the second host", "float", "fraction", "string",
        "bool", "None", "above 2**31-1", "empty allocation", "empty allocation on a host",
        "empty allocation on the second host", "not a mapping", "amounts not a mapping"])
def test_claim_refuses_bad_allocations(table: core.HostTable, allocations: Any, exc: type[Exception],
                                       words: tuple[str, ...]) -> None:
    with refused(table, exc, *words):
        table.claim("c-new", allocations)
    # the same allocation as a replacement of an existing consumer's
    if allocations != {}:  # replace({}) is a release, not an error
        with refused(table, exc, *words):
            table.replace("c-1", allocations)


@pytest.mark.parametrize("generations, exc, words", [
    ({"h2": "0"}, errors.InvalidInput, ("generation",)),
    ({"h2": 0.0}, errors.InvalidInput, ("generation",)),
    ({"nope": 0}, errors.UnknownHost, ("nope",)),
    ([("h2", 0)], errors.InvalidInput, ("generations",)),
], ids=["string generation", "float generation", "unknown host", "not a mapping"])
def test_claim_refuses_bad_generations(table: core.HostTable, generations: Any, exc: type[Exception],
                                       words: tuple[str, ...]) -> None:
    with refused(table, exc, *words):
        table.claim("c-new", {"h2": {"VCPU": 1}}, generations)


def test_claim_refuses_an_empty_consumer(table: core.HostTable) -> None:
    with refused(table, errors.InvalidInput, "consumer"):
        table.claim("", {"h2": {"VCPU": 1}})


def test_refusals_of_the_ledger(table: core.HostTable) -> None:
    with refused(table, errors.ClaimConflict, "c-1"):
        table.claim("c-1", {"h2": {"VCPU": 1}})
    with refused(table, errors.UnknownConsumer, "nobody"):
        table.release("nobody")
    with refused(table, errors.ClaimConflict, "h0"):
        table.remove_host("h0")
    with refused(table, errors.UnknownHost, "nope"):
        table.remove_host("nope")


# ------------------------------------------------------------------ set_inventory

@pytest.mark.parametrize("rc, inventory, words", [
    ("VCPU", Inventory(-1), ("total",)),
    ("VCPU", Inventory(2**31), ("total",)),
    ("MEMORY_MB", Inventory(1024, reserved=-1), ("reserved",)),
    ("MEMORY_MB", Inventory(1024, reserved=1025), ("reserved",)),
    ("DISK_GB", Inventory(10, allocation_ratio=math.nan), ("allocation_ratio",)),
    ("DISK_GB", Inventory(10, allocation_ratio=math.inf), ("allocation_ratio",)),
    ("DISK_GB", Inventory(10, allocation_ratio=0.0), ("allocation_ratio",)),
    ("DISK_GB", Inventory(10, allocation_ratio=-1.0), ("allocation_ratio",)),
    ("VCPU", Inventory(8, min_unit=0), ("min_unit",)),
    ("VCPU", Inventory(8, min_unit=4, max_unit=2), ("max_unit",)),
    ("VCPU", Inventory(8, max_unit=2**31), ("max_unit",)),
    ("VCPU", Inventory(8, step_size=0), ("step_size",)),
    ("VCPU", Inventory(8, step_size=-2), ("step_size",)),
    ("VCPU", Inventory(8.5), ("total",)),  # type: ignore[arg-type]
    ("VCPU", Inventory(8, reserved=None), ("reserved",)),  # type: ignore[arg-type]
    ("VCPU", Inventory(8, allocation_ratio="2"), ("allocation_ratio",)),  # type: ignore[arg-type]
    ("GPU", Inventory(8), ("GPU",)),
], ids=["negative total", "total above 2**31-1", "negative reserved", "reserved > total", "NaN ratio",
        "inf ratio", "zero ratio", "negative ratio", "min_unit 0", "min_unit > max_unit",
        "max_unit above 2**31-1", "step 0", "negative step", "float total", "None reserved",
        "string ratio", "unknown resource class"])
def test_set_inventory_refuses_bad_values(table: core.HostTable, rc: str, inventory: Inventory,
                                          words: tuple[str, ...]) -> None:
    with refused(table, errors.InvalidInput, *words):
        table.set_inventory("h0", rc, inventory)
    # a right generation does not make a bad inventory good
    with refused(table, errors.InvalidInput, *words):
        table.set_inventory("h0", rc, inventory, table.generation("h0"))


@pytest.mark.parametrize("generation, exc, words", [
    ("0", errors.InvalidInput, ("generation",)),
    (1.0, errors.InvalidInput, ("generation",)),
    (-5, errors.GenerationConflict, ("h0",)),
], ids=["string generation", "float generation", "stale generation"])
def test_set_inventory_refuses_bad_generations(table: core.HostTable, generation: Any,
                                               exc: type[Exception], words: tuple[str, ...]) -> None:
    with refused(table, exc, *words):
        table.set_inventory("h0", "VCPU", Inventory(16), generation)


def test_set_inventory_of_an_unknown_host(table: core.HostTable) -> None:
    with refused(table, errors.UnknownHost, "nope"):
        table.set_inventory("nope", "VCPU", Inventory(8))


# ------------------------------------------------------------------ requests

FLAVOR = model.Flavor("m1", 1, 512, 1)


def _spec(**kw: Any) -> model.RequestSpec:
    return model.RequestSpec(flavor=kw.pop("flavor", FLAVOR), instance_uuids=kw.pop("instance_uuids", ["i-1"]),
                             **kw)


def _flavor(**kw: Any) -> model.Flavor:
    base = {"name": "m1", "vcpus": 1, "memory_mb": 512, "root_gb": 1}
    base.update(kw)
    return model.Flavor(**base)


BAD_REQUESTS: dict[str, tuple[model.RequestSpec, tuple[str, ...]]] = {
    "negative vcpus": (_spec(flavor=_flavor(vcpus=-1)), ("vcpus",)),
    "negative memory_mb": (_spec(flavor=_flavor(memory_mb=-512)), ("memory_mb",)),
    "negative root_gb": (_spec(flavor=_flavor(root_gb=-1)), ("root_gb",)),
    "negative ephemeral_gb": (_spec(flavor=_flavor(ephemeral_gb=-1)), ("ephemeral_gb",)),
    "negative swap": (_spec(flavor=_flavor(swap=-1)), ("swap",)),
    "float vcpus": (_spec(flavor=_flavor(vcpus=1.5)), ("vcpus",)),
    "no resources at all": (_spec(flavor=_flavor(vcpus=0, memory_mb=0, root_gb=0)), ("resources",)),
    "unknown architecture": (_spec(image=model.Image("img", {"hw_architecture": "z80"})), ("hw_architecture",)),
    "unknown hypervisor type": (_spec(image=model.Image("img", {"img_hv_type": "abacus"})), ("img_hv_type",)),
    "unknown vm mode": (_spec(image=model.Image("img", {"hw_vm_mode": "sideways"})), ("hw_vm_mode",)),
    "version predicate without operator": (
        _spec(image=model.Image("img", {"img_hv_requested_version": "6.0"})), ("img_hv_requested_version",)),
    "version predicate with a word": (
        _spec(image=model.Image("img", {"img_hv_requested_version": ">= banana"})), ("img_hv_requested_version",)),
    "version predicate, bad second part": (
        _spec(image=model.Image("img", {"img_hv_requested_version": ">= 6.0, <<7"})), ("img_hv_requested_version",)),
    "maxphysaddr bits not a number": (
        _spec(image=model.Image("img", {"hw_maxphysaddr_bits": "many"})), ("hw_maxphysaddr_bits",)),
    "duplicate instance uuids": (_spec(instance_uuids=["i-1", "i-2", "i-1"]), ("i-1",)),
    "no instance uuids": (_spec(instance_uuids=[]), ("instance_uuids",)),
    "instance uuids as one string": (_spec(instance_uuids="i-1"), ("instance_uuids",)),
    "unknown group policy": (_spec(instance_group=model.InstanceGroup("g", "friends")), ("policy",)),  # type: ignore[arg-type]
    "max_server_per_host on affinity": (
        _spec(instance_group=model.InstanceGroup("g", "affinity", max_server_per_host=2)), ("max_server_per_host",)),
    "max_server_per_host on soft-anti-affinity": (
        _spec(instance_group=model.InstanceGroup("g", "soft-anti-affinity", max_server_per_host=2)),
        ("max_server_per_host",)),
    "max_server_per_host 0": (
        _spec(instance_group=model.InstanceGroup("g", "anti-affinity", max_server_per_host=0)),
        ("max_server_per_host",)),
    "trait required and forbidden": (_spec(required_traits=["HW_A"], forbidden_traits=["HW_A"]), ("HW_A",)),
    "trait required by extra spec, forbidden by the request": (
        _spec(flavor=_flavor(extra_specs={"trait:HW_A": "required"}), forbidden_traits=["HW_A"]), ("HW_A",)),
    "trait both in extra specs and request": (
        _spec(flavor=_flavor(extra_specs={"trait:CUSTOM_Q": "forbidden"}), required_traits=["CUSTOM_Q"]),
        ("CUSTOM_Q",)),
    "unknown resources:RC": (_spec(flavor=_flavor(extra_specs={"resources:GPU": "1"})), ("GPU",)),
    "negative resources:VCPU": (_spec(flavor=_flavor(extra_specs={"resources:VCPU": "-1"})), ("resources:VCPU",)),
    "non-numeric resources:MEMORY_MB": (
        _spec(flavor=_flavor(extra_specs={"resources:MEMORY_MB": "lots"})), ("resources:MEMORY_MB",)),
}


@pytest.mark.parametrize("case", sorted(BAD_REQUESTS))
@pytest.mark.parametrize("call", ["prepare", "filter", "weigh", "select claim", "select dry run"])
def test_bad_requests_are_refused_everywhere(table: core.HostTable, case: str, call: str) -> None:
    spec, words = BAD_REQUESTS[case]
    sched = core.Scheduler(table)
    calls: dict[str, Callable[[], Any]] = {
        "prepare": lambda: sched.prepare(spec),
        "filter": lambda: sched.filter(spec),
        "weigh": lambda: sched.weigh(spec),
        "select claim": lambda: sched.select_destinations(spec, claim=True),
        "select dry run": lambda: sched.select_destinations(spec, claim=False),
    }
    with refused(table, errors.InvalidInput, *words):
        calls[call]()


@pytest.mark.parametrize("index", [-1, 1, 5])
def test_filter_index_out_of_range(table: core.HostTable, index: int) -> None:
    sched = core.Scheduler(table)
    with refused(table, errors.InvalidInput, "index"):
        sched.filter(_spec(), index)
    with refused(table, errors.InvalidInput, "index"):
        sched.weigh(_spec(), index)


@pytest.mark.parametrize("seed", ["7", 7.0, 1.5, True, [7], 2**128],
                         ids=["str", "float", "fraction", "bool", "list", "2**128"])
@pytest.mark.parametrize("claim", [True, False])
def test_select_refuses_a_seed_of_the_wrong_type(table: core.HostTable, seed: Any, claim: bool) -> None:
    sched = core.Scheduler(table)
    with refused(table, errors.InvalidInput, "seed"):
        sched.select_destinations(_spec(), claim=claim, seed=seed)


# ------------------------------------------------------------------ configuration

def test_unknown_filter_is_a_configuration_error() -> None:
    with pytest.raises(ConfigError, match="NoSuchFilter"):
        SchedulerConfig(enabled_filters=["ComputeFilter", "NoSuchFilter"])
    with pytest.raises(ConfigError, match="RamWeigher"):
        SchedulerConfig(weight_classes=["RamWeigher"])
    with pytest.raises(ConfigError, match="bogus_option"):
        SchedulerConfig.from_mapping({"bogus_option": 1})


MULTIPLIERS = [
    "ram_weight_multiplier", "cpu_weight_multiplier", "disk_weight_multiplier",
    "io_ops_weight_multiplier", "num_instances_weight_multiplier",
    "hypervisor_version_weight_multiplier", "build_failure_weight_multiplier",
    "cross_cell_move_weight_multiplier", "pci_weight_multiplier", "soft_affinity_weight_multiplier",
    "soft_anti_affinity_weight_multiplier", "image_props_weight_multiplier", "metrics_weight_multiplier",
    "metrics_weight_of_unavailable",
]


@pytest.mark.parametrize("value", [math.nan, math.inf, -math.inf])
@pytest.mark.parametrize("option", MULTIPLIERS)
def test_non_finite_multipliers_are_configuration_errors(option: str, value: float) -> None:
    with pytest.raises(ConfigError) as info:
        SchedulerConfig(**{option: value})
    assert option in str(info.value)


@pytest.mark.parametrize("option", ["metrics_weight_setting", "image_props_weight_setting"])
def test_non_finite_weight_settings_are_configuration_errors(option: str) -> None:
    with pytest.raises(ConfigError, match=option):
        SchedulerConfig(**{option: {"cpu.percent": math.nan}})


def test_scheduler_rechecks_a_config_that_skipped_validation(table: core.HostTable) -> None:
    """A config object that was never validated (built around __post_init__) must not
    slip an unknown filter or a NaN multiplier into the core."""
    for bad in ({"enabled_filters": ("NoSuchFilter",)}, {"ram_weight_multiplier": math.nan}):
        cfg = SchedulerConfig()
        object.__setattr__(cfg, *next(iter(bad.items())))
        with refused(table, (ConfigError, errors.InvalidInput), next(iter(bad))):
            core.Scheduler(table, cfg)
