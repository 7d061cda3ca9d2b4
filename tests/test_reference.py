"""Hand-computed cases for the pure-Python reference (novalite.placement.reference).

The reference is the oracle the Rust core is checked against, so each case here
pins one rule of docs/placement-semantics.md to a number worked out by hand from
Nova's code (the file is named in each test's docstring when it is not obvious).
"""

from __future__ import annotations

import math
import random
from typing import Any

import pytest


# the reference is pure Python: this module imports without the compiled core
from novalite.placement import config, errors, model
from novalite.placement import reference as ref
SchedulerConfig = config.SchedulerConfig
Inventory = model.Inventory


# ------------------------------------------------------------------------ helpers


def host(name: str, vcpus: int = 8, ram: int = 8192, disk: int = 100, **kw: Any) -> Any:
    kw.setdefault("uuid", f"uuid-{name}")
    return model.Host(name=name, vcpu=kw.pop("vcpu", Inventory(vcpus)),
                      memory_mb=kw.pop("memory_mb", Inventory(ram)),
                      disk_gb=kw.pop("disk_gb", Inventory(disk)), **kw)


def table(*hosts: Any, aggregates: tuple[Any, ...] = ()) -> Any:
    t = ref.HostTable()
    for a in aggregates:
        t.set_aggregate(a)
    for h in hosts:
        t.add_host(h)
    return t


def spec(n: int = 1, vcpus: int = 1, ram: int = 512, disk: int = 1, extra: dict[str, str] | None
         = None, name: str = "m1", **kw: Any) -> Any:
    flavor = model.Flavor(name, vcpus, ram, disk, extra_specs=extra or {})
    return model.RequestSpec(flavor=flavor, instance_uuids=[f"i{k}" for k in range(n)], **kw)


def cfg(filters: tuple[str, ...] = (), weighers: tuple[str, ...] = (), **kw: Any) -> Any:
    return SchedulerConfig(enabled_filters=filters, weight_classes=weighers, **kw)


def passing(sched: Any, s: Any, index: int = 0) -> list[str]:
    mask = sched.filter(s, index).mask
    return [n for n, m in zip(sched.table.host_names(), mask) if m]


def snapshot(t: Any) -> Any:
    names = t.host_names()
    return ([(n, t.usage(n), t.generation(n), t.instances_on(n)) for n in names],
            {c: t.allocations(c) for c in t.consumers()},
            [t._by_name[n].free_ram_mb for n in names])


# ------------------------------------------------------------------------ weighing


def test_ram_weigher_spreads_to_the_emptiest_host() -> None:
    t = table(host("a", free_ram_mb=2048), host("b", free_ram_mb=8192),
              host("c", free_ram_mb=4096))
    s = ref.Scheduler(t, cfg(weighers=("RAMWeigher",)))
    # minval=0: free / max(free)
    assert s.weigh(spec()) == [0.25, 1.0, 0.5]
    [[sel]] = s.select_destinations(spec(), return_alternates=False)
    assert (sel.host, sel.weight, sel.row) == ("b", 1.0, 1)


def test_negative_ram_multiplier_stacks() -> None:
    t = table(host("a", free_ram_mb=2048), host("b", free_ram_mb=8192),
              host("c", free_ram_mb=4096))
    s = ref.Scheduler(t, cfg(weighers=("RAMWeigher",), ram_weight_multiplier=-1.0))
    assert s.weigh(spec()) == [-0.25, -1.0, -0.5]
    assert s.select_destinations(spec())[0][0].host == "a"


def test_normalize_edge_cases() -> None:
    """nova/weights.py normalize: lo == hi -> 0; with minval the low end is minval."""
    assert ref.normalize([]) == []
    assert ref.normalize([5, 5, 5]) == [0.0, 0.0, 0.0]
    assert ref.normalize([2, 4, 6]) == [0.0, 0.5, 1.0]
    # minval=0 (RAM, CPU, Disk, IoOps): equal non-zero values are 1.0, not 0
    assert ref.normalize([5, 5], minval=0) == [1.0, 1.0]
    assert ref.normalize([0, 0], minval=0) == [0.0, 0.0]
    assert ref.normalize([0, 5], minval=0) == [0.0, 1.0]


def test_one_host_weighs_zero_and_equal_hosts_tie() -> None:
    s1 = ref.Scheduler(table(host("a", num_instances=3)),
                       cfg(weighers=("NumInstancesWeigher",), num_instances_weight_multiplier=5.0))
    assert s1.weigh(spec()) == [0.0]
    t = table(host("a", num_instances=3), host("b", num_instances=3))
    s2 = ref.Scheduler(t, cfg(weighers=("NumInstancesWeigher",), num_instances_weight_multiplier=5.0))
    assert s2.weigh(spec()) == [0.0, 0.0]
    # ties keep table order; subset size 1 -> the first
    assert s2.select_destinations(spec(), claim=False)[0][0].host == "a"


def test_default_weighers_sum() -> None:
    """RAM 1024/2048=.5, CPU (8*1-2)/8=.75, Disk 1.0, IoOps -1*(1/1) on host a."""
    t = table(host("a", free_ram_mb=1024, vcpus_used=2, num_io_ops=1),
              host("b", free_ram_mb=2048, vcpus_used=0, num_io_ops=0))
    w = ref.Scheduler(t).weigh(spec())
    assert w[0] == pytest.approx(0.5 + 0.75 + 1.0 - 1.0)
    assert w[1] == pytest.approx(1.0 + 1.0 + 1.0)


def test_cpu_weigher_uses_allocation_ratio_and_clamps_at_zero() -> None:
    t = table(host("a", vcpu=Inventory(4, allocation_ratio=4.0), vcpus_used=8),   # 8 free
              host("b", vcpu=Inventory(8), vcpus_used=12))                        # -4 -> 0
    assert ref.Scheduler(t, cfg(weighers=("CPUWeigher",))).weigh(spec()) == [1.0, 0.0]


