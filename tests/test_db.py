"""The control plane's database: every unit of work, on SQLite and, when
NOVALITE_TEST_POSTGRES_URL is set, on PostgreSQL (each test in a fresh schema)."""

from __future__ import annotations

import os
import shutil
import sqlite3
import subprocess
import sys
import threading
import time
import uuid
from contextlib import closing
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any, Callable, Iterator

import pytest

from novalite import errors
from novalite.db import Database
from novalite.objects.records import ComputeView, EventStep, Inventory, NewFault
from novalite.objects.states import PowerState, TaskState, VmState

PYTHON_DIR = Path(__file__).resolve().parent.parent / "python"


# --- backends ---------------------------------------------------------------------------

class FakeClock:
    def __init__(self) -> None:
        self.now = datetime(2025, 1, 1, tzinfo=timezone.utc)

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def open_db(db_url: str) -> Iterator[Callable[..., Database]]:
    """Opens Databases on the test's URL (schema migrated) and closes them after."""
    opened: list[Database] = []

    def open_(**kwargs: Any) -> Database:
        database = Database(db_url, **kwargs)
        opened.append(database)
        database.upgrade()
        return database

    yield open_
    for database in opened:
        database.close()


@pytest.fixture
def db(open_db: Callable[..., Database]) -> Database:
    return open_db()


@pytest.fixture
def flavor_id(db: Database) -> str:
    return db.create_flavor(name="m1.small", vcpus=1, memory_mb=512, root_gb=1).id


def create(db: Database, flavor_id: str, project: str = "p1", **kwargs: Any) -> list[Any]:
    kwargs.setdefault("name", "vm")
    return db.create_instances(project_id=project, user_id="u1", flavor_id=flavor_id, **kwargs)


def host_with(db: Database, name: str = "host1", **inventories: Inventory) -> Any:
    return db.upsert_host(name, inventories=inventories or {
        "VCPU": Inventory(total=8, allocation_ratio=2.0),
        "MEMORY_MB": Inventory(total=8192, reserved=512),
        "DISK_GB": Inventory(total=100),
    })


def run_threads(count: int, target: Callable[[int], Any]) -> list[Any]:
    """Run target(i) in ``count`` threads released together; results or exceptions."""
    barrier = threading.Barrier(count)
    results: list[Any] = [None] * count

    def run(i: int) -> None:
        barrier.wait()
        try:
            results[i] = target(i)
        except Exception as e:  # noqa: BLE001 - the test inspects what each got
            results[i] = e

    threads = [threading.Thread(target=run, args=(i,)) for i in range(count)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    return results


# --- engine ------------------------------------------------------------------------------

def test_sqlite_runs_in_wal_mode_with_foreign_keys(tmp_path: Path) -> None:
    database = Database(f"sqlite:///{tmp_path}/n.db")
    with database.engine.connect() as conn:
        assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
        assert conn.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1
        assert conn.exec_driver_sql("PRAGMA busy_timeout").scalar() == 30000
    database.close()


def test_in_memory_sqlite_is_refused() -> None:
    with pytest.raises(errors.Invalid) as e:
        Database("sqlite://")
    assert e.value.field == "url"


def test_plain_postgresql_url_means_psycopg3() -> None:
    assert Database("postgresql://u@localhost/n").url.drivername == "postgresql+psycopg"


def test_timestamps_come_back_in_utc(db: Database, flavor_id: str) -> None:
    instance = create(db, flavor_id)[0]
    fetched = db.get_instance(instance.id)
    assert fetched.created_at.tzinfo == timezone.utc
    assert fetched.created_at == instance.created_at
    later = datetime(2030, 6, 1, 12, 0, tzinfo=timezone(timedelta(hours=2)))
    db.update_instance(instance.id, launched_at=later)
    assert db.get_instance(instance.id).launched_at == later
    assert db.get_instance(instance.id).launched_at.tzinfo == timezone.utc  # type: ignore[union-attr]


def test_committed_write_survives_a_crash_of_the_writer(db_url: str, db: Database) -> None:
    """A process that gets its answer and dies at once (no close, no cleanup) has
    still made the write durable: a fresh Database on the same URL sees it."""
    script = (
        "import os, sys\n"
        "from novalite.db import Database\n"
        "db = Database(sys.argv[1])\n"
        "f = db.create_flavor(name='durable', vcpus=2, memory_mb=1024)\n"
        "print(f.id, flush=True)\n"
        "os._exit(0)\n"
    )
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(
        [str(PYTHON_DIR), os.environ.get("PYTHONPATH", "")])}
    out = subprocess.run([sys.executable, "-c", script, db_url], env=env,
                         capture_output=True, text=True, timeout=60, check=True)
    flavor_id = out.stdout.strip()
    fresh = Database(db_url)
    try:
        assert fresh.get_flavor(flavor_id).name == "durable"
    finally:
        fresh.close()
    assert db.get_flavor(flavor_id).vcpus == 2


# --- flavors and images -----------------------------------------------------------------

def test_flavor_lifecycle(db: Database) -> None:
    small = db.create_flavor(name="m1.small", vcpus=1, memory_mb=512, root_gb=1,
                             extra_specs={"hw:cpu_policy": "shared"})
    db.create_flavor(name="m1.private", vcpus=2, memory_mb=1024, is_public=False)
    assert db.get_flavor(small.id) == small
    assert [f.name for f in db.list_flavors()] == ["m1.private", "m1.small"]
    assert [f.name for f in db.list_flavors(is_public=True)] == ["m1.small"]

    with pytest.raises(errors.Conflict):
        db.create_flavor(name="m1.small", vcpus=4, memory_mb=4096)

    db.delete_flavor(small.id)
    with pytest.raises(errors.NotFound):
        db.get_flavor(small.id)
    assert db.get_flavor(small.id, include_deleted=True).deleted_at is not None
    with pytest.raises(errors.NotFound):
        db.delete_flavor(small.id)
    # The name of a deleted flavor can be used again.
    again = db.create_flavor(name="m1.small", vcpus=4, memory_mb=4096)
    assert again.id != small.id


def test_flavor_extra_specs(db: Database, flavor_id: str) -> None:
    db.set_flavor_extra_specs(flavor_id, {"a": "1", "b": "2"})
    assert db.set_flavor_extra_specs(flavor_id, {"b": "3"}).extra_specs == {"a": "1", "b": "3"}
    assert db.unset_flavor_extra_specs(flavor_id, ["a"]).extra_specs == {"b": "3"}
    with pytest.raises(errors.NotFound):
        db.unset_flavor_extra_specs(flavor_id, ["b", "missing"])
    assert db.get_flavor(flavor_id).extra_specs == {"b": "3"}


