"""Moving servers (issue 12, item 3), end to end: every service its own process over
real sockets, simulated hosts, driven through the public gRPC API and the
`novalite` command. After each move the allocations are where Nova holds them
(the old host's with the migration while a resize waits for its verdict, then on
one host only) and exactly one guest of the server exists. SQLite, and PostgreSQL
when NOVALITE_TEST_POSTGRES_URL is set."""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any, Iterator

import grpc
import pytest

from novalite.cloud import LocalCloud
from novalite.rpc.novalite.compute.v1 import (
    flavors_pb2,
    hosts_pb2,
    images_pb2,
    images_pb2_grpc,
    quotas_pb2,
    server_groups_pb2,
    servers_pb2,
    states_pb2,
)
from novalite.virt import images

from helpers import BACKENDS, cloud_env, code_of, postgres_database, run_cli
from moving import Ledger, MovesApi
from moving import ledger  # noqa: F401 - the fixture, for every test here

Code = grpc.StatusCode
HOSTS = [f"compute-{i:03d}" for i in range(1, 5)]
SMALL = {"VCPU": 1, "MEMORY_MB": 512, "DISK_GB": 1}
MEDIUM = {"VCPU": 2, "MEMORY_MB": 1024, "DISK_GB": 2}


@pytest.fixture(scope="module", params=BACKENDS)
def cloud(request: Any, tmp_path_factory: Any) -> Iterator[LocalCloud]:
    url = postgres_database() if request.param == "postgresql" else None
    c = LocalCloud(tmp_path_factory.mktemp(f"moves-{request.param}"), hosts=len(HOSTS),
                   host_vcpus=8, host_memory_mb=8192, host_disk_gb=100, database_url=url,
                   report_interval=2)
    with c:
        yield c


@pytest.fixture(scope="module")
def admin(cloud: LocalCloud) -> MovesApi:
    return MovesApi(cloud, cloud.admin_token())


@pytest.fixture(scope="module")
def flavors(admin: MovesApi) -> dict[str, Any]:
    out = {}
    for name, (vcpus, ram, disk) in {"small": (1, 512, 1), "medium": (2, 1024, 2),
                                    "tiny-disk": (2, 1024, 0)}.items():
        out[name] = admin.flavors.CreateFlavor(flavors_pb2.CreateFlavorRequest(
            name=f"{name}-{uuid.uuid4().hex[:6]}", vcpus=vcpus, memory_mb=ram, root_gb=disk))
    return out


@pytest.fixture
def member(cloud: LocalCloud, admin: MovesApi) -> MovesApi:
    """A member of a fresh project with room for 8 cores."""
    project = f"p-{uuid.uuid4().hex[:8]}"
    admin.quotas.SetQuota(quotas_pb2.SetQuotaRequest(project_id=project, instances=5, cores=8,
                                                     ram=8192))
    api = MovesApi(cloud, cloud.member_token(project))
    api.project = project  # type: ignore[attr-defined]
    return api


def _usage(api: MovesApi) -> dict[str, int]:
    quota = api.quotas.GetQuota(quotas_pb2.GetQuotaRequest())
    return {"instances": quota.usage.instances, "cores": quota.usage.cores, "ram": quota.usage.ram}


# ---- resize -------------------------------------------------------------------------

