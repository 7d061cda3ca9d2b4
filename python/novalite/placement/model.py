"""Plain data types shared by the Rust core's facade and the pure-Python reference.

These mirror the Nova objects the scheduler reads (``ComputeNode``/``HostState``,
``Flavor``, ``ImageMeta``, ``InstanceGroup``, ``RequestSpec``, ``Selection``) and the
Placement records that gate capacity (``Inventory``). They carry data only: every
check lives in the core (and, independently, in ``novalite.placement.reference``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal, Mapping, NamedTuple, Sequence

# the domain's own, which the scheduler reads as they are (re-exported)
from novalite.objects.records import MAX_INT
from novalite.objects.records import RESOURCE_CLASSES as RESOURCE_CLASSES
from novalite.objects.records import Flavor as Flavor
from novalite.objects.records import Inventory as Inventory
from novalite.objects.records import ResourceClass as ResourceClass

# Placement's INVENTORY_DEFAULTS: max_unit is "as large as possible".
MAX_UNIT_DEFAULT = MAX_INT

GroupPolicy = Literal["affinity", "anti-affinity", "soft-affinity", "soft-anti-affinity"]


@dataclass(frozen=True)
class Aggregate:
    """A host aggregate. Its metadata feeds the Aggregate* filters, the per-aggregate
    weight multipliers, and the availability zone (key ``availability_zone``)."""

    uuid: str
    name: str = ""
    metadata: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Host:
    """One compute node: its Placement inventories and the compute-node view that
    Nova's filters and weighers read (``HostState``).

    ``free_ram_mb``/``free_disk_mb`` default to what Nova's resource tracker reports
    for an empty host (reserved amounts count as used):
    ``memory_mb.total - memory_mb.reserved`` and
    ``(disk_gb.total - disk_gb.reserved) * 1024``. ``vcpus_total`` is
    ``vcpu.total``; the weighers read the ratios from the inventories.
    """

    name: str
    uuid: str
    vcpu: Inventory
    memory_mb: Inventory
    disk_gb: Inventory
    # compute-node view (nova.scheduler.host_manager.HostState)
    vcpus_used: int = 0
    free_ram_mb: int | None = None
    free_disk_mb: int | None = None
    num_instances: int = 0
    num_io_ops: int = 0
    failed_builds: int = 0
    # service state: ComputeFilter and the COMPUTE_STATUS_DISABLED pre-filter
    enabled: bool = True
    up: bool = True
    hypervisor_type: str = "QEMU"
    hypervisor_version: int = 0
    # (architecture, hypervisor type, vm mode) triples the node can run
    supported_instances: Sequence[tuple[str, str, str]] = ()
    # libvirt's cpu_info, as a JSON-able dict (``maxphysaddr.bits`` is read)
    cpu_info: Mapping[str, object] = field(default_factory=dict)
    # ComputeNode.stats: string keys and string values
    stats: Mapping[str, str] = field(default_factory=dict)
    # monitor metrics: name -> value (MetricsFilter, MetricsWeigher)
    metrics: Mapping[str, float] = field(default_factory=dict)
    # uuids of the aggregates the host belongs to (see HostTable.set_aggregate)
    aggregates: Sequence[str] = ()
    traits: Sequence[str] = ()
    # instances on the host: uuid -> the image properties it was booted from
    instances: Mapping[str, Mapping[str, str]] = field(default_factory=dict)
    cell: str = ""
    free_pci_devs: int = 0
    host_ip: str = ""


@dataclass(frozen=True)
class Image:
    id: str | None = None
    properties: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class InstanceGroup:
    """A server group as the conductor hands it to the scheduler: ``members``
    already include the uuids of the instances being scheduled, ``hosts`` the hosts
    of members already placed."""

    uuid: str
    policy: GroupPolicy
    members: Sequence[str] = ()
    hosts: Sequence[str] = ()
    max_server_per_host: int | None = None  # rules.max_server_per_host


@dataclass(frozen=True)
class RequestSpec:
    """What select_destinations is asked to place.

    ``instance_uuids`` has one uuid per instance to place (Nova's multi-create).
    The resource request is derived from the flavor as Nova's
    ``ResourceRequest.from_request_spec`` does: VCPU = vcpus, MEMORY_MB = memory_mb,
    DISK_GB = root_gb (0 when booted from volume) + ephemeral_gb + ceil(swap/1024),
    with ``resources:RC=N`` extra specs overriding, and ``trait:T=required|forbidden``
    extra specs adding to ``required_traits``/``forbidden_traits``.
    """

    flavor: Flavor
    instance_uuids: Sequence[str]
    image: Image | None = None
    project_id: str = ""
    user_id: str = ""
    instance_group: InstanceGroup | None = None
    # scheduler hints
    same_host: Sequence[str] = ()
    different_host: Sequence[str] = ()
    availability_zone: str | None = None
    # Placement query parts
    required_traits: Sequence[str] = ()
    forbidden_traits: Sequence[str] = ()
    member_of: Sequence[Sequence[str]] = ()  # AND of (OR of aggregate uuids)
    forbidden_aggregates: Sequence[str] = ()
    # host narrowing
    ignore_hosts: Sequence[str] = ()
    force_hosts: Sequence[str] = ()
    force_nodes: Sequence[str] = ()
    requested_host: str | None = None
    requested_node: str | None = None
    requested_cell: str | None = None
    allow_cross_cell_move: bool = False
    is_bfv: bool = False
    is_rebuild: bool = False


class Selection(NamedTuple):
    """One host chosen (or offered as an alternate) for one instance. A named tuple:
    a batch of 10,000 servers returns 30,000 of them, and they must be cheap."""

    host: str
    host_uuid: str
    row: int
    allocation: Mapping[str, int]
    availability_zone: str
    cell: str
    weight: float


@dataclass(frozen=True)
class FilterResult:
    """The boolean mask of passing hosts (one entry per table row) and, in the order
    the checks ran, how many hosts each one removed."""

    mask: "object"  # numpy.ndarray[bool]; kept loose so the reference needs no numpy
    rejections: Sequence[tuple[str, int]]
