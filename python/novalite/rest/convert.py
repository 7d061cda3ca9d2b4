"""REST <-> records, the one place for it (as novalite/convert.py is for
protobuf): Keystone's, Nova's and Glance's JSON for the records the managers
return, and the managers' requests from Nova's bodies.

``base`` is an API's base URL (".../compute/v2.1"), ``root`` the server's
("http://host:port"); ``version`` a compute microversion, which decides the shape
as Nova's view builders do.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import ipaddress
import uuid
from datetime import datetime, timezone
from typing import Any, Iterable, Mapping, Sequence

from novalite import errors
from novalite.api.manager import MAX_USER_DATA, CreateServer, HostView, Zone
from novalite.convert import explain_fault
from novalite.identity.manager import DEFAULT_DOMAIN_ID, DEFAULT_DOMAIN_NAME, TokenInfo
from novalite.objects import records
from novalite.objects.lifecycle import SystemMetadata
from novalite.objects.states import VmState
from novalite.rest.microversion import Version
from novalite.rest.schema import Body
from novalite.virt.driver import domain_name

DOMAIN = {"id": DEFAULT_DOMAIN_ID, "name": DEFAULT_DOMAIN_NAME}
# Nova's limit on metadata items of a server or an image
MAX_METADATA_ITEMS = 128
_CATALOG = (("identity", "keystone", "/identity"), ("compute", "nova", "/compute/v2.1"),
            ("image", "glance", "/image"))
_INTERFACES = ("public", "internal", "admin")
_ID_NAMESPACE = uuid.UUID("5b3c6f1e-6a55-4c3e-9a89-0c1d2a2b8e71")


def stable_id(*parts: str) -> str:
    """A UUID that is always the same for the same parts (ids of what has no row)."""
    return str(uuid.uuid5(_ID_NAMESPACE, "/".join(parts)))


# ---- times ---------------------------------------------------------------------------

def isotime(t: datetime | None) -> str | None:
    """Nova's and Keystone's "2026-12-04T19:45:13Z"."""
    return None if t is None else t.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def isotime_micro(t: datetime | None) -> str | None:
    """"2026-12-04T19:45:13.000000", Nova's usage and action times (naive UTC)."""
    return None if t is None else t.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%f")


def parse_time(field: str, text: str | None) -> datetime | None:
    """An ISO 8601 time from a query ("2026-12-04T19:45:13Z"); UTC when it names no zone."""
    if text is None:
        return None
    try:
        t = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise errors.Invalid(field, f"not an ISO 8601 time: {text[:64]!r}") from None
    return t if t.tzinfo is not None else t.replace(tzinfo=timezone.utc)


def keystone_time(t: datetime) -> str:
    return t.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.000000Z")


# ---- identity -------------------------------------------------------------------------

def catalog(root: str, region: str) -> list[dict[str, Any]]:
    """The services and their endpoints: identity, compute, image."""
    return [{"id": stable_id("service", kind), "type": kind, "name": name,
             "endpoints": [{"id": stable_id("endpoint", kind, interface), "interface": interface,
                            "region": region, "region_id": region, "url": root + path}
                           for interface in _INTERFACES]}
            for kind, name, path in _CATALOG]


def role(name: str) -> dict[str, Any]:
    """Roles are the fixed set of auth/tokens.py; each one's id is its name."""
    return {"id": name, "name": name, "domain_id": None, "description": None,
            "options": {}, "links": {"self": None}}


def token(info: TokenInfo, root: str, region: str, *, with_catalog: bool = True) -> dict[str, Any]:
    c = info.claims
    body: dict[str, Any] = {
        "methods": list(info.methods),
        "user": {"id": c.user_id, "name": info.user_name, "domain": DOMAIN,
                 "password_expires_at": None},
        "project": {"id": c.project_id, "name": info.project_name, "domain": DOMAIN},
        "roles": [{"id": r, "name": r} for r in sorted(c.roles)],
        "audit_ids": [c.token_id[:22]],
        "expires_at": keystone_time(c.expires_at),
        "issued_at": keystone_time(c.issued_at),
        "is_domain": False,
    }
    if with_catalog:
        body["catalog"] = catalog(root, region)
    return {"token": body}


