"""Hypothesis strategies for random clouds, scheduler options and requests.

Values come from small pools on purpose: small pools make weight ties, full hosts,
shared aggregates and group collisions common, which is where scheduling rules differ.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from hypothesis import strategies as st

from novalite.placement import model
from novalite.placement.config import AVAILABLE_FILTERS, SchedulerConfig

BIG = model.MAX_UNIT_DEFAULT
AGG_UUIDS = ("agg-a", "agg-b", "agg-c")
TRAITS = ("HW_A", "HW_B", "CUSTOM_X")
METRIC = "cpu.percent"


@dataclass
class Cloud:
    hosts: list[model.Host]
    aggregates: list[model.Aggregate]
    instances: list[str] = field(default_factory=list)


def inventories(totals: tuple[int, ...]) -> st.SearchStrategy[model.Inventory]:
    @st.composite
    def build(draw: st.DrawFn) -> model.Inventory:
        total = draw(st.sampled_from(totals))
        reserved = draw(st.sampled_from((0, 0, 0, 1))) if total else 0
        return model.Inventory(
            total=total,
            reserved=min(reserved, total),
            allocation_ratio=draw(st.sampled_from((1.0, 1.0, 1.5, 2.0, 4.0))),
            min_unit=draw(st.sampled_from((1, 1, 1, 2))),
            max_unit=draw(st.sampled_from((BIG, BIG, BIG, 2, 4, 1024))),
            step_size=draw(st.sampled_from((1, 1, 1, 2))),
        ) if total else model.Inventory(total=0)
    return build()


METADATA_CHOICES: dict[str, tuple[str, ...]] = {
    "availability_zone": ("az1", "az2"),
    "filter_tenant_id": ("p1", "p1,p2"),
    "filter_tenant_id_2": ("p3",),
    "instance_type": ("f1", "f1, f2"),
    "max_io_ops_per_host": ("2", "5", "x"),
    "max_instances_per_host": ("3", "1"),
    "ram_weight_multiplier": ("-1.0", "2", "nan", "inf", "0"),
    "cpu_weight_multiplier": ("0.5", "-2"),
    "io_ops_weight_multiplier": ("3",),
    "build_failure_weight_multiplier": ("10",),
    "ssd": ("true", "false", "true, yes"),
    "hw_architecture": ("x86_64", "aarch64"),
}


@st.composite
def aggregates(draw: st.DrawFn) -> list[model.Aggregate]:
    out = []
    for uuid in AGG_UUIDS[: draw(st.integers(0, len(AGG_UUIDS)))]:
        keys = draw(st.lists(st.sampled_from(sorted(METADATA_CHOICES)), max_size=3, unique=True))
        meta = {k: draw(st.sampled_from(METADATA_CHOICES[k])) for k in keys}
        out.append(model.Aggregate(uuid, uuid, meta))
    return out


TRIPLES = (("x86_64", "qemu", "hvm"), ("x86_64", "kvm", "hvm"), ("aarch64", "qemu", "hvm"),
           ("AMD64", "QEMU", "HVM"), ("i686", "kvm", "xen"))
CPU_INFOS: tuple[dict[str, Any], ...] = (
    {}, {}, {"maxphysaddr": {"bits": 39}}, {"maxphysaddr": {"bits": 46}},
    {"vendor": "Intel", "features": ["avx", "aes"]}, {"topology": {"cores": 8}},
)
IMAGE_PROPS = ({}, {"os_distro": "ubuntu"}, {"os_distro": "fedora", "hw_architecture": "x86_64"})


@st.composite
def clouds(draw: st.DrawFn, max_hosts: int = 10) -> Cloud:
    aggs = draw(aggregates())
    n = draw(st.integers(1, max_hosts))
    hosts = []
    instances: list[str] = []
    for i in range(n):
        vcpu = draw(inventories((0, 1, 2, 4, 8)))
        mem = draw(inventories((0, 512, 1024, 2048, 4096)))
        disk = draw(inventories((0, 10, 20, 40)))
        own = [f"inst-{i}-{k}" for k in range(draw(st.integers(0, 2)))]
        instances += own
        hosts.append(model.Host(
            name=f"h{i}",
            uuid=f"uuid-{i}",
            vcpu=vcpu,
            memory_mb=mem,
            disk_gb=disk,
            vcpus_used=draw(st.sampled_from((0, 0, 1, 3))),
            free_ram_mb=draw(st.sampled_from((None, None, -256, 0, 512, 1024, 4096))),
            free_disk_mb=draw(st.sampled_from((None, None, 0, 10240, 20480))),
            num_instances=draw(st.sampled_from((0, 0, 1, 2, 3))),
            num_io_ops=draw(st.sampled_from((0, 0, 1, 2, 5))),
            failed_builds=draw(st.sampled_from((0, 0, 0, 1, 3))),
            enabled=draw(st.sampled_from((True, True, True, False))),
            up=draw(st.sampled_from((True, True, True, False))),
            hypervisor_type=draw(st.sampled_from(("QEMU", "QEMU", "kvm"))),
            hypervisor_version=draw(st.sampled_from((0, 6002000, 7000000, 8001002))),
            supported_instances=draw(st.lists(st.sampled_from(TRIPLES), max_size=2, unique=True)),
            cpu_info=draw(st.sampled_from(CPU_INFOS)),
            stats=draw(st.sampled_from(({}, {"gpu": "2"}, {"gpu": "0", "rack": "r1"}))),
            metrics=draw(st.sampled_from(({}, {METRIC: 10.0}, {METRIC: 55.5}, {METRIC: 90.0}))),
            aggregates=draw(st.lists(st.sampled_from([a.uuid for a in aggs]), unique=True))
            if aggs else [],
            traits=draw(st.lists(st.sampled_from(TRAITS), unique=True)),
            instances={u: draw(st.sampled_from(IMAGE_PROPS)) for u in own},
            cell=draw(st.sampled_from(("", "", "c1", "c2"))),
            free_pci_devs=draw(st.sampled_from((0, 0, 0, 5, 120))),
            host_ip=f"10.0.0.{i}",
        ))
    return Cloud(hosts, aggs, instances)


@st.composite
def configs(draw: st.DrawFn) -> SchedulerConfig:
    filters = draw(st.lists(st.sampled_from(AVAILABLE_FILTERS), unique=True, max_size=10))
    m = st.sampled_from((1.0, 1.0, 0.0, -1.0, 2.5))
    metrics = draw(st.sampled_from(({}, {}, {METRIC: 1.0}, {METRIC: -0.5})))
    return SchedulerConfig(
        enabled_filters=filters,
        host_subset_size=draw(st.sampled_from((1, 1, 1, 2, 3))),
        shuffle_best_same_weighed_hosts=draw(st.sampled_from((False, False, True))),
        max_io_ops_per_host=draw(st.sampled_from((8, 3))),
        max_instances_per_host=draw(st.sampled_from((50, 4))),
        ram_weight_multiplier=draw(m),
        cpu_weight_multiplier=draw(m),
        disk_weight_multiplier=draw(m),
        io_ops_weight_multiplier=draw(st.sampled_from((-1.0, 0.0, 1.0))),
        num_instances_weight_multiplier=draw(st.sampled_from((0.0, 0.0, -1.0, 1.0))),
        hypervisor_version_weight_multiplier=draw(m),
        build_failure_weight_multiplier=draw(st.sampled_from((1000000.0, 0.0, 1.0))),
        cross_cell_move_weight_multiplier=draw(st.sampled_from((1000000.0, 1.0))),
        pci_weight_multiplier=draw(st.sampled_from((1.0, 0.0, 2.0))),
        soft_affinity_weight_multiplier=draw(st.sampled_from((1.0, 0.0, 3.0))),
        soft_anti_affinity_weight_multiplier=draw(st.sampled_from((1.0, 0.0, 3.0))),
        image_props_weight_multiplier=draw(st.sampled_from((0.0, 0.0, 1.0, -2.0))),
        image_props_weight_setting=draw(st.sampled_from(({}, {}, {"os_distro": 2.0}))),
        image_properties_default_architecture=draw(st.sampled_from((None, None, "x86_64"))),
        isolated_images=draw(st.sampled_from(((), (), ("img-iso",)))),
        isolated_hosts=draw(st.sampled_from(((), ("h0",), ("h1", "h2")))),
        restrict_isolated_hosts_to_isolated_images=draw(st.booleans()),
        aggregate_image_properties_isolation_namespace=draw(st.sampled_from((None, None, "hw"))),
        aggregate_image_properties_isolation_separator=draw(st.sampled_from((".", "_"))),
        max_attempts=draw(st.sampled_from((1, 2, 3, 4))),
        metrics_weight_setting=metrics,
        metrics_required=draw(st.sampled_from((False, False, True))),
        metrics_weight_of_unavailable=-10000.0,
    )


EXTRA_SPECS: tuple[dict[str, str], ...] = (
    {}, {}, {},
    {"ssd": "true"},
    {"aggregate_instance_extra_specs:ssd": "<or> true <or> yes"},
    {"capabilities:hypervisor_type": "s== QEMU"},
    {"hypervisor_type": "kvm"},
    {"free_ram_mb": ">= 1024"},
    {"capabilities:cpu_info:vendor": "Intel"},
    {"capabilities:cpu_info:features": "<in> avx"},
    {"capabilities:cpu_info:topology:cores": "= 4"},
    {"gpu": ">= 1"},
    {"capabilities:gpu": "s== 2"},
    {"hw:maxphysaddr_bits": "40"},
    {"trait:HW_A": "required"},
    {"trait:HW_B": "forbidden", "hw:cpu_policy": "dedicated"},
    {"resources:DISK_GB": "0"},
    {"num_instances": "<= 1"},
    {"vcpus_total": "== 4"},
    {"cpu_allocation_ratio": "s== 1.0"},
    {"instances": "x"},
)
IMAGES: tuple[model.Image | None, ...] = (
    None, None,
    model.Image("img-1", {"os_distro": "ubuntu"}),
    model.Image("img-iso", {"hw_architecture": "x86_64"}),
    model.Image("img-2", {"img_hv_type": "qemu", "img_hv_requested_version": ">= 6.0"}),
    model.Image("img-3", {"hw_architecture": "amd64", "hw_vm_mode": "hvm", "os_distro": "fedora"}),
    model.Image("img-4", {"hw_maxphysaddr_bits": "42", "img_hv_type": "kvm"}),
    model.Image("img-5", {"hw_architecture": "aarch64", "ssd": "true"}),
)


@st.composite
def requests(draw: st.DrawFn, cloud: Cloud, max_instances: int = 5,
             uuid_prefix: str = "new") -> model.RequestSpec:
    names = [h.name for h in cloud.hosts]
    n = draw(st.integers(1, max_instances))
    uuids = [f"{uuid_prefix}-{k}" for k in range(n)]
    existing = cloud.instances
    flavor = model.Flavor(
        name=draw(st.sampled_from(("f1", "f2", "f3"))),
        vcpus=draw(st.sampled_from((1, 1, 2, 4))),
        memory_mb=draw(st.sampled_from((0, 256, 512, 1024, 2048))),
        root_gb=draw(st.sampled_from((0, 1, 10, 20))),
        ephemeral_gb=draw(st.sampled_from((0, 0, 2))),
        swap=draw(st.sampled_from((0, 0, 512, 1025))),
        extra_specs=draw(st.sampled_from(EXTRA_SPECS)),
    )
    group = None
    if draw(st.integers(0, 2)) == 0:
        policy = draw(st.sampled_from(("affinity", "anti-affinity", "soft-affinity", "soft-anti-affinity")))
        members = uuids + draw(st.lists(st.sampled_from(existing), unique=True)) if existing else uuids
        group = model.InstanceGroup(
            uuid="group-1",
            policy=policy,
            members=members,
            hosts=draw(st.lists(st.sampled_from(names), max_size=2, unique=True)),
            max_server_per_host=draw(st.sampled_from((None, 2))) if policy == "anti-affinity" else None,
        )
    pick_existing = st.lists(st.sampled_from(existing), max_size=2, unique=True) if existing else st.just([])
    maybe_hosts = st.lists(st.sampled_from(names + ["H0", "nowhere"]), max_size=2, unique=True)
    return model.RequestSpec(
        flavor=flavor,
        instance_uuids=uuids,
        image=draw(st.sampled_from(IMAGES)),
        project_id=draw(st.sampled_from(("p1", "p2", "p3"))),
        instance_group=group,
        same_host=draw(pick_existing) if draw(st.integers(0, 5)) == 0 else [],
        different_host=draw(pick_existing) if draw(st.integers(0, 5)) == 0 else [],
        availability_zone=draw(st.sampled_from((None, None, None, "az1", "az2", "nowhere"))),
        required_traits=draw(st.lists(st.sampled_from(TRAITS), max_size=1)),
        forbidden_traits=draw(st.lists(st.sampled_from(("CUSTOM_X",)), max_size=1)),
        member_of=draw(st.sampled_from(([], [], [["agg-a"]], [["agg-a", "agg-b"], ["agg-c"]]))),
        forbidden_aggregates=draw(st.sampled_from(([], [], ["agg-b"]))),
        ignore_hosts=draw(maybe_hosts) if draw(st.integers(0, 4)) == 0 else [],
        force_hosts=draw(maybe_hosts) if draw(st.integers(0, 6)) == 0 else [],
        force_nodes=draw(maybe_hosts) if draw(st.integers(0, 8)) == 0 else [],
        requested_host=draw(st.sampled_from(names)) if draw(st.integers(0, 6)) == 0 else None,
        requested_cell=draw(st.sampled_from((None, "c1"))),
        allow_cross_cell_move=draw(st.booleans()),
        is_bfv=draw(st.sampled_from((False, False, True))),
        is_rebuild=draw(st.sampled_from((False, False, False, True))),
    )
