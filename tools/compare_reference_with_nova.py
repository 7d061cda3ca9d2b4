#!/usr/bin/env python3
"""Differential check: novalite's pure-Python reference versus Nova 34's real code.

This is a developer tool, NOT a test: the project must not depend on Nova. It needs
a Python environment where Nova is installed (here a throwaway venv) and the project
on the path:

    PYTHONPATH=/work/main/python /opt/nova-venv/bin/python \\
        tools/compare_reference_with_nova.py [--cases 2000] [--seed 1] [-v] [--only N]

(``-v`` prints each case; ``--only N`` re-runs case N of a seed, printing it as JSON
when it mismatches.) About 3 ms a case. The pure-Python modules are loaded without
the package's ``__init__``, so the compiled core need not be built.

For each random case (hosts with inventories, usage, aggregates, instances, traits,
stats, metrics, cpu_info...; a scheduler config with a random ``enabled_filters``
order and random multipliers; a request with extra specs, image, server group,
hints, destination narrowing...) it runs:

* ``filter`` for index 0 and 1: the set of passing hosts of
  ``reference.Scheduler.filter`` against Nova's
  ``HostManager.get_filtered_hosts`` with Nova's own filter classes
  (``nova.scheduler.filters.*``), fed with Nova ``HostState`` objects for the hosts
  that pass the placement stage (computed independently here: Placement is not part
  of Nova's scheduler code);
* ``weigh`` for the same indexes: the reference's weights against Nova's
  ``HostWeightHandler.get_weighed_objects`` with Nova's weighers, passed in
  novalite's ``ALL_WEIGHERS`` order (to 1e-9);
* ``select_destinations(claim=False, seed=s)`` against Nova's own
  ``SchedulerManager._schedule`` (+ ``_get_sorted_hosts``, ``_consume_selected_host``,
  ``_get_alternate_hosts``), with ``random`` seeded identically, Placement claims
  faked by a capacity check, and the weights Nova computed recorded per pass;
* and, on a copy of the table, ``select_destinations(claim=True)`` must pick the
  same hosts as ``claim=False``.

Nova is configured through ``oslo.config`` overrides. Things Nova reads from its
databases are faked: the compute service's liveness (``ComputeFilter``), the
instances' image metadata and cell lookup (``ImagePropertiesWeigher``).

Cases come in five flavours: "mixed" (anything, often restrictive), "homogeneous"
(identical hardware: weight ties, shuffling, host_subset_size), "loose" (few
restrictions, so most requests get placed), "specs" (many flavor extra specs with
ComputeCapabilitiesFilter or AggregateInstanceExtraSpecsFilter) and "groups" (server
groups, multi-instance requests, moves of an instance already on a host). The
closing statistics say how much was actually compared.

Inputs are generated inside the domain where the contract doc and Nova agree by
construction; the known, documented divergences are kept out (see the report of
the reference's author): non-numeric values under numeric ``extra_specs`` operators
(Nova raises), non-finite aggregate multipliers, extra-spec keys naming HostState
attributes that hold objects, image properties that are not ImageMetaProps fields,
and alias spellings (``amd64``) in image properties that
AggregateImagePropertiesIsolation / ImagePropertiesWeigher compare as strings.

Exit status: 0 when every comparison agreed, 1 otherwise.
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import json
import logging
import math
import random
import sys
import types
import uuid as uuidlib
import warnings
from typing import Any
from unittest import mock

warnings.filterwarnings("ignore")
logging.disable(logging.WARNING)  # Nova's warnings about the odd inputs we feed it

import nova.conf  # noqa: E402

CONF = nova.conf.CONF
CONF([], project="nova", default_config_files=[])

from nova import exception as nova_exc  # noqa: E402
from nova import objects  # noqa: E402

objects.register_all()

from nova.objects import fields as nova_fields  # noqa: E402
from nova.scheduler import filters as nova_filters  # noqa: E402
from nova.scheduler import host_manager, manager  # noqa: E402
from nova.scheduler import weights as nova_weights  # noqa: E402
from nova.scheduler.filters import (  # noqa: E402
    affinity_filter, aggregate_image_properties_isolation, aggregate_instance_extra_specs,
    aggregate_multitenancy_isolation, all_hosts_filter, compute_capabilities_filter,
    compute_filter, image_props_filter, io_ops_filter, isolated_hosts_filter,
    metrics_filter, num_instances_filter, type_filter,
)
from nova.scheduler.weights import (  # noqa: E402
    affinity as w_affinity, compute as w_compute, cpu as w_cpu, cross_cell as w_cross_cell,
    disk as w_disk, hypervisor_version as w_hv, image_props as w_image_props,
    io_ops as w_io_ops, metrics as w_metrics, num_instances as w_num_instances,
    pci as w_pci, ram as w_ram,
)



def _load_pure_python_placement() -> None:
    """Import novalite.placement's pure-Python modules without running the package's
    __init__, which loads the compiled core (not needed here, and maybe not built
    for this interpreter)."""
    import importlib.util
    import pathlib

    import novalite

    pkg_dir = pathlib.Path(novalite.__file__).parent / "placement"
    spec = importlib.util.spec_from_loader("novalite.placement", loader=None,
                                           is_package=True)
    assert spec is not None
    pkg = importlib.util.module_from_spec(spec)
    pkg.__path__ = [str(pkg_dir)]
    sys.modules["novalite.placement"] = pkg


_load_pure_python_placement()

from novalite.placement import errors, model  # noqa: E402
from novalite.placement import reference as ref  # noqa: E402
from novalite.placement.config import ALL_WEIGHERS, AVAILABLE_FILTERS, SchedulerConfig  # noqa: E402

NOVA_FILTERS: dict[str, type] = {
    "AllHostsFilter": all_hosts_filter.AllHostsFilter,
    "ComputeFilter": compute_filter.ComputeFilter,
    "ComputeCapabilitiesFilter": compute_capabilities_filter.ComputeCapabilitiesFilter,
    "ImagePropertiesFilter": image_props_filter.ImagePropertiesFilter,
    "ServerGroupAntiAffinityFilter": affinity_filter.ServerGroupAntiAffinityFilter,
    "ServerGroupAffinityFilter": affinity_filter.ServerGroupAffinityFilter,
    "SameHostFilter": affinity_filter.SameHostFilter,
    "DifferentHostFilter": affinity_filter.DifferentHostFilter,
    "AggregateInstanceExtraSpecsFilter":
        aggregate_instance_extra_specs.AggregateInstanceExtraSpecsFilter,
    "AggregateMultiTenancyIsolation":
        aggregate_multitenancy_isolation.AggregateMultiTenancyIsolation,
    "AggregateTypeAffinityFilter": type_filter.AggregateTypeAffinityFilter,
    "AggregateImagePropertiesIsolation":
        aggregate_image_properties_isolation.AggregateImagePropertiesIsolation,
    "IsolatedHostsFilter": isolated_hosts_filter.IsolatedHostsFilter,
    "IoOpsFilter": io_ops_filter.IoOpsFilter,
    "AggregateIoOpsFilter": io_ops_filter.AggregateIoOpsFilter,
    "NumInstancesFilter": num_instances_filter.NumInstancesFilter,
    "AggregateNumInstancesFilter": num_instances_filter.AggregateNumInstancesFilter,
    "MetricsFilter": metrics_filter.MetricsFilter,
}
NOVA_WEIGHERS: dict[str, type] = {
    "RAMWeigher": w_ram.RAMWeigher,
    "CPUWeigher": w_cpu.CPUWeigher,
    "DiskWeigher": w_disk.DiskWeigher,
    "IoOpsWeigher": w_io_ops.IoOpsWeigher,
    "NumInstancesWeigher": w_num_instances.NumInstancesWeigher,
    "HypervisorVersionWeigher": w_hv.HypervisorVersionWeigher,
    "BuildFailureWeigher": w_compute.BuildFailureWeigher,
    "CrossCellWeigher": w_cross_cell.CrossCellWeigher,
    "PCIWeigher": w_pci.PCIWeigher,
    "ServerGroupSoftAffinityWeigher": w_affinity.ServerGroupSoftAffinityWeigher,
    "ServerGroupSoftAntiAffinityWeigher": w_affinity.ServerGroupSoftAntiAffinityWeigher,
    "MetricsWeigher": w_metrics.MetricsWeigher,
    "ImagePropertiesWeigher": w_image_props.ImagePropertiesWeigher,
}
assert set(NOVA_FILTERS) == set(AVAILABLE_FILTERS)
assert set(NOVA_WEIGHERS) == set(ALL_WEIGHERS)

# ----------------------------------------------------------------------------------
# fakes for what Nova reads from its databases
# ----------------------------------------------------------------------------------

# instance uuid -> image properties (ImagePropertiesWeigher's fill_metadata)
INSTANCE_IMAGES: dict[str, dict[str, str]] = {}


class _FakeInstList(list):  # type: ignore[type-arg]
    def fill_metadata(self) -> None:
        pass


def _fake_instance_list(ctxt: Any, objects: Any) -> _FakeInstList:
    out = _FakeInstList()
    for inst in objects:
        props = INSTANCE_IMAGES.get(inst.uuid, {})
        out.append(types.SimpleNamespace(
            uuid=inst.uuid,
            image_meta=nova_objects_image_meta({"properties": dict(props)})))
    return out


def nova_objects_image_meta(d: dict[str, Any]) -> Any:
    return objects.ImageMeta.from_dict(d)


w_image_props.objects = types.SimpleNamespace(  # type: ignore[attr-defined]
    CellMapping=types.SimpleNamespace(get_by_uuid=lambda ctxt, uuid: object()),
    InstanceList=_fake_instance_list,
)
w_image_props.nova_context = types.SimpleNamespace(  # type: ignore[attr-defined]
    get_admin_context=lambda: None,
    target_cell=lambda ctxt, cm: contextlib.nullcontext(ctxt),
)


class _FakeServiceGroup:
    @staticmethod
    def service_is_up(service: dict[str, Any]) -> bool:
        return bool(service["up"])


class JsonText(str):
    """ComputeNode.cpu_info is JSON text (what ComputeCapabilitiesFilter json-loads);
    ImagePropertiesFilter calls .get() on it as its unit tests do with a dict."""

    def get(self, key: str, default: Any = None) -> Any:
        return json.loads(self).get(key, default)


class _FakeCtx:
    def elevated(self) -> "_FakeCtx":
        return self


class _FakePlacement:
    def delete_allocation_for_instance(self, *a: Any, **kw: Any) -> None:
        pass


class _Mgr(manager.SchedulerManager):
    placement_client = _FakePlacement()  # type: ignore[assignment]

    def __init__(self) -> None:  # no RPC, no DB
        pass


# ----------------------------------------------------------------------------------
# random cases
# ----------------------------------------------------------------------------------

ARCH_ALIASES = ["x86_64", "X86_64", "amd64", "i386", "i686", "aarch64", "ppc64le"]
ARCH_CANON = ["x86_64", "i686", "aarch64", "ppc64le"]
HV_ALIASES = ["qemu", "kvm", "QEMU", "xen", "xapi"]
HV_CANON = ["qemu", "kvm", "xen"]
VM_ALIASES = ["hvm", "xen", "pv", "hv", "exe"]
VM_CANON = ["hvm", "xen", "exe"]
METRIC_NAMES = ["cpu.frequency", "cpu.percent", "cpu.user.time"]
TRAITS = ["HW_CPU_X86_AVX2", "CUSTOM_GOLD", "CUSTOM_SILVER"]
PROJECTS = ["p1", "p2", "p3"]
FLAVOR_NAMES = ["m1.small", "m1.large", "c1.xl"]
CELLS = [str(uuidlib.UUID(int=0xCE11 + i)) for i in range(2)]
IMAGE_IDS = [str(uuidlib.UUID(int=0x1A6E + i)) for i in range(3)]


def u(rng: random.Random) -> str:
    return str(uuidlib.UUID(int=rng.getrandbits(128), version=4))


def maybe(rng: random.Random, p: float) -> bool:
    return rng.random() < p


def gen_case(rng: random.Random) -> dict[str, Any]:
    n_hosts = rng.choice([1, 2, 3, 4, 5, 6, 8, 10, 12])
    # homogeneous: identical hardware and usage (weight ties, shuffle, subset size);
    # loose: few restrictions, so that most requests get placed
    mode = rng.choice(["mixed", "homogeneous", "loose", "specs", "groups"])
    p_restrict = 0.02 if mode != "mixed" else 0.08
    # -- aggregates
    aggs = []
    for i in range(rng.randint(0, 4)):
        md: dict[str, str] = {}
        if maybe(rng, 0.4):
            md["availability_zone"] = rng.choice(["az1", "az2"])
        if maybe(rng, 0.2):
            md[rng.choice(["filter_tenant_id", "filter_tenant_id2"])] = ",".join(
                rng.sample(PROJECTS, rng.randint(1, 2)))
        if maybe(rng, 0.25):
            md["instance_type"] = ", ".join(rng.sample(FLAVOR_NAMES, rng.randint(1, 2)))
        if maybe(rng, 0.25):
            md["max_io_ops_per_host"] = rng.choice(["3", "5", " 9 ", "abc", "0"])
        if maybe(rng, 0.25):
            md["max_instances_per_host"] = rng.choice(["40", "2", "x", "10"])
        for opt in ("ram_weight_multiplier", "cpu_weight_multiplier", "disk_weight_multiplier",
                    "io_ops_weight_multiplier", "build_failure_weight_multiplier",
                    "num_instances_weight_multiplier", "metrics_weight_multiplier",
                    "pci_weight_multiplier", "image_props_weight_multiplier",
                    "soft_affinity_weight_multiplier", "hypervisor_version_weight_multiplier"):
            if maybe(rng, 0.08):
                md[opt] = rng.choice(["2.0", "-1", "0.5", "bad", "0", "1e3"])
        if maybe(rng, 0.3):
            md["ssd"] = rng.choice(["true", "false", "true, false"])
        if maybe(rng, 0.3):
            md["gpu_count"] = rng.choice(["2", "4", "2, 4", "1,8"])
        if maybe(rng, 0.25):
            md["os_distro"] = rng.choice(["ubuntu", "centos", "ubuntu, centos"])
        if maybe(rng, 0.15):
            md["hw_machine_type"] = rng.choice(["q35", "pc"])
        aggs.append({"uuid": u(rng), "name": f"agg{i}", "metadata": md})

    hosts = []
    names: list[str] = []
    all_instances: list[str] = []
    for i in range(n_hosts):
        name = f"node{i}" if not maybe(rng, 0.15) else f"Node{i}"
        names.append(name)
        vt = rng.choice([4, 8, 16, 32])
        vr = rng.choice([0, 0, 1])
        vratio = rng.choice([1.0, 2.0, 4.0, 16.0, 1.5])
        mt = rng.choice([2048, 4096, 8192, 16384, 65536])
        mr = rng.choice([0, 512])
        mratio = rng.choice([1.0, 1.5])
        dt = rng.choice([0, 60, 100, 500, 1000])
        dr = 0 if dt == 0 else rng.choice([0, 10])
        host: dict[str, Any] = {
            "name": name, "uuid": u(rng),
            "vcpu": dict(total=vt, reserved=vr, allocation_ratio=vratio,
                         min_unit=1, max_unit=rng.choice([vt, 2**31 - 1, 2**31 - 1, 2]),
                         step_size=rng.choice([1] * 6 + [2])),
            "memory_mb": dict(total=mt, reserved=mr, allocation_ratio=mratio),
            "disk_gb": dict(total=dt, reserved=dr, allocation_ratio=1.0),
            "vcpus_used": rng.randint(0, int(vt * vratio) + 2),
            "free_ram_mb": mt - mr - rng.choice([0, 0, 512, 1024, mt]),
            "free_disk_mb": (dt - dr) * 1024 - rng.choice([0, 0, 1024, 10240]),
            "num_instances": rng.choice([0, 1, 2, 5, 45, 60]),
            "num_io_ops": rng.choice([0, 0, 1, 3, 8, 10]),
            "failed_builds": rng.choice([0, 0, 0, 1, 3]),
            "enabled": not maybe(rng, 0.1),
            "up": not maybe(rng, 0.1),
            "hypervisor_type": rng.choice(["QEMU", "QEMU", "Xen"]),
            "hypervisor_version": rng.choice([0, 2011002, 6002000, 8000000, 1000]),
            "supported_instances": [
                (rng.choice(ARCH_ALIASES), rng.choice(HV_ALIASES), rng.choice(VM_ALIASES))
                for _ in range(rng.choice([0, 1, 1, 2]))],
            "cpu_info": {},
            "stats": {},
            "metrics": {m: rng.randint(0, 3000) for m in METRIC_NAMES if maybe(rng, 0.8)},
            "aggregates": [a["uuid"] for a in aggs if maybe(rng, 0.45)],
            "traits": [t for t in TRAITS if maybe(rng, 0.4)],
            "instances": {},
            "cell": rng.choice(CELLS),
            "free_pci_devs": rng.choice([0, 0, 1, 5, 120]),
            "host_ip": f"192.0.2.{i + 1}",
        }
        if maybe(rng, 0.8):
            ci: dict[str, Any] = {"arch": "x86_64",
                                  "vendor": rng.choice(["Intel", "AMD"]),
                                  "model": rng.choice(["Haswell", "Skylake", "EPYC"])}
            if maybe(rng, 0.7):
                ci["maxphysaddr"] = {"mode": "passthrough", "bits": rng.choice([39, 42, 46])}
            if maybe(rng, 0.7):
                ci["topology"] = {"cores": rng.choice([2, 4, 8]), "sockets": 1, "threads": 2}
            if maybe(rng, 0.5):
                ci["features"] = rng.sample(["avx2", "sse4.2", "vmx", "aes"], 2)
            host["cpu_info"] = ci
        if maybe(rng, 0.5):
            host["stats"]["rack"] = rng.choice(["r1", "r2"])
        if maybe(rng, 0.5):
            host["stats"]["numa_nodes"] = rng.choice(["1", "2", "4"])
        if maybe(rng, 0.3):
            host["stats"]["gpu"] = rng.choice(["nvidia", "amd"])
        if mode == "homogeneous" and hosts:
            for k in ("vcpu", "memory_mb", "disk_gb", "vcpus_used", "free_ram_mb",
                      "free_disk_mb", "num_instances", "num_io_ops", "failed_builds",
                      "hypervisor_type", "hypervisor_version", "supported_instances",
                      "cpu_info", "stats", "metrics", "traits", "free_pci_devs", "cell"):
                host[k] = copy.deepcopy(hosts[0][k])
            host["enabled"] = host["up"] = True
        for _ in range(rng.choice([0, 0, 1, 2, 3])):
            iu = u(rng)
            all_instances.append(iu)
            host["instances"][iu] = {}
        hosts.append(host)

    # the request
    n_inst = rng.choice([1, 1, 2, 3, 4] if mode != "groups" else [2, 3, 4])
    req_uuids = [u(rng) for _ in range(n_inst)]
    if all_instances and maybe(rng, 0.15 if mode != "groups" else 0.5):
        # a move: the instance being placed already is on a host
        req_uuids[0] = rng.choice(all_instances)
    cfg_image_strict = maybe(rng, 0.5)   # alias spellings only when no string compare
    image_weigher_on = cfg_image_strict and maybe(rng, 0.6)
    agg_iso_on = cfg_image_strict
    arch_pool = ARCH_CANON if cfg_image_strict else ARCH_ALIASES
    hv_pool = HV_CANON if cfg_image_strict else HV_ALIASES
    vm_pool = VM_CANON if cfg_image_strict else VM_ALIASES

    def image_props() -> dict[str, str]:
        p: dict[str, str] = {}
        if maybe(rng, 0.4):
            p["hw_architecture"] = rng.choice(arch_pool)
        if maybe(rng, 0.2):
            p["img_hv_type"] = rng.choice(hv_pool)
        if maybe(rng, 0.2):
            p["hw_vm_mode"] = rng.choice(vm_pool)
        if maybe(rng, 0.25):
            p["img_hv_requested_version"] = rng.choice(
                [">= 6.0", ">=2.11, <7", "==8.0.0", "< 5.0", "!= 2.11.2", ">1.0rc1"])
        if maybe(rng, 0.2):
            p["hw_maxphysaddr_bits"] = rng.choice(["40", "42", "46"])
        if maybe(rng, 0.5):
            p["os_distro"] = rng.choice(["ubuntu", "centos"])
        if maybe(rng, 0.3):
            p["hw_machine_type"] = rng.choice(["q35", "pc"])
        return p

    for host in hosts:
        for iu in host["instances"]:
            host["instances"][iu] = image_props()

    extra: dict[str, str] = {}
    es_pool = [
        ("free_ram_mb", [">= 2048", ">= 100000", "= 1024"]),
        ("vcpus_total", ["<= 16", "== 8", ">= 4"]),
        ("hypervisor_type", ["s== QEMU", "QEMU", "<in> EM", "s!= Xen"]),
        ("num_instances", ["<= 5", "!= 0"]),
        ("hypervisor_version", [">= 6000000", "s< 6"]),
        ("cpu_allocation_ratio", ["16.0", "= 2", "s== 4.0"]),
        ("rack", ["r1", "<or> r1 <or> r2", "<or> r2", "s>= r2"]),
        ("numa_nodes", [">= 2", "== 1", "<in> 4"]),
        ("host_ip", ["<in> 192.0.2", "192.0.2.1"]),
        ("capabilities:cpu_info:vendor", ["Intel", "<or> AMD <or> Intel", "s== AMD"]),
        ("capabilities:cpu_info:topology:cores", [">= 4", "== 8", "<= 2"]),
        ("capabilities:cpu_info:maxphysaddr:bits", [">= 42", "== 39"]),
        ("capabilities:cpu_info:features", ["<in> avx2", "<all-in> avx2 aes"]),
        ("capabilities:cpu_info", ["<in> Intel", "<in> \"bits\": 46"]),
        ("capabilities:hypervisor_version", [">= 6000000", "< 1"]),
        ("capabilities:gpu", ["nvidia", "s!= amd"]),
        ("capabilities:numa_nodes", [">= 2"]),
        ("capabilities:disk_mb_used", [">= 1", "== 0"]),
        ("capabilities:total_usable_ram_mb", [">= 8192"]),
        ("capabilities:vcpus_used", ["<= 4"]),
        ("capabilities:nodename", ["<in> node", "s== node0"]),
        ("hw:maxphysaddr_bits", ["42", "46"]),
        ("aggregate_instance_extra_specs:ssd", ["true", "<or> true <or> false", "s== false"]),
        ("aggregate_instance_extra_specs:gpu_count", [">= 2", "<in> 4", "== 8", "= 3"]),
        ("gpu_count", [">= 2", "<all-in> 1 8"]),
        ("ssd", ["true"]),
        ("hw:cpu_policy", ["dedicated"]),
        ("resources:VCPU", ["2", "0", "abc", "-1"]),
        ("resources:DISK_GB", ["0", "5"]),
        ("resources:CUSTOM_FOO", ["0"]),
        ("trait:CUSTOM_GOLD", ["required", "forbidden", "preferred"]),
        ("trait:HW_CPU_X86_AVX2", ["required"]),
    ]
    p_es = {"mixed": rng.choice([0.0, 0.02, 0.05, 0.1]), "specs": rng.choice([0.15, 0.25]),
            }.get(mode, rng.choice([0.0, 0.0, 0.02]))
    for key, vals in es_pool:
        if maybe(rng, p_es):
            extra[key] = rng.choice(vals)

    group = None
    if maybe(rng, 0.35 if mode != "groups" else 1.0):
        policy = rng.choice(["affinity", "anti-affinity", "soft-affinity", "soft-anti-affinity"])
        old_members = rng.sample(all_instances, min(len(all_instances), rng.randint(0, 3)))
        member_hosts = sorted({h["name"] for h in hosts for m in old_members
                               if m in h["instances"]})
        group = {"uuid": u(rng), "policy": policy, "members": old_members + req_uuids,
                 "hosts": member_hosts,
                 "max_server_per_host": rng.choice([None, None, 1, 2, 3])}

    spec: dict[str, Any] = {
        "flavor": {"name": rng.choice(FLAVOR_NAMES), "vcpus": rng.choice([1, 1, 2, 4]),
                   "memory_mb": rng.choice([256, 512, 1024, 2048]),
                   "root_gb": rng.choice([0, 1, 10, 40]),
                   "ephemeral_gb": rng.choice([0, 0, 5]),
                   "swap": rng.choice([0, 0, 512, 1025]),
                   "extra_specs": extra},
        "uuids": req_uuids,
        "image": None if maybe(rng, 0.15) else {
            "id": rng.choice(IMAGE_IDS + [None]), "properties": image_props()},
        "project_id": rng.choice(PROJECTS),
        "group": group,
        "same_host": rng.sample(all_instances, min(len(all_instances), 2))
        if maybe(rng, 0.1) else [],
        "different_host": rng.sample(all_instances, min(len(all_instances), 2))
        if maybe(rng, 0.1) else [],
        "availability_zone": rng.choice(["az1", "az2", "az3"]) if maybe(rng, 0.15) else None,
        "required_traits": [t for t in TRAITS if maybe(rng, p_restrict)],
        "forbidden_traits": [t for t in TRAITS if maybe(rng, p_restrict)],
        "member_of": [[a["uuid"] for a in aggs if maybe(rng, 0.5)] for _ in range(
            1 if aggs and maybe(rng, 0.1) else 0)],
        "forbidden_aggregates": [a["uuid"] for a in aggs if maybe(rng, p_restrict)],
        "ignore_hosts": [rng.choice(names).upper()] if maybe(rng, p_restrict) else [],
        "force_hosts": [rng.choice(names).lower(), rng.choice(names)]
        if maybe(rng, p_restrict) else [],
        "force_nodes": [rng.choice(names)] if maybe(rng, p_restrict / 2) else [],
        "requested_host": rng.choice(names) if maybe(rng, p_restrict) else None,
        "requested_cell": rng.choice(CELLS) if maybe(rng, 0.2) else None,
        "is_bfv": maybe(rng, 0.15),
        "is_rebuild": maybe(rng, 0.08),
    }
    if spec["image"] is not None:
        for host in hosts:
            if req_uuids[0] in host["instances"]:
                # a moved instance was booted from the request's image (Nova's stub
                # for it in a server group is filled from that instance's metadata)
                host["instances"][req_uuids[0]] = dict(spec["image"]["properties"])
    spec["allow_cross_cell_move"] = spec["requested_cell"] is not None and maybe(rng, 0.7)
    spec["requested_node"] = (spec["requested_host"]
                              if spec["requested_host"] and maybe(rng, 0.5) else None)

    filters = list(AVAILABLE_FILTERS)
    rng.shuffle(filters)
    filters = filters[:rng.choice([0, 1, 2, 3, 4, 5, 6, 8, len(filters)] if mode == "mixed"
                                  else [0, 1, 2, 3, 4, 5])]
    if mode == "specs":
        filters = [rng.choice(["ComputeCapabilitiesFilter",
                               "AggregateInstanceExtraSpecsFilter"])]
    if mode == "groups":
        filters = ["ServerGroupAntiAffinityFilter", "ServerGroupAffinityFilter"] + filters[:2]
        filters = list(dict.fromkeys(filters))
    if not agg_iso_on and "AggregateImagePropertiesIsolation" in filters:
        filters.remove("AggregateImagePropertiesIsolation")
    ms = {"metrics_weight_setting": {}}
    if maybe(rng, 0.4):
        ms["metrics_weight_setting"] = {m: rng.choice([1.0, -0.5, 0.0, 2.0])
                                        for m in rng.sample(METRIC_NAMES, rng.randint(1, 2))}
    config = dict(
        enabled_filters=tuple(filters),
        weight_classes=ALL_WEIGHERS,
        host_subset_size=rng.choice([1, 1, 2, 3, 10]),
        shuffle_best_same_weighed_hosts=maybe(rng, 0.3),
        max_io_ops_per_host=rng.choice([8, 2, 0]),
        max_instances_per_host=rng.choice([50, 3]),
        ram_weight_multiplier=rng.choice([1.0, -1.0, 2.5, 0.0]),
        cpu_weight_multiplier=rng.choice([1.0, -1.0, 0.0]),
        disk_weight_multiplier=rng.choice([1.0, 0.0, -3.0]),
        io_ops_weight_multiplier=rng.choice([-1.0, 1.0, 0.0]),
        num_instances_weight_multiplier=rng.choice([0.0, -1.0, 1.0]),
        hypervisor_version_weight_multiplier=rng.choice([1.0, 0.0, -1.0]),
        build_failure_weight_multiplier=rng.choice([1000000.0, 10.0, 0.0]),
        cross_cell_move_weight_multiplier=rng.choice([1000000.0, 0.0, -5.0]),
        pci_weight_multiplier=rng.choice([1.0, 0.0, 3.0]),
        soft_affinity_weight_multiplier=rng.choice([1.0, 0.0, 2.0]),
        soft_anti_affinity_weight_multiplier=rng.choice([1.0, 0.0, 2.0]),
        image_props_weight_multiplier=rng.choice([1.0, -1.5]) if image_weigher_on else 0.0,
        image_props_weight_setting=rng.choice(
            [{}, {"os_distro": 2.0, "hw_machine_type": 0.5}, {"hw_architecture": 1.0}]),
        image_properties_default_architecture=rng.choice([None, None, "x86_64", "aarch64"]),
        isolated_images=tuple(rng.sample(IMAGE_IDS, rng.randint(0, 2))),
        isolated_hosts=tuple(rng.sample(names, rng.randint(0, min(2, len(names))))),
        restrict_isolated_hosts_to_isolated_images=maybe(rng, 0.5),
        aggregate_image_properties_isolation_namespace=rng.choice([None, None, "os"]),
        aggregate_image_properties_isolation_separator=rng.choice([".", "_"]),
        max_attempts=rng.choice([1, 2, 3, 4]),
        metrics_weight_multiplier=rng.choice([1.0, 0.0, -1.0]),
        metrics_required=maybe(rng, 0.3),
        metrics_weight_of_unavailable=rng.choice([-10000.0, -1.0]),
        **ms,
    )
    # pre-existing allocations (consumers), possibly above a shrunk inventory
    preclaims = []
    for h in hosts:
        if maybe(rng, 0.5):
            preclaims.append((h["name"], {"VCPU": rng.randint(1, 4),
                                          "MEMORY_MB": rng.choice([256, 1024, 4096]),
                                          **({"DISK_GB": rng.choice([1, 10])}
                                             if h["disk_gb"]["total"] > 20 else {})}))
    return {"hosts": hosts, "aggs": aggs, "spec": spec, "config": config,
            "preclaims": preclaims, "seed": rng.getrandbits(32),
            "shrink": maybe(rng, 0.2)}


# ----------------------------------------------------------------------------------
# building both sides
# ----------------------------------------------------------------------------------


def build_reference(case: dict[str, Any]) -> tuple[ref.HostTable, ref.Scheduler,
                                                   model.RequestSpec]:
    t = ref.HostTable()
    for a in case["aggs"]:
        t.set_aggregate(model.Aggregate(uuid=a["uuid"], name=a["name"],
                                        metadata=a["metadata"]))
    for h in case["hosts"]:
        kw = dict(h)
        kw["vcpu"] = model.Inventory(**h["vcpu"])
        kw["memory_mb"] = model.Inventory(**h["memory_mb"])
        kw["disk_gb"] = model.Inventory(**h["disk_gb"])
        t.add_host(model.Host(**kw))
    for i, (name, alloc) in enumerate(case["preclaims"]):
        try:
            t.claim(f"pre-{i}", {name: alloc})
        except errors.ClaimConflict:
            pass
    if case["shrink"] and case["hosts"]:
        h = case["hosts"][0]
        inv = dict(h["memory_mb"])
        inv["total"] = max(inv["reserved"], inv["total"] // 8)
        t.set_inventory(h["name"], "MEMORY_MB", model.Inventory(**inv))
    s = case["spec"]
    g = s["group"]
    spec = model.RequestSpec(
        flavor=model.Flavor(**s["flavor"]),
        instance_uuids=s["uuids"],
        image=None if s["image"] is None else model.Image(**s["image"]),
        project_id=s["project_id"],
        instance_group=None if g is None else model.InstanceGroup(**g),
        same_host=s["same_host"], different_host=s["different_host"],
        availability_zone=s["availability_zone"],
        required_traits=s["required_traits"], forbidden_traits=s["forbidden_traits"],
        member_of=s["member_of"], forbidden_aggregates=s["forbidden_aggregates"],
        ignore_hosts=s["ignore_hosts"], force_hosts=s["force_hosts"],
        force_nodes=s["force_nodes"], requested_host=s["requested_host"],
        requested_node=s["requested_node"], requested_cell=s["requested_cell"],
        allow_cross_cell_move=s["allow_cross_cell_move"], is_bfv=s["is_bfv"],
        is_rebuild=s["is_rebuild"],
    )
    return t, ref.Scheduler(t, SchedulerConfig(**case["config"])), spec


def apply_nova_config(cfg: dict[str, Any]) -> None:
    fs = "filter_scheduler"
    for opt in ("host_subset_size", "shuffle_best_same_weighed_hosts", "max_io_ops_per_host",
                "max_instances_per_host", "ram_weight_multiplier", "cpu_weight_multiplier",
                "disk_weight_multiplier", "io_ops_weight_multiplier",
                "num_instances_weight_multiplier", "hypervisor_version_weight_multiplier",
                "build_failure_weight_multiplier", "cross_cell_move_weight_multiplier",
                "pci_weight_multiplier", "soft_affinity_weight_multiplier",
                "soft_anti_affinity_weight_multiplier", "image_props_weight_multiplier",
                "image_properties_default_architecture",
                "restrict_isolated_hosts_to_isolated_images",
                "aggregate_image_properties_isolation_namespace",
                "aggregate_image_properties_isolation_separator"):
        CONF.set_override(opt, cfg[opt], group=fs)
    CONF.set_override("isolated_images", list(cfg["isolated_images"]), group=fs)
    CONF.set_override("isolated_hosts", list(cfg["isolated_hosts"]), group=fs)
    CONF.set_override("image_props_weight_setting",
                      [f"{k}={v}" for k, v in cfg["image_props_weight_setting"].items()],
                      group=fs)
    CONF.set_override("enabled_filters", list(cfg["enabled_filters"]), group=fs)
    CONF.set_override("max_attempts", cfg["max_attempts"], group="scheduler")
    CONF.set_override("weight_setting",
                      [f"{k}={v}" for k, v in cfg["metrics_weight_setting"].items()],
                      group="metrics")
    CONF.set_override("required", cfg["metrics_required"], group="metrics")
    CONF.set_override("weight_of_unavailable", cfg["metrics_weight_of_unavailable"],
                      group="metrics")
    CONF.set_override("weight_multiplier", cfg["metrics_weight_multiplier"], group="metrics")


def capacity(inv: dict[str, Any]) -> int:
    return int((inv["total"] - inv.get("reserved", 0)) * inv.get("allocation_ratio", 1.0))


def independent_resources(case: dict[str, Any]) -> dict[str, int]:
    """Nova's ResourceRequest for this flavor, written again independently."""
    s = case["spec"]
    f = s["flavor"]
    res = {"VCPU": f["vcpus"], "MEMORY_MB": f["memory_mb"],
           "DISK_GB": (0 if s["is_bfv"] else f["root_gb"]) + f["ephemeral_gb"]
           + math.ceil(f["swap"] / 1024)}
    for k, v in f["extra_specs"].items():
        if k.startswith("resources:"):
            try:
                amount = int(v)
            except ValueError:
                continue
            if amount >= 0:
                res[k.split(":", 1)[1]] = amount
    return {k: v for k, v in res.items() if v > 0}


