"""The API's domain logic (no grpc here): who may see and touch what, input
validation that names the offending field, quota (through the database's atomic
check-and-reserve), and handing accepted requests to the conductor.

Every call takes the caller's ``Claims``; a member sees only their project's
servers, and another project's server is NotFound, not Forbidden, so that its
existence does not leak.

Blocking work (the database, qemu-img) happens in the plain methods, which the
servicers run in worker threads; the ``async`` methods talk to other services and
push their database work to threads themselves, so the event loop never waits on
a query.

Field names in errors.Invalid are the request's field paths as the protos spell
them ("name", "scheduler_hints.group", "filters.status", "properties.min_ram"), so
a client can point at what it sent.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hashlib
import json
import logging
import os
import re
import secrets
import string
import uuid
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone
from typing import Any, AsyncIterator, Callable, Iterable, Mapping, Protocol, Sequence, TypeVar

from novalite import errors
from novalite.api import keypairs
from novalite.auth.tokens import DEFAULT_TTL_SECONDS, Claims, TokenSigner
from novalite.db.database import MAX_METADATA_ITEMS, ZONE_KEY, Database
from novalite.objects import lifecycle, records
from novalite.objects.fields import canonicalize_arch, canonicalize_hv_type, canonicalize_vm_mode
from novalite.objects.states import STATUSES, TaskState, VmState
from novalite.objects.groups import unsupported_policy
from novalite.placement import SchedulerConfig, extra_specs
from novalite.services.context import current_request_id, new_request_id
from novalite.settings import default
from novalite.virt import images as virt_images
from novalite.virt.errors import ImageError

LOG = logging.getLogger(__name__)

NAME_MAX = 255
PATH_MAX = 4096
# Scheduler hints: at most this many server ids each (the proto's limit).
MAX_HINT_IDS = 100
# WatchServers: at most this many ids.
MAX_WATCH_IDS = 1000
# Page sizes: 0 means DEFAULT_PAGE_SIZE; more than MAX_PAGE_SIZE is cut to it.
DEFAULT_PAGE_SIZE = 100
MAX_PAGE_SIZE = 1000
# Nova's MAX_USERDATA_SIZE: the user data, base64-encoded
MAX_USER_DATA = 65535
# Nova's password_length: a generated admin password's
PASSWORD_LENGTH = 12
MAX_NETWORKS = 16
# Nova's console output: control characters are removed, but tab and newline
_CONSOLE_JUNK = re.compile(r"[\x00-\x08\x0B-\x1F]")
# Nova's default_availability_zone.
DISK_FORMATS = ("qcow2", "raw")
# Glance's kernel and ramdisk formats: files QEMU boots directly, not disks
BOOT_FORMATS = ("aki", "ari")
# Set by CreateImage from `qemu-img info` (the disk size the guest sees, in bytes);
# the images table has no column for it, so it travels as a property callers may
# read but not set.
VIRTUAL_SIZE_PROPERTY = "virtual_size"
_GIB = 1 << 30

# Nova's ImageMetaProps._legacy_property_map, for the properties the scheduler
# reads: an image registered with Glance's old names (`--property architecture=...`)
# is scheduled as Nova would schedule it, not as if it had no such property.
LEGACY_IMAGE_PROPERTIES = {
    "architecture": "hw_architecture",
    "hypervisor_type": "img_hv_type",
    "vm_mode": "hw_vm_mode",
    "hypervisor_version_requires": "img_hv_requested_version",
}

# Placement's trait names.
_TRAIT_RE = re.compile(r"^[A-Z0-9_]{1,255}$")
# Nova's aggregate metadata keys (parameter_types.metadata).
_METADATA_KEY_RE = re.compile(r"^[a-zA-Z0-9-_:. ]{1,255}$")
# A canonical (lowercase, dashed) UUID, as the API hands out for every id.
_UUID_RE = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")
# img_hv_requested_version: comma-separated "<op> <release version>" predicates.
_VERSION_PREDICATE_RE = re.compile(r"^\s*(<=|>=|<|>|!=|==)\s*[0-9]+(\.[0-9]+)*\s*$")

T = TypeVar("T")

# The arguments each move takes (ApiManager.server_action); the plain actions take none.
_MOVE_ARGUMENTS: Mapping[str, tuple[str, ...]] = {
    "resize": ("flavor_id",), "migrate": ("host",), "live_migrate": ("host",),
    "evacuate": ("host",), "rebuild": ("image_id", "name", "metadata"),
    "unshelve": ("availability_zone", "host"),
}
# Where Nova lets a server's metadata change (update_instance_metadata).
_METADATA_STATES = frozenset({VmState.ACTIVE, VmState.STOPPED, VmState.PAUSED,
                              VmState.SUSPENDED})


class ConductorAPI(Protocol):
    async def build_servers(self, server_ids: Sequence[str], *, availability_zone: str | None,
                            group_id: str | None, same_host: Sequence[str],
                            different_host: Sequence[str], request_id: str,
                            admin_pass: str | None = None) -> None: ...
    async def delete_server(self, server_id: str) -> None: ...
    async def server_action(self, server_id: str, action: str, request_id: str) -> None: ...


class SchedulerAPI(Protocol):
    """Every scheduler replica (scheduler.rpcapi.SchedulerFanout)."""

    async def hosts_changed(self, hosts: Sequence[str]) -> None: ...
    async def aggregates_changed(self) -> None: ...


class ComputeAPI(Protocol):
    async def console_output(self, host: str, instance_id: str) -> str: ...


@dataclass(frozen=True)
class CreateServer:
    name: str
    flavor_id: str
    image_id: str | None = None
    min_count: int = 1
    max_count: int | None = None
    availability_zone: str | None = None
    metadata: Mapping[str, str] = field(default_factory=dict)
    group: str | None = None
    same_host: Sequence[str] = ()
    different_host: Sequence[str] = ()
    key_name: str | None = None
    user_data: bytes | None = None
    admin_pass: str | None = None
    config_drive: bool | None = None
    networks: Sequence[str] = ()


@dataclass(frozen=True)
class Created:
    """A create's answer: the servers, their reservation, their admin password."""

    servers: list[records.Instance]
    reservation_id: str
    admin_pass: str


@dataclass(frozen=True)
class ServerFilters:
    status: str | None = None
    name: str | None = None
    host: str | None = None
    project_id: str | None = None


@dataclass(frozen=True)
class Page:
    """One page of a listing and the token of the next (None on the last page)."""

    items: list[Any]
    next_page_token: str | None


@dataclass(frozen=True)
class HostView:
    """A compute host as an admin sees it: the provider, its compute service (None
    when the host has none registered) and its availability zone."""

    host: records.Host
    service: records.Service | None
    availability_zone: str


@dataclass(frozen=True)
class Zone:
    """An availability zone (Nova's os-availability-zone): available when one of
    its hosts' compute services is enabled; its hosts' services."""

    name: str
    available: bool
    services: Sequence[records.Service]


@dataclass(frozen=True)
class IssuedToken:
    token: str
    expires_at: datetime


# ---- validation ------------------------------------------------------------------------

def _check_name(field_name: str, value: object, *, max_len: int = NAME_MAX) -> str:
    if not isinstance(value, str) or not value.strip():
        raise errors.Invalid(field_name, "must not be empty")
    if len(value) > max_len:
        raise errors.Invalid(field_name, f"must be at most {max_len} characters, got {len(value)}")
    if value != value.strip():
        raise errors.Invalid(field_name, "must not start or end with whitespace")
    if not value.isprintable():
        raise errors.Invalid(field_name, "must not contain control characters")
    return value


def _check_string_map(field_name: str, values: Mapping[str, str], *,
                      max_items: int = MAX_METADATA_ITEMS) -> dict[str, str]:
    """Nova's metadata limits: at most max_items, keys 1..255, values 0..255."""
    if len(values) > max_items:
        raise errors.Invalid(field_name, f"at most {max_items} entries, got {len(values)}")
    out: dict[str, str] = {}
    for key, value in values.items():
        if not key or len(key) > NAME_MAX:
            raise errors.Invalid(field_name, f"keys must be 1..{NAME_MAX} characters")
        if "\x00" in key:
            raise errors.Invalid(field_name, "keys must not contain NUL")
        if len(value) > NAME_MAX:
            raise errors.Invalid(f"{field_name}.{key}", f"must be at most {NAME_MAX} characters")
        if "\x00" in value:
            raise errors.Invalid(f"{field_name}.{key}", "must not contain NUL")
        out[key] = value
    return out


def _check_zone_name(field_name: str, value: object) -> str:
    """An availability zone's name: Nova's (printable, no leading or trailing
    whitespace, 1..255 characters) and no ':', which separates zone, host and node
    in a server's availability_zone."""
    zone = _check_name(field_name, value)
    if ":" in zone:
        raise errors.Invalid(field_name, "must not contain ':' (it separates zone, host and node "
                                         "in a server's availability_zone)")
    return zone


