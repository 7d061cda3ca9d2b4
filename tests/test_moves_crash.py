"""Moves interrupted half-way (issue 12, item 3): the conductor or a compute agent
killed (SIGKILL) in the middle of a step of each move, then started again. The
move resumes (or is undone) and then, whatever happened: never two guests of the
server, never an allocation leaked or held twice, the server settled (its state,
or ERROR with a fault). Evacuation of a host that is down lives here too: it
needs an agent killed. Every step of a move waits a second first (the agents'
test hook), which gives the test its moment to kill.

At the end every host the database says has room is filled (after the moves and
restarts, and again after the scheduler itself was restarted mid-move): an
allocation the scheduler's memory kept would leave a host looking full, and a
server without a host."""

from __future__ import annotations

import time
import uuid
from typing import Any, Callable, Iterator

import grpc
import pytest

from novalite.cloud import LocalCloud
from novalite.rpc.novalite.compute.v1 import (
    flavors_pb2,
    hosts_pb2,
    images_pb2,
    images_pb2_grpc,
    quotas_pb2,
    servers_pb2,
    states_pb2,
)
from novalite.virt import images

from helpers import cloud_env, run_cli
from moving import Ledger, MovesApi
from moving import ledger  # noqa: F401 - the fixture, for every test here

Code = grpc.StatusCode
TASK = states_pb2.TaskState
SMALL = {"VCPU": 1, "MEMORY_MB": 512, "DISK_GB": 1}
MEDIUM = {"VCPU": 2, "MEMORY_MB": 1024, "DISK_GB": 2}
DOOMED = "doomed-1"
DOWN_TIME = 4


@pytest.fixture(scope="module")
def cloud(tmp_path_factory: Any) -> Iterator[LocalCloud]:
    c = LocalCloud(tmp_path_factory.mktemp("moves-crash"), hosts=3, host_vcpus=8,
                   host_memory_mb=8192, host_disk_gb=100, report_interval=1,
                   move_step_delay=1.0, settings={"service_down_time": DOWN_TIME})
    with c:
        c.start_agent("doomed", [DOOMED])
        yield c


@pytest.fixture(scope="module")
def admin(cloud: LocalCloud) -> MovesApi:
    api = MovesApi(cloud, cloud.admin_token())
    api.quotas.SetQuota(quotas_pb2.SetQuotaRequest(project_id="admin", instances=100,
                                                   cores=200, ram=10**6))
    return api


@pytest.fixture(scope="module")
def flavors(admin: MovesApi) -> dict[str, Any]:
    return {name: admin.flavors.CreateFlavor(flavors_pb2.CreateFlavorRequest(
        name=f"{name}-{uuid.uuid4().hex[:6]}", vcpus=vcpus, memory_mb=ram, root_gb=disk))
        for name, (vcpus, ram, disk) in {"small": (1, 512, 1), "medium": (2, 1024, 2)}.items()}


def _boot(admin: MovesApi, flavors: dict[str, Any], host: str = "compute-001") -> Any:
    return admin.boot(flavors["small"].id, zone=f"nova:{host}")


def _kill_during(cloud: LocalCloud, admin: MovesApi, sid: str, service: str,
                 check: Callable[[Any], bool], what: str) -> None:
    """Kill -9 ``service`` once the server shows ``check`` (a step in flight),
    start it again."""
    admin.until(sid, check, what)
    cloud.kill(service)
    time.sleep(0.5)
    cloud.restart(service)


def _task(task: int) -> Callable[[Any], bool]:
    return lambda s: s.task_state == task


# ---- the conductor killed -----------------------------------------------------------