@pytest.mark.parametrize("field, kwargs", [
    ("name", {"name": ""}),
    ("name", {"name": "x" * 256}),
    ("vcpus", {"vcpus": 0}),
    ("memory_mb", {"memory_mb": -1}),
    ("root_gb", {"root_gb": -5}),
    ("vcpus", {"vcpus": True}),
])
def test_bad_flavor_names_the_field_and_writes_nothing(db: Database, field: str,
                                                       kwargs: dict[str, Any]) -> None:
    args: dict[str, Any] = {"name": "ok", "vcpus": 1, "memory_mb": 1, **kwargs}
    with pytest.raises(errors.Invalid) as e:
        db.create_flavor(**args)
    assert e.value.field == field
    assert db.list_flavors() == []


def test_image_lifecycle(db: Database) -> None:
    image = db.register_image(name="cirros", path="/var/lib/novalite/cirros.qcow2",
                              disk_format="qcow2", size_bytes=16 << 20,
                              properties={"hw_machine_type": "q35"})
    assert db.get_image(image.id) == image
    assert [i.name for i in db.list_images()] == ["cirros"]
    db.delete_image(image.id)
    assert db.list_images() == []
    with pytest.raises(errors.NotFound):
        db.get_image(image.id)
    assert db.get_image(image.id, include_deleted=True).properties == {"hw_machine_type": "q35"}


# --- instances ----------------------------------------------------------------------------

def test_create_batch_names_states_quota_and_actions(db: Database, flavor_id: str) -> None:
    image = db.register_image(name="cirros", path="/img", disk_format="qcow2")
    created = create(db, flavor_id, name="web", min_count=3, max_count=3, image_id=image.id,
                     metadata={"role": "web"}, availability_zone="az1", request_id="req-1")
    assert [i.name for i in created] == ["web-1", "web-2", "web-3"]
    assert len({i.reservation_id for i in created}) == 1
    for instance in created:
        assert (instance.vm_state, instance.task_state) == (VmState.BUILDING,
                                                            TaskState.SCHEDULING)
        assert instance.power_state == PowerState.NOSTATE
        assert instance.status == "BUILD"
        assert (instance.vcpus, instance.memory_mb) == (1, 512)
        assert instance.metadata == {"role": "web"}
        assert db.get_instance(instance.id) == instance
        [action] = db.list_instance_actions(instance.id)
        assert (action.action, action.request_id) == ("create", "req-1")
    assert db.get_quota("p1").usage == {"instances": 3, "cores": 3, "ram": 1536}
    assert [i.name for i in create(db, flavor_id, name="solo")] == ["solo"]


@pytest.mark.parametrize("field, kwargs", [
    ("flavor_id", {"flavor_id": "no-such-flavor"}),
    ("image_id", {"image_id": "no-such-image"}),
    ("group_id", {"group_id": "no-such-group"}),
    ("min_count", {"min_count": 0}),
    ("max_count", {"min_count": 3, "max_count": 2}),
    ("name", {"name": ""}),
    ("name", {"name": "x" * 10_000_000}),
    ("metadata", {"metadata": {"": "v"}}),
])
def test_bad_create_names_the_field_and_writes_nothing(db: Database, flavor_id: str,
                                                       field: str,
                                                       kwargs: dict[str, Any]) -> None:
    args: dict[str, Any] = {"flavor_id": flavor_id, **kwargs}
    with pytest.raises(errors.Invalid) as e:
        create(db, **args)
    assert e.value.field == field
    assert db.list_instances().instances == []
    assert db.get_quota("p1").usage == {"instances": 0, "cores": 0, "ram": 0}


def test_deleted_flavor_cannot_build_but_its_instances_keep_it(db: Database,
                                                               flavor_id: str) -> None:
    instance = create(db, flavor_id)[0]
    db.delete_flavor(flavor_id)
    with pytest.raises(errors.Invalid):
        create(db, flavor_id)
    assert db.get_flavor(db.get_instance(instance.id).flavor_id,
                         include_deleted=True).vcpus == 1


def test_get_hides_other_projects_and_deleted(db: Database, flavor_id: str) -> None:
    instance = create(db, flavor_id, project="p1")[0]
    assert db.get_instance(instance.id, project_id="p1").id == instance.id
    with pytest.raises(errors.NotFound):
        db.get_instance(instance.id, project_id="p2")
    with pytest.raises(errors.NotFound):
        db.delete_instance(instance.id, project_id="p2")
    db.delete_instance(instance.id)
    with pytest.raises(errors.NotFound):
        db.get_instance(instance.id)
    assert db.get_instance(instance.id, include_deleted=True).status == "DELETED"


def test_list_filters(db: Database, flavor_id: str) -> None:
    web = create(db, flavor_id, project="p1", name="Web", min_count=2, max_count=2)
    db_vm = create(db, flavor_id, project="p1", name="db_1")[0]
    other = create(db, flavor_id, project="p2", name="web")[0]
    db.update_instance(web[0].id, vm_state=VmState.ACTIVE, task_state=None, host="h1")
    db.update_instance(web[1].id, vm_state=VmState.ACTIVE, task_state=TaskState.REBOOTING,
                       host="h2")
    db.update_instance(other.id, vm_state=VmState.ERROR, task_state=None)

    def ids(**filters: Any) -> set[str]:
        return {i.id for i in db.list_instances(**filters).instances}

    assert ids(project_id="p1") == {web[0].id, web[1].id, db_vm.id}
    assert ids(status="ACTIVE") == {web[0].id}
    assert ids(status="REBOOT") == {web[1].id}
    assert ids(status="BUILD") == {db_vm.id}
    assert ids(status="ERROR") == {other.id}
    assert ids(vm_state="active") == {web[0].id, web[1].id}
    assert ids(name="web") == {web[0].id, web[1].id, other.id}  # case-insensitive
    assert ids(name="b_") == {db_vm.id}  # _ is a character, not a wildcard
    assert ids(host="h2") == {web[1].id}
    assert ids(reservation_id=web[0].reservation_id) == {web[0].id, web[1].id}
    assert ids(project_id="p2", status="ERROR") == {other.id}
    db.delete_instance(db_vm.id)
    assert db_vm.id not in ids()
    assert ids(status="DELETED", include_deleted=True) == {db_vm.id}
    with pytest.raises(errors.Invalid) as e:
        db.list_instances(status="SLEEPING")
    assert e.value.field == "status"


