"""The whole control plane, each service its own process, over real sockets: what a
user of the API sees. Runs on SQLite, and on PostgreSQL when
NOVALITE_TEST_POSTGRES_URL is set (make test sets it up)."""

from __future__ import annotations

import time
import uuid
from collections import defaultdict
from typing import Any, Iterator

import grpc
import pytest

from novalite.cloud import LocalCloud
from novalite.db.database import Database
from novalite.rpc.novalite.compute.v1 import (
    flavors_pb2,
    hosts_pb2,
    quotas_pb2,
    server_groups_pb2,
    servers_pb2,
    servers_pb2_grpc,
)

from helpers import BACKENDS, Api
from helpers import cloud_database as _db
from helpers import code_of as _code
from helpers import postgres_database as _postgres_database


@pytest.fixture(scope="module", params=BACKENDS)
def cloud(request: Any, tmp_path_factory: Any) -> Iterator[LocalCloud]:
    url = _postgres_database() if request.param == "postgresql" else None
    c = LocalCloud(tmp_path_factory.mktemp(f"cloud-{request.param}"), hosts=20, host_vcpus=16,
                   host_memory_mb=32768, host_disk_gb=500, database_url=url, report_interval=2)
    with c:
        yield c


@pytest.fixture(scope="module")
def admin(cloud: LocalCloud) -> Api:
    return Api(cloud, cloud.admin_token())


@pytest.fixture(scope="module")
def flavor(admin: Api) -> Any:
    return admin.flavors.CreateFlavor(flavors_pb2.CreateFlavorRequest(
        name=f"m1.small-{uuid.uuid4().hex[:6]}", vcpus=1, memory_mb=512, root_gb=5))


def _usage_by_host(db: Database) -> dict[str, dict[str, int]]:
    return {h.name: {rc: n for rc, n in h.usage.items() if n} for h in db.list_hosts()}


def test_boot_100_servers_across_20_hosts_then_delete_them(cloud: LocalCloud, admin: Api, flavor: Any) -> None:
    project = f"p-{uuid.uuid4().hex[:6]}"
    admin.quotas.SetQuota(quotas_pb2.SetQuotaRequest(project_id=project, instances=200, cores=200, ram=200 * 1024))
    user = Api(cloud, cloud.member_token(project))
    reply = user.servers.CreateServer(servers_pb2.CreateServerRequest(
        name="web", flavor_id=flavor.id, min_count=100, max_count=100))
    ids = [s.id for s in reply.servers]
    assert len(ids) == 100
    final = user.wait(ids, {"ACTIVE", "ERROR"}, timeout=180)
    assert {s.status for s in final.values()} == {"ACTIVE"}, [s.fault.message for s in final.values() if s.fault.message]

    db = _db(cloud)
    try:
        expected: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
        for inst in db.list_instances(project_id=project, limit=1000).instances:
            assert inst.host is not None
            for rc, amount in (("VCPU", 1), ("MEMORY_MB", 512), ("DISK_GB", 5)):
                expected[inst.host][rc] += amount
        usage = _usage_by_host(db)
        for host, amounts in expected.items():
            assert usage[host] == dict(amounts), host
        assert len(expected) == 20  # spread over every host
        # each create action: finished, scheduled and built without error (a member
        # sees the steps, not their error details)
        for sid in ids[:5]:
            [create] = user.servers.ListServerActions(
                servers_pb2.ListServerActionsRequest(id=sid)).actions
            assert (create.action, create.message, create.HasField("finish_time")) == \
                ("create", "", True)
            assert [(e.event, e.result) for e in create.events] == [
                ("conductor_schedule_and_build_instances", "Success"),
                ("compute__do_build_and_run_instance", "Success")]
            assert create.events[0].start_time.ToDatetime() <= create.events[1].start_time.ToDatetime()
        for sid in ids:
            user.servers.DeleteServer(servers_pb2.DeleteServerRequest(id=sid))
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and any(_usage_by_host(db).values()):
            time.sleep(0.3)
        assert not any(_usage_by_host(db).values()), _usage_by_host(db)
        assert db.get_quota(project).usage["instances"] == 0
    finally:
        db.close()


