"""SQLAlchemy models of the control plane's database.

One schema for SQLite and PostgreSQL: JSON columns use the generic JSON type,
timestamps are stored in UTC and always come back timezone-aware, soft-deleted rows
keep ``deleted_at``. The schema is created by the Alembic migrations in
``migrations/``; tests/test_db_migrations.py proves the two agree.
"""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column
from sqlalchemy.types import TypeDecorator

# Deterministic constraint names, so a migration can name what it alters and both
# backends carry the same names.
NAMING_CONVENTION = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


LIVE = sa.text("deleted_at IS NULL")


class UTCDateTime(TypeDecorator[datetime]):
    """A timezone-aware UTC timestamp on every backend.

    SQLite has no timezone type, so values are stored as naive UTC and given back
    their tzinfo on the way out; PostgreSQL stores timestamptz. Naive datetimes are
    refused, because nothing could say which zone they meant.
    """

    impl = sa.DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError(f"naive datetime {value!r}: pass a timezone-aware one")
        value = value.astimezone(timezone.utc)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=timezone.utc)
        return value.astimezone(timezone.utc)


class Base(DeclarativeBase):
    metadata = sa.MetaData(naming_convention=NAMING_CONVENTION)
    type_annotation_map = {datetime: UTCDateTime(), dict[str, Any]: sa.JSON()}


def _fk(target: str, ondelete: str | None = None) -> sa.ForeignKey:
    return sa.ForeignKey(target, ondelete=ondelete)


# --- catalogue -------------------------------------------------------------------

class Flavor(Base):
    __tablename__ = "flavors"
    __table_args__ = (
        # Names are unique among live flavors only: a deleted flavor's name can be
        # reused while instances built from the old one still point at its row.
        sa.Index("uq_flavors_name_live", "name", unique=True,
                 sqlite_where=LIVE, postgresql_where=LIVE),
        sa.CheckConstraint("vcpus > 0", name="vcpus_positive"),
        sa.CheckConstraint("memory_mb > 0", name="memory_mb_positive"),
        sa.CheckConstraint("root_gb >= 0 AND ephemeral_gb >= 0 AND swap >= 0",
                           name="disk_not_negative"),
    )

    id: Mapped[str] = mapped_column(sa.String(36), primary_key=True)
    name: Mapped[str] = mapped_column(sa.String(255))
    vcpus: Mapped[int]
    memory_mb: Mapped[int]
    root_gb: Mapped[int]
    ephemeral_gb: Mapped[int]
    swap: Mapped[int]
    is_public: Mapped[bool]
    extra_specs: Mapped[dict[str, Any]]
    created_at: Mapped[datetime]
    deleted_at: Mapped[datetime | None]


class FlavorProject(Base):
    """A project given access to a private flavor (Nova's flavor_projects): its
    members may see the flavor and build servers from it."""

    __tablename__ = "flavor_projects"
    __table_args__ = (sa.Index(None, "project_id"),)

    flavor_id: Mapped[str] = mapped_column(
        sa.String(36), _fk("flavors.id", "CASCADE"), primary_key=True)
    project_id: Mapped[str] = mapped_column(sa.String(255), primary_key=True)


class Image(Base):
    __tablename__ = "images"

    id: Mapped[str] = mapped_column(sa.String(36), primary_key=True)
    name: Mapped[str] = mapped_column(sa.String(255))
    path: Mapped[str] = mapped_column(sa.String(4096))
    disk_format: Mapped[str] = mapped_column(sa.String(32))
    size_bytes: Mapped[int | None] = mapped_column(sa.BigInteger)
    properties: Mapped[dict[str, Any]]
    created_at: Mapped[datetime]
    deleted_at: Mapped[datetime | None]
    # Glance's checksum: the file's MD5, hex
    checksum: Mapped[str | None] = mapped_column(sa.String(32))


