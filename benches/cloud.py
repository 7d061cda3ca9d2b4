"""The simulated clouds the benchmarks run on: three host generations with varied
usage (so weights differ and ties are rare, as in a real cloud), two availability
zones and an aggregate with per-aggregate limits."""

from __future__ import annotations

import time
from typing import Any

import grpc
import numpy as np

from novalite.placement import (
    DEFAULT_FILTERS,
    Aggregate,
    Flavor,
    Host,
    HostTable,
    Inventory,
    RequestSpec,
    SchedulerConfig,
)
from novalite.placement import reference
from novalite.rpc.novalite.compute.v1 import servers_pb2

# Nova's default filters plus the Aggregate*, IoOps and NumInstances filters; all 13
# weighers (the default weight_classes).
BENCH_FILTERS = tuple(DEFAULT_FILTERS) + (
    "AggregateInstanceExtraSpecsFilter",
    "AggregateMultiTenancyIsolation",
    "AggregateTypeAffinityFilter",
    "AggregateImagePropertiesIsolation",
    "IoOpsFilter",
    "AggregateIoOpsFilter",
    "NumInstancesFilter",
    "AggregateNumInstancesFilter",
)
CONFIG = SchedulerConfig(enabled_filters=BENCH_FILTERS)
FLAVOR = Flavor("m1.medium", 2, 4096, 40)
AGGREGATES = (
    Aggregate("az-1", "az-1", {"availability_zone": "az-1"}),
    Aggregate("az-2", "az-2", {"availability_zone": "az-2"}),
    Aggregate("big", "big", {"max_io_ops_per_host": "16", "max_instances_per_host": "100"}),
)


def columns(n: int, seed: int = 0, fresh: bool = False) -> dict[str, np.ndarray]:
    """Host columns; `fresh` hosts carry nothing yet."""
    rng = np.random.default_rng(seed)
    kind = rng.choice(3, size=n, p=[0.5, 0.35, 0.15])
    vcpus = np.array([32, 64, 128], dtype=np.int64)[kind]
    ram = np.array([131072, 262144, 524288], dtype=np.int64)[kind]
    disk = np.array([1000, 2000, 4000], dtype=np.int64)[kind]
    used_frac = np.zeros(n) if fresh else rng.uniform(0.0, 0.6, size=n)
    vcpus_used = (vcpus * 4 * used_frac).astype(np.int64)
    ram_used = (ram * used_frac).astype(np.int64)
    disk_used = (disk * used_frac).astype(np.int64)
    return {
        "vcpu_total": vcpus,
        "vcpu_allocation_ratio": np.full(n, 4.0),
        "memory_mb_total": ram,
        "memory_mb_reserved": np.full(n, 4096, dtype=np.int64),
        "disk_gb_total": disk,
        "vcpus_used": vcpus_used,
        "free_ram_mb": ram - 4096 - ram_used,
        "free_disk_mb": (disk - disk_used) * 1024,
        "num_instances": (used_frac * 20).astype(np.int64),
        "num_io_ops": np.zeros(n, dtype=np.int64) if fresh else rng.integers(0, 4, size=n),
        "hypervisor_version": np.array([8000000, 9000000, 10000000], dtype=np.int64)[kind],
    }


def names(n: int) -> list[str]:
    return [f"compute-{i:07d}" for i in range(n)]


def membership(n: int) -> list[list[str]]:
    """Every host in one zone; one host in twenty also in the 'big' aggregate."""
    return [["az-1" if i % 2 == 0 else "az-2"] + (["big"] if i % 20 == 0 else []) for i in range(n)]


def rust_table(n: int, seed: int = 0, fresh: bool = False) -> HostTable:
    table = HostTable(aggregates=AGGREGATES)
    table.add_hosts(names(n), **columns(n, seed, fresh))
    for name, aggs in zip(names(n), membership(n)):
        for a in aggs:
            table.add_host_to_aggregate(a, name)
    return table


def reference_table(n: int, seed: int = 0) -> reference.HostTable:
    c = columns(n, seed)
    hosts = []
    for i, (name, aggs) in enumerate(zip(names(n), membership(n))):
        hosts.append(Host(
            name=name, uuid=f"uuid-{name}",
            vcpu=Inventory(int(c["vcpu_total"][i]), allocation_ratio=4.0),
            memory_mb=Inventory(int(c["memory_mb_total"][i]), reserved=4096),
            disk_gb=Inventory(int(c["disk_gb_total"][i])),
            vcpus_used=int(c["vcpus_used"][i]),
            free_ram_mb=int(c["free_ram_mb"][i]),
            free_disk_mb=int(c["free_disk_mb"][i]),
            num_instances=int(c["num_instances"][i]),
            num_io_ops=int(c["num_io_ops"][i]),
            hypervisor_version=int(c["hypervisor_version"][i]),
            aggregates=aggs,
        ))
    return reference.HostTable(hosts, AGGREGATES)


def request(count: int = 1, prefix: str = "bench") -> RequestSpec:
    return RequestSpec(flavor=FLAVOR, instance_uuids=[f"{prefix}-{i}" for i in range(count)],
                       project_id="bench")


def delete_and_wait(servers: Any, sid: str, timeout: float = 60.0) -> None:
    """Delete a server through the API (a ServersStub) and wait until it is gone:
    the benchmarks of real guests make room for the next round this way."""
    servers.DeleteServer(servers_pb2.DeleteServerRequest(id=sid))
    deadline = time.monotonic() + timeout
    while True:
        try:
            servers.GetServer(servers_pb2.GetServerRequest(id=sid))
        except grpc.RpcError as e:
            assert e.code() == grpc.StatusCode.NOT_FOUND, e
            return
        assert time.monotonic() < deadline, f"{sid} not deleted after {timeout:.0f} s"
        time.sleep(0.02)