def test_keyset_pagination_returns_every_row_exactly_once(
        open_db: Callable[..., Database], clock: FakeClock) -> None:
    db = open_db(clock=clock, default_quotas={"instances": -1, "cores": -1, "ram": -1})
    flavor = db.create_flavor(name="tiny", vcpus=1, memory_mb=64)
    # Batches share one created_at, so ties on the timestamp are the rule here.
    for count in (7, 1, 13, 5, 1, 20):
        create(db, flavor.id, min_count=count, max_count=count)
        clock.advance(1)
    everything = db.list_instances().instances
    assert len(everything) == 47

    seen: list[str] = []
    marker = None
    inserted_meanwhile = []
    while True:
        page = db.list_instances(limit=6, marker=marker)
        assert len(page.instances) <= 6
        seen += [i.id for i in page.instances]
        if page.next_marker is None:
            break
        marker = page.next_marker
        # New servers are newer than every page still to come: they must not
        # shift it (no row repeated, none skipped).
        inserted_meanwhile += [i.id for i in create(db, flavor.id)]
    assert seen == [i.id for i in everything]
    assert len(set(seen)) == 47
    assert not set(seen) & set(inserted_meanwhile)

    # When the last page is exactly full, it says so: no empty page follows.
    create(db, flavor.id, project="p2", min_count=6, max_count=6)
    first = db.list_instances(project_id="p2", limit=3)
    second = db.list_instances(project_id="p2", limit=3, marker=first.next_marker)
    assert len(second.instances) == 3 and second.next_marker is None

    with pytest.raises(errors.Invalid) as e:
        db.list_instances(marker="not-a-marker")
    assert e.value.field == "marker"


def test_state_compare_and_swap(db: Database, flavor_id: str) -> None:
    instance = create(db, flavor_id)[0]
    assert not db.update_instance(instance.id, expected_vm_state=VmState.ACTIVE,
                                  vm_state=VmState.STOPPED)
    assert db.get_instance(instance.id).vm_state == VmState.BUILDING

    assert db.update_instance(instance.id, expected_vm_state=VmState.BUILDING,
                              expected_task_state=TaskState.SCHEDULING,
                              task_state=None, host="h1", node="h1", add_attempt=True)
    current = db.get_instance(instance.id)
    assert (current.task_state, current.host, current.attempts) == (None, "h1", 1)
    assert current.updated_at >= instance.updated_at

    # None is a state to expect, and a collection means "any of these".
    assert db.update_instance(instance.id, expected_task_state=None,
                              task_state=TaskState.SPAWNING)
    assert db.update_instance(instance.id,
                              expected_task_state=[TaskState.NETWORKING, TaskState.SPAWNING],
                              vm_state=VmState.ACTIVE, task_state=None,
                              power_state=PowerState.RUNNING)
    assert db.get_instance(instance.id).status == "ACTIVE"
    assert not db.update_instance(instance.id, expected_task_state=TaskState.SPAWNING,
                                  vm_state=VmState.ERROR)
    assert db.get_instance(instance.id).status == "ACTIVE"

    with pytest.raises(errors.NotFound):
        db.update_instance(str(uuid.uuid4()), task_state=None)
    with pytest.raises(errors.Invalid):
        db.update_instance(instance.id, vm_state=VmState.DELETED)
    with pytest.raises(errors.Invalid):
        db.update_instance(instance.id, task_state="dancing")


def test_racing_state_changes_only_one_applies(db: Database, flavor_id: str) -> None:
    instance = create(db, flavor_id)[0]
    results = run_threads(8, lambda i: db.update_instance(
        instance.id, expected_task_state=TaskState.SCHEDULING, task_state=None, host=f"h{i}",
        add_attempt=True))
    assert sorted(results) == [False] * 7 + [True]
    winner = results.index(True)
    current = db.get_instance(instance.id)
    assert (current.host, current.attempts) == (f"h{winner}", 1)


def test_error_state_and_fault_in_one_write(db: Database, flavor_id: str) -> None:
    instance = create(db, flavor_id)[0]
    rejections = {"RamFilter": 18, "ComputeFilter": 2}
    assert db.update_instance(
        instance.id, expected_vm_state=VmState.BUILDING, vm_state=VmState.ERROR,
        task_state=None, fault=NewFault(500, "No valid host was found.",
                                        {"rejections": rejections}))
    current = db.get_instance(instance.id)
    assert current.status == "ERROR"
    assert current.fault is not None
    assert current.fault.details == {"rejections": rejections}
    # A refused change records no fault.
    assert not db.update_instance(instance.id, expected_vm_state=VmState.BUILDING,
                                  fault=NewFault(500, "never"))
    assert db.latest_instance_fault(instance.id).message == "No valid host was found."  # type: ignore[union-attr]


def test_action_steps_are_written_with_the_state_change(db: Database, flavor_id: str) -> None:
    """The create action's events go with the state changes that make them: opened,
    closed by name, on the instance's open action only; a refused change writes
    none; closing needs a result."""
    instance = create(db, flavor_id)[0]
    build = EventStep("create", "compute__do_build_and_run_instance")
    assert db.update_instance(instance.id, expected_vm_state=VmState.BUILDING, host="h1",
                              task_state=TaskState.SPAWNING, events=[
                                  EventStep("create", "conductor_schedule_and_build_instances",
                                            result="Success"), build])
    assert not db.update_instance(instance.id, expected_vm_state=VmState.ACTIVE, events=[build])
    with pytest.raises(errors.Invalid) as e:
        db.update_instance(instance.id, events=[EventStep("create", build.event, close=True)])
    assert e.value.field == "events.result"
    assert db.update_instance(instance.id, vm_state=VmState.ACTIVE, task_state=None,
                              finish_action="create", events=[
                                  EventStep("create", build.event, result="Success", close=True)])
    # the action is finished now: a step for it has nothing to attach to
    assert db.update_instance(instance.id, events=[EventStep("create", "late")])
    [action] = db.list_instance_actions(instance.id)
    assert action.finish_time is not None
    assert [(ev.event, ev.result, ev.finish_time is not None) for ev in action.events] == [
        ("conductor_schedule_and_build_instances", "Success", True),
        ("compute__do_build_and_run_instance", "Success", True)]


def test_faults_latest_wins(db: Database, flavor_id: str) -> None:
    instance = create(db, flavor_id)[0]
    assert db.latest_instance_fault(instance.id) is None
    db.add_instance_fault(instance.id, code=500, message="build failed on h1")
    db.add_instance_fault(instance.id, code=500, message="build failed on h2",
                          details={"host": "h2"})
    assert db.latest_instance_fault(instance.id).message == "build failed on h2"  # type: ignore[union-attr]
    listed = db.list_instances().instances[0]
    assert listed.fault is not None and listed.fault.details == {"host": "h2"}
    with pytest.raises(errors.NotFound):
        db.add_instance_fault("nope", code=500, message="x")