class KeyPair(Base):
    """Nova's key pairs: a user's public SSH keys, by name (unique per user among
    live ones); a server booted with one gets its public key in its metadata."""

    __tablename__ = "key_pairs"
    __table_args__ = (
        sa.Index("uq_key_pairs_user_id_name_live", "user_id", "name", unique=True,
                 sqlite_where=LIVE, postgresql_where=LIVE),
    )

    id: Mapped[int] = mapped_column(primary_key=True, autoincrement=True)
    user_id: Mapped[str] = mapped_column(sa.String(255))
    name: Mapped[str] = mapped_column(sa.String(255))
    fingerprint: Mapped[str] = mapped_column(sa.String(255))
    public_key: Mapped[str] = mapped_column(sa.Text)
    type: Mapped[str] = mapped_column(sa.String(32))
    created_at: Mapped[datetime]
    deleted_at: Mapped[datetime | None]


# --- networks (Nova's flat DHCP network: networks and their fixed IPs) -------------

class Network(Base):
    """A network on the compute hosts: a bridge with a DHCP server on it, and the
    subnet the conductor hands fixed IPs out of."""

    __tablename__ = "networks"
    __table_args__ = (sa.UniqueConstraint("name"),)

    id: Mapped[str] = mapped_column(sa.String(36), primary_key=True)
    name: Mapped[str] = mapped_column(sa.String(255))
    cidr: Mapped[str] = mapped_column(sa.String(64))
    gateway: Mapped[str] = mapped_column(sa.String(64))
    bridge: Mapped[str] = mapped_column(sa.String(15))
    dhcp_server: Mapped[str] = mapped_column(sa.String(64))
    created_at: Mapped[datetime]


class FixedIp(Base):
    """A fixed IP given to a server on a network, with the MAC address of the
    server's NIC there. One row per address in use: the primary key makes an
    address impossible to give twice; a server's delete removes its rows."""

    __tablename__ = "fixed_ips"
    __table_args__ = (
        sa.UniqueConstraint("network_id", "mac"),
        sa.Index(None, "instance_id"),
    )

    network_id: Mapped[str] = mapped_column(
        sa.String(36), _fk("networks.id", "CASCADE"), primary_key=True)
    address: Mapped[str] = mapped_column(sa.String(64), primary_key=True)
    instance_id: Mapped[str] = mapped_column(sa.String(36), _fk("instances.id", "CASCADE"))
    mac: Mapped[str] = mapped_column(sa.String(17))
    created_at: Mapped[datetime]


# --- instances ---------------------------------------------------------------------

class ServerGroup(Base):
    __tablename__ = "server_groups"
    __table_args__ = (
        sa.Index(None, "project_id"),
        sa.CheckConstraint(
            "policy IN ('affinity', 'anti-affinity', 'soft-affinity', 'soft-anti-affinity')",
            name="policy_known"),
        sa.CheckConstraint("max_server_per_host IS NULL OR max_server_per_host >= 1",
                           name="max_server_per_host_positive"),
    )

    id: Mapped[str] = mapped_column(sa.String(36), primary_key=True)
    name: Mapped[str] = mapped_column(sa.String(255))
    project_id: Mapped[str] = mapped_column(sa.String(255))
    user_id: Mapped[str] = mapped_column(sa.String(255))
    policy: Mapped[str] = mapped_column(sa.String(32))
    max_server_per_host: Mapped[int | None]
    created_at: Mapped[datetime]