def project(p: records.Project, base: str) -> dict[str, Any]:
    return {"id": p.id, "name": p.name, "domain_id": p.domain_id, "description": p.description,
            "enabled": p.enabled, "is_domain": False, "parent_id": p.domain_id, "tags": [],
            "options": {}, "links": {"self": f"{base}/projects/{p.id}"}}


def user(u: records.User, base: str) -> dict[str, Any]:
    return {"id": u.id, "name": u.name, "domain_id": u.domain_id, "enabled": u.enabled,
            "default_project_id": u.default_project_id, "password_expires_at": None,
            "options": {}, "links": {"self": f"{base}/users/{u.id}"}}


def role_assignment(a: records.RoleAssignment, base: str) -> dict[str, Any]:
    return {"role": {"id": a.role}, "user": {"id": a.user_id},
            "scope": {"project": {"id": a.project_id}},
            "links": {"assignment": f"{base}/projects/{a.project_id}/users/{a.user_id}"
                                    f"/roles/{a.role}"}}


# ---- compute: links ----------------------------------------------------------------------

def links(base: str, root: str, kind: str, item_id: str) -> list[dict[str, str]]:
    return [{"rel": "self", "href": f"{base}/{kind}/{item_id}"},
            {"rel": "bookmark", "href": f"{root}/compute/{kind}/{item_id}"}]


def next_link(base: str, kind: str, marker: str | None, limit: int | None,
              query: Mapping[str, str]) -> list[dict[str, str]]:
    """Nova's ``<kind>_links``: where the next page starts, if there is one."""
    if marker is None:
        return []
    from urllib.parse import urlencode

    params = {k: v for k, v in query.items() if k not in ("marker", "limit")}
    if limit is not None:
        params["limit"] = str(limit)
    params["marker"] = marker
    return [{"rel": "next", "href": f"{base}/{kind}?{urlencode(params)}"}]


# ---- compute: flavors ----------------------------------------------------------------------

def flavor_brief(f: records.Flavor, base: str, root: str, version: Version) -> dict[str, Any]:
    out: dict[str, Any] = {"id": f.id, "name": f.name, "links": links(base, root, "flavors", f.id)}
    if version.at_least("2.55"):
        out["description"] = None
    return out


def flavor(f: records.Flavor, base: str, root: str, version: Version) -> dict[str, Any]:
    out = flavor_brief(f, base, root, version)
    out.update({
        "ram": f.memory_mb, "disk": f.root_gb, "vcpus": f.vcpus,
        "OS-FLV-EXT-DATA:ephemeral": f.ephemeral_gb,
        # before 2.75 Nova says "" for no swap
        "swap": f.swap if f.swap or version.at_least("2.75") else "",
        "os-flavor-access:is_public": f.is_public, "OS-FLV-DISABLED:disabled": False,
        "rxtx_factor": 1.0,
    })
    if version.at_least("2.61"):
        out["extra_specs"] = dict(f.extra_specs)
    return out


# ---- compute: servers --------------------------------------------------------------------

def host_id(project_id: str, host: str | None) -> str:
    """Nova's hostId: the host, hashed with the project, so a project can tell its
    servers apart by host without learning the host's name."""
    if not host:
        return ""
    return hashlib.sha224((project_id + host).encode()).hexdigest()


def hostname(name: str) -> str:
    """Nova's sanitize_hostname: what the guest would call itself."""
    out = "".join(c if c.isalnum() or c == "-" else "-" for c in name.lower().replace("_", "-"))
    return out.strip("-.")[:63] or "server"


def server_brief(inst: records.Instance, base: str, root: str) -> dict[str, Any]:
    return {"id": inst.id, "name": inst.name, "links": links(base, root, "servers", inst.id)}


def host_status(host: str | None, service: records.Service | None) -> str:
    """Nova's host_status of a server on ``host`` whose compute service is
    ``service``: UP, DOWN, MAINTENANCE (disabled), UNKNOWN, or "" with no host."""
    if not host:
        return ""
    if service is None:
        return "UNKNOWN"
    if service.disabled:
        return "MAINTENANCE"
    return "UP" if service.is_up else "DOWN"


