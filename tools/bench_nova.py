#!/usr/bin/env python3
"""Benchmark: real Nova 34's scheduling decision on novalite's benchmark cloud.

This is a developer tool, NOT part of the project: novalite must not depend on Nova.
It needs a Python environment where Nova is installed (here a throwaway venv), with
the project and its benchmarks on the path:

    PYTHONPATH=/work/main/python:/work/main/benches /opt/nova-venv/bin/python \\
        tools/bench_nova.py --hosts 1000 10000 [--rounds N] [--json out.json] \\
        [--check-seeds 0 1 2 3 4] [--no-schedule]

What is timed
-------------
For each size, the hosts of ``benches/cloud.py`` (``columns(n, seed=0)``, ``names``,
``membership``, ``AGGREGATES`` with their metadata) are turned into Nova
``HostState`` objects the way Nova itself builds them: ``HostState.update()`` with a
real ``objects.ComputeNode`` (same inventories, usage, allocation ratios, io_workload /
num_instances stats, hypervisor version), the compute service record and the
``objects.Aggregate`` list. Nova is configured through ``oslo.config`` overrides from
``cloud.CONFIG`` (the same ``enabled_filters``; ``weight_classes`` left at Nova's
default, ``all_weighers``, which is novalite's 13 weighers) and a real ``HostManager``
loads Nova's own filter and weigher classes (its database initialisation is skipped).

ONE decision = ``SchedulerManager._get_sorted_hosts(spec, hosts, 0)``, Nova's own code:
the enabled filters over every host, the weighers over the survivors, the sort and the
random pick among ``host_subset_size`` best. The request is ``cloud.request()`` (one
m1.medium server, project "bench"), as ``benches/test_placement.py`` times for novalite
(``select_destinations(claim=False, seed=1)``). Rounds run back to back on the same
host states (``_get_sorted_hosts`` does not change them), after one untimed warm-up,
with ``gc`` enabled as in a running scheduler; min, median and mean are reported.

NOT timed, although Nova does them for every request: Placement's
``GET /allocation_candidates`` (a separate service, plus its HTTP round trip) and
the loading of compute nodes, services, aggregates and instances from the cell
databases into host states (``HostManager.get_host_states_by_uuids``). novalite's
figure includes its equivalent of the Placement query (the capacity checks).

Unless ``--no-schedule`` is given, a second figure times the rest of Nova's
scheduler-side work for the same one-server request: ``SchedulerManager._schedule``
with the host states handed over directly (no DB), Placement's claim faked by a
capacity check: allocation candidates attached to each host (a deepcopy per host),
``_get_sorted_hosts``, ``_consume_selected_host`` and ``_get_alternate_hosts``. The
consumed host is restored after each round.

Agreement
---------
For each seed s in ``--check-seeds`` (default 0..4) and each size, on the cloud
``columns(n, seed=s)`` with the request seeded ``s + 1`` (so s=0 is exactly the timed
benchmark case): Nova's ``_schedule`` (chosen host + alternates, with ``random`` seeded
like novalite's) against novalite's pure-Python reference
(``reference.Scheduler(...).select_destinations(request(), claim=False, seed=s + 1)``):
same hosts, same weights to 1e-9. When the compiled core loads in this interpreter,
the Rust core's hosts are compared too. With ``host_subset_size=1`` and no weight
ties the seed does not change the pick; the cloud seed does.

Exit status: 0 when every agreement check passed, 1 otherwise.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import gc
import json
import logging
import math
import os
import platform
import random
import statistics
import sys
import time
import warnings
from typing import Any
from unittest import mock

warnings.filterwarnings("ignore")
logging.disable(logging.WARNING)

import nova.conf  # noqa: E402

CONF = nova.conf.CONF
CONF([], project="nova", default_config_files=[])

from nova import objects  # noqa: E402

objects.register_all()

from nova.scheduler import host_manager, manager  # noqa: E402

import cloud  # noqa: E402  (benches/cloud.py)
from novalite.placement import reference  # noqa: E402

CELL_UUID = "5f0cb1a2-0000-4000-8000-00000000ce11"  # one cell, as novalite's hosts share one


# ----------------------------------------------------------------------------------
# Nova configuration and machinery
# ----------------------------------------------------------------------------------

# novalite SchedulerConfig field -> (Nova option group, option name); the same mapping
# as tools/compare_reference_with_nova.py's apply_nova_config
_FS = "filter_scheduler"
_OPTIONS = {f: (_FS, f) for f in (
    "enabled_filters", "host_subset_size", "shuffle_best_same_weighed_hosts",
    "max_io_ops_per_host", "max_instances_per_host", "ram_weight_multiplier",
    "cpu_weight_multiplier", "disk_weight_multiplier", "io_ops_weight_multiplier",
    "num_instances_weight_multiplier", "hypervisor_version_weight_multiplier",
    "build_failure_weight_multiplier", "cross_cell_move_weight_multiplier",
    "pci_weight_multiplier", "soft_affinity_weight_multiplier",
    "soft_anti_affinity_weight_multiplier", "image_props_weight_multiplier",
    "image_props_weight_setting", "image_properties_default_architecture",
    "isolated_images", "isolated_hosts", "restrict_isolated_hosts_to_isolated_images",
    "aggregate_image_properties_isolation_namespace",
    "aggregate_image_properties_isolation_separator")}
_OPTIONS.update({
    "max_attempts": ("scheduler", "max_attempts"),
    "metrics_weight_setting": ("metrics", "weight_setting"),
    "metrics_weight_multiplier": ("metrics", "weight_multiplier"),
    "metrics_required": ("metrics", "required"),
    "metrics_weight_of_unavailable": ("metrics", "weight_of_unavailable"),
    "default_availability_zone": ("DEFAULT", "default_availability_zone"),
})


def configure_nova(config: Any) -> None:
    """oslo.config overrides from a novalite SchedulerConfig. weight_classes stays at
    Nova's default (all_weighers); new_host_manager checks it matches."""
    for field, value in dataclasses.asdict(config).items():
        if field == "weight_classes":
            continue
        group, opt = _OPTIONS[field]
        if isinstance(value, dict):
            value = [f"{k}={v}" for k, v in value.items()]
        elif isinstance(value, tuple):
            value = list(value)
        CONF.set_override(opt, value, group=None if group == "DEFAULT" else group)
    # Services are "up" when heard from within service_down_time; widened so that a
    # long run cannot turn the (fixed) heartbeats stale. Same code path either way.
    CONF.set_override("service_down_time", 10**9)