def independent_candidates(case: dict[str, Any], table: ref.HostTable) -> list[str]:
    """The placement stage, written again from the doc (Placement is not in Nova)."""
    s = case["spec"]
    res = independent_resources(case)
    req_traits = set(s["required_traits"])
    forb_traits = set(s["forbidden_traits"])
    for k, v in s["flavor"]["extra_specs"].items():
        if k.startswith("trait:"):
            if v == "required":
                req_traits.add(k[6:])
            elif v == "forbidden":
                forb_traits.add(k[6:])
    az = s["availability_zone"]
    az_aggs = {a["uuid"] for a in case["aggs"]
               if az and a["metadata"].get("availability_zone") == az}
    out = []
    for h in case["hosts"]:
        name = h["name"]
        if not h["enabled"]:
            continue
        ok = True
        for rc, amount in res.items():
            inv = table.inventory(name, rc)
            if (table.usage(name)[rc] + amount > table.capacity(name)[rc]
                    or not inv.min_unit <= amount <= inv.max_unit
                    or amount % inv.step_size):
                ok = False
        if not ok or not req_traits <= set(h["traits"]) or forb_traits & set(h["traits"]):
            continue
        if not all(set(g) & set(h["aggregates"]) for g in s["member_of"]):
            continue
        if set(s["forbidden_aggregates"]) & set(h["aggregates"]):
            continue
        if az_aggs and not az_aggs & set(h["aggregates"]):
            continue
        out.append(name)
    return out