def _check_aggregate_metadata(values: Mapping[str, str | None]) -> dict[str, str | None]:
    """Nova's aggregate metadata: keys of letters, digits and -_:. and spaces,
    1..255 characters, values of at most 255 (None removes the key);
    "availability_zone" is a zone's name."""
    if not values:
        raise errors.Invalid("metadata", "name at least one key")
    out: dict[str, str | None] = {}
    for key, value in values.items():
        if not _METADATA_KEY_RE.match(key):
            raise errors.Invalid("metadata", f"key {key[:64]!r}: 1..255 letters, digits, spaces "
                                             "and -_:. only")
        if value is not None:
            if key == ZONE_KEY:
                _check_zone_name(f"metadata.{key}", value)
            elif len(value) > NAME_MAX or not value.isprintable():
                raise errors.Invalid(f"metadata.{key}", f"at most {NAME_MAX} printable characters")
        out[key] = value
    return out


def _uuid_list(field_name: str, values: Sequence[str]) -> list[str]:
    if len(values) > MAX_HINT_IDS:
        raise errors.Invalid(field_name, f"at most {MAX_HINT_IDS} server ids")
    out = []
    for v in values:
        if not isinstance(v, str) or not _UUID_RE.match(v.lower()):
            raise errors.Invalid(field_name, f"{v[:64]!r} is not a server id (a UUID)")
        out.append(v.lower())
    return out


def _check_extra_specs(specs: Mapping[str, str]) -> dict[str, str]:
    """Nova's limits, the scoped extra specs whose values the scheduler interprets
    (trait:..., resources:...), and none that novalite cannot honour."""
    checked = _check_string_map("extra_specs", specs)
    for key, value in checked.items():
        if key.startswith("trait:") and value not in ("required", "forbidden"):
            raise errors.Invalid(f"extra_specs.{key}", "must be 'required' or 'forbidden'")
        if key.startswith("trait:") and not _TRAIT_RE.match(key[len("trait:"):]):
            raise errors.Invalid(f"extra_specs.{key}", "a trait's name is 1..255 upper-case "
                                                       "letters, digits and _ (Placement's)")
        if key.startswith("resources:") and not value.isdigit():
            raise errors.Invalid(f"extra_specs.{key}", "must be an integer >= 0")
    refused = extra_specs.first_unsupported(checked)
    if refused is not None:
        key, why = refused
        raise errors.Invalid(f"extra_specs.{key}", _unsupported_message(key, checked[key], why))
    return checked


def _unsupported_message(key: str, value: str, why: str) -> str:
    return (f"{key}={value!r}: {why}; novalite refuses it rather than place a server where "
            "the flavor says it must not go")


def parse_availability_zone(text: str) -> tuple[str | None, str | None, str | None]:
    """Nova's parse_availability_zone: "zone", "zone:host", "zone:host:node" or
    "zone::node" as (zone, host, node), each None when empty."""
    parts: list[str]
    if text.count(":") == 0:
        parts = [text, "", ""]
    elif text.count(":") == 1:
        parts = [*text.split(":"), ""]
    elif text.count(":") == 2:
        parts = text.split(":")
    else:
        raise errors.Invalid("availability_zone", "expected 'zone', 'zone:host', 'zone:host:node' "
                                                  f"or 'zone::node', got {text[:64]!r}")
    zone, host, node = (p or None for p in parts)
    return zone, host, node


def _non_negative_int_text(field_name: str, value: str) -> int:
    if not value.strip().isdigit():
        raise errors.Invalid(field_name, f"must be an integer >= 0, got {value[:64]!r}")
    return int(value)


def check_image_properties(properties: Mapping[str, str]) -> dict[str, str]:
    """Glance-style image properties, checked the way Nova's typed ImageMetaProps
    fields would refuse them (the scheduler would otherwise refuse every build).
    Legacy names (``architecture``, ``hypervisor_type``, ...) are stored under their
    current names, as ImageMetaProps reads them; the current name wins if both are
    given. An error names the property as the caller spelled it."""
    props = _check_string_map("properties", properties)
    spelled: dict[str, str] = {}
    for legacy, current in LEGACY_IMAGE_PROPERTIES.items():
        if legacy in props:
            value = props.pop(legacy)
            if current not in props:
                props[current] = value
                spelled[current] = legacy
    for key, canonicalize, what in (("hw_architecture", canonicalize_arch, "architecture"),
                                    ("img_hv_type", canonicalize_hv_type, "hypervisor type"),
                                    ("hw_vm_mode", canonicalize_vm_mode, "VM mode")):
        if key in props and canonicalize(props[key]) is None:
            raise errors.Invalid(f"properties.{spelled.get(key, key)}",
                                 f"unknown {what} {props[key][:64]!r}")
    for key in ("min_disk", "min_ram", "hw_maxphysaddr_bits"):
        if key in props:
            _non_negative_int_text(f"properties.{key}", props[key])
    requested = props.get("img_hv_requested_version")
    if requested is not None:
        key = spelled.get("img_hv_requested_version", "img_hv_requested_version")
        for part in requested.split(","):
            if not _VERSION_PREDICATE_RE.match(part):
                raise errors.Invalid(f"properties.{key}",
                                     f"bad predicate {part[:64]!r}: an operator and a release "
                                     "version, e.g. '>= 6.0'")
    if VIRTUAL_SIZE_PROPERTY in props:
        raise errors.Invalid(f"properties.{VIRTUAL_SIZE_PROPERTY}",
                             "is set by the API from the image file")
    return props


def _page_size(field_name: str, value: int) -> int:
    if value < 0:
        raise errors.Invalid(field_name, f"must be >= 0, got {value}")
    return min(value or DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE)


def _encode_token(kind: str, filters: object, position: object) -> str:
    """An opaque page token: what is listed, a fingerprint of the filters, and
    where the last page ended."""
    body = json.dumps({"k": kind, "f": _fingerprint(filters), "p": position},
                      separators=(",", ":"), sort_keys=True)
    return base64.urlsafe_b64encode(body.encode()).decode().rstrip("=")


def _decode_token(token: str, kind: str, filters: object) -> Any:
    bad = errors.Invalid("page_token", "not a page token of this listing; start again "
                                       "without one")
    if len(token) > 4096:
        raise bad
    try:
        body = json.loads(base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)))
    except (ValueError, binascii.Error, UnicodeDecodeError):
        raise bad from None
    if not isinstance(body, dict) or body.get("k") != kind or "p" not in body:
        raise bad
    if body.get("f") != _fingerprint(filters):
        raise errors.Invalid("page_token", "was issued for other filters; send the same "
                                           "filters with every page")
    return body["p"]