def test_actions_and_events(db: Database, flavor_id: str) -> None:
    instance = create(db, flavor_id, request_id="req-create")[0]
    [create_action] = db.list_instance_actions(instance.id)
    event = db.start_action_event(create_action.id, "compute_build_and_run_instance")
    assert event.finish_time is None
    db.finish_action_event(event.id, result="Success")
    finished = db.finish_instance_action(create_action.id)
    assert finished.finish_time is not None
    assert [(e.event, e.result) for e in finished.events] == [
        ("compute_build_and_run_instance", "Success")]

    reboot = db.start_instance_action(instance.id, "reboot", request_id="req-2",
                                      user_id="u1", project_id="p1")
    failed = db.start_action_event(reboot.id, "compute_reboot_instance")
    db.finish_action_event(failed.id, result="Error", traceback="Traceback ...")
    actions = db.list_instance_actions(instance.id)
    assert [a.action for a in actions] == ["create", "reboot"]
    assert actions[1].events[0].traceback == "Traceback ..."
    with pytest.raises(errors.NotFound):
        db.start_instance_action("nope", "reboot")
    with pytest.raises(errors.NotFound):
        db.finish_instance_action(10**9)


# --- quotas -------------------------------------------------------------------------------

def test_quota_defaults_limits_and_usage(open_db: Callable[..., Database]) -> None:
    db = open_db(default_quotas={"instances": 4})
    assert db.get_quota("p1").limits == {"instances": 4, "cores": 20, "ram": 51200}
    quota = db.set_quota("p1", {"cores": 3, "ram": -1})
    assert quota.limits == {"instances": 4, "cores": 3, "ram": -1}
    assert db.get_quota("p2").limits["cores"] == 20
    with pytest.raises(errors.Invalid) as e:
        db.set_quota("p1", {"floating_ips": 3})
    assert e.value.field == "limits.floating_ips"
    with pytest.raises(errors.Invalid):
        db.set_quota("p1", {"cores": -2})


def test_quota_takes_as_many_as_fit_between_min_and_max(db: Database) -> None:
    flavor = db.create_flavor(name="m1.medium", vcpus=2, memory_mb=2048)
    db.set_quota("p1", {"instances": 10, "cores": 7})
    # cores allow 3 of these.
    assert len(create(db, flavor.id, min_count=1, max_count=5)) == 3
    with pytest.raises(errors.QuotaExceeded) as e:
        create(db, flavor.id)
    assert (e.value.resource, e.value.requested, e.value.limit, e.value.in_use) == \
        ("cores", 2, 7, 6)
    assert db.get_quota("p1").usage == {"instances": 3, "cores": 6, "ram": 6144}
    assert len(db.list_instances().instances) == 3


def test_quota_below_min_count_writes_nothing(db: Database, flavor_id: str) -> None:
    db.set_quota("p1", {"instances": 4})
    with pytest.raises(errors.QuotaExceeded) as e:
        create(db, flavor_id, min_count=5, max_count=5)
    assert (e.value.resource, e.value.requested, e.value.limit, e.value.in_use) == \
        ("instances", 5, 4, 0)
    assert db.list_instances().instances == []
    assert db.get_quota("p1").usage["instances"] == 0


@pytest.mark.parametrize("max_count", [1, 3])
def test_racing_creates_never_pass_the_last_unit(db: Database, flavor_id: str,
                                                 max_count: int) -> None:
    """Twenty threads create at once against room for exactly 7: together they get
    7, however the batches split it, and usage never exceeds the limit."""
    db.set_quota("p1", {"instances": 7})
    results = run_threads(20, lambda i: create(db, flavor_id, name=f"t{i}", min_count=1,
                                               max_count=max_count))
    created = [inst for r in results if isinstance(r, list) for inst in r]
    failures = [r for r in results if not isinstance(r, list)]
    assert len(created) == 7
    assert all(isinstance(f, errors.QuotaExceeded) for f in failures), failures
    assert db.get_quota("p1").usage == {"instances": 7, "cores": 7, "ram": 7 * 512}
    assert len(db.list_instances(project_id="p1").instances) == 7


def test_racing_creates_in_a_new_project(db: Database, flavor_id: str) -> None:
    """No usage rows exist yet: the racers must still serialise on creating them."""
    db.set_quota("fresh", {"instances": 1})
    results = run_threads(10, lambda i: create(db, flavor_id, project="fresh"))
    assert sum(isinstance(r, list) for r in results) == 1
    assert db.get_quota("fresh").usage["instances"] == 1


def test_soft_delete_releases_quota_and_allocations(db: Database, flavor_id: str) -> None:
    db.set_quota("p1", {"instances": 2})
    first, second = create(db, flavor_id, min_count=2, max_count=2)
    host = host_with(db)
    db.claim_allocations(first.id, {host.uuid: {"VCPU": 1, "MEMORY_MB": 512}})
    db.update_instance(first.id, vm_state=VmState.ACTIVE, task_state=None, host=host.name)
    generation = db.get_host(host.name).generation

    deleted = db.delete_instance(first.id)
    assert (deleted.status, deleted.task_state, deleted.deleted_at is not None) == \
        ("DELETED", None, True)
    assert db.get_quota("p1").usage == {"instances": 1, "cores": 1, "ram": 512}
    after = db.get_host(host.name)
    assert after.usage == {}
    assert after.generation == generation + 1
    assert db.get_allocations(first.id) == {}
    # The freed unit can be used again; deleting twice does not release twice.
    create(db, flavor_id)
    with pytest.raises(errors.NotFound):
        db.delete_instance(first.id)
    assert db.get_quota("p1").usage["instances"] == 2


def test_racing_deletes_release_once(db: Database, flavor_id: str) -> None:
    instance = create(db, flavor_id)[0]
    results = run_threads(6, lambda i: db.delete_instance(instance.id))
    assert sum(not isinstance(r, Exception) for r in results) == 1
    assert all(isinstance(r, errors.NotFound) for r in results if isinstance(r, Exception))
    assert db.get_quota("p1").usage == {"instances": 0, "cores": 0, "ram": 0}


# --- server groups ------------------------------------------------------------------------

