"""The scheduler manager over a real database: its in-memory table follows the
database through reports, and its claims stay correct when others write too
(another scheduler replica, a conductor releasing behind its back)."""

from __future__ import annotations

import logging
import threading
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from novalite import errors
from novalite.db.database import Database
from novalite.objects.records import ComputeView, Inventory
from novalite.placement import Flavor, InstanceGroup, RequestSpec, SchedulerConfig
from novalite.scheduler.manager import SchedulerManager

SMALL = Flavor("small", vcpus=1, memory_mb=512, root_gb=1)


@pytest.fixture
def db(tmp_path: Path) -> Database:
    database = Database(f"sqlite:///{tmp_path}/novalite.db")
    database.upgrade()
    yield database  # type: ignore[misc]
    database.close()


def add_host(db: Database, name: str, vcpus: int = 4) -> str:
    service = db.register_service(name, "compute")
    return db.upsert_host(name, service_id=service.id, inventories={
        "VCPU": Inventory(total=vcpus), "MEMORY_MB": Inventory(total=8192),
        "DISK_GB": Inventory(total=100)}).uuid


def scheduler(db: Database) -> SchedulerManager:
    manager = SchedulerManager(db, SchedulerConfig())
    manager.load()
    return manager


def place(manager: SchedulerManager, count: int = 1) -> list[str]:
    spec = RequestSpec(flavor=SMALL, instance_uuids=[str(uuid.uuid4()) for _ in range(count)])
    return [sels[0].host for sels in manager.select_destinations(spec)]


def test_two_replicas_never_overcommit_a_host(db: Database) -> None:
    add_host(db, "h1", vcpus=3)
    a, b = scheduler(db), scheduler(db)
    # each replica believes the host is empty at first; the generation check makes
    # the second one re-read the host instead of overcommitting it
    assert place(a, 2) == ["h1", "h1"]
    assert place(b) == ["h1"]
    with pytest.raises(errors.NoValidHost):
        place(a)
    with pytest.raises(errors.NoValidHost):
        place(b)
    assert db.get_host("h1").usage["VCPU"] == 3


def test_concurrent_requests_share_rounds_and_never_overcommit(db: Database) -> None:
    for name in ("h1", "h2", "h3"):
        add_host(db, name, vcpus=4)
    s = scheduler(db)
    barrier = threading.Barrier(16)

    def one(_: int) -> str:
        barrier.wait()
        try:
            return place(s)[0]
        except errors.NoValidHost:
            return "none"

    with ThreadPoolExecutor(16) as pool:
        placed = list(pool.map(one, range(16)))
    assert sorted(placed).count("none") == 4
    assert {h: placed.count(h) for h in ("h1", "h2", "h3")} == {"h1": 4, "h2": 4, "h3": 4}
    assert {h.name: h.usage["VCPU"] for h in db.list_hosts()} == {"h1": 4, "h2": 4, "h3": 4}
    assert {h: s.table.usage(h)["VCPU"] for h in ("h1", "h2", "h3")} == {"h1": 4, "h2": 4, "h3": 4}


def test_a_lost_race_is_undone_and_decided_again(db: Database) -> None:
    add_host(db, "h1", vcpus=2)
    add_host(db, "h2", vcpus=2)
    # the RAM weigher prefers h1 (more free RAM in the compute view)
    db.set_compute_views({
        "h1": ComputeView(vcpus_used=0, free_ram_mb=8192, free_disk_mb=0, num_instances=0,
                          num_io_ops=0, failed_builds=0),
        "h2": ComputeView(vcpus_used=0, free_ram_mb=4096, free_disk_mb=0, num_instances=0,
                          num_io_ops=0, failed_builds=0)})
    s, other = scheduler(db), scheduler(db)
    # another replica fills h1 behind this scheduler's back; this one still picks
    # h1 first, loses the compare-and-swap, undoes its claim and lands on h2
    other.select_destinations(RequestSpec(flavor=Flavor("two", vcpus=2, memory_mb=512),
                                          instance_uuids=["big"]))
    assert db.get_allocations("big") == {db.get_host("h1").uuid: {"VCPU": 2, "MEMORY_MB": 512}}
    assert place(s) == ["h2"]
    assert s.table.usage("h1")["VCPU"] == 2 and s.table.usage("h2")["VCPU"] == 1
    assert db.get_host("h2").usage["VCPU"] == 1


