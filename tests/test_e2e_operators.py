"""What operators do every day (issue 12, items 1, 2, 4 and 5), through the public
API of a whole cloud, each service its own process over real sockets, on SQLite
and on PostgreSQL when NOVALITE_TEST_POSTGRES_URL is set:

* zones and aggregates made through the API reach every scheduler replica before
  the call returns: the next server lands by them, no periodic report waited for;
* aggregate metadata drives tenant isolation, flavor pinning, per-aggregate limits
  and weight multipliers, from the next request on;
* hosts report CPU traits (from the settings: these hosts are simulated), admins
  add their own, flavors require or forbid them, and a request nobody can satisfy
  says which trait;
* the compute agent's late check of a group's policy sends a build to an
  alternate when the scheduler's view was behind;
* the CLI does all of it, private flavors included.

Each test uses hosts of its own, so that what another left (a compute view not
yet reported after its deletes) cannot tip its weights.
"""

from __future__ import annotations

import json
import time
import uuid
from typing import Any, Callable, Iterator

import grpc
import pytest

from novalite.cloud import LocalCloud, free_port
from novalite.rpc.novalite.compute.v1 import (
    aggregates_pb2,
    aggregates_pb2_grpc,
    flavors_pb2,
    hosts_pb2,
    quotas_pb2,
    server_groups_pb2,
    servers_pb2,
)
from novalite.rpc.novalite.internal.v1 import request_spec_pb2, scheduler_pb2, scheduler_pb2_grpc

from helpers import BACKENDS, Api, cloud_env, run_cli
from helpers import code_of as _code
from helpers import postgres_database as _postgres_database

HOSTS = [f"compute-{i:03d}" for i in range(1, 17)]
CPU_TRAITS = ["HW_CPU_X86_AVX2", "HW_CPU_X86_SSE42"]


@pytest.fixture(scope="module", params=BACKENDS)
def cloud(request: Any, tmp_path_factory: Any) -> Iterator[LocalCloud]:
    url = _postgres_database() if request.param == "postgresql" else None
    # report_interval 10 (Nova's): the scheduler's periodic checks are far from
    # the moments the tests leave between a change and its use
    c = LocalCloud(tmp_path_factory.mktemp(f"ops-{request.param}"), hosts=len(HOSTS),
                   host_vcpus=8, host_memory_mb=16384, host_disk_gb=200, database_url=url,
                   compute_options={"cpu_traits": CPU_TRAITS},
                   scheduler_options={"enabled_filters": [
                       "ComputeFilter", "ComputeCapabilitiesFilter", "ImagePropertiesFilter",
                       "ServerGroupAntiAffinityFilter", "ServerGroupAffinityFilter",
                       "AggregateInstanceExtraSpecsFilter", "AggregateMultiTenancyIsolation",
                       "AggregateNumInstancesFilter"]})
    with c:
        yield c


class Operator(Api):
    def __init__(self, cloud: LocalCloud, token: str) -> None:
        super().__init__(cloud, token)
        self.aggregates = aggregates_pb2_grpc.AggregatesStub(self.channel)
        self.zones = aggregates_pb2_grpc.AvailabilityZonesStub(self.channel)


@pytest.fixture(scope="module")
def admin(cloud: LocalCloud) -> Operator:
    op = Operator(cloud, cloud.admin_token())
    op.quotas.SetQuota(quotas_pb2.SetQuotaRequest(project_id="admin", instances=-1, cores=-1, ram=-1))
    return op


@pytest.fixture(scope="module")
def small(admin: Operator) -> Any:
    return admin.flavors.CreateFlavor(flavors_pb2.CreateFlavorRequest(
        name="ops.small", vcpus=1, memory_mb=512, root_gb=1))


def _code_or_none(call: Callable[[], Any]) -> grpc.StatusCode | None:
    try:
        call()
    except grpc.RpcError as e:
        return e.code()  # type: ignore[no-any-return]
    return None