def build_nova_hosts(case: dict[str, Any], table: ref.HostTable,
                     names: list[str]) -> list[Any]:
    aggs = {a["uuid"]: objects.Aggregate(id=i + 1, uuid=a["uuid"], name=a["name"],
                                         metadata=dict(a["metadata"]))
            for i, a in enumerate(case["aggs"])}
    by_name = {h["name"]: h for h in case["hosts"]}
    out = []
    for name in names:
        h = by_name[name]
        hs = host_manager.HostState(name, name, h["cell"])
        hs.uuid = h["uuid"]
        vcpu = table.inventory(name, "VCPU")
        mem = table.inventory(name, "MEMORY_MB")
        disk = table.inventory(name, "DISK_GB")
        hs.total_usable_ram_mb = mem.total
        hs.total_usable_disk_gb = disk.total
        hs.free_ram_mb = h["free_ram_mb"]
        hs.free_disk_mb = h["free_disk_mb"]
        hs.disk_mb_used = disk.total * 1024 - h["free_disk_mb"]
        hs.vcpus_total = vcpu.total
        hs.vcpus_used = h["vcpus_used"]
        hs.num_instances = h["num_instances"]
        hs.num_io_ops = h["num_io_ops"]
        hs.failed_builds = h["failed_builds"]
        hs.host_ip = h["host_ip"]
        hs.hypervisor_type = h["hypervisor_type"]
        hs.hypervisor_version = h["hypervisor_version"]
        hs.hypervisor_hostname = name
        hs.cpu_info = JsonText(json.dumps(h["cpu_info"]))
        # HVSpec fields canonicalize what the compute reports
        hs.supported_instances = [
            [nova_fields.Architecture.canonicalize(a), nova_fields.HVType.canonicalize(t),
             nova_fields.VMMode.canonicalize(m)] for a, t, m in h["supported_instances"]]
        hs.stats = dict(h["stats"])
        hs.metrics = [types.SimpleNamespace(name=k, value=v) for k, v in h["metrics"].items()]
        hs.aggregates = [aggs[a] for a in h["aggregates"]]
        hs.instances = {iu: objects.Instance(uuid=iu) for iu in h["instances"]}
        hs.service = {"disabled": not h["enabled"], "up": h["up"]}
        hs.cpu_allocation_ratio = float(vcpu.allocation_ratio)
        hs.ram_allocation_ratio = float(mem.allocation_ratio)
        hs.disk_allocation_ratio = float(disk.allocation_ratio)
        hs.pci_stats = types.SimpleNamespace(pools=[{"count": h["free_pci_devs"]}])
        hs.limits = {}
        out.append(hs)
    return out