class Instance(Base):
    __tablename__ = "instances"
    __table_args__ = (
        # Listing is newest first, keyset-paginated on (created_at, id), usually
        # within one project.
        sa.Index(None, "project_id", "created_at", "id"),
        sa.Index(None, "created_at", "id"),
        sa.Index(None, "host"),
        sa.Index(None, "reservation_id"),
        sa.Index(None, "group_id"),
        sa.CheckConstraint("attempts >= 0", name="attempts_not_negative"),
    )

    id: Mapped[str] = mapped_column(sa.String(36), primary_key=True)
    name: Mapped[str] = mapped_column(sa.String(255))
    project_id: Mapped[str] = mapped_column(sa.String(255))
    user_id: Mapped[str] = mapped_column(sa.String(255))
    flavor_id: Mapped[str] = mapped_column(sa.String(36), _fk("flavors.id"))
    image_id: Mapped[str | None] = mapped_column(sa.String(36), _fk("images.id"))
    # The flavor's sizes when the instance was created, as Nova keeps them: quota
    # usage is released from these, whatever becomes of the flavor.
    vcpus: Mapped[int]
    memory_mb: Mapped[int]
    root_gb: Mapped[int]
    ephemeral_gb: Mapped[int]
    vm_state: Mapped[str] = mapped_column(sa.String(32))
    task_state: Mapped[str | None] = mapped_column(sa.String(32))
    power_state: Mapped[int]
    host: Mapped[str | None] = mapped_column(sa.String(255))
    node: Mapped[str | None] = mapped_column(sa.String(255))
    availability_zone: Mapped[str | None] = mapped_column(sa.String(255))
    metadata_: Mapped[dict[str, Any]] = mapped_column("metadata")
    reservation_id: Mapped[str] = mapped_column(sa.String(36))
    launched_at: Mapped[datetime | None]
    created_at: Mapped[datetime]
    updated_at: Mapped[datetime]
    deleted_at: Mapped[datetime | None]
    attempts: Mapped[int]
    group_id: Mapped[str | None] = mapped_column(sa.String(36), _fk("server_groups.id", "SET NULL"))
    # An admin's "zone:host[:node]" (Nova's RequestSpec.force_hosts/force_nodes),
    # kept so that a build resumed after a conductor restart goes there too.
    forced_host: Mapped[str | None] = mapped_column(sa.String(255))
    forced_node: Mapped[str | None] = mapped_column(sa.String(255))
    # What the guest is given (Nova's instance fields): the key pair's name and
    # public key as they were at create, the user data (base64, as the API took
    # it), whether it gets a config drive.
    key_name: Mapped[str | None] = mapped_column(sa.String(255))
    key_data: Mapped[str | None] = mapped_column(sa.Text)
    user_data: Mapped[str | None] = mapped_column(sa.Text)
    config_drive: Mapped[bool | None]
    # The networks asked for (their ids; NULL: every network, as Nova's flat
    # networks give), and the NICs the conductor gave it (Nova's network info
    # cache: network, MAC, fixed IP), written with the fixed IPs.
    requested_networks: Mapped[list[Any] | None] = mapped_column(sa.JSON)
    network_info: Mapped[list[Any] | None] = mapped_column(sa.JSON)
    # Nova's locked_by: "owner" or "admin" while locked (a locked server refuses
    # actions from all but admins), NULL when not
    locked_by: Mapped[str | None] = mapped_column(sa.String(16))
    # Nova's instance system_metadata: what the control plane keeps about a server
    # between the steps of an action (locked_reason, old_vm_state, shelved_at,
    # shelved_image_id, ...); NULL is empty
    system_metadata: Mapped[dict[str, Any] | None] = mapped_column(sa.JSON)


class Migration(Base):
    """A move of an instance between hosts (Nova's migrations table): a resize,
    a cold or live migration, an evacuation. Its id is the consumer that holds the
    instance's allocation on the source host while the move is open, the instance
    holding the destination's."""

    __tablename__ = "migrations"
    __table_args__ = (
        sa.Index(None, "instance_id", "created_at"),
        sa.Index(None, "source_host", "status"),
        sa.Index(None, "dest_host", "status"),
        sa.CheckConstraint(
            "migration_type IN ('resize', 'migration', 'live-migration', 'evacuation')",
            name="migration_type_known"),
    )

    id: Mapped[str] = mapped_column(sa.String(36), primary_key=True)
    instance_id: Mapped[str] = mapped_column(sa.String(36), _fk("instances.id", "CASCADE"))
    migration_type: Mapped[str] = mapped_column(sa.String(32))
    status: Mapped[str] = mapped_column(sa.String(32))
    source_host: Mapped[str] = mapped_column(sa.String(255))
    # the host chosen; NULL until the scheduler chose it
    dest_host: Mapped[str | None] = mapped_column(sa.String(255))
    # the host an admin asked for (the filters still run), NULL for "any"
    requested_host: Mapped[str | None] = mapped_column(sa.String(255))
    old_flavor_id: Mapped[str] = mapped_column(sa.String(36), _fk("flavors.id"))
    new_flavor_id: Mapped[str] = mapped_column(sa.String(36), _fk("flavors.id"))
    # the vm_state the move started from: a revert or a rollback returns to it
    old_vm_state: Mapped[str] = mapped_column(sa.String(32))
    created_at: Mapped[datetime]
    updated_at: Mapped[datetime]