def delete_all(api: Api, ids: list[str]) -> None:
    """Delete the servers and wait until they are gone."""
    for sid in ids:
        api.servers.DeleteServer(servers_pb2.DeleteServerRequest(id=sid))
    deadline = time.monotonic() + 120
    for sid in ids:
        while _code_or_none(lambda: api.servers.GetServer(
                servers_pb2.GetServerRequest(id=sid))) != grpc.StatusCode.NOT_FOUND:
            assert time.monotonic() < deadline, f"server {sid} not deleted"
            time.sleep(0.1)


@pytest.fixture(autouse=True)
def clean(admin: Operator) -> Iterator[None]:
    """Each test leaves no server and no aggregate behind it."""
    yield
    servers = admin.servers.ListServers(servers_pb2.ListServersRequest(page_size=1000)).servers
    delete_all(admin, [s.id for s in servers])
    for agg in admin.aggregates.ListAggregates(aggregates_pb2.ListAggregatesRequest()).aggregates:
        for host in agg.hosts:
            admin.aggregates.RemoveAggregateHost(aggregates_pb2.RemoveAggregateHostRequest(
                id=agg.id, host=host))
        admin.aggregates.DeleteAggregate(aggregates_pb2.DeleteAggregateRequest(id=agg.id))


def aggregate(admin: Operator, name: str, *hosts: str, zone: str | None = None,
              **metadata: str) -> Any:
    req = aggregates_pb2.CreateAggregateRequest(name=name, metadata=metadata)
    if zone is not None:
        req.availability_zone = zone
    agg = admin.aggregates.CreateAggregate(req)
    for host in hosts:
        agg = admin.aggregates.AddAggregateHost(aggregates_pb2.AddAggregateHostRequest(
            id=agg.id, host=host))
    return agg


def boot(api: Api, flavor: Any, count: int = 1, *, zone: str | None = None,
         group: str | None = None, expect: str = "ACTIVE") -> list[Any]:
    """Create ``count`` servers in one request and wait until they settle, all
    ``expect``; returns them in order."""
    req = servers_pb2.CreateServerRequest(name="s", flavor_id=flavor.id, min_count=count,
                                          max_count=count)
    if zone is not None:
        req.availability_zone = zone
    if group is not None:
        req.scheduler_hints.group = group
    ids = [s.id for s in api.servers.CreateServer(req).servers]
    final = api.wait(ids, {"ACTIVE", "ERROR"})
    assert {s.status for s in final.values()} == {expect}, [s.fault.message for s in final.values()]
    return [final[i] for i in ids]


def hosts_of(admin: Api, servers: list[Any]) -> list[str]:
    """Where the servers are (the host is shown to admins only)."""
    return [admin.servers.GetServer(servers_pb2.GetServerRequest(id=s.id)).host for s in servers]


def rejections(server: Any) -> dict[str, int]:
    return {r.check: r.hosts for r in server.fault.rejections}


def flavor(admin: Operator, **extra_specs: str) -> Any:
    return admin.flavors.CreateFlavor(flavors_pb2.CreateFlavorRequest(
        name=f"f-{uuid.uuid4().hex[:6]}", vcpus=1, memory_mb=512, root_gb=1,
        extra_specs=extra_specs))


# ---- 1. zones and aggregates, every scheduler told at once ------------------------------------