def build_nova_spec(case: dict[str, Any], index: int) -> Any:
    s = case["spec"]
    f = s["flavor"]
    kw: dict[str, Any] = {}
    if s["group"] is not None:
        g = s["group"]
        rules = ({} if g["max_server_per_host"] is None
                 else {"max_server_per_host": str(g["max_server_per_host"])})
        kw["instance_group"] = objects.InstanceGroup(
            uuid=g["uuid"], policy=g["policy"], policies=[g["policy"]],
            members=list(g["members"]), hosts=list(g["hosts"]), rules=rules)
    else:
        kw["instance_group"] = None
    if s["image"] is not None:
        d: dict[str, Any] = {"properties": dict(s["image"]["properties"])}
        if s["image"]["id"] is not None:
            d["id"] = s["image"]["id"]
        kw["image"] = objects.ImageMeta.from_dict(d)
    else:
        kw["image"] = None
    hints: dict[str, list[str]] = {}
    if s["same_host"]:
        hints["same_host"] = list(s["same_host"])
    if s["different_host"]:
        hints["different_host"] = list(s["different_host"])
    if s["is_rebuild"]:
        hints["_nova_check_type"] = ["rebuild"]
    dest = None
    if s["requested_host"] is not None or s["requested_cell"] is not None:
        dkw: dict[str, Any] = {"allow_cross_cell_move": s["allow_cross_cell_move"]}
        if s["requested_host"] is not None:
            dkw["host"] = s["requested_host"]
            dkw["node"] = s["requested_node"]
        if s["requested_cell"] is not None:
            dkw["cell"] = objects.CellMapping(uuid=s["requested_cell"])
        dest = objects.Destination(**dkw)
    return objects.RequestSpec(
        flavor=objects.Flavor(name=f["name"], vcpus=f["vcpus"], memory_mb=f["memory_mb"],
                              root_gb=f["root_gb"], ephemeral_gb=f["ephemeral_gb"],
                              swap=f["swap"], extra_specs=dict(f["extra_specs"])),
        project_id=s["project_id"], scheduler_hints=hints,
        ignore_hosts=list(s["ignore_hosts"]), force_hosts=list(s["force_hosts"]),
        force_nodes=list(s["force_nodes"]), requested_destination=dest,
        instance_uuid=s["uuids"][index], num_instances=len(s["uuids"]),
        is_bfv=s["is_bfv"], requested_resources=[], pci_requests=None,
        numa_topology=None, **kw)