def test_per_aggregate_multiplier_min_wins_and_bad_value_falls_back() -> None:
    aggs = (model.Aggregate("g1", metadata={"ram_weight_multiplier": "2"}),
            model.Aggregate("g2", metadata={"ram_weight_multiplier": "0.5"}),
            model.Aggregate("bad", metadata={"ram_weight_multiplier": "lots"}))
    t = table(host("a", free_ram_mb=4096, aggregates=["g1", "g2"]),
              host("b", free_ram_mb=8192, aggregates=["g1"]),
              host("c", free_ram_mb=8192, aggregates=["g1", "bad"]), aggregates=aggs)
    s = ref.Scheduler(t, cfg(weighers=("RAMWeigher",), ram_weight_multiplier=3.0))
    # a: min(2, .5) * .5; b: 2 * 1; c: one value does not parse -> the option, 3 * 1
    assert s.weigh(spec()) == [0.25, 2.0, 3.0]


def test_build_failure_multiplier_is_negated_per_aggregate() -> None:
    aggs = (model.Aggregate("g", metadata={"build_failure_weight_multiplier": "10"}),)
    t = table(host("a", failed_builds=2, aggregates=["g"]), host("b", failed_builds=1),
              host("c"), aggregates=aggs)
    s = ref.Scheduler(t, cfg(weighers=("BuildFailureWeigher",)))
    # raw 2, 1, 0 -> normalised 1, .5, 0; multipliers -10, -1e6, -1e6
    assert s.weigh(spec()) == [-10.0, -500000.0, -0.0]
    assert s.select_destinations(spec())[0][0].host == "c"


def test_pci_and_hypervisor_version_and_cross_cell_weighers() -> None:
    t = table(host("a", free_pci_devs=0, hypervisor_version=2000000, cell="c1"),
              host("b", free_pci_devs=500, hypervisor_version=1000000, cell="c2"))
    s = ref.Scheduler(t, cfg(weighers=("PCIWeigher",)))
    assert s.weigh(spec()) == [1.0, 0.0]   # raw 100 and 100 - 99 = 1
    s = ref.Scheduler(t, cfg(weighers=("HypervisorVersionWeigher",)))
    assert s.weigh(spec()) == [1.0, 0.0]
    s = ref.Scheduler(t, cfg(weighers=("CrossCellWeigher",)))
    assert s.weigh(spec(requested_cell="c2")) == [0.0, 0.0]   # not a cross-cell move
    assert s.weigh(spec(requested_cell="c2", allow_cross_cell_move=True)) == [0.0, 1e6]


def test_metrics_weigher() -> None:
    t = table(host("a", metrics={"cpu.percent": 10.0, "mem": 2.0}),
              host("b", metrics={"cpu.percent": 30.0}))
    setting = {"cpu.percent": -1.0, "mem": 1.0}
    s = ref.Scheduler(t, cfg(weighers=("MetricsWeigher",), metrics_weight_setting=setting))
    with pytest.raises(errors.PlacementError):
        s.weigh(spec())   # metrics_required: b lacks "mem"
    s = ref.Scheduler(t, cfg(weighers=("MetricsWeigher",), metrics_weight_setting=setting,
                             metrics_required=False))
    # a: -10 + 2 = -8; b: weight_of_unavailable -10000 -> normalised 1 and 0
    assert s.weigh(spec()) == [1.0, 0.0]
    s = ref.Scheduler(t, cfg(filters=("MetricsFilter",), metrics_weight_setting=setting))
    assert passing(s, spec()) == ["a"]


def test_image_properties_weigher_counts_per_instance() -> None:
    t = table(host("a", instances={"x": {"os_distro": "ubuntu"}, "y": {"os_distro": "ubuntu"}}),
              host("b", instances={"z": {"os_distro": "ubuntu", "hw_machine_type": "q35"}}),
              host("c"))
    image = model.Image("img", {"os_distro": "ubuntu", "hw_machine_type": "q35"})
    s = ref.Scheduler(t, cfg(weighers=("ImagePropertiesWeigher",),
                             image_props_weight_multiplier=1.0))
    # raw: a 2 (two instances share os_distro), b 2 (one instance shares both), c 0
    assert s.weigh(spec(image=image)) == [1.0, 1.0, 0.0]
    s = ref.Scheduler(t, cfg(weighers=("ImagePropertiesWeigher",),
                             image_props_weight_multiplier=1.0,
                             image_props_weight_setting={"hw_machine_type": 3.0}))
    # only the weighted property counts: a 0, b 3, c 0
    assert s.weigh(spec(image=image)) == [0.0, 1.0, 0.0]
    # the option multiplier 0 disables the weigher
    assert ref.Scheduler(t, cfg(weighers=("ImagePropertiesWeigher",))).weigh(
        spec(image=image)) == [0.0, 0.0, 0.0]


def test_soft_anti_affinity_prefers_hosts_without_members() -> None:
    t = table(host("a", instances={"m1": {}}), host("b"))
    group = model.InstanceGroup("g", "soft-anti-affinity", members=["m1", "i0", "i1"])
    s = ref.Scheduler(t, cfg(weighers=("ServerGroupSoftAntiAffinityWeigher",)))
    sels = s.select_destinations(spec(2, instance_group=group), claim=False)
    # i0 -> b (0 members vs 1); then a and b both hold one member: a tie, and ties
    # keep the previous pass's order, which starts with the host it chose
    assert [x[0].host for x in sels] == ["b", "b"]


# ------------------------------------------------------------------------ server groups