def test_a_zone_made_through_the_api_is_used_at_once_by_every_scheduler(
        cloud: LocalCloud, admin: Operator, small: Any) -> None:
    # a second scheduler replica, which loaded the hosts before the zone existed
    cloud.ports["scheduler2"] = free_port()
    cloud.spawn("scheduler2", [*cloud._command("scheduler"), "--listen", cloud.endpoint("scheduler2")])
    try:
        cloud.wait_serving("scheduler2")
        east = aggregate(admin, "rack-east", "compute-002", "compute-003", zone="az-east")
        member = Operator(cloud, cloud.member_token(f"p-{uuid.uuid4().hex[:6]}"))
        servers = boot(member, small, 4, zone="az-east")
        assert {s.availability_zone for s in servers} == {"az-east"}
        assert set(hosts_of(admin, servers)) == {"compute-002", "compute-003"}
        # the replica the conductor does not call has the zone too
        with grpc.insecure_channel(cloud.endpoint("scheduler2")) as ch:
            replica = scheduler_pb2_grpc.SchedulerStub(ch)
            token = (("authorization", f"Bearer {cloud.admin_token()}"),)
            probe = str(uuid.uuid4())
            reply = replica.SelectDestinations(scheduler_pb2.SelectDestinationsRequest(
                request_spec=request_spec_pb2.RequestSpec(
                    flavor=flavors_pb2.Flavor(name="probe", vcpus=1, memory_mb=64, root_gb=1),
                    availability_zone="az-east"),
                instance_uuids=[probe]), metadata=token)
            assert reply.selections[0].hosts[0].host in {"compute-002", "compute-003"}
            replica.ReleaseAllocation(scheduler_pb2.ReleaseAllocationRequest(instance_uuid=probe),
                                      metadata=token)
    finally:
        cloud.stop_service("scheduler2")
        del cloud.processes["scheduler2"]

    listed = member.zones.ListAvailabilityZones(aggregates_pb2.ListAvailabilityZonesRequest())
    assert [(z.name, z.available, len(z.hosts)) for z in listed.availability_zones] == [
        ("az-east", True, 0), ("nova", True, 0)]
    detail = admin.zones.ListAvailabilityZones(aggregates_pb2.ListAvailabilityZonesRequest())
    assert {z.name: [h.name for h in z.hosts] for z in detail.availability_zones} == {
        "az-east": ["compute-002", "compute-003"],
        "nova": [h for h in HOSTS if h not in ("compute-002", "compute-003")]}
    # Nova's rules: a host with servers keeps its zone; an aggregate with hosts stays
    assert _code(lambda: admin.aggregates.UpdateAggregate(aggregates_pb2.UpdateAggregateRequest(
        id=east.id, availability_zone="az-west"))) == grpc.StatusCode.FAILED_PRECONDITION
    assert _code(lambda: admin.aggregates.DeleteAggregate(aggregates_pb2.DeleteAggregateRequest(
        id=east.id))) == grpc.StatusCode.FAILED_PRECONDITION
    renamed = admin.aggregates.UpdateAggregate(aggregates_pb2.UpdateAggregateRequest(
        id=east.id, name="rack-one"))
    assert (renamed.name, renamed.availability_zone) == ("rack-one", "az-east")
    # emptied, the zone moves; deleted, it is no zone to create servers in
    delete_all(member, [s.id for s in servers])
    west = admin.aggregates.UpdateAggregate(aggregates_pb2.UpdateAggregateRequest(
        id=east.id, availability_zone="az-west"))
    assert west.availability_zone == "az-west"
    assert set(hosts_of(admin, boot(admin, small, 2, zone="az-west"))) <= {"compute-002", "compute-003"}
    delete_all(admin, [s.id for s in admin.servers.ListServers(servers_pb2.ListServersRequest()).servers])
    for host in ("compute-002", "compute-003"):
        admin.aggregates.RemoveAggregateHost(aggregates_pb2.RemoveAggregateHostRequest(id=east.id, host=host))
    admin.aggregates.DeleteAggregate(aggregates_pb2.DeleteAggregateRequest(id=east.id))
    with pytest.raises(grpc.RpcError) as e:
        member.servers.CreateServer(servers_pb2.CreateServerRequest(
            name="lost", flavor_id=small.id, availability_zone="az-west"))
    assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "unknown availability zone 'az-west'" in (e.value.details() or "")