def server(inst: records.Instance, base: str, root: str, version: Version, *, admin: bool,
           flavor_of: records.Flavor | None, show_groups: bool = False,
           host_status: str | None = None) -> dict[str, Any]:
    """A server as Nova's detail view has it at ``version``. ``flavor_of``: the
    server's flavor (for the embedded flavor of 2.47 on), None if gone;
    ``host_status`` (2.16) for the callers who may see it."""
    deleted = inst.deleted_at is not None
    vm_state = VmState.DELETED if deleted else inst.vm_state
    out: dict[str, Any] = server_brief(inst, base, root)
    out.update({
        "status": "DELETED" if deleted else inst.status,
        "tenant_id": inst.project_id, "user_id": inst.user_id,
        "metadata": dict(inst.metadata),
        "hostId": host_id(inst.project_id, inst.host),
        "image": ({"id": inst.image_id,
                   "links": [{"rel": "bookmark", "href": f"{root}/compute/images/{inst.image_id}"}]}
                  if inst.image_id else ""),
        "created": isotime(inst.created_at), "updated": isotime(inst.updated_at),
        "addresses": addresses(inst.network_info, extended=True),
        "accessIPv4": "", "accessIPv6": "",
        "OS-DCF:diskConfig": "MANUAL",
        "progress": 100 if inst.vm_state == VmState.ACTIVE else 0,
        "OS-EXT-AZ:availability_zone": inst.availability_zone or "",
        # Nova's config_drive is a string: "True", or "" for none
        "config_drive": "True" if inst.config_drive else "", "key_name": inst.key_name,
        "OS-SRV-USG:launched_at": isotime_micro(inst.launched_at),
        "OS-SRV-USG:terminated_at": isotime_micro(inst.deleted_at),
        "OS-EXT-STS:task_state": inst.task_state, "OS-EXT-STS:vm_state": vm_state,
        "OS-EXT-STS:power_state": inst.power_state,
        "os-extended-volumes:volumes_attached": [],
    })
    if version.at_least("2.47"):
        out["flavor"] = _embedded_flavor(inst, flavor_of)
    else:
        out["flavor"] = {"id": inst.flavor_id, "links": [
            {"rel": "bookmark", "href": f"{root}/compute/flavors/{inst.flavor_id}"}]}
    if admin:
        out["OS-EXT-SRV-ATTR:host"] = inst.host
        out["OS-EXT-SRV-ATTR:hypervisor_hostname"] = inst.node or inst.host
        out["OS-EXT-SRV-ATTR:instance_name"] = domain_name(inst.id)
    if version.at_least("2.3") and admin:
        out.update({"OS-EXT-SRV-ATTR:reservation_id": inst.reservation_id,
                    "OS-EXT-SRV-ATTR:kernel_id": "", "OS-EXT-SRV-ATTR:ramdisk_id": "",
                    "OS-EXT-SRV-ATTR:root_device_name": None,
                    "OS-EXT-SRV-ATTR:user_data": inst.user_data})
    if (version.at_least("2.3") and admin) or version.at_least("2.90"):
        out["OS-EXT-SRV-ATTR:hostname"] = hostname(inst.name)
    if version.at_least("2.9"):
        out["locked"] = inst.locked
    if version.at_least("2.16") and host_status is not None:
        out["host_status"] = host_status
    if version.at_least("2.19"):
        out["description"] = None
    if version.at_least("2.26"):
        out["tags"] = []
    if version.at_least("2.63"):
        out["trusted_image_certificates"] = None
    if version.at_least("2.71") and show_groups:
        out["server_groups"] = [inst.group_id] if inst.group_id else []
    if version.at_least("2.73"):
        out["locked_reason"] = (inst.system_metadata.get(SystemMetadata.LOCKED_REASON)
                                if inst.locked else None)
    if inst.fault is not None and vm_state in (VmState.ERROR, VmState.DELETED):
        out["fault"] = fault(inst.fault, admin=admin)
    return out


def addresses(vifs: Iterable[records.Vif], *, extended: bool) -> dict[str, list[dict[str, Any]]]:
    """Nova's addresses: each network's name with its fixed IPs, in NIC order;
    ``extended`` (the server's view, not /ips) with their type and MAC."""
    out: dict[str, list[dict[str, Any]]] = {}
    for v in vifs:
        entry: dict[str, Any] = {"version": v.version, "addr": v.address}
        if extended:
            entry.update({"OS-EXT-IPS:type": "fixed", "OS-EXT-IPS-MAC:mac_addr": v.mac})
        out.setdefault(v.network, []).append(entry)
    return out


