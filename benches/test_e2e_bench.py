"""End to end through the real services (API, conductor, scheduler, one compute
agent serving 100 simulated hosts; separate processes, gRPC over loopback, SQLite):
servers per second from Create to ACTIVE, with `--count` batches and with single
creates from concurrent clients, and the Create call's latency.

Targets: >= 200 servers/s to ACTIVE, Create p99 <= 50 ms. Figures: benches/RESULTS.md.

Each round's rate is measured from the first Create call to the commit time of the
last server's ACTIVE state (the ServerEvent's time, so the watch's polling interval
does not count); the round's wall time, watch included, is what pytest-benchmark
shows. The servers are deleted (and their deletion awaited) between rounds.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import grpc
import pytest

from novalite.cloud import LocalCloud
from novalite.rpc.novalite.compute.v1 import (
    flavors_pb2,
    flavors_pb2_grpc,
    quotas_pb2,
    quotas_pb2_grpc,
    servers_pb2,
    servers_pb2_grpc,
)
from novalite.services.client import sync_channel

HOSTS = 100
SERVERS = 200  # per round
CLIENTS = 8  # concurrent callers for single creates
ROUNDS = 3


class Api:
    def __init__(self, cloud: LocalCloud) -> None:
        self.channel = sync_channel(cloud.endpoint("api"), cloud.admin_token())
        self.servers = servers_pb2_grpc.ServersStub(self.channel)
        self.flavors = flavors_pb2_grpc.FlavorsStub(self.channel)
        self.quotas = quotas_pb2_grpc.QuotasStub(self.channel)

    def wait(self, ids: list[str], until: Any, timeout: float = 300.0) -> dict[str, Any]:
        """Each server's ServerEvent once ``until(server)`` holds for all of them."""
        latest: dict[str, Any] = {}
        stream = self.servers.WatchServers(servers_pb2.WatchServersRequest(ids=ids), timeout=timeout)
        try:
            for event in stream:
                latest[event.server.id] = event
                if len(latest) == len(ids) and all(until(e.server) for e in latest.values()):
                    return latest
        finally:
            stream.cancel()
        raise AssertionError("the watch ended early")


@pytest.fixture(scope="module")
def cloud(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalCloud]:
    c = LocalCloud(Path(tmp_path_factory.mktemp("e2e-bench")), hosts=HOSTS, host_vcpus=64,
                   host_memory_mb=262144, host_disk_gb=4000, report_interval=10)
    with c:
        yield c


@pytest.fixture(scope="module")
def api(cloud: LocalCloud) -> Api:
    a = Api(cloud)
    a.quotas.SetQuota(quotas_pb2.SetQuotaRequest(project_id="admin", instances=100_000,
                                                 cores=1_000_000, ram=10**9))
    return a


@pytest.fixture(scope="module")
def flavor(api: Api) -> str:
    return api.flavors.CreateFlavor(flavors_pb2.CreateFlavorRequest(
        name="bench.tiny", vcpus=1, memory_mb=64, root_gb=1)).id


class Rounds:
    """Deletes the previous round's servers before the next round starts."""

    def __init__(self, api: Api) -> None:
        self.api = api
        self.ids: list[str] = []
        self.rates: list[float] = []
        self.latencies_ms: list[float] = []

    def clean(self) -> None:
        if not self.ids:
            return
        with ThreadPoolExecutor(CLIENTS) as pool:
            list(pool.map(lambda i: self.api.servers.DeleteServer(
                servers_pb2.DeleteServerRequest(id=i)), self.ids))
        deadline = time.monotonic() + 300
        while self.api.servers.ListServers(servers_pb2.ListServersRequest()).servers:
            assert time.monotonic() < deadline, "servers still not deleted after 300 s"
            time.sleep(0.1)
        self.ids = []

    def finished(self, started_wall: float, ids: list[str]) -> None:
        events = self.api.wait(ids, lambda s: s.status in ("ACTIVE", "ERROR"))
        errors = [e.server.fault.message for e in events.values() if e.server.status == "ERROR"]
        assert not errors, errors[:3]
        last = max(e.time.seconds + e.time.nanos / 1e9 for e in events.values())
        self.rates.append(len(ids) / max(last - started_wall, 1e-6))
        self.ids = ids

    def report(self, benchmark: Any) -> None:
        benchmark.extra_info["servers_per_round"] = SERVERS
        benchmark.extra_info["hosts"] = HOSTS
        benchmark.extra_info["servers_per_s_median"] = round(statistics.median(self.rates), 1)
        benchmark.extra_info["servers_per_s_each_round"] = [round(r, 1) for r in self.rates]
        if self.latencies_ms:
            lat = sorted(self.latencies_ms)
            benchmark.extra_info["create_calls"] = len(lat)
            benchmark.extra_info["create_p50_ms"] = round(lat[len(lat) // 2], 2)
            benchmark.extra_info["create_p99_ms"] = round(lat[min(len(lat) - 1, int(len(lat) * 0.99))], 2)


def test_e2e_count_batch(benchmark: Any, api: Api, flavor: str) -> None:
    """One Create with min_count = max_count = 200, until all 200 are ACTIVE."""
    rounds = Rounds(api)

    def one() -> None:
        started = time.time()
        t0 = time.perf_counter()
        reply = api.servers.CreateServer(servers_pb2.CreateServerRequest(
            name="batch", flavor_id=flavor, min_count=SERVERS, max_count=SERVERS))
        rounds.latencies_ms.append((time.perf_counter() - t0) * 1000)
        rounds.finished(started, [s.id for s in reply.servers])

    benchmark.pedantic(one, setup=rounds.clean, rounds=ROUNDS, iterations=1)
    rounds.report(benchmark)
    rounds.clean()


def test_e2e_single_creates(benchmark: Any, api: Api, flavor: str) -> None:
    """200 single Creates from 8 concurrent clients, until all 200 are ACTIVE; the
    Create call latency of each."""
    rounds = Rounds(api)

    def create(i: int) -> str:
        t0 = time.perf_counter()
        try:
            reply = api.servers.CreateServer(servers_pb2.CreateServerRequest(
                name=f"single-{i}", flavor_id=flavor))
        except grpc.RpcError as e:
            raise AssertionError(f"create {i}: {e.code()} {e.details()}") from None
        rounds.latencies_ms.append((time.perf_counter() - t0) * 1000)
        return str(reply.servers[0].id)

    def one() -> None:
        started = time.time()
        with ThreadPoolExecutor(CLIENTS) as pool:
            ids = list(pool.map(create, range(SERVERS)))
        rounds.finished(started, ids)

    benchmark.pedantic(one, setup=rounds.clean, rounds=ROUNDS, iterations=1)
    rounds.report(benchmark)
    rounds.clean()