def test_anti_affinity_max_server_per_host_over_a_multi_instance_request() -> None:
    t = table(host("a"), host("b"))
    group = model.InstanceGroup("g", "anti-affinity", members=[f"i{k}" for k in range(4)],
                                max_server_per_host=2)
    s = ref.Scheduler(t, cfg(filters=("ServerGroupAntiAffinityFilter",),
                             weighers=("RAMWeigher",)))
    sels = s.select_destinations(spec(4, instance_group=group))
    assert sorted(x[0].host for x in sels) == ["a", "a", "b", "b"]
    # the default (1 per host) cannot place a third instance on two hosts
    t2 = table(host("a"), host("b"))
    group1 = model.InstanceGroup("g", "anti-affinity", members=["i0", "i1", "i2"])
    s2 = ref.Scheduler(t2, cfg(filters=("ServerGroupAntiAffinityFilter",)))
    before = snapshot(t2)
    with pytest.raises(errors.NoValidHost) as e:
        s2.select_destinations(spec(3, instance_group=group1))
    assert e.value.instance_index == 2
    # pass 2 starts from what pass 1 returned: b alone, which now holds i1
    assert e.value.rejections[-1] == ("ServerGroupAntiAffinityFilter", 1)
    assert snapshot(t2) == before


def test_anti_affinity_lets_the_instance_stay_where_it_is() -> None:
    t = table(host("a", instances={"i0": {}, "m": {}}), host("b", instances={"m2": {}}))
    group = model.InstanceGroup("g", "anti-affinity", members=["i0", "m", "m2"])
    s = ref.Scheduler(t, cfg(filters=("ServerGroupAntiAffinityFilter",)))
    assert passing(s, spec(1, instance_group=group)) == ["a"]


def test_affinity_puts_every_instance_on_one_host() -> None:
    t = table(host("a", free_ram_mb=4096), host("b", free_ram_mb=8192), host("c"))
    group = model.InstanceGroup("g", "affinity", members=["i0", "i1", "i2"])
    s = ref.Scheduler(t, cfg(filters=("ServerGroupAffinityFilter",), weighers=("RAMWeigher",)))
    sels = s.select_destinations(spec(3, instance_group=group))
    assert [x[0].host for x in sels] == ["b", "b", "b"]
    assert t.usage("b")["MEMORY_MB"] == 3 * 512
    # with hosts already in the group, only those pass
    group2 = model.InstanceGroup("g", "affinity", members=["i0"], hosts=["c"])
    assert passing(s, spec(1, instance_group=group2)) == ["c"]


# ------------------------------------------------------------------------ filters


def _agg_table() -> Any:
    agg = model.Aggregate("g", metadata={"ssd": "true", "gpu": "2, 4", "model": "Haswell"})
    return table(host("in", aggregates=["g"]), host("out"), aggregates=(agg,))


@pytest.mark.parametrize("key,req,ok", [
    ("aggregate_instance_extra_specs:gpu", "<in> 4", True),
    ("aggregate_instance_extra_specs:gpu", ">= 3", True),      # 4 >= 3
    ("aggregate_instance_extra_specs:gpu", ">= 5", False),
    ("aggregate_instance_extra_specs:gpu", "= 4", True),       # '=' means >=
    ("aggregate_instance_extra_specs:gpu", "= 5", False),
    ("aggregate_instance_extra_specs:gpu", "== 2", True),
    ("aggregate_instance_extra_specs:model", "<or> Skylake <or> Haswell", True),
    ("aggregate_instance_extra_specs:model", "<or> Skylake <or> EPYC", False),
    ("aggregate_instance_extra_specs:model", "s== Haswell", True),
    ("aggregate_instance_extra_specs:model", "s== haswell", False),
    ("aggregate_instance_extra_specs:model", "s> Broadwell", True),
    ("aggregate_instance_extra_specs:model", "Haswell", True),
    ("ssd", "true", True),                                      # unscoped keys count too
    ("ssd", ">= 1", False),                                     # float('true'): no match
    ("aggregate_instance_extra_specs:nvme", "true", False),     # key absent
    ("hw:cpu_policy", "dedicated", True),                       # other scopes ignored
])
def test_aggregate_instance_extra_specs_operators(key: str, req: str, ok: bool) -> None:
    s = ref.Scheduler(_agg_table(), cfg(filters=("AggregateInstanceExtraSpecsFilter",)))
    expected = ["in"] if ok else []
    if key == "hw:cpu_policy":
        expected = ["in", "out"]
    assert passing(s, spec(extra={key: req})) == expected


def _caps_host(**kw: Any) -> Any:
    return host("h", cpu_info={"vendor": "Intel", "topology": {"cores": 8},
                               "maxphysaddr": {"mode": "passthrough", "bits": 46}},
                stats={"rack": "r2"}, hypervisor_version=6002000, **kw)


@pytest.mark.parametrize("extra,ok", [
    ({"capabilities:cpu_info:vendor": "Intel"}, True),
    ({"capabilities:cpu_info:vendor": "s== AMD"}, False),
    ({"capabilities:cpu_info:topology:cores": ">= 8"}, True),
    ({"capabilities:cpu_info:topology:cores": ">= 16"}, False),
    ({"capabilities:cpu_info:topology:threads": "1"}, False),   # absent -> fails
    ({"hw:maxphysaddr_bits": "42"}, True),                      # 46 >= 42
    ({"hw:maxphysaddr_bits": "48"}, False),
    ({"capabilities:cpu_info": "<in> Intel"}, True),            # the JSON text
    ({"rack": "<or> r1 <or> r2"}, True),                        # a stats key
    ({"capabilities:rack": "r1"}, False),
    ({"free_ram_mb": ">= 4096"}, True),
    ({"free_ram_mb": ">= 9000"}, False),
    ({"free_ram_mb": ">= lots"}, False),                        # float() fails -> host fails
    ({"capabilities:hypervisor_version": ">= 6000000"}, True),
    ({"cpu_allocation_ratio": "1.0"}, True),                    # str(float)
    ({"foo": "bar"}, True),                                     # unknown unscoped: ignored
    ({"capabilities:foo": "bar"}, False),
    ({"instances": "{}"}, False),                               # an object attribute
])
def test_compute_capabilities_filter(extra: dict[str, str], ok: bool) -> None:
    s = ref.Scheduler(table(_caps_host()), cfg(filters=("ComputeCapabilitiesFilter",)))
    assert passing(s, spec(extra=extra)) == (["h"] if ok else [])