def test_tenant_isolation_follows_the_aggregate_at_once(cloud: LocalCloud, admin: Operator,
                                                        small: Any) -> None:
    """AggregateMultiTenancyIsolation: of a zone of four hosts, three are project
    a's alone; project b's servers stack on the fourth, until b is let in."""
    project_a, project_b = (f"p-{uuid.uuid4().hex[:6]}" for _ in range(2))
    aggregate(admin, "zone-t", "compute-004", "compute-005", "compute-006", "compute-007",
              zone="az-t")
    private = aggregate(admin, "private", "compute-005", "compute-006", "compute-007",
                        filter_tenant_id=project_a)
    b = Api(cloud, cloud.member_token(project_b))
    assert hosts_of(admin, boot(b, small, 3, zone="az-t")) == ["compute-004"] * 3
    a = Api(cloud, cloud.member_token(project_a))
    assert sorted(hosts_of(admin, boot(a, small, 3, zone="az-t"))) == [
        "compute-005", "compute-006", "compute-007"]
    admin.aggregates.SetAggregateMetadata(aggregates_pb2.SetAggregateMetadataRequest(
        id=private.id, metadata={"filter_tenant_id": f"{project_a},{project_b}"}))
    assert hosts_of(admin, boot(b, small, zone="az-t"))[0] in {"compute-005", "compute-006",
                                                                "compute-007"}


def test_flavor_pinning_follows_the_aggregate_at_once(admin: Operator) -> None:
    """AggregateInstanceExtraSpecsFilter: ssd=true only where an aggregate says so,
    and nowhere once the key is gone."""
    pinned = flavor(admin, **{"aggregate_instance_extra_specs:ssd": "true"})
    fast = aggregate(admin, "fast", "compute-008", ssd="true")
    assert hosts_of(admin, boot(admin, pinned, 2)) == ["compute-008"] * 2
    admin.aggregates.SetAggregateMetadata(aggregates_pb2.SetAggregateMetadataRequest(
        id=fast.id, unset=["ssd"]))
    [failed] = boot(admin, pinned, expect="ERROR")
    assert rejections(failed).get("AggregateInstanceExtraSpecsFilter") == len(HOSTS)


def test_a_per_aggregate_limit_follows_the_aggregate_at_once(admin: Operator, small: Any) -> None:
    """AggregateNumInstancesFilter: max_instances_per_host of the hosts' aggregate."""
    pair = aggregate(admin, "pair", "compute-009", "compute-010", zone="az-pair",
                     max_instances_per_host="1")
    assert sorted(hosts_of(admin, boot(admin, small, 2, zone="az-pair"))) == [
        "compute-009", "compute-010"]
    [failed] = boot(admin, small, zone="az-pair", expect="ERROR")
    assert rejections(failed).get("AggregateNumInstancesFilter") == 2
    admin.aggregates.SetAggregateMetadata(aggregates_pb2.SetAggregateMetadataRequest(
        id=pair.id, metadata={"max_instances_per_host": "2"}))
    boot(admin, small, zone="az-pair")


def test_weight_multipliers_follow_the_aggregate(admin: Operator, small: Any) -> None:
    """Three hosts spread servers (the weighers' defaults); three others, whose
    aggregate turns the RAM, CPU and disk multipliers negative, stack them."""
    aggregate(admin, "spread", "compute-011", "compute-012", "compute-013", zone="az-spread")
    spread = [boot(admin, small, zone="az-spread")[0] for _ in range(3)]
    assert len(set(hosts_of(admin, spread))) == 3
    aggregate(admin, "stack", "compute-014", "compute-015", "compute-016", zone="az-stack",
              ram_weight_multiplier="-1.0", cpu_weight_multiplier="-1.0",
              disk_weight_multiplier="-1.0")
    stacked = [boot(admin, small, zone="az-stack")[0] for _ in range(3)]
    assert len(set(hosts_of(admin, stacked))) == 1


# ---- 2. traits ------------------------------------------------------------------------------