def test_resize_then_confirm(member: MovesApi, admin: MovesApi, ledger: Ledger,
                             flavors: dict[str, Any]) -> None:
    server = member.boot(flavors["small"].id)
    source = admin.get(server.id).host
    reply = member.servers.ResizeServer(servers_pb2.ResizeServerRequest(
        id=server.id, flavor_id=flavors["medium"].id))
    assert (reply.status, reply.task_state) == ("RESIZE", states_pb2.TASK_STATE_RESIZE_PREP)
    resized = member.settle(server.id)
    assert (resized.status, resized.vm_state) == ("VERIFY_RESIZE", states_pb2.VM_STATE_RESIZED)
    assert resized.flavor_id == flavors["medium"].id and resized.power_state == 1
    dest = admin.get(server.id).host
    assert dest != source
    # Nova's allocations while it waits: the old host's held by the migration
    [migration] = admin.migrations(server.id)
    assert (migration.migration_type, migration.status, migration.source_host,
            migration.dest_host) == ("resize", "finished", source, dest)
    assert ledger.held(migration.id) == {source: SMALL}
    assert ledger.held(server.id) == {dest: MEDIUM}
    assert list(ledger.guests(server.id)) == [dest]  # the old one is set aside, not running
    assert _usage(member) == {"instances": 1, "cores": 2, "ram": 1024}  # the growth, taken at once

    member.servers.ConfirmResize(servers_pb2.ConfirmResizeRequest(id=server.id))
    confirmed = member.settle(server.id)
    assert (confirmed.status, confirmed.flavor_id) == ("ACTIVE", flavors["medium"].id)
    assert confirmed.availability_zone == server.availability_zone == "nova"
    ledger.assert_settled(server.id, MEDIUM)
    assert admin.get(server.id).host == dest
    assert admin.migrations(server.id)[0].status == "confirmed"
    assert _usage(member) == {"instances": 1, "cores": 2, "ram": 1024}
    log = member.actions(server.id)
    assert log[:2] == [
        ("confirmResize", "", [("compute_confirm_resize", "Success")]),
        ("resize", "", [("conductor_migrate_server", "Success"), ("compute_prep_resize", "Success"),
                        ("compute_resize_instance", "Success"), ("compute_finish_resize", "Success")])]


def test_a_stopped_server_resized_and_reverted_is_as_it_was(
        member: MovesApi, admin: MovesApi, ledger: Ledger, flavors: dict[str, Any]) -> None:
    server = member.boot(flavors["small"].id)
    source = admin.get(server.id).host
    member.servers.StopServer(servers_pb2.StopServerRequest(id=server.id))
    assert member.settle(server.id).status == "SHUTOFF"
    member.servers.ResizeServer(servers_pb2.ResizeServerRequest(id=server.id,
                                                                 flavor_id=flavors["medium"].id))
    resized = member.settle(server.id)
    assert (resized.status, resized.power_state) == ("VERIFY_RESIZE", states_pb2.POWER_STATE_SHUTDOWN)
    reply = member.servers.RevertResize(servers_pb2.RevertResizeRequest(id=server.id))
    assert reply.status == "REVERT_RESIZE"
    reverted = member.settle(server.id)
    assert (reverted.status, reverted.flavor_id) == ("SHUTOFF", flavors["small"].id)
    assert admin.get(server.id).host == source
    ledger.assert_settled(server.id, SMALL)
    assert ledger.guests(server.id) == {source: states_pb2.POWER_STATE_SHUTDOWN}
    assert admin.migrations(server.id)[0].status == "reverted"
    assert _usage(member) == {"instances": 1, "cores": 1, "ram": 512}  # the growth given back
    assert member.actions(server.id)[0][:2] == ("revertResize", "")