def _fingerprint(filters: object) -> str:
    text = json.dumps(filters, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _paginate(kind: str, items: Sequence[T], key: Callable[[T], list[str]], page_size: int,
              page_token: str, filters: object = None, marker: str | None = None) -> Page:
    """A page of an in-memory listing sorted by ``key`` (keyset: what was created or
    deleted between pages neither repeats nor shifts the rest). ``marker``, Nova's
    way: the id of the last item of the previous page (instead of a page token)."""
    size = _page_size("page_size", page_size)
    ordered = sorted(items, key=key)
    if marker is not None:
        after_item = next((item for item in ordered if getattr(item, "id", None) == marker), None)
        if after_item is None:
            raise errors.Invalid("marker", f"marker [{marker[:64]}] not found")
        ordered = [item for item in ordered if key(item) > key(after_item)]
    elif page_token:
        after = _decode_token(page_token, kind, filters)
        if not isinstance(after, list) or not all(isinstance(x, str) for x in after):
            raise errors.Invalid("page_token", "not a page token of this listing")
        ordered = [item for item in ordered if key(item) > after]
    page = ordered[:size]
    more = len(ordered) > size
    return Page(list(page), _encode_token(kind, filters, key(page[-1])) if more else None)


def _utcnow() -> datetime:
    return datetime.now(timezone.utc)


# ---- the manager -----------------------------------------------------------------------

class ApiManager:
    """The public API's logic. ``conductor`` takes accepted builds and actions;
    ``scheduler`` hears about hosts an admin enabled or disabled; ``signer`` issues
    tokens (CreateToken is refused without one)."""

    def __init__(self, db: Database, conductor: ConductorAPI, scheduler: SchedulerAPI | None = None,
                 *, compute: ComputeAPI | None = None,
                 signer: TokenSigner | None = None, poll_interval: float = 0.2,
                 default_zone: str = default("scheduler.default_availability_zone"),
                 service_down_time: float = default("service_down_time"),
                 scheduler_config: SchedulerConfig | None = None) -> None:
        self.db = db
        # the scheduler's filters and weighers, for the group policies it enforces
        self.scheduler_config = scheduler_config or SchedulerConfig()
        self.conductor = conductor
        self.scheduler = scheduler
        self.compute = compute
        self.signer = signer
        self.poll_interval = poll_interval
        self.default_zone = default_zone
        self.service_down_time = service_down_time
        self._feed = WatchFeed(db, poll_interval)

    async def close(self) -> None:
        """Stop the watch feed (the servers' streams end with the server)."""
        await self._feed.close()

    # ---- servers -------------------------------------------------------------------

    def _visible(self, claims: Claims, server_id: str, *,
                 include_deleted: bool = False) -> records.Instance:
        """A server the caller may see (admins see every project's)."""
        project = None if claims.is_admin else claims.project_id
        return self.db.get_instance(server_id, project_id=project, include_deleted=include_deleted)

    async def create_servers(self, claims: Claims, req: CreateServer) -> Created:
        """Validate, reserve quota and commit the servers in BUILD / scheduling (one
        transaction), then hand them to the conductor. If the conductor cannot take
        them, they are deleted again (quota released) and the error raised."""
        request_id = current_request_id() or new_request_id()
        if req.admin_pass is not None:
            _check_name("admin_pass", req.admin_pass)
        admin_pass = req.admin_pass or generate_password()
        instances, group_id, same, different = await asyncio.to_thread(
            self._create_rows, claims, req, request_id)
        ids = [i.id for i in instances]
        try:
            await self.conductor.build_servers(
                ids, availability_zone=instances[0].availability_zone, group_id=group_id,
                same_host=same, different_host=different, request_id=request_id,
                admin_pass=admin_pass)
        except BaseException:
            LOG.warning("the conductor did not take servers %s; deleting them", ids)
            await asyncio.to_thread(self._delete_rows, ids)
            raise
        return Created(instances, instances[0].reservation_id, admin_pass)

    def _create_rows(self, claims: Claims, req: CreateServer, request_id: str
                     ) -> tuple[list[records.Instance], str | None, list[str], list[str]]:
        name = _check_name("name", req.name)
        if not req.flavor_id:
            raise errors.Invalid("flavor_id", "is required")
        min_count = req.min_count
        max_count = req.max_count if req.max_count is not None else min_count
        if min_count < 1:
            raise errors.Invalid("min_count", f"must be >= 1, got {min_count}")
        if max_count < min_count:
            raise errors.Invalid("max_count", f"must be >= min_count ({min_count}), got {max_count}")
        metadata = _check_string_map("metadata", req.metadata)
        zone, forced_host, forced_node = None, None, None
        if req.availability_zone is not None:
            _check_name("availability_zone", req.availability_zone)
            zone, forced_host, forced_node = parse_availability_zone(req.availability_zone)
            if (forced_host or forced_node) and not claims.is_admin:
                raise errors.Forbidden("only an admin may force a host (availability_zone "
                                       "'zone:host' or 'zone:host:node')")
        same = _uuid_list("scheduler_hints.same_host", req.same_host)
        different = _uuid_list("scheduler_hints.different_host", req.different_host)
        group_id: str | None = None
        if req.group is not None:
            if not _UUID_RE.match(req.group.lower()):
                raise errors.Invalid("scheduler_hints.group",
                                     f"{req.group[:64]!r} is not a server group id (a UUID)")
            group_id = req.group.lower()

        user_data = None
        if req.user_data:
            user_data = base64.b64encode(req.user_data).decode()
            if len(user_data) > MAX_USER_DATA:
                raise errors.Invalid("user_data", f"at most {MAX_USER_DATA} bytes once "
                                                  f"base64-encoded, got {len(user_data)}")
        unknown_flavor = errors.Invalid("flavor_id", f"unknown flavor {req.flavor_id[:64]!r}")
        try:
            flavor = self.db.get_flavor(req.flavor_id, visible_to=_flavor_scope(claims))
        except errors.NotFound:
            raise unknown_flavor from None
        refused = extra_specs.first_unsupported(flavor.extra_specs)
        if refused is not None:  # a flavor stored before novalite refused such specs
            key, why = refused
            raise errors.Invalid("flavor_id", f"flavor {flavor.name!r} has extra spec "
                                 + _unsupported_message(key, flavor.extra_specs[key], why))
        image: records.Image | None = None
        if req.image_id:  # optional: simulated hosts boot without one
            try:
                image = self.db.get_image(req.image_id)
            except errors.NotFound:
                raise errors.Invalid("image_id", f"unknown image {req.image_id[:64]!r}") from None
            _check_image_fits(image, flavor)
        if group_id is not None:
            try:
                group = self.db.get_server_group(group_id, project_id=claims.project_id)
            except errors.NotFound:
                raise errors.Invalid("scheduler_hints.group",
                                     f"unknown server group {group_id}") from None
            self._check_group_policy("scheduler_hints.group", group.policy)
        key_data = None
        if req.key_name is not None:
            try:
                key_data = self.db.get_key_pair(claims.user_id, req.key_name).public_key
            except errors.NotFound:
                raise errors.Invalid("key_name", f"you have no key pair {req.key_name[:64]!r}") from None
        networks = self._requested_networks(req.networks)
        if zone is not None:
            self._check_zone(zone, forced=forced_host is not None)
        for forced in {forced_host, forced_node} - {None}:
            try:
                self.db.get_host(forced)
            except errors.NotFound:
                raise errors.Invalid("availability_zone", f"unknown host {forced!r}") from None
        try:
            instances = self.db.create_instances(
                project_id=claims.project_id, user_id=claims.user_id, name=name,
                flavor_id=req.flavor_id, image_id=image.id if image else None,
                min_count=min_count, max_count=max_count,
                availability_zone=zone, metadata=metadata, group_id=group_id,
                request_id=request_id, flavor_visible_to=_flavor_scope(claims),
                forced_host=forced_host, forced_node=forced_node, key_name=req.key_name,
                key_data=key_data, user_data=user_data,
                # no metadata service: what the guest is given reaches it on its
                # config drive (as Nova's force_config_drive)
                config_drive=True if req.config_drive is None else req.config_drive,
                requested_networks=networks)
        except errors.Invalid as e:
            if e.field == "group_id":  # deleted since we looked
                raise errors.Invalid("scheduler_hints.group", e.message) from None
            if e.field == "flavor_id":
                raise unknown_flavor from None
            raise
        return instances, group_id, same, different

    def _requested_networks(self, names: Sequence[str]) -> list[str] | None:
        """The ids of the networks asked for (by name or id): None for every
        network (none asked for), [] for ["none"]."""
        if not names:
            return None
        if list(names) == ["none"]:
            return []
        if len(names) > MAX_NETWORKS:
            raise errors.Invalid("networks", f"at most {MAX_NETWORKS}, got {len(names)}")
        known = {n.name: n.id for n in self.db.list_networks()}
        ids: list[str] = []
        for name in names:
            nid = known.get(name) or (name if name in known.values() else None)
            if nid is None:
                raise errors.Invalid("networks", f"unknown network {name[:64]!r}"
                                     + ("; 'none' must be alone" if name == "none" else ""))
            if nid not in ids:
                ids.append(nid)
        return ids

    def _delete_rows(self, ids: Iterable[str]) -> None:
        for sid in ids:
            try:
                self.db.delete_instance(sid)
            except errors.NotFound:
                pass
            except Exception:  # noqa: BLE001 - best effort; the original error matters more
                LOG.exception("could not delete server %s after a failed hand-over", sid)

    def _check_zone(self, zone: str, *, forced: bool) -> None:
        """Nova's: a server goes to an available zone (one with an enabled compute
        host). An admin forcing a host names any zone that has hosts: the host's
        own is checked by the scheduler (its placement stage, which forcing does
        not skip)."""
        available = self.db.zone_availability(zone, default_zone=self.default_zone)
        if available is None:
            raise errors.Invalid("availability_zone", f"unknown availability zone {zone!r}")
        if not (available or forced):
            raise errors.Invalid("availability_zone", f"availability zone {zone!r} is not "
                                                      "available: every host in it is disabled")

    def availability_zones(self) -> list[Zone]:
        """The zones by name, with their hosts' compute services."""
        return [Zone(name, any(not s.disabled for s in services), services)
                for name, services in self.db.zone_services(
                    default_zone=self.default_zone,
                    service_down_time=self.service_down_time).items()]

    def get_server(self, claims: Claims, server_id: str) -> records.Instance:
        return self._visible(claims, server_id)

    def list_servers(self, claims: Claims, filters: ServerFilters = ServerFilters(), *,
                     page_size: int = 0, page_token: str = "", marker: str | None = None) -> Page:
        """Live servers the caller may see, one page at a time (in the database's
        order: newest first). ``marker``, Nova's way: the id of the last server of
        the previous page (instead of a page token)."""
        if filters.host is not None and not claims.is_admin:
            raise errors.Forbidden("only an admin may filter by host")
        if filters.project_id is not None and not claims.is_admin \
                and filters.project_id != claims.project_id:
            raise errors.Forbidden("only an admin may list another project's servers")
        if filters.status is not None and filters.status not in STATUSES:
            raise errors.Invalid("filters.status", f"unknown status {filters.status[:64]!r}; "
                                                   f"one of {', '.join(sorted(STATUSES))}")
        if filters.name is not None and not 1 <= len(filters.name) <= NAME_MAX:
            raise errors.Invalid("filters.name", f"must be 1..{NAME_MAX} characters")
        size = _page_size("page_size", page_size)
        project = filters.project_id if claims.is_admin else claims.project_id
        scope = {"status": filters.status, "name": filters.name, "host": filters.host,
                 "project_id": project}
        position = None
        if marker is not None:
            try:
                position = self.db.instance_marker(self._visible(claims, marker,
                                                                 include_deleted=True))
            except errors.NotFound:
                raise errors.Invalid("marker", f"marker [{marker[:64]}] not found") from None
        elif page_token:
            position = _decode_token(page_token, "servers", scope)
            if not isinstance(position, str):
                raise errors.Invalid("page_token", "not a page token of this listing")
        try:
            page = self.db.list_instances(project_id=project, status=filters.status,
                                          name=filters.name, host=filters.host, limit=size,
                                          marker=position)
        except errors.Invalid as e:
            if e.field == "marker":
                raise errors.Invalid("page_token", e.message) from None
            raise
        token = _encode_token("servers", scope, page.next_marker) if page.next_marker else None
        return Page(list(page.instances), token)

    async def delete_server(self, claims: Claims, server_id: str) -> records.Instance:
        """Mark the server DELETING (allowed in any state) and hand it to the
        conductor, which destroys the guest and then the record."""
        request_id = current_request_id() or new_request_id()

        def mark() -> records.Instance:
            inst = self._visible(claims, server_id)
            self._check_lock(claims, inst)
            self.db.update_instance(inst.id, task_state=TaskState.DELETING)
            self.db.start_instance_action(inst.id, "delete", request_id=request_id,
                                          user_id=claims.user_id, project_id=claims.project_id)
            return self.db.get_instance(inst.id)

        inst = await asyncio.to_thread(mark)
        await self.conductor.delete_server(inst.id)
        return inst

    async def server_action(self, claims: Claims, server_id: str, action: str,
                            **arguments: Any) -> records.Instance:
        """A lifecycle action or a move, if Nova allows it in the server's current
        state (InvalidState otherwise, and nothing changes; a locked server
        refuses it to all but admins). Returns the server with the action's
        task_state, committed before the conductor hears of it together with its
        action log entry and what the move needs (its migration, its quota); if
        the conductor cannot take it, all of that is rolled back. ``arguments``:
        a move's (flavor_id, host, image_id, name, metadata, availability_zone)."""
        if action not in lifecycle.ACTIONS:
            raise errors.Invalid("action", f"unknown action {action!r}")
        row = lifecycle.ACTIONS[action]
        request_id = current_request_id() or new_request_id()

        def mark() -> tuple[records.Instance, str | None, dict[str, Any]]:
            inst = self._visible(claims, server_id)
            self._check_lock(claims, inst, row)
            if not lifecycle.allows(action, inst.vm_state, inst.task_state):
                raise errors.InvalidState(
                    f"cannot {row.log_name} server {inst.id} while it is {inst.status} "
                    f"(vm_state {inst.vm_state}, task_state {inst.task_state or 'none'})")
            changes, undo = self._move_changes(claims, inst, action, arguments)
            if not self.db.update_instance(
                    inst.id, expected_vm_state=inst.vm_state, expected_task_state=inst.task_state,
                    task_state=row.task_state, start_action=records.NewAction(
                        row.log_name, request_id, claims.user_id, claims.project_id),
                    **changes):
                raise errors.InvalidState(f"server {inst.id} changed state meanwhile; try again")
            return self.db.get_instance(inst.id), inst.task_state, undo

        inst, previous_task, undo = await asyncio.to_thread(mark)
        try:
            await self.conductor.server_action(inst.id, action, request_id)
        except BaseException:
            def roll_back() -> None:
                try:
                    # back to the task this one took over from (None, mostly)
                    self.db.update_instance(inst.id, expected_task_state=row.task_state,
                                            task_state=previous_task, **undo)
                    for entry in self.db.list_instance_actions(inst.id):
                        if entry.request_id == request_id and entry.finish_time is None:
                            self.db.finish_instance_action(entry.id, message="Error")
                except errors.NotFound:
                    pass
            await asyncio.to_thread(roll_back)
            raise
        return inst

    async def console_output(self, claims: Claims, server_id: str, length: int | None) -> str:
        """Nova's os-getConsoleOutput: the last ``length`` lines of the guest's
        serial log (all of its last 100 KiB when None or -1)."""
        if length is not None and length < -1:
            raise errors.Invalid("length", f"must be -1 (all) or >= 0, got {length}")
        inst = await asyncio.to_thread(self._visible, claims, server_id)
        not_ready = errors.InvalidState(f"server {inst.id} has no guest yet (status "
                                        f"{inst.status}): no console output")
        if not inst.host or inst.vm_state == VmState.BUILDING:
            raise not_ready  # Nova's InstanceNotReady
        if self.compute is None:
            raise errors.Unavailable("this API service cannot reach the compute agents")
        try:
            output = await self.compute.console_output(inst.host, inst.id)
        except errors.NotFound:
            raise not_ready from None
        output = _CONSOLE_JUNK.sub("", output)
        lines = output.splitlines(keepends=True)
        if length is not None and length >= 0:
            lines = lines[len(lines) - length:] if length else []
        return "".join(lines)

    @staticmethod
    def _check_lock(claims: Claims, inst: records.Instance,
                    row: lifecycle.ServerAction | None = None) -> None:
        """Nova's @check_instance_lock: a locked server refuses all but admins."""
        if inst.locked and not claims.is_admin and (row is None or row.checks_lock):
            reason = inst.system_metadata.get(lifecycle.SystemMetadata.LOCKED_REASON)
            raise errors.InvalidState(f"server {inst.id} is locked"
                                      + (f": {reason}" if reason else ""))

    def _move_changes(self, claims: Claims, inst: records.Instance, action: str,
                      arguments: Mapping[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
        """What ``action`` commits with its task_state (update_instance's keyword
        arguments), after checking its arguments, and what undoes it."""
        prepare = {
            "resize": self._prepare_resize, "migrate": self._prepare_migration,
            "live_migrate": self._prepare_migration, "evacuate": self._prepare_migration,
            "confirm_resize": self._prepare_verdict, "revert_resize": self._prepare_verdict,
            "rebuild": self._prepare_rebuild, "unshelve": self._prepare_unshelve,
        }.get(action)
        unexpected = set(arguments) - set(_MOVE_ARGUMENTS.get(action, ()))
        if unexpected:
            raise errors.Invalid(sorted(unexpected)[0], f"not an argument of {action}")
        if prepare is None:
            return {}, {}
        return prepare(claims, inst, action, arguments)

    def _prepare_resize(self, claims: Claims, inst: records.Instance, action: str,
                        arguments: Mapping[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
        """Nova's resize checks: a known flavor, not the server's own, with no
        smaller disk (nor zero, libvirt's ResizeError), that the image fits and
        whose extra specs novalite honours; the server's host is up. The growth of
        an upsize is taken from the quota now."""
        flavor_id = str(arguments.get("flavor_id") or "")
        if not flavor_id:
            raise errors.Invalid("flavor_id", "is required")
        try:  # a private flavor only where the project was given access (Nova's)
            new = self.db.get_flavor(flavor_id, visible_to=_flavor_scope(claims))
        except errors.NotFound:
            raise errors.Invalid("flavor_id", f"unknown flavor {flavor_id[:64]!r}") from None
        old = self.db.get_flavor(inst.flavor_id, include_deleted=True)
        if new.id == old.id:
            raise errors.Invalid("flavor_id", "the server already has this flavor; a move to "
                                              "another host is a migration")
        for size, what in (("root_gb", "root disk"), ("ephemeral_gb", "ephemeral disk")):
            if getattr(new, size) < getattr(old, size):
                raise errors.Invalid("flavor_id", f"flavor {new.name}'s {what} "
                                     f"({getattr(new, size)} GB) is smaller than the server's "
                                     f"({getattr(old, size)} GB): disks do not shrink")
        refused = extra_specs.first_unsupported(new.extra_specs)
        if refused is not None:
            key, why = refused
            raise errors.Invalid("flavor_id", f"flavor {new.name!r} has extra spec "
                                 + _unsupported_message(key, new.extra_specs[key], why))
        if inst.image_id:
            try:
                _check_image_fits(self.db.get_image(inst.image_id, include_deleted=True), new)
            except errors.NotFound:
                pass
        self._check_host_up(inst)
        return self._new_migration(inst, "resize", "pre-migrating", old.id, new.id, None,
                                   quota=old.resize_growth(new))

    def _prepare_migration(self, claims: Claims, inst: records.Instance, action: str,
                           arguments: Mapping[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
        """A cold or live migration (its host up) or an evacuation (its host down),
        to the host given (known, another one) or any."""
        host = arguments.get("host")
        if host is not None:
            _check_name("host", host)
            try:
                self.db.get_host(host)
            except errors.NotFound:
                raise errors.Invalid("host", f"unknown host {host[:64]!r}") from None
            if host == inst.host:
                raise errors.Invalid("host", f"the server is on {host} already")
        if action == "evacuate":
            if inst.host is None:
                raise errors.InvalidState(f"server {inst.id} is on no host")
            service = self._service_of(inst.host)
            if service is not None and service.is_up:
                raise errors.InvalidState(
                    f"the compute service of host {inst.host} is up (its last heartbeat is "
                    f"within service_down_time, {self.service_down_time:g} s): evacuate only "
                    "the servers of a host that is down")
        else:
            self._check_host_up(inst)
        kind, status = {"migrate": ("migration", "pre-migrating"),
                        "live_migrate": ("live-migration", "accepted"),
                        "evacuate": ("evacuation", "accepted")}[action]
        return self._new_migration(inst, kind, status, inst.flavor_id, inst.flavor_id, host)

    def _new_migration(self, inst: records.Instance, kind: str, status: str, old_flavor: str,
                       new_flavor: str, host: str | None, *, quota: Mapping[str, int] | None = None
                       ) -> tuple[dict[str, Any], dict[str, Any]]:
        migration_id = str(uuid.uuid4())
        changes: dict[str, Any] = {"new_migration": (migration_id, records.NewMigration(
            kind, inst.host or "", old_flavor, new_flavor, inst.vm_state, status, host))}
        undo: dict[str, Any] = {"migration": records.MigrationChange(migration_id, "error")}
        if quota and any(quota.values()):
            changes["quota_delta"] = dict(quota)
            undo["quota_delta"] = {k: -v for k, v in quota.items()}
        return changes, undo

    def _prepare_verdict(self, claims: Claims, inst: records.Instance, action: str,
                         arguments: Mapping[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
        """A confirm or revert of the server's finished resize (or cold migration)."""
        moves = self.db.list_migrations(instance_id=inst.id, open_only=True, limit=1)
        if not moves or moves[0].status != "finished":
            raise errors.InvalidState(f"server {inst.id} has no finished resize or migration "
                                      "to confirm or revert")
        status = "confirming" if action == "confirm_resize" else "reverting"
        return ({"migration": records.MigrationChange(moves[0].id, status, frozenset({"finished"}))},
                {"migration": records.MigrationChange(moves[0].id, "finished", frozenset({status}))})

    def _prepare_rebuild(self, claims: Claims, inst: records.Instance, action: str,
                         arguments: Mapping[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
        """Nova's rebuild: an image the flavor fits; a new name and metadata now
        (undone if the conductor cannot take it)."""
        image_id = str(arguments.get("image_id") or "")
        if not image_id:
            raise errors.Invalid("image_id", "is required")
        try:
            image = self.db.get_image(image_id)
        except errors.NotFound:
            raise errors.Invalid("image_id", f"unknown image {image_id[:64]!r}") from None
        _check_image_fits(image, self.db.get_flavor(inst.flavor_id, include_deleted=True))
        keys = lifecycle.SystemMetadata
        changes: dict[str, Any] = {"image_id": image.id,
                                   "system_metadata": {keys.ORIG_IMAGE_REF: inst.image_id or ""}}
        undo: dict[str, Any] = {"image_id": inst.image_id,
                                "system_metadata": {keys.ORIG_IMAGE_REF: None}}
        if arguments.get("name") is not None:
            changes["name"], undo["name"] = _check_name("name", arguments["name"]), inst.name
        if arguments.get("metadata") is not None:
            changes["metadata"] = _check_string_map("metadata", arguments["metadata"])
            undo["metadata"] = dict(inst.metadata)
        return changes, undo

    def _prepare_unshelve(self, claims: Claims, inst: records.Instance, action: str,
                          arguments: Mapping[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
        """Nova's unshelve (2.77, 2.91): a zone, and for admins a host, for an
        offloaded server only."""
        zone, host = arguments.get("availability_zone"), arguments.get("host")
        if (zone is not None or host is not None) and inst.vm_state != VmState.SHELVED_OFFLOADED:
            raise errors.Invalid("availability_zone" if zone is not None else "host",
                                 "only an offloaded server (SHELVED_OFFLOADED) is placed again")
        changes: dict[str, Any] = {}
        undo: dict[str, Any] = {}
        if zone is not None:
            self._check_zone(_check_zone_name("availability_zone", zone), forced=host is not None)
            changes["availability_zone"], undo["availability_zone"] = zone, inst.availability_zone
        if host is not None:
            if not claims.is_admin:
                raise errors.Forbidden("only an admin may name the host to unshelve to")
            _check_name("host", host)
            try:
                self.db.get_host(host)
            except errors.NotFound:
                raise errors.Invalid("host", f"unknown host {host[:64]!r}") from None
            key = lifecycle.SystemMetadata.UNSHELVE_HOST
            changes["system_metadata"], undo["system_metadata"] = {key: host}, {key: None}
        return changes, undo

    def _service_of(self, host: str) -> records.Service | None:
        try:
            return self.db.get_service(host, "compute", service_down_time=self.service_down_time)
        except errors.NotFound:
            return None

    def _check_host_up(self, inst: records.Instance) -> None:
        """Nova's check_instance_host(check_is_up=True): a move leaves from a host
        whose compute service is up."""
        if inst.host is None:
            raise errors.InvalidState(f"server {inst.id} is on no host")
        service = self._service_of(inst.host)
        if service is None or not service.is_up:
            raise errors.InvalidState(f"the compute service of host {inst.host} is down; a "
                                      "server of a host that is down is evacuated")

    # ---- lock, name, metadata ------------------------------------------------------

    def lock_server(self, claims: Claims, server_id: str, reason: str | None = None) -> records.Instance:
        """Nova's lock: by its owner ("owner") or an admin of another project
        ("admin"); the owner's lock of a locked server changes nothing."""
        if reason is not None:
            _check_name("reason", reason)
        inst = self._visible(claims, server_id)
        owner = inst.project_id == claims.project_id
        if inst.locked and owner:
            return inst
        self._lock_change(claims, inst, "lock", "owner" if owner else "admin",
                          {lifecycle.SystemMetadata.LOCKED_REASON: reason})
        return self.db.get_instance(inst.id)

    def unlock_server(self, claims: Claims, server_id: str) -> records.Instance:
        """Nova's unlock: a member may not lift an admin's lock."""
        inst = self._visible(claims, server_id)
        if inst.locked_by == "admin" and not claims.is_admin:
            raise errors.Forbidden(f"server {inst.id} was locked by an admin; only an admin "
                                   "may unlock it")
        self._lock_change(claims, inst, "unlock", None,
                          {lifecycle.SystemMetadata.LOCKED_REASON: None})
        return self.db.get_instance(inst.id)

    def _lock_change(self, claims: Claims, inst: records.Instance, action: str,
                     locked_by: str | None, system_metadata: Mapping[str, Any]) -> None:
        self.db.update_instance(
            inst.id, locked_by=locked_by, system_metadata=system_metadata,
            start_action=records.NewAction(action, current_request_id() or new_request_id(),
                                           claims.user_id, claims.project_id),
            events=[records.EventStep(action, f"api_{action}", result="Success")],
            finish_action=action)

    def update_server(self, claims: Claims, server_id: str, *,
                      name: str | None = None) -> records.Instance:
        """Nova's PUT /servers/{id}: a rename, in any state."""
        inst = self._visible(claims, server_id)
        if name is not None:
            self.db.update_instance(inst.id, name=_check_name("name", name))
        return self.db.get_instance(inst.id)

    def set_metadata(self, claims: Claims, server_id: str, metadata: Mapping[str, str], *,
                     replace: bool = False) -> records.Instance:
        """Nova's metadata POST (merge) or PUT (``replace``): the server ACTIVE,
        STOPPED, PAUSED or SUSPENDED, no task in flight, not locked (but for
        admins)."""
        wanted = _check_string_map("metadata", metadata)
        inst = self._metadata_target(claims, server_id)
        merged = wanted if replace else {**inst.metadata, **wanted}
        if len(merged) > MAX_METADATA_ITEMS:
            raise errors.Invalid("metadata", f"a server has at most {MAX_METADATA_ITEMS} "
                                             f"metadata items, this would make {len(merged)}")
        self._write_metadata(inst, merged)
        return self.db.get_instance(inst.id)

    def delete_metadata(self, claims: Claims, server_id: str,
                        keys: Sequence[str]) -> records.Instance:
        """Nova's DELETE /servers/{id}/metadata/{key}, for several keys: each must
        be there (NotFound naming it, nothing removed)."""
        if not keys:
            raise errors.Invalid("keys", "name at least one metadata key to remove")
        inst = self._metadata_target(claims, server_id)
        for key in keys:
            if key not in inst.metadata:
                raise errors.NotFound(f"server {inst.id} has no metadata key {key[:255]!r}")
        self._write_metadata(inst, {k: v for k, v in inst.metadata.items() if k not in set(keys)})
        return self.db.get_instance(inst.id)

    def _metadata_target(self, claims: Claims, server_id: str) -> records.Instance:
        inst = self._visible(claims, server_id)
        self._check_lock(claims, inst)
        if inst.vm_state not in _METADATA_STATES or inst.task_state is not None:
            raise errors.InvalidState(
                f"cannot change the metadata of server {inst.id} while it is {inst.status} "
                f"(vm_state {inst.vm_state}, task_state {inst.task_state or 'none'})")
        return inst

    def _write_metadata(self, inst: records.Instance, metadata: Mapping[str, str]) -> None:
        if not self.db.update_instance(inst.id, expected_vm_state=inst.vm_state,
                                       expected_task_state=None, metadata=dict(metadata)):
            raise errors.InvalidState(f"server {inst.id} changed state meanwhile; try again")

    def list_migrations(self, claims: Claims, *, server_id: str | None = None,
                        host: str | None = None) -> list[records.Migration]:
        """Nova's os-migrations: a server's (a deleted one's too), a host's, or all."""
        if server_id is not None:
            self._visible(claims, server_id, include_deleted=True)
        if host is not None:
            _check_name("host", host)
        return self.db.list_migrations(instance_id=server_id, host=host, limit=MAX_PAGE_SIZE)

    def list_actions(self, claims: Claims, server_id: str, *, limit: int | None = None,
                     marker: str | None = None,
                     changes_since: datetime | None = None) -> list[records.InstanceAction]:
        """The server's action log, newest first. Admins may read a deleted
        server's. Nova's paging (2.58): those changed (started or finished) since
        ``changes_since``, after the action whose request id is ``marker``, at most
        ``limit``."""
        inst = self._visible(claims, server_id, include_deleted=claims.is_admin)
        actions = list(reversed(self.db.list_instance_actions(inst.id)))
        if changes_since is not None:
            actions = [a for a in actions if (a.finish_time or a.start_time) >= changes_since]
        if marker is not None:
            ids = [a.request_id for a in actions]
            if marker not in ids:
                raise errors.Invalid("marker", f"marker [{marker[:64]}] not found")
            actions = actions[ids.index(marker) + 1:]
        return actions[:limit] if limit is not None else actions

    async def watch(self, claims: Claims,
                    ids: Sequence[str]) -> AsyncIterator[tuple[records.Instance, datetime]]:
        """Each watched server's state now, then every change (deletion included),
        until the caller goes away: (server, when) pairs, ``when`` being the read
        time for the first state and the commit time of each change after it.

        ``ids`` empty means every server the caller may see, including those
        created later. A slow reader skips intermediate states of a server, never
        its latest one."""
        if len(ids) > MAX_WATCH_IDS:
            raise errors.Invalid("ids", f"at most {MAX_WATCH_IDS} ids, got {len(ids)}")
        wanted = frozenset(ids)

        project = None if claims.is_admin else claims.project_id

        def check() -> None:
            found = self.db.get_instances(wanted, project_id=project)
            for sid in ids:
                if sid not in found:
                    # a server deleted already is watched too: its one event is DELETED
                    # (so `delete A B --wait` cannot lose the race with the deletes)
                    self.db.get_instance(sid, project_id=project, include_deleted=True)

        await asyncio.to_thread(check)
        subscriber = _Subscriber(None if claims.is_admin else claims.project_id, wanted or None)
        await self._feed.subscribe(subscriber)
        try:
            while True:
                await subscriber.wake.wait()
                subscriber.wake.clear()
                batch, subscriber.pending = subscriber.pending, {}
                for inst, when in batch.values():
                    yield inst, when
        finally:
            self._feed.unsubscribe(subscriber)

    # ---- flavors -------------------------------------------------------------------

    def create_flavor(self, claims: Claims, *, name: str, vcpus: int, memory_mb: int,
                      root_gb: int = 0, ephemeral_gb: int = 0, swap: int = 0,
                      is_public: bool = True, extra_specs: Mapping[str, str] | None = None,
                      flavor_id: str | None = None) -> records.Flavor:
        """``flavor_id``: the new flavor's id (Nova lets an admin choose it); a new
        UUID when None."""
        _check_name("name", name)
        if flavor_id is not None:
            _check_name("id", flavor_id)
        specs = _check_extra_specs(extra_specs or {})
        return self.db.create_flavor(name=name, vcpus=vcpus, memory_mb=memory_mb, root_gb=root_gb,
                                     ephemeral_gb=ephemeral_gb, swap=swap, is_public=is_public,
                                     extra_specs=specs, flavor_id=flavor_id)

    def delete_flavor(self, claims: Claims, flavor_id: str) -> None:
        self.db.delete_flavor(flavor_id)

    def list_flavors(self, claims: Claims, *, page_size: int = 0, page_token: str = "",
                     marker: str | None = None, is_public: bool | None = None) -> Page:
        """Flavors by name, then id: admins see those ``is_public`` says (all when
        None); members see the public ones and the private ones their project was
        given access to."""
        scope = _flavor_scope(claims)
        public = is_public if claims.is_admin else None
        flavors = self.db.list_flavors(is_public=public, visible_to=scope)
        return _paginate("flavors", flavors, lambda f: [f.name, f.id], page_size, page_token,
                         {"visible_to": scope, "is_public": public}, marker)

    def get_flavor(self, claims: Claims, flavor_id: str) -> records.Flavor:
        return self.db.get_flavor(flavor_id, visible_to=_flavor_scope(claims))

    def add_flavor_access(self, claims: Claims, flavor_id: str, project_id: str) -> list[str]:
        return self.db.add_flavor_access(flavor_id, _check_name("project_id", project_id))

    def remove_flavor_access(self, claims: Claims, flavor_id: str, project_id: str) -> list[str]:
        return self.db.remove_flavor_access(flavor_id, _check_name("project_id", project_id))

    def list_flavor_access(self, claims: Claims, flavor_id: str) -> list[str]:
        return self.db.list_flavor_access(flavor_id)

    def flavors_of(self, servers: Iterable[records.Instance]) -> dict[str, records.Flavor]:
        """The flavors the servers were built from (deleted ones too), by id: what
        the caller may see of a server it may see."""
        out: dict[str, records.Flavor] = {}
        for flavor_id in {s.flavor_id for s in servers}:
            try:
                out[flavor_id] = self.db.get_flavor(flavor_id, include_deleted=True)
            except errors.NotFound:
                pass
        return out

    def set_extra_specs(self, claims: Claims, flavor_id: str,
                        specs: Mapping[str, str]) -> records.Flavor:
        checked = _check_extra_specs(specs)
        current = self.db.get_flavor(flavor_id)
        if len({**current.extra_specs, **checked}) > MAX_METADATA_ITEMS:
            raise errors.Invalid("extra_specs", f"a flavor has at most {MAX_METADATA_ITEMS} "
                                                "extra specs")
        return self.db.set_flavor_extra_specs(flavor_id, checked)

    def unset_extra_specs(self, claims: Claims, flavor_id: str,
                          keys: Sequence[str]) -> records.Flavor:
        if not keys:
            raise errors.Invalid("keys", "name at least one extra spec to remove")
        return self.db.unset_flavor_extra_specs(flavor_id, keys)

    # ---- images --------------------------------------------------------------------

    def create_image(self, claims: Claims, *, name: str, path: str, disk_format: str = "",
                     properties: Mapping[str, str] | None = None) -> records.Image:
        """Register a local disk file: it must exist, and `qemu-img info` gives its
        format (checked against ``disk_format`` when given) and virtual size."""
        _check_name("name", name)
        props = check_image_properties(properties or {})
        if not path or len(path) > PATH_MAX or "\x00" in path:
            raise errors.Invalid("path", f"must be 1..{PATH_MAX} characters")
        if not os.path.isabs(path):
            raise errors.Invalid("path", f"must be an absolute path, got {path[:256]!r}")
        if disk_format and disk_format not in DISK_FORMATS + BOOT_FORMATS:
            raise errors.Invalid("disk_format", f"must be one of "
                                                f"{', '.join(DISK_FORMATS + BOOT_FORMATS)}, "
                                                f"got {disk_format[:64]!r}")
        if not os.path.isfile(path):
            raise errors.Invalid("path", f"no such file: {path[:256]}")
        for key in ("kernel_id", "ramdisk_id"):
            if key in props:
                wanted = "aki" if key == "kernel_id" else "ari"
                try:
                    ref = self.db.get_image(props[key])
                except errors.NotFound:
                    raise errors.Invalid(f"properties.{key}", f"unknown image {props[key][:64]!r}") from None
                if ref.disk_format != wanted:
                    raise errors.Invalid(f"properties.{key}", f"image {ref.id} is {ref.disk_format}, "
                                                              f"not {wanted}")
        checksum = _md5_of(path)
        if disk_format in BOOT_FORMATS:
            # a kernel or a ramdisk: qemu-img would call it raw, and no disk is made of it
            return self.db.register_image(name=name, path=path, disk_format=disk_format,
                                          size_bytes=os.path.getsize(path), properties=props,
                                          checksum=checksum)
        try:
            virt_images.qemu_img_path()
        except ImageError as e:
            raise errors.Unavailable(str(e)) from None
        try:
            info = virt_images.image_info(path)
        except ImageError as e:
            raise errors.Invalid("path", f"not a readable disk image: {e}") from None
        if info.format not in DISK_FORMATS:
            raise errors.Invalid("path", f"the file is a {info.format} image; only "
                                         f"{' and '.join(DISK_FORMATS)} are supported")
        if disk_format and disk_format != info.format:
            raise errors.Invalid("disk_format", f"the file is {info.format}, not {disk_format}")
        props[VIRTUAL_SIZE_PROPERTY] = str(info.virtual_size)
        return self.db.register_image(name=name, path=path, disk_format=info.format,
                                      size_bytes=os.path.getsize(path), properties=props,
                                      checksum=checksum)

    def list_images(self, claims: Claims, *, page_size: int = 0, page_token: str = "",
                    marker: str | None = None) -> Page:
        return _paginate("images", self.db.list_images(), lambda i: [i.name, i.id], page_size,
                         page_token, marker=marker)

    def get_image(self, claims: Claims, image_id: str) -> records.Image:
        return self.db.get_image(image_id)

    def delete_image(self, claims: Claims, image_id: str) -> None:
        self.db.delete_image(image_id)

    # ---- key pairs -----------------------------------------------------------------

    @staticmethod
    def _key_owner(claims: Claims, user_id: str | None) -> str:
        """Whose key pairs: the caller's; another user's for an admin (Nova's
        os-keypairs user_id)."""
        if user_id is None or user_id == claims.user_id:
            return claims.user_id
        if not claims.is_admin:
            raise errors.Forbidden("only an admin may name another user's key pairs")
        return _check_name("user_id", user_id)

    def create_key_pair(self, claims: Claims, name: str,
                        user_id: str | None = None) -> records.KeyPair:
        """Generate a key pair; the answer carries its private key, kept nowhere."""
        owner = self._key_owner(claims, user_id)
        keypairs.check_name(name)
        private, public = keypairs.generate(f"{owner}@novalite")
        _, fingerprint = keypairs.check_public_key(public)
        pair = self.db.create_key_pair(user_id=owner, name=name, public_key=public,
                                       fingerprint=fingerprint)
        return replace(pair, private_key=private)

    def import_key_pair(self, claims: Claims, name: str, public_key: str,
                        user_id: str | None = None) -> records.KeyPair:
        owner = self._key_owner(claims, user_id)
        keypairs.check_name(name)
        key, fingerprint = keypairs.check_public_key(public_key)
        return self.db.create_key_pair(user_id=owner, name=name, public_key=key,
                                       fingerprint=fingerprint)

    def list_key_pairs(self, claims: Claims, user_id: str | None = None) -> list[records.KeyPair]:
        return self.db.list_key_pairs(self._key_owner(claims, user_id))

    def delete_key_pair(self, claims: Claims, name: str, user_id: str | None = None) -> None:
        self.db.delete_key_pair(self._key_owner(claims, user_id), name)

    # ---- networks ------------------------------------------------------------------

    def list_networks(self, claims: Claims) -> list[records.Network]:
        return self.db.list_networks()

    # ---- server groups -------------------------------------------------------------

    def _check_group_policy(self, field_name: str, policy: str) -> None:
        """Nova's UnsupportedPolicyException, said before anything is written:
        a policy whose filter or weigher the scheduler does not run."""
        refusal = unsupported_policy(policy, self.scheduler_config.enabled_filters,
                                     self.scheduler_config.weight_classes)
        if refusal is not None:
            raise errors.InvalidState(f"{field_name}: {refusal}; ask an admin to enable it")

    def create_server_group(self, claims: Claims, *, name: str, policy: str,
                            max_server_per_host: int | None = None) -> records.ServerGroup:
        _check_name("name", name)
        self._check_group_policy("policy", policy)
        return self.db.create_server_group(name=name, project_id=claims.project_id,
                                           user_id=claims.user_id, policy=policy,
                                           max_server_per_host=max_server_per_host)

    def get_server_group(self, claims: Claims, group_id: str) -> records.ServerGroup:
        return self.db.get_server_group(group_id,
                                        project_id=None if claims.is_admin else claims.project_id)

    def list_server_groups(self, claims: Claims) -> list[records.ServerGroup]:
        return self.db.list_server_groups(project_id=None if claims.is_admin else claims.project_id)

    def delete_server_group(self, claims: Claims, group_id: str) -> None:
        self.db.delete_server_group(group_id,
                                    project_id=None if claims.is_admin else claims.project_id)

    # ---- hosts ---------------------------------------------------------------------

    def list_hosts(self, claims: Claims, *, page_size: int = 0, page_token: str = "") -> Page:
        """Compute hosts by name, each with capacity and usage per resource class."""
        hosts = self.db.list_hosts(service_down_time=self.service_down_time)
        page = _paginate("hosts", hosts, lambda h: [h.name], page_size, page_token)
        return Page(self._host_views(page.items), page.next_page_token)

    def get_host(self, claims: Claims, name: str) -> HostView:
        return self._host_views([self.db.get_host(name, service_down_time=self.service_down_time)])[0]

    def list_services(self, claims: Claims) -> list[records.Service]:
        """Every service of the control plane, up or down (Nova's os-services)."""
        return self.db.list_services(service_down_time=self.service_down_time)

    def _host_views(self, hosts: Sequence[records.Host]) -> list[HostView]:
        services = {s.host: s for s in self.db.list_services(
            binary="compute", service_down_time=self.service_down_time)}
        aggregate_zones = {a.id: a.metadata["availability_zone"] for a in self.db.list_aggregates()
                           if a.metadata.get("availability_zone")}
        views = []
        for h in hosts:
            zones = sorted(aggregate_zones[a] for a in h.aggregates if a in aggregate_zones)
            zone = zones[0] if zones else (h.availability_zone or self.default_zone)
            views.append(HostView(h, h.service or services.get(h.name), zone))
        return views

    async def set_host_enabled(self, claims: Claims, name: str, enabled: bool,
                               reason: str | None = None) -> HostView:
        """Enable or disable a compute host's service (committed), then tell every
        scheduler replica (one that cannot be told catches up within
        report_interval)."""
        if reason is not None and len(reason) > NAME_MAX:
            raise errors.Invalid("reason", f"must be at most {NAME_MAX} characters")
        if not name:
            raise errors.Invalid("name", "must not be empty")

        def change() -> None:
            if enabled:
                self.db.enable_service(name, "compute")
            else:
                self.db.disable_service(name, "compute", reason=reason or None)

        await asyncio.to_thread(change)
        if self.scheduler is not None:
            await self.scheduler.hosts_changed([name])
        return await asyncio.to_thread(self.get_host, claims, name)

    # ---- aggregates and zones (Nova's os-aggregates) -------------------------------
    # Each change is committed, then every scheduler replica re-reads the
    # aggregates before the call returns: the next request is placed by them.

    def list_aggregates(self, claims: Claims) -> list[records.Aggregate]:
        return self.db.list_aggregates()

    def get_aggregate(self, claims: Claims, aggregate_id: str) -> records.Aggregate:
        return self.db.get_aggregate(aggregate_id)

    async def create_aggregate(self, claims: Claims, *, name: str,
                               availability_zone: str | None = None,
                               metadata: Mapping[str, str] | None = None) -> records.Aggregate:
        _check_name("name", name)
        if availability_zone is not None:
            _check_zone_name("availability_zone", availability_zone)
        meta = _check_aggregate_metadata(metadata) if metadata else {}
        if ZONE_KEY in meta:
            raise errors.Invalid("metadata", "give the zone as availability_zone")
        return await self._aggregate_change(lambda: self.db.create_aggregate(
            name, availability_zone=availability_zone,
            metadata={k: v for k, v in meta.items() if v is not None}))

    async def update_aggregate(self, claims: Claims, aggregate_id: str, *, name: str | None = None,
                               availability_zone: str | None = None) -> records.Aggregate:
        """Rename and/or move to another zone (Nova's PUT /os-aggregates/{id})."""
        if name is None and availability_zone is None:
            raise errors.Invalid("name", "give a new name, an availability_zone or both")
        if name is not None:
            _check_name("name", name)
        if availability_zone is not None:
            _check_zone_name("availability_zone", availability_zone)
        return await self._aggregate_change(lambda: self.db.update_aggregate(
            aggregate_id, name=name, availability_zone=availability_zone,
            default_zone=self.default_zone))

    async def delete_aggregate(self, claims: Claims, aggregate_id: str) -> None:
        await self._aggregate_change(lambda: self.db.delete_aggregate(aggregate_id))

    async def add_aggregate_host(self, claims: Claims, aggregate_id: str,
                                 host: str) -> records.Aggregate:
        _check_name("host", host)
        return await self._aggregate_change(lambda: self.db.add_aggregate_host(
            aggregate_id, host, default_zone=self.default_zone))

    async def remove_aggregate_host(self, claims: Claims, aggregate_id: str,
                                    host: str) -> records.Aggregate:
        _check_name("host", host)
        return await self._aggregate_change(lambda: self.db.remove_aggregate_host(
            aggregate_id, host, default_zone=self.default_zone))

    async def set_aggregate_metadata(self, claims: Claims, aggregate_id: str,
                                     metadata: Mapping[str, str | None]) -> records.Aggregate:
        """Set keys, remove those given None (Nova's set_metadata)."""
        meta = _check_aggregate_metadata(metadata)
        return await self._aggregate_change(lambda: self.db.set_aggregate_metadata(
            aggregate_id, meta, default_zone=self.default_zone))

    async def _aggregate_change(self, change: Callable[[], T]) -> T:
        result = await asyncio.to_thread(change)
        if self.scheduler is not None:
            await self.scheduler.aggregates_changed()
        return result

    def list_availability_zones(self, claims: Claims) -> list[Zone]:
        """Every zone that has hosts; the hosts are for admins only (Nova's
        os-availability-zone and its detail)."""
        zones = self.availability_zones()
        return zones if claims.is_admin else [Zone(z.name, z.available, ()) for z in zones]

    async def set_host_trait(self, claims: Claims, name: str, trait: str,
                             present: bool) -> HostView:
        """Add (``present``) or remove an admin's trait on a host, committed, then
        every scheduler replica re-reads the host."""
        _check_name("name", name)
        if not _TRAIT_RE.match(trait):
            raise errors.Invalid("trait", f"{trait[:64]!r}: 1..255 upper-case letters, digits "
                                          "and _ (Placement's trait names)")
        change = self.db.add_host_trait if present else self.db.remove_host_trait
        host = await asyncio.to_thread(change, name, trait)
        if self.scheduler is not None:
            await self.scheduler.hosts_changed([name])
        return await asyncio.to_thread(lambda: self._host_views([host])[0])

    # ---- quotas --------------------------------------------------------------------

    def get_quota(self, claims: Claims, project_id: str | None) -> records.QuotaSet:
        """A project's limits and usage; members may read their own project's only."""
        project = project_id or claims.project_id
        if project != claims.project_id and not claims.is_admin:
            raise errors.Forbidden("a member may read only their own project's quota")
        return self.db.get_quota(project)

    def get_default_quota(self, claims: Claims, project_id: str) -> records.QuotaSet:
        """The limits a project without its own has (Nova's quota defaults)."""
        return records.QuotaSet(project_id, self.db.default_quota_limits(),
                                {r: 0 for r in self.db.default_quota_limits()})

    def set_quota(self, claims: Claims, project_id: str, limits: Mapping[str, int]) -> records.QuotaSet:
        if not project_id:
            raise errors.Invalid("project_id", "is required")
        _check_name("project_id", project_id)
        for resource, limit in limits.items():
            if limit < -1:
                raise errors.Invalid(resource, f"must be -1 (unlimited) or >= 0, got {limit}")
        if not limits:
            return self.db.get_quota(project_id)
        return self.db.set_quota(project_id, limits)

    # ---- tokens --------------------------------------------------------------------

    def create_token(self, claims: Claims, *, project_id: str, user_id: str,
                     roles: Sequence[str], ttl_seconds: int | None = None) -> IssuedToken:
        if self.signer is None:
            raise errors.Unavailable("this API service cannot issue tokens")
        token, issued = self.signer.issue_with_claims(
            project_id, user_id, list(roles),
            DEFAULT_TTL_SECONDS if ttl_seconds is None else ttl_seconds)
        return IssuedToken(token, issued.expires_at)


def _flavor_scope(claims: Claims) -> str | None:
    """Whose flavor access counts: a member's project (public flavors and those
    it was given access to); None for an admin, who sees every flavor."""
    return None if claims.is_admin else claims.project_id


def _md5_of(path: str) -> str:
    """Glance's checksum of a file: its MD5, hex."""
    digest = hashlib.md5(usedforsecurity=False)
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def generate_password(length: int = PASSWORD_LENGTH) -> str:
    """Nova's generate_password: letters and digits, from the system's randomness."""
    alphabet = string.ascii_letters + string.digits
    return "".join(secrets.choice(alphabet) for _ in range(length))


def _check_image_fits(image: records.Image, flavor: records.Flavor) -> None:
    """Nova's _check_requested_image: the flavor must give the image the RAM and
    disk it asks for (a root_gb of 0 means "the image's size")."""
    props = image.properties
    min_ram = _int_property(props.get("min_ram"))
    if min_ram and flavor.memory_mb < min_ram:
        raise errors.Invalid("flavor_id", f"flavor {flavor.name} has {flavor.memory_mb} MB of RAM; "
                                          f"image {image.name} needs at least {min_ram} MB")
    if flavor.root_gb:
        min_disk = _int_property(props.get("min_disk"))
        if min_disk and flavor.root_gb < min_disk:
            raise errors.Invalid("flavor_id", f"flavor {flavor.name} has a {flavor.root_gb} GB root "
                                              f"disk; image {image.name} needs at least {min_disk} GB")
        size = _int_property(props.get(VIRTUAL_SIZE_PROPERTY))
        if size and size > flavor.root_gb * _GIB:
            raise errors.Invalid("flavor_id", f"flavor {flavor.name}'s {flavor.root_gb} GB root disk "
                                              f"is smaller than image {image.name} "
                                              f"({-(-size // _GIB)} GB)")


def _int_property(value: object) -> int:
    try:
        return int(str(value)) if value is not None else 0
    except ValueError:
        return 0


# ---- watching --------------------------------------------------------------------------

# What makes a server's state "changed" for a watcher: every committed update bumps
# updated_at; a fault may be added without one.
_Key = tuple[datetime, int, bool]


def _key(inst: records.Instance) -> _Key:
    return (inst.updated_at, inst.fault.id if inst.fault is not None else 0,
            inst.deleted_at is not None)


class _Subscriber:
    """One WatchServers stream: which servers it wants, and the latest state of
    each that it has not yet been sent (a slow reader skips intermediate ones)."""

    def __init__(self, project_id: str | None, ids: frozenset[str] | None) -> None:
        self.project_id = project_id
        self.ids = ids
        self.primed = False
        self.pending: dict[str, tuple[records.Instance, datetime]] = {}
        self.wake = asyncio.Event()

    def wants(self, inst: records.Instance) -> bool:
        return ((self.project_id is None or inst.project_id == self.project_id)
                and (self.ids is None or inst.id in self.ids))

    def offer(self, inst: records.Instance, when: datetime) -> None:
        self.pending.pop(inst.id, None)
        self.pending[inst.id] = (inst, when)
        self.wake.set()


@dataclass
class _Poll:
    current: dict[str, records.Instance]
    changed: list[records.Instance]  # new, changed, or deleted since the last poll
    missing: dict[str, records.Instance]  # ids new subscribers asked for, not live now
    at: datetime


class WatchFeed:
    """One poller of the instances table for every WatchServers stream of this
    process: it reads the live servers every ``poll_interval`` seconds (at once
    when a stream starts) while anyone watches, and hands each stream the servers
    it wants: the current state of each on its first poll, then each change.
    Polls run one after another, so a stream sees each server's states in commit
    order."""

    def __init__(self, db: Database, poll_interval: float, page_size: int = MAX_PAGE_SIZE) -> None:
        self.db = db
        self.poll_interval = poll_interval
        self.page_size = page_size
        self._subscribers: set[_Subscriber] = set()
        self._task: asyncio.Task[None] | None = None
        self._kick = asyncio.Event()

    async def subscribe(self, subscriber: _Subscriber) -> None:
        self._subscribers.add(subscriber)
        self._kick.set()
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(self._run())

    def unsubscribe(self, subscriber: _Subscriber) -> None:
        self._subscribers.discard(subscriber)
        if not self._subscribers and self._task is not None:
            self._task.cancel()
            self._task = None

    async def close(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            try:
                await task
            except asyncio.CancelledError:
                pass

    async def _run(self) -> None:
        known: dict[str, _Key] = {}  # each server's state at the last poll
        while self._subscribers:
            self._kick.clear()
            new = [s for s in self._subscribers if not s.primed]
            wanted = {i for s in new if s.ids is not None for i in s.ids}
            try:
                poll = await asyncio.to_thread(self._poll, known, wanted)
            except Exception:  # noqa: BLE001 - a database hiccup must not end the streams
                LOG.exception("polling servers for WatchServers failed; retrying")
            else:
                known = {sid: _key(inst) for sid, inst in poll.current.items()}
                self._deliver(poll, new)
            try:
                await asyncio.wait_for(self._kick.wait(), self.poll_interval)
            except asyncio.TimeoutError:
                pass

    def _deliver(self, poll: _Poll, new: list[_Subscriber]) -> None:
        for subscriber in list(self._subscribers):
            if not subscriber.primed and subscriber not in new:
                continue  # joined during this poll: primed by the next one
            if subscriber in new:
                subscriber.primed = True
                for inst in poll.current.values():
                    if subscriber.wants(inst):
                        subscriber.offer(inst, poll.at)
                for inst in list(poll.missing.values()) + poll.changed:
                    if inst.deleted_at is not None and subscriber.wants(inst) \
                            and subscriber.ids is not None:
                        subscriber.offer(inst, inst.deleted_at)
            else:
                for inst in poll.changed:
                    if subscriber.wants(inst):
                        subscriber.offer(inst, inst.deleted_at or inst.updated_at)

    def _poll(self, known: Mapping[str, _Key], wanted: set[str]) -> _Poll:
        at = _utcnow()
        current: dict[str, records.Instance] = {}
        marker: str | None = None
        while True:
            page = self.db.list_instances(limit=self.page_size, marker=marker)
            for inst in page.instances:
                current[inst.id] = inst
            if page.next_marker is None:
                break
            marker = page.next_marker
        changed = [inst for sid, inst in current.items() if known.get(sid) != _key(inst)]
        for sid in known.keys() - current.keys():
            try:
                changed.append(self.db.get_instance(sid, include_deleted=True))
            except errors.NotFound:
                pass
        missing: dict[str, records.Instance] = {}
        for sid in wanted - current.keys():
            try:
                missing[sid] = self.db.get_instance(sid, include_deleted=True)
            except errors.NotFound:
                pass
        return _Poll(current, changed, missing, at)


__all__: Sequence[str] = [
    "ApiManager", "ComputeAPI", "ConductorAPI", "CreateServer", "Created", "HostView",
    "IssuedToken", "Page", "Zone",
    "SchedulerAPI", "ServerFilters", "WatchFeed", "check_image_properties",
]