def test_conductor_killed_while_the_source_sets_the_guest_aside(
        cloud: LocalCloud, admin: MovesApi, ledger: Ledger, flavors: dict[str, Any]) -> None:
    server = _boot(admin, flavors)
    admin.servers.ResizeServer(servers_pb2.ResizeServerRequest(id=server.id,
                                                                flavor_id=flavors["medium"].id))
    _kill_during(cloud, admin, server.id, "conductor", _task(TASK.TASK_STATE_RESIZE_MIGRATING),
                 "migrating")
    resized = admin.settle(server.id)
    assert resized.status == "VERIFY_RESIZE", resized  # resumed
    [migration] = ledger.open_migrations(server.id)
    assert ledger.held(migration.id) == {"compute-001": SMALL}
    assert ledger.held(server.id) == {resized.host: MEDIUM}
    assert list(ledger.guests(server.id)) == [resized.host]
    # then the verdict, the conductor killed in the middle of it too
    admin.servers.RevertResize(servers_pb2.RevertResizeRequest(id=server.id))
    _kill_during(cloud, admin, server.id, "conductor", _task(TASK.TASK_STATE_RESIZE_REVERTING),
                 "reverting")
    reverted = admin.settle(server.id)
    assert (reverted.status, reverted.host, reverted.flavor_id) == (
        "ACTIVE", "compute-001", flavors["small"].id)
    ledger.assert_settled(server.id, SMALL)


def test_conductor_killed_while_the_destination_finishes_then_during_the_confirm(
        cloud: LocalCloud, admin: MovesApi, ledger: Ledger, flavors: dict[str, Any]) -> None:
    server = _boot(admin, flavors)
    admin.servers.MigrateServer(servers_pb2.MigrateServerRequest(id=server.id, host="compute-002"))
    _kill_during(cloud, admin, server.id, "conductor", _task(TASK.TASK_STATE_RESIZE_FINISH),
                 "finishing")
    moved = admin.settle(server.id)
    assert (moved.status, moved.host) == ("VERIFY_RESIZE", "compute-002")
    assert list(ledger.guests(server.id)) == ["compute-002"]
    admin.servers.ConfirmResize(servers_pb2.ConfirmResizeRequest(id=server.id))
    _kill_during(cloud, admin, server.id, "conductor", _task(TASK.TASK_STATE_RESIZE_CONFIRMING),
                 "confirming")
    confirmed = admin.settle(server.id)
    assert (confirmed.status, confirmed.host) == ("ACTIVE", "compute-002")
    ledger.assert_settled(server.id, SMALL)


def test_conductor_killed_during_a_live_migration(cloud: LocalCloud, admin: MovesApi,
                                                  ledger: Ledger, flavors: dict[str, Any]) -> None:
    server = _boot(admin, flavors)
    admin.servers.LiveMigrateServer(servers_pb2.LiveMigrateServerRequest(id=server.id,
                                                                         host="compute-003"))
    admin.until(server.id, _task(TASK.TASK_STATE_MIGRATING), "migrating")
    migration = ledger.open_migrations(server.id)[0]
    admin.until(server.id, lambda s: ledger.db.get_migration(migration.id).status == "running",
                "running")
    cloud.kill("conductor")
    cloud.restart("conductor")
    moved = admin.settle(server.id)
    assert (moved.status, moved.host) == ("ACTIVE", "compute-003")
    assert ledger.guests(server.id) == {"compute-003": 1}
    ledger.assert_settled(server.id, SMALL)


@pytest.fixture(scope="module")
def image_id(cloud: LocalCloud, admin: MovesApi) -> str:
    path = images.create_blank_image(cloud.data_dir / "images" / "blank.qcow2", 16).path
    return str(images_pb2_grpc.ImagesStub(admin.channel).CreateImage(
        images_pb2.CreateImageRequest(name="blank", path=path)).id)