def new_host_manager(config: Any) -> Any:
    """A real HostManager (Nova's filter and weigher loading), without its DB reads."""
    with mock.patch.object(host_manager.HostManager, "refresh_cells_caches"), \
            mock.patch.object(host_manager.HostManager, "_init_aggregates"), \
            mock.patch.object(host_manager.HostManager, "_init_instance_info"):
        hm = host_manager.HostManager()
    got_f = [type(f).__name__ for f in hm.enabled_filters]
    got_w = sorted(type(w).__name__ for w in hm.weighers)
    assert got_f == list(config.enabled_filters), got_f
    assert got_w == sorted(config.weight_classes), got_w
    return hm


class _Ctx:
    def elevated(self) -> "_Ctx":
        return self


class _Placement:
    def delete_allocation_for_instance(self, *a: Any, **kw: Any) -> None:
        pass


class Scheduler(manager.SchedulerManager):
    """Nova's SchedulerManager without RPC, DB or Placement client."""

    placement_client = _Placement()  # type: ignore[assignment]

    def __init__(self, hm: Any) -> None:  # noqa: D107 - skip the RPC/DB setup
        self.host_manager = hm


# ----------------------------------------------------------------------------------
# the benchmark cloud as Nova objects
# ----------------------------------------------------------------------------------