class InstanceFault(Base):
    __tablename__ = "instance_faults"
    __table_args__ = (sa.Index(None, "instance_id", "created_at"),)

    id: Mapped[int] = mapped_column(primary_key=True, autoincrement=True)
    instance_id: Mapped[str] = mapped_column(sa.String(36), _fk("instances.id", "CASCADE"))
    code: Mapped[int]
    message: Mapped[str] = mapped_column(sa.Text)
    details: Mapped[dict[str, Any]]
    created_at: Mapped[datetime]


class InstanceAction(Base):
    __tablename__ = "instance_actions"
    __table_args__ = (sa.Index(None, "instance_id", "request_id"),)

    id: Mapped[int] = mapped_column(primary_key=True, autoincrement=True)
    instance_id: Mapped[str] = mapped_column(sa.String(36), _fk("instances.id", "CASCADE"))
    action: Mapped[str] = mapped_column(sa.String(64))
    request_id: Mapped[str | None] = mapped_column(sa.String(255))
    user_id: Mapped[str | None] = mapped_column(sa.String(255))
    project_id: Mapped[str | None] = mapped_column(sa.String(255))
    start_time: Mapped[datetime]
    finish_time: Mapped[datetime | None]
    message: Mapped[str | None] = mapped_column(sa.Text)


class InstanceActionEvent(Base):
    __tablename__ = "instance_action_events"
    __table_args__ = (sa.Index(None, "action_id"),)

    id: Mapped[int] = mapped_column(primary_key=True, autoincrement=True)
    action_id: Mapped[int] = mapped_column(_fk("instance_actions.id", "CASCADE"))
    event: Mapped[str] = mapped_column(sa.String(255))
    start_time: Mapped[datetime]
    finish_time: Mapped[datetime | None]
    result: Mapped[str | None] = mapped_column(sa.String(255))
    traceback: Mapped[str | None] = mapped_column(sa.Text)


# --- quotas ------------------------------------------------------------------------

class Quota(Base):
    """A project's limit on one resource; absent rows fall back to the defaults."""

    __tablename__ = "quotas"
    __table_args__ = (sa.CheckConstraint("hard_limit >= -1", name="hard_limit_valid"),)

    project_id: Mapped[str] = mapped_column(sa.String(255), primary_key=True)
    resource: Mapped[str] = mapped_column(sa.String(64), primary_key=True)
    hard_limit: Mapped[int]


class QuotaUsage(Base):
    """What a project holds of one resource, changed in the same transaction as the
    instance rows; create locks these rows so racing creates serialise."""

    __tablename__ = "quota_usages"
    __table_args__ = (sa.CheckConstraint("in_use >= 0", name="in_use_not_negative"),)

    project_id: Mapped[str] = mapped_column(sa.String(255), primary_key=True)
    resource: Mapped[str] = mapped_column(sa.String(64), primary_key=True)
    in_use: Mapped[int]
    updated_at: Mapped[datetime]


# --- services and placement --------------------------------------------------------

