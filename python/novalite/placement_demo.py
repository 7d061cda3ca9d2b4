"""The placement demo: a simulated cloud of many hosts, thousands of servers of mixed
flavors (some in server groups) placed with Nova's semantics by the Rust core, and a
summary of what happened."""

from __future__ import annotations

import random
import sys
import time
import uuid
from collections import Counter
from dataclasses import dataclass
from typing import TextIO

import numpy as np

from novalite.placement import (
    DEFAULT_FILTERS,
    Aggregate,
    Flavor,
    HostTable,
    InstanceGroup,
    NoValidHost,
    RequestSpec,
    Scheduler,
    SchedulerConfig,
)

FLAVORS = (
    Flavor("m1.tiny", 1, 512, 1),
    Flavor("m1.small", 1, 2048, 20),
    Flavor("m1.medium", 2, 4096, 40),
    Flavor("m1.large", 4, 8192, 80),
    Flavor("m1.xlarge", 8, 16384, 160),
)
FLAVOR_WEIGHTS = (10, 35, 30, 18, 7)

# The scheduler a demanding operator would run: Nova's defaults plus the aggregate,
# I/O and instance-count filters.
DEMO_FILTERS = tuple(DEFAULT_FILTERS) + (
    "AggregateInstanceExtraSpecsFilter",
    "AggregateMultiTenancyIsolation",
    "AggregateTypeAffinityFilter",
    "AggregateIoOpsFilter",
    "AggregateNumInstancesFilter",
)


@dataclass
class DemoResult:
    hosts: int
    servers_requested: int
    servers_placed: int
    requests: int
    failed_requests: int
    hosts_used: int
    seconds: float
    rejections: Counter[str]
    by_flavor: Counter[str]
    by_az: Counter[str]


def build_cloud(n_hosts: int, rng: np.random.Generator) -> HostTable:
    """Three host generations in two availability zones; a GPU-free "large" aggregate
    that only takes m1.large and m1.xlarge."""
    names = [f"compute-{i:06d}" for i in range(n_hosts)]
    kind = rng.choice(3, size=n_hosts, p=[0.5, 0.35, 0.15])
    vcpus = np.array([32, 64, 128], dtype=np.int64)[kind]
    ram = np.array([131072, 262144, 524288], dtype=np.int64)[kind]
    disk = np.array([1000, 2000, 4000], dtype=np.int64)[kind]
    hv_version = np.array([8000000, 9000000, 10000000], dtype=np.int64)[kind]
    table = HostTable.from_columns(
        names,
        vcpu_total=vcpus,
        vcpu_allocation_ratio=np.full(n_hosts, 4.0),
        memory_mb_total=ram,
        memory_mb_reserved=np.full(n_hosts, 4096, dtype=np.int64),
        disk_gb_total=disk,
        hypervisor_version=hv_version,
        hypervisor_type="QEMU",
    )
    table.set_aggregate(Aggregate("az-1", "az-1", {"availability_zone": "az-1"}))
    table.set_aggregate(Aggregate("az-2", "az-2", {"availability_zone": "az-2"}))
    table.set_aggregate(Aggregate("large-only", "large-only",
                                  {"instance_type": "m1.large,m1.xlarge", "max_io_ops_per_host": "4"}))
    for i, name in enumerate(names):
        table.add_host_to_aggregate("az-1" if i % 2 == 0 else "az-2", name)
        if kind[i] == 2 and i % 4 == 0:
            table.add_host_to_aggregate("large-only", name)
    return table


