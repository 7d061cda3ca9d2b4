"""The domain's records: frozen, plain values, what the database returns and what
every layer passes around (each converts to its own wire or row format at its edge:
convert.py for protobuf, db/ for rows).

They are copied out of the transaction that read them, so callers may keep them,
pass them between threads and serialise them without touching a session.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal, Mapping

from novalite.objects.states import api_status

# The placement API's upper bound for max_unit (a signed 32-bit integer).
MAX_INT = 2**31 - 1
# The resource classes every host has an inventory of (Placement's standard ones
# novalite models).
ResourceClass = Literal["VCPU", "MEMORY_MB", "DISK_GB"]
RESOURCE_CLASSES: tuple[ResourceClass, ...] = ("VCPU", "MEMORY_MB", "DISK_GB")
# Traits with this prefix describe a host's CPU: its compute agent reports them
# (novalite.virt.cpu_traits) and owns them; admins set the others.
CPU_TRAIT_PREFIX = "HW_CPU_"


@dataclass(frozen=True)
class Flavor:
    """Nova's flavor: the sizes a server gets, and the extra specs the scheduler
    reads. The one flavor of every layer: the API's and the database's (with an id
    and dates), the scheduler's request (the placement core reads its sizes and
    extra specs), the compute agent's guest."""

    name: str
    vcpus: int
    memory_mb: int
    root_gb: int = 0
    ephemeral_gb: int = 0
    swap: int = 0  # MiB, Nova's unit
    extra_specs: Mapping[str, str] = field(default_factory=dict)
    id: str = ""
    is_public: bool = True
    created_at: datetime | None = None
    deleted_at: datetime | None = None

    @property
    def disk_mb(self) -> int:
        """What a guest takes of its host's disk, as Nova's resource tracker counts
        it: root + ephemeral (GiB) + swap (MiB)."""
        return (self.root_gb + self.ephemeral_gb) * 1024 + self.swap

    def amounts(self) -> dict[str, int]:
        """Placement's resources for the flavor, without its extra specs
        (nova.scheduler.utils.resources_from_flavor): swap rounds up to whole GiB
        of DISK_GB. The scheduler's request adds the resources:* overrides."""
        disk = self.root_gb + self.ephemeral_gb + -(-self.swap // 1024)
        return {rc: n for rc, n in (("VCPU", self.vcpus), ("MEMORY_MB", self.memory_mb),
                                    ("DISK_GB", disk)) if n > 0}

    def resize_growth(self, new: Flavor) -> dict[str, int]:
        """What a resize from this flavor to ``new`` takes of its project's quota
        when it starts: an upsize's growth (Nova's _check_quota_for_upsize). Until
        it is confirmed or reverted the server counts the larger of the two; a
        revert gives the growth back, a confirmed downsize the difference
        (``new.resize_growth(self)``)."""
        return {"cores": max(0, new.vcpus - self.vcpus),
                "ram": max(0, new.memory_mb - self.memory_mb)}


@dataclass(frozen=True)
class Image:
    """A registered image: a local disk file, its format, and the properties
    ImagePropertiesFilter reads."""

    id: str
    name: str
    path: str
    disk_format: str = "qcow2"
    size_bytes: int | None = None
    properties: Mapping[str, Any] = field(default_factory=dict)
    created_at: datetime | None = None
    deleted_at: datetime | None = None
    checksum: str | None = None  # Glance's: the file's MD5, hex


@dataclass(frozen=True)
class KeyPair:
    """Nova's key pair: a user's named public SSH key. ``private_key`` only in the
    answer to the create that generated it (never stored)."""

    name: str
    user_id: str
    fingerprint: str
    public_key: str
    type: str = "ssh"
    created_at: datetime | None = None
    private_key: str | None = None


@dataclass(frozen=True)
class Network:
    """A network of Nova's flat DHCP kind: a bridge on the compute hosts with a
    DHCP server on it, and the subnet fixed IPs are handed out of."""

    id: str
    name: str
    cidr: str
    gateway: str
    bridge: str
    dhcp_server: str
    created_at: datetime | None = None


@dataclass(frozen=True)
class Vif:
    """One NIC of a server (an entry of Nova's network info): the network it is
    on, its MAC address and its fixed IP."""

    network_id: str
    network: str  # the network's name
    bridge: str
    mac: str
    address: str
    cidr: str
    gateway: str
    dhcp_server: str

    @property
    def prefix_len(self) -> int:
        return int(self.cidr.rsplit("/", 1)[1])

    @property
    def version(self) -> int:
        return 6 if ":" in self.address else 4

    def as_dict(self) -> dict[str, str]:
        return {k: getattr(self, k) for k in ("network_id", "network", "bridge", "mac",
                                              "address", "cidr", "gateway", "dhcp_server")}


@dataclass(frozen=True)
class GuestConfig:
    """What a real guest is given beyond its flavor and image: its NICs, its
    metadata for the config drive (Nova's InstanceMetadata), the kernel and
    ramdisk of an image booted directly (Glance's kernel_id / ramdisk_id)."""

    hostname: str
    vifs: tuple[Vif, ...] = ()
    config_drive: bool = False
    user_data: bytes | None = None
    key_name: str | None = None
    key_data: str | None = None
    admin_pass: str | None = None
    metadata: Mapping[str, str] = field(default_factory=dict)
    project_id: str = ""
    availability_zone: str = ""
    launch_index: int = 0
    kernel_path: str | None = None
    ramdisk_path: str | None = None
    kernel_args: str | None = None


@dataclass(frozen=True)
class Fault:
    id: int
    instance_id: str
    code: int
    message: str
    details: Mapping[str, Any]
    created_at: datetime


@dataclass(frozen=True)
class NewFault:
    """A fault to record together with a state change (see update_instance)."""

    code: int
    message: str
    details: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class EventStep:
    """A step (event) of the instance's unfinished action ``action``, recorded
    together with a state change (see update_instance). ``close``: the open event
    of that name ends now with ``result``. Otherwise a new event starts at
    ``start_time`` (now when None), already ended now when ``result`` is given.
    ``result`` is "Success" or "Error" (as Nova writes), ``traceback`` why."""

    action: str
    event: str
    result: str | None = None
    traceback: str | None = None
    start_time: datetime | None = None
    close: bool = False


@dataclass(frozen=True)
class Instance:
    id: str
    name: str
    project_id: str
    user_id: str
    flavor_id: str
    image_id: str | None
    vcpus: int
    memory_mb: int
    root_gb: int
    ephemeral_gb: int
    vm_state: str
    task_state: str | None
    power_state: int
    host: str | None
    node: str | None
    availability_zone: str | None
    metadata: Mapping[str, str]
    reservation_id: str
    launched_at: datetime | None
    created_at: datetime
    updated_at: datetime
    deleted_at: datetime | None
    attempts: int
    group_id: str | None
    # the host (node) an admin forced with availability_zone "zone:host[:node]"
    forced_host: str | None = None
    forced_node: str | None = None
    fault: Fault | None = None  # the latest one, if any
    # what its guest is given: the key pair (name, public key as at create), the
    # user data (base64), a config drive; the networks asked for (ids; None: every
    # network) and the NICs it got on them
    key_name: str | None = None
    key_data: str | None = None
    user_data: str | None = None
    config_drive: bool = False
    requested_networks: tuple[str, ...] | None = None
    network_info: tuple[Vif, ...] = ()
    # "owner" or "admin" while locked (Nova's locked_by), None when not
    locked_by: str | None = None
    # what the control plane keeps between an action's steps (Nova's
    # system_metadata: locked_reason, old_vm_state, shelved_image_id, ...)
    system_metadata: Mapping[str, Any] = field(default_factory=dict)

    @property
    def status(self) -> str:
        """The API status (BUILD, ACTIVE, REBOOT, SHUTOFF, ERROR, ...)."""
        return api_status(self.vm_state, self.task_state)

    @property
    def locked(self) -> bool:
        return self.locked_by is not None


# Nova's migration types and the statuses of its migrations table, as each move
# type goes through them.
MIGRATION_TYPES = ("resize", "migration", "live-migration", "evacuation")
# a move no longer in progress: its allocations are settled
# (an evacuation's "done" is not: its source host still holds the allocation until
# that host's agent cleans up, "completed")
MIGRATION_DONE_STATUSES = frozenset({"confirmed", "reverted", "error", "failed", "completed",
                                     "cancelled"})


@dataclass(frozen=True)
class Migration:
    """A move of an instance (Nova's Migration object). While it is open its id
    is the consumer holding the instance's allocation on ``source_host``."""

    id: str
    instance_id: str
    migration_type: str
    status: str
    source_host: str
    dest_host: str | None
    requested_host: str | None
    old_flavor_id: str
    new_flavor_id: str
    old_vm_state: str
    created_at: datetime
    updated_at: datetime

    @property
    def is_open(self) -> bool:
        return self.status not in MIGRATION_DONE_STATUSES


@dataclass(frozen=True)
class NewMigration:
    """A migration to record together with a state change (see update_instance)."""

    migration_type: str
    source_host: str
    old_flavor_id: str
    new_flavor_id: str
    old_vm_state: str
    status: str
    requested_host: str | None = None


@dataclass(frozen=True)
class MigrationChange:
    """A migration's status (and chosen host) changed together with a state change
    (see update_instance), compare-and-swap: only while its status is one of
    ``expected_status`` (any when None)."""

    id: str
    status: str
    expected_status: frozenset[str] | None = None
    dest_host: str | None = None


@dataclass(frozen=True)
class NewAction:
    """An instance action (Nova's os-instance-actions entry) to start together with
    a state change (see update_instance)."""

    action: str
    request_id: str | None = None
    user_id: str | None = None
    project_id: str | None = None


@dataclass(frozen=True)
class InstancePage:
    instances: list[Instance]
    # Pass back as ``marker`` for the next page; None when this page is the last.
    next_marker: str | None


@dataclass(frozen=True)
class ActionEvent:
    id: int
    action_id: int
    event: str
    start_time: datetime
    finish_time: datetime | None
    result: str | None
    traceback: str | None


@dataclass(frozen=True)
class InstanceAction:
    id: int
    instance_id: str
    action: str
    request_id: str | None
    user_id: str | None
    project_id: str | None
    start_time: datetime
    finish_time: datetime | None
    message: str | None
    events: tuple[ActionEvent, ...] = ()


@dataclass(frozen=True)
class QuotaSet:
    project_id: str
    limits: Mapping[str, int]  # -1 is unlimited
    usage: Mapping[str, int]


@dataclass(frozen=True)
class ServerGroup:
    id: str
    name: str
    project_id: str
    user_id: str
    policy: str
    max_server_per_host: int | None
    members: tuple[str, ...]  # ids of live instances
    hosts: frozenset[str]  # hosts those members are on
    created_at: datetime


@dataclass(frozen=True)
class Service:
    id: int
    host: str
    binary: str
    endpoint: str | None
    disabled: bool
    disabled_reason: str | None
    last_seen_up: datetime | None
    created_at: datetime
    is_up: bool  # heartbeat seen within service_down_time of the read


@dataclass(frozen=True)
class Inventory:
    """One resource class of one resource provider, as Placement stores it, with
    Placement's defaults (max_unit "as large as possible").

    capacity = int((total - reserved) * allocation_ratio); an allocation of ``amount``
    fits when ``used + amount <= capacity``, ``min_unit <= amount <= max_unit`` and
    ``amount % step_size == 0``.
    """

    total: int
    reserved: int = 0
    allocation_ratio: float = 1.0
    min_unit: int = 1
    max_unit: int = MAX_INT
    step_size: int = 1

    @property
    def capacity(self) -> int:
        """Placement's rule: int((total - reserved) * allocation_ratio)."""
        return int((self.total - self.reserved) * self.allocation_ratio)


@dataclass(frozen=True)
class ComputeView:
    """What a compute agent counts on one of its hosts (Nova's compute node
    fields the weighers read): advisory, rewritten after every change."""

    vcpus_used: int
    free_ram_mb: int
    free_disk_mb: int
    num_instances: int
    num_io_ops: int
    failed_builds: int


@dataclass(frozen=True)
class Host:
    """A compute host: its resource provider, inventories, usage and the compute
    agent's advisory view, as the scheduler loads it."""

    uuid: str
    name: str
    generation: int
    service_id: int | None
    hypervisor_type: str | None
    hypervisor_version: int | None
    cpu_info: Mapping[str, Any]
    supported_instances: list[Any]
    availability_zone: str | None
    vcpus_used: int
    free_ram_mb: int
    free_disk_mb: int
    num_instances: int
    num_io_ops: int
    failed_builds: int
    updated_at: datetime
    inventories: Mapping[str, Inventory]
    usage: Mapping[str, int]  # sum of allocations per resource class
    traits: frozenset[str]
    aggregates: frozenset[str]  # aggregate ids
    service: Service | None


@dataclass(frozen=True)
class Allocation:
    consumer_uuid: str
    provider_uuid: str
    resource_class: str
    used: int
    created_at: datetime


@dataclass(frozen=True)
class Aggregate:
    id: str
    name: str
    hosts: frozenset[str]
    metadata: Mapping[str, str]
    created_at: datetime


@dataclass(frozen=True)
class Project:
    """A Keystone project."""

    id: str
    name: str
    domain_id: str
    description: str
    enabled: bool
    created_at: datetime


@dataclass(frozen=True)
class User:
    """A Keystone user, without its password's hash (the database checks it)."""

    id: str
    name: str
    domain_id: str
    default_project_id: str | None
    enabled: bool
    created_at: datetime


@dataclass(frozen=True)
class RoleAssignment:
    user_id: str
    project_id: str
    role: str