def test_a_release_behind_its_back_is_seen_after_its_own_release(db: Database) -> None:
    add_host(db, "h1", vcpus=2)
    s = scheduler(db)
    first = RequestSpec(flavor=SMALL, instance_uuids=["a"])
    second = RequestSpec(flavor=SMALL, instance_uuids=["b"])
    s.select_destinations(first)
    s.select_destinations(second)
    # someone else frees "a" (a deleted server), then the scheduler frees "b": its
    # generation jumped by two, so it must not take the database's generation for
    # what it has seen, or it would never learn that "a" is gone
    db.release_allocations("a")
    s.release("b")
    assert db.get_host("h1").usage == {}
    s.refresh_hosts(["h1"])
    assert s.table.usage("h1").get("VCPU", 0) == 0
    assert place(s, 2) == ["h1", "h1"]


def test_a_deleted_servers_release_leaves_no_stale_generation(
        db: Database, caplog: pytest.LogCaptureFixture) -> None:
    """Deleting the record releases the allocation (moving the host's generation)
    before the conductor tells the scheduler: the next claim there must not lose
    its compare-and-swap to the scheduler's own outdated generation."""
    add_host(db, "h1", vcpus=2)
    s = scheduler(db)
    s.select_destinations(RequestSpec(flavor=SMALL, instance_uuids=["a"]))
    db.release_allocations("a")  # as delete_instance does
    s.release("a")
    with caplog.at_level(logging.INFO, logger="novalite.scheduler.manager"):
        assert place(s, 2) == ["h1", "h1"]
    assert not [r for r in caplog.records if "conflict" in r.getMessage()]
    assert db.get_host("h1").usage["VCPU"] == 2


def test_a_release_after_other_changes_re_reads_the_host(db: Database) -> None:
    """Two changes behind the scheduler's back before it hears of one: the
    generation moved by two, so it re-reads the host and sees both."""
    add_host(db, "h1", vcpus=2)
    s = scheduler(db)
    s.select_destinations(RequestSpec(flavor=SMALL, instance_uuids=["a"]))
    s.select_destinations(RequestSpec(flavor=SMALL, instance_uuids=["b"]))
    db.release_allocations("a")
    db.release_allocations("b")
    s.release("a")
    assert s.table.usage("h1").get("VCPU", 0) == 0
    assert place(s, 2) == ["h1", "h1"]


def test_a_claim_between_a_reports_read_and_its_apply_is_not_undone(
        db: Database, caplog: pytest.LogCaptureFixture) -> None:
    """A report's hosts are read before the table is locked: when this scheduler
    claims on one of them in between, the older snapshot must not roll the host's
    generation back (its next claim would lose the compare-and-swap)."""
    add_host(db, "h1", vcpus=4)
    s = scheduler(db)
    read = db.get_hosts

    def read_then_claim(*args: Any, **kwargs: Any) -> Any:
        found = read(*args, **kwargs)
        if not claimed:
            claimed.append(place(s))  # lands between the read and the apply
        return found
    claimed: list[Any] = []
    db.get_hosts = read_then_claim  # type: ignore[method-assign]
    s.refresh_hosts(["h1"])
    db.get_hosts = read  # type: ignore[method-assign]
    assert claimed == [["h1"]]
    assert s.table.usage("h1")["VCPU"] == db.get_host("h1").usage["VCPU"] == 1
    with caplog.at_level(logging.INFO, logger="novalite.scheduler.manager"):
        assert place(s) == ["h1"]
    assert not [r for r in caplog.records if "conflict" in r.getMessage()]


def test_reports_add_update_and_drop_hosts(db: Database) -> None:
    add_host(db, "h1")
    s = scheduler(db)
    add_host(db, "h2")
    db.set_compute_views({
        "h1": ComputeView(vcpus_used=3, free_ram_mb=100, free_disk_mb=0,
                          num_instances=3, num_io_ops=0, failed_builds=0),
        "h2": ComputeView(vcpus_used=0, free_ram_mb=8192, free_disk_mb=102400,
                          num_instances=0, num_io_ops=0, failed_builds=0)})
    s.refresh_hosts(["h1", "h2"])
    assert sorted(s.hosts()) == ["h1", "h2"]
    free_ram = dict(zip(s.table.host_names(), s.table.column("free_ram_mb").tolist()))
    assert (free_ram["h1"], free_ram["h2"]) == (100, 8192)
    # the RAM weigher now prefers the emptier h2
    assert place(s) == ["h2"]
    db.release_allocations(next(iter(db.list_allocations(db.get_host("h2").uuid))).consumer_uuid)
    db.delete_host("h2")
    s.refresh_hosts(["h2"])
    assert s.hosts() == ["h1"]


def test_a_report_must_name_hosts() -> None:
    from novalite import convert

    with pytest.raises(errors.Invalid) as e:
        convert.host_names([])
    assert e.value.field == "names"
    with pytest.raises(errors.Invalid) as e:
        convert.host_names(["ok", "x" * 256])
    assert e.value.field == "names[1]"