def test_server_groups(db: Database, flavor_id: str) -> None:
    group = db.create_server_group(name="g", project_id="p1", user_id="u1",
                                   policy="anti-affinity", max_server_per_host=2)
    assert group.members == () and group.hosts == frozenset()
    a, b = create(db, flavor_id, min_count=2, max_count=2, group_id=group.id)
    c = create(db, flavor_id)[0]
    db.update_instance(a.id, host="h1")
    db.update_instance(b.id, host="h2")
    db.add_server_group_members(group.id, [c.id])
    assert set(db.get_server_group(group.id).members) == {a.id, b.id, c.id}
    assert db.server_group_hosts(group.id) == {"h1", "h2"}

    other = db.create_server_group(name="o", project_id="p1", user_id="u1", policy="affinity")
    with pytest.raises(errors.Conflict):
        db.add_server_group_members(other.id, [a.id])
    foreign = create(db, flavor_id, project="p2")[0]
    with pytest.raises(errors.NotFound):
        db.add_server_group_members(group.id, [foreign.id])
    with pytest.raises(errors.NotFound):
        db.get_server_group(group.id, project_id="p2")
    with pytest.raises(errors.Invalid):
        create(db, flavor_id, project="p2", group_id=group.id)

    db.delete_instance(b.id)
    assert db.server_group_hosts(group.id) == {"h1"}
    assert [g.name for g in db.list_server_groups(project_id="p1")] == ["g", "o"]
    db.delete_server_group(group.id)
    assert db.get_instance(a.id).group_id is None


@pytest.mark.parametrize("field, kwargs", [
    ("policy", {"policy": "sticky"}),
    ("max_server_per_host", {"policy": "affinity", "max_server_per_host": 2}),
    ("max_server_per_host", {"policy": "anti-affinity", "max_server_per_host": 0}),
])
def test_bad_server_group(db: Database, field: str, kwargs: dict[str, Any]) -> None:
    with pytest.raises(errors.Invalid) as e:
        db.create_server_group(name="g", project_id="p1", user_id="u1", **kwargs)
    assert e.value.field == field


# --- services -------------------------------------------------------------------------------

def test_services_up_and_down_from_heartbeats(open_db: Callable[..., Database],
                                              clock: FakeClock) -> None:
    db = open_db(clock=clock)
    compute = db.register_service("h1", "compute", endpoint="10.0.0.1:7000")
    db.register_service("ctl", "conductor")
    assert compute.is_up

    clock.advance(45)
    db.heartbeat(compute.id)
    clock.advance(30)
    by_host = {s.host: s for s in db.list_services(service_down_time=60)}
    assert by_host["h1"].is_up  # 30 s since its heartbeat
    assert not by_host["ctl"].is_up  # 75 s since it registered
    assert not db.get_service("h1", "compute", service_down_time=20).is_up
    assert [s.host for s in db.list_services(binary="compute")] == ["h1"]

    # Restarting re-registers: same record, a fresh heartbeat, status kept.
    db.disable_service("h1", reason="maintenance")
    again = db.register_service("h1", "compute", endpoint="10.0.0.1:7001")
    assert (again.id, again.disabled, again.disabled_reason, again.endpoint) == \
        (compute.id, True, "maintenance", "10.0.0.1:7001")
    enabled = db.enable_service("h1")
    assert (enabled.disabled, enabled.disabled_reason) == (False, None)

    with pytest.raises(errors.NotFound):
        db.heartbeat(10**6)
    with pytest.raises(errors.NotFound):
        db.disable_service("nowhere")
    with pytest.raises(errors.Invalid):
        db.register_service("h1", "hypervisor")


def test_racing_registrations_make_one_service(db: Database) -> None:
    results = run_threads(8, lambda i: db.register_service("h1", "compute"))
    assert len({r.id for r in results}) == 1, results
    assert len(db.list_services()) == 1


# --- hosts, inventories, allocations ----------------------------------------------------------

def test_host_upsert_inventory_and_generation(db: Database) -> None:
    host = host_with(db)
    assert host.generation == 1
    assert host.inventories["VCPU"].capacity == 16
    assert host.inventories["MEMORY_MB"].capacity == 7680
    # The compute view changes without disturbing the generation.
    viewed = db.upsert_host("host1", vcpus_used=2, free_ram_mb=4096, num_instances=2,
                            hypervisor_type="QEMU", hypervisor_version=8000000,
                            cpu_info={"arch": "x86_64"}, availability_zone="az1")
    assert (viewed.generation, viewed.vcpus_used, viewed.cpu_info) == (1, 2, {"arch": "x86_64"})
    # The same inventory again changes nothing; a new one bumps the generation.
    assert host_with(db).generation == 1
    bigger = db.upsert_host("host1", inventories={"VCPU": Inventory(total=16)},
                            generation=1)
    assert bigger.generation == 2
    assert set(bigger.inventories) == {"VCPU"}
    with pytest.raises(errors.GenerationConflict):
        db.upsert_host("host1", inventories={"VCPU": Inventory(total=32)}, generation=1)
    assert db.get_host("host1").inventories["VCPU"].total == 16
    assert db.get_host(uuid=host.uuid).name == "host1"
    with pytest.raises(errors.Conflict):
        db.upsert_host("host1", uuid=str(uuid.uuid4()))
    with pytest.raises(errors.NotFound):
        db.get_host("nowhere")


@pytest.mark.parametrize("field, inventory", [
    ("inventories.VCPU.total", Inventory(total=0)),
    ("inventories.VCPU.reserved", Inventory(total=4, reserved=5)),
    ("inventories.VCPU.max_unit", Inventory(total=4, min_unit=3, max_unit=2)),
    ("inventories.VCPU.step_size", Inventory(total=4, step_size=0)),
    ("inventories.VCPU.allocation_ratio", Inventory(total=4, allocation_ratio=0.0)),
    ("inventories.VCPU.allocation_ratio", Inventory(total=4, allocation_ratio=float("nan"))),
])
def test_bad_inventory_names_the_field(db: Database, field: str, inventory: Inventory) -> None:
    with pytest.raises(errors.Invalid) as e:
        db.upsert_host("h", inventories={"VCPU": inventory})
    assert e.value.field == field
    assert db.list_hosts() == []


def test_removing_an_inventory_in_use_is_refused(db: Database) -> None:
    host = host_with(db)
    db.claim_allocations("c1", {host.uuid: {"DISK_GB": 10}})
    with pytest.raises(errors.Conflict):
        db.upsert_host("host1", inventories={"VCPU": Inventory(total=8)})
    assert set(db.get_host("host1").inventories) == {"VCPU", "MEMORY_MB", "DISK_GB"}
    with pytest.raises(errors.Conflict):
        db.delete_host("host1")
    db.release_allocations("c1")
    db.delete_host("host1")
    assert db.list_hosts() == []


