"""The public API service (issue 3, sections 1, 2 and 6), over real sockets: the API
started in-process on 127.0.0.1 with a fake conductor and scheduler recording what
they are asked, on SQLite and, when NOVALITE_TEST_POSTGRES_URL is set, on PostgreSQL
(each test in a schema of its own).

* servers: create (multi-create, quota cut), get, list (pagination, filters),
  delete; one project cannot see or touch another's; admins see all and the host;
* who may do what: admin-only RPCs as a member are PERMISSION_DENIED; a missing,
  expired, forged or malformed token is UNAUTHENTICATED;
* bad input is INVALID_ARGUMENT naming the field and writes nothing; a request
  over the size limit is refused by grpc with RESOURCE_EXHAUSTED;
* quota: RESOURCE_EXHAUSTED, and racing creates never both pass the last unit;
* flavors, images, server groups, quotas, tokens and hosts;
* lifecycle actions: Nova's allowed states, FAILED_PRECONDITION and nothing
  changed otherwise;
* WatchServers: the current state, then the changes committed in the database.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any, Awaitable, Callable, Mapping, Sequence

import grpc
import grpc.aio
import pytest
import sqlalchemy as sa
from google.protobuf.json_format import MessageToDict
from google.rpc import error_details_pb2
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from novalite import errors
from novalite.api import service
from novalite.api.manager import VIRTUAL_SIZE_PROPERTY
from novalite.auth.tokens import ADMIN, MEMBER, TokenSigner
from novalite.cloud import free_port
from novalite.db import Database
from novalite.objects.lifecycle import HYPERVISOR_ACTIONS as ACTIONS
from novalite.objects.records import Inventory, NewFault
from novalite.objects.states import PowerState, TaskState, VmState
from novalite.rpc.novalite.compute.v1 import (
    aggregates_pb2,
    aggregates_pb2_grpc,
    flavors_pb2,
    flavors_pb2_grpc,
    hosts_pb2,
    hosts_pb2_grpc,
    images_pb2,
    images_pb2_grpc,
    quotas_pb2,
    quotas_pb2_grpc,
    server_groups_pb2,
    server_groups_pb2_grpc,
    servers_pb2,
    servers_pb2_grpc,
    states_pb2,
    tokens_pb2,
    tokens_pb2_grpc,
)
from novalite.services.client import channel
from novalite.services.status import status_details
from novalite.settings import Settings, load_settings

from helpers import failure

ROOT = Path(__file__).resolve().parent.parent
SECRET = b"a shared secret of 32 bytes!!!!!"
Code = grpc.StatusCode


# --- the service under test, with its fake neighbours ----------------------------------

@dataclass
class FakeConductor:
    """Records what the API hands over; ``fail`` makes every call raise it."""

    builds: list[dict[str, Any]] = field(default_factory=list)
    deletes: list[str] = field(default_factory=list)
    actions: list[tuple[str, str, str]] = field(default_factory=list)
    fail: Exception | None = None

    async def build_servers(self, server_ids: Sequence[str], *, availability_zone: str | None,
                            group_id: str | None, same_host: Sequence[str],
                            different_host: Sequence[str], request_id: str,
                            admin_pass: str | None = None) -> None:
        if self.fail is not None:
            raise self.fail
        self.builds.append({"server_ids": list(server_ids), "availability_zone": availability_zone,
                            "group_id": group_id, "same_host": list(same_host),
                            "different_host": list(different_host), "request_id": request_id,
                            "admin_pass": admin_pass})

    async def delete_server(self, server_id: str) -> None:
        if self.fail is not None:
            raise self.fail
        self.deletes.append(server_id)

    async def server_action(self, server_id: str, action: str, request_id: str) -> None:
        if self.fail is not None:
            raise self.fail
        self.actions.append((server_id, action, request_id))

    @property
    def calls(self) -> int:
        return len(self.builds) + len(self.deletes) + len(self.actions)


@dataclass
class FakeScheduler:
    changed: list[str] = field(default_factory=list)
    aggregate_refreshes: int = 0

    async def hosts_changed(self, hosts: Sequence[str]) -> None:
        self.changed.extend(hosts)

    async def aggregates_changed(self) -> None:
        self.aggregate_refreshes += 1


def make_settings(tmp_path: Path, db_url: str, **overrides: Any) -> Settings:
    return load_settings(environ={}, overrides={
        "data_dir": str(tmp_path), "database_url": db_url, "secret": SECRET,
        "log_level": "WARNING", "rest.listen": "127.0.0.1:0", **overrides})


class Api:
    """The running API service, a Database on the same URL for the test's own
    setup and checks, and tokens: an admin, members of projects a and b."""

    def __init__(self, running: service.ApiServer, db: Database, signer: TokenSigner,
                 conductor: FakeConductor, scheduler: FakeScheduler) -> None:
        self.running = running
        self.db = db
        self.signer = signer
        self.conductor = conductor
        self.scheduler = scheduler
        self.tokens = {
            "admin": signer.issue("admin-project", "root", [ADMIN]),
            "a": signer.issue("project-a", "alice", [MEMBER]),
            "b": signer.issue("project-b", "bob", [MEMBER]),
        }
        self._channels: list[grpc.aio.Channel] = []

    def channel(self, who: str | None = "a") -> grpc.aio.Channel:
        token = None if who is None else self.tokens.get(who, who)
        ch = channel(self.running.address, token)
        self._channels.append(ch)
        return ch

    def servers(self, who: str | None = "a") -> servers_pb2_grpc.ServersStub:
        return servers_pb2_grpc.ServersStub(self.channel(who))

    def flavors(self, who: str | None = "admin") -> flavors_pb2_grpc.FlavorsStub:
        return flavors_pb2_grpc.FlavorsStub(self.channel(who))

    def images(self, who: str | None = "admin") -> images_pb2_grpc.ImagesStub:
        return images_pb2_grpc.ImagesStub(self.channel(who))

    def groups(self, who: str | None = "a") -> server_groups_pb2_grpc.ServerGroupsStub:
        return server_groups_pb2_grpc.ServerGroupsStub(self.channel(who))

    def hosts(self, who: str | None = "admin") -> hosts_pb2_grpc.HostsStub:
        return hosts_pb2_grpc.HostsStub(self.channel(who))

    def quotas(self, who: str | None = "admin") -> quotas_pb2_grpc.QuotasStub:
        return quotas_pb2_grpc.QuotasStub(self.channel(who))

    def token_stub(self, who: str | None = "admin") -> tokens_pb2_grpc.TokensStub:
        return tokens_pb2_grpc.TokensStub(self.channel(who))

    async def close(self) -> None:
        for ch in self._channels:
            await ch.close()
        await self.running.stop(1.0)
        self.db.close()

    # -- setup helpers (through the API where there is an RPC for it) --

    async def flavor(self, name: str = "m1.small", vcpus: int = 1, memory_mb: int = 512,
                     root_gb: int = 1, **kwargs: Any) -> str:
        reply = await self.flavors().CreateFlavor(flavors_pb2.CreateFlavorRequest(
            name=name, vcpus=vcpus, memory_mb=memory_mb, root_gb=root_gb, **kwargs))
        return str(reply.id)

    async def image(self, tmp_path: Path, name: str = "cirros", size: int = 1 << 20,
                    properties: dict[str, str] | None = None) -> str:
        path = tmp_path / f"{name}-{uuid.uuid4().hex[:6]}.raw"
        with path.open("wb") as f:
            f.truncate(size)
        reply = await self.images().CreateImage(images_pb2.CreateImageRequest(
            name=name, path=str(path), properties=properties or {}))
        return str(reply.id)

    async def boot(self, flavor_id: str, image_id: str, who: str = "a", name: str = "vm",
                   **kwargs: Any) -> list[servers_pb2.Server]:
        reply = await self.servers(who).CreateServer(servers_pb2.CreateServerRequest(
            name=name, flavor_id=flavor_id, image_id=image_id, **kwargs))
        return list(reply.servers)

    def instances(self) -> list[Any]:
        """Every instance row, deleted ones included."""
        return self.db.list_instances(include_deleted=True).instances


def run(tmp_path: Path, db_url: str, scenario: Callable[[Api], Awaitable[None]],
        settings_overrides: Mapping[str, Any] | None = None, **start_kwargs: Any) -> None:
    async def main() -> None:
        settings = make_settings(tmp_path, db_url, **(settings_overrides or {}))
        signer = TokenSigner(SECRET)
        conductor, scheduler = FakeConductor(), FakeScheduler()
        running = await service.start(settings, signer=signer, conductor=conductor,
                                      scheduler=scheduler, listen="127.0.0.1:0", metrics_port=-1,
                                      poll_interval=0.05, **start_kwargs)
        api = Api(running, Database(db_url), signer, conductor, scheduler)
        try:
            await scenario(api)
        finally:
            await api.close()
    asyncio.run(main())


def bad_field(error: grpc.aio.AioRpcError) -> str:
    """The field an INVALID_ARGUMENT names, in its message and in its details."""
    assert error.code() is Code.INVALID_ARGUMENT, (error.code(), error.details())
    bad = error_details_pb2.BadRequest()
    for detail in status_details(error):
        if detail.Unpack(bad):
            break
    assert bad.field_violations, error.details()
    name = str(bad.field_violations[0].field)
    assert (error.details() or "").startswith(f"{name}: "), error.details()
    return name


async def seeded(api: Api, tmp_path: Path) -> tuple[str, str]:
    return await api.flavor(), await api.image(tmp_path)


def nothing_written(api: Api, projects: Sequence[str] = ("project-a", "project-b")) -> None:
    assert api.instances() == []
    for project in projects:
        assert dict(api.db.get_quota(project).usage) == {"instances": 0, "cores": 0, "ram": 0}
    assert api.conductor.calls == 0


# --- servers: create, get, list, delete ---------------------------------------------------

def test_create_get_list_delete(tmp_path: Path, db_url: str) -> None:
    async def scenario(api: Api) -> None:
        flavor_id, image_id = await seeded(api, tmp_path)
        reply = await api.servers("a").CreateServer(servers_pb2.CreateServerRequest(
            name="web", flavor_id=flavor_id, image_id=image_id, metadata={"role": "web"}))
        assert reply.reservation_id.startswith("r-")
        [server] = reply.servers
        uuid.UUID(server.id)
        assert (server.name, server.project_id, server.user_id) == ("web", "project-a", "alice")
        assert (server.status, server.vm_state, server.task_state, server.power_state) == (
            "BUILD", states_pb2.VM_STATE_BUILDING, states_pb2.TASK_STATE_SCHEDULING,
            states_pb2.POWER_STATE_NOSTATE)
        assert (server.flavor_id, server.image_id, dict(server.metadata)) == (
            flavor_id, image_id, {"role": "web"})
        assert server.HasField("created_at") and not server.HasField("launched_at")
        # committed before the conductor heard of it, under the call's request id
        [build] = api.conductor.builds
        assert build["server_ids"] == [server.id] and build["request_id"].startswith("req-")
        [action] = api.db.list_instance_actions(server.id)
        assert (action.action, action.request_id, action.user_id) == (
            "create", build["request_id"], "alice")

        got = await api.servers("a").GetServer(servers_pb2.GetServerRequest(id=server.id))
        assert got == server
        listed = await api.servers("a").ListServers(servers_pb2.ListServersRequest())
        assert [s.id for s in listed.servers] == [server.id] and not listed.next_page_token

        # the image is optional (simulated hosts boot without one)
        [bare] = await api.boot(flavor_id, "", name="bare")
        assert bare.image_id == "" and api.db.get_instance(bare.id).image_id is None
        await api.servers("a").DeleteServer(servers_pb2.DeleteServerRequest(id=bare.id))
        api.db.delete_instance(bare.id)
        api.conductor.deletes.clear()

        deleting = await api.servers("a").DeleteServer(servers_pb2.DeleteServerRequest(id=server.id))
        assert deleting.task_state == states_pb2.TASK_STATE_DELETING
        assert api.conductor.deletes == [server.id]
        assert [a.action for a in api.db.list_instance_actions(server.id)] == ["create", "delete"]
        # the conductor deletes the record; then the server is gone
        api.db.delete_instance(server.id)
        error = await failure(api.servers("a").GetServer(servers_pb2.GetServerRequest(id=server.id)))
        assert error.code() is Code.NOT_FOUND
        error = await failure(api.servers("a").DeleteServer(servers_pb2.DeleteServerRequest(id=server.id)))
        assert error.code() is Code.NOT_FOUND
        assert (await api.servers("a").ListServers(servers_pb2.ListServersRequest())).servers == []
    run(tmp_path, db_url, scenario)


def test_multi_create_takes_as_many_as_the_quota_allows(tmp_path: Path, db_url: str) -> None:
    async def scenario(api: Api) -> None:
        flavor_id, image_id = await seeded(api, tmp_path)
        servers = await api.boot(flavor_id, image_id, name="batch", min_count=2, max_count=3)
        assert sorted(s.name for s in servers) == ["batch-1", "batch-2", "batch-3"]
        assert len({s.id for s in servers}) == 3
        assert api.conductor.builds[0]["server_ids"] == [s.id for s in servers]
        await api.quotas().SetQuota(quotas_pb2.SetQuotaRequest(project_id="project-a", instances=5))
        servers = await api.boot(flavor_id, image_id, name="more", min_count=1, max_count=4)
        assert len(servers) == 2  # 3 + 2 = the limit of 5
        quota = await api.quotas("a").GetQuota(quotas_pb2.GetQuotaRequest())
        assert (quota.usage.instances, quota.usage.cores, quota.usage.ram) == (5, 5, 5 * 512)
    run(tmp_path, db_url, scenario)


def test_list_pagination_returns_every_server_once(tmp_path: Path, db_url: str) -> None:
    async def scenario(api: Api) -> None:
        flavor_id, image_id = await seeded(api, tmp_path)
        created = {s.id for s in await api.boot(flavor_id, image_id, min_count=7, max_count=7)}
        stub = api.servers("a")
        seen: list[str] = []
        token = ""
        pages = 0
        while True:
            page = await stub.ListServers(servers_pb2.ListServersRequest(page_size=3, page_token=token))
            pages += 1
            assert len(page.servers) <= 3
            seen += [s.id for s in page.servers]
            token = page.next_page_token
            if not token:
                break
        assert pages == 3 and len(seen) == 7 and set(seen) == created

        first = await stub.ListServers(servers_pb2.ListServersRequest(page_size=2))
        # the token belongs to its filters
        error = await failure(stub.ListServers(servers_pb2.ListServersRequest(
            page_size=2, page_token=first.next_page_token,
            filters=servers_pb2.ServerFilters(status="ACTIVE"))))
        assert bad_field(error) == "page_token"
        for token in ("garbage", "eyJrIjoiZmxhdm9ycyJ9", "x" * 5000):
            assert bad_field(await failure(stub.ListServers(
                servers_pb2.ListServersRequest(page_token=token)))) == "page_token"
        assert bad_field(await failure(stub.ListServers(
            servers_pb2.ListServersRequest(page_size=-1)))) == "page_size"
        # 0 is the default, and more than 1000 is cut to 1000
        assert len((await stub.ListServers(servers_pb2.ListServersRequest(page_size=0))).servers) == 7
        assert len((await stub.ListServers(servers_pb2.ListServersRequest(page_size=5000))).servers) == 7
    run(tmp_path, db_url, scenario)


def test_list_filters(tmp_path: Path, db_url: str) -> None:
    async def scenario(api: Api) -> None:
        flavor_id, image_id = await seeded(api, tmp_path)
        [web] = await api.boot(flavor_id, image_id, name="web")
        [db_server] = await api.boot(flavor_id, image_id, name="database")
        [other] = await api.boot(flavor_id, image_id, who="b", name="web")
        api.db.update_instance(web.id, vm_state=VmState.ACTIVE, task_state=None,
                               power_state=PowerState.RUNNING, host="compute-1")

        async def ids(who: str, **filters: Any) -> set[str]:
            reply = await api.servers(who).ListServers(servers_pb2.ListServersRequest(
                filters=servers_pb2.ServerFilters(**filters)))
            return {s.id for s in reply.servers}

        assert await ids("a") == {web.id, db_server.id}
        assert await ids("a", status="ACTIVE") == {web.id}
        assert await ids("a", status="BUILD") == {db_server.id}
        assert await ids("a", name="web") == {web.id}
        assert await ids("a", name="data") == {db_server.id}
        assert await ids("a", project_id="project-a") == {web.id, db_server.id}
        assert await ids("admin") == {web.id, db_server.id, other.id}
        assert await ids("admin", name="web") == {web.id, other.id}
        assert await ids("admin", project_id="project-b") == {other.id}
        assert await ids("admin", host="compute-1") == {web.id}
        assert await ids("admin", host="compute-2") == set()
        # the name filter ignores case and takes % and _ as themselves
        assert await ids("a", name="WEB") == {web.id}
        assert await ids("a", name="Data") == {db_server.id}
        assert await ids("a", name="%") == set() and await ids("a", name="w_b") == set()

        stub = api.servers("a")
        for filters in ({"host": "compute-1"}, {"project_id": "project-b"}):
            error = await failure(stub.ListServers(servers_pb2.ListServersRequest(
                filters=servers_pb2.ServerFilters(**filters))))
            assert error.code() is Code.PERMISSION_DENIED, filters
        for filters, name in (({"status": "RUNNING"}, "filters.status"),
                              ({"name": ""}, "filters.name"), ({"name": "x" * 256}, "filters.name")):
            assert bad_field(await failure(stub.ListServers(servers_pb2.ListServersRequest(
                filters=servers_pb2.ServerFilters(**filters))))) == name
    run(tmp_path, db_url, scenario)


def test_projects_see_and_touch_only_their_own_servers(tmp_path: Path, db_url: str) -> None:
    async def scenario(api: Api) -> None:
        flavor_id, image_id = await seeded(api, tmp_path)
        [server] = await api.boot(flavor_id, image_id, who="a")
        api.db.update_instance(server.id, vm_state=VmState.ACTIVE, task_state=None,
                               host="compute-7")
        stub = api.servers("b")
        calls = [
            stub.GetServer(servers_pb2.GetServerRequest(id=server.id)),
            stub.DeleteServer(servers_pb2.DeleteServerRequest(id=server.id)),
            stub.StopServer(servers_pb2.StopServerRequest(id=server.id)),
            stub.RebootServer(servers_pb2.RebootServerRequest(id=server.id,
                                                              type=servers_pb2.REBOOT_TYPE_HARD)),
            stub.ListServerActions(servers_pb2.ListServerActionsRequest(id=server.id)),
            anext(aiter(stub.WatchServers(servers_pb2.WatchServersRequest(ids=[server.id])))),
        ]
        for call in calls:
            error = await failure(call)
            assert error.code() is Code.NOT_FOUND
            assert "project-a" not in (error.details() or "")
        assert (await stub.ListServers(servers_pb2.ListServersRequest())).servers == []
        assert api.conductor.deletes == [] and api.conductor.actions == []
        assert api.db.get_instance(server.id).task_state is None

        # the owner sees it without its host; an admin sees every project's, with the host
        mine = await api.servers("a").GetServer(servers_pb2.GetServerRequest(id=server.id))
        assert (mine.status, mine.host) == ("ACTIVE", "")
        theirs = await api.servers("admin").GetServer(servers_pb2.GetServerRequest(id=server.id))
        assert (theirs.project_id, theirs.host) == ("project-a", "compute-7")
        await api.servers("admin").DeleteServer(servers_pb2.DeleteServerRequest(id=server.id))
        assert api.conductor.deletes == [server.id]
    run(tmp_path, db_url, scenario)


def test_fault_details_only_for_admins_when_code_is_500(tmp_path: Path, db_url: str) -> None:
    async def scenario(api: Api) -> None:
        flavor_id, image_id = await seeded(api, tmp_path)
        [server] = await api.boot(flavor_id, image_id)
        api.db.update_instance(server.id, vm_state=VmState.ERROR, task_state=None, fault=NewFault(
            500, "No valid host was found. 3 RamFilter",
            {"rejections": [["Placement", 1], ["RamFilter", 3]], "instance_index": 0}))
        mine = await api.servers("a").GetServer(servers_pb2.GetServerRequest(id=server.id))
        assert (mine.status, mine.fault.code, mine.fault.details) == ("ERROR", 500, "")
        assert not mine.fault.HasField("data")
        assert [(r.check, r.hosts) for r in mine.fault.rejections] == [("Placement", 1), ("RamFilter", 3)]
        admin = await api.servers("admin").GetServer(servers_pb2.GetServerRequest(id=server.id))
        # a sentence for people, the same facts as an object for programs
        assert admin.fault.details == (
            "No host could take the request's first server, so none of the request's servers "
            "was placed (a request is placed all or nothing). Of 4 hosts checked, Placement "
            "removed 1, RamFilter removed 3; none was left.")
        assert MessageToDict(admin.fault.data) == {"instance_index": 0}
    run(tmp_path, db_url, scenario)


def test_a_failed_builds_fault_tells_each_host_tried(tmp_path: Path, db_url: str) -> None:
    async def scenario(api: Api) -> None:
        flavor_id, image_id = await seeded(api, tmp_path)
        [server] = await api.boot(flavor_id, image_id)
        api.db.update_instance(server.id, vm_state=VmState.ERROR, task_state=None, fault=NewFault(
            400, "Exceeded maximum number of retries.",
            {"attempts": ["compute-1: disk full", "compute-2: image refused"]}))
        mine = await api.servers("a").GetServer(servers_pb2.GetServerRequest(id=server.id))
        assert mine.fault.details == ("Tried 2 hosts, and the build failed on each: "
                                      "compute-1: disk full; compute-2: image refused.")
        assert MessageToDict(mine.fault.data) == {"attempts": ["compute-1: disk full",
                                                               "compute-2: image refused"]}
    run(tmp_path, db_url, scenario)


# --- who may do what ----------------------------------------------------------------------

def test_admin_only_rpcs_are_denied_to_members(tmp_path: Path, db_url: str) -> None:
    async def scenario(api: Api) -> None:
        flavor_id, image_id = await seeded(api, tmp_path)
        image_path = tmp_path / "member.raw"
        image_path.write_bytes(b"\0" * 4096)
        calls = {
            "CreateFlavor": api.flavors("a").CreateFlavor(flavors_pb2.CreateFlavorRequest(
                name="m1.huge", vcpus=64, memory_mb=1024)),
            "DeleteFlavor": api.flavors("a").DeleteFlavor(flavors_pb2.DeleteFlavorRequest(id=flavor_id)),
            "SetFlavorExtraSpecs": api.flavors("a").SetFlavorExtraSpecs(
                flavors_pb2.SetFlavorExtraSpecsRequest(flavor_id=flavor_id, extra_specs={"a": "b"})),
            "UnsetFlavorExtraSpecs": api.flavors("a").UnsetFlavorExtraSpecs(
                flavors_pb2.UnsetFlavorExtraSpecsRequest(flavor_id=flavor_id, keys=["a"])),
            "CreateImage": api.images("a").CreateImage(images_pb2.CreateImageRequest(
                name="mine", path=str(image_path))),
            "DeleteImage": api.images("a").DeleteImage(images_pb2.DeleteImageRequest(id=image_id)),
            "ListHosts": api.hosts("a").ListHosts(hosts_pb2.ListHostsRequest()),
            "EnableHost": api.hosts("a").EnableHost(hosts_pb2.EnableHostRequest(name="compute-1")),
            "DisableHost": api.hosts("a").DisableHost(hosts_pb2.DisableHostRequest(name="compute-1")),
            "SetQuota": api.quotas("a").SetQuota(quotas_pb2.SetQuotaRequest(
                project_id="project-a", instances=1000)),
            "CreateToken": api.token_stub("a").CreateToken(tokens_pb2.CreateTokenRequest(
                project_id="project-a", user_id="alice", roles=[ADMIN])),
        }
        for name, call in calls.items():
            error = await failure(call)
            assert error.code() is Code.PERMISSION_DENIED, name
            assert "admin" in (error.details() or ""), name
        # nothing changed
        assert [f.id for f in api.db.list_flavors()] == [flavor_id]
        assert api.db.get_flavor(flavor_id).extra_specs == {}
        assert [i.id for i in api.db.list_images()] == [image_id]
        assert api.db.get_quota("project-a").limits["instances"] == 10
        assert api.scheduler.changed == []
        # a member's own project's quota is fine; another's is not
        await api.quotas("a").GetQuota(quotas_pb2.GetQuotaRequest(project_id="project-a"))
        error = await failure(api.quotas("a").GetQuota(quotas_pb2.GetQuotaRequest(project_id="project-b")))
        assert error.code() is Code.PERMISSION_DENIED
    run(tmp_path, db_url, scenario)


def test_missing_expired_forged_or_malformed_tokens_are_unauthenticated(tmp_path: Path,
                                                                       db_url: str) -> None:
    async def scenario(api: Api) -> None:
        flavor_id, image_id = await seeded(api, tmp_path)
        past = TokenSigner(SECRET, clock=lambda: time.time() - 7200)
        expired = past.issue("project-a", "alice", [MEMBER], ttl_seconds=60)
        forged = TokenSigner(b"another secret of 32 bytes!!!!!!").issue(
            "project-a", "alice", [ADMIN])
        payload, signature = api.tokens["a"].split(".")
        tampered = payload[:-2] + ("A" if payload[-2] != "A" else "B") + payload[-1] + "." + signature
        cases = {"missing": None, "expired": expired, "forged": forged, "tampered": tampered,
                 "malformed": "not-a-token"}
        for name, token in cases.items():
            stub = api.servers(token)
            for call in (stub.ListServers(servers_pb2.ListServersRequest()),
                         stub.CreateServer(servers_pb2.CreateServerRequest(
                             name="x", flavor_id=flavor_id, image_id=image_id)),
                         anext(aiter(stub.WatchServers(servers_pb2.WatchServersRequest())))):
                error = await failure(call)
                assert error.code() is Code.UNAUTHENTICATED, name
        assert "expired" in (await failure(api.servers(expired).ListServers(
            servers_pb2.ListServersRequest()))).details()
        nothing_written(api)
        # health answers without a token
        reply = await health_pb2_grpc.HealthStub(api.channel(None)).Check(
            health_pb2.HealthCheckRequest(service="novalite.compute.v1.Servers"))
        assert reply.status == health_pb2.HealthCheckResponse.SERVING
    run(tmp_path, db_url, scenario)


# --- bad input ---------------------------------------------------------------------------

UUID0 = "00000000-0000-4000-8000-000000000000"
# (case, request fields over a valid request, the field named)
BAD_CREATES: list[tuple[str, dict[str, Any], str]] = [
    ("unknown flavor", {"flavor_id": UUID0}, "flavor_id"),
    ("no flavor", {"flavor_id": ""}, "flavor_id"),
    ("private flavor", {"flavor_id": "<private>"}, "flavor_id"),
    ("unknown image", {"image_id": UUID0}, "image_id"),
    ("min_count > max_count", {"min_count": 3, "max_count": 2}, "max_count"),
    ("min_count 0", {"min_count": 0}, "min_count"),
    ("negative min_count", {"min_count": -1}, "min_count"),
    ("negative max_count", {"max_count": -5}, "max_count"),
    ("too many at once", {"min_count": 1, "max_count": 1001}, "max_count"),
    ("empty name", {"name": ""}, "name"),
    ("blank name", {"name": "   "}, "name"),
    ("padded name", {"name": " web "}, "name"),
    ("256-character name", {"name": "x" * 256}, "name"),
    ("512 KB name", {"name": "x" * (512 * 1024)}, "name"),
    ("control characters", {"name": "web\n01"}, "name"),
    ("batch names too long", {"name": "x" * 254, "min_count": 2}, "name"),
    ("129 metadata items", {"metadata": {f"k{i}": "v" for i in range(129)}}, "metadata"),
    ("long metadata key", {"metadata": {"k" * 256: "v"}}, "metadata"),
    ("long metadata value", {"metadata": {"k": "v" * 256}}, "metadata.k"),
    ("unknown zone", {"availability_zone": "moon"}, "availability_zone"),
    ("empty zone", {"availability_zone": ""}, "availability_zone"),
    ("group not a uuid", {"scheduler_hints": {"group": "my-group"}}, "scheduler_hints.group"),
    ("unknown group", {"scheduler_hints": {"group": UUID0}}, "scheduler_hints.group"),
    ("another project's group", {"scheduler_hints": {"group": "<b's group>"}},
     "scheduler_hints.group"),
    ("same_host not ids", {"scheduler_hints": {"same_host": ["compute-1"]}},
     "scheduler_hints.same_host"),
    ("different_host not ids", {"scheduler_hints": {"different_host": [UUID0, "x"]}},
     "scheduler_hints.different_host"),
    ("101 same_host ids", {"scheduler_hints": {"same_host": [UUID0] * 101}},
     "scheduler_hints.same_host"),
    ("flavor RAM below the image's min_ram", {"image_id": "<needs 1 GB>"}, "flavor_id"),
    ("flavor disk below the image's min_disk", {"image_id": "<needs 5 GB disk>"}, "flavor_id"),
    ("image larger than the root disk", {"image_id": "<2 GB image>"}, "flavor_id"),
]


def test_bad_creates_name_the_field_and_write_nothing(tmp_path: Path, db_url: str) -> None:
    async def scenario(api: Api) -> None:
        flavor_id, image_id = await seeded(api, tmp_path)
        aliases = {
            "<private>": await api.flavor("private", is_public=False),
            "<needs 1 GB>": await api.image(tmp_path, "big-ram", properties={"min_ram": "1024"}),
            "<needs 5 GB disk>": await api.image(tmp_path, "big-disk", properties={"min_disk": "5"}),
            "<2 GB image>": await api.image(tmp_path, "sparse", size=2 << 30),
            "<b's group>": (await api.groups("b").CreateServerGroup(
                server_groups_pb2.CreateServerGroupRequest(name="g", policy="affinity"))).id,
        }
        stub = api.servers("a")
        for case, fields, expected in BAD_CREATES:
            request = {"name": "web", "flavor_id": flavor_id, "image_id": image_id, **fields}
            for key in ("flavor_id", "image_id"):
                request[key] = aliases.get(request[key], request[key])
            hints = request.pop("scheduler_hints", {})
            if "group" in hints:
                hints["group"] = aliases.get(hints["group"], hints["group"])
            error = await failure(stub.CreateServer(servers_pb2.CreateServerRequest(
                scheduler_hints=servers_pb2.SchedulerHints(**hints), **request)))
            assert bad_field(error) == expected, case
            assert len(error.details() or "") < 1000, case  # the bad value is not echoed whole
            nothing_written(api)
    run(tmp_path, db_url, scenario)


def test_forcing_a_host_is_for_admins(tmp_path: Path, db_url: str) -> None:
    async def scenario(api: Api) -> None:
        flavor_id, image_id = await seeded(api, tmp_path)
        request = servers_pb2.CreateServerRequest(name="x", flavor_id=flavor_id, image_id=image_id,
                                                  availability_zone="nova:compute-1")
        error = await failure(api.servers("a").CreateServer(request))
        assert error.code() is Code.PERMISSION_DENIED
        assert bad_field(await failure(api.servers("admin").CreateServer(request))) == \
            "availability_zone"
        nothing_written(api)
        # a zone with an enabled host (an aggregate's, or the default zone) is fine
        add_host(api.db, "compute-1")
        add_host(api.db, "compute-2")
        rack = api.db.create_aggregate("rack-1", metadata={"availability_zone": "az-1"})
        api.db.add_aggregate_host(rack.id, "compute-2")
        for zone in ("az-1", "nova"):
            [server] = await api.boot(flavor_id, image_id, availability_zone=zone)
            assert server.availability_zone == zone
            assert api.conductor.builds[-1]["availability_zone"] == zone
        # Nova's: not a zone without hosts, nor one whose hosts are all disabled
        api.db.create_aggregate("rack-2", metadata={"availability_zone": "az-2"})
        api.db.disable_service("compute-2", "compute")
        for zone, why in (("az-2", "unknown availability zone 'az-2'"),
                          ("az-1", "availability zone 'az-1' is not available")):
            error = await failure(api.boot(flavor_id, image_id, availability_zone=zone))
            assert bad_field(error) == "availability_zone" and why in (error.details() or "")
    run(tmp_path, db_url, scenario)


@pytest.mark.parametrize("text, zone, host, node", [
    ("nova:compute-1", "nova", "compute-1", None),
    ("az-1:compute-1", "az-1", "compute-1", None),
    (":compute-1", None, "compute-1", None),
    ("nova:compute-1:compute-1", "nova", "compute-1", "compute-1"),
    ("nova::compute-1", "nova", None, "compute-1"),
])
def test_an_admin_forces_a_host_with_novas_zone_forms(tmp_path: Path, db_url: str, text: str,
                                                      zone: str | None, host: str | None,
                                                      node: str | None) -> None:
    async def scenario(api: Api) -> None:
        flavor_id, image_id = await seeded(api, tmp_path)
        add_host(api.db, "compute-1")
        add_host(api.db, "compute-2")
        rack = api.db.create_aggregate("rack-1", metadata={"availability_zone": "az-1"})
        api.db.add_aggregate_host(rack.id, "compute-2")
        [server] = await api.boot(flavor_id, image_id, who="admin", availability_zone=text)
        assert server.availability_zone == (zone or "")
        assert api.conductor.builds[-1]["availability_zone"] == zone
        row = api.db.get_instance(server.id)
        assert (row.forced_host, row.forced_node) == (host, node)
    run(tmp_path, db_url, scenario)


@pytest.mark.parametrize("text, why", [
    ("nova:compute-9", "unknown host 'compute-9'"),
    ("moon:compute-1", "unknown availability zone 'moon'"),
    ("nova:compute-1:x:y", "expected 'zone', 'zone:host'"),
])
def test_a_bad_forced_host_is_refused_and_writes_nothing(tmp_path: Path, db_url: str, text: str,
                                                          why: str) -> None:
    async def scenario(api: Api) -> None:
        flavor_id, image_id = await seeded(api, tmp_path)
        add_host(api.db, "compute-1")
        error = await failure(api.boot(flavor_id, image_id, who="admin", availability_zone=text))
        assert bad_field(error) == "availability_zone" and why in (error.details() or "")
        nothing_written(api, projects=("admin-project",))
    run(tmp_path, db_url, scenario)


@pytest.mark.parametrize("key, value, what", [
    ("hw:numa_nodes", "2", "NUMA"),
    ("hw:cpu_policy", "dedicated", "CPU pinning"),
    ("pci_passthrough:alias", "gpu:1", "PCI passthrough"),
    ("resources:CUSTOM_GPU", "1", "resource class 'CUSTOM_GPU' is not modelled"),
    ("resources:PCPU", "4", "resource class 'PCPU' is not modelled"),
    ("resources1:VCPU", "2", "granular"),
    ("trait1:HW_CPU_X86_AVX2", "required", "granular"),
])
def test_extra_specs_novalite_cannot_honour_are_refused(tmp_path: Path, db_url: str, key: str,
                                                        value: str, what: str) -> None:
    """At flavor create, at extra-spec set, and at server create from a flavor that
    was stored with one before: the error names the key, and nothing is written."""
    async def scenario(api: Api) -> None:
        stub = api.flavors()
        error = await failure(stub.CreateFlavor(flavors_pb2.CreateFlavorRequest(
            name="m1.numa", vcpus=2, memory_mb=1024, extra_specs={key: value, "ssd": "true"})))
        assert bad_field(error) == f"extra_specs.{key}" and what in (error.details() or "")
        assert api.db.list_flavors() == []
        flavor_id, image_id = await seeded(api, tmp_path)
        error = await failure(stub.SetFlavorExtraSpecs(flavors_pb2.SetFlavorExtraSpecsRequest(
            flavor_id=flavor_id, extra_specs={key: value})))
        assert bad_field(error) == f"extra_specs.{key}"
        assert dict(api.db.get_flavor(flavor_id).extra_specs) == {}
        # a flavor written before novalite refused such keys
        old = api.db.create_flavor(name="m1.old", vcpus=1, memory_mb=512, extra_specs={key: value})
        for image in (image_id, ""):
            error = await failure(api.boot(old.id, image))
            assert bad_field(error) == "flavor_id" and key in (error.details() or "")
        nothing_written(api)
    run(tmp_path, db_url, scenario)


def test_extra_specs_the_scheduler_reads_or_that_mean_nothing_to_it_are_kept(
        tmp_path: Path, db_url: str) -> None:
    async def scenario(api: Api) -> None:
        specs = {"ssd": "true", "capabilities:cpu_info:vendor": "Intel",
                 "aggregate_instance_extra_specs:rack": "r1", "trait:HW_CPU_X86_AVX2": "required",
                 "resources:VCPU": "2", "resources:CUSTOM_GPU": "0", "hw:maxphysaddr_bits": "40",
                 "hw:cpu_policy": "shared", "company:tier": "gold"}
        flavor = await api.flavors().CreateFlavor(flavors_pb2.CreateFlavorRequest(
            name="m1.ok", vcpus=1, memory_mb=512, extra_specs=specs))
        assert dict(flavor.extra_specs) == specs
        [server] = await api.boot(flavor.id, await api.image(tmp_path))
        assert server.status == "BUILD"
    run(tmp_path, db_url, scenario)


def test_a_request_over_the_size_limit_is_refused_by_grpc(tmp_path: Path, db_url: str) -> None:
    async def scenario(api: Api) -> None:
        flavor_id, image_id = await seeded(api, tmp_path)
        error = await failure(api.servers("a").CreateServer(servers_pb2.CreateServerRequest(
            name="x" * (10 << 20), flavor_id=flavor_id, image_id=image_id)))
        assert error.code() is Code.RESOURCE_EXHAUSTED
        details = error.details() or ""
        assert "larger than max" in details and str(service.MAX_REQUEST_BYTES) in details, details
        nothing_written(api)
        # the service keeps serving
        await api.boot(flavor_id, image_id)
    run(tmp_path, db_url, scenario)


def test_bad_flavors_name_the_field_and_write_nothing(tmp_path: Path, db_url: str) -> None:
    async def scenario(api: Api) -> None:
        stub = api.flavors()
        good = {"name": "m1.tiny", "vcpus": 1, "memory_mb": 512}
        cases = [({"vcpus": -1}, "vcpus"), ({"vcpus": 0}, "vcpus"), ({"memory_mb": -512}, "memory_mb"),
                 ({"memory_mb": 0}, "memory_mb"), ({"root_gb": -1}, "root_gb"),
                 ({"ephemeral_gb": -1}, "ephemeral_gb"), ({"swap": -1}, "swap"),
                 ({"name": ""}, "name"), ({"name": "x" * 256}, "name"),
                 ({"extra_specs": {"trait:HW_CPU_X86_AVX": "maybe"}}, "extra_specs.trait:HW_CPU_X86_AVX"),
                 ({"extra_specs": {"trait:avx2": "required"}}, "extra_specs.trait:avx2"),
                 ({"extra_specs": {"resources:CUSTOM_GPU": "1"}}, "extra_specs.resources:CUSTOM_GPU"),
                 ({"extra_specs": {"resources:VCPU": "-2"}}, "extra_specs.resources:VCPU"),
                 ({"extra_specs": {"resources:GPU": "1"}}, "extra_specs.resources:GPU"),
                 ({"extra_specs": {f"k{i}": "v" for i in range(129)}}, "extra_specs")]
        for fields, expected in cases:
            error = await failure(stub.CreateFlavor(flavors_pb2.CreateFlavorRequest(**{**good, **fields})))
            assert bad_field(error) == expected, fields
        assert api.db.list_flavors() == []
    run(tmp_path, db_url, scenario)


# --- quota -------------------------------------------------------------------------------

def test_over_quota_is_resource_exhausted(tmp_path: Path, db_url: str) -> None:
    async def scenario(api: Api) -> None:
        flavor_id, image_id = await seeded(api, tmp_path)
        big = await api.flavor("m1.big", vcpus=8, memory_mb=1024)
        await api.quotas().SetQuota(quotas_pb2.SetQuotaRequest(project_id="project-a", instances=3))
        error = await failure(api.servers("a").CreateServer(servers_pb2.CreateServerRequest(
            name="x", flavor_id=flavor_id, image_id=image_id, min_count=4)))
        assert error.code() is Code.RESOURCE_EXHAUSTED
        assert "instances" in (error.details() or "")
        info = error_details_pb2.ErrorInfo()
        assert any(d.Unpack(info) for d in status_details(error))
        assert dict(info.metadata) == {"resource": "instances", "requested": "4", "limit": "3",
                                       "in_use": "0"}
        nothing_written(api)
        # cores: 20 by default, 8 each
        servers = await api.boot(big, image_id, min_count=1, max_count=3)
        assert len(servers) == 2
        error = await failure(api.servers("a").CreateServer(servers_pb2.CreateServerRequest(
            name="x", flavor_id=big, image_id=image_id)))
        assert error.code() is Code.RESOURCE_EXHAUSTED and "cores" in (error.details() or "")
        # project b is not affected; deleting frees the quota
        await api.boot(big, image_id, who="b")
        api.db.delete_instance(servers[0].id)
        await api.boot(big, image_id)
    run(tmp_path, db_url, scenario)


def test_racing_creates_never_both_take_the_last_unit(tmp_path: Path, db_url: str) -> None:
    async def scenario(api: Api) -> None:
        flavor_id, image_id = await seeded(api, tmp_path)
        for round_, limit in enumerate((1, 3)):
            project = f"race-{round_}"
            token = api.signer.issue(project, "racer", [MEMBER])
            await api.quotas().SetQuota(quotas_pb2.SetQuotaRequest(project_id=project,
                                                                   instances=limit))
            stubs = [api.servers(token) for _ in range(8)]
            results = await asyncio.gather(*(stub.CreateServer(servers_pb2.CreateServerRequest(
                name=f"r{i}", flavor_id=flavor_id, image_id=image_id))
                for i, stub in enumerate(stubs)), return_exceptions=True)
            ok = [r for r in results if isinstance(r, servers_pb2.CreateServerResponse)]
            refused = [r for r in results if isinstance(r, grpc.aio.AioRpcError)]
            assert len(ok) == limit and len(refused) == 8 - limit, results
            assert all(r.code() is Code.RESOURCE_EXHAUSTED for r in refused)
            page = api.db.list_instances(project_id=project, include_deleted=True)
            assert len(page.instances) == limit
            assert api.db.get_quota(project).usage["instances"] == limit
    run(tmp_path, db_url, scenario)


def test_a_build_the_conductor_cannot_take_is_undone(tmp_path: Path, db_url: str) -> None:
    async def scenario(api: Api) -> None:
        flavor_id, image_id = await seeded(api, tmp_path)
        api.conductor.fail = errors.Unavailable("conductor unreachable")
        error = await failure(api.servers("a").CreateServer(servers_pb2.CreateServerRequest(
            name="x", flavor_id=flavor_id, image_id=image_id, min_count=2)))
        assert error.code() is Code.UNAVAILABLE
        # the rows are deleted again and the quota released
        assert len(api.instances()) == 2 and all(i.deleted_at for i in api.instances())
        assert dict(api.db.get_quota("project-a").usage) == {"instances": 0, "cores": 0, "ram": 0}
        assert (await api.servers("a").ListServers(servers_pb2.ListServersRequest())).servers == []
    run(tmp_path, db_url, scenario)


# --- flavors, images, server groups, quotas, tokens, hosts ---------------------------------

def test_flavors(tmp_path: Path, db_url: str) -> None:
    async def scenario(api: Api) -> None:
        stub = api.flavors()
        small = await stub.CreateFlavor(flavors_pb2.CreateFlavorRequest(
            name="m1.small", vcpus=1, memory_mb=2048, root_gb=20, ephemeral_gb=1, swap=512,
            extra_specs={"hw:maxphysaddr_bits": "40"}))
        assert (small.name, small.vcpus, small.memory_mb, small.root_gb, small.ephemeral_gb,
                small.swap, small.is_public) == ("m1.small", 1, 2048, 20, 1, 512, True)
        assert dict(small.extra_specs) == {"hw:maxphysaddr_bits": "40"}
        secret = await stub.CreateFlavor(flavors_pb2.CreateFlavorRequest(
            name="a.secret", vcpus=2, memory_mb=4096, is_public=False))
        names = [f"m2.{i}" for i in range(5)]
        for name in names:
            await stub.CreateFlavor(flavors_pb2.CreateFlavorRequest(name=name, vcpus=1, memory_mb=64))

        error = await failure(stub.CreateFlavor(flavors_pb2.CreateFlavorRequest(
            name="m1.small", vcpus=1, memory_mb=1)))
        assert error.code() is Code.ABORTED

        listed = await stub.ListFlavors(flavors_pb2.ListFlavorsRequest())
        assert [f.name for f in listed.flavors] == ["a.secret", "m1.small", *names]
        member = api.flavors("a")
        seen: list[str] = []
        token = ""
        while True:
            page = await member.ListFlavors(flavors_pb2.ListFlavorsRequest(page_size=2, page_token=token))
            seen += [f.name for f in page.flavors]
            token = page.next_page_token
            if not token:
                break
        assert seen == ["m1.small", *names]
        assert (await member.GetFlavor(flavors_pb2.GetFlavorRequest(id=small.id))) == small
        error = await failure(member.GetFlavor(flavors_pb2.GetFlavorRequest(id=secret.id)))
        assert error.code() is Code.NOT_FOUND
        assert (await stub.GetFlavor(flavors_pb2.GetFlavorRequest(id=secret.id))).name == "a.secret"

        specs = await stub.SetFlavorExtraSpecs(flavors_pb2.SetFlavorExtraSpecsRequest(
            flavor_id=small.id, extra_specs={"trait:HW_CPU_X86_AVX2": "required",
                                             "resources:VCPU": "2"}))
        assert dict(specs.extra_specs) == {"hw:maxphysaddr_bits": "40",
                                           "trait:HW_CPU_X86_AVX2": "required",
                                           "resources:VCPU": "2"}
        specs = await stub.UnsetFlavorExtraSpecs(flavors_pb2.UnsetFlavorExtraSpecsRequest(
            flavor_id=small.id, keys=["hw:maxphysaddr_bits", "resources:VCPU"]))
        assert dict(specs.extra_specs) == {"trait:HW_CPU_X86_AVX2": "required"}
        error = await failure(stub.UnsetFlavorExtraSpecs(flavors_pb2.UnsetFlavorExtraSpecsRequest(
            flavor_id=small.id, keys=["hw:maxphysaddr_bits"])))
        assert error.code() is Code.NOT_FOUND and "hw:maxphysaddr_bits" in (error.details() or "")
        assert bad_field(await failure(stub.UnsetFlavorExtraSpecs(
            flavors_pb2.UnsetFlavorExtraSpecsRequest(flavor_id=small.id)))) == "keys"
        assert bad_field(await failure(stub.SetFlavorExtraSpecs(flavors_pb2.SetFlavorExtraSpecsRequest(
            flavor_id=small.id, extra_specs={f"k{i}": "v" for i in range(128)})))) == "extra_specs"

        await stub.DeleteFlavor(flavors_pb2.DeleteFlavorRequest(id=small.id))
        error = await failure(stub.GetFlavor(flavors_pb2.GetFlavorRequest(id=small.id)))
        assert error.code() is Code.NOT_FOUND
        error = await failure(stub.DeleteFlavor(flavors_pb2.DeleteFlavorRequest(id=small.id)))
        assert error.code() is Code.NOT_FOUND
        # the name is free again
        await stub.CreateFlavor(flavors_pb2.CreateFlavorRequest(name="m1.small", vcpus=1, memory_mb=1))
    run(tmp_path, db_url, scenario)


def test_private_flavors_serve_the_projects_given_access(tmp_path: Path, db_url: str) -> None:
    """Nova's flavor access: a private flavor is seen and used by admins and the
    projects given access, by no one else; taking access away keeps the servers."""
    async def scenario(api: Api) -> None:
        image_id = await api.image(tmp_path)
        secret = await api.flavor("gold", is_public=False)
        public = await api.flavor("m1.small")
        admin = api.flavors()

        async def visible(who: str) -> list[str]:
            return [f.name for f in (await api.flavors(who).ListFlavors(
                flavors_pb2.ListFlavorsRequest())).flavors]

        assert await visible("a") == ["m1.small"]
        assert bad_field(await failure(api.boot(secret, image_id, who="a"))) == "flavor_id"
        granted = await admin.AddFlavorAccess(flavors_pb2.AddFlavorAccessRequest(
            flavor_id=secret, project_id="project-a"))
        assert (granted.flavor_id, list(granted.project_ids)) == (secret, ["project-a"])
        assert await visible("a") == ["gold", "m1.small"]
        assert await visible("b") == ["m1.small"]
        assert (await api.flavors("a").GetFlavor(flavors_pb2.GetFlavorRequest(id=secret))).name == "gold"
        error = await failure(api.flavors("b").GetFlavor(flavors_pb2.GetFlavorRequest(id=secret)))
        assert error.code() is Code.NOT_FOUND
        [server] = await api.boot(secret, image_id, who="a")
        assert bad_field(await failure(api.boot(secret, image_id, who="b"))) == "flavor_id"

        # Nova's refusals: no access list for a public flavor, no access twice,
        # none to take away; admins only
        for call in (admin.AddFlavorAccess(flavors_pb2.AddFlavorAccessRequest(
                         flavor_id=public, project_id="project-a")),
                     admin.ListFlavorAccess(flavors_pb2.ListFlavorAccessRequest(flavor_id=public))):
            assert (await failure(call)).code() is Code.FAILED_PRECONDITION
        error = await failure(admin.AddFlavorAccess(flavors_pb2.AddFlavorAccessRequest(
            flavor_id=secret, project_id="project-a")))
        assert error.code() is Code.ABORTED
        error = await failure(admin.RemoveFlavorAccess(flavors_pb2.RemoveFlavorAccessRequest(
            flavor_id=secret, project_id="project-b")))
        assert error.code() is Code.NOT_FOUND
        assert bad_field(await failure(admin.AddFlavorAccess(flavors_pb2.AddFlavorAccessRequest(
            flavor_id=secret, project_id="")))) == "project_id"
        error = await failure(api.flavors("a").AddFlavorAccess(flavors_pb2.AddFlavorAccessRequest(
            flavor_id=secret, project_id="project-a")))
        assert error.code() is Code.PERMISSION_DENIED
        await admin.AddFlavorAccess(flavors_pb2.AddFlavorAccessRequest(
            flavor_id=secret, project_id="project-c"))
        listed = await admin.ListFlavorAccess(flavors_pb2.ListFlavorAccessRequest(flavor_id=secret))
        assert list(listed.project_ids) == ["project-a", "project-c"]

        left = await admin.RemoveFlavorAccess(flavors_pb2.RemoveFlavorAccessRequest(
            flavor_id=secret, project_id="project-a"))
        assert list(left.project_ids) == ["project-c"]
        assert await visible("a") == ["m1.small"]
        assert bad_field(await failure(api.boot(secret, image_id, who="a"))) == "flavor_id"
        got = await api.servers("a").GetServer(servers_pb2.GetServerRequest(id=server.id))
        assert got.flavor_id == secret
    run(tmp_path, db_url, scenario)


def test_images(tmp_path: Path, db_url: str) -> None:
    from novalite.virt.images import create_blank_image

    async def scenario(api: Api) -> None:
        stub = api.images()
        qcow2 = tmp_path / "cirros.qcow2"
        await asyncio.to_thread(create_blank_image, qcow2, 64, "qcow2")
        image = await stub.CreateImage(images_pb2.CreateImageRequest(
            name="cirros", path=str(qcow2), disk_format="qcow2",
            properties={"hw_architecture": "x86_64", "img_hv_type": "qemu", "hw_vm_mode": "hvm",
                        "min_ram": "64", "min_disk": "1", "os_distro": "cirros"}))
        uuid.UUID(image.id)
        assert (image.name, image.path, image.disk_format) == ("cirros", str(qcow2), "qcow2")
        assert image.size_bytes == qcow2.stat().st_size
        assert dict(image.properties) == {
            "hw_architecture": "x86_64", "img_hv_type": "qemu", "hw_vm_mode": "hvm",
            "min_ram": "64", "min_disk": "1", "os_distro": "cirros",
            VIRTUAL_SIZE_PROPERTY: str(64 << 20)}
        # the format is read from the file when not given
        raw = tmp_path / "disk.raw"
        raw.write_bytes(b"\0" * 65536)
        detected = await stub.CreateImage(images_pb2.CreateImageRequest(name="blank", path=str(raw)))
        assert (detected.disk_format, detected.size_bytes) == ("raw", 65536)

        listed = await stub.ListImages(images_pb2.ListImagesRequest())
        assert [i.name for i in listed.images] == ["blank", "cirros"]
        page = await stub.ListImages(images_pb2.ListImagesRequest(page_size=1))
        assert [i.name for i in page.images] == ["blank"] and page.next_page_token
        page = await stub.ListImages(images_pb2.ListImagesRequest(page_size=1,
                                                                  page_token=page.next_page_token))
        assert [i.name for i in page.images] == ["cirros"] and not page.next_page_token
        # members see images, without their paths
        member = api.images("a")
        seen = await member.GetImage(images_pb2.GetImageRequest(id=image.id))
        assert (seen.name, seen.path) == ("cirros", "")
        assert all(not i.path for i in (await member.ListImages(images_pb2.ListImagesRequest())).images)

        await stub.DeleteImage(images_pb2.DeleteImageRequest(id=detected.id))
        error = await failure(stub.GetImage(images_pb2.GetImageRequest(id=detected.id)))
        assert error.code() is Code.NOT_FOUND
        error = await failure(stub.DeleteImage(images_pb2.DeleteImageRequest(id=detected.id)))
        assert error.code() is Code.NOT_FOUND

        # bad input names the field and registers nothing
        vmdk = tmp_path / "disk.vmdk"
        await asyncio.to_thread(subprocess.run, ["qemu-img", "create", "-q", "-f", "vmdk",
                                                 str(vmdk), "1M"], check=True)
        good = {"name": "x", "path": str(raw)}
        cases = [
            ({"path": "relative/disk.raw"}, "path"),
            ({"path": ""}, "path"),
            ({"path": str(tmp_path / "missing.qcow2")}, "path"),
            ({"path": str(tmp_path)}, "path"),
            ({"path": str(vmdk)}, "path"),
            ({"disk_format": "vmdk"}, "disk_format"),
            ({"disk_format": "qcow2"}, "disk_format"),
            ({"name": ""}, "name"),
            ({"properties": {"hw_architecture": "z80"}}, "properties.hw_architecture"),
            ({"properties": {"img_hv_type": "hal9000"}}, "properties.img_hv_type"),
            ({"properties": {"hw_vm_mode": "hover"}}, "properties.hw_vm_mode"),
            ({"properties": {"min_ram": "-1"}}, "properties.min_ram"),
            ({"properties": {"min_disk": "lots"}}, "properties.min_disk"),
            ({"properties": {"hw_maxphysaddr_bits": "x"}}, "properties.hw_maxphysaddr_bits"),
            ({"properties": {"img_hv_requested_version": ">= 6.0, banana"}},
             "properties.img_hv_requested_version"),
            ({"properties": {VIRTUAL_SIZE_PROPERTY: "1"}}, f"properties.{VIRTUAL_SIZE_PROPERTY}"),
            ({"properties": {"k": "v" * 256}}, "properties.k"),
            ({"properties": {f"k{i}": "v" for i in range(129)}}, "properties"),
        ]
        for fields, expected in cases:
            error = await failure(stub.CreateImage(images_pb2.CreateImageRequest(**{**good, **fields})))
            assert bad_field(error) == expected, fields
        assert [i.name for i in api.db.list_images()] == ["cirros"]
        # an accepted architecture spelling of Nova's
        await stub.CreateImage(images_pb2.CreateImageRequest(
            name="amd", path=str(raw), properties={"hw_architecture": "amd64",
                                                   "img_hv_requested_version": ">=6.0,<7"}))
    run(tmp_path, db_url, scenario)


def test_server_groups(tmp_path: Path, db_url: str) -> None:
    async def scenario(api: Api) -> None:
        flavor_id, image_id = await seeded(api, tmp_path)
        stub = api.groups("a")
        group = await stub.CreateServerGroup(server_groups_pb2.CreateServerGroupRequest(
            name="web", policy="anti-affinity", max_server_per_host=2))
        assert (group.name, group.policy, group.project_id, group.max_server_per_host) == (
            "web", "anti-affinity", "project-a", 2)
        servers = await api.boot(flavor_id, image_id, min_count=2,
                                 scheduler_hints=servers_pb2.SchedulerHints(group=group.id))
        assert api.conductor.builds[-1]["group_id"] == group.id
        got = await stub.GetServerGroup(server_groups_pb2.GetServerGroupRequest(id=group.id))
        assert sorted(got.members) == sorted(s.id for s in servers)
        listed = await stub.ListServerGroups(server_groups_pb2.ListServerGroupsRequest())
        assert [g.id for g in listed.server_groups] == [group.id]

        other = api.groups("b")
        assert (await other.ListServerGroups(server_groups_pb2.ListServerGroupsRequest())).server_groups == []
        for call in (other.GetServerGroup(server_groups_pb2.GetServerGroupRequest(id=group.id)),
                     other.DeleteServerGroup(server_groups_pb2.DeleteServerGroupRequest(id=group.id))):
            assert (await failure(call)).code() is Code.NOT_FOUND
        admin = api.groups("admin")
        assert [g.id for g in (await admin.ListServerGroups(
            server_groups_pb2.ListServerGroupsRequest())).server_groups] == [group.id]

        for fields, expected in (({"policy": "spread"}, "policy"), ({"name": ""}, "name"),
                                 ({"policy": "affinity", "max_server_per_host": 2},
                                  "max_server_per_host"),
                                 ({"max_server_per_host": 0}, "max_server_per_host")):
            request = {"name": "g", "policy": "anti-affinity", **fields}
            assert bad_field(await failure(stub.CreateServerGroup(
                server_groups_pb2.CreateServerGroupRequest(**request)))) == expected

        await stub.DeleteServerGroup(server_groups_pb2.DeleteServerGroupRequest(id=group.id))
        assert (await failure(stub.GetServerGroup(
            server_groups_pb2.GetServerGroupRequest(id=group.id)))).code() is Code.NOT_FOUND
    run(tmp_path, db_url, scenario)


def test_quotas(tmp_path: Path, db_url: str) -> None:
    async def scenario(api: Api) -> None:
        flavor_id, image_id = await seeded(api, tmp_path)
        await api.boot(flavor_id, image_id)
        mine = await api.quotas("a").GetQuota(quotas_pb2.GetQuotaRequest())
        assert mine.project_id == "project-a"
        assert (mine.limits.instances, mine.limits.cores, mine.limits.ram) == (10, 20, 51200)
        assert (mine.usage.instances, mine.usage.cores, mine.usage.ram) == (1, 1, 512)
        stub = api.quotas()
        changed = await stub.SetQuota(quotas_pb2.SetQuotaRequest(project_id="project-a", cores=-1,
                                                                 ram=0))
        assert (changed.limits.instances, changed.limits.cores, changed.limits.ram) == (10, -1, 0)
        assert (await stub.GetQuota(quotas_pb2.GetQuotaRequest(project_id="project-a"))) == changed
        # ram 0: nothing more fits
        error = await failure(api.servers("a").CreateServer(servers_pb2.CreateServerRequest(
            name="x", flavor_id=flavor_id, image_id=image_id)))
        assert error.code() is Code.RESOURCE_EXHAUSTED and "ram" in (error.details() or "")
        for fields, expected in (({"project_id": ""}, "project_id"),
                                 ({"instances": -2}, "instances"), ({"ram": -5}, "ram")):
            request = {"project_id": "project-a", **fields}
            assert bad_field(await failure(stub.SetQuota(quotas_pb2.SetQuotaRequest(**request)))) == expected
        assert (await stub.GetQuota(quotas_pb2.GetQuotaRequest(project_id="project-a"))) == changed
    run(tmp_path, db_url, scenario)


def test_tokens(tmp_path: Path, db_url: str) -> None:
    async def scenario(api: Api) -> None:
        stub = api.token_stub()
        before = datetime.now(timezone.utc)
        reply = await stub.CreateToken(tokens_pb2.CreateTokenRequest(
            project_id="project-x", user_id="xavier", roles=[MEMBER], ttl_seconds=120))
        claims = api.signer.verify(reply.token)
        assert (claims.project_id, claims.user_id, claims.roles) == ("project-x", "xavier",
                                                                    frozenset({MEMBER}))
        expires = reply.expires_at.ToDatetime(tzinfo=timezone.utc)
        assert expires == claims.expires_at
        assert before + timedelta(seconds=118) <= expires <= before + timedelta(seconds=122)
        # the token works, as that member
        flavor_id, image_id = await seeded(api, tmp_path)
        [server] = await api.boot(flavor_id, image_id, who=reply.token)
        assert (server.project_id, server.user_id) == ("project-x", "xavier")
        default = await stub.CreateToken(tokens_pb2.CreateTokenRequest(
            project_id="p", user_id="u", roles=[ADMIN]))
        assert api.signer.verify(default.token).expires_at - api.signer.verify(
            default.token).issued_at == timedelta(seconds=3600)
        for fields, expected in (({"roles": ["root"]}, "roles"), ({"roles": []}, "roles"),
                                 ({"project_id": ""}, "project_id"), ({"user_id": "u" * 256}, "user_id"),
                                 ({"ttl_seconds": 0}, "ttl_seconds"),
                                 ({"ttl_seconds": 31 * 24 * 3600}, "ttl_seconds")):
            request: dict[str, Any] = {"project_id": "p", "user_id": "u", "roles": [MEMBER], **fields}
            assert bad_field(await failure(stub.CreateToken(tokens_pb2.CreateTokenRequest(**request)))) \
                == expected
    run(tmp_path, db_url, scenario)


def add_host(db: Database, name: str, *, up: bool = True) -> Any:
    svc = db.register_service(name, "compute", endpoint="127.0.0.1:1")
    if not up:  # its last heartbeat an hour ago
        with db.engine.begin() as conn:
            conn.execute(sa.text("UPDATE services SET last_seen_up = :t WHERE id = :i"),
                         {"t": datetime.now(timezone.utc) - timedelta(hours=1), "i": svc.id})
    return db.upsert_host(
        name, service_id=svc.id, hypervisor_type="QEMU", hypervisor_version=8_002_000,
        inventories={"VCPU": Inventory(16, allocation_ratio=4.0),
                     "MEMORY_MB": Inventory(65536, reserved=512),
                     "DISK_GB": Inventory(1000, reserved=10, allocation_ratio=1.5)},
        vcpus_used=2, free_ram_mb=60000, free_disk_mb=900_000, num_instances=1)


def test_aggregates_and_zones_follow_novas_rules(tmp_path: Path, db_url: str) -> None:
    """os-aggregates: create, rename, zone, hosts, metadata, delete; each change
    committed and every scheduler told (the fake counts the refreshes), each
    refusal changing nothing and telling nobody."""
    async def scenario(api: Api) -> None:
        for name in ("compute-1", "compute-2", "compute-3"):
            add_host(api.db, name)
        stub = aggregates_pb2_grpc.AggregatesStub(api.channel("admin"))
        told = lambda: api.scheduler.aggregate_refreshes  # noqa: E731

        rack = await stub.CreateAggregate(aggregates_pb2.CreateAggregateRequest(
            name="rack-1", availability_zone="az-1", metadata={"ssd": "true"}))
        assert (rack.name, rack.availability_zone, dict(rack.metadata), list(rack.hosts)) == (
            "rack-1", "az-1", {"availability_zone": "az-1", "ssd": "true"}, [])
        assert told() == 1
        for host in ("compute-2", "compute-1"):
            rack = await stub.AddAggregateHost(aggregates_pb2.AddAggregateHostRequest(
                id=rack.id, host=host))
        assert list(rack.hosts) == ["compute-1", "compute-2"] and told() == 3
        gpu = await stub.CreateAggregate(aggregates_pb2.CreateAggregateRequest(name="gpu"))
        assert gpu.availability_zone == "" and told() == 4

        async def refused(call: Any, code: grpc.StatusCode, why: str = "") -> None:
            before = told()
            error = await failure(call)
            assert error.code() is code, (error.code(), error.details())
            assert why in (error.details() or ""), error.details()
            assert told() == before

        await refused(stub.CreateAggregate(aggregates_pb2.CreateAggregateRequest(name="gpu")),
                      Code.ABORTED, "already exists")
        await refused(stub.AddAggregateHost(aggregates_pb2.AddAggregateHostRequest(
            id=rack.id, host="compute-1")), Code.ABORTED)
        await refused(stub.AddAggregateHost(aggregates_pb2.AddAggregateHostRequest(
            id=rack.id, host="compute-9")), Code.NOT_FOUND)
        await refused(stub.RemoveAggregateHost(aggregates_pb2.RemoveAggregateHostRequest(
            id=rack.id, host="compute-3")), Code.NOT_FOUND)
        await refused(stub.GetAggregate(aggregates_pb2.GetAggregateRequest(id="nope")),
                      Code.NOT_FOUND)
        await refused(stub.DeleteAggregate(aggregates_pb2.DeleteAggregateRequest(id=rack.id)),
                      Code.FAILED_PRECONDITION, "not empty")
        # a host is in one zone at most
        other = await stub.CreateAggregate(aggregates_pb2.CreateAggregateRequest(
            name="rack-2", availability_zone="az-2"))
        await refused(stub.AddAggregateHost(aggregates_pb2.AddAggregateHostRequest(
            id=other.id, host="compute-1")), Code.FAILED_PRECONDITION, "already in availability zone az-1")
        await stub.AddAggregateHost(aggregates_pb2.AddAggregateHostRequest(id=gpu.id, host="compute-1"))
        await refused(stub.SetAggregateMetadata(aggregates_pb2.SetAggregateMetadataRequest(
            id=gpu.id, metadata={"availability_zone": "az-2"})), Code.FAILED_PRECONDITION,
            "one zone at most")
        # a host with servers keeps its zone
        flavor_id, image_id = await seeded(api, tmp_path)
        [server] = await api.boot(flavor_id, image_id)
        api.db.update_instance(server.id, host="compute-2", node="compute-2")
        for call in (stub.UpdateAggregate(aggregates_pb2.UpdateAggregateRequest(
                         id=rack.id, availability_zone="az-9")),
                     stub.RemoveAggregateHost(aggregates_pb2.RemoveAggregateHostRequest(
                         id=rack.id, host="compute-2")),
                     stub.SetAggregateMetadata(aggregates_pb2.SetAggregateMetadataRequest(
                         id=rack.id, unset=["availability_zone"]))):
            await refused(call, Code.FAILED_PRECONDITION, "compute-2 has 1 server(s)")
        api.db.update_instance(server.id, host="compute-3", node="compute-3")
        await refused(stub.AddAggregateHost(aggregates_pb2.AddAggregateHostRequest(
            id=other.id, host="compute-3")), Code.FAILED_PRECONDITION,
            "cannot change from 'nova' to 'az-2'")
        api.db.delete_instance(server.id)

        # bad input names the field
        for call, field_name in (
                (stub.CreateAggregate(aggregates_pb2.CreateAggregateRequest(name="")), "name"),
                (stub.CreateAggregate(aggregates_pb2.CreateAggregateRequest(
                    name="x", availability_zone="a:b")), "availability_zone"),
                (stub.CreateAggregate(aggregates_pb2.CreateAggregateRequest(
                    name="x", metadata={"bad/key": "1"})), "metadata"),
                (stub.UpdateAggregate(aggregates_pb2.UpdateAggregateRequest(id=rack.id)), "name"),
                (stub.SetAggregateMetadata(aggregates_pb2.SetAggregateMetadataRequest(
                    id=rack.id, metadata={"k": "v"}, unset=["k"])), "unset"),
                (stub.SetAggregateMetadata(aggregates_pb2.SetAggregateMetadataRequest(
                    id=rack.id, metadata={"availability_zone": ""})), "metadata.availability_zone"),
                (stub.SetAggregateMetadata(aggregates_pb2.SetAggregateMetadataRequest(id=rack.id)),
                 "metadata")):
            before = told()
            assert bad_field(await failure(call)) == field_name
            assert told() == before
        error = await failure(aggregates_pb2_grpc.AggregatesStub(api.channel("a")).ListAggregates(
            aggregates_pb2.ListAggregatesRequest()))
        assert error.code() is Code.PERMISSION_DENIED

        # rename and move a zone whose hosts have no servers; metadata set and unset
        rack = await stub.UpdateAggregate(aggregates_pb2.UpdateAggregateRequest(
            id=rack.id, name="rack-one", availability_zone="az-east"))
        assert (rack.name, rack.availability_zone) == ("rack-one", "az-east")
        rack = await stub.SetAggregateMetadata(aggregates_pb2.SetAggregateMetadataRequest(
            id=rack.id, metadata={"max_instances_per_host": "4"}, unset=["ssd", "never-set"]))
        assert dict(rack.metadata) == {"availability_zone": "az-east", "max_instances_per_host": "4"}
        assert (await stub.GetAggregate(aggregates_pb2.GetAggregateRequest(id=rack.id))) == rack
        listed = await stub.ListAggregates(aggregates_pb2.ListAggregatesRequest())
        assert [a.name for a in listed.aggregates] == ["gpu", "rack-2", "rack-one"]

        # the zones: those with hosts; hosts for admins only
        api.db.disable_service("compute-3", "compute")
        zones = aggregates_pb2_grpc.AvailabilityZonesStub(api.channel("admin"))
        reply = await zones.ListAvailabilityZones(aggregates_pb2.ListAvailabilityZonesRequest())
        assert [(z.name, z.available, [(h.name, h.up, h.enabled) for h in z.hosts])
                for z in reply.availability_zones] == [
            ("az-east", True, [("compute-1", True, True), ("compute-2", True, True)]),
            ("nova", False, [("compute-3", True, False)])]
        member = aggregates_pb2_grpc.AvailabilityZonesStub(api.channel("a"))
        reply = await member.ListAvailabilityZones(aggregates_pb2.ListAvailabilityZonesRequest())
        assert [(z.name, z.available, len(z.hosts)) for z in reply.availability_zones] == [
            ("az-east", True, 0), ("nova", False, 0)]

        before = told()
        for host in ("compute-1", "compute-2"):
            await stub.RemoveAggregateHost(aggregates_pb2.RemoveAggregateHostRequest(id=rack.id, host=host))
        await stub.DeleteAggregate(aggregates_pb2.DeleteAggregateRequest(id=rack.id))
        assert told() == before + 3
        assert [a.name for a in api.db.list_aggregates()] == ["gpu", "rack-2"]
    run(tmp_path, db_url, scenario)


def test_host_traits_an_admin_sets_beside_the_cpu_ones(tmp_path: Path, db_url: str) -> None:
    async def scenario(api: Api) -> None:
        host = add_host(api.db, "compute-1")
        api.db.set_reported_traits(host.uuid, ["HW_CPU_X86_SSE2"])
        stub = api.hosts()
        added = await stub.AddHostTrait(hosts_pb2.HostTraitRequest(name="compute-1", trait="CUSTOM_GPU"))
        assert list(added.traits) == ["CUSTOM_GPU", "HW_CPU_X86_SSE2"]
        await stub.AddHostTrait(hosts_pb2.HostTraitRequest(name="compute-1", trait="STORAGE_DISK_SSD"))
        [listed] = (await stub.ListHosts(hosts_pb2.ListHostsRequest())).hosts
        assert list(listed.traits) == ["CUSTOM_GPU", "HW_CPU_X86_SSE2", "STORAGE_DISK_SSD"]
        assert api.scheduler.changed == ["compute-1", "compute-1"]
        for trait in ("custom_gpu", "HW_CPU_X86_AVX2", ""):
            assert bad_field(await failure(stub.AddHostTrait(hosts_pb2.HostTraitRequest(
                name="compute-1", trait=trait)))) == "trait"
        for call, code in (
                (stub.AddHostTrait(hosts_pb2.HostTraitRequest(name="compute-1", trait="CUSTOM_GPU")),
                 Code.ABORTED),
                (stub.AddHostTrait(hosts_pb2.HostTraitRequest(name="compute-9", trait="CUSTOM_GPU")),
                 Code.NOT_FOUND),
                (stub.RemoveHostTrait(hosts_pb2.HostTraitRequest(name="compute-1", trait="CUSTOM_NO")),
                 Code.NOT_FOUND),
                (api.hosts("a").AddHostTrait(hosts_pb2.HostTraitRequest(
                    name="compute-1", trait="CUSTOM_MINE")), Code.PERMISSION_DENIED)):
            assert (await failure(call)).code() is code
        assert api.scheduler.changed == ["compute-1", "compute-1"]  # refusals tell nobody
        removed = await stub.RemoveHostTrait(hosts_pb2.HostTraitRequest(name="compute-1", trait="CUSTOM_GPU"))
        assert list(removed.traits) == ["HW_CPU_X86_SSE2", "STORAGE_DISK_SSD"]
        assert api.scheduler.changed == ["compute-1"] * 3
    run(tmp_path, db_url, scenario)


def test_a_group_the_scheduler_cannot_enforce_is_refused(tmp_path: Path, db_url: str) -> None:
    """Nova's UnsupportedPolicyException, said at once: anti-affinity without
    ServerGroupAntiAffinityFilter, soft-affinity without its weigher."""
    async def scenario(api: Api) -> None:
        flavor_id, image_id = await seeded(api, tmp_path)
        groups = api.groups("a")
        for policy, why in (("anti-affinity", "ServerGroupAntiAffinityFilter is not in the "
                                              "scheduler's enabled_filters"),
                            ("soft-affinity", "ServerGroupSoftAffinityWeigher is not in the "
                                              "scheduler's weight_classes")):
            error = await failure(groups.CreateServerGroup(server_groups_pb2.CreateServerGroupRequest(
                name="g", policy=policy)))
            assert error.code() is Code.FAILED_PRECONDITION
            assert (error.details() or "").startswith(f"policy: server group policy {policy!r} "
                                                      "is not supported here: " + why), error.details()
        # a group made before the scheduler's settings changed: its servers are refused
        old = api.db.create_server_group(name="old", project_id="project-a", user_id="alice",
                                         policy="anti-affinity")
        error = await failure(api.boot(flavor_id, image_id,
                                       scheduler_hints=servers_pb2.SchedulerHints(group=old.id)))
        assert error.code() is Code.FAILED_PRECONDITION
        assert "scheduler_hints.group: server group policy 'anti-affinity'" in (error.details() or "")
        nothing_written(api)
        ok = await groups.CreateServerGroup(server_groups_pb2.CreateServerGroupRequest(
            name="together", policy="affinity"))
        await api.boot(flavor_id, image_id, scheduler_hints=servers_pb2.SchedulerHints(group=ok.id))
    run(tmp_path, db_url, scenario, settings_overrides={
        "scheduler.enabled_filters": ["ComputeFilter", "ServerGroupAffinityFilter"],
        "scheduler.weight_classes": ["RAMWeigher", "ServerGroupSoftAntiAffinityWeigher"]})


def test_hosts(tmp_path: Path, db_url: str) -> None:
    async def scenario(api: Api) -> None:
        flavor_id, image_id = await seeded(api, tmp_path)
        one = add_host(api.db, "compute-1")
        add_host(api.db, "compute-2", up=False)
        [server] = await api.boot(flavor_id, image_id)
        api.db.claim_allocations(server.id, {one.uuid: {"VCPU": 2, "MEMORY_MB": 2048, "DISK_GB": 20}})
        aggregate = api.db.create_aggregate("rack-2", metadata={"availability_zone": "az-2"})
        api.db.add_aggregate_host(aggregate.id, "compute-2")

        stub = api.hosts()
        reply = await stub.ListHosts(hosts_pb2.ListHostsRequest())
        first, second = reply.hosts
        assert (first.name, first.uuid, first.state, first.status, first.availability_zone) == (
            "compute-1", one.uuid, hosts_pb2.SERVICE_STATE_UP, hosts_pb2.SERVICE_STATUS_ENABLED, "nova")
        assert first.HasField("last_seen_up")
        assert [(r.resource_class, r.total, r.reserved, r.allocation_ratio, r.capacity, r.used)
                for r in first.resources] == [
            ("DISK_GB", 1000, 10, 1.5, 1485, 20), ("MEMORY_MB", 65536, 512, 1.0, 65024, 2048),
            ("VCPU", 16, 0, 4.0, 64, 2)]
        assert (first.compute.vcpus_used, first.compute.free_ram_mb, first.compute.free_disk_mb,
                first.compute.num_instances) == (2, 60000, 900_000, 1)
        assert (first.hypervisor_type, first.hypervisor_version) == ("QEMU", 8_002_000)
        assert (second.name, second.state, second.availability_zone) == (
            "compute-2", hosts_pb2.SERVICE_STATE_DOWN, "az-2")
        assert all(r.used == 0 for r in second.resources)

        page = await stub.ListHosts(hosts_pb2.ListHostsRequest(page_size=1))
        assert [h.name for h in page.hosts] == ["compute-1"]
        page = await stub.ListHosts(hosts_pb2.ListHostsRequest(page_size=1,
                                                               page_token=page.next_page_token))
        assert [h.name for h in page.hosts] == ["compute-2"] and not page.next_page_token

        disabled = await stub.DisableHost(hosts_pb2.DisableHostRequest(name="compute-1",
                                                                       reason="maintenance"))
        assert (disabled.status, disabled.disabled_reason) == (hosts_pb2.SERVICE_STATUS_DISABLED,
                                                               "maintenance")
        assert api.db.get_service("compute-1", "compute").disabled
        assert api.scheduler.changed == ["compute-1"]
        enabled = await stub.EnableHost(hosts_pb2.EnableHostRequest(name="compute-1"))
        assert (enabled.status, enabled.disabled_reason) == (hosts_pb2.SERVICE_STATUS_ENABLED, "")
        assert api.scheduler.changed == ["compute-1", "compute-1"]

        error = await failure(stub.DisableHost(hosts_pb2.DisableHostRequest(name="compute-9")))
        assert error.code() is Code.NOT_FOUND
        assert bad_field(await failure(stub.DisableHost(hosts_pb2.DisableHostRequest(
            name="compute-1", reason="x" * 256)))) == "reason"
        assert api.scheduler.changed == ["compute-1", "compute-1"]
        assert not api.db.get_service("compute-1", "compute").disabled
    run(tmp_path, db_url, scenario)


# --- lifecycle actions ---------------------------------------------------------------------

ACTION_RPCS: dict[str, Callable[[servers_pb2_grpc.ServersStub, str], Awaitable[Any]]] = {
    "reboot_soft": lambda s, i: s.RebootServer(servers_pb2.RebootServerRequest(
        id=i, type=servers_pb2.REBOOT_TYPE_SOFT)),
    "reboot_hard": lambda s, i: s.RebootServer(servers_pb2.RebootServerRequest(
        id=i, type=servers_pb2.REBOOT_TYPE_HARD)),
    "stop": lambda s, i: s.StopServer(servers_pb2.StopServerRequest(id=i)),
    "start": lambda s, i: s.StartServer(servers_pb2.StartServerRequest(id=i)),
    "pause": lambda s, i: s.PauseServer(servers_pb2.PauseServerRequest(id=i)),
    "unpause": lambda s, i: s.UnpauseServer(servers_pb2.UnpauseServerRequest(id=i)),
    "suspend": lambda s, i: s.SuspendServer(servers_pb2.SuspendServerRequest(id=i)),
    "resume": lambda s, i: s.ResumeServer(servers_pb2.ResumeServerRequest(id=i)),
    "rescue": lambda s, i: s.RescueServer(servers_pb2.RescueServerRequest(id=i)),
    "unrescue": lambda s, i: s.UnrescueServer(servers_pb2.UnrescueServerRequest(id=i)),
}
# Nova's task_states.ALLOW_REBOOT (those novalite has): a hard reboot may start
# while one of these tasks is in flight.
ALLOW_REBOOT = {"rebooting", "rebooting_hard", "resuming", "unpausing", "pausing", "suspending"}
# Nova's @check_instance_state, spelled out (not read from the code under test).
ALLOWED = {
    "reboot_soft": {"active"},
    "reboot_hard": {"active", "stopped", "paused", "suspended", "error"},
    "stop": {"active", "error"},
    "start": {"stopped"},
    "pause": {"active"},
    "unpause": {"paused"},
    "suspend": {"active"},
    "resume": {"suspended"},
    "rescue": {"active", "stopped", "error"},
    "unrescue": {"rescued"},
}


def test_lifecycle_actions_only_in_novas_allowed_states(tmp_path: Path, db_url: str) -> None:
    async def scenario(api: Api) -> None:
        assert set(ACTIONS) == set(ACTION_RPCS) == set(ALLOWED)
        flavor_id, image_id = await seeded(api, tmp_path)
        [server] = await api.boot(flavor_id, image_id)
        stub = api.servers("a")
        expected_log = ["create"]
        for vm_state in ("building", "active", "stopped", "paused", "suspended", "error",
                         "rescued"):
            for action, call in ACTION_RPCS.items():
                api.db.update_instance(server.id, vm_state=vm_state, task_state=None)
                before = api.db.get_instance(server.id)
                calls = list(api.conductor.actions)
                if vm_state in ALLOWED[action]:
                    reply = await call(stub, server.id)
                    task = ACTIONS[action][1]
                    assert reply.task_state == states_pb2.TaskState.Value(
                        f"TASK_STATE_{task.upper()}"), (vm_state, action)
                    assert api.db.get_instance(server.id).task_state == task
                    [(sid, sent, request_id)] = api.conductor.actions[len(calls):]
                    assert (sid, sent) == (server.id, action) and request_id.startswith("req-")
                    expected_log.insert(0, ACTIONS[action][2])
                    # another action while this one runs is refused, except a hard
                    # reboot taking over from the tasks Nova allows (ALLOW_REBOOT)
                    error = await failure(ACTION_RPCS["start" if vm_state == "stopped" else "stop"](
                        stub, server.id))
                    assert error.code() is Code.FAILED_PRECONDITION
                    if task in ALLOW_REBOOT and vm_state in ALLOWED["reboot_hard"]:
                        reply = await ACTION_RPCS["reboot_hard"](stub, server.id)
                        assert reply.task_state == states_pb2.TASK_STATE_REBOOTING_HARD
                        expected_log.insert(0, "reboot")
                    else:
                        error = await failure(ACTION_RPCS["reboot_hard"](stub, server.id))
                        assert error.code() is Code.FAILED_PRECONDITION, (vm_state, action)
                else:
                    error = await failure(call(stub, server.id))
                    assert error.code() is Code.FAILED_PRECONDITION, (vm_state, action)
                    assert vm_state in (error.details() or "")
                    assert api.db.get_instance(server.id) == before, (vm_state, action)
                    assert api.conductor.actions == calls
        log = await stub.ListServerActions(servers_pb2.ListServerActionsRequest(id=server.id))
        assert [a.action for a in log.actions] == expected_log
        assert all(a.user_id == "alice" and a.project_id == "project-a" for a in log.actions)
        assert log.actions[0].request_id == api.conductor.actions[-1][2]

        api.db.update_instance(server.id, vm_state=VmState.ACTIVE, task_state=None)
        error = await failure(stub.RebootServer(servers_pb2.RebootServerRequest(id=server.id)))
        assert bad_field(error) == "type"
        # the conductor cannot take it: the task is rolled back, the action closed
        api.conductor.fail = errors.Unavailable("conductor unreachable")
        error = await failure(stub.StopServer(servers_pb2.StopServerRequest(id=server.id)))
        assert error.code() is Code.UNAVAILABLE
        assert api.db.get_instance(server.id).task_state is None
        newest = api.db.list_instance_actions(server.id)[-1]
        assert (newest.action, newest.message) == ("stop", "Error") and newest.finish_time
    run(tmp_path, db_url, scenario)


def test_action_log_shows_tracebacks_to_admins_only(tmp_path: Path, db_url: str) -> None:
    async def scenario(api: Api) -> None:
        flavor_id, image_id = await seeded(api, tmp_path)
        [server] = await api.boot(flavor_id, image_id)
        [create] = api.db.list_instance_actions(server.id)
        event = api.db.start_action_event(create.id, "compute_build_and_run_instance")
        api.db.finish_action_event(event.id, result="Error", traceback="Traceback: boom")
        mine = await api.servers("a").ListServerActions(servers_pb2.ListServerActionsRequest(id=server.id))
        [entry] = mine.actions
        assert [(e.event, e.result, e.traceback) for e in entry.events] == [
            ("compute_build_and_run_instance", "Error", "")]
        admin = await api.servers("admin").ListServerActions(
            servers_pb2.ListServerActionsRequest(id=server.id))
        assert admin.actions[0].events[0].traceback == "Traceback: boom"
        # a deleted server's log stays readable by admins
        api.db.delete_instance(server.id)
        assert (await failure(api.servers("a").ListServerActions(
            servers_pb2.ListServerActionsRequest(id=server.id)))).code() is Code.NOT_FOUND
        admin = await api.servers("admin").ListServerActions(
            servers_pb2.ListServerActionsRequest(id=server.id))
        assert [a.action for a in admin.actions] == ["create"]
    run(tmp_path, db_url, scenario)


# --- watching ----------------------------------------------------------------------------

async def next_event(stream: Any, timeout: float = 10.0) -> servers_pb2.ServerEvent:
    event: servers_pb2.ServerEvent = await asyncio.wait_for(anext(aiter(stream)), timeout)
    return event


def test_watch_emits_the_current_state_then_each_change(tmp_path: Path, db_url: str) -> None:
    async def scenario(api: Api) -> None:
        flavor_id, image_id = await seeded(api, tmp_path)
        [server] = await api.boot(flavor_id, image_id)
        stream = api.servers("a").WatchServers(servers_pb2.WatchServersRequest(ids=[server.id]))
        first = await next_event(stream)
        assert (first.server.id, first.server.status) == (server.id, "BUILD")
        assert first.HasField("time")

        api.db.update_instance(server.id, vm_state=VmState.ACTIVE, task_state=None,
                               power_state=PowerState.RUNNING, host="compute-1")
        active = await next_event(stream)
        assert (active.server.status, active.server.power_state, active.server.host) == (
            "ACTIVE", states_pb2.POWER_STATE_RUNNING, "")
        assert active.time == active.server.updated_at

        await api.servers("a").StopServer(servers_pb2.StopServerRequest(id=server.id))
        stopping = await next_event(stream)
        assert (stopping.server.status, stopping.server.task_state) == (
            "ACTIVE", states_pb2.TASK_STATE_POWERING_OFF)

        api.db.delete_instance(server.id)
        gone = await next_event(stream)
        assert (gone.server.status, gone.server.vm_state) == ("DELETED", states_pb2.VM_STATE_DELETED)
        stream.cancel()
        deadline = time.monotonic() + 10
        while api.running.manager._feed._task is not None:  # no watcher, no polling
            assert time.monotonic() < deadline
            await asyncio.sleep(0.02)
    run(tmp_path, db_url, scenario)


def test_list_is_newest_first(tmp_path: Path, db_url: str) -> None:
    async def scenario(api: Api) -> None:
        flavor_id, image_id = await seeded(api, tmp_path)
        booted = [(await api.boot(flavor_id, image_id, name=f"vm-{i}"))[0].id for i in range(5)]
        seen: list[str] = []
        token = ""
        while True:
            page = await api.servers("a").ListServers(servers_pb2.ListServersRequest(
                page_size=2, page_token=token))
            seen += [s.id for s in page.servers]
            token = page.next_page_token
            if not token:
                break
        assert seen == booted[::-1]
    run(tmp_path, db_url, scenario)


def test_watching_servers_already_deleted_gives_their_deleted_state(tmp_path: Path,
                                                                    db_url: str) -> None:
    """What `server delete A B --wait` does: the deletes may be over before the watch
    starts; each deleted server's one event is DELETED. Another project's deleted
    server stays NOT_FOUND."""
    async def scenario(api: Api) -> None:
        flavor_id, image_id = await seeded(api, tmp_path)
        mine = [(await api.boot(flavor_id, image_id, name=f"vm-{i}"))[0] for i in range(2)]
        [theirs] = await api.boot(flavor_id, image_id, who="b")
        for server in (*mine, theirs):
            api.db.delete_instance(server.id)
        stream = api.servers("a").WatchServers(servers_pb2.WatchServersRequest(
            ids=[s.id for s in mine]))
        events = [await next_event(stream), await next_event(stream)]
        stream.cancel()
        assert {e.server.id: e.server.status for e in events} == {s.id: "DELETED" for s in mine}
        error = await failure(next_event(api.servers("a").WatchServers(
            servers_pb2.WatchServersRequest(ids=[mine[0].id, theirs.id]))))
        assert error.code() is Code.NOT_FOUND
    run(tmp_path, db_url, scenario)


def test_watch_everything_visible(tmp_path: Path, db_url: str) -> None:
    async def scenario(api: Api) -> None:
        flavor_id, image_id = await seeded(api, tmp_path)
        [a1] = await api.boot(flavor_id, image_id, who="a", name="a1")
        [b1] = await api.boot(flavor_id, image_id, who="b", name="b1")
        admin = api.servers("admin").WatchServers(servers_pb2.WatchServersRequest())
        member = api.servers("b").WatchServers(servers_pb2.WatchServersRequest())
        initial = {(await next_event(admin)).server.id for _ in range(2)}
        assert initial == {a1.id, b1.id}
        assert (await next_event(member)).server.id == b1.id

        # servers created after the watch began are included; others' are not
        [a2] = await api.boot(flavor_id, image_id, who="a", name="a2")
        [b2] = await api.boot(flavor_id, image_id, who="b", name="b2")
        admin_seen = {(await next_event(admin)).server.id for _ in range(2)}
        assert admin_seen == {a2.id, b2.id}
        event = await next_event(member)
        assert event.server.id == b2.id
        api.db.update_instance(b1.id, vm_state=VmState.ERROR, task_state=None, host="compute-3")
        api.db.update_instance(a1.id, vm_state=VmState.ERROR, task_state=None, host="compute-3")
        event = await next_event(member)
        assert (event.server.id, event.server.status, event.server.host) == (b1.id, "ERROR", "")
        admin_seen = {}
        for _ in range(2):
            event = await next_event(admin)
            admin_seen[event.server.id] = (event.server.status, event.server.host)
        assert admin_seen == {a1.id: ("ERROR", "compute-3"), b1.id: ("ERROR", "compute-3")}
        admin.cancel()
        member.cancel()

        # watching an unknown server, or too many, is refused at once
        stub = api.servers("a")
        error = await failure(next_event(stub.WatchServers(servers_pb2.WatchServersRequest(ids=[UUID0]))))
        assert error.code() is Code.NOT_FOUND
        error = await failure(next_event(stub.WatchServers(
            servers_pb2.WatchServersRequest(ids=[UUID0] * 1001))))
        assert bad_field(error) == "ids"
    run(tmp_path, db_url, scenario)


def test_a_slow_watcher_gets_the_latest_state(tmp_path: Path, db_url: str) -> None:
    async def scenario(api: Api) -> None:
        flavor_id, image_id = await seeded(api, tmp_path)
        [server] = await api.boot(flavor_id, image_id)
        stream = api.servers("a").WatchServers(servers_pb2.WatchServersRequest(ids=[server.id]))
        assert (await next_event(stream)).server.status == "BUILD"
        for task in (TaskState.NETWORKING, TaskState.BLOCK_DEVICE_MAPPING, TaskState.SPAWNING):
            api.db.update_instance(server.id, task_state=task)
        api.db.update_instance(server.id, vm_state=VmState.ACTIVE, task_state=None)
        statuses = []
        while not statuses or statuses[-1] != "ACTIVE":
            statuses.append((await next_event(stream)).server.status)
        assert set(statuses[:-1]) <= {"BUILD"}
        stream.cancel()
    run(tmp_path, db_url, scenario)


def test_watch_streams_end_with_unavailable_when_the_service_stops(tmp_path: Path,
                                                                   db_url: str) -> None:
    async def scenario(api: Api) -> None:
        stream = api.servers("a").WatchServers(servers_pb2.WatchServersRequest())
        reader = asyncio.ensure_future(next_event(stream))
        await asyncio.sleep(0.2)
        await api.running.stop(5.0)
        error = await failure(reader)
        assert error.code() is Code.UNAVAILABLE
    run(tmp_path, db_url, scenario)


# --- the service -------------------------------------------------------------------------

def test_service_with_real_clients_and_no_conductor(tmp_path: Path, db_url: str) -> None:
    """Started as `novalite api` starts it, with nothing on the conductor's port: a
    create is UNAVAILABLE and leaves nothing behind; reflection lists every service."""
    async def main() -> None:
        free = free_port()
        settings = make_settings(tmp_path, db_url, listen={
            "api": "127.0.0.1:0", "conductor": f"127.0.0.1:{free}",
            "scheduler": f"127.0.0.1:{free}"}, metrics_ports={"api": -1})
        running = await service.start(settings)
        signer = TokenSigner(SECRET)
        db = Database(db_url)
        try:
            admin = channel(running.address, signer.issue("admin-project", "root", [ADMIN]))
            flavor = await flavors_pb2_grpc.FlavorsStub(admin).CreateFlavor(
                flavors_pb2.CreateFlavorRequest(name="m1", vcpus=1, memory_mb=64))
            raw = tmp_path / "disk.raw"
            raw.write_bytes(b"\0" * 4096)
            image = await images_pb2_grpc.ImagesStub(admin).CreateImage(
                images_pb2.CreateImageRequest(name="i", path=str(raw)))
            error = await failure(servers_pb2_grpc.ServersStub(admin).CreateServer(
                servers_pb2.CreateServerRequest(name="x", flavor_id=flavor.id, image_id=image.id)))
            assert error.code() is Code.UNAVAILABLE
            assert all(i.deleted_at for i in db.list_instances(include_deleted=True).instances)
            assert db.get_quota("admin-project").usage["instances"] == 0
            error = await failure(hosts_pb2_grpc.HostsStub(admin).DisableHost(
                hosts_pb2.DisableHostRequest(name="nowhere")))
            assert error.code() is Code.NOT_FOUND

            stub = reflection_pb2_grpc.ServerReflectionStub(admin)
            replies = [r async for r in stub.ServerReflectionInfo(
                iter([reflection_pb2.ServerReflectionRequest(list_services="")]))]
            names = {s.name for s in replies[0].list_services_response.service}
            assert {f"novalite.compute.v1.{n}" for n in (
                "Servers", "Flavors", "Images", "ServerGroups", "Hosts", "Quotas", "Tokens")} <= names
            await admin.close()
        finally:
            await running.stop(1.0)
            db.close()
        assert running.closers == []
    asyncio.run(main())


def test_main_serves_until_sigterm(tmp_path: Path, db_url: str) -> None:
    port = free_port()
    env = {**os.environ, "PYTHONPATH": str(ROOT / "python"), "NOVALITE_SECRET": SECRET.decode(),
           "NOVALITE_DATA_DIR": str(tmp_path), "NOVALITE_DATABASE_URL": db_url,
           "NOVALITE_LISTEN_API": f"127.0.0.1:{port}", "NOVALITE_METRICS_PORTS_API": "-1",
           "NOVALITE_REST_LISTEN": "127.0.0.1:0"}
    code = "from novalite.api.service import main; from novalite.settings import load_settings; " \
           "main(load_settings())"
    proc = subprocess.Popen([sys.executable, "-c", code], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                with grpc.insecure_channel(f"127.0.0.1:{port}") as ch:
                    reply = health_pb2_grpc.HealthStub(ch).Check(health_pb2.HealthCheckRequest(),
                                                                 timeout=1)
                if reply.status == health_pb2.HealthCheckResponse.SERVING:
                    break
            except grpc.RpcError:
                pass
            assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()
            time.sleep(0.1)
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=30)
        assert proc.returncode == 0, err
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