def test_traits_reported_added_required_and_forbidden(cloud: LocalCloud, admin: Operator) -> None:
    hosts = {h.name: h for h in admin.hosts.ListHosts(hosts_pb2.ListHostsRequest(page_size=100)).hosts}
    assert all(list(h.traits) == CPU_TRAITS for h in hosts.values())
    aggregate(admin, "gpu-rack", "compute-016", "compute-001", zone="az-gpu")
    member = Api(cloud, cloud.member_token(f"p-{uuid.uuid4().hex[:6]}"))
    boot(member, flavor(admin, **{"trait:HW_CPU_X86_AVX2": "required"}))
    # nobody has it: the fault says so
    [failed] = boot(member, flavor(admin, **{"trait:HW_CPU_X86_AVX512F": "required"}), expect="ERROR")
    assert rejections(failed).get("required_traits") == len(HOSTS)
    assert "trait HW_CPU_X86_AVX512F is required: no host has it" in failed.fault.message

    # an admin's trait, used at once by the next request
    added = admin.hosts.AddHostTrait(hosts_pb2.HostTraitRequest(name="compute-016", trait="CUSTOM_GPU"))
    assert list(added.traits) == ["CUSTOM_GPU", *CPU_TRAITS]
    gpu = flavor(admin, **{"trait:CUSTOM_GPU": "required"})
    assert hosts_of(admin, boot(member, gpu, 2)) == ["compute-016"] * 2
    # forbidden: of a zone of two hosts, only the one without it (two on one host,
    # though the weighers would spread them)
    no_gpu = flavor(admin, **{"trait:CUSTOM_GPU": "forbidden"})
    assert hosts_of(admin, boot(admin, no_gpu, 2, zone="az-gpu")) == ["compute-001"] * 2
    # the agents' traits are theirs; a class no host has is refused, naming the key
    assert _code(lambda: admin.hosts.AddHostTrait(hosts_pb2.HostTraitRequest(
        name="compute-016", trait="HW_CPU_X86_AVX512F"))) == grpc.StatusCode.INVALID_ARGUMENT
    with pytest.raises(grpc.RpcError) as e:
        flavor(admin, **{"resources:CUSTOM_GPU": "1"})
    assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "extra_specs.resources:CUSTOM_GPU" in (e.value.details() or "")
    removed = admin.hosts.RemoveHostTrait(hosts_pb2.HostTraitRequest(name="compute-016", trait="CUSTOM_GPU"))
    assert list(removed.traits) == CPU_TRAITS
    [failed] = boot(member, gpu, expect="ERROR")
    assert "trait CUSTOM_GPU is required: no host has it" in failed.fault.message


# ---- 4. the late check of a group's policy -----------------------------------------------------

def test_the_late_check_sends_a_build_the_scheduler_misplaced_to_an_alternate(
        cloud: LocalCloud, admin: Operator, small: Any) -> None:
    """The scheduler places by what it knows; when it has lost track of a member
    (here: the member's claim released, the guest still running, and the
    scheduler started afresh from the database), it sends the next member to that
    member's host. The agent's late check refuses it there (Nova's
    _validate_instance_group_policy) and the build lands on the alternate; the
    refused host's failed builds stay 0."""
    aggregate(admin, "late", "compute-010", "compute-011", zone="az-late")
    big = admin.flavors.CreateFlavor(flavors_pb2.CreateFlavorRequest(
        name=f"big-{uuid.uuid4().hex[:6]}", vcpus=1, memory_mb=4096, root_gb=50))
    # compute-011 fuller than compute-010 will look: the weighers prefer 010
    boot(admin, big, zone="az-late:compute-011")
    group = admin.groups.CreateServerGroup(server_groups_pb2.CreateServerGroupRequest(
        name="apart", policy="anti-affinity"))
    [first] = boot(admin, small, zone="az-late:compute-010", group=group.id)
    with grpc.insecure_channel(cloud.endpoint("scheduler")) as ch:
        scheduler_pb2_grpc.SchedulerStub(ch).ReleaseAllocation(
            scheduler_pb2.ReleaseAllocationRequest(instance_uuid=first.id),
            metadata=(("authorization", f"Bearer {cloud.admin_token()}"),))
    cloud.restart("scheduler")
    [second] = boot(admin, small, zone="az-late", group=group.id)
    assert hosts_of(admin, [first, second]) == ["compute-010", "compute-011"]
    [create] = admin.servers.ListServerActions(servers_pb2.ListServerActionsRequest(id=second.id)).actions
    assert [(e.event, e.result) for e in create.events] == [
        ("conductor_schedule_and_build_instances", "Success"),
        ("compute__do_build_and_run_instance", "Error"),
        ("compute__do_build_and_run_instance", "Success")]
    assert create.events[1].traceback.startswith(
        "compute-010: ABORTED: Anti-affinity instance group policy was violated"), create.events[1].traceback
    hosts = {h.name: h for h in admin.hosts.ListHosts(hosts_pb2.ListHostsRequest(page_size=100)).hosts}
    assert hosts["compute-010"].compute.failed_builds == 0