def test_resize_refusals_name_the_reason_and_change_nothing(
        member: MovesApi, admin: MovesApi, ledger: Ledger, flavors: dict[str, Any]) -> None:
    server = member.boot(flavors["medium"].id)
    before = admin.get(server.id)

    def resize(flavor_id: str) -> grpc.RpcError:
        with pytest.raises(grpc.RpcError) as e:
            member.servers.ResizeServer(servers_pb2.ResizeServerRequest(id=server.id,
                                                                         flavor_id=flavor_id))
        return e.value
    for flavor_id, words in ((flavors["medium"].id, "already has this flavor"),
                             (flavors["small"].id, "disks do not shrink"),
                             ("no-such-flavor", "unknown flavor"), ("", "is required")):
        error = resize(flavor_id)
        assert error.code() == Code.INVALID_ARGUMENT and "flavor_id" in error.details()
        assert words in error.details()
    # an upsize beyond the project's quota (8 cores, 2 used: 7 more asked)
    big = admin.flavors.CreateFlavor(flavors_pb2.CreateFlavorRequest(
        name=f"big-{uuid.uuid4().hex[:6]}", vcpus=9, memory_mb=1024, root_gb=2))
    error = resize(big.id)
    assert error.code() == Code.RESOURCE_EXHAUSTED and "cores" in error.details()
    # the wrong state, the wrong role
    member.servers.PauseServer(servers_pb2.PauseServerRequest(id=server.id))
    member.settle(server.id)
    assert resize(flavors["tiny-disk"].id).code() == Code.FAILED_PRECONDITION
    member.servers.UnpauseServer(servers_pb2.UnpauseServerRequest(id=server.id))
    member.settle(server.id)
    assert code_of(lambda: member.servers.MigrateServer(servers_pb2.MigrateServerRequest(
        id=server.id))) == Code.PERMISSION_DENIED
    assert code_of(lambda: member.servers.ConfirmResize(servers_pb2.ConfirmResizeRequest(
        id=server.id))) == Code.FAILED_PRECONDITION
    for host, code in (("no-such-host", Code.INVALID_ARGUMENT), (before.host, Code.INVALID_ARGUMENT)):
        assert code_of(lambda: admin.servers.MigrateServer(servers_pb2.MigrateServerRequest(
            id=server.id, host=host))) == code
    after = admin.get(server.id)
    assert (after.status, after.flavor_id, after.host, after.task_state) == (
        before.status, before.flavor_id, before.host, before.task_state)
    assert admin.migrations(server.id) == []
    assert _usage(member)["cores"] == 2
    ledger.assert_settled(server.id, MEDIUM)


def test_cold_migration_to_a_given_host(admin: MovesApi, ledger: Ledger,
                                        flavors: dict[str, Any]) -> None:
    server = admin.boot(flavors["small"].id, zone="nova:compute-001")
    reply = admin.servers.MigrateServer(servers_pb2.MigrateServerRequest(id=server.id,
                                                                         host="compute-003"))
    assert reply.status == "RESIZE"
    moved = admin.settle(server.id)
    assert (moved.status, moved.host, moved.flavor_id) == ("VERIFY_RESIZE", "compute-003",
                                                            flavors["small"].id)
    [migration] = admin.migrations(server.id)
    assert (migration.migration_type, migration.status) == ("migration", "finished")
    admin.servers.ConfirmResize(servers_pb2.ConfirmResizeRequest(id=server.id))
    assert admin.settle(server.id).status == "ACTIVE"
    ledger.assert_settled(server.id, SMALL)
    assert [a[0] for a in admin.actions(server.id)][:2] == ["confirmResize", "migrate"]
    admin.servers.DeleteServer(servers_pb2.DeleteServerRequest(id=server.id))


def test_a_delete_while_resized_frees_both_hosts(member: MovesApi, admin: MovesApi,
                                                 ledger: Ledger, flavors: dict[str, Any]) -> None:
    server = member.boot(flavors["small"].id)
    member.servers.ResizeServer(servers_pb2.ResizeServerRequest(id=server.id,
                                                                 flavor_id=flavors["medium"].id))
    assert member.settle(server.id).status == "VERIFY_RESIZE"
    [migration] = admin.migrations(server.id)
    member.servers.DeleteServer(servers_pb2.DeleteServerRequest(id=server.id))
    member.gone(server.id)
    assert ledger.held(server.id) == {} and ledger.held(migration.id) == {}
    assert ledger.guests(server.id) == {}
    assert _usage(member) == {"instances": 0, "cores": 0, "ram": 0}


# ---- group policy -------------------------------------------------------------------