def test_extra_specs_match_quirks() -> None:
    m = ref.extra_specs_match
    assert m("a", "<or> b <or> a")
    assert m("c", "<or> a junk c")        # Nova never checks the separators
    assert not m("a", "<or>")             # Nova: IndexError
    assert m("avx2 aes", "<all-in> aes avx2")
    assert m("x", "x") and not m("x", "y") and m("", "")
    assert not m("1", "<in>")             # an operator without operand
    assert m("10", "< 5") is False and m("< 5", "< 5")   # '<' is no operator


def test_image_properties_unknown_values_are_invalid_input() -> None:
    t = table(host("h", supported_instances=[("x86_64", "qemu", "hvm")]))
    s = ref.Scheduler(t, cfg(filters=("ImagePropertiesFilter",)))
    for props in ({"hw_architecture": "not-an-arch"}, {"img_hv_type": "z"}, {"hw_vm_mode": ""},
                  {"img_hv_requested_version": "bogus"}, {"img_hv_requested_version": "> 1.0rc1"},
                  {"hw_maxphysaddr_bits": "wide"}):
        with pytest.raises(errors.InvalidInput):
            s.filter(spec(image=model.Image("img", props)))


@pytest.mark.parametrize("arch,ok", [
    ("x86_64", True), ("amd64", True), ("AMD64", True), ("aarch64", False),
    ("i386", False),
])
def test_image_properties_filter_canonicalizes_arch(arch: str, ok: bool) -> None:
    t = table(host("h", supported_instances=[("x86_64", "qemu", "hvm")]),
              host("i", supported_instances=[("i686", "kvm", "hvm")]))
    s = ref.Scheduler(t, cfg(filters=("ImagePropertiesFilter",)))
    got = passing(s, spec(image=model.Image("img", {"hw_architecture": arch})))
    assert ("h" in got) == ok
    if arch == "i386":
        assert got == ["i"]


def test_image_properties_filter_host_triples_are_canonicalized_too() -> None:
    t = table(host("h", supported_instances=[("AMD64", "xapi", "pv")]))
    s = ref.Scheduler(t, cfg(filters=("ImagePropertiesFilter",)))
    props = {"hw_architecture": "x86_64", "img_hv_type": "xen", "hw_vm_mode": "xen"}
    assert passing(s, spec(image=model.Image("img", props))) == ["h"]
    # no supported instances advertised: any compute property fails, none passes
    t2 = table(host("h"))
    s2 = ref.Scheduler(t2, cfg(filters=("ImagePropertiesFilter",)))
    assert passing(s2, spec(image=model.Image("img", {"hw_vm_mode": "hvm"}))) == []
    assert passing(s2, spec(image=model.Image("img", {"os_distro": "x"}))) == ["h"]
    # the default architecture applies to images without one
    s3 = ref.Scheduler(t2, cfg(filters=("ImagePropertiesFilter",),
                               image_properties_default_architecture="x86_64"))
    assert passing(s3, spec()) == []


@pytest.mark.parametrize("predicate,version,ok", [
    (">= 6.0", 6002000, True),         # '6.2' >= 6.0
    ("< 6.0", 6002000, False),
    (">=2.11, <7", 6002000, True),
    ("== 6.2.0", 6002000, True),       # PEP 440: trailing zeros do not count
    (">= 99", 0, True),                # hypervisor_version 0: not checked
])
def test_image_properties_filter_hv_requested_version(predicate: str, version: int,
                                                      ok: bool) -> None:
    t = table(host("h", supported_instances=[("x86_64", "kvm", "hvm")],
                   hypervisor_version=version))
    s = ref.Scheduler(t, cfg(filters=("ImagePropertiesFilter",)))
    props = {"img_hv_type": "kvm", "img_hv_requested_version": predicate}
    assert passing(s, spec(image=model.Image("img", props))) == (["h"] if ok else [])


def test_version_helpers() -> None:
    assert ref.convert_version_to_str(2011002) == "2.11.2"
    assert ref.convert_version_to_str(1000) == "1.0"
    assert ref.pep440_key("1.0") == ref.pep440_key("1.0.0")
    assert ref.pep440_key("1.0.dev1") < ref.pep440_key("1.0a1") < ref.pep440_key("1.0")
    assert ref.pep440_key("1.0") < ref.pep440_key("1.0.post1") < ref.pep440_key("1!0.1")
    assert ref.pep440_key("1.0+abc") > ref.pep440_key("1.0")
    with pytest.raises(ValueError):
        ref.pep440_key("1..0")


@pytest.mark.parametrize("restrict", [True, False])
def test_isolated_hosts_filter_matrix(restrict: bool) -> None:
    """nova/scheduler/filters/isolated_hosts_filter.py's docstring matrix."""
    t = table(host("iso"), host("plain"))
    s = ref.Scheduler(t, cfg(filters=("IsolatedHostsFilter",), isolated_hosts=("iso",),
                             isolated_images=("img-iso",),
                             restrict_isolated_hosts_to_isolated_images=restrict))
    iso_image = spec(image=model.Image("img-iso"))
    other_image = spec(image=model.Image("img-other"))
    no_image = spec()
    assert passing(s, iso_image) == ["iso"]
    assert passing(s, other_image) == (["plain"] if restrict else ["iso", "plain"])
    assert passing(s, no_image) == (["plain"] if restrict else ["iso", "plain"])
    # no isolated images configured
    s2 = ref.Scheduler(t, cfg(filters=("IsolatedHostsFilter",), isolated_hosts=("iso",),
                              restrict_isolated_hosts_to_isolated_images=restrict))
    assert passing(s2, iso_image) == (["plain"] if restrict else ["iso", "plain"])


