"""What the tests of moves share: a LocalCloud's API with the moves' calls, and
the checks a user (or an operator) would make after a move: where the server's
allocations are, who holds the old host's, how many guests of it run and where."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Iterable, Iterator, Mapping

import grpc
import pytest

from novalite.cloud import LocalCloud
from novalite.db.database import Database
from novalite.objects.records import Migration
from novalite.rpc.novalite.compute.v1 import servers_pb2, states_pb2
from novalite.virt import LibvirtDriver, node_uri

from helpers import Api, cloud_database

TASK_NONE = states_pb2.TASK_STATE_NONE
REAL_URI = "qemu:///system"


class MovesApi(Api):
    """The test helpers' stubs, plus waits for a move to settle."""

    def get(self, sid: str) -> Any:
        return self.servers.GetServer(servers_pb2.GetServerRequest(id=sid))

    def settle(self, sid: str, timeout: float = 60.0) -> Any:
        """The server once no task is in flight (and it is not building)."""
        return self.until(sid, lambda s: s.task_state == TASK_NONE and s.status != "BUILD",
                          "settled", timeout)

    def gone(self, sid: str, timeout: float = 60.0) -> None:
        """Return once the server is deleted."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                self.get(sid)
            except grpc.RpcError as e:
                if e.code() == grpc.StatusCode.NOT_FOUND:
                    return
                raise
            time.sleep(0.05)
        raise AssertionError(f"server {sid} not deleted within {timeout:.0f} s")

    def until(self, sid: str, check: Any, what: str, timeout: float = 60.0) -> Any:
        """The server once ``check(server)`` holds (an API restarting is waited for)."""
        deadline = time.monotonic() + timeout
        server = None
        while time.monotonic() < deadline:
            try:
                server = self.get(sid)
            except grpc.RpcError as e:
                if e.code() != grpc.StatusCode.UNAVAILABLE:
                    raise
            else:
                if check(server):
                    return server
            time.sleep(0.02)
        raise AssertionError(f"server {sid} not {what} within {timeout:.0f} s: {server}")

    def boot(self, flavor_id: str, name: str = "s", *, zone: str | None = None,
             group: str | None = None, image_id: str = "") -> Any:
        req = servers_pb2.CreateServerRequest(name=name, flavor_id=flavor_id, image_id=image_id)
        if zone is not None:
            req.availability_zone = zone
        if group is not None:
            req.scheduler_hints.group = group
        [server] = self.servers.CreateServer(req).servers
        server = self.settle(server.id)
        assert server.status == "ACTIVE", server
        return server

    def actions(self, sid: str) -> list[tuple[str, str, list[tuple[str, str]]]]:
        """The action log, newest first: (action, message, [(event, result)])."""
        reply = self.servers.ListServerActions(servers_pb2.ListServerActionsRequest(id=sid))
        return [(a.action, a.message, [(e.event, e.result) for e in a.events])
                for a in reply.actions]

    def migrations(self, sid: str) -> list[Any]:
        return list(self.servers.ListMigrations(
            servers_pb2.ListMigrationsRequest(server_id=sid)).migrations)


class Ledger:
    """The database's view of a cloud's allocations, hosts and guests, read the way
    an operator would check them."""

    def __init__(self, cloud: LocalCloud, real_hosts: Mapping[str, Path] | None = None) -> None:
        """``real_hosts``: host name -> instances directory of the agents on
        qemu:///system (their guests are found there, the simulated hosts' in
        their node files)."""
        self.cloud = cloud
        self.real_hosts = dict(real_hosts or {})
        self.db: Database = cloud_database(cloud)

    def close(self) -> None:
        self.db.close()

    def held(self, consumer: str) -> dict[str, dict[str, int]]:
        """{host name: {resource class: amount}} the consumer holds."""
        names = {h.uuid: h.name for h in self.db.list_hosts()}
        return {names[p]: amounts for p, amounts in self.db.get_allocations(consumer).items()}

    def usage(self) -> dict[str, dict[str, int]]:
        return {h.name: {rc: n for rc, n in h.usage.items() if n} for h in self.db.list_hosts()}

    def open_migrations(self, sid: str) -> list[Migration]:
        return self.db.list_migrations(instance_id=sid, open_only=True)

    def guests(self, sid: str, hosts: Iterable[str] | None = None) -> dict[str, int]:
        """{host: power state} of every host running (or holding) a guest of the
        server: the simulated ones' from their node files as the agents keep them,
        the real ones' from libvirtd (the domains each agent owns)."""
        drivers = {node.stem: node_uri(node)
                   for node in sorted((self.cloud.data_dir / "nodes").glob("*.xml"))}
        found = {}
        for host in sorted(set(drivers) | set(self.real_hosts)):
            if hosts is not None and host not in hosts:
                continue
            driver = (LibvirtDriver(REAL_URI, instances_path=self.real_hosts[host])
                      if host in self.real_hosts else LibvirtDriver(drivers[host]))
            with driver:
                power = driver.list_instances().get(sid)
            if power is not None:
                found[host] = int(power)
        return found

    def assert_settled(self, sid: str, amounts: dict[str, int] | None = None) -> None:
        """A server no move holds any more: its allocation on its host only (none
        when it has no host), no migration holding anything, one guest, there."""
        inst = self.db.get_instance(sid)
        held = self.held(sid)
        if inst.host is None:
            assert held == {}, held
            assert self.guests(sid) == {}
        else:
            assert list(held) == [inst.host], (inst.host, held)
            if amounts is not None:
                assert held[inst.host] == amounts
            assert list(self.guests(sid)) == [inst.host]
        for m in self.db.list_migrations(instance_id=sid):
            assert self.held(m.id) == {}, m
        assert self.open_migrations(sid) == []


@pytest.fixture
def ledger(cloud: LocalCloud) -> Iterator[Ledger]:
    """The module's cloud's ledger (its ``cloud`` fixture's)."""
    ledger = Ledger(cloud)
    yield ledger
    ledger.close()