def test_moves_honour_the_server_groups_policy(member: MovesApi, admin: MovesApi,
                                               ledger: Ledger, flavors: dict[str, Any]) -> None:
    spread = member.groups.CreateServerGroup(server_groups_pb2.CreateServerGroupRequest(
        name="spread", policy="anti-affinity"))
    first = member.boot(flavors["small"].id, "a", group=spread.id)
    second = member.boot(flavors["small"].id, "b", group=spread.id)
    hosts = {admin.get(first.id).host, admin.get(second.id).host}
    assert len(hosts) == 2
    # another member's host is never a destination, not even when an admin asks
    other = admin.get(second.id).host
    admin.servers.MigrateServer(servers_pb2.MigrateServerRequest(id=first.id, host=other))
    refused = admin.settle(first.id)
    assert (refused.status, refused.host) == ("ACTIVE", admin.get(first.id).host)
    assert "No valid host" in refused.fault.message
    assert "ServerGroupAntiAffinityFilter" in {r.check for r in refused.fault.rejections}
    assert admin.migrations(first.id)[0].status == "error"
    assert admin.actions(first.id)[0][:2] == ("migrate", "Error")
    ledger.assert_settled(first.id, SMALL)
    for _ in range(2):  # and by themselves, moves keep them apart
        admin.servers.LiveMigrateServer(servers_pb2.LiveMigrateServerRequest(id=first.id))
        moved = admin.settle(first.id)
        assert moved.host != admin.get(second.id).host and moved.status == "ACTIVE"
        ledger.assert_settled(first.id, SMALL)
    # affinity: the members' host is the only one, and a move leaves it: no host
    together = member.groups.CreateServerGroup(server_groups_pb2.CreateServerGroupRequest(
        name="together", policy="affinity"))
    third = member.boot(flavors["small"].id, "c", group=together.id)
    admin.servers.LiveMigrateServer(servers_pb2.LiveMigrateServerRequest(id=third.id))
    stayed = admin.settle(third.id)
    assert stayed.status == "ACTIVE" and "ServerGroupAffinityFilter" in {
        r.check for r in stayed.fault.rejections}
    ledger.assert_settled(third.id, SMALL)


# ---- live migration -----------------------------------------------------------------

@pytest.mark.parametrize("paused", [False, True])
def test_live_migration_keeps_the_servers_state(admin: MovesApi, ledger: Ledger,
                                                flavors: dict[str, Any], paused: bool) -> None:
    server = admin.boot(flavors["small"].id, zone="nova:compute-002")
    if paused:
        admin.servers.PauseServer(servers_pb2.PauseServerRequest(id=server.id))
        admin.settle(server.id)
    reply = admin.servers.LiveMigrateServer(servers_pb2.LiveMigrateServerRequest(id=server.id))
    assert reply.status == "MIGRATING"
    moved = admin.settle(server.id)
    assert moved.status == ("PAUSED" if paused else "ACTIVE") and moved.host != "compute-002"
    assert ledger.guests(server.id) == {moved.host: 3 if paused else 1}
    ledger.assert_settled(server.id, SMALL)
    [migration] = admin.migrations(server.id)
    assert (migration.migration_type, migration.status, migration.source_host) == (
        "live-migration", "completed", "compute-002")
    assert admin.actions(server.id)[0] == ("live-migration", "", [
        ("conductor_live_migrate_instance", "Success"), ("compute_pre_live_migration", "Success"),
        ("compute_live_migration", "Success"), ("compute_post_live_migration", "Success")])
    assert code_of(lambda: admin.servers.EvacuateServer(servers_pb2.EvacuateServerRequest(
        id=server.id))) == Code.FAILED_PRECONDITION  # its host is up
    admin.servers.DeleteServer(servers_pb2.DeleteServerRequest(id=server.id))


# ---- rebuild ------------------------------------------------------------------------

@pytest.fixture(scope="module")
def image_ids(cloud: LocalCloud, admin: MovesApi) -> dict[str, str]:
    stub = images_pb2_grpc.ImagesStub(admin.channel)
    path = images.create_blank_image(cloud.data_dir / "images" / "blank.qcow2", 16).path
    out = {}
    for name, properties in (("plain", {}), ("other", {"hw_architecture": "x86_64"}),
                             ("qemu-only", {"img_hv_type": "qemu"})):
        out[name] = stub.CreateImage(images_pb2.CreateImageRequest(
            name=name, path=path, properties=properties)).id
    return out