def test_aggregate_io_ops_filter_minimum_and_fallback() -> None:
    aggs = (model.Aggregate("five", metadata={"max_io_ops_per_host": "5"}),
            model.Aggregate("three", metadata={"max_io_ops_per_host": " 3 "}),
            model.Aggregate("bad", metadata={"max_io_ops_per_host": "many"}))
    t = table(host("min3", num_io_ops=3, aggregates=["five", "three"]),   # 3 < 3: no
              host("min3ok", num_io_ops=2, aggregates=["five", "three"]),
              host("fallback", num_io_ops=7, aggregates=["three", "bad"]),  # 7 < 8 (option)
              host("none", num_io_ops=8), aggregates=aggs)                 # 8 < 8: no
    s = ref.Scheduler(t, cfg(filters=("AggregateIoOpsFilter",)))
    assert passing(s, spec()) == ["min3ok", "fallback"]
    s = ref.Scheduler(t, cfg(filters=("IoOpsFilter",), max_io_ops_per_host=3))
    assert passing(s, spec()) == ["min3ok"]


def test_aggregate_num_instances_and_type_affinity_and_tenancy() -> None:
    aggs = (model.Aggregate("g", metadata={"max_instances_per_host": "2",
                                           "instance_type": "m1, m2",
                                           "filter_tenant_id": "p1,p2"}),)
    t = table(host("in", num_instances=1, aggregates=["g"]), host("out", num_instances=60),
              aggregates=aggs)
    f = ref.Scheduler(t, cfg(filters=("AggregateNumInstancesFilter",)))
    assert passing(f, spec()) == ["in"]          # 1 < 2; 60 < 50 fails
    f = ref.Scheduler(t, cfg(filters=("AggregateTypeAffinityFilter",)))
    assert passing(f, spec(name="m2")) == ["in", "out"]
    assert passing(f, spec(name="m3")) == ["out"]
    f = ref.Scheduler(t, cfg(filters=("AggregateMultiTenancyIsolation",)))
    assert passing(f, spec(project_id="p2")) == ["in", "out"]
    assert passing(f, spec(project_id="p3")) == ["out"]


def test_aggregate_image_properties_isolation() -> None:
    aggs = (model.Aggregate("g", metadata={"os_distro": "ubuntu, centos", "other": "x"}),)
    t = table(host("in", aggregates=["g"]), host("out"), aggregates=aggs)
    s = ref.Scheduler(t, cfg(filters=("AggregateImagePropertiesIsolation",)))
    assert passing(s, spec(image=model.Image("i", {"os_distro": "centos"}))) == ["in", "out"]
    assert passing(s, spec(image=model.Image("i", {"os_distro": "arch"}))) == ["out"]
    assert passing(s, spec(image=model.Image("i", {}))) == ["in", "out"]


def test_same_and_different_host_hints() -> None:
    t = table(host("a", instances={"x": {}}), host("b", instances={"y": {}}), host("c"))
    s = ref.Scheduler(t, cfg(filters=("SameHostFilter", "DifferentHostFilter")))
    assert passing(s, spec(same_host=["x", "y"])) == ["a", "b"]
    assert passing(s, spec(different_host=["x"])) == ["b", "c"]


def test_once_per_request_filters_only_run_at_index_0() -> None:
    t = table(host("up"), host("down", up=False))
    s = ref.Scheduler(t, cfg(filters=("ComputeFilter", "NumInstancesFilter")))
    r0 = s.filter(spec(2), 0)
    r1 = s.filter(spec(2), 1)
    assert r0.mask == [True, False] and ("ComputeFilter", 1) in r0.rejections
    assert r1.mask == [True, True]
    assert [n for n, _ in r1.rejections][-1] == "NumInstancesFilter"
    assert "ComputeFilter" not in [n for n, _ in r1.rejections]


def test_rebuild_skips_filters_not_run_on_rebuild() -> None:
    t = table(host("down", up=False, supported_instances=[("x86_64", "kvm", "hvm")]),
              host("arm", supported_instances=[("aarch64", "kvm", "hvm")]))
    s = ref.Scheduler(t, cfg(filters=("ComputeFilter", "ImagePropertiesFilter")))
    image = model.Image("i", {"hw_architecture": "x86_64"})
    assert passing(s, spec(image=image, is_rebuild=True)) == ["down"]
    assert passing(s, spec(image=image)) == []


def test_force_hosts_skips_filters_and_ignore_hosts_is_case_insensitive() -> None:
    t = table(host("a", up=False), host("b"), host("c"))
    s = ref.Scheduler(t, cfg(filters=("ComputeFilter",)))
    r = s.filter(spec(force_hosts=["A"]))
    assert r.mask == [True, False, False]
    assert r.rejections[-1] == ("force_hosts", 2)
    assert passing(s, spec(force_hosts=["A"], is_rebuild=True)) == ["a"]  # rebuild: filters run
    r = s.filter(spec(ignore_hosts=["B"]))
    assert r.mask == [False, False, True]
    assert r.rejections[-2:] == [("ignore_hosts", 1), ("ComputeFilter", 1)]
    assert passing(s, spec(requested_host="c")) == ["c"]
    assert passing(s, spec(force_nodes=["B"])) == []                   # nodes: exact match


# ------------------------------------------------------------------------ placement stage