def nova_filters_and_weighers(cfg: dict[str, Any]) -> tuple[list[Any], list[Any]]:
    apply_nova_config(cfg)
    fl = []
    for name in cfg["enabled_filters"]:
        f = NOVA_FILTERS[name]()
        if name == "ComputeFilter":
            f.servicegroup_api = _FakeServiceGroup()
        fl.append(f)
    return fl, [NOVA_WEIGHERS[name]() for name in ALL_WEIGHERS]


def new_host_manager(filters: list[Any], weighers: list[Any]) -> Any:
    hm = host_manager.HostManager.__new__(host_manager.HostManager)
    hm.filter_handler = nova_filters.HostFilterHandler()
    hm.enabled_filters = filters
    hm.weight_handler = nova_weights.HostWeightHandler()
    hm.weighers = weighers
    return hm


# ----------------------------------------------------------------------------------
# comparisons
# ----------------------------------------------------------------------------------


# what was actually compared (printed at the end, so a run that compares little shows)
STATS: dict[str, int] = {}


def stat(key: str, n: int = 1) -> None:
    STATS[key] = STATS.get(key, 0) + n


def close(a: float, b: float) -> bool:
    if math.isnan(a) or math.isnan(b):
        return math.isnan(a) and math.isnan(b)
    return abs(a - b) <= 1e-9 * max(1.0, abs(a), abs(b))