def nova_aggregates(n: int) -> dict[str, Any]:
    members: dict[str, list[str]] = {a.uuid: [] for a in cloud.AGGREGATES}
    for name, aggs in zip(cloud.names(n), cloud.membership(n)):
        for a in aggs:
            members[a].append(name)
    return {a.uuid: objects.Aggregate(id=i + 1, uuid=a.uuid, name=a.name,
                                      metadata=dict(a.metadata), hosts=members[a.uuid])
            for i, a in enumerate(cloud.AGGREGATES)}


def nova_host_states(n: int, seed: int = 0) -> list[Any]:
    """cloud.columns(n, seed) as Nova builds host states from its databases:
    HostState.update(ComputeNode, service, aggregates, instances)."""
    c = {k: v.tolist() for k, v in cloud.columns(n, seed).items()}
    assert set(c["memory_mb_reserved"]) == {4096} and set(c["vcpu_allocation_ratio"]) == {4.0}
    aggs = nova_aggregates(n)
    now = datetime.datetime.now(datetime.timezone.utc)
    empty_pools = objects.PciDevicePoolList(objects=[])
    out = []
    for i, (name, membership) in enumerate(zip(cloud.names(n), cloud.membership(n))):
        ram, disk = c["memory_mb_total"][i], c["disk_gb_total"][i]
        free_disk_mb = c["free_disk_mb"][i]
        assert free_disk_mb % 1024 == 0
        free_disk_gb = free_disk_mb // 1024
        cn = objects.ComputeNode(
            id=i + 1, uuid=f"uuid-{name}", host=name, hypervisor_hostname=name,
            vcpus=c["vcpu_total"][i], vcpus_used=c["vcpus_used"][i],
            memory_mb=ram, free_ram_mb=c["free_ram_mb"][i],
            memory_mb_used=ram - c["free_ram_mb"][i],  # includes the 4096 MB reserved
            local_gb=disk, local_gb_used=disk - free_disk_gb, free_disk_gb=free_disk_gb,
            disk_available_least=free_disk_gb,
            hypervisor_type="QEMU", hypervisor_version=c["hypervisor_version"][i],
            cpu_info="{}", host_ip=f"10.{i >> 16 & 255}.{i >> 8 & 255}.{i & 255}",
            supported_hv_specs=[], numa_topology=None, pci_device_pools=empty_pools,
            running_vms=c["num_instances"][i], current_workload=c["num_io_ops"][i],
            stats={"num_instances": str(c["num_instances"][i]),
                   "io_workload": str(c["num_io_ops"][i]), "failed_builds": "0"},
            metrics="[]", cpu_allocation_ratio=4.0, ram_allocation_ratio=1.0,
            disk_allocation_ratio=1.0, updated_at=now, created_at=now)
        service = {"id": i + 1, "host": name, "binary": "nova-compute", "topic": "compute",
                   "report_count": 1, "disabled": False, "disabled_reason": None,
                   "forced_down": False, "last_seen_up": now, "created_at": now,
                   "updated_at": now, "deleted": False, "version": 66,
                   "uuid": f"svc-{name}"}
        hs = host_manager.HostState(name, name, CELL_UUID)
        hs.update(compute=cn, service=service, aggregates=[aggs[a] for a in membership],
                  inst_dict={})
        out.append(hs)
    return out


def nova_request(spec: Any) -> Any:
    """The Nova RequestSpec for novalite's cloud.request() (a plain boot)."""
    f = spec.flavor
    assert spec.image is None and spec.instance_group is None and not spec.same_host
    assert not spec.different_host and spec.availability_zone is None
    assert not (spec.required_traits or spec.forbidden_traits or spec.member_of)
    assert not (spec.ignore_hosts or spec.force_hosts or spec.requested_host)
    return objects.RequestSpec(
        flavor=objects.Flavor(name=f.name, vcpus=f.vcpus, memory_mb=f.memory_mb,
                              root_gb=f.root_gb, ephemeral_gb=f.ephemeral_gb, swap=f.swap,
                              extra_specs=dict(f.extra_specs)),
        project_id=spec.project_id, user_id=spec.user_id or "bench-user",
        scheduler_hints={}, ignore_hosts=[], force_hosts=[], force_nodes=[],
        requested_destination=None, instance_uuid=spec.instance_uuids[0],
        num_instances=len(spec.instance_uuids), is_bfv=spec.is_bfv,
        requested_resources=[], pci_requests=None, numa_topology=None,
        instance_group=None, image=None)