def _embedded_flavor(inst: records.Instance, f: records.Flavor | None) -> dict[str, Any]:
    """2.47's flavor: the sizes the server was built with."""
    return {"vcpus": inst.vcpus, "ram": inst.memory_mb, "disk": inst.root_gb,
            "ephemeral": inst.ephemeral_gb, "swap": f.swap if f is not None else 0,
            "original_name": f.name if f is not None else inst.flavor_id,
            "extra_specs": dict(f.extra_specs) if f is not None else {}}


def fault(f: records.Fault, *, admin: bool) -> dict[str, Any]:
    """Nova's fault; details for admins, or when the code is not 500. novalite adds
    ``rejections``: how many hosts each check removed when none was valid."""
    out: dict[str, Any] = {"code": f.code, "created": isotime(f.created_at), "message": f.message}
    if admin or f.code != 500:
        out["details"] = explain_fault(f.details)
    rejections = f.details.get("rejections")
    if rejections:
        out["rejections"] = [{"check": str(c), "hosts": int(n)} for c, n in rejections]
    return out


def create_server(body: Body, version: Version) -> tuple[CreateServer, bool]:
    """Nova's ``POST /servers`` body as the manager's request, and whether the
    caller asked for the reservation id only. What novalite cannot honour yet is
    refused naming the field, never dropped."""
    top = body.only("server", "os:scheduler_hints", "OS-SCH-HNT:scheduler_hints")
    s = top.obj("server", required=True)
    assert s is not None
    known = {"name", "flavorRef", "imageRef", "min_count", "max_count", "availability_zone",
             "metadata", "networks", "return_reservation_id", "key_name", "user_data",
             "security_groups", "block_device_mapping_v2", "block_device_mapping",
             "config_drive", "adminPass", "OS-DCF:diskConfig", "accessIPv4", "accessIPv6",
             "personality", "description", "tags", "trusted_image_certificates", "host",
             "hypervisor_hostname", "hostname"}
    s.only(*known)
    image_ref = ref(s.str("imageRef", min_len=0, max_len=1024) or "") or None
    image_ref = _image_mapping(s, image_ref)
    for key, why in (("block_device_mapping", "volumes"), ("personality", "personality files"),
                     ("description", "server descriptions"), ("tags", "server tags"),
                     ("trusted_image_certificates", "trusted image certificates"),
                     ("host", "requested hosts (2.74)"),
                     ("hypervisor_hostname", "requested hosts (2.74)"),
                     ("hostname", "hostnames (2.90)"), ("accessIPv4", "access IPs"),
                     ("accessIPv6", "access IPs")):
        if key in s and s.raw(key) not in (None, False, "", [], {}):
            raise errors.Invalid(f"server.{key}", f"novalite has no {why} yet "
                                                  "(docs/rest-api.md)")
    groups = s.raw("security_groups")
    if groups not in (None, []) and groups != [{"name": "default"}]:
        raise errors.Invalid("server.security_groups", "novalite has no security groups yet; "
                                                       "only [{\"name\": \"default\"}] is accepted")
    disk_config = s.str("OS-DCF:diskConfig")
    if disk_config not in (None, "MANUAL", "AUTO"):
        raise errors.Invalid("server.OS-DCF:diskConfig", "must be MANUAL or AUTO")
    networks = _networks(s, version)
    min_count = s.int("min_count", minimum=1) or 1
    max_count = s.int("max_count", minimum=1)
    hints = (top.obj("os:scheduler_hints") if "os:scheduler_hints" in top
             else top.obj("OS-SCH-HNT:scheduler_hints"))
    group, same, different = _hints(hints)
    req = CreateServer(
        name=s.str("name", required=True) or "",
        flavor_id=ref(s.str("flavorRef", required=True, max_len=1024) or ""),
        image_id=image_ref,
        min_count=min_count, max_count=max_count,
        availability_zone=s.str("availability_zone"),
        metadata=s.str_map("metadata", max_items=MAX_METADATA_ITEMS) or {},
        group=group, same_host=same, different_host=different,
        key_name=s.str("key_name", nullable=True), user_data=_user_data(s),
        # Nova generates one for an empty adminPass too
        admin_pass=s.str("adminPass", min_len=0, nullable=True) or None,
        config_drive=s.bool("config_drive") if s.raw("config_drive") is not None else None,
        networks=networks)
    return req, bool(s.bool("return_reservation_id"))