class Service(Base):
    __tablename__ = "services"
    __table_args__ = (sa.UniqueConstraint("host", "binary"),)

    id: Mapped[int] = mapped_column(primary_key=True, autoincrement=True)
    host: Mapped[str] = mapped_column(sa.String(255))
    binary: Mapped[str] = mapped_column(sa.String(64))
    endpoint: Mapped[str | None] = mapped_column(sa.String(255))
    disabled: Mapped[bool]
    disabled_reason: Mapped[str | None] = mapped_column(sa.String(255))
    last_seen_up: Mapped[datetime | None]
    created_at: Mapped[datetime]


class ResourceProvider(Base):
    """A compute host as Placement sees it, plus Nova's compute-node view (advisory
    numbers the compute agent reports for filters and weighers)."""

    __tablename__ = "resource_providers"
    __table_args__ = (
        sa.UniqueConstraint("name"),
        sa.Index(None, "service_id"),
        sa.CheckConstraint("generation >= 0", name="generation_not_negative"),
    )

    uuid: Mapped[str] = mapped_column(sa.String(36), primary_key=True)
    name: Mapped[str] = mapped_column(sa.String(255))
    generation: Mapped[int]
    service_id: Mapped[int | None] = mapped_column(_fk("services.id", "SET NULL"))
    hypervisor_type: Mapped[str | None] = mapped_column(sa.String(255))
    hypervisor_version: Mapped[int | None] = mapped_column(sa.BigInteger)
    cpu_info: Mapped[dict[str, Any]]
    supported_instances: Mapped[list[Any]] = mapped_column(sa.JSON)
    availability_zone: Mapped[str | None] = mapped_column(sa.String(255))
    vcpus_used: Mapped[int]
    free_ram_mb: Mapped[int]
    free_disk_mb: Mapped[int] = mapped_column(sa.BigInteger)
    num_instances: Mapped[int]
    num_io_ops: Mapped[int]
    failed_builds: Mapped[int]
    created_at: Mapped[datetime]
    updated_at: Mapped[datetime]


class Inventory(Base):
    __tablename__ = "inventories"
    __table_args__ = (
        sa.CheckConstraint("total >= 1", name="total_positive"),
        sa.CheckConstraint("reserved >= 0 AND reserved <= total", name="reserved_in_range"),
        sa.CheckConstraint("min_unit >= 1 AND max_unit >= min_unit", name="units_valid"),
        sa.CheckConstraint("step_size >= 1", name="step_size_positive"),
        sa.CheckConstraint("allocation_ratio > 0", name="allocation_ratio_positive"),
    )

    provider_uuid: Mapped[str] = mapped_column(
        sa.String(36), _fk("resource_providers.uuid", "CASCADE"), primary_key=True)
    resource_class: Mapped[str] = mapped_column(sa.String(255), primary_key=True)
    total: Mapped[int] = mapped_column(sa.BigInteger)
    reserved: Mapped[int] = mapped_column(sa.BigInteger)
    min_unit: Mapped[int] = mapped_column(sa.BigInteger)
    max_unit: Mapped[int] = mapped_column(sa.BigInteger)
    step_size: Mapped[int] = mapped_column(sa.BigInteger)
    allocation_ratio: Mapped[float] = mapped_column(sa.Float)


class Allocation(Base):
    """What one consumer (an instance) holds of one class on one provider. A
    provider holding allocations cannot be deleted (RESTRICT)."""

    __tablename__ = "allocations"
    __table_args__ = (
        sa.Index(None, "provider_uuid", "resource_class"),
        sa.CheckConstraint("used > 0", name="used_positive"),
    )

    consumer_uuid: Mapped[str] = mapped_column(sa.String(36), primary_key=True)
    provider_uuid: Mapped[str] = mapped_column(
        sa.String(36), _fk("resource_providers.uuid", "RESTRICT"), primary_key=True)
    resource_class: Mapped[str] = mapped_column(sa.String(255), primary_key=True)
    used: Mapped[int] = mapped_column(sa.BigInteger)
    created_at: Mapped[datetime]


