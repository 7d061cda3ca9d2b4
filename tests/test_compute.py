"""The compute agent (issue 3 section 4, issue 4 sections 1 and 3), started in-process
over real sockets with three simulated hosts (libvirt's test driver, one node file
each) on a real database: SQLite, and PostgreSQL too when NOVALITE_TEST_POSTGRES_URL
is set (each test in a schema of its own). It is called through the conductor's
client (novalite.compute.rpcapi.ComputeClient) with a service token, and reports to a
stand-in scheduler that records what it is told.

* registration: services with the dialable endpoint, providers with the inventory
  (reserved amounts and allocation ratios from settings), the empty compute view;
* build: the guest exists, the compute view is Nova's resource tracker's, local
  claims; a claim beyond capacity and fail_builds_on fail the build; failed builds
  are counted, reset by a success, and disable the host at the threshold;
* delete frees the guest and the claim; lifecycle actions change the power state,
  a forbidden one is FAILED_PRECONDITION;
* restart: the same guests, usage, services and providers; an interrupted build is
  ERROR; a deleted server's guest is reaped, a guest nobody knows is left alone;
* power sync as Nova's; the periodic task; graceful stop; `main` under SIGTERM.
"""

from __future__ import annotations

import asyncio
import math
import os
import signal
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Awaitable, Callable, Mapping

import grpc
import grpc.aio
import pytest
import sqlalchemy as sa

from novalite import errors
from novalite.auth.tokens import MEMBER, SERVICE, TokenSigner
from novalite.compute import service as compute_service
from novalite.compute.manager import ComputeManager
from novalite.compute.rpcapi import ComputeClient
from novalite.db import Database
from novalite.errors import BuildFailed
from novalite.objects import records
from novalite.objects.states import PowerState, TaskState, VmState
from novalite.rpc.novalite.compute.v1 import flavors_pb2
from novalite.rpc.novalite.internal.v1 import (
    compute_agent_pb2,
    compute_agent_pb2_grpc,
    scheduler_pb2,
    scheduler_pb2_grpc,
)
from novalite.services.client import channel
from novalite.services.server import RunningServer, start_server
from novalite.settings import ComputeSettings, Listen, MetricsPorts, Settings, split_address
from novalite.virt import LibvirtDriver, domain_name, node_uri

from helpers import clean_env, failure

ROOT = Path(__file__).resolve().parent.parent
SECRET = b"compute agent tests' shared secret"
HOSTS = ("compute-001", "compute-002", "compute-003")
UNLIMITED = {"instances": -1, "cores": -1, "ram": -1}

# The simulated hosts: 4 vCPUs, 4 GiB, 40 GB; 1 vCPU, 512 MiB and 2 GiB reserved.
COMPUTE = ComputeSettings(
    virt_uri="test:///default", host_count=3, host_vcpus=4, host_memory_mb=4096,
    host_disk_gb=40, reserved_host_memory_mb=512, reserved_host_cpus=1,
    reserved_host_disk_mb=2048, cpu_allocation_ratio=2.0, ram_allocation_ratio=1.5,
    disk_allocation_ratio=1.0, consecutive_build_service_disable_threshold=3,
    # the periodic power sync and recount as often as the tests' rounds allow
    sync_power_state_interval=1, update_resources_interval=1)
EMPTY_VIEW = {"vcpus_used": 1, "free_ram_mb": 4096 - 512, "free_disk_mb": 40 * 1024 - 2048,
              "num_instances": 0, "num_io_ops": 0, "failed_builds": 0}


# --- a stand-in scheduler: records the hosts it is told about -------------------------------

class RecordingScheduler(scheduler_pb2_grpc.SchedulerServicer):
    def __init__(self) -> None:
        self.reports: list[str] = []

    async def ReportHosts(self, request: scheduler_pb2.ReportHostsRequest,
                          context: Any) -> scheduler_pb2.ReportHostsResponse:
        self.reports.extend(request.names)
        return scheduler_pb2.ReportHostsResponse()


# --- the harness -----------------------------------------------------------------------------