def test_no_valid_host_rejection_counts() -> None:
    t = table(host("off", enabled=False), host("small", ram=256),
              host("plain"), host("gold", traits=["CUSTOM_GOLD"]),
              host("gold-down", traits=["CUSTOM_GOLD"], up=False))
    s = ref.Scheduler(t, cfg(filters=("ComputeFilter",)))
    r = s.filter(spec(extra={"trait:CUSTOM_GOLD": "required"}))
    assert r.mask == [False, False, False, True, False]
    assert r.rejections == [("COMPUTE_STATUS_DISABLED", 1), ("VCPU", 0), ("MEMORY_MB", 1),
                            ("DISK_GB", 0), ("required_traits", 1), ("ComputeFilter", 1)]
    t.update_host("gold", enabled=False)
    with pytest.raises(errors.NoValidHost) as e:
        s.select_destinations(spec(extra={"trait:CUSTOM_GOLD": "required"}))
    assert e.value.rejections == [("COMPUTE_STATUS_DISABLED", 2), ("VCPU", 0),
                                  ("MEMORY_MB", 1), ("DISK_GB", 0), ("required_traits", 1),
                                  ("ComputeFilter", 1)]
    assert e.value.instance_index == 0


def test_resource_request_from_flavor() -> None:
    t = table(host("h", disk=10))
    s = ref.Scheduler(t, cfg())
    f = model.Flavor("f", 2, 1024, root_gb=8, ephemeral_gb=1, swap=1025)   # 8 + 1 + 2 > 10
    assert s.filter(model.RequestSpec(f, ["i"])).rejections[3] == ("DISK_GB", 1)
    [[sel]] = s.select_destinations(model.RequestSpec(f, ["i"], is_bfv=True), claim=False)
    assert sel.allocation == {"VCPU": 2, "MEMORY_MB": 1024, "DISK_GB": 3}
    f2 = model.Flavor("f", 2, 1024, 0, extra_specs={"resources:VCPU": "0"})
    [[sel]] = s.select_destinations(model.RequestSpec(f2, ["j"]), claim=False)
    assert sel.allocation == {"MEMORY_MB": 1024}
    assert [n for n, _ in s.filter(model.RequestSpec(f2, ["j"])).rejections] == [
        "COMPUTE_STATUS_DISABLED", "MEMORY_MB"]
    junk = model.Flavor("f", 2, 1024, 0, extra_specs={"resources:MEMORY_MB": "junk"})
    with pytest.raises(errors.InvalidInput, match="resources:MEMORY_MB"):
        s.filter(model.RequestSpec(junk, ["k"]))


def test_placement_units_are_checked_at_the_placement_stage() -> None:
    t = table(host("step2", vcpu=Inventory(8, step_size=2)), host("max1", vcpu=Inventory(8,
              max_unit=1)), host("ok"))
    s = ref.Scheduler(t, cfg())
    r = s.filter(spec(vcpus=2))
    assert r.mask == [True, False, True] and r.rejections[1] == ("VCPU", 1)
    assert s.filter(spec(vcpus=1)).mask == [False, True, True]


def test_availability_zone_and_aggregates() -> None:
    aggs = (model.Aggregate("z1", metadata={"availability_zone": "az1"}),
            model.Aggregate("z2", metadata={"availability_zone": "az2"}),
            model.Aggregate("plain"))
    t = table(host("a", aggregates=["z1"]), host("b", aggregates=["z2", "plain"]), host("c"),
              aggregates=aggs)
    assert [t.availability_zone(n) for n in "abc"] == ["az1", "az2", "nova"]
    s = ref.Scheduler(t, cfg())
    assert passing(s, spec(availability_zone="az2")) == ["b"]
    assert passing(s, spec(availability_zone="nowhere")) == ["a", "b", "c"]
    assert passing(s, spec(member_of=[["z1", "plain"]])) == ["a", "b"]
    assert passing(s, spec(forbidden_aggregates=["plain"])) == ["a", "c"]
    [[sel]] = s.select_destinations(spec(availability_zone="az2"), claim=False)
    assert sel.availability_zone == "az2"
    t.remove_aggregate("z2")
    assert t.availability_zone("b") == "nova" and t.host_aggregates("b") == ["plain"]


# ------------------------------------------------------------------------ selection


def test_all_or_nothing_rollback_and_claim_failures_count_as_resources() -> None:
    t = table(host("a", memory_mb=Inventory(1024)), host("b", memory_mb=Inventory(1024)))
    t.claim("other", {"a": {"VCPU": 1}})
    before = snapshot(t)
    s = ref.Scheduler(t, cfg())
    with pytest.raises(errors.NoValidHost) as e:
        s.select_destinations(spec(3, ram=1024))
    assert e.value.instance_index == 2
    # both hosts passed the (empty) filters at index 2, and both claims failed on RAM
    assert e.value.rejections == [("COMPUTE_STATUS_DISABLED", 0), ("VCPU", 0),
                                  ("MEMORY_MB", 2), ("DISK_GB", 0)]
    assert snapshot(t) == before


def test_claim_true_persists_allocations_consumption_and_instances() -> None:
    t = table(host("a"), host("b", free_ram_mb=4096))
    s = ref.Scheduler(t, cfg(weighers=("RAMWeigher",)))
    gen = t.generation("a")
    sels = s.select_destinations(spec(2, ram=1024, disk=2,
                                      image=model.Image("img", {"os_distro": "u"})))
    # 8192 -> 7168 still beats 4096
    assert [x[0].host for x in sels] == ["a", "a"]
    assert t.allocations("i0") == {"a": {"VCPU": 1, "MEMORY_MB": 1024, "DISK_GB": 2}}
    assert t.usage("a") == {"VCPU": 2, "MEMORY_MB": 2048, "DISK_GB": 4}
    assert t.generation("a") == gen + 2
    row = t._by_name["a"]
    assert (row.free_ram_mb, row.free_disk_mb, row.vcpus_used, row.num_instances,
            row.num_io_ops) == (8192 - 2048, (100 - 4) * 1024, 2, 2, 2)
    assert row.instances["i1"] == {"os_distro": "u"}
    with pytest.raises(errors.ClaimConflict):
        s.select_destinations(spec(1))   # i0 already holds allocations