def _user_data(s: Body) -> bytes | None:
    """Nova's user_data: base64 text of at most 65535 characters (the manager
    checks the decoded data's size the same way); line breaks allowed, as
    base64 tools wrap."""
    text = s.str("user_data", min_len=0, max_len=MAX_USER_DATA, nullable=True)
    if text is None:
        return None
    try:
        return base64.b64decode("".join(text.split()), validate=True)
    except (binascii.Error, ValueError):
        raise errors.Invalid("server.user_data", "must be base64-encoded") from None


def _image_mapping(s: Body, image_ref: str | None) -> str | None:
    """block_device_mapping_v2 as novalite has it: none, or the image booted to a
    local disk (what imageRef says, and what `openstack server create --image`
    sends); volumes are refused."""
    mappings = s.raw("block_device_mapping_v2")
    if mappings in (None, []):
        return image_ref
    field = "server.block_device_mapping_v2"
    if not isinstance(mappings, list) or len(mappings) != 1 or not isinstance(mappings[0], dict):
        raise errors.Invalid(field, "novalite has no volumes yet: only the image booted to a "
                                    "local disk")
    m = Body(mappings[0], f"{field}.0")
    m.only("uuid", "boot_index", "source_type", "destination_type", "delete_on_termination",
           "device_name", "tag", "disk_bus", "device_type", "guest_format", "volume_size")
    if m.str("source_type") != "image" or m.str("destination_type") not in (None, "local") \
            or str(m.raw("boot_index")) not in ("0", "None"):
        raise errors.Invalid(field, "novalite has no volumes yet: only the image booted to a "
                                    "local disk (source_type image, destination_type local)")
    uuid_ = m.str("uuid", required=True, max_len=64)
    if image_ref is not None and uuid_ != image_ref:
        raise errors.Invalid(f"{field}.0.uuid", "must be imageRef's image")
    return uuid_


def ref(value: str) -> str:
    """An id, or a link to it (Nova takes either for flavorRef and imageRef)."""
    return value.rstrip("/").rsplit("/", 1)[-1] if "/" in value else value


def _networks(s: Body, version: Version) -> list[str]:
    """The manager's networks from Nova's: [] for every network (none given, [],
    or "auto": novalite's networks are flat, every project's, so the network
    Nova would allocate is all of them), ["none"], or the networks' ids."""
    networks = s.raw("networks")
    field = "server.networks"
    if networks is None:
        if version.at_least("2.37") and "networks" not in s:
            raise errors.Invalid(field, "is required from microversion 2.37: "
                                        "'auto', 'none' or a list")
        return []
    if isinstance(networks, str):
        if networks not in ("auto", "none") or not version.at_least("2.37"):
            raise errors.Invalid(field, "must be a list of {\"uuid\": ...}; 'auto' and "
                                        "'none' from microversion 2.37")
        return ["none"] if networks == "none" else []
    if not isinstance(networks, list):
        raise errors.Invalid(field, "must be a list of {\"uuid\": ...}, 'auto' or 'none'")
    ids = []
    for i, entry in enumerate(networks):
        n = Body(entry, f"{field}.{i}")
        n.only("uuid", "port", "fixed_ip", "tag")
        for key, why in (("port", "novalite has no ports (no Neutron): give the network's "
                                  "uuid"),
                         ("fixed_ip", "novalite chooses the fixed IP itself (the next free "
                                      "one); asking for one is not supported"),
                         ("tag", "novalite has no device tags")):
            if n.raw(key) is not None:
                raise errors.Invalid(n.at(key), why)
        ids.append(n.str("uuid", required=True) or "")
    return ids