def test_list_hosts_is_what_the_scheduler_loads(db: Database) -> None:
    service = db.register_service("host1", "compute")
    h1 = db.upsert_host("host1", service_id=service.id, inventories={
        "VCPU": Inventory(total=4), "MEMORY_MB": Inventory(total=4096)})
    h2 = db.upsert_host("host2", inventories={"VCPU": Inventory(total=4)})
    db.claim_allocations("c1", {h1.uuid: {"VCPU": 2, "MEMORY_MB": 1024}})
    db.claim_allocations("c2", {h1.uuid: {"VCPU": 1}, h2.uuid: {"VCPU": 3}})
    db.set_provider_traits(h2.uuid, ["HW_CPU_X86_AVX2", "CUSTOM_FAST"])
    aggregate = db.create_aggregate("rack1", metadata={"availability_zone": "az1"})
    db.add_aggregate_host(aggregate.id, "host2")

    hosts = {h.name: h for h in db.list_hosts()}
    assert hosts["host1"].usage == {"VCPU": 3, "MEMORY_MB": 1024}
    assert hosts["host2"].usage == {"VCPU": 3}
    assert hosts["host1"].generation == 3 and hosts["host2"].generation == 3
    assert hosts["host2"].traits == {"HW_CPU_X86_AVX2", "CUSTOM_FAST"}
    assert hosts["host2"].aggregates == {aggregate.id} and hosts["host1"].aggregates == set()
    assert hosts["host1"].service is not None and hosts["host1"].service.is_up
    assert hosts["host2"].service is None
    assert db.get_host("host1") == hosts["host1"]
    assert [(a.consumer_uuid, a.resource_class, a.used)
            for a in db.list_allocations(h1.uuid)] == [
        ("c1", "MEMORY_MB", 1024), ("c1", "VCPU", 2), ("c2", "VCPU", 1)]
    assert db.get_allocations("c2") == {h1.uuid: {"VCPU": 1}, h2.uuid: {"VCPU": 3}}


def test_claim_capacity_rule_is_placements(db: Database) -> None:
    # capacity = int((10 - 2) * 1.5) = 12
    host = db.upsert_host("h", inventories={"VCPU": Inventory(total=10, reserved=2,
                                                              allocation_ratio=1.5)})
    db.claim_allocations("a", {host.uuid: {"VCPU": 12}})
    with pytest.raises(errors.CapacityExceeded) as e:
        db.claim_allocations("b", {host.uuid: {"VCPU": 1}})
    assert (e.value.provider_uuid, e.value.resource_class, e.value.amount) == \
        (host.uuid, "VCPU", 1)
    db.release_allocations("a")
    db.claim_allocations("b", {host.uuid: {"VCPU": 1}})


def test_capacity_refusal_leaves_nothing_written(db: Database) -> None:
    h1 = host_with(db, "h1")
    h2 = db.upsert_host("h2", inventories={"VCPU": Inventory(total=2)})
    db.claim_allocations("old", {h1.uuid: {"VCPU": 2}})
    before = {h.name: h for h in db.list_hosts()}
    # Fits on h1, not on h2: neither part is written, no generation moves, and the
    # consumer's previous allocation is still there.
    with pytest.raises(errors.CapacityExceeded):
        db.claim_allocations("old", {h1.uuid: {"VCPU": 4}, h2.uuid: {"VCPU": 3}},
                             generations={h1.uuid: before["h1"].generation,
                                          h2.uuid: before["h2"].generation})
    assert {h.name: h for h in db.list_hosts()} == before
    assert db.get_allocations("old") == {h1.uuid: {"VCPU": 2}}


def test_claim_many_is_one_compare_and_swap_all_or_nothing(db: Database) -> None:
    h1 = db.upsert_host("h1", inventories={"VCPU": Inventory(total=4)})
    h2 = db.upsert_host("h2", inventories={"VCPU": Inventory(total=4)})
    # later consumers in the batch see the earlier ones' usage: 3 x 2 VCPU on h1 does
    # not fit, so nothing at all is written and no generation moves
    before = {h.name: h for h in db.list_hosts()}
    with pytest.raises(errors.CapacityExceeded):
        db.claim_allocations_many({c: {h1.uuid: {"VCPU": 2}} for c in ("a", "b", "c")})
    assert {h.name: h for h in db.list_hosts()} == before
    # a stale generation refuses the whole batch
    with pytest.raises(errors.GenerationConflict):
        db.claim_allocations_many({"a": {h1.uuid: {"VCPU": 2}}, "b": {h2.uuid: {"VCPU": 1}}},
                                  generations={h1.uuid: before["h1"].generation,
                                               h2.uuid: before["h2"].generation + 1})
    assert db.get_allocations("a") == {} and db.get_allocations("b") == {}
    generations = db.claim_allocations_many(
        {"a": {h1.uuid: {"VCPU": 2}}, "b": {h1.uuid: {"VCPU": 2}}, "c": {h2.uuid: {"VCPU": 1}}},
        generations={h1.uuid: before["h1"].generation, h2.uuid: before["h2"].generation})
    # each provider's generation moves once for the whole batch
    assert generations == {h1.uuid: before["h1"].generation + 1,
                           h2.uuid: before["h2"].generation + 1}
    hosts = {h.name: h for h in db.list_hosts()}
    assert hosts["h1"].usage == {"VCPU": 4} and hosts["h2"].usage == {"VCPU": 1}
    with pytest.raises(errors.Invalid):
        db.claim_allocations_many({"d": {h2.uuid: {"VCPU": 0}}})
    assert db.get_allocations("d") == {}


def test_compute_views_are_written_together_without_moving_generations(db: Database) -> None:
    host = host_with(db)
    other = host_with(db, "host2")
    db.set_compute_views({
        "host1": ComputeView(vcpus_used=3, free_ram_mb=1024, free_disk_mb=2048,
                             num_instances=2, num_io_ops=1, failed_builds=0),
        "host2": ComputeView(vcpus_used=1, free_ram_mb=-5, free_disk_mb=0,
                             num_instances=1, num_io_ops=0, failed_builds=4)})
    after, after2 = db.get_host("host1"), db.get_host("host2")
    assert (after.generation, after2.generation) == (host.generation, other.generation)
    assert (after.vcpus_used, after.free_ram_mb, after.num_instances, after.num_io_ops) == \
        (3, 1024, 2, 1)
    assert (after2.free_ram_mb, after2.failed_builds) == (-5, 4)  # over-committed: negative
    # all or nothing: a bad counter or an unknown host writes no view at all
    with pytest.raises(errors.Invalid):
        db.set_compute_views({"host1": ComputeView(0, 0, 0, 0, 0, 0),
                              "host2": ComputeView(-1, 0, 0, 0, 0, 0)})
    with pytest.raises(errors.NotFound):
        db.set_compute_views({"host1": ComputeView(0, 0, 0, 0, 0, 0),
                              "nope": ComputeView(0, 0, 0, 0, 0, 0)})
    assert (db.get_host("host1"), db.get_host("host2")) == (after, after2)