def outcome(fn: Any) -> tuple[str, Any]:
    try:
        return "ok", fn()
    except (errors.NoValidHost, nova_exc.NoValidHost):
        return "novalidhost", None
    except (errors.PlacementError, nova_exc.ComputeHostMetricNotFound) as e:
        if isinstance(e, (errors.InvalidInput,)):
            return "invalid", str(e)
        return "metric", None


def compare_case(case: dict[str, Any], verbose: bool) -> list[str]:
    problems: list[str] = []
    table, sched, spec = build_reference(case)
    try:
        ref_req = ref._Request(spec)
    except errors.InvalidInput as e:
        return [f"reference refused the request: {e}"]
    cands = independent_candidates(case, table)
    ref_cands = [h.host for h in sched._placement_stage(ref_req)[0]]
    if cands != ref_cands:
        problems.append(f"placement stage: independent {cands} != reference {ref_cands}")
        return problems
    filters, weighers = nova_filters_and_weighers(case["config"])
    names = table.host_names()
    INSTANCE_IMAGES.clear()
    for h in case["hosts"]:
        INSTANCE_IMAGES.update(h["instances"])

    n_inst = len(case["spec"]["uuids"])
    for index in sorted({0, min(1, n_inst - 1)}):
        nova_hosts = build_nova_hosts(case, table, cands)
        hm = new_host_manager(filters, weighers)
        nspec = build_nova_spec(case, index)
        nova_passed = list(hm.get_filtered_hosts(nova_hosts, nspec, index))
        fr = sched.filter(spec, index)
        ref_passed = [n for n, m in zip(names, fr.mask) if m]
        stat("filter comparisons")
        stat("filter comparisons with >= 2 hosts passing", len(ref_passed) >= 2)
        stat("hosts compared by filter", len(cands))
        if [h.host for h in nova_passed] != ref_passed:
            problems.append(f"filter index {index}: nova {[h.host for h in nova_passed]} "
                            f"!= reference {ref_passed}")
            continue
        kind_n, nova_w = outcome(lambda: {w.obj.host: w.weight for w in
                                          hm.get_weighed_hosts(nova_passed, nspec)})
        kind_r, ref_w = outcome(lambda: sched.weigh(spec, index))
        if kind_n != kind_r:
            problems.append(f"weigh index {index}: nova {kind_n} != reference {kind_r}")
            continue
        stat(f"weigh outcome {kind_n}")
        if kind_n == "ok":
            stat("host weights compared", len(nova_w))
            for name, w in zip(names, ref_w):
                if name in nova_w:
                    if not close(nova_w[name], w):
                        problems.append(f"weigh index {index} host {name}: "
                                        f"nova {nova_w[name]!r} != reference {w!r}")
                elif not math.isnan(w):
                    problems.append(f"weigh index {index} host {name}: reference weighed "
                                    f"a host nova filtered out")

    # -- select_destinations versus Nova's _schedule
    seed = case["seed"]
    uuids = list(case["spec"]["uuids"])
    for iu in uuids:
        if iu not in INSTANCE_IMAGES:  # group stubs look like the request's image
            INSTANCE_IMAGES[iu] = dict((case["spec"]["image"] or {}).get("properties", {}))
    res = independent_resources(case)
    used = {n: dict(table.usage(n)) for n in names}
    caps = {n: table.capacity(n) for n in names}
    uuid_to_name = {h["uuid"]: h["name"] for h in case["hosts"]}

    def fake_claim(ctx: Any, client: Any, spec_obj: Any, instance_uuid: str,
                   alloc_req: dict[str, Any], allocation_request_version: Any = None) -> bool:
        (rp, body), = alloc_req["allocations"].items()
        name = uuid_to_name[rp]
        if any(used[name][rc] + a > caps[name][rc] for rc, a in body["resources"].items()):
            return False
        for rc, a in body["resources"].items():
            used[name][rc] += a
        return True

    nova_hosts = build_nova_hosts(case, table, cands)
    hm = new_host_manager(filters, weighers)
    weigh_log: list[dict[str, float]] = []

    def logged_weigh(hosts: Any, spec_obj: Any) -> Any:
        out = host_manager.HostManager.get_weighed_hosts(hm, hosts, spec_obj)
        weigh_log.append({w.obj.host: w.weight for w in out})
        return out

    hm.get_weighed_hosts = logged_weigh
    mgr = _Mgr()
    mgr.host_manager = hm
    mgr._get_all_host_states = lambda ctx, spec_obj, ps: iter(nova_hosts)
    alloc_reqs = {h.uuid: [{"allocations": {h.uuid: {"resources": dict(res)}},
                            "mappings": {}}] for h in nova_hosts}
    nspec = build_nova_spec(case, 0)

    def run_nova() -> list[list[tuple[str, float]]]:
        if not nova_hosts:
            raise nova_exc.NoValidHost(reason="")
        with mock.patch.object(manager, "random", random.Random(seed)), \
                mock.patch.object(manager.utils, "claim_resources", fake_claim):
            sels = mgr._schedule(_FakeCtx(), nspec, uuids, alloc_reqs,
                                 {h.uuid: {} for h in nova_hosts}, "1.36",
                                 return_alternates=True)
        out = []
        for i, lst in enumerate(sels):
            row = [(lst[0].service_host, weigh_log[i][lst[0].service_host])]
            for alt in lst[1:]:
                row.append((alt.service_host, weigh_log[-1][alt.service_host]))
            out.append(row)
        return out

    def run_ref(tbl: ref.HostTable, sch: ref.Scheduler, claim: bool) -> Any:
        sels = sch.select_destinations(spec, claim=claim, seed=seed)
        return [[(s.host, s.weight) for s in lst] for lst in sels]

    gen_before = {n: table.generation(n) for n in names}
    kind_n, nova_sel = outcome(run_nova)
    kind_r, ref_sel = outcome(lambda: run_ref(table, sched, False))
    if {n: table.generation(n) for n in names} != gen_before:
        problems.append("select(claim=False) changed the table")
    if kind_n != kind_r:
        problems.append(f"select: nova {kind_n} {nova_sel} != reference {kind_r} {ref_sel}")
    stat(f"select outcome {kind_n}")
    if kind_n == "ok" and kind_r == "ok":
        stat("select ok with >= 2 instances", len(ref_sel) >= 2)
        stat("select ok with alternates", any(len(x) > 1 for x in ref_sel))
        stat("select ok from >= 3 candidates", len(cands) >= 3)
    if kind_n != kind_r:
        pass
    elif kind_n == "ok":
        if [[h for h, _ in lst] for lst in nova_sel] != [[h for h, _ in lst] for lst in ref_sel]:
            problems.append(f"select: nova {nova_sel} != reference {ref_sel}")
        else:
            for ln, lr in zip(nova_sel, ref_sel):
                for (h, wn), (_, wr) in zip(ln, lr):
                    if not close(wn, wr):
                        problems.append(f"select weight of {h}: nova {wn} != reference {wr}")
        # the claiming run on a copy picks the same hosts
        t2 = copy.deepcopy(table)
        s2 = ref.Scheduler(t2, sched.config)
        k2, claimed = outcome(lambda: run_ref(t2, s2, True))
        if k2 != "ok" or claimed != ref_sel:
            problems.append(f"select(claim=True) {k2} {claimed} != claim=False {ref_sel}")
        else:
            for i, lst in enumerate(claimed):
                host = lst[0][0]
                if t2.allocations(uuids[i]) != {host: res}:
                    problems.append(f"claim=True: allocation of {uuids[i]} is "
                                    f"{t2.allocations(uuids[i])}")
    if verbose and not problems:
        print(f"  ok: candidates={len(cands)} select={kind_r} {ref_sel}")
    return problems


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--cases", type=int, default=2000)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("-v", "--verbose", action="store_true")
    ap.add_argument("--only", type=int, default=None, help="run only case number N")
    args = ap.parse_args()
    rng = random.Random(args.seed)
    bad = 0
    kinds: dict[str, int] = {}
    for n in range(args.cases):
        case = gen_case(rng)
        if args.only is not None and n != args.only:
            continue
        try:
            problems = compare_case(case, args.verbose)
        except Exception as e:  # a crash on either side is a finding too
            problems = [f"crash: {type(e).__name__}: {e}"]
            import traceback
            traceback.print_exc()
        if problems:
            bad += 1
            print(f"case {n}: MISMATCH")
            for p in problems:
                print(f"    {p}")
                k = p.split(":")[0]
                kinds[k] = kinds.get(k, 0) + 1
            if args.verbose or args.only is not None:
                print(json.dumps(case, indent=1, default=str))
    for k in sorted(STATS):
        print(f"  {k}: {STATS[k]}")
    print(f"{args.cases} random cases, {bad} with mismatches {kinds if kinds else ''}")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