def _hints(hints: Body | None) -> tuple[str | None, list[str], list[str]]:
    """Nova's hints the enabled filters read; like Nova, others are ignored (they
    belong to filters novalite does not have)."""
    if hints is None:
        return None, [], []
    group = hints.str("group", max_len=64)

    def ids(key: str) -> list[str]:
        value = hints.raw(key)
        if value is None:
            return []
        items = value if isinstance(value, list) else [value]
        if not all(isinstance(v, str) for v in items):
            raise errors.Invalid(hints.at(key), "must be a server id or a list of them")
        return list(items)
    return group, ids("same_host"), ids("different_host")


def instance_action(a: records.InstanceAction, version: Version, *, admin: bool,
                    with_events: bool) -> dict[str, Any]:
    out: dict[str, Any] = {
        "action": a.action, "instance_uuid": a.instance_id, "request_id": a.request_id,
        "user_id": a.user_id, "project_id": a.project_id,
        "start_time": isotime_micro(a.start_time), "message": a.message,
    }
    if version.at_least("2.58"):
        out["updated_at"] = isotime_micro(a.finish_time or a.start_time)
    if with_events:
        events = []
        for e in a.events:
            event: dict[str, Any] = {"event": e.event, "start_time": isotime_micro(e.start_time),
                                     "finish_time": isotime_micro(e.finish_time),
                                     "result": e.result}
            if admin:
                event["traceback"] = e.traceback
            events.append(event)
        out["events"] = events
    return out


# ---- compute: migrations, key pairs, networks ----------------------------------------------

def int_id(*parts: str) -> int:
    """An integer id for what Nova numbers and novalite names by UUID or by name
    (a migration's, a key pair's): the same one every time."""
    return int(hashlib.sha256("/".join(parts).encode()).hexdigest()[:7], 16)


def migration(mig: records.Migration, base: str, root: str, version: Version) -> dict[str, Any]:
    """Nova's os-migrations entry. Nova's dest_host is the destination's IP,
    which novalite does not keep (null); flavors by id, as novalite names them;
    who started it is not recorded (2.80's user_id and project_id null)."""
    out: dict[str, Any] = {
        "id": int_id("migration", mig.id), "instance_uuid": mig.instance_id,
        "status": mig.status, "source_compute": mig.source_host, "source_node": mig.source_host,
        "dest_compute": mig.dest_host, "dest_node": mig.dest_host, "dest_host": None,
        "old_instance_type_id": mig.old_flavor_id, "new_instance_type_id": mig.new_flavor_id,
        "created_at": isotime_micro(mig.created_at), "updated_at": isotime_micro(mig.updated_at),
    }
    if version.at_least("2.23"):
        out["migration_type"] = mig.migration_type
        if mig.migration_type == "live-migration" and mig.is_open:
            out["links"] = links(base, root, f"servers/{mig.instance_id}/migrations",
                                 str(out["id"]))
    if version.at_least("2.59"):
        out["uuid"] = mig.id
    if version.at_least("2.80"):
        out["user_id"] = out["project_id"] = None
    return out


def server_migration(mig: records.Migration, version: Version) -> dict[str, Any]:
    """A live migration in progress as GET /servers/{id}/migrations shows it;
    novalite does not measure its progress (the byte counts are null)."""
    out: dict[str, Any] = {
        "id": int_id("migration", mig.id), "server_uuid": mig.instance_id,
        "status": mig.status, "source_compute": mig.source_host, "source_node": mig.source_host,
        "dest_compute": mig.dest_host, "dest_node": mig.dest_host, "dest_host": None,
        "created_at": isotime_micro(mig.created_at), "updated_at": isotime_micro(mig.updated_at),
        **{f"{what}_{count}_bytes": None for what in ("memory", "disk")
           for count in ("total", "processed", "remaining")},
    }
    if version.at_least("2.59"):
        out["uuid"] = mig.id
    if version.at_least("2.80"):
        out["user_id"] = out["project_id"] = None
    return out


def key_pair(k: records.KeyPair, version: Version, *, view: str) -> dict[str, Any]:
    """Nova's key pair: ``view`` "index" (a listing's entry), "create" (with the
    private key of a generated pair) or "show"; its type from 2.2."""
    out: dict[str, Any] = {"name": k.name, "public_key": k.public_key,
                           "fingerprint": k.fingerprint}
    if view != "index":
        out["user_id"] = k.user_id
    if view == "create" and k.private_key is not None:
        out["private_key"] = k.private_key
    if view == "show":
        out.update({"id": int_id("keypair", k.user_id, k.name),
                    "created_at": isotime_micro(k.created_at), "updated_at": None,
                    "deleted": False, "deleted_at": None})
    if version.at_least("2.2"):
        out["type"] = k.type
    return out