def test_the_table_follows_aggregate_changes_when_told(db: Database) -> None:
    """refresh_aggregates (what the API's fanout calls): zones, metadata, members
    and deleted aggregates reach the filters of the next request."""
    for name in ("h1", "h2", "h3"):
        add_host(db, name)
    s = SchedulerManager(db, SchedulerConfig(enabled_filters=[
        "ComputeFilter", "AggregateInstanceExtraSpecsFilter"]))
    s.load()

    def hosts_for(zone: str | None = None, **specs: str) -> set[str]:
        spec = RequestSpec(flavor=Flavor("f", 1, 512, 1, extra_specs=specs),
                           instance_uuids=["probe"], availability_zone=zone)
        return {h for h, ok in zip(s.table.host_names(), s.scheduler.filter(spec).mask) if ok}

    rack = db.create_aggregate("rack", availability_zone="az-1")
    db.add_aggregate_host(rack.id, "h2")
    assert hosts_for("az-1") == {"h1", "h2", "h3"}  # not told yet: no such zone here
    s.refresh_aggregates()
    assert hosts_for("az-1") == {"h2"}
    db.set_aggregate_metadata(rack.id, {"availability_zone": "az-2", "ssd": "true"})
    db.add_aggregate_host(rack.id, "h3")
    s.refresh_aggregates()
    assert hosts_for("az-1") == {"h1", "h2", "h3"} and hosts_for("az-2") == {"h2", "h3"}
    assert hosts_for(**{"aggregate_instance_extra_specs:ssd": "true"}) == {"h2", "h3"}
    for host in ("h2", "h3"):
        db.remove_aggregate_host(rack.id, host)
    db.delete_aggregate(rack.id)
    s.refresh_aggregates()
    assert hosts_for("az-2") == {"h1", "h2", "h3"}
    assert s.table.host_aggregates("h2") == []


def test_no_valid_host_says_which_trait_no_host_has(db: Database) -> None:
    uuids = {name: add_host(db, name) for name in ("h1", "h2", "h3")}
    db.set_reported_traits(uuids["h1"], ["HW_CPU_X86_AVX2"])
    db.add_host_trait("h2", "CUSTOM_GPU")
    s = scheduler(db)

    def place_with(**specs: str) -> str:
        spec = RequestSpec(flavor=Flavor("f", 1, 512, 1, extra_specs=specs),
                           instance_uuids=[str(uuid.uuid4())])
        return s.select_destinations(spec)[0][0].host

    assert place_with(**{"trait:HW_CPU_X86_AVX2": "required"}) == "h1"
    assert place_with(**{"trait:CUSTOM_GPU": "required", "trait:HW_CPU_X86_AVX2": "forbidden"}) == "h2"
    with pytest.raises(errors.NoValidHost) as e:
        place_with(**{"trait:HW_CPU_X86_AVX512F": "required", "trait:CUSTOM_GPU": "required"})
    assert e.value.missing == ["trait CUSTOM_GPU is required: 1 of 3 hosts have it",
                               "trait HW_CPU_X86_AVX512F is required: no host has it"]
    with pytest.raises(errors.NoValidHost) as e:
        place_with(**{"trait:CUSTOM_GPU": "required", "trait:HW_CPU_X86_AVX2": "required"})
    assert e.value.missing == ["trait CUSTOM_GPU is required: 1 of 3 hosts have it",
                               "trait HW_CPU_X86_AVX2 is required: 1 of 3 hosts have it"]
    # a failure that is not about traits does not mention them
    with pytest.raises(errors.NoValidHost) as e:
        s.select_destinations(RequestSpec(flavor=Flavor("big", 64, 512, 1, extra_specs={
            "trait:HW_CPU_X86_AVX2": "required"}), instance_uuids=["x"]))
    assert e.value.missing == []


def test_a_group_policy_whose_filter_is_off_is_refused_not_ignored(db: Database) -> None:
    """Nova's UnsupportedPolicyException: without ServerGroupAntiAffinityFilter the
    scheduler would place the group's servers anywhere, so it places none."""
    add_host(db, "h1")
    s = SchedulerManager(db, SchedulerConfig(enabled_filters=["ComputeFilter"]))
    s.load()
    spec = RequestSpec(flavor=SMALL, instance_uuids=["a", "b"],
                       instance_group=InstanceGroup("g", "anti-affinity", members=["a", "b"]))
    with pytest.raises(errors.InvalidState, match="ServerGroupAntiAffinityFilter is not in the "
                                                  "scheduler's enabled_filters"):
        s.select_destinations(spec)
    assert db.get_host("h1").usage == {}