def resources(spec: Any) -> dict[str, int]:
    f = spec.flavor
    return {"VCPU": f.vcpus, "MEMORY_MB": f.memory_mb,
            "DISK_GB": f.root_gb + f.ephemeral_gb + math.ceil(f.swap / 1024)}


def capacities(n: int, seed: int) -> dict[str, dict[str, int]]:
    """Placement's capacity per host (int((total - reserved) * ratio))."""
    c = cloud.columns(n, seed)
    return {name: {"VCPU": int(c["vcpu_total"][i] * 4.0),
                   "MEMORY_MB": int(c["memory_mb_total"][i] - 4096),
                   "DISK_GB": int(c["disk_gb_total"][i])}
            for i, name in enumerate(cloud.names(n))}


class ScheduleRun:
    """Nova's _schedule for one request over prebuilt host states: Placement's
    allocation candidates given (every host: the benchmark flavor fits everywhere, as
    novalite's placement stage also finds), its claim faked by a capacity check on a
    ledger that starts empty like novalite's."""

    def __init__(self, mgr: Scheduler, hosts: list[Any], spec: Any, uuids: list[str],
                 res: dict[str, int], caps: dict[str, dict[str, int]]) -> None:
        self.mgr, self.hosts, self.spec, self.uuids = mgr, hosts, spec, uuids
        self.caps = caps
        self.alloc_reqs = {h.uuid: [{"allocations": {h.uuid: {"resources": dict(res)}},
                                     "mappings": {}}] for h in hosts}
        self.summaries = {h.uuid: {} for h in hosts}
        self.by_uuid = {h.uuid: h.host for h in hosts}
        self.used: dict[str, dict[str, int]] = {}
        mgr._get_all_host_states = lambda ctx, spec_obj, ps: iter(hosts)  # type: ignore

    def claim(self, ctx: Any, client: Any, spec_obj: Any, instance_uuid: str,
              alloc_req: dict[str, Any], allocation_request_version: Any = None) -> bool:
        (rp, body), = alloc_req["allocations"].items()
        name = self.by_uuid[rp]
        used = self.used.setdefault(name, {})
        if any(used.get(rc, 0) + a > self.caps[name][rc] for rc, a in body["resources"].items()):
            return False
        for rc, a in body["resources"].items():
            used[rc] = used.get(rc, 0) + a
        return True

    def run(self) -> list[list[Any]]:
        self.used.clear()
        with mock.patch.object(manager.utils, "claim_resources", self.claim):
            return self.mgr._schedule(_Ctx(), self.spec, list(self.uuids), self.alloc_reqs,
                                      self.summaries, "1.36", return_alternates=True)


def snapshot(hosts: list[Any]) -> list[dict[str, Any]]:
    return [dict(vars(h)) for h in hosts]


def restore(hosts: list[Any], snaps: list[dict[str, Any]]) -> None:
    for h, s in zip(hosts, snaps):
        if vars(h) != s:
            vars(h).clear()
            vars(h).update(s)


# ----------------------------------------------------------------------------------
# timing and agreement
# ----------------------------------------------------------------------------------


def summary(times: list[float]) -> dict[str, Any]:
    return {"min": min(times), "median": statistics.median(times),
            "mean": statistics.fmean(times), "rounds": len(times), "times": times}