def test_tokens_roles_and_projects(cloud: LocalCloud, admin: Api, flavor: Any) -> None:
    list_req = servers_pb2.ListServersRequest()
    with grpc.insecure_channel(cloud.endpoint("api")) as ch:
        assert _code(lambda: servers_pb2_grpc.ServersStub(ch).ListServers(list_req)) == grpc.StatusCode.UNAUTHENTICATED
    expired = cloud.signer.issue("p1", "u", ["member"], 1)
    time.sleep(2.1)
    assert _code(lambda: Api(cloud, expired).servers.ListServers(list_req)) == grpc.StatusCode.UNAUTHENTICATED
    good = cloud.member_token("p1")
    forged = good[:-3] + ("AAA" if not good.endswith("AAA") else "BBB")
    assert _code(lambda: Api(cloud, forged).servers.ListServers(list_req)) == grpc.StatusCode.UNAUTHENTICATED
    member = Api(cloud, cloud.member_token("p1"))
    assert _code(lambda: member.flavors.CreateFlavor(flavors_pb2.CreateFlavorRequest(
        name="x", vcpus=1, memory_mb=64))) == grpc.StatusCode.PERMISSION_DENIED
    assert _code(lambda: member.hosts.ListHosts(hosts_pb2.ListHostsRequest())) == grpc.StatusCode.PERMISSION_DENIED

    mine = member.servers.CreateServer(servers_pb2.CreateServerRequest(name="mine", flavor_id=flavor.id)).servers[0]
    other = Api(cloud, cloud.member_token("p2"))
    assert _code(lambda: other.servers.GetServer(servers_pb2.GetServerRequest(id=mine.id))) == grpc.StatusCode.NOT_FOUND
    assert _code(lambda: other.servers.DeleteServer(servers_pb2.DeleteServerRequest(id=mine.id))) == grpc.StatusCode.NOT_FOUND
    assert mine.id not in [s.id for s in other.servers.ListServers(list_req).servers]
    member.wait([mine.id], {"ACTIVE"})
    member.servers.DeleteServer(servers_pb2.DeleteServerRequest(id=mine.id))


@pytest.mark.parametrize("change,field", [
    ({"flavor_id": "no-such-flavor"}, "flavor_id"),
    ({"min_count": 3, "max_count": 2}, "max_count"),
    ({"name": ""}, "name"),
    ({"name": "x" * 300}, "name"),
    ({"group": "not-a-uuid"}, "scheduler_hints.group"),
    ({"same_host": ["nope"]}, "scheduler_hints.same_host"),
])
def test_bad_input_names_the_field_and_writes_nothing(cloud: LocalCloud, flavor: Any,
                                                     change: dict[str, Any], field: str) -> None:
    project = f"bad-{uuid.uuid4().hex[:6]}"
    user = Api(cloud, cloud.member_token(project))
    req = servers_pb2.CreateServerRequest(name="ok", flavor_id=flavor.id)
    for key, value in change.items():
        if key == "group":
            req.scheduler_hints.group = value
        elif key == "same_host":
            req.scheduler_hints.same_host.extend(value)
        else:
            setattr(req, key, value)
    with pytest.raises(grpc.RpcError) as e:
        user.servers.CreateServer(req)
    assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert field in e.value.details()
    assert not user.servers.ListServers(servers_pb2.ListServersRequest()).servers


def test_a_ten_megabyte_name_is_refused(cloud: LocalCloud, flavor: Any) -> None:
    user = Api(cloud, cloud.member_token(f"big-{uuid.uuid4().hex[:6]}"))
    with pytest.raises(grpc.RpcError) as e:
        user.servers.CreateServer(servers_pb2.CreateServerRequest(name="x" * (10 * 1024 * 1024), flavor_id=flavor.id))
    assert e.value.code() in (grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.RESOURCE_EXHAUSTED)
    assert not user.servers.ListServers(servers_pb2.ListServersRequest()).servers