def run(n_hosts: int = 100_000, n_servers: int = 10_000, seed: int = 1,
        out: TextIO = sys.stdout, progress: bool = True) -> DemoResult:
    rng = np.random.default_rng(seed)
    pyrng = random.Random(seed)
    t0 = time.perf_counter()
    table = build_cloud(n_hosts, rng)
    build_s = time.perf_counter() - t0
    print(f"built {n_hosts:,} simulated hosts in {build_s:.2f} s", file=out)
    sched = Scheduler(table, SchedulerConfig(enabled_filters=DEMO_FILTERS))

    placed = requests = failed = 0
    rejections: Counter[str] = Counter()
    by_flavor: Counter[str] = Counter()
    by_az: Counter[str] = Counter()
    used_hosts: set[str] = set()
    elapsed = 0.0
    last_draw = 0.0
    while placed + 0 < n_servers:
        flavor = pyrng.choices(FLAVORS, FLAVOR_WEIGHTS)[0]
        count = min(pyrng.choice((1, 1, 1, 2, 3, 5, 10)), n_servers - placed)
        uuids = [str(uuid.UUID(int=pyrng.getrandbits(128))) for _ in range(count)]
        group = None
        roll = pyrng.random()
        if count > 1 and roll < 0.3:
            group = InstanceGroup(str(uuid.UUID(int=pyrng.getrandbits(128))), "anti-affinity", members=uuids)
        elif count > 1 and roll < 0.4:
            group = InstanceGroup(str(uuid.UUID(int=pyrng.getrandbits(128))), "affinity", members=uuids)
        az = pyrng.choice((None, None, "az-1", "az-2"))
        spec = RequestSpec(flavor=flavor, instance_uuids=uuids, instance_group=group,
                           availability_zone=az, project_id=f"project-{pyrng.randrange(20)}")
        requests += 1
        start = time.perf_counter()
        try:
            result = sched.select(spec, seed=pyrng.getrandbits(32))
        except NoValidHost as e:
            elapsed += time.perf_counter() - start
            failed += 1
            rejections.update(dict(e.rejections))
            continue
        elapsed += time.perf_counter() - start
        rejections.update(dict(result.rejections))
        for sel in result.selections:
            used_hosts.add(sel[0].host)
            by_az[sel[0].availability_zone] += 1
        by_flavor[flavor.name] += count
        placed += count
        if progress and (time.perf_counter() - last_draw > 0.2 or placed >= n_servers):
            last_draw = time.perf_counter()
            _bar(placed, n_servers, out)
    if progress:
        print(file=out)
    return DemoResult(n_hosts, n_servers, placed, requests, failed, len(used_hosts), elapsed,
                      rejections, by_flavor, by_az)


def _bar(done: int, total: int, out: TextIO) -> None:
    width = 40
    filled = int(width * done / max(total, 1))
    print(f"\rplacing servers [{'#' * filled}{'.' * (width - filled)}] {done:,}/{total:,}",
          end="", file=out, flush=True)


def report(r: DemoResult, out: TextIO = sys.stdout) -> None:
    rows = [
        ("hosts in the cloud", f"{r.hosts:,}"),
        ("servers placed", f"{r.servers_placed:,} of {r.servers_requested:,}"),
        ("requests (multi-create)", f"{r.requests:,} ({r.failed_requests:,} had no valid host)"),
        ("hosts used", f"{r.hosts_used:,}"),
        ("scheduling time", f"{r.seconds:.3f} s"),
        ("decisions per second", f"{r.requests / r.seconds:,.0f} requests, "
                                 f"{r.servers_placed / r.seconds:,.0f} servers"),
    ]
    width = max(len(k) for k, _ in rows)
    print("\nsummary", file=out)
    for k, v in rows:
        print(f"  {k:<{width}}  {v}", file=out)
    print("\nservers by flavor / availability zone", file=out)
    for name, n in sorted(r.by_flavor.items()):
        print(f"  {name:<12} {n:>8,}", file=out)
    for name, n in sorted(r.by_az.items()):
        print(f"  {name:<12} {n:>8,}", file=out)
    print("\nhosts rejected, summed over requests (first pass)", file=out)
    for name, n in r.rejections.most_common():
        if n:
            print(f"  {name:<36} {n:>12,}", file=out)
    if not any(r.rejections.values()):
        print("  (none: every host passed every check)", file=out)