def test_rebuild_with_another_image_and_one_the_host_cannot_run(
        member: MovesApi, ledger: Ledger, flavors: dict[str, Any], image_ids: dict[str, str]) -> None:
    server = member.boot(flavors["small"].id, image_id=image_ids["plain"])
    request = servers_pb2.RebuildServerRequest(id=server.id, image_id=image_ids["other"],
                                               name="rebuilt")
    request.metadata.items["role"] = "db"
    reply = member.servers.RebuildServer(request)
    assert (reply.status, reply.name, dict(reply.metadata)) == ("REBUILD", "rebuilt", {"role": "db"})
    rebuilt = member.settle(server.id)
    assert (rebuilt.status, rebuilt.image_id) == ("ACTIVE", image_ids["other"])
    ledger.assert_settled(server.id, SMALL)
    # a simulated host is no QEMU host: ImagePropertiesFilter says no, and the
    # server keeps its image and its state
    member.servers.RebuildServer(servers_pb2.RebuildServerRequest(
        id=server.id, image_id=image_ids["qemu-only"]))
    kept = member.settle(server.id)
    assert (kept.status, kept.image_id) == ("ACTIVE", image_ids["other"])
    assert "ImagePropertiesFilter" in {r.check for r in kept.fault.rejections}
    assert member.actions(server.id)[0][:2] == ("rebuild", "Error")
    # a stopped server is rebuilt stopped
    member.servers.StopServer(servers_pb2.StopServerRequest(id=server.id))
    member.settle(server.id)
    member.servers.RebuildServer(servers_pb2.RebuildServerRequest(id=server.id,
                                                                   image_id=image_ids["plain"]))
    assert member.settle(server.id).status == "SHUTOFF"
    assert code_of(lambda: member.servers.RebuildServer(servers_pb2.RebuildServerRequest(
        id=server.id, image_id="nope"))) == Code.INVALID_ARGUMENT
    ledger.assert_settled(server.id, SMALL)


# ---- shelve -------------------------------------------------------------------------

def test_shelve_offloads_and_unshelve_places_it_again(
        member: MovesApi, admin: MovesApi, ledger: Ledger, flavors: dict[str, Any]) -> None:
    server = member.boot(flavors["small"].id)
    reply = member.servers.ShelveServer(servers_pb2.ShelveServerRequest(id=server.id))
    assert reply.task_state == states_pb2.TASK_STATE_SHELVING
    shelved = member.settle(server.id)
    assert (shelved.status, shelved.power_state) == ("SHELVED_OFFLOADED", 0)
    assert admin.get(server.id).host == ""
    ledger.assert_settled(server.id)  # no host, nothing held, no guest
    assert _usage(member)["instances"] == 1  # a shelved server still counts, as in Nova
    assert member.actions(server.id)[0] == ("shelve", "", [
        ("compute_shelve_instance", "Success"), ("compute_shelve_offload_instance", "Success")])
    assert code_of(lambda: member.servers.UnshelveServer(servers_pb2.UnshelveServerRequest(
        id=server.id, host="compute-004"))) == Code.PERMISSION_DENIED
    assert code_of(lambda: member.servers.UnshelveServer(servers_pb2.UnshelveServerRequest(
        id=server.id, availability_zone="no-such-zone"))) == Code.INVALID_ARGUMENT
    admin.servers.UnshelveServer(servers_pb2.UnshelveServerRequest(id=server.id, host="compute-004"))
    back = member.settle(server.id)
    assert back.status == "ACTIVE" and admin.get(server.id).host == "compute-004"
    ledger.assert_settled(server.id, SMALL)
    assert member.actions(server.id)[0][:2] == ("unshelve", "")


# ---- lock, rename, metadata ---------------------------------------------------------