@pytest.mark.parametrize("move", ["rebuild", "shelve", "unshelve"])
def test_conductor_killed_during_a_rebuild_a_shelve_an_unshelve(
        cloud: LocalCloud, admin: MovesApi, ledger: Ledger, flavors: dict[str, Any],
        image_id: str, move: str) -> None:
    server = admin.boot(flavors["small"].id, zone="nova:compute-001", image_id=image_id)
    if move == "rebuild":
        admin.servers.RebuildServer(servers_pb2.RebuildServerRequest(id=server.id,
                                                                      image_id=image_id))
        task, final = TASK.TASK_STATE_REBUILD_SPAWNING, "ACTIVE"
    elif move == "shelve":
        admin.servers.ShelveServer(servers_pb2.ShelveServerRequest(id=server.id))
        task, final = TASK.TASK_STATE_SHELVING, "SHELVED_OFFLOADED"
    else:
        admin.servers.ShelveServer(servers_pb2.ShelveServerRequest(id=server.id))
        assert admin.settle(server.id).status == "SHELVED_OFFLOADED"
        admin.servers.UnshelveServer(servers_pb2.UnshelveServerRequest(id=server.id))
        task, final = TASK.TASK_STATE_UNSHELVING, "ACTIVE"
    _kill_during(cloud, admin, server.id, "conductor", _task(task), move)
    done = admin.settle(server.id)
    assert done.status == final, done
    ledger.assert_settled(server.id, SMALL if final == "ACTIVE" else None)
    assert admin.actions(server.id)[0][:2] == ({"shelve": "shelve"}.get(move, move), "")


# ---- an agent killed ----------------------------------------------------------------

def test_agent_killed_while_the_source_sets_the_guest_aside(
        cloud: LocalCloud, admin: MovesApi, ledger: Ledger, flavors: dict[str, Any]) -> None:
    server = _boot(admin, flavors, "compute-002")
    admin.servers.ResizeServer(servers_pb2.ResizeServerRequest(id=server.id,
                                                                flavor_id=flavors["medium"].id))
    _kill_during(cloud, admin, server.id, "compute", _task(TASK.TASK_STATE_RESIZE_MIGRATING),
                 "migrating")
    resized = admin.settle(server.id)
    assert resized.status == "VERIFY_RESIZE", resized
    assert list(ledger.guests(server.id)) == [resized.host]
    admin.servers.ConfirmResize(servers_pb2.ConfirmResizeRequest(id=server.id))
    assert admin.settle(server.id).status == "ACTIVE"
    ledger.assert_settled(server.id, MEDIUM)


def test_agent_killed_during_a_live_migration(cloud: LocalCloud, admin: MovesApi,
                                              ledger: Ledger, flavors: dict[str, Any]) -> None:
    server = _boot(admin, flavors, "compute-003")
    admin.servers.LiveMigrateServer(servers_pb2.LiveMigrateServerRequest(id=server.id))
    admin.until(server.id, _task(TASK.TASK_STATE_MIGRATING), "migrating")
    migration = ledger.open_migrations(server.id)[0]
    admin.until(server.id, lambda s: ledger.db.get_migration(migration.id).status == "running",
                "running")
    cloud.kill("compute")
    time.sleep(0.5)
    cloud.restart("compute")
    moved = admin.settle(server.id)
    assert moved.status == "ACTIVE" and moved.host != "compute-003"
    assert list(ledger.guests(server.id)) == [moved.host]
    ledger.assert_settled(server.id, SMALL)


# ---- evacuation ---------------------------------------------------------------------