def test_quota_and_no_valid_host(cloud: LocalCloud, admin: Api, flavor: Any) -> None:
    project = f"q-{uuid.uuid4().hex[:6]}"
    admin.quotas.SetQuota(quotas_pb2.SetQuotaRequest(project_id=project, instances=2, ram=10**7))
    user = Api(cloud, cloud.member_token(project))
    with pytest.raises(grpc.RpcError) as e:
        user.servers.CreateServer(servers_pb2.CreateServerRequest(name="q", flavor_id=flavor.id, min_count=3, max_count=3))
    assert e.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED

    huge = admin.flavors.CreateFlavor(flavors_pb2.CreateFlavorRequest(
        name=f"huge-{uuid.uuid4().hex[:6]}", vcpus=1, memory_mb=10 * 32768, root_gb=1))
    server = user.servers.CreateServer(servers_pb2.CreateServerRequest(name="big", flavor_id=huge.id)).servers[0]
    final = user.wait([server.id], {"ERROR"})[server.id]
    assert "No valid host" in final.fault.message
    counts = {r.check: r.hosts for r in final.fault.rejections}
    assert counts.get("MEMORY_MB") == 20, counts
    # the create action ended in error at its scheduling step (the reason for admins)
    [create] = admin.servers.ListServerActions(
        servers_pb2.ListServerActionsRequest(id=server.id)).actions
    assert (create.action, create.message) == ("create", "Error")
    assert [(e.event, e.result) for e in create.events] == [
        ("conductor_schedule_and_build_instances", "Error")]
    assert "No valid host" in create.events[0].traceback
    user.servers.DeleteServer(servers_pb2.DeleteServerRequest(id=server.id))


def test_anti_affinity_group_spreads_servers(cloud: LocalCloud, flavor: Any) -> None:
    user = Api(cloud, cloud.member_token(f"g-{uuid.uuid4().hex[:6]}"))
    group = user.groups.CreateServerGroup(server_groups_pb2.CreateServerGroupRequest(name="spread", policy="anti-affinity"))
    req = servers_pb2.CreateServerRequest(name="ha", flavor_id=flavor.id, min_count=5, max_count=5)
    req.scheduler_hints.group = group.id
    ids = [s.id for s in user.servers.CreateServer(req).servers]
    user.wait(ids, {"ACTIVE"})
    db = _db(cloud)
    try:
        hosts = [db.get_instance(i).host for i in ids]
    finally:
        db.close()
    assert len(set(hosts)) == 5
    for sid in ids:
        user.servers.DeleteServer(servers_pb2.DeleteServerRequest(id=sid))


def test_an_admin_forces_a_host_past_the_filters_not_past_its_capacity(
        cloud: LocalCloud, admin: Api, flavor: Any) -> None:
    """Nova's "zone:host": the filters are skipped (ComputeCapabilitiesFilter would
    refuse every simulated host a flavor asking for a QEMU hypervisor); the
    host's capacity is still checked (Placement), and so is the server group's
    policy, by the compute agent's late check (a forced host has no alternate)."""
    admin.quotas.SetQuota(quotas_pb2.SetQuotaRequest(project_id="admin", instances=100, cores=100,
                                                     ram=10**7))
    picky = admin.flavors.CreateFlavor(flavors_pb2.CreateFlavorRequest(
        name=f"qemu-only-{uuid.uuid4().hex[:6]}", vcpus=1, memory_mb=512, root_gb=5,
        extra_specs={"capabilities:hypervisor_type": "QEMU"}))
    [unforced] = admin.servers.CreateServer(servers_pb2.CreateServerRequest(
        name="picky", flavor_id=picky.id)).servers
    failed = admin.wait([unforced.id], {"ERROR"})[unforced.id]
    assert {r.check: r.hosts for r in failed.fault.rejections}.get("ComputeCapabilitiesFilter") == 20
    ids = []
    for zone in ("nova:compute-007", "nova:compute-007:compute-007", "nova::compute-008"):
        req = servers_pb2.CreateServerRequest(name="pinned", flavor_id=picky.id, availability_zone=zone)
        ids += [s.id for s in admin.servers.CreateServer(req).servers]
    final = admin.wait(ids, {"ACTIVE", "ERROR"})
    assert [(final[i].status, final[i].host, final[i].availability_zone) for i in ids] == \
        [("ACTIVE", "compute-007", "nova")] * 2 + [("ACTIVE", "compute-008", "nova")]

    group = admin.groups.CreateServerGroup(server_groups_pb2.CreateServerGroupRequest(
        name="apart", policy="anti-affinity"))
    apart = []
    for _ in range(2):
        req = servers_pb2.CreateServerRequest(name="apart", flavor_id=flavor.id,
                                              availability_zone="nova:compute-009")
        req.scheduler_hints.group = group.id
        [server] = admin.servers.CreateServer(req).servers
        apart.append(admin.wait([server.id], {"ACTIVE", "ERROR"})[server.id])
    assert [(s.status, s.host) for s in apart] == [("ACTIVE", "compute-009"), ("ERROR", "")]
    assert "Anti-affinity instance group policy was violated: host compute-009" in \
        apart[1].fault.details, apart[1].fault.details

    huge = admin.flavors.CreateFlavor(flavors_pb2.CreateFlavorRequest(
        name=f"huge-{uuid.uuid4().hex[:6]}", vcpus=1, memory_mb=2 * 32768, root_gb=1))
    [big] = admin.servers.CreateServer(servers_pb2.CreateServerRequest(
        name="too-big", flavor_id=huge.id, availability_zone="nova:compute-007")).servers
    failed = admin.wait([big.id], {"ERROR"})[big.id]
    assert "No valid host" in failed.fault.message
    for sid in [unforced.id, *ids, *(s.id for s in apart), big.id]:
        admin.servers.DeleteServer(servers_pb2.DeleteServerRequest(id=sid))