def test_a_locked_server_refuses_all_but_admins(member: MovesApi, admin: MovesApi,
                                                flavors: dict[str, Any]) -> None:
    server = member.boot(flavors["small"].id)
    locked = member.servers.LockServer(servers_pb2.LockServerRequest(id=server.id, reason="audit"))
    assert (locked.locked, locked.locked_reason) == (True, "audit")
    for call in (lambda: member.servers.StopServer(servers_pb2.StopServerRequest(id=server.id)),
                 lambda: member.servers.ResizeServer(servers_pb2.ResizeServerRequest(
                     id=server.id, flavor_id=flavors["medium"].id)),
                 lambda: member.servers.DeleteServer(servers_pb2.DeleteServerRequest(id=server.id)),
                 lambda: member.servers.SetServerMetadata(servers_pb2.SetServerMetadataRequest(
                     id=server.id, metadata={"a": "b"}))):
        with pytest.raises(grpc.RpcError) as e:
            call()
        assert e.value.code() == Code.FAILED_PRECONDITION and "locked: audit" in e.value.details()
    assert member.get(server.id).status == "ACTIVE"
    admin.servers.StopServer(servers_pb2.StopServerRequest(id=server.id))  # admins may
    assert member.settle(server.id).status == "SHUTOFF"
    # the owner unlocks its own lock, not an admin's
    member.servers.UnlockServer(servers_pb2.UnlockServerRequest(id=server.id))
    admin.servers.LockServer(servers_pb2.LockServerRequest(id=server.id))
    assert code_of(lambda: member.servers.UnlockServer(servers_pb2.UnlockServerRequest(
        id=server.id))) == Code.PERMISSION_DENIED
    admin.servers.UnlockServer(servers_pb2.UnlockServerRequest(id=server.id))
    member.servers.StartServer(servers_pb2.StartServerRequest(id=server.id))
    assert member.settle(server.id).status == "ACTIVE"
    assert [a[0] for a in member.actions(server.id)][:5] == ["start", "unlock", "lock", "unlock",
                                                             "stop"]


def test_rename_and_metadata(member: MovesApi, flavors: dict[str, Any]) -> None:
    server = member.boot(flavors["small"].id, "before")
    renamed = member.servers.UpdateServer(servers_pb2.UpdateServerRequest(id=server.id, name="after"))
    assert renamed.name == "after" and member.get(server.id).name == "after"
    assert code_of(lambda: member.servers.UpdateServer(servers_pb2.UpdateServerRequest(
        id=server.id, name=" "))) == Code.INVALID_ARGUMENT

    def meta(**kw: Any) -> dict[str, str]:
        return dict(member.servers.SetServerMetadata(servers_pb2.SetServerMetadataRequest(
            id=server.id, **kw)).metadata)
    assert meta(metadata={"a": "1", "b": "2"}) == {"a": "1", "b": "2"}
    assert meta(metadata={"b": "3", "c": "4"}) == {"a": "1", "b": "3", "c": "4"}
    assert meta(metadata={"z": "9"}, replace=True) == {"z": "9"}
    with pytest.raises(grpc.RpcError) as e:
        member.servers.DeleteServerMetadata(servers_pb2.DeleteServerMetadataRequest(
            id=server.id, keys=["z", "missing"]))
    assert e.value.code() == Code.NOT_FOUND and "missing" in e.value.details()
    assert dict(member.get(server.id).metadata) == {"z": "9"}  # nothing removed
    assert dict(member.servers.DeleteServerMetadata(servers_pb2.DeleteServerMetadataRequest(
        id=server.id, keys=["z"])).metadata) == {}
    with pytest.raises(grpc.RpcError) as e:
        meta(metadata={f"k{i}": "v" for i in range(129)})
    assert e.value.code() == Code.INVALID_ARGUMENT and "metadata" in e.value.details()


# ---- the command line ---------------------------------------------------------------

def test_the_command_line_moves_and_shows(cloud: LocalCloud, admin: MovesApi, ledger: Ledger,
                                          flavors: dict[str, Any]) -> None:
    env = cloud_env(cloud)
    server = admin.boot(flavors["small"].id, "cli")
    done = run_cli("server", "resize", server.id, "--flavor", flavors["medium"].name, "--wait", env=env)
    assert done.returncode == 0, done.stderr
    assert "VERIFY_RESIZE" in done.stdout
    done = run_cli("server", "confirm-resize", server.id, "--wait", env=env)
    assert done.returncode == 0 and "ACTIVE" in done.stdout, done.stderr
    done = run_cli("server", "live-migrate", server.id, "--wait", env=env)
    assert done.returncode == 0, done.stderr
    listed = run_cli("migration", "list", "--server", server.id, env=env)
    assert listed.returncode == 0
    assert "live-migration" in listed.stdout and "confirmed" in listed.stdout
    log = run_cli("server", "actions", server.id, env=env)
    assert log.returncode == 0 and "compute_finish_resize" in log.stdout
    # a move that fails says so, with status 1
    failed = run_cli("server", "migrate", server.id, "--host", admin.get(server.id).host, env=env)
    assert failed.returncode == 1 and "INVALID_ARGUMENT" in failed.stderr
    assert run_cli("server", "lock", server.id, "--reason", "x", env=env).returncode == 0
    assert run_cli("server", "set-meta", server.id, "k=v", env=env).returncode == 0
    assert dict(admin.get(server.id).metadata) == {"k": "v"} and admin.get(server.id).locked
    helped = run_cli("server", "resize", "--help", env=env)
    assert "--flavor" in helped.stdout and "confirm-resize" in helped.stdout
    ledger.assert_settled(server.id, MEDIUM)