def test_evacuate_the_servers_of_a_host_that_is_down(cloud: LocalCloud, admin: MovesApi,
                                                     ledger: Ledger, flavors: dict[str, Any]) -> None:
    running = admin.boot(flavors["small"].id, zone=f"nova:{DOOMED}")
    stopped = admin.boot(flavors["small"].id, zone=f"nova:{DOOMED}")
    admin.servers.StopServer(servers_pb2.StopServerRequest(id=stopped.id))
    admin.settle(stopped.id)
    with pytest.raises(grpc.RpcError) as e:  # refused while the host is up
        admin.servers.EvacuateServer(servers_pb2.EvacuateServerRequest(id=running.id))
    assert e.value.code() == Code.FAILED_PRECONDITION and "is up" in e.value.details()
    cloud.kill("doomed")

    def down() -> bool:
        hosts = admin.hosts.ListHosts(hosts_pb2.ListHostsRequest()).hosts
        return any(h.name == DOOMED and h.state == hosts_pb2.SERVICE_STATE_DOWN for h in hosts)
    deadline = time.monotonic() + 3 * DOWN_TIME + 10
    while not down():
        assert time.monotonic() < deadline, "the killed agent's host never went down"
        time.sleep(0.2)
    for server in (running, stopped):
        reply = admin.servers.EvacuateServer(servers_pb2.EvacuateServerRequest(id=server.id))
        assert reply.status == "REBUILD"
    # the conductor killed while the first one is rebuilt elsewhere
    _kill_during(cloud, admin, running.id, "conductor", _task(TASK.TASK_STATE_REBUILD_SPAWNING),
                 "rebuilding")
    evacuated = admin.settle(running.id)
    still_stopped = admin.settle(stopped.id)
    assert evacuated.status == "ACTIVE" and evacuated.host != DOOMED
    assert still_stopped.status == "SHUTOFF" and still_stopped.host != DOOMED  # Nova's 2.95
    for server in (running, stopped):
        [migration] = admin.migrations(server.id)
        assert (migration.migration_type, migration.status) == ("evacuation", "done")
        # the dead host's allocation stays with the migration until that host is back
        assert ledger.held(migration.id) == {DOOMED: SMALL}
        assert list(ledger.held(server.id)) == [admin.get(server.id).host]
    assert admin.actions(running.id)[0][:2] == ("evacuate", "")
    # the host comes back: it destroys what it still had and gives its allocations up
    assert set(ledger.guests(running.id)) == {DOOMED, evacuated.host}  # its node file still has it
    cloud.restart("doomed")
    deadline = time.monotonic() + 30
    while any(ledger.held(m.id) for s in (running, stopped) for m in ledger.db.list_migrations(
            instance_id=s.id)) and time.monotonic() < deadline:
        time.sleep(0.2)
    for server in (running, stopped):
        assert admin.migrations(server.id)[0].status == "completed"
        ledger.assert_settled(server.id, SMALL)
    doomed = ledger.db.get_host(DOOMED).uuid
    assert not {a.consumer_uuid for a in ledger.db.list_allocations(doomed)} & {
        running.id, stopped.id, *(m.id for s in (running, stopped) for m in admin.migrations(s.id))}


def test_agent_killed_during_an_evacuation_of_the_whole_host(
        cloud: LocalCloud, admin: MovesApi, ledger: Ledger, flavors: dict[str, Any]) -> None:
    """`novalite host evacuate`: every server of the host (those other tests left
    there too), an agent killed while the first is rebuilt."""
    server = admin.boot(flavors["small"].id, zone=f"nova:{DOOMED}")
    request = servers_pb2.ListServersRequest()
    request.filters.host = DOOMED
    on_it = [s.id for s in admin.servers.ListServers(request).servers]
    cloud.kill("doomed")
    deadline = time.monotonic() + 3 * DOWN_TIME + 10
    while True:  # refused (status 1) until the host is down
        done = run_cli("host", "evacuate", DOOMED, env=cloud_env(cloud))
        if done.returncode == 0:
            break
        assert "FAILED_PRECONDITION" in done.stderr and time.monotonic() < deadline, done.stderr
        time.sleep(0.5)
    _kill_during(cloud, admin, server.id, "compute", _task(TASK.TASK_STATE_REBUILD_SPAWNING),
                 "rebuilding")
    for sid in on_it:
        evacuated = admin.settle(sid)
        assert evacuated.status in ("ACTIVE", "SHUTOFF") and evacuated.host != DOOMED, evacuated
    assert set(ledger.guests(server.id)) - {DOOMED} == {admin.get(server.id).host}
    cloud.restart("doomed")
    deadline = time.monotonic() + 30
    while ledger.guests(server.id, [DOOMED]) and time.monotonic() < deadline:
        time.sleep(0.2)
    [migration] = ledger.db.list_migrations(instance_id=server.id)
    while ledger.held(migration.id) and time.monotonic() < deadline:
        time.sleep(0.2)
    ledger.assert_settled(server.id, SMALL)