@pytest.mark.parametrize("amount, reason", [
    (1, "min_unit"), (9, "max_unit"), (5, "step_size"),
])
def test_unit_constraints(db: Database, amount: int, reason: str) -> None:
    host = db.upsert_host("h", inventories={"MEMORY_MB": Inventory(
        total=4096, min_unit=2, max_unit=8, step_size=2)})
    with pytest.raises(errors.CapacityExceeded) as e:
        db.claim_allocations("c", {host.uuid: {"MEMORY_MB": amount}})
    assert reason in e.value.reason
    assert db.get_allocations("c") == {}


def test_claim_errors(db: Database) -> None:
    host = db.upsert_host("h", inventories={"VCPU": Inventory(total=4)})
    with pytest.raises(errors.CapacityExceeded) as e:
        db.claim_allocations("c", {host.uuid: {"PCPU": 1}})
    assert "no inventory" in e.value.reason
    with pytest.raises(errors.NotFound):
        db.claim_allocations("c", {str(uuid.uuid4()): {"VCPU": 1}})
    with pytest.raises(errors.Invalid):
        db.claim_allocations("c", {host.uuid: {"VCPU": 0}})
    with pytest.raises(errors.Invalid):
        db.claim_allocations("c", {})
    assert db.get_host("h").generation == 1


def test_claim_replaces_the_consumers_allocations(db: Database) -> None:
    h1 = db.upsert_host("h1", inventories={"VCPU": Inventory(total=4)})
    h2 = db.upsert_host("h2", inventories={"VCPU": Inventory(total=4)})
    db.claim_allocations("c", {h1.uuid: {"VCPU": 4}})
    # Moving to h2 bumps both providers and frees h1.
    generations = db.claim_allocations("c", {h2.uuid: {"VCPU": 4}})
    assert generations == {h1.uuid: 3, h2.uuid: 2}
    assert db.get_host("h1").usage == {} and db.get_host("h2").usage == {"VCPU": 4}
    # Re-claiming what it holds does not count it twice.
    db.claim_allocations("c", {h2.uuid: {"VCPU": 4}})
    # Capacity shrunk under the allocation: keeping (not growing) it is allowed.
    db.upsert_host("h2", inventories={"VCPU": Inventory(total=2)})
    db.claim_allocations("c", {h2.uuid: {"VCPU": 3}})
    with pytest.raises(errors.CapacityExceeded):
        db.claim_allocations("c", {h2.uuid: {"VCPU": 4}})


def test_two_claimers_with_the_same_generation_one_wins(db: Database) -> None:
    host = host_with(db)
    read = db.get_host(host.name).generation
    won = db.claim_allocations("first", {host.uuid: {"VCPU": 1}}, generations={host.uuid: read})
    assert won == {host.uuid: read + 1}
    with pytest.raises(errors.GenerationConflict) as e:
        db.claim_allocations("second", {host.uuid: {"VCPU": 1}},
                             generations={host.uuid: read})
    assert e.value.provider_uuid == host.uuid
    assert db.get_allocations("second") == {}
    assert db.get_host(host.name).generation == read + 1
    # The loser refreshes and retries.
    db.claim_allocations("second", {host.uuid: {"VCPU": 1}},
                         generations={host.uuid: db.get_host(host.name).generation})


def test_racing_claimers_with_one_generation(db: Database) -> None:
    """Replicas of the scheduler read the host at the same generation and claim at
    once: exactly one claim lands, every other one is told to refresh."""
    host = host_with(db)
    read = host.generation
    results = run_threads(12, lambda i: db.claim_allocations(
        f"c{i}", {host.uuid: {"VCPU": 1}}, generations={host.uuid: read}))
    winners = [r for r in results if isinstance(r, dict)]
    assert len(winners) == 1, results
    assert all(isinstance(r, errors.GenerationConflict) for r in results if r not in winners)
    assert db.get_host(host.name).usage == {"VCPU": 1}


def test_racing_claimers_without_generations_respect_capacity(db: Database) -> None:
    """Racing claims (committed together on SQLite) fill the host exactly; a claim
    refused after it bumped the generation leaves no trace, the others stay."""
    host = db.upsert_host("h", inventories={"VCPU": Inventory(total=5)})
    results = run_threads(12, lambda i: db.claim_allocations(f"c{i}", {host.uuid: {"VCPU": 1}}))
    assert sum(isinstance(r, dict) for r in results) == 5
    assert all(isinstance(r, errors.CapacityExceeded) for r in results if not isinstance(r, dict))
    after = db.get_host("h")
    assert after.usage == {"VCPU": 5}
    assert after.generation == host.generation + 5
    assert sorted(a.consumer_uuid for a in db.list_allocations(host.uuid)) == sorted(
        f"c{i}" for i, r in enumerate(results) if isinstance(r, dict))


def test_release_bumps_generations(db: Database) -> None:
    host = host_with(db)
    db.claim_allocations("c", {host.uuid: {"VCPU": 2, "DISK_GB": 10}})
    generation = db.get_host(host.name).generation
    assert db.release_allocations("c") == {host.uuid: generation + 1}
    assert db.get_host(host.name).usage == {}
    assert db.release_allocations("c") == {}
    with pytest.raises(errors.NotFound):
        db.list_allocations(str(uuid.uuid4()))


# --- aggregates and traits ---------------------------------------------------------------------