def time_size(n: int, rounds: int, schedule: bool) -> dict[str, Any]:
    t0 = time.perf_counter()
    hosts = nova_host_states(n, seed=0)
    build_s = time.perf_counter() - t0
    hm = new_host_manager(cloud.CONFIG)
    mgr = Scheduler(hm)
    req = cloud.request()
    spec = nova_request(req)

    out: dict[str, Any] = {"hosts": n, "build_host_states_s": build_s}
    random.seed(1)
    first = mgr._get_sorted_hosts(spec, hosts, 0)  # warm-up, untimed
    out["hosts_passing_filters"] = len(first)
    out["chosen"] = first[0].host
    times = []
    for _ in range(rounds):
        random.seed(1)
        gc.collect()
        t = time.perf_counter()
        sorted_hosts = mgr._get_sorted_hosts(spec, hosts, 0)
        times.append(time.perf_counter() - t)
        assert sorted_hosts[0].host == out["chosen"]
    out["get_sorted_hosts_s"] = summary(times)

    if schedule:
        snaps = snapshot(hosts)
        run = ScheduleRun(mgr, hosts, spec, list(req.instance_uuids), resources(req),
                          capacities(n, 0))
        times = []
        for _ in range(rounds):
            random.seed(1)
            gc.collect()
            t = time.perf_counter()
            sels = run.run()
            times.append(time.perf_counter() - t)
            restore(hosts, snaps)
            assert sels[0][0].service_host == out["chosen"]
        out["schedule_s"] = summary(times)
    return out


def rust_hosts(n: int, cloud_seed: int, seed: int) -> list[str] | None:
    """The compiled core's pick, when it loads in this interpreter."""
    try:
        from novalite.placement import Scheduler as RustScheduler
        sched = RustScheduler(cloud.rust_table(n, cloud_seed), cloud.CONFIG)
    except ImportError:
        return None
    sels = sched.select_destinations(cloud.request(), claim=False, seed=seed)
    return [s.host for s in sels[0]]


def close(a: float, b: float) -> bool:
    return abs(a - b) <= 1e-9 * max(1.0, abs(a), abs(b))


def check(n: int, cloud_seed: int, seed: int) -> dict[str, Any]:
    # novalite's pure-Python reference
    ref_sched = reference.Scheduler(cloud.reference_table(n, cloud_seed), cloud.CONFIG)
    ref_sels = ref_sched.select_destinations(cloud.request(), claim=False, seed=seed)[0]
    ref = [(s.host, s.weight) for s in ref_sels]

    # Nova: _schedule with random seeded like the reference, weights recorded
    hosts = nova_host_states(n, cloud_seed)
    hm = new_host_manager(cloud.CONFIG)
    weighed: dict[str, float] = {}

    def logged_weigh(hs: Any, spec_obj: Any) -> Any:
        out = host_manager.HostManager.get_weighed_hosts(hm, hs, spec_obj)
        weighed.update({w.obj.host: w.weight for w in out})
        return out

    hm.get_weighed_hosts = logged_weigh
    req = cloud.request()
    run = ScheduleRun(Scheduler(hm), hosts, nova_request(req), list(req.instance_uuids),
                      resources(req), capacities(n, cloud_seed))
    with mock.patch.object(manager, "random", random.Random(seed)):
        sels = run.run()[0]
    nova = [(s.service_host, weighed[s.service_host]) for s in sels]

    rust = rust_hosts(n, cloud_seed, seed)
    agree = ([h for h, _ in nova] == [h for h, _ in ref]
             and all(close(a, b) for (_, a), (_, b) in zip(nova, ref))
             and (rust is None or rust == [h for h, _ in ref]))
    return {"hosts": n, "cloud_seed": cloud_seed, "seed": seed, "agree": agree,
            "nova": nova, "reference": ref, "rust": rust}