# ---- and the scheduler still agrees with the database ---------------------------------

def test_after_the_crashes_every_host_with_room_takes_a_server(
        cloud: LocalCloud, admin: MovesApi, ledger: Ledger) -> None:
    """Fill what the database says is free, to the last MiB of each host: the
    scheduler's memory (kept through every move above and the restarts of the
    conductor and of the agents) must find room for each server, then none."""
    _fill_every_host(admin)


def _fill_every_host(admin: MovesApi) -> None:
    """Boot, on each host that is up, a server of exactly the RAM the database says
    it has left; then one more, which must find no host. The servers are deleted
    afterwards."""
    hosts = {h.name: h for h in admin.hosts.ListHosts(hosts_pb2.ListHostsRequest()).hosts
             if h.state == hosts_pb2.SERVICE_STATE_UP}
    free = {}
    for name, h in hosts.items():
        [ram] = [r for r in h.resources if r.resource_class == "MEMORY_MB"]
        free[name] = ram.capacity - ram.used
    assert all(v > 0 for v in free.values()), free
    ids = []
    # the roomiest first: each fills the one host with that much room left (the
    # RAM weigher spreads to the roomiest host anyway)
    for name, room in sorted(free.items(), key=lambda item: -item[1]):
        flavor = admin.flavors.CreateFlavor(flavors_pb2.CreateFlavorRequest(
            name=f"fill-{name}-{uuid.uuid4().hex[:4]}", vcpus=1, memory_mb=room, root_gb=1))
        [server] = admin.servers.CreateServer(servers_pb2.CreateServerRequest(
            name=f"fill-{name}", flavor_id=flavor.id)).servers
        ids.append(server.id)
        filled = admin.settle(server.id)
        assert filled.status == "ACTIVE", (name, room, filled.fault.message)
    assert {admin.get(i).host for i in ids} == set(free)
    last = admin.flavors.CreateFlavor(flavors_pb2.CreateFlavorRequest(
        name=f"one-more-{uuid.uuid4().hex[:4]}", vcpus=1, memory_mb=1, root_gb=1))
    [extra] = admin.servers.CreateServer(servers_pb2.CreateServerRequest(
        name="no-room", flavor_id=last.id)).servers
    assert admin.settle(extra.id).status == "ERROR"
    for sid in [*ids, extra.id]:
        admin.servers.DeleteServer(servers_pb2.DeleteServerRequest(id=sid))
    for sid in [*ids, extra.id]:
        admin.gone(sid)


def test_scheduler_killed_before_a_move_schedules_and_started_again(
        cloud: LocalCloud, admin: MovesApi, ledger: Ledger, flavors: dict[str, Any]) -> None:
    """The move waits for its scheduler, which reloads what it holds (the open
    moves' migrations included) from the database."""
    waiting = _boot(admin, flavors, "compute-002")
    admin.servers.ResizeServer(servers_pb2.ResizeServerRequest(id=waiting.id,
                                                                flavor_id=flavors["medium"].id))
    assert admin.settle(waiting.id).status == "VERIFY_RESIZE"
    server = _boot(admin, flavors, "compute-003")
    cloud.kill("scheduler")
    admin.servers.MigrateServer(servers_pb2.MigrateServerRequest(id=server.id))
    time.sleep(1.0)
    assert admin.get(server.id).status == "RESIZE"  # waiting for its scheduler
    cloud.restart("scheduler")
    moved = admin.settle(server.id)
    assert moved.status == "VERIFY_RESIZE" and moved.host != "compute-003"
    for sid in (server.id, waiting.id):
        admin.servers.ConfirmResize(servers_pb2.ConfirmResizeRequest(id=sid))
        assert admin.settle(sid).status == "ACTIVE"
        ledger.assert_settled(sid)
    _fill_every_host(admin)