# ---- the CLI -----------------------------------------------------------------------------------

def test_the_operators_commands(cloud: LocalCloud, admin: Operator) -> None:
    env = cloud_env(cloud)

    def cli(*args: str) -> Any:
        proc = run_cli(*args, "--json", env=env)
        assert proc.returncode == 0, (args, proc.stderr)
        return json.loads(proc.stdout) if proc.stdout.strip() else None

    created = cli("aggregate", "create", "cli-rack", "--zone", "az-cli", "--property", "ssd=true")
    assert (created["name"], created["availability_zone"]) == ("cli-rack", "az-cli")
    assert cli("aggregate", "add-host", "cli-rack", "compute-012")["hosts"] == ["compute-012"]
    changed = cli("aggregate", "set", "cli-rack", "--name", "cli-rack-2", "--property", "gpu=no")
    assert (changed["name"], changed["metadata"]) == (
        "cli-rack-2", {"availability_zone": "az-cli", "ssd": "true", "gpu": "no"})
    assert cli("aggregate", "unset", "cli-rack-2", "--property", "gpu")["metadata"] == {
        "availability_zone": "az-cli", "ssd": "true"}
    zones = {z["name"]: z for z in cli("zone", "list")}
    assert [h["name"] for h in zones["az-cli"]["hosts"]] == ["compute-012"]
    refused = run_cli("aggregate", "delete", "cli-rack-2", env=env)
    assert refused.returncode == 1 and "FAILED_PRECONDITION" in refused.stderr
    cli("aggregate", "remove-host", "cli-rack-2", "compute-012")
    cli("aggregate", "delete", "cli-rack-2")
    assert cli("aggregate", "list") == []

    assert cli("host", "trait", "add", "compute-012", "CUSTOM_FPGA")["traits"] == [
        "CUSTOM_FPGA", *CPU_TRAITS]
    assert "CUSTOM_FPGA" in cli("host", "show", "compute-012")["traits"]
    cli("host", "trait", "remove", "compute-012", "CUSTOM_FPGA")

    project = f"p-{uuid.uuid4().hex[:6]}"
    private = admin.flavors.CreateFlavor(flavors_pb2.CreateFlavorRequest(
        name=f"gold-{uuid.uuid4().hex[:6]}", vcpus=1, memory_mb=256, root_gb=1, is_public=False))
    member_env = cloud_env(cloud, cloud.member_token(project))
    assert private.name not in run_cli("flavor", "list", env=member_env).stdout
    assert cli("flavor", "access", "add", private.name, project)["project_ids"] == [project]
    assert cli("flavor", "access", "list", private.name)["project_ids"] == [project]
    assert private.name in run_cli("flavor", "list", env=member_env).stdout
    cli("flavor", "access", "remove", private.name, project)
    assert private.name not in run_cli("flavor", "list", env=member_env).stdout