def machine() -> dict[str, Any]:
    cpu = None
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next((line.split(":", 1)[1].strip() for line in f
                        if line.startswith("model name")), None)
    except OSError:
        pass
    import importlib.metadata
    return {"nproc": os.cpu_count(), "affinity": len(os.sched_getaffinity(0)),
            "cpu": cpu, "python": platform.python_version(),
            "nova": importlib.metadata.version("nova")}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--hosts", type=int, nargs="+", default=[1000, 10000])
    ap.add_argument("--rounds", type=int, default=None,
                    help="timed rounds per size (default: 20 below 5000 hosts, else 5)")
    ap.add_argument("--json", default=None, help="write the results here")
    ap.add_argument("--check-seeds", type=int, nargs="*", default=[0, 1, 2, 3, 4],
                    help="cloud seeds for the agreement check (request seed = s + 1); "
                         "none given: no check")
    ap.add_argument("--no-schedule", action="store_true",
                    help="time only _get_sorted_hosts, not also _schedule")
    args = ap.parse_args()

    configure_nova(cloud.CONFIG)
    info = machine()
    print(f"Nova {info['nova']}, Python {info['python']}, {info['cpu']}, "
          f"nproc {info['nproc']}")
    print("Timed: one decision = SchedulerManager._get_sorted_hosts(spec, hosts, 0) "
          "(filters + weighers + pick), Nova's own code, on prebuilt HostStates.")
    print("NOT timed (Nova also does these per request): Placement's GET "
          "/allocation_candidates and loading host states from the cell DBs.")
    filters = ", ".join(cloud.CONFIG.enabled_filters)
    print(f"enabled_filters: {filters}; weighers: Nova's default all_weighers "
          f"({len(cloud.CONFIG.weight_classes)})")
    results = []
    for n in args.hosts:
        rounds = args.rounds or (20 if n < 5000 else 5)
        r = time_size(n, rounds, not args.no_schedule)
        results.append(r)
        g = r["get_sorted_hosts_s"]
        print(f"\n{n:>8} hosts  ({r['hosts_passing_filters']} pass the filters; chosen "
              f"{r['chosen']}; host states built in {r['build_host_states_s']:.2f} s, "
              "not timed)")
        print(f"  _get_sorted_hosts  min {g['min'] * 1e3:10.2f} ms  median "
              f"{g['median'] * 1e3:10.2f} ms  mean {g['mean'] * 1e3:10.2f} ms  "
              f"({g['rounds']} rounds)")
        if "schedule_s" in r:
            s = r["schedule_s"]
            print(f"  _schedule          min {s['min'] * 1e3:10.2f} ms  median "
                  f"{s['median'] * 1e3:10.2f} ms  mean {s['mean'] * 1e3:10.2f} ms  "
                  "(+ alloc candidates, fake claim, consume, alternates)")

    checks = []
    if args.check_seeds:
        print("\nAgreement with novalite (chosen host + alternates, weights to 1e-9):")
    for n in args.hosts:
        for s in args.check_seeds:
            c = check(n, s, s + 1)
            checks.append(c)
            rust = ("n/a" if c["rust"] is None
                    else "same" if c["rust"] == [h for h, _ in c["reference"]] else c["rust"])
            print(f"  {n:>8} hosts cloud seed {s} request seed {s + 1}: "
                  f"{'AGREE' if c['agree'] else 'DISAGREE'}  nova "
                  f"{[h for h, _ in c['nova']]} reference {[h for h, _ in c['reference']]} "
                  f"rust core {rust}")
    ok = all(c["agree"] for c in checks)
    if checks:
        print(f"{sum(c['agree'] for c in checks)}/{len(checks)} checks agree")

    if args.json:
        doc = {
            "what": ("Nova SchedulerManager._get_sorted_hosts(spec, hosts, 0): filters + "
                     "weighers + pick on prebuilt HostStates; excludes Placement's "
                     "GET /allocation_candidates and the DB loading of host states, "
                     "which Nova also does per request. schedule_s: _schedule for the "
                     "same request (alloc candidates attached, claim faked, consume, "
                     "alternates), same exclusions."),
            "machine": info,
            "config": {"enabled_filters": list(cloud.CONFIG.enabled_filters),
                       "weighers": "nova.scheduler.weights.all_weighers",
                       "request": {"flavor": dataclasses.asdict(cloud.FLAVOR),
                                   "instances": 1}},
            "results": results,
            "agreement": checks,
        }
        with open(args.json, "w") as f:
            json.dump(doc, f, indent=1)
        print(f"wrote {args.json}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