class Aggregate(Base):
    __tablename__ = "aggregates"
    __table_args__ = (sa.UniqueConstraint("name"),)

    id: Mapped[str] = mapped_column(sa.String(36), primary_key=True)
    name: Mapped[str] = mapped_column(sa.String(255))
    created_at: Mapped[datetime]


class AggregateHost(Base):
    __tablename__ = "aggregate_hosts"
    __table_args__ = (sa.Index(None, "host"),)

    aggregate_id: Mapped[str] = mapped_column(
        sa.String(36), _fk("aggregates.id", "CASCADE"), primary_key=True)
    host: Mapped[str] = mapped_column(sa.String(255), primary_key=True)


class AggregateMetadata(Base):
    __tablename__ = "aggregate_metadata"

    aggregate_id: Mapped[str] = mapped_column(
        sa.String(36), _fk("aggregates.id", "CASCADE"), primary_key=True)
    key: Mapped[str] = mapped_column(sa.String(255), primary_key=True)
    value: Mapped[str] = mapped_column(sa.String(255))


class Trait(Base):
    __tablename__ = "traits"

    name: Mapped[str] = mapped_column(sa.String(255), primary_key=True)
    created_at: Mapped[datetime]


class ProviderTrait(Base):
    __tablename__ = "provider_traits"
    __table_args__ = (sa.Index(None, "trait_name"),)

    provider_uuid: Mapped[str] = mapped_column(
        sa.String(36), _fk("resource_providers.uuid", "CASCADE"), primary_key=True)
    # A trait still carried by a provider cannot be deleted.
    trait_name: Mapped[str] = mapped_column(
        sa.String(255), _fk("traits.name", "RESTRICT"), primary_key=True)


# --- identity (Keystone's v3 subset) -------------------------------------------------

class Project(Base):
    """A Keystone project: what servers, quotas and role assignments belong to.
    Names are unique within the one domain novalite has ("default")."""

    __tablename__ = "projects"
    __table_args__ = (sa.UniqueConstraint("domain_id", "name"),)

    id: Mapped[str] = mapped_column(sa.String(64), primary_key=True)
    name: Mapped[str] = mapped_column(sa.String(64))
    domain_id: Mapped[str] = mapped_column(sa.String(64))
    description: Mapped[str] = mapped_column(sa.Text)
    enabled: Mapped[bool]
    created_at: Mapped[datetime]


class User(Base):
    """A Keystone user; only the password's hash (argon2id) is stored."""

    __tablename__ = "users"
    __table_args__ = (sa.UniqueConstraint("domain_id", "name"),)

    id: Mapped[str] = mapped_column(sa.String(64), primary_key=True)
    name: Mapped[str] = mapped_column(sa.String(255))
    domain_id: Mapped[str] = mapped_column(sa.String(64))
    password_hash: Mapped[str | None] = mapped_column(sa.String(255))
    default_project_id: Mapped[str | None] = mapped_column(
        sa.String(64), _fk("projects.id", "SET NULL"))
    enabled: Mapped[bool]
    created_at: Mapped[datetime]


class RoleAssignment(Base):
    """A user's role on a project (the roles are the fixed set of auth/tokens.py)."""

    __tablename__ = "role_assignments"
    __table_args__ = (sa.Index(None, "project_id"),)

    user_id: Mapped[str] = mapped_column(sa.String(64), _fk("users.id", "CASCADE"),
                                         primary_key=True)
    project_id: Mapped[str] = mapped_column(sa.String(64), _fk("projects.id", "CASCADE"),
                                            primary_key=True)
    role: Mapped[str] = mapped_column(sa.String(64), primary_key=True)


class RevokedToken(Base):
    """A token revoked before its expiry (by its id, the ``jti`` claim); the row
    can go once the token would have expired anyway."""

    __tablename__ = "revoked_tokens"
    __table_args__ = (sa.Index(None, "revoked_at"),)

    token_id: Mapped[str] = mapped_column(sa.String(64), primary_key=True)
    expires_at: Mapped[datetime]
    revoked_at: Mapped[datetime]