def network(n: records.Network, *, admin: bool) -> dict[str, Any]:
    """Nova's os-networks proxy entry (nova-network's fields; what novalite's
    flat networks do not have is null); the bridge and DHCP server for admins."""
    subnet = ipaddress.ip_network(n.cidr)
    v6 = subnet.version == 6
    out: dict[str, Any] = {
        "id": n.id, "label": n.name,
        "cidr": None if v6 else n.cidr, "netmask": None if v6 else str(subnet.netmask),
        "gateway": None if v6 else n.gateway,
        "broadcast": None if v6 else str(subnet.broadcast_address),
        "cidr_v6": n.cidr if v6 else None, "gateway_v6": n.gateway if v6 else None,
        "netmask_v6": str(subnet.prefixlen) if v6 else None, "dns1": None, "dns2": None,
    }
    if admin:
        out.update({"bridge": n.bridge, "dhcp_server": n.dhcp_server,
                    "created_at": isotime_micro(n.created_at), "deleted": False})
    return out


# ---- compute: server groups, zones, hosts, quotas --------------------------------------

def server_group(g: records.ServerGroup, version: Version) -> dict[str, Any]:
    out: dict[str, Any] = {"id": g.id, "name": g.name, "members": list(g.members)}
    if version.at_least("2.64"):
        out["policy"] = g.policy
        out["rules"] = ({"max_server_per_host": g.max_server_per_host}
                        if g.max_server_per_host is not None else {})
    else:
        out["policies"] = [g.policy]
        out["metadata"] = {}
    if version.at_least("2.13"):
        out["project_id"] = g.project_id
        out["user_id"] = g.user_id
    return out


def service_id(s: records.Service, version: Version) -> str | int:
    """2.53 on, a service's id is a UUID (here one derived from its host and binary)."""
    return stable_id("service", s.host, s.binary) if version.at_least("2.53") else s.id


def service(s: records.Service, zone: str, version: Version) -> dict[str, Any]:
    out: dict[str, Any] = {
        "id": service_id(s, version), "binary": f"nova-{s.binary}", "host": s.host,
        "zone": zone if s.binary == "compute" else "internal",
        "status": "disabled" if s.disabled else "enabled", "state": "up" if s.is_up else "down",
        "updated_at": isotime_micro(s.last_seen_up), "disabled_reason": s.disabled_reason,
    }
    if version.at_least("2.11"):
        out["forced_down"] = False
    return out


def hypervisor(view: HostView, version: Version, *, detail: bool,
               servers: Sequence[records.Instance] | None = None) -> dict[str, Any]:
    h, svc = view.host, view.service
    out: dict[str, Any] = {
        "id": h.uuid if version.at_least("2.53") else _legacy_int_id(h.uuid),
        "hypervisor_hostname": h.name,
        "state": "up" if svc is not None and svc.is_up else "down",
        "status": "disabled" if svc is not None and svc.disabled else "enabled",
    }
    if servers is not None:
        out["servers"] = [{"uuid": i.id, "name": i.name} for i in servers]
    if not detail:
        return out
    out.update({"hypervisor_type": h.hypervisor_type or "QEMU",
                "hypervisor_version": h.hypervisor_version or 0, "host_ip": "127.0.0.1",
                "service": {"host": h.name,
                            "id": (service_id(svc, version) if svc is not None else None),
                            "disabled_reason": svc.disabled_reason if svc is not None else None}})
    if version.at_least("2.88"):
        out["uptime"] = None
        return out
    vcpu, ram, disk = (h.inventories.get(rc) for rc in ("VCPU", "MEMORY_MB", "DISK_GB"))
    used = h.usage
    out.update({
        "vcpus": vcpu.total if vcpu else 0, "vcpus_used": used.get("VCPU", 0),
        "memory_mb": ram.total if ram else 0,
        "memory_mb_used": used.get("MEMORY_MB", 0) + (ram.reserved if ram else 0),
        "local_gb": disk.total if disk else 0, "local_gb_used": used.get("DISK_GB", 0),
        "free_ram_mb": h.free_ram_mb, "free_disk_gb": h.free_disk_mb // 1024,
        "disk_available_least": h.free_disk_mb // 1024, "current_workload": h.num_io_ops,
        "running_vms": h.num_instances, "cpu_info": dict(h.cpu_info),
    })
    return out