def test_a_failed_build_lands_on_an_alternate(tmp_path: Any) -> None:
    """Builds fail on the three hosts the scheduler prefers (equal hosts: table
    order): two servers still end ACTIVE, on an alternate, after retries. (With as
    many servers as hosts there would be no alternate: Nova's alternates exclude
    every host selected for the request.)"""
    failing = [f"compute-{i:03d}" for i in range(1, 4)]
    c = LocalCloud(tmp_path / "alt", hosts=6, fail_builds_on=failing, report_interval=2)
    with c:
        admin = Api(c, c.admin_token())
        f = admin.flavors.CreateFlavor(flavors_pb2.CreateFlavorRequest(name="f", vcpus=1, memory_mb=256, root_gb=1))
        ids = [s.id for s in admin.servers.CreateServer(servers_pb2.CreateServerRequest(
            name="alt", flavor_id=f.id, min_count=2, max_count=2)).servers]
        final = admin.wait(ids, {"ACTIVE", "ERROR"})
        assert {s.status for s in final.values()} == {"ACTIVE"}
        db = _db(c)
        try:
            instances = [db.get_instance(i) for i in ids]
        finally:
            db.close()
        assert not {i.host for i in instances} & set(failing)
        assert all(i.attempts == 3 for i in instances)  # chosen, first alternate, second
        # the create action shows the scheduling and each host's build, in order
        for inst in instances:
            [create] = admin.servers.ListServerActions(
                servers_pb2.ListServerActionsRequest(id=inst.id)).actions
            assert create.action == "create" and create.HasField("finish_time")
            events = [(e.event, e.result) for e in create.events]
            assert events == [("conductor_schedule_and_build_instances", "Success")] + [
                ("compute__do_build_and_run_instance", "Error")] * 2 + [
                ("compute__do_build_and_run_instance", "Success")], events
            failed_on = [e.traceback.split(":")[0] for e in create.events[1:3]]
            assert set(failed_on) <= set(failing) and len(set(failed_on)) == 2
            assert all(e.HasField("finish_time") for e in create.events)


def test_watchers_that_hang_up_do_not_bring_the_api_down(cloud: LocalCloud, admin: Api,
                                                         flavor: Any) -> None:
    """A client cancelling WatchServers after its first event, again and again (what
    `novalite server ... --wait` does): the API must stay up. Reading the peer of a
    cancelled call in the logging interceptor crashed it with SIGSEGV in a few tries."""
    server = admin.servers.CreateServer(servers_pb2.CreateServerRequest(
        name="watched", flavor_id=flavor.id)).servers[0]
    admin.wait([server.id], {"ACTIVE"})
    for _ in range(200):
        client = Api(cloud, cloud.admin_token())
        stream = client.servers.WatchServers(servers_pb2.WatchServersRequest(ids=[server.id]),
                                             timeout=30)
        try:
            assert next(stream).server.id == server.id
        finally:
            stream.cancel()
            client.channel.close()
    assert cloud.processes["api"].alive(), cloud.processes["api"].log_tail()
    assert admin.servers.GetServer(servers_pb2.GetServerRequest(id=server.id)).status == "ACTIVE"
    admin.servers.DeleteServer(servers_pb2.DeleteServerRequest(id=server.id))