def test_aggregates(db: Database) -> None:
    host_with(db, "h1")
    host_with(db, "h2")
    aggregate = db.create_aggregate("fast", metadata={"ssd": "true"})
    with pytest.raises(errors.Conflict):
        db.create_aggregate("fast")
    db.add_aggregate_host(aggregate.id, "h1")
    updated = db.add_aggregate_host(aggregate.id, "h2")
    assert updated.hosts == {"h1", "h2"}
    with pytest.raises(errors.Conflict):
        db.add_aggregate_host(aggregate.id, "h1")
    with pytest.raises(errors.NotFound):
        db.add_aggregate_host(aggregate.id, "nowhere")
    assert db.remove_aggregate_host(aggregate.id, "h1").hosts == {"h2"}
    with pytest.raises(errors.NotFound):
        db.remove_aggregate_host(aggregate.id, "h1")
    md = db.set_aggregate_metadata(aggregate.id, {"availability_zone": "az2", "ssd": None})
    assert md.metadata == {"availability_zone": "az2"}
    assert db.get_aggregate(aggregate.id) == md
    assert [a.name for a in db.list_aggregates()] == ["fast"]
    with pytest.raises(errors.InvalidState):  # Nova's: not while it has hosts
        db.delete_aggregate(aggregate.id)
    db.remove_aggregate_host(aggregate.id, "h2")
    db.delete_aggregate(aggregate.id)
    assert db.list_aggregates() == []
    assert db.get_host("h2").aggregates == frozenset()
    with pytest.raises(errors.NotFound):
        db.get_aggregate(aggregate.id)


def test_zones_are_those_of_compute_hosts(db: Database) -> None:
    """Nova's get_availability_zones: a zone is one a compute host is in (its
    aggregates', else the default zone), available while one of them is enabled;
    the one-zone check a create makes agrees with the listing."""
    for name in ("h1", "h2", "h3", "h4"):
        db.register_service(name, "compute")
        host_with(db, name)
    east = db.create_aggregate("east", availability_zone="az-east")
    db.add_aggregate_host(east.id, "h1")
    db.add_aggregate_host(east.id, "h2")
    named_default = db.create_aggregate("named", availability_zone="nova")
    db.add_aggregate_host(named_default.id, "h3")
    db.create_aggregate("empty", availability_zone="az-empty")
    db.disable_service("h1", "compute")
    db.disable_service("h2", "compute")
    zones = db.zone_services()
    assert {z: [svc.host for svc in services] for z, services in zones.items()} == {
        "az-east": ["h1", "h2"], "nova": ["h3", "h4"]}
    for zone, expected in (("az-east", False), ("nova", True), ("az-empty", None), ("moon", None)):
        assert db.zone_availability(zone) is expected, zone
        if expected is not None:
            assert any(not svc.disabled for svc in zones[zone]) is expected
    db.enable_service("h2", "compute")
    assert db.zone_availability("az-east") is True


def test_traits(db: Database) -> None:
    host = host_with(db)
    db.create_trait("CUSTOM_GOLD")
    db.create_trait("CUSTOM_GOLD")
    generation = db.set_provider_traits(host.uuid, ["CUSTOM_GOLD", "HW_CPU_X86_AVX2"],
                                        generation=host.generation)
    assert generation == host.generation + 1
    assert db.get_host(host.name).traits == {"CUSTOM_GOLD", "HW_CPU_X86_AVX2"}
    assert db.list_traits() == ["CUSTOM_GOLD", "HW_CPU_X86_AVX2"]
    with pytest.raises(errors.GenerationConflict):
        db.set_provider_traits(host.uuid, [], generation=host.generation)
    with pytest.raises(errors.Conflict):
        db.delete_trait("CUSTOM_GOLD")
    db.set_provider_traits(host.uuid, ["HW_CPU_X86_AVX2"])
    db.delete_trait("CUSTOM_GOLD")
    assert db.list_traits() == ["HW_CPU_X86_AVX2"]
    with pytest.raises(errors.Invalid):
        db.create_trait("lower_case")


def test_an_agents_cpu_traits_and_an_admins_traits_live_side_by_side(db: Database) -> None:
    host = host_with(db)
    assert db.set_reported_traits(host.uuid, ["HW_CPU_X86_AVX2", "HW_CPU_X86_SSE2"])
    gen = db.get_host(host.name).generation
    assert not db.set_reported_traits(host.uuid, ["HW_CPU_X86_SSE2", "HW_CPU_X86_AVX2"])
    assert db.get_host(host.name).generation == gen  # nothing changed, nothing moved
    assert db.add_host_trait(host.name, "CUSTOM_GPU").traits == {
        "CUSTOM_GPU", "HW_CPU_X86_AVX2", "HW_CPU_X86_SSE2"}
    assert db.get_host(host.name).generation == gen + 1  # a trait change moves it (Placement's)
    # the agent's next report replaces its own traits only
    db.set_reported_traits(host.uuid, ["HW_CPU_X86_SSE2"])
    assert db.get_host(host.name).traits == {"CUSTOM_GPU", "HW_CPU_X86_SSE2"}
    with pytest.raises(errors.Conflict):
        db.add_host_trait(host.name, "CUSTOM_GPU")
    with pytest.raises(errors.Invalid):  # the agent's to report
        db.add_host_trait(host.name, "HW_CPU_X86_AVX512F")
    with pytest.raises(errors.Invalid):  # an agent reports CPU traits only
        db.set_reported_traits(host.uuid, ["CUSTOM_GPU"])
    with pytest.raises(errors.NotFound):
        db.add_host_trait("nowhere", "CUSTOM_GPU")
    assert db.remove_host_trait(host.name, "CUSTOM_GPU").traits == {"HW_CPU_X86_SSE2"}
    with pytest.raises(errors.NotFound):
        db.remove_host_trait(host.name, "CUSTOM_GPU")


def test_a_service_database_checkpoints_outside_its_commits(tmp_path: Path) -> None:
    """start_checkpoints (the services call it): the WAL is copied into the database
    file by a thread of its own, so a commit never has to; SQLite's own checkpoint
    moves to 10,000 pages as a backstop."""
    db = Database(f"sqlite:///{tmp_path}/novalite.db")
    try:
        db.upgrade()
        db.start_checkpoints(interval=0.05)
        with db.engine.connect() as conn:
            assert conn.exec_driver_sql("PRAGMA wal_autocheckpoint").scalar() == 10_000
        flavor = db.create_flavor(name="checkpointed", vcpus=1, memory_mb=64, root_gb=1)

        def in_the_file() -> bool:  # the database file alone, without its WAL
            copy = tmp_path / "copy.db"
            shutil.copyfile(tmp_path / "novalite.db", copy)
            with closing(sqlite3.connect(copy)) as c:
                return c.execute("SELECT count(*) FROM flavors WHERE id = ?",
                                 (flavor.id,)).fetchone()[0] == 1
        deadline = time.monotonic() + 10
        while not in_the_file():
            assert time.monotonic() < deadline, "the WAL was never checkpointed"
            time.sleep(0.05)
    finally:
        db.close()