def _legacy_int_id(provider_uuid: str) -> int:
    """Before 2.53 a hypervisor's id is an integer: one from its provider's UUID."""
    return int(provider_uuid.replace("-", "")[:7], 16)


def availability_zone(zone: Zone, *, detail: bool) -> dict[str, Any]:
    """Nova's availabilityZoneInfo entry; the hosts (admins' detail) with their
    compute service."""
    hosts = None
    if detail:
        hosts = {s.host: {"nova-compute": {
            "available": s.is_up, "active": not s.disabled,
            "updated_at": isotime_micro(s.last_seen_up) if s.last_seen_up else None}}
            for s in zone.services}
    return {"zoneName": zone.name, "zoneState": {"available": zone.available}, "hosts": hosts}


_QUOTA_KEYS = {"instances": "instances", "cores": "cores", "ram": "ram"}


def quota_set(q: records.QuotaSet, *, detail: bool) -> dict[str, Any]:
    out: dict[str, Any] = {"id": q.project_id}
    for key, resource in _QUOTA_KEYS.items():
        limit = q.limits.get(resource, -1)
        out[key] = ({"limit": limit, "in_use": q.usage.get(resource, 0), "reserved": 0}
                    if detail else limit)
    out["metadata_items"] = ({"limit": MAX_METADATA_ITEMS, "in_use": 0, "reserved": 0}
                             if detail else MAX_METADATA_ITEMS)
    return out


def quota_limits(body: Body) -> dict[str, int]:
    """PUT os-quota-sets' body: the limits novalite enforces (instances, cores, ram)."""
    q = body.only("quota_set").obj("quota_set", required=True)
    assert q is not None
    unknown = sorted(set(q.keys()) - set(_QUOTA_KEYS) - {"force"})
    if unknown:
        raise errors.Invalid(f"quota_set.{unknown[0]}", "novalite enforces only instances, "
                                                       "cores and ram")
    return {resource: int(q.int(key, minimum=-1) or 0) for key, resource in _QUOTA_KEYS.items()
            if key in q}


def limits(q: records.QuotaSet) -> dict[str, Any]:
    lim, use = q.limits, q.usage
    return {"limits": {"rate": [], "absolute": {
        "maxTotalInstances": lim.get("instances", -1), "maxTotalCores": lim.get("cores", -1),
        "maxTotalRAMSize": lim.get("ram", -1), "totalInstancesUsed": use.get("instances", 0),
        "totalCoresUsed": use.get("cores", 0), "totalRAMUsed": use.get("ram", 0),
        "maxServerMeta": MAX_METADATA_ITEMS, "maxImageMeta": MAX_METADATA_ITEMS}}}


# ---- images (Glance v2) --------------------------------------------------------------------

def image(i: records.Image, *, admin: bool) -> dict[str, Any]:
    """Glance's image, its properties at the top level as Glance puts them."""
    props = {k: str(v) for k, v in i.properties.items()}
    virtual_size = props.pop("virtual_size", None)
    out: dict[str, Any] = {
        **props,
        "id": i.id, "name": i.name, "status": "active" if i.deleted_at is None else "deleted",
        "visibility": "public", "protected": False, "os_hidden": False,
        "disk_format": i.disk_format, "container_format": "bare",
        "size": i.size_bytes, "virtual_size": int(virtual_size) if virtual_size else None,
        "min_disk": int(props.get("min_disk", 0) or 0), "min_ram": int(props.get("min_ram", 0) or 0),
        "checksum": None, "os_hash_algo": None, "os_hash_value": None, "owner": None,
        "tags": [], "created_at": isotime(i.created_at), "updated_at": isotime(i.created_at),
        "self": f"/v2/images/{i.id}", "file": f"/v2/images/{i.id}/file",
        "schema": "/v2/schemas/image",
    }
    if admin:
        out["direct_url"] = f"file://{i.path}"
    return out