def test_claim_false_changes_nothing() -> None:
    t = table(host("a"), host("b"))
    before = snapshot(t)
    sels = ref.Scheduler(t).select_destinations(spec(2), claim=False)
    assert len(sels) == 2
    assert snapshot(t) == before and t.consumers() == []


def test_host_subset_size_and_seed_determinism() -> None:
    t = table(*(host(f"h{k}") for k in range(5)))
    s = ref.Scheduler(t, cfg(host_subset_size=3))
    picks = {s.select_destinations(spec(), claim=False, seed=seed)[0][0].host
             for seed in range(40)}
    assert picks == {"h0", "h1", "h2"}     # equal weights keep table order
    for seed in (0, 1, 7, 12345):
        expected = f"h{random.Random(seed).choice([0, 1, 2])}"
        got = [s.select_destinations(spec(), claim=False, seed=seed)[0][0].host
               for _ in range(2)]
        assert got == [expected, expected]


def test_shuffle_best_same_weighed_hosts() -> None:
    t = table(*(host(f"h{k}") for k in range(4)), host("low", free_ram_mb=10))
    s = ref.Scheduler(t, cfg(weighers=("RAMWeigher",), shuffle_best_same_weighed_hosts=True))
    picks = {s.select_destinations(spec(), claim=False, seed=seed)[0][0].host
             for seed in range(40)}
    assert picks == {"h0", "h1", "h2", "h3"}
    for seed in (3, 4):
        r = random.Random(seed)
        best = [0, 1, 2, 3]
        r.shuffle(best)
        chosen = r.choice(best[:1])
        assert s.select_destinations(spec(), claim=False, seed=seed)[0][0].host == f"h{chosen}"


def test_alternates_exclude_selected_hosts_and_stay_in_the_cell() -> None:
    t = table(host("a", free_ram_mb=8000), host("b", free_ram_mb=7000),
              host("c", free_ram_mb=6000, cell="other"), host("d", free_ram_mb=5000),
              host("e", free_ram_mb=4000))
    s = ref.Scheduler(t, cfg(weighers=("RAMWeigher",), max_attempts=3))
    # i0 -> a (8000 -> 6000), i1 -> b (7000 -> 5000); then the last pass is filtered,
    # weighed and sorted again: a 6000, c 6000, b 5000, d 5000, e 4000 -> a c b d e
    sels = s.select_destinations(spec(2, ram=2000))
    assert [[x.host for x in lst] for lst in sels] == [["a", "d", "e"], ["b", "d", "e"]]
    # alternates carry their weight in that final list; selected hosts their pass's
    assert sels[0][1].weight == pytest.approx(5000 / 6000)
    assert (sels[0][0].weight, sels[1][0].weight) == (1.0, 1.0)
    assert all(x.allocation == {"VCPU": 1, "MEMORY_MB": 2000, "DISK_GB": 1}
               for lst in sels for x in lst)
    one = model.RequestSpec(model.Flavor("m", 1, 100, 1), ["z"])
    assert [len(x) for x in s.select_destinations(one, return_alternates=False)] == [1]


def test_selection_rows_follow_removals() -> None:
    t = table(host("a"), host("b", free_ram_mb=100), host("c"))
    t.remove_host("a")
    assert t.host_names() == ["b", "c"] and len(t) == 2
    sels = ref.Scheduler(t, cfg(weighers=("RAMWeigher",))).select_destinations(spec())
    assert [(x.host, x.row, x.host_uuid) for x in sels[0]] == [("c", 1, "uuid-c"),
                                                              ("b", 0, "uuid-b")]
    with pytest.raises(errors.ClaimConflict):
        t.remove_host("c")     # i0 holds allocations on it


# ------------------------------------------------------------------------ claims


def test_capacity_formula() -> None:
    t = table(host("h", vcpu=Inventory(10, reserved=2, allocation_ratio=1.5),
                   memory_mb=Inventory(10, allocation_ratio=1.1)))
    # int((10 - 2) * 1.5) = 12; int(10 * 1.1) = int(11.000000000000002) = 11
    assert t.capacity("h") == {"VCPU": 12, "MEMORY_MB": 11, "DISK_GB": 100}
    t.claim("c1", {"h": {"VCPU": 12, "MEMORY_MB": 11}})
    with pytest.raises(errors.CapacityExceeded):
        t.claim("c2", {"h": {"VCPU": 1}})
    assert t.usage("h") == {"VCPU": 12, "MEMORY_MB": 11, "DISK_GB": 0}


@pytest.mark.parametrize("inv,amount,ok", [
    (Inventory(16, max_unit=4), 5, False),
    (Inventory(16, max_unit=4), 4, True),
    (Inventory(16, step_size=2), 3, False),
    (Inventory(16, step_size=2), 4, True),
    (Inventory(16, min_unit=2), 1, False),
])
def test_claim_units(inv: Any, amount: int, ok: bool) -> None:
    t = table(host("h", vcpu=inv))
    if ok:
        t.claim("c", {"h": {"VCPU": amount}})
        assert t.usage("h")["VCPU"] == amount
    else:
        with pytest.raises(errors.CapacityExceeded):
            t.claim("c", {"h": {"VCPU": amount}})
        assert t.consumers() == [] and t.generation("h") == 0


def test_generations() -> None:
    t = table(host("a"), host("b"))
    assert t.claim("c", {"a": {"VCPU": 1}}, generations={"a": 0}) == {"a": 1}
    with pytest.raises(errors.GenerationConflict):
        t.claim("d", {"a": {"VCPU": 1}}, generations={"a": 0})
    assert t.consumers() == ["c"] and t.generation("a") == 1
    assert t.set_inventory("a", "VCPU", Inventory(16), generation=1) == 2
    with pytest.raises(errors.GenerationConflict):
        t.set_inventory("a", "VCPU", Inventory(32), generation=1)
    # moving the consumer bumps both hosts, including the one it left
    assert t.replace("c", {"b": {"VCPU": 2}}) == {"a": 3, "b": 1}
    t.update_host("b", traits=["CUSTOM_X"])
    assert t.generation("b") == 2
    t.update_host("b", free_ram_mb=10)     # the compute view is not Placement's
    assert t.generation("b") == 2