@dataclass
class Cloud:
    """An agent, the database it writes (our own connection to it), the stand-in
    scheduler and the conductor's client."""

    tmp_path: Path
    url: str
    signer: TokenSigner
    db: Database
    scheduler: RecordingScheduler
    scheduler_server: RunningServer
    agent_kwargs: dict[str, Any]
    compute: ComputeSettings = COMPUTE
    running: RunningServer | None = None
    manager: ComputeManager | None = None
    client: ComputeClient | None = None
    flavors: dict[str, records.Flavor] = field(default_factory=dict)

    @property
    def settings(self) -> Settings:
        return Settings(
            data_dir=self.tmp_path / "data", database_url=self.url,
            listen=Listen(compute="127.0.0.1:0",
                          scheduler=f"127.0.0.1:{self.scheduler_server.port}"),
            metrics_ports=MetricsPorts(compute=-1, scheduler=-1),
            log_level="WARNING", compute=self.compute, explicit_secret=SECRET)

    @property
    def agent(self) -> ComputeManager:
        assert self.manager is not None, "the agent is not running"
        return self.manager

    @property
    def rpc(self) -> ComputeClient:
        assert self.client is not None
        return self.client

    def token(self) -> str:
        return self.signer.issue("service", "conductor", [SERVICE])

    async def start_agent(self, **kwargs: Any) -> ComputeManager:
        options = {"periodic_interval": 3600.0, **self.agent_kwargs, **kwargs}
        self.running, self.manager = await compute_service.start(
            self.settings, signer=self.signer, **options)
        return self.manager

    async def stop_agent(self, grace: float = 5.0) -> None:
        if self.running is not None and self.manager is not None:
            await compute_service.stop(self.running, self.manager, grace)
        self.running = self.manager = None

    def driver(self, host: str) -> LibvirtDriver:
        drv = self.agent.driver(host)
        assert isinstance(drv, LibvirtDriver)
        return drv

    # what the database says, read in a worker thread
    async def q(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        return await asyncio.to_thread(fn, *args, **kwargs)

    async def flavor(self, name: str = "small", vcpus: int = 1, memory_mb: int = 1024,
                     root_gb: int = 10, swap: int = 512) -> records.Flavor:
        if name not in self.flavors:
            self.flavors[name] = await self.q(self.db.create_flavor, name=name, vcpus=vcpus,
                                              memory_mb=memory_mb, root_gb=root_gb, swap=swap)
        return self.flavors[name]

    async def server(self, flavor: records.Flavor, name: str = "vm",
                     image_id: str | None = None, group_id: str | None = None) -> records.Instance:
        created: list[records.Instance] = await self.q(
            self.db.create_instances, project_id="p-1", user_id="u-1", name=name,
            flavor_id=flavor.id, image_id=image_id, group_id=group_id)
        return created[0]

    async def place(self, inst: records.Instance, host: str,
                    flavor: records.Flavor) -> tuple[records.Instance, dict[str, int]]:
        """What the scheduler and the conductor do before BuildInstance: the
        allocation in the database, then the server on the host, SPAWNING."""
        allocation = amounts(flavor)
        provider = await self.q(self.db.get_host, host)
        await self.q(self.db.claim_allocations, inst.id, {provider.uuid: allocation})
        await self.q(self.db.update_instance, inst.id, host=host, node=host,
                     task_state=TaskState.SPAWNING)
        return await self.q(self.db.get_instance, inst.id), allocation

    async def boot(self, host: str, flavor: records.Flavor | None = None,
                   name: str = "vm") -> records.Instance:
        """A server built on the host through the agent and committed ACTIVE, as
        the conductor does."""
        flavor = flavor or await self.flavor()
        inst, allocation = await self.place(await self.server(flavor, name), host, flavor)
        power = await self.rpc.build(host, inst, flavor, None, allocation)
        assert power == PowerState.RUNNING
        await self.q(self.db.update_instance, inst.id, expected_vm_state=VmState.BUILDING,
                     vm_state=VmState.ACTIVE, task_state=None, power_state=power)
        return await self.q(self.db.get_instance, inst.id)

    async def view(self, host: str) -> dict[str, int]:
        """The host's compute view in the database, once the agent (if running)
        wrote its changes."""
        if self.manager is not None:
            await self.manager.views_written()
        h = await self.q(self.db.get_host, host)
        return {k: getattr(h, k) for k in EMPTY_VIEW}

    async def stub(self, token: str | None = None) -> compute_agent_pb2_grpc.ComputeAgentStub:
        assert self.running is not None
        ch = channel(self.running.address, token or self.token())
        self._channels.append(ch)
        return compute_agent_pb2_grpc.ComputeAgentStub(ch)

    _channels: list[grpc.aio.Channel] = field(default_factory=list)


def amounts(flavor: records.Flavor) -> dict[str, int]:
    """Placement's resources for a flavor (swap rounds up to whole GiB)."""
    disk = flavor.root_gb + flavor.ephemeral_gb + -(-flavor.swap // 1024)
    return {k: v for k, v in (("VCPU", flavor.vcpus), ("MEMORY_MB", flavor.memory_mb),
                              ("DISK_GB", disk)) if v}


def run(tmp_path: Path, url: str, scenario: Callable[[Cloud], Awaitable[None]], *,
        start: bool = True, compute: ComputeSettings = COMPUTE, **agent_kwargs: Any) -> None:
    async def main() -> None:
        signer = TokenSigner(SECRET)
        db = Database(url, default_quotas=UNLIMITED)
        await asyncio.to_thread(db.upgrade)
        scheduler = RecordingScheduler()
        scheduler_server = await start_server(
            "scheduler", [(scheduler_pb2_grpc.add_SchedulerServicer_to_server, scheduler)],
            "127.0.0.1:0", Settings(data_dir=tmp_path / "data", explicit_secret=SECRET,
                                    log_level="WARNING"),
            signer=signer, metrics_port=-1)
        cloud = Cloud(tmp_path, url, signer, db, scheduler, scheduler_server, agent_kwargs,
                      compute=compute)
        cloud.client = ComputeClient(db, cloud.token, build_timeout=60, timeout=60)
        try:
            if start:
                await cloud.start_agent()
            await scenario(cloud)
        finally:
            for ch in cloud._channels:
                await ch.close()
            await cloud.rpc.close()
            await cloud.stop_agent()
            await scheduler_server.stop(None)
            db.close()
    asyncio.run(main())


async def eventually(check: Callable[[], Awaitable[bool]], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not await check():
        assert time.monotonic() < deadline, "timed out"
        await asyncio.sleep(0.05)


# --- registration -------------------------------------------------------------------------

def test_hosts_are_registered_with_their_inventories(tmp_path: Path, db_url: str) -> None:
    async def scenario(cloud: Cloud) -> None:
        assert cloud.running is not None
        assert cloud.agent.hosts == HOSTS
        endpoint = f"127.0.0.1:{cloud.running.port}"
        services = await cloud.q(cloud.db.list_services, binary="compute")
        assert [(s.host, s.endpoint, s.is_up, s.disabled) for s in services] == \
            [(h, endpoint, True, False) for h in HOSTS]
        hosts = await cloud.q(cloud.db.list_hosts)
        assert [h.name for h in hosts] == list(HOSTS)
        for h in hosts:
            assert h.service is not None and h.service.host == h.name
            assert h.hypervisor_type == "test"
            assert ["x86_64", "test", "hvm"] in h.supported_instances
            assert h.inventories == {
                "VCPU": records.Inventory(total=4, reserved=1, max_unit=4, allocation_ratio=2.0),
                "MEMORY_MB": records.Inventory(total=4096, reserved=512, max_unit=4096,
                                               allocation_ratio=1.5),
                "DISK_GB": records.Inventory(total=40, reserved=2, max_unit=40,
                                             allocation_ratio=1.0),
            }
            assert {rc: inv.capacity for rc, inv in h.inventories.items()} == \
                {"VCPU": 6, "MEMORY_MB": 5376, "DISK_GB": 38}
            assert await cloud.view(h.name) == EMPTY_VIEW
            assert (cloud.settings.data_dir / "nodes" / f"{h.name}.xml").is_file()
        # each host was reported to the scheduler at start (reports are gathered for
        # REPORT_DELAY seconds, so all three go in one call)
        await eventually(lambda: _async(sorted(set(cloud.scheduler.reports)) == list(HOSTS)))
        assert len(cloud.scheduler.reports) == len(HOSTS)
    run(tmp_path, db_url, scenario)


# --- building -------------------------------------------------------------------------------

def test_build_spawns_the_guest_and_updates_the_compute_view(tmp_path: Path, db_url: str) -> None:
    async def scenario(cloud: Cloud) -> None:
        flavor = await cloud.flavor(vcpus=1, memory_mb=1024, root_gb=10, swap=512)
        reports = len(cloud.scheduler.reports)
        a = await cloud.boot("compute-001", flavor, "a")
        b = await cloud.boot("compute-001", flavor, "b")
        assert cloud.driver("compute-001").list_instances() == \
            {a.id: PowerState.RUNNING, b.id: PowerState.RUNNING}
        assert cloud.driver("compute-002").list_instances() == {}
        # Nova's resource tracker: used = reserved + flavors; free = total - used, in
        # MiB for disk with swap counted in MiB
        assert await cloud.view("compute-001") == {
            "vcpus_used": 1 + 2, "free_ram_mb": 4096 - 512 - 2 * 1024,
            "free_disk_mb": 40 * 1024 - 2048 - 2 * (10 * 1024 + 512),
            "num_instances": 2, "num_io_ops": 0, "failed_builds": 0}
        assert await cloud.view("compute-002") == EMPTY_VIEW
        # local claims mirror what the scheduler claimed
        assert cloud.agent.claims.usage("compute-001") == {"VCPU": 2, "MEMORY_MB": 2048, "DISK_GB": 22}
        assert cloud.agent.tracked("compute-001") == {a.id, b.id}
        # ... and the scheduler was asked to re-read the host after the builds (the
        # reports of REPORT_DELAY seconds go in one call)
        await eventually(lambda: _async("compute-001" in cloud.scheduler.reports[reports:]))
        # a repeated BuildInstance (a retry) finds the running guest
        inst = await cloud.q(cloud.db.get_instance, a.id)
        assert await cloud.rpc.build("compute-001", inst, flavor, None, amounts(flavor)) == \
            PowerState.RUNNING
        assert len(cloud.driver("compute-001").list_instances()) == 2
        assert (await cloud.view("compute-001"))["num_instances"] == 2
    run(tmp_path, db_url, scenario)


async def _async(value: bool) -> bool:
    return value


def test_concurrent_builds_on_every_host(tmp_path: Path, db_url: str) -> None:
    async def scenario(cloud: Cloud) -> None:
        flavor = await cloud.flavor("tiny", vcpus=1, memory_mb=256, root_gb=1, swap=0)
        servers = [await cloud.server(flavor, f"s{i}") for i in range(15)]
        placed = [await cloud.place(s, HOSTS[i % 3], flavor) for i, s in enumerate(servers)]
        powers = await asyncio.gather(*(
            cloud.rpc.build(HOSTS[i % 3], inst, flavor, None, alloc)
            for i, (inst, alloc) in enumerate(placed)))
        assert powers == [PowerState.RUNNING] * 15
        for host in HOSTS:
            assert len(cloud.driver(host).list_instances()) == 5
            assert await cloud.view(host) == {
                **EMPTY_VIEW, "vcpus_used": 1 + 5, "free_ram_mb": 4096 - 512 - 5 * 256,
                "free_disk_mb": 40 * 1024 - 2048 - 5 * 1024, "num_instances": 5}
            # the VCPU capacity, (4 - 1) * 2 = 6, is not exceeded: the sixth fits...
        inst, alloc = await cloud.place(await cloud.server(flavor, "sixth"), "compute-001", flavor)
        assert await cloud.rpc.build("compute-001", inst, flavor, None, alloc) == PowerState.RUNNING
        # ...the seventh does not, locally
        inst, alloc = await cloud.place(await cloud.server(flavor, "seventh"), "compute-002", flavor)
        await cloud.rpc.build("compute-002", inst, flavor, None, alloc)
        inst = await cloud.server(flavor, "too-many")
        with pytest.raises(BuildFailed, match="RESOURCE_EXHAUSTED"):
            await cloud.rpc.build("compute-001", inst, flavor, None, amounts(flavor))
    run(tmp_path, db_url, scenario)


def test_a_local_claim_beyond_capacity_fails_the_build(tmp_path: Path, db_url: str) -> None:
    async def scenario(cloud: Cloud) -> None:
        # MEMORY_MB capacity: (4096 - 512) * 1.5 = 5376
        big = await cloud.flavor("big", vcpus=1, memory_mb=3072, root_gb=1, swap=0)
        first = await cloud.boot("compute-001", big, "first")
        # the scheduler's view was stale: it sends a second one the host cannot take
        second = await cloud.server(big, "second")
        with pytest.raises(BuildFailed) as info:
            await cloud.rpc.build("compute-001", second, big, None, amounts(big))
        assert str(info.value).startswith("RESOURCE_EXHAUSTED: Insufficient compute resources")
        assert "MEMORY_MB" in str(info.value)
        assert cloud.driver("compute-001").list_instances() == {first.id: PowerState.RUNNING}
        assert cloud.agent.claims.usage("compute-001")["MEMORY_MB"] == 3072
        view = await cloud.view("compute-001")
        assert (view["num_instances"], view["failed_builds"]) == (1, 1)
        # the same through the raw stub: the status code and why
        stub = await cloud.stub()
        error = await failure(stub.BuildInstance(compute_agent_pb2.BuildInstanceRequest(
            server_id=second.id, name="second",
            flavor=proto_flavor(big), allocation={"MEMORY_MB": 3072}, host="compute-001")))
        assert error.code() is grpc.StatusCode.RESOURCE_EXHAUSTED
        assert "3072 of 5376 MEMORY_MB in use" in (error.details() or "")
    run(tmp_path, db_url, scenario)


def proto_flavor(f: records.Flavor) -> flavors_pb2.Flavor:
    return flavors_pb2.Flavor(id=f.id, name=f.name, vcpus=f.vcpus, memory_mb=f.memory_mb,
                              root_gb=f.root_gb, ephemeral_gb=f.ephemeral_gb, swap=f.swap)


def test_failed_builds_are_counted_reset_and_disable_the_host(tmp_path: Path, db_url: str) -> None:
    async def scenario(cloud: Cloud) -> None:
        flavor = await cloud.flavor()
        big = await cloud.flavor("huge", vcpus=1, memory_mb=8192, root_gb=1, swap=0)
        # fail_builds_on: every build on compute-002 fails, and says so
        inst, alloc = await cloud.place(await cloud.server(flavor), "compute-002", flavor)
        with pytest.raises(BuildFailed) as info:
            await cloud.rpc.build("compute-002", inst, flavor, None, alloc)
        assert str(info.value) == "INTERNAL: build failure injected on host compute-002 (fail_builds_on)"
        assert cloud.driver("compute-002").list_instances() == {}
        assert await cloud.view("compute-002") == {**EMPTY_VIEW, "failed_builds": 1}
        assert inst.id not in cloud.agent.claims.consumers()
        # compute-001: a claim that does not fit counts too, a success resets
        with pytest.raises(BuildFailed):
            await cloud.rpc.build("compute-001", await cloud.server(big), big, None, amounts(big))
        assert (await cloud.view("compute-001"))["failed_builds"] == 1
        await cloud.boot("compute-001", flavor)
        assert (await cloud.view("compute-001"))["failed_builds"] == 0
        # the third failure in a row on compute-002 disables it (threshold 3)
        for _ in range(2):
            with pytest.raises(BuildFailed):
                await cloud.rpc.build("compute-002", inst, flavor, None, alloc)
        svc = await cloud.q(cloud.db.get_service, "compute-002", "compute")
        assert svc.disabled and svc.disabled_reason == "Auto-disabled due to 3 build failures"
        assert not (await cloud.q(cloud.db.get_service, "compute-001", "compute")).disabled
        # and the count starts afresh for when an admin enables it again
        assert (await cloud.view("compute-002"))["failed_builds"] == 0
    run(tmp_path, db_url, scenario, fail_builds_on={"compute-002"})


# --- server groups: the late check -----------------------------------------------------------

def test_the_late_check_keeps_a_groups_policy_under_racing_builds(tmp_path: Path, db_url: str) -> None:
    """Nova's _validate_instance_group_policy: builds that raced past the scheduler
    (here: the test places them as a stale scheduler would) are refused on a host
    that would break the group's policy, ABORTED so that the conductor moves to an
    alternate, and not counted as the host's failed builds."""
    async def scenario(cloud: Cloud) -> None:
        flavor = await cloud.flavor("tiny", vcpus=1, memory_mb=256, root_gb=1, swap=0)

        async def group(policy: str, max_per_host: int | None = None) -> str:
            g = await cloud.q(cloud.db.create_server_group, name=policy, project_id="p-1",
                              user_id="u-1", policy=policy, max_server_per_host=max_per_host)
            return str(g.id)

        async def build(group_id: str, host: str) -> str:
            inst, alloc = await cloud.place(await cloud.server(flavor, group_id=group_id), host, flavor)
            try:
                await cloud.rpc.build(host, inst, flavor, None, alloc)
            except BuildFailed as e:
                return str(e)
            return "ok"

        spread = await group("anti-affinity")
        assert await build(spread, "compute-001") == "ok"
        refused = await build(spread, "compute-001")
        assert refused.startswith("ABORTED: Anti-affinity instance group policy was violated: "
                                  "host compute-001 already has 1 member(s)"), refused
        assert await build(spread, "compute-002") == "ok"
        # four members racing to one host at once: the lock lets exactly one in
        results = await asyncio.gather(*(build(spread, "compute-003") for _ in range(4)))
        assert sorted(r == "ok" for r in results) == [False, False, False, True], results
        assert len(cloud.driver("compute-003").list_instances()) == 1
        # no failed builds counted, nothing of the refused left behind
        for host in HOSTS:
            view = await cloud.view(host)
            assert (view["failed_builds"], view["num_instances"]) == (0, 1), host

        pairs = await group("anti-affinity", max_per_host=2)
        third = [await build(pairs, "compute-001") for _ in range(3)]
        assert third[:2] == ["ok", "ok"] and "already has 2 member(s)" in third[2], third

        together = await group("affinity")
        assert await build(together, "compute-002") == "ok"
        refused = await build(together, "compute-003")
        assert refused.startswith("ABORTED: Affinity instance group policy was violated: the other "
                                  "members of server group"), refused
        assert "are on compute-002, not compute-003" in refused
        assert await build(together, "compute-002") == "ok"
        # a group deleted meanwhile has no policy left to keep
        inst, alloc = await cloud.place(await cloud.server(flavor, group_id=spread), "compute-002",
                                        flavor)
        await cloud.q(cloud.db.delete_server_group, spread)
        assert inst.group_id == spread
        assert await cloud.rpc.build("compute-002", inst, flavor, None, alloc) == PowerState.RUNNING
    run(tmp_path, db_url, scenario)


# --- deleting and lifecycle -------------------------------------------------------------------

def test_delete_removes_the_guest_and_frees_the_claim(tmp_path: Path, db_url: str) -> None:
    async def scenario(cloud: Cloud) -> None:
        keep = await cloud.boot("compute-003", name="keep")
        gone = await cloud.boot("compute-003", name="gone")
        await cloud.rpc.delete("compute-003", gone.id)
        assert cloud.driver("compute-003").list_instances() == {keep.id: PowerState.RUNNING}
        assert gone.id not in cloud.agent.claims.consumers()
        assert cloud.agent.tracked("compute-003") == {keep.id}
        one = {**EMPTY_VIEW, "vcpus_used": 2, "free_ram_mb": 4096 - 512 - 1024,
               "free_disk_mb": 40 * 1024 - 2048 - (10 * 1024 + 512), "num_instances": 1}
        # counted out at once, before the conductor deletes the record...
        assert await cloud.view("compute-003") == one
        # ...and the periodic recount does not count it back in meanwhile
        await cloud.agent.periodic()
        assert await cloud.view("compute-003") == one
        await cloud.rpc.delete("compute-003", gone.id)  # a retry is fine
        await cloud.q(cloud.db.delete_instance, gone.id)
        await cloud.agent.periodic()
        assert await cloud.view("compute-003") == one
        await cloud.rpc.delete("compute-003", keep.id)
        await cloud.q(cloud.db.delete_instance, keep.id)
        assert await cloud.view("compute-003") == EMPTY_VIEW
        assert cloud.agent.claims.usage("compute-003") == {"VCPU": 0, "MEMORY_MB": 0, "DISK_GB": 0}
    run(tmp_path, db_url, scenario)


def test_lifecycle_actions_change_the_power_state(tmp_path: Path, db_url: str) -> None:
    async def scenario(cloud: Cloud) -> None:
        inst = await cloud.boot("compute-002")
        drv = cloud.driver("compute-002")
        for action, power in (("pause", PowerState.PAUSED), ("unpause", PowerState.RUNNING),
                              ("suspend", PowerState.SHUTDOWN), ("resume", PowerState.RUNNING),
                              ("stop", PowerState.SHUTDOWN), ("start", PowerState.RUNNING),
                              ("reboot_soft", PowerState.RUNNING), ("reboot_hard", PowerState.RUNNING)):
            assert await cloud.rpc.action("compute-002", inst.id, action) == power, action
            assert drv.power_state(inst.id) == power, action
            if action == "suspend":
                assert drv.is_suspended(inst.id)  # libvirt's managed save, as Nova
        # an action the guest's state does not allow changes nothing
        await cloud.rpc.action("compute-002", inst.id, "stop")
        with pytest.raises(errors.InvalidState, match="cannot pause server"):
            await cloud.rpc.action("compute-002", inst.id, "pause")
        with pytest.raises(errors.InvalidState, match="not suspended"):
            await cloud.rpc.action("compute-002", inst.id, "resume")
        assert drv.power_state(inst.id) == PowerState.SHUTDOWN
        # no such guest on the host
        with pytest.raises(errors.NotFound):
            await cloud.rpc.action("compute-001", inst.id, "start")
        # the usage does not change with the power state
        assert (await cloud.view("compute-002"))["num_instances"] == 1
    run(tmp_path, db_url, scenario)


def test_bad_calls_get_the_designs_status_codes(tmp_path: Path, db_url: str) -> None:
    async def scenario(cloud: Cloud) -> None:
        inst = await cloud.boot("compute-001")
        stub = await cloud.stub()
        error = await failure(stub.RunAction(compute_agent_pb2.RunActionRequest(
            server_id=inst.id, host="compute-999", action="stop")))
        assert error.code() is grpc.StatusCode.NOT_FOUND
        assert "does not serve host 'compute-999'" in (error.details() or "")
        error = await failure(stub.RunAction(compute_agent_pb2.RunActionRequest(
            server_id=inst.id, action="stop")))
        assert (error.code(), error.details()) == (grpc.StatusCode.INVALID_ARGUMENT,
                                                   "host: required: the host the server is on")
        error = await failure(stub.RunAction(compute_agent_pb2.RunActionRequest(
            server_id=inst.id, host="compute-001", action="reboot")))
        assert (error.code(), error.details()) == (grpc.StatusCode.INVALID_ARGUMENT,
                                                   "action: unknown action 'reboot'")
        error = await failure(stub.BuildInstance(compute_agent_pb2.BuildInstanceRequest(
            server_id="x", host="compute-001")))
        assert error.code() is grpc.StatusCode.INVALID_ARGUMENT
        assert (error.details() or "").startswith("flavor.vcpus:")
        error = await failure(stub.DeleteInstance(compute_agent_pb2.DeleteInstanceRequest(
            server_id="../etc", host="compute-001")))
        assert error.code() is grpc.StatusCode.INVALID_ARGUMENT
        assert (error.details() or "").startswith("server_id:")
        # internal: a member's token is turned away
        member = await cloud.stub(cloud.signer.issue("p-1", "u-1", [MEMBER]))
        error = await failure(member.DeleteInstance(compute_agent_pb2.DeleteInstanceRequest(
            server_id=inst.id, host="compute-001")))
        assert error.code() is grpc.StatusCode.PERMISSION_DENIED
        assert cloud.driver("compute-001").list_instances() == {inst.id: PowerState.RUNNING}
    run(tmp_path, db_url, scenario)


# --- restart ----------------------------------------------------------------------------------

def test_a_restart_finds_the_same_guests_and_usage(tmp_path: Path, db_url: str) -> None:
    async def scenario(cloud: Cloud) -> None:
        flavor = await cloud.flavor()
        servers = {host: [await cloud.boot(host, flavor, f"{host}-{i}") for i in range(2)]
                   for host in HOSTS}
        # a build the restart will interrupt: placed and spawned on compute-002, the
        # agent gone before it answered
        interrupted, _ = await cloud.place(await cloud.server(flavor, "interrupted"),
                                           "compute-002", flavor)
        await asyncio.to_thread(cloud.driver("compute-002").spawn, interrupted.id, "interrupted",
                                flavor.vcpus, flavor.memory_mb, flavor.root_gb)
        # a server deleted while its host's agent was down (the conductor removes the
        # record anyway): its guest must go
        orphan = servers["compute-003"].pop()
        await cloud.agent.update_available_resource("compute-002")
        before = {h: await cloud.view(h) for h in HOSTS}
        guests = {h: dict(cloud.driver(h).list_instances()) for h in HOSTS}
        usage = {h: cloud.agent.claims.usage(h) for h in HOSTS}
        old_port = cloud.running.port if cloud.running else 0

        await cloud.stop_agent()
        await cloud.q(cloud.db.delete_instance, orphan.id)
        # and a guest this cloud never heard of (another cloud's, or a test's)
        stranger = str(uuid.uuid4())
        path = cloud.settings.data_dir / "nodes" / "compute-001.xml"
        with LibvirtDriver(node_uri(path)) as drv:
            drv.spawn(stranger, "stranger", 1, 128, 0)

        agent = await cloud.start_agent()
        assert cloud.running is not None and cloud.running.port != old_port
        # the same services and providers, not new ones; the new endpoint
        services = await cloud.q(cloud.db.list_services, binary="compute")
        assert [(s.host, s.endpoint) for s in services] == \
            [(h, f"127.0.0.1:{cloud.running.port}") for h in HOSTS]
        assert [h.name for h in await cloud.q(cloud.db.list_hosts)] == list(HOSTS)
        # the same guests; the deleted server's guest reaped, the stranger left alone
        assert dict(cloud.driver("compute-001").list_instances()) == \
            {**guests["compute-001"], stranger: PowerState.RUNNING}
        assert dict(cloud.driver("compute-002").list_instances()) == guests["compute-002"]
        del guests["compute-003"][orphan.id]
        assert dict(cloud.driver("compute-003").list_instances()) == guests["compute-003"]
        # the interrupted build is ERROR (its guest kept and counted, as Nova does)
        inst = await cloud.q(cloud.db.get_instance, interrupted.id)
        assert (inst.vm_state, inst.task_state, inst.status) == (VmState.ERROR, None, "ERROR")
        assert inst.fault is not None and "interrupted" in inst.fault.message
        for h, insts in servers.items():
            for s in insts:
                got = await cloud.q(cloud.db.get_instance, s.id)
                assert (got.vm_state, got.power_state, got.host) == (VmState.ACTIVE, PowerState.RUNNING, h)
        # the same usage, locally and in the database
        assert await cloud.view("compute-001") == before["compute-001"]
        assert await cloud.view("compute-002") == before["compute-002"]
        assert await cloud.view("compute-003") == {
            **before["compute-003"], "vcpus_used": before["compute-003"]["vcpus_used"] - 1,
            "free_ram_mb": before["compute-003"]["free_ram_mb"] + 1024,
            "free_disk_mb": before["compute-003"]["free_disk_mb"] + 10 * 1024 + 512,
            "num_instances": 1}
        assert agent.claims.usage("compute-001") == usage["compute-001"]
        assert agent.claims.usage("compute-002") == usage["compute-002"]
        for h in await cloud.q(cloud.db.list_hosts):
            assert agent.claims.usage(h.name) == {rc: h.usage.get(rc, 0) for rc in ("VCPU", "MEMORY_MB", "DISK_GB")}
        assert sorted(agent.claims.consumers()) == sorted(
            [s.id for insts in servers.values() for s in insts] + [interrupted.id])
        # and it goes on working: build and delete
        await cloud.boot("compute-003", flavor, "after")
        await cloud.rpc.delete("compute-002", interrupted.id)
        await cloud.q(cloud.db.delete_instance, interrupted.id)  # the conductor's part
        assert interrupted.id not in cloud.driver("compute-002").list_instances()
        # a second restart changes nothing
        snapshot = {h: await cloud.view(h) for h in HOSTS}
        await cloud.stop_agent()
        await cloud.start_agent()
        assert {h: await cloud.view(h) for h in HOSTS} == snapshot
    run(tmp_path, db_url, scenario)


# --- power state sync -------------------------------------------------------------------------

def test_power_sync_as_nova(tmp_path: Path, db_url: str) -> None:
    async def scenario(cloud: Cloud) -> None:
        host = "compute-001"
        drv = cloud.driver(host)
        tiny = await cloud.flavor("tiny", vcpus=1, memory_mb=256, root_gb=1, swap=0)
        destroyed, paused, vanished, stopped, busy = [
            await cloud.boot(host, tiny, n) for n in ("destroyed", "paused", "vanished", "stopped", "busy")]

        def behind_the_back(iid: str, what: str) -> None:
            def act(conn: Any) -> None:
                dom = conn.lookupByName(domain_name(iid))
                if what == "undefine":
                    dom.destroy()
                    dom.undefine()
                else:
                    getattr(dom, what)()
            drv._call(act)

        behind_the_back(destroyed.id, "destroy")
        behind_the_back(paused.id, "suspend")  # libvirt's suspend is a pause
        behind_the_back(vanished.id, "undefine")
        # a server the conductor stopped, whose guest runs again
        await cloud.rpc.action(host, stopped.id, "stop")
        await cloud.q(cloud.db.update_instance, stopped.id, vm_state=VmState.STOPPED,
                      power_state=PowerState.SHUTDOWN)
        behind_the_back(stopped.id, "create")
        # a server with an action in flight is left alone
        await cloud.q(cloud.db.update_instance, busy.id, task_state=TaskState.POWERING_OFF)
        behind_the_back(busy.id, "destroy")

        await cloud.agent.sync_power_states(host)

        async def state(iid: str) -> tuple[str, str | None, int, str]:
            i = await cloud.q(cloud.db.get_instance, iid)
            return i.vm_state, i.task_state, i.power_state, i.status
        # shut down by itself: the stop API -> STOPPED / SHUTDOWN (SHUTOFF)
        assert await state(destroyed.id) == (VmState.STOPPED, None, PowerState.SHUTDOWN, "SHUTOFF")
        assert [a.action for a in await cloud.q(cloud.db.list_instance_actions, destroyed.id)] == \
            ["create", "stop"]
        # paused unexpectedly: ignored, only the power state follows
        assert await state(paused.id) == (VmState.ACTIVE, None, PowerState.PAUSED, "ACTIVE")
        # not found: ignored, NOSTATE
        assert await state(vanished.id) == (VmState.ACTIVE, None, PowerState.NOSTATE, "ACTIVE")
        # stopped but running: forced off
        assert await state(stopped.id) == (VmState.STOPPED, None, PowerState.SHUTDOWN, "SHUTOFF")
        assert drv.power_state(stopped.id) == PowerState.SHUTDOWN
        # pending task: untouched
        assert await state(busy.id) == (VmState.ACTIVE, TaskState.POWERING_OFF, PowerState.RUNNING, "ACTIVE")
        # a vanished guest still holds its claim (as in Nova: the server is still here)
        assert vanished.id in cloud.agent.tracked(host)
    run(tmp_path, db_url, scenario)


def test_the_periodic_task_heartbeats_syncs_and_reports(tmp_path: Path, db_url: str) -> None:
    async def scenario(cloud: Cloud) -> None:
        inst = await cloud.boot("compute-003")
        first = (await cloud.q(cloud.db.get_service, "compute-003", "compute")).last_seen_up
        reports = len(cloud.scheduler.reports)
        cloud.driver("compute-003")._call(lambda c: c.lookupByName(domain_name(inst.id)).destroy())

        async def stopped() -> bool:
            i = await cloud.q(cloud.db.get_instance, inst.id)
            return bool(i.vm_state == VmState.STOPPED)
        await eventually(stopped)
        await eventually(lambda: _async(len(set(cloud.scheduler.reports[reports:])) == 3))
        svc = await cloud.q(cloud.db.get_service, "compute-003", "compute")
        assert svc.last_seen_up > first and svc.is_up
    run(tmp_path, db_url, scenario, periodic_interval=0.1)


def test_the_power_sync_and_recount_keep_their_own_intervals(tmp_path: Path, db_url: str) -> None:
    """Nova's periodic tasks: the heartbeat every round, the power sync only every
    sync_power_state_interval (here never): a guest destroyed behind the agent's
    back stays ACTIVE in the database while heartbeats go on."""
    async def scenario(cloud: Cloud) -> None:
        inst = await cloud.boot("compute-003")
        first = (await cloud.q(cloud.db.get_service, "compute-003", "compute")).last_seen_up
        cloud.driver("compute-003")._call(lambda c: c.lookupByName(domain_name(inst.id)).destroy())
        await asyncio.sleep(1.0)  # ten rounds of 0.1 s
        assert (await cloud.q(cloud.db.get_instance, inst.id)).vm_state == VmState.ACTIVE
        svc = await cloud.q(cloud.db.get_service, "compute-003", "compute")
        assert svc.last_seen_up > first
    run(tmp_path, db_url, scenario, periodic_interval=0.1,
        compute=replace(COMPUTE, sync_power_state_interval=-1))


def test_periodic_intervals_read_as_novas() -> None:
    """0 is the default spacing (60 s), negative never, else seconds; Nova's defaults."""
    assert ComputeSettings().periodic_spacing("update_resources") == 60.0
    assert ComputeSettings().periodic_spacing("sync_power_state") == 600.0
    assert ComputeSettings(sync_power_state_interval=-1).periodic_spacing("sync_power_state") == math.inf
    assert ComputeSettings(update_resources_interval=5).periodic_spacing("update_resources") == 5.0


# --- stopping ---------------------------------------------------------------------------------

def test_a_graceful_stop_finishes_the_builds_in_flight(tmp_path: Path, db_url: str) -> None:
    async def scenario(cloud: Cloud) -> None:
        flavor = await cloud.flavor()
        drv = cloud.driver("compute-001")
        spawn = drv.spawn

        def slow_spawn(*args: Any, **kwargs: Any) -> None:
            time.sleep(0.5)
            spawn(*args, **kwargs)
        drv.spawn = slow_spawn  # type: ignore[method-assign]
        inst, alloc = await cloud.place(await cloud.server(flavor), "compute-001", flavor)
        building = asyncio.ensure_future(cloud.rpc.build("compute-001", inst, flavor, None, alloc))
        await asyncio.sleep(0.2)
        assert cloud.running is not None and cloud.manager is not None
        running, manager = cloud.running, cloud.manager
        stopping = asyncio.ensure_future(compute_service.stop(running, manager, 5.0))
        await asyncio.sleep(0.05)
        # no new calls...
        later = await cloud.server(flavor, "later")
        with pytest.raises((BuildFailed, errors.Unavailable)):
            await cloud.rpc.build("compute-002", later, flavor, None, amounts(flavor))
        # ...but the one in flight finishes
        assert await building == PowerState.RUNNING
        await stopping
        cloud.running = cloud.manager = None
        view = await cloud.view("compute-001")
        assert view["num_instances"] == 1
    run(tmp_path, db_url, scenario)


def agent_env(data_dir: Path, db_url: str, compute: ComputeSettings = COMPUTE,
              scheduler_port: int | None = None) -> dict[str, str]:
    """The environment of an agent process with these settings (NOVALITE_*)."""
    env = clean_env()
    env.update({
        "PYTHONPATH": os.pathsep.join(p for p in (str(ROOT / "python"), env.get("PYTHONPATH")) if p),
        "NOVALITE_DATA_DIR": str(data_dir), "NOVALITE_DATABASE_URL": db_url,
        "NOVALITE_LISTEN_COMPUTE": "127.0.0.1:0", "NOVALITE_METRICS_PORTS_COMPUTE": "-1",
        "NOVALITE_SECRET": SECRET.decode(), "NOVALITE_LOG_LEVEL": "WARNING",
    })
    if scheduler_port is not None:
        env["NOVALITE_LISTEN_SCHEDULER"] = f"127.0.0.1:{scheduler_port}"
    for name, value in compute.__dict__.items():
        text = ",".join(value) if isinstance(value, tuple) else str(value)
        if text:
            env[f"NOVALITE_COMPUTE_{name.upper()}"] = text
    return env


def agent_process(env: Mapping[str, str]) -> subprocess.Popen[str]:
    """`novalite compute` in a process of its own: compute.service.main."""
    code = ("from novalite.settings import load_settings\n"
            "from novalite.compute.service import main\n"
            "main(load_settings())\n")
    return subprocess.Popen([sys.executable, "-c", code], env=dict(env), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def wait_registered(proc: subprocess.Popen[str], db: Database, hosts: int,
                    timeout: float = 60.0) -> list[records.Service]:
    """Blocks until the agent process has registered its hosts and written their
    compute views."""
    deadline = time.monotonic() + timeout
    while True:
        assert proc.poll() is None, proc.communicate()[1]
        try:
            services = db.list_services(binary="compute")
            found = db.list_hosts()
        except sa.exc.DBAPIError:  # the agent is still migrating the schema
            services, found = [], []
        if len(services) == hosts and len(found) == hosts and all(h.free_ram_mb for h in found):
            return services
        assert time.monotonic() < deadline, "the agent did not register"
        time.sleep(0.1)


def stop_process(proc: subprocess.Popen[str], sig: int = signal.SIGTERM) -> str:
    if proc.poll() is None:
        proc.send_signal(sig)
    try:
        _, stderr = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    return stderr


def test_main_serves_until_sigterm(tmp_path: Path, db_url: str) -> None:
    compute = ComputeSettings(host_count=2)
    proc = agent_process(agent_env(tmp_path / "data", db_url, compute))
    db = Database(db_url)
    try:
        services = wait_registered(proc, db, 2)
        assert [s.host for s in services] == ["compute-001", "compute-002"]
        assert all(s.endpoint and not s.endpoint.endswith(":0") for s in services)
        stderr = stop_process(proc)
        assert proc.returncode == 0, stderr
    finally:
        stop_process(proc, signal.SIGKILL)
        db.close()


def test_an_agent_registers_the_address_it_advertises(tmp_path: Path, db_url: str) -> None:
    """On several machines the agent listens on every interface and registers the
    address the conductors should dial (advertise_host), with the port it bound."""
    env = agent_env(tmp_path / "data", db_url, ComputeSettings(host_count=1))
    env.update(NOVALITE_LISTEN_COMPUTE="0.0.0.0:0", NOVALITE_ADVERTISE_HOST="compute-7.example")
    proc = agent_process(env)
    db = Database(db_url)
    try:
        [service] = wait_registered(proc, db, 1)
        host, port = split_address(service.endpoint or "")
        assert host == "compute-7.example" and port > 0
    finally:
        stop_process(proc, signal.SIGKILL)
        db.close()


def test_a_killed_agent_restarts_with_the_same_guests_and_usage(tmp_path: Path, db_url: str) -> None:
    async def scenario(cloud: Cloud) -> None:
        env = agent_env(cloud.settings.data_dir, db_url, COMPUTE, cloud.scheduler_server.port)
        proc = agent_process(env)
        try:
            await asyncio.to_thread(wait_registered, proc, cloud.db, 3)
            flavor = await cloud.flavor()
            booted = [await cloud.boot(h, flavor, f"{h}-{i}") for h in HOSTS for i in range(2)]

            async def written() -> bool:  # views are written shortly after the builds
                return [(await cloud.view(h))["num_instances"] for h in HOSTS] == [2] * 3
            await eventually(written)
            before = {h: await cloud.view(h) for h in HOSTS}
            # kill -9: no graceful anything
            await asyncio.to_thread(stop_process, proc, signal.SIGKILL)
        finally:
            await asyncio.to_thread(stop_process, proc, signal.SIGKILL)
        agent = await cloud.start_agent()
        for h in HOSTS:
            assert dict(cloud.driver(h).list_instances()) == \
                {s.id: PowerState.RUNNING for s in booted if s.host == h}
            assert await cloud.view(h) == before[h]
        assert len(await cloud.q(cloud.db.list_services, binary="compute")) == 3
        assert len(await cloud.q(cloud.db.list_hosts)) == 3
        assert sorted(agent.claims.consumers()) == sorted(s.id for s in booted)
        for s in booted:
            got = await cloud.q(cloud.db.get_instance, s.id)
            assert (got.vm_state, got.power_state) == (VmState.ACTIVE, PowerState.RUNNING)
    run(tmp_path, db_url, scenario, start=False)


def test_node_files_are_kept_across_restarts(tmp_path: Path, db_url: str) -> None:
    async def scenario(cloud: Cloud) -> None:
        await cloud.start_agent()
        inst = await cloud.boot("compute-002")
        await cloud.stop_agent()
        # settings changed meanwhile: the existing node files (and guests) win
        cloud.compute = ComputeSettings(**{**COMPUTE.__dict__, "host_memory_mb": 8192})
        await cloud.start_agent()
        assert inst.id in cloud.driver("compute-002").list_instances()
        assert (await cloud.q(cloud.db.get_host, "compute-002")).inventories["MEMORY_MB"].total == 4096
    run(tmp_path, db_url, scenario, start=False)


# --- moves -------------------------------------------------------------------------------

def test_the_steps_of_a_move_are_idempotent_and_count_on_both_hosts(tmp_path: Path,
                                                                    db_url: str) -> None:
    """The conductor repeats a step after a crash: each finds its work done. While
    the move is open the server counts on both hosts: as its migration (the old
    flavor) on the source, as itself (the new one) on the destination."""
    async def scenario(cloud: Cloud) -> None:
        small = await cloud.flavor("small", vcpus=1, memory_mb=1024, root_gb=10, swap=0)
        big = await cloud.flavor("big", vcpus=2, memory_mb=2048, root_gb=10, swap=0)
        inst = await cloud.boot("compute-001", small)
        migration = str(uuid.uuid4())
        for _ in range(2):
            await cloud.rpc.prepare_move("compute-002", inst.id, big, amounts(big), migration)
        assert cloud.agent.claims.allocations(inst.id) == {"compute-002": amounts(big)}
        assert cloud.agent.claims.allocations(migration) == {"compute-001": amounts(small)}
        stashes = {await cloud.rpc.migrate_out("compute-001", inst.id, migration, live=False)
                   for _ in range(2)}
        assert len(stashes) == 1
        assert cloud.driver("compute-001").list_instances() == {}
        [stash] = stashes
        for _ in range(2):
            power = await cloud.rpc.finish_move("compute-002", inst, big, None, stash,
                                                power_on=True)
        assert power == PowerState.RUNNING
        assert cloud.driver("compute-002").list_instances() == {inst.id: PowerState.RUNNING}
        assert (await cloud.view("compute-001"))["num_instances"] == 1  # the migration's
        assert (await cloud.view("compute-002"))["vcpus_used"] == 1 + 2
        for _ in range(2):
            await cloud.rpc.confirm_move("compute-001", inst.id, migration)
        assert migration not in cloud.agent.claims.consumers()
        assert not cloud.driver("compute-001").has_stash(inst.id)
        assert await cloud.view("compute-001") == EMPTY_VIEW
        # a step for a guest the host does not have says so
        with pytest.raises(errors.NotFound):
            await cloud.rpc.migrate_out("compute-003", inst.id, migration, live=False)
    run(tmp_path, db_url, scenario)


def test_a_guest_a_given_up_move_set_aside_is_defined_again_at_restart(tmp_path: Path,
                                                                      db_url: str) -> None:
    """A move undone while its source's agent could not be reached leaves the guest
    set aside there, its server in ERROR on that host: the agent, back, defines it
    again (stopped), so that the server can be started instead of lost."""
    async def scenario(cloud: Cloud) -> None:
        inst = await cloud.boot("compute-003")
        await cloud.rpc.migrate_out("compute-003", inst.id, str(uuid.uuid4()), live=False)
        await cloud.q(cloud.db.update_instance, inst.id, vm_state=VmState.ERROR)
        await cloud.stop_agent()
        await cloud.start_agent()
        assert cloud.driver("compute-003").list_instances() == {inst.id: PowerState.SHUTDOWN}
        assert not cloud.driver("compute-003").has_stash(inst.id)
        assert (await cloud.q(cloud.db.get_instance, inst.id)).power_state == PowerState.SHUTDOWN
    run(tmp_path, db_url, scenario)