# ---- the periodic verdicts: resize_confirm_window, shelved_offload_time -------------

def test_resizes_confirm_and_shelved_servers_offload_by_themselves(tmp_path: Path) -> None:
    """And allow_resize_to_same_host: with the other host disabled, a resize stays
    where it is (both flavors held there until the verdict); a cold migration
    never does."""
    c = LocalCloud(tmp_path / "periodic", hosts=2, host_vcpus=4, host_memory_mb=4096,
                   report_interval=1, settings={"resize_confirm_window": 4,
                                                "shelved_offload_time": 3,
                                                "allow_resize_to_same_host": True})
    with c:
        admin = MovesApi(c, c.admin_token())
        ledger = Ledger(c)
        try:
            small, medium = (admin.flavors.CreateFlavor(flavors_pb2.CreateFlavorRequest(
                name=name, vcpus=vcpus, memory_mb=ram, root_gb=1))
                for name, vcpus, ram in (("small", 1, 512), ("medium", 2, 1024)))
            admin.hosts.DisableHost(hosts_pb2.DisableHostRequest(name="compute-002"))
            server = admin.boot(small.id)
            admin.servers.ResizeServer(servers_pb2.ResizeServerRequest(id=server.id,
                                                                        flavor_id=medium.id))
            assert admin.settle(server.id).status == "VERIFY_RESIZE"
            [migration] = admin.migrations(server.id)
            assert ledger.held(migration.id) == {"compute-001": {**SMALL}}
            assert ledger.held(server.id) == {"compute-001": {**MEDIUM, "DISK_GB": 1}}
            confirmed = admin.until(server.id, lambda s: s.status == "ACTIVE" and not s.task_state,
                                    "confirmed by itself", timeout=30)
            assert confirmed.flavor_id == medium.id and admin.get(server.id).host == "compute-001"
            assert admin.actions(server.id)[0][:2] == ("confirmResize", "")
            ledger.assert_settled(server.id, {"VCPU": 2, "MEMORY_MB": 1024, "DISK_GB": 1})
            admin.servers.MigrateServer(servers_pb2.MigrateServerRequest(id=server.id))
            refused = admin.settle(server.id)
            assert refused.status == "ACTIVE" and "No valid host" in refused.fault.message
            admin.hosts.EnableHost(hosts_pb2.EnableHostRequest(name="compute-002"))
            # shelved, not offloaded yet: its host kept; unshelved there at once
            host = admin.get(server.id).host
            admin.servers.ShelveServer(servers_pb2.ShelveServerRequest(id=server.id))
            shelved = admin.settle(server.id)
            assert (shelved.status, shelved.host) == ("SHELVED", host)
            admin.servers.UnshelveServer(servers_pb2.UnshelveServerRequest(id=server.id))
            back = admin.settle(server.id)
            assert (back.status, back.host) == ("ACTIVE", host)
            ledger.assert_settled(server.id)
            # and left shelved, it is offloaded after shelved_offload_time
            admin.servers.ShelveServer(servers_pb2.ShelveServerRequest(id=server.id))
            assert admin.settle(server.id).status == "SHELVED"
            offloaded = admin.until(server.id, lambda s: s.status == "SHELVED_OFFLOADED",
                                    "offloaded by itself", timeout=30)
            assert offloaded.host == "" and admin.actions(server.id)[0][:2] == ("shelveOffload", "")
            ledger.assert_settled(server.id)
        finally:
            ledger.close()