def test_replace_may_shrink_an_over_capacity_usage() -> None:
    t = table(host("h", vcpus=8))
    t.claim("c", {"h": {"VCPU": 8}})
    t.set_inventory("h", "VCPU", Inventory(4))       # shrinking below usage is allowed
    with pytest.raises(errors.CapacityExceeded):
        t.claim("d", {"h": {"VCPU": 1}})
    t.replace("c", {"h": {"VCPU": 6}})               # 6 > 4, but lower than 8
    assert t.usage("h")["VCPU"] == 6
    with pytest.raises(errors.CapacityExceeded):
        t.replace("c", {"h": {"VCPU": 7}})           # increases an over-capacity usage
    t.replace("c", {})                               # empty: releases
    assert t.usage("h")["VCPU"] == 0 and t.consumers() == []


def test_release_restores_usage() -> None:
    t = table(host("a"), host("b"))
    t.claim("c", {"a": {"VCPU": 2, "MEMORY_MB": 512}, "b": {"DISK_GB": 5}})
    assert t.allocations("c") == {"a": {"VCPU": 2, "MEMORY_MB": 512}, "b": {"DISK_GB": 5}}
    with pytest.raises(errors.ClaimConflict):
        t.claim("c", {"a": {"VCPU": 1}})
    t.release("c")
    assert t.usage("a") == t.usage("b") == {"VCPU": 0, "MEMORY_MB": 0, "DISK_GB": 0}
    assert (t.generation("a"), t.generation("b")) == (2, 2)
    with pytest.raises(errors.UnknownConsumer):
        t.release("c")
    assert t.allocations("c") == {}


# ------------------------------------------------------------------------ validation


@pytest.mark.parametrize("inv", [
    Inventory(-1), Inventory(8, reserved=-1), Inventory(8, reserved=9),
    Inventory(8, allocation_ratio=float("nan")), Inventory(8, allocation_ratio=float("inf")),
    Inventory(8, allocation_ratio=0.0), Inventory(8, allocation_ratio=-1.0),
    Inventory(8, min_unit=4, max_unit=2), Inventory(8, min_unit=0), Inventory(8, step_size=0),
    Inventory(8.5),
    Inventory(True),
])
def test_invalid_inventories_are_refused(inv: Any) -> None:
    t = table(host("a"))
    with pytest.raises(errors.InvalidInput):
        t.add_host(host("b", vcpu=inv))
    with pytest.raises(errors.InvalidInput):
        t.set_inventory("a", "VCPU", inv)
    assert t.host_names() == ["a"] and t.inventory("a", "VCPU") == Inventory(8)
    assert t.generation("a") == 0


def test_invalid_inputs_leave_the_table_unchanged() -> None:
    t = table(host("a"), aggregates=(model.Aggregate("g"),))
    with pytest.raises(errors.InvalidInput):
        t.add_host(host("a", uuid="other"))              # duplicate name
    with pytest.raises(errors.InvalidInput):
        t.add_host(host("b", uuid="uuid-a"))             # duplicate uuid
    with pytest.raises(errors.UnknownAggregate):
        t.add_host(host("b", aggregates=["nope"]))
    with pytest.raises(errors.InvalidInput):
        t.update_host("a", free_ram_mb=1, colour="blue")  # unknown field: nothing set
    assert t._by_name["a"].free_ram_mb == 8192
    with pytest.raises(errors.InvalidInput):
        t.update_host("a", num_io_ops=-1)
    with pytest.raises(errors.UnknownHost):
        t.update_host("zz", num_io_ops=1)
    with pytest.raises(errors.InvalidInput):
        t.claim("c", {"a": {"VCPU": 1.0}})                # not an int
    with pytest.raises(errors.InvalidInput):
        t.claim("c", {"a": {"VCPU": 0}})
    with pytest.raises(errors.InvalidInput):
        t.claim("c", {"a": {"PCPU": 1}})
    with pytest.raises(errors.UnknownHost):
        t.claim("c", {"zz": {"VCPU": 1}})
    with pytest.raises(errors.UnknownAggregate):
        t.add_host_to_aggregate("nope", "a")
    with pytest.raises(errors.InvalidInput):
        t.remove_instance("nope")
    assert t.consumers() == [] and t.host_names() == ["a"] and t.generation("a") == 0


def test_invalid_requests() -> None:
    s = ref.Scheduler(table(host("a")))
    with pytest.raises(errors.InvalidInput):
        s.select_destinations(model.RequestSpec(model.Flavor("f", -1, 512), ["i"]))
    with pytest.raises(errors.InvalidInput):
        s.select_destinations(model.RequestSpec(model.Flavor("f", 1, 512), []))
    with pytest.raises(errors.InvalidInput):
        s.select_destinations(model.RequestSpec(model.Flavor("f", 1, 512), ["i", "i"]))
    with pytest.raises(errors.InvalidInput):
        s.filter(spec(2), index=2)
    with pytest.raises(errors.InvalidInput):
        s.filter(spec(extra={"resources:CUSTOM_X": "1"}))
    assert s.prepare(spec()) == spec()


def test_instances_bookkeeping() -> None:
    t = table(host("a"), host("b"))
    t.add_instance("a", "x", {"os_distro": "u"})
    with pytest.raises(errors.InvalidInput):
        t.add_instance("b", "x")
    assert t.instances_on("a") == ["x"]
    t.remove_instance("x")
    assert t.instances_on("a") == []
    assert math.isnan(ref.Scheduler(t, cfg(filters=("SameHostFilter",))).weigh(
        spec(same_host=["x"]))[0])
