"""Nova v2.1's compute API over ApiManager: version documents, servers (create,
list, show, delete, actions and moves from the lifecycle table with lock, unlock
and the console output, their addresses, instance actions, their migrations),
key pairs, the networks' proxy (until 2.36), flavors and their extra specs,
server groups, availability zones, hypervisors, services, os-hosts (until 2.43),
limits and quota sets.

Who may call a route is the policy entry it names (an RPC's where an RPC does the
same work); what a caller may see (their project's servers, public flavors) the
manager decides. Field names in errors are Nova's ("server.flavorRef").
"""

from __future__ import annotations

import re
from typing import Any

from aiohttp import web

from novalite import errors
from novalite.api.manager import MAX_PAGE_SIZE, HostView, Page, ServerFilters
from novalite.auth import policy
from novalite.objects import lifecycle, records
from novalite.rest import convert, microversion
from novalite.rest.app import DEFERRED, Call, Routes, blocking, reply
from novalite.rest.schema import Body

routes = Routes("compute")

_SERVERS = "/novalite.compute.v1.Servers/"
_FLAVORS = "/novalite.compute.v1.Flavors/"
_GROUPS = "/novalite.compute.v1.ServerGroups/"
_HOSTS = "/novalite.compute.v1.Hosts/"
_QUOTAS = "/novalite.compute.v1.Quotas/"
_KEYPAIRS = "/novalite.compute.v1.Keypairs/"
_NETWORKS = "/novalite.compute.v1.Networks/"

# The manager's names for create's fields, as Nova's body spells them.
_CREATE_FIELDS = {
    "name": "server.name", "flavor_id": "server.flavorRef", "image_id": "server.imageRef",
    "min_count": "server.min_count", "max_count": "server.max_count",
    "metadata": "server.metadata", "availability_zone": "server.availability_zone",
    "scheduler_hints.group": "os:scheduler_hints.group",
    "scheduler_hints.same_host": "os:scheduler_hints.same_host",
    "scheduler_hints.different_host": "os:scheduler_hints.different_host",
    "key_name": "server.key_name", "user_data": "server.user_data",
    "admin_pass": "server.adminPass", "config_drive": "server.config_drive",
    "networks": "server.networks",
}
# Nova's actions that novalite does not have yet, and what brings them.
_COMING_ACTIONS = {
    "addSecurityGroup": "networks", "removeSecurityGroup": "networks",
    "createImage": "snapshots", "changePassword": "guest agents",
    "trigger_crash_dump": "crash dumps", "createBackup": "snapshots",
    "restore": "soft delete", "forceDelete": "soft delete", "os-resetState": "state resets",
    "injectNetworkInfo": "networks", "resetNetwork": "networks", "os-getVNCConsole": "consoles",
    "os-getSPICEConsole": "consoles", "os-getSerialConsole": "consoles",
    "os-getRDPConsole": "consoles", "addFixedIp": "networks", "removeFixedIp": "networks",
}
# GET /servers' query parameters that novalite applies; others are refused rather
# than ignored (ignoring "flavor=..." would answer with every server).
_SERVER_QUERY = ("name", "status", "host", "all_tenants", "project_id", "tenant_id", "limit",
                 "marker", "deleted", "sort_key", "sort_dir")


# ---- versions ----------------------------------------------------------------------------

@routes.get("", None)
@routes.get("/", None)
async def versions(call: Call) -> web.StreamResponse:
    return reply(microversion.versions_document(call.root + "/compute"))


@routes.get("/v2.1", None)
@routes.get("/v2.1/", None)
async def version(call: Call) -> web.StreamResponse:
    return reply(microversion.version_document(call.root + "/compute"))


# ---- servers -----------------------------------------------------------------------------

def _page_size(call: Call) -> int:
    return call.query.int("limit", minimum=0) or MAX_PAGE_SIZE


async def _servers_view(call: Call, servers: list[records.Instance], *,
                        show_groups: bool = False) -> list[dict[str, Any]]:
    flavors = await blocking(call.managers.api.flavors_of, servers)
    admin = call.caller.is_admin
    show_status = admin and call.since("2.16")  # Nova's default policy: admins only
    services = ({s.host: s for s in await blocking(call.managers.api.list_services, call.caller)
                 if s.binary == "compute"} if show_status else {})
    return [convert.server(s, call.base, call.root, call.version, admin=admin,
                           flavor_of=flavors.get(s.flavor_id), show_groups=show_groups,
                           host_status=(convert.host_status(s.host, services.get(s.host or ""))
                                        if show_status else None))
            for s in servers]


async def _list_servers(call: Call, detail: bool) -> web.StreamResponse:
    q = call.query.only(*_SERVER_QUERY)
    claims = call.caller
    # Nova: a bare ?all_tenants means true
    all_tenants = q.get("all_tenants") == "" or bool(q.bool("all_tenants"))
    if q.bool("deleted"):
        raise errors.Invalid("deleted", "novalite does not list deleted servers")
    if q.get("sort_key") not in (None, "created_at") or q.get("sort_dir") not in (None, "desc"):
        raise errors.Invalid("sort_key", "novalite lists servers newest first only "
                                         "(sort_key created_at, sort_dir desc)")
    if all_tenants and not claims.is_admin:
        raise errors.Forbidden("only an admin may list every project's servers (all_tenants)")
    project = q.get("project_id") or q.get("tenant_id")
    if claims.is_admin and not all_tenants and project is None:
        project = claims.project_id  # Nova: an admin sees its own project's by default
    status = q.get("status")
    filters = ServerFilters(status=status.upper() if status else None, name=q.get("name"),
                            host=q.get("host"), project_id=project)
    page = await blocking(call.managers.api.list_servers, claims, filters,
                          page_size=_page_size(call), marker=q.get("marker"))
    views = (await _servers_view(call, page.items) if detail else
             [convert.server_brief(s, call.base, call.root) for s in page.items])
    return _page_reply(call, "servers", views, page, detail)


def _page_reply(call: Call, kind: str, views: list[dict[str, Any]], page: Page,
                detail: bool) -> web.StreamResponse:
    """A page of a listing, and Nova's ``<kind>_links`` to the next if there is one."""
    body: dict[str, Any] = {kind: views}
    more = convert.next_link(call.base, f"{kind}/detail" if detail else kind,
                             page.items[-1].id if page.next_page_token and page.items else None,
                             call.query.int("limit"), call.query.params)
    if more:
        body[f"{kind}_links"] = more
    return reply(body)


def _is_detail(call: Call) -> bool:
    return call.request.path.endswith("/detail")


@routes.get("/v2.1/servers", _SERVERS + "ListServers")
@routes.get("/v2.1/servers/detail", _SERVERS + "ListServers")
async def list_servers(call: Call) -> web.StreamResponse:
    return await _list_servers(call, detail=_is_detail(call))


@routes.post("/v2.1/servers", _SERVERS + "CreateServer")
async def create_server(call: Call) -> web.StreamResponse:
    req, reservation_only = convert.create_server(await call.body(), call.version)
    try:
        created = await call.managers.api.create_servers(call.caller, req)
    except errors.Invalid as e:
        raise errors.Invalid(_CREATE_FIELDS.get(e.field, e.field), e.message) from None
    if reservation_only:
        return reply({"reservation_id": created.reservation_id}, status=202)
    first = created.servers[0]
    body = {"server": {**convert.server_brief(first, call.base, call.root),
                       "OS-DCF:diskConfig": "MANUAL", "security_groups": [{"name": "default"}]}}
    if created.admin_pass:
        body["server"]["adminPass"] = created.admin_pass
    return reply(body, status=202, headers={"Location": f"{call.base}/servers/{first.id}"})


@routes.get("/v2.1/servers/{server_id}", _SERVERS + "GetServer")
async def show_server(call: Call) -> web.StreamResponse:
    inst = await blocking(call.managers.api.get_server, call.caller, call.param("server_id"))
    return reply({"server": (await _servers_view(call, [inst], show_groups=True))[0]})


@routes.put("/v2.1/servers/{server_id}", "os_compute_api:servers:update")
async def update_server(call: Call) -> web.StreamResponse:
    s = (await call.body()).only("server").obj("server", required=True)
    assert s is not None
    s.only("name", "OS-DCF:diskConfig", "accessIPv4", "accessIPv6", "description", "hostname")
    for key in ("accessIPv4", "accessIPv6", "description", "hostname"):
        if s.raw(key) not in (None, ""):
            raise errors.Invalid(f"server.{key}", "novalite cannot set this yet (docs/rest-api.md)")
    if s.str("OS-DCF:diskConfig") not in (None, "MANUAL", "AUTO"):
        raise errors.Invalid("server.OS-DCF:diskConfig", "must be MANUAL or AUTO")
    inst = await blocking(call.managers.api.update_server, call.caller, call.param("server_id"),
                          name=s.str("name"))
    return reply({"server": (await _servers_view(call, [inst], show_groups=True))[0]})


@routes.delete("/v2.1/servers/{server_id}", _SERVERS + "DeleteServer")
async def delete_server(call: Call) -> web.StreamResponse:
    await call.managers.api.delete_server(call.caller, call.param("server_id"))
    return reply(status=204)


@routes.get("/v2.1/servers/{server_id}/metadata", _SERVERS + "GetServer")
async def server_metadata(call: Call) -> web.StreamResponse:
    inst = await blocking(call.managers.api.get_server, call.caller, call.param("server_id"))
    return reply({"metadata": dict(inst.metadata)})


@routes.post("/v2.1/servers/{server_id}/metadata", "os_compute_api:servers:update")
@routes.put("/v2.1/servers/{server_id}/metadata", "os_compute_api:servers:update")
async def set_server_metadata(call: Call) -> web.StreamResponse:
    """POST adds or overwrites items; PUT replaces them all."""
    items = (await call.body()).only("metadata").str_map(
        "metadata", max_items=convert.MAX_METADATA_ITEMS)
    if items is None:
        raise errors.Invalid("metadata", "is required")
    inst = await blocking(call.managers.api.set_metadata, call.caller,
                          call.param("server_id"), items, replace=call.request.method == "PUT")
    return reply({"metadata": dict(inst.metadata)})


@routes.put("/v2.1/servers/{server_id}/metadata/{key}", "os_compute_api:servers:update")
async def set_server_metadata_item(call: Call) -> web.StreamResponse:
    key = call.param("key")
    meta = (await call.body()).only("meta").str_map("meta", max_items=1)
    if meta is None or list(meta) != [key]:
        raise errors.Invalid("meta", "the body must be {\"meta\": {\"<the key of the URL>\": "
                                     "\"<value>\"}}")
    await blocking(call.managers.api.set_metadata, call.caller, call.param("server_id"), meta)
    return reply({"meta": meta})


@routes.delete("/v2.1/servers/{server_id}/metadata/{key}", "os_compute_api:servers:update")
async def delete_server_metadata_item(call: Call) -> web.StreamResponse:
    await blocking(call.managers.api.delete_metadata, call.caller, call.param("server_id"),
                   [call.param("key")])
    return reply(status=204)


@routes.get("/v2.1/servers/{server_id}/metadata/{key}", _SERVERS + "GetServer")
async def server_metadata_item(call: Call) -> web.StreamResponse:
    inst = await blocking(call.managers.api.get_server, call.caller, call.param("server_id"))
    key = call.param("key")
    if key not in inst.metadata:
        raise errors.NotFound(f"Metadata item {key} was not found")
    return reply({"meta": {key: inst.metadata[key]}})


_ACTIONS = lifecycle.by_rest_action()
_REBOOT_TYPES = {"SOFT": "reboot_soft", "HARD": "reboot_hard"}


def _move_arguments(name: str, args: Body | None, version: microversion.Version
                    ) -> dict[str, Any]:
    """The manager's arguments of a lifecycle row (api/manager.py's
    _MOVE_ARGUMENTS) from its Nova action body; ``args`` None for null. A field
    Nova takes only from some microversion is refused before it, as Nova's
    schemas do."""
    key = lifecycle.ACTIONS[name].rest_action
    if name == "resize":
        if args is None:
            raise errors.Invalid(key, "give {\"resize\": {\"flavorRef\": ...}}")
        args.only("flavorRef", "OS-DCF:diskConfig")
        return {"flavor_id": args.str("flavorRef", required=True)}
    if name in ("migrate", "live_migrate", "evacuate"):
        if args is None:
            if name != "migrate":
                raise errors.Invalid(key, "give an object ({\"host\": null} for any host)")
            return {}
        # Nova's: migrate's host from 2.56; no disk_over_commit from 2.25, no
        # onSharedStorage from 2.14
        allowed = {"migrate": ("host",) if version.at_least("2.56") else (),
                   "live_migrate": ("host", "block_migration", "force") if version.at_least(
                       "2.25") else ("host", "block_migration", "disk_over_commit", "force"),
                   "evacuate": ("host", "adminPass", "force") if version.at_least("2.14")
                   else ("host", "onSharedStorage", "adminPass", "force")}[name]
        args.only(*allowed)
        if args.raw("force") not in (None, False):
            raise errors.Invalid(f"{key}.force", "novalite always runs the filters on the host "
                                                 "given (Nova's force was removed in 2.68)")
        if args.raw("adminPass") is not None:
            raise errors.Invalid(f"{key}.adminPass", "novalite does not set passwords on an "
                                                     "evacuated guest")
        return {"host": args.str("host", nullable=True)}
    if name == "rebuild":
        if args is None:
            raise errors.Invalid(key, "give {\"rebuild\": {\"imageRef\": ...}}")
        args.only("imageRef", "name", "metadata", "OS-DCF:diskConfig", "preserve_ephemeral",
                  "accessIPv4", "accessIPv6", "description", "adminPass", "key_name",
                  "user_data", "hostname", "trusted_image_certificates")
        for field in ("preserve_ephemeral", "accessIPv4", "accessIPv6", "description",
                      "adminPass", "key_name", "user_data", "hostname",
                      "trusted_image_certificates"):
            if args.raw(field) not in (None, False, ""):
                raise errors.Invalid(f"{key}.{field}", "novalite cannot set this on a rebuild "
                                                       "(docs/rest-api.md)")
        return {"image_id": convert.ref(args.str("imageRef", required=True) or ""),
                "name": args.str("name"), "metadata": args.str_map("metadata")}
    if name == "unshelve":
        if args is None:
            return {}
        # Nova: a zone from 2.77, a host (and a null zone: any) from 2.91
        args.only(*(("availability_zone", "host") if version.at_least("2.91") else
                    ("availability_zone",) if version.at_least("2.77") else ()))
        return {"availability_zone": args.str("availability_zone", nullable=True),
                "host": args.str("host", nullable=True)}
    if name == "rescue":
        if args is not None:
            args.only("adminPass", "rescue_image_ref")
            for field, why in (("adminPass", "novalite does not set passwords on a rescued "
                                             "guest"),
                               ("rescue_image_ref", "novalite rescues with the server's own "
                                                    "image")):
                if args.raw(field) is not None:
                    raise errors.Invalid(f"{key}.{field}", why)
        return {}
    if name.startswith("reboot_"):
        return {}
    if args is not None and args.value:
        raise errors.Invalid(key, "takes no arguments (null)")
    return {}


# The manager's names for the actions' arguments, as Nova's bodies spell them.
_ACTION_FIELDS = {"flavor_id": "flavorRef", "image_id": "imageRef"}
# Nova's answers to the actions that do not answer 202 Accepted.
_ACTION_STATUS = {"confirm_resize": 204, "evacuate": 200}


@routes.post("/v2.1/servers/{server_id}/action", DEFERRED)
async def server_action(call: Call) -> web.StreamResponse:
    """One action of the lifecycle table, by its Nova key; the table's row names
    the RPC whose policy entry decides who may ask. Lock, unlock and the console
    output are not rows (they change no state) and have their own branch."""
    body = await call.body()
    keys = list(body.keys())
    if len(keys) != 1:
        raise errors.Invalid("body", "give exactly one action, e.g. {\"os-stop\": null}")
    key = keys[0]
    server_id = call.param("server_id")
    raw = body.raw(key)
    args = None if raw is None else body.obj(key)
    if key in ("lock", "unlock", "os-getConsoleOutput"):
        return await _other_action(call, key, args, server_id)
    names = _ACTIONS.get(key)
    if names is None:
        if key in _COMING_ACTIONS:
            raise errors.Invalid(key, f"novalite has no {key} action yet (it comes with "
                                      f"{_COMING_ACTIONS[key]}; docs/rest-api.md)")
        raise errors.Invalid(key, f"There is no such action: {key}")
    if len(names) == 1:
        name = names[0]
    else:
        if args is None:
            raise errors.Invalid(key, "give {\"type\": \"SOFT\"} or {\"type\": \"HARD\"}")
        kind = (args.only("type").str("type", required=True) or "").upper()
        if kind not in _REBOOT_TYPES:
            raise errors.Invalid(f"{key}.type", "must be SOFT or HARD")
        name = _REBOOT_TYPES[kind]
    arguments = {k: v for k, v in _move_arguments(name, args, call.version).items()
                 if v is not None}
    policy.authorize(_SERVERS + lifecycle.ACTIONS[name].rpc, call.caller)
    try:
        inst = await call.managers.api.server_action(call.caller, server_id, name, **arguments)
    except errors.Invalid as e:  # an argument, named as the action's body names it
        raise errors.Invalid(f"{key}.{_ACTION_FIELDS.get(e.field, e.field)}",
                             e.message) from None
    if name == "rebuild":  # Nova answers a rebuild with the server
        return reply({"server": (await _servers_view(call, [inst], show_groups=True))[0]},
                     status=202)
    if name == "rescue":  # Nova's adminPass only when it sets one, which novalite does not
        return reply({}, status=200)
    return reply(status=_ACTION_STATUS.get(name, 202))


async def _other_action(call: Call, key: str, args: Body | None,
                        server_id: str) -> web.StreamResponse:
    if key == "os-getConsoleOutput":
        policy.authorize(_SERVERS + "GetConsoleOutput", call.caller)
        length = None
        if args is not None:
            args.only("length")
            length = args.int("length", minimum=-1)
        output = await call.managers.api.console_output(call.caller, server_id, length)
        return reply({"output": output})
    if key == "lock":
        policy.authorize(_SERVERS + "LockServer", call.caller)
        reason = None
        if args is not None:
            args.only(*(("locked_reason",) if call.since("2.73") else ()))
            reason = args.str("locked_reason", nullable=True)
        await blocking(call.managers.api.lock_server, call.caller, server_id, reason)
        return reply(status=202)
    if args is not None and args.value:
        raise errors.Invalid(key, "takes no arguments (null)")
    policy.authorize(_SERVERS + "UnlockServer", call.caller)
    await blocking(call.managers.api.unlock_server, call.caller, server_id)
    return reply(status=202)


@routes.get("/v2.1/servers/{server_id}/ips", _SERVERS + "GetServer")
async def server_ips(call: Call) -> web.StreamResponse:
    inst = await blocking(call.managers.api.get_server, call.caller, call.param("server_id"))
    return reply({"addresses": convert.addresses(inst.network_info, extended=False)})


@routes.get("/v2.1/servers/{server_id}/ips/{network}", _SERVERS + "GetServer")
async def server_network_ips(call: Call) -> web.StreamResponse:
    inst = await blocking(call.managers.api.get_server, call.caller, call.param("server_id"))
    network = call.param("network")
    found = convert.addresses(inst.network_info, extended=False)
    if network not in found:
        raise errors.NotFound("Instance is not a member of specified network")
    return reply({network: found[network]})


@routes.get("/v2.1/servers/{server_id}/os-instance-actions", _SERVERS + "ListServerActions")
async def instance_actions(call: Call) -> web.StreamResponse:
    q = call.query.only(*(("limit", "marker", "changes-since", "changes-before")
                          if call.since("2.58") else ()))
    if q.get("changes-before") is not None:
        raise errors.Invalid("changes-before", "novalite cannot filter actions by it yet")
    limit = q.int("limit", minimum=0)
    found = await blocking(call.managers.api.list_actions, call.caller, call.param("server_id"),
                           limit=limit, marker=q.get("marker"),
                           changes_since=convert.parse_time("changes-since",
                                                            q.get("changes-since")))
    body: dict[str, Any] = {"instanceActions": [
        convert.instance_action(a, call.version, admin=call.caller.is_admin, with_events=False)
        for a in found]}
    if limit is not None and found and len(found) == limit:
        body["links"] = convert.next_link(call.base, f"servers/{call.param('server_id')}"
                                          "/os-instance-actions", found[-1].request_id, limit,
                                          q.params)
    return reply(body)


@routes.get("/v2.1/servers/{server_id}/os-instance-actions/{request_id}",
            _SERVERS + "ListServerActions")
async def instance_action(call: Call) -> web.StreamResponse:
    found = await blocking(call.managers.api.list_actions, call.caller, call.param("server_id"))
    for a in found:
        if a.request_id == call.param("request_id"):
            return reply({"instanceAction": convert.instance_action(
                a, call.version, admin=call.caller.is_admin, with_events=True)})
    raise errors.NotFound(f"Action for request_id {call.param('request_id')} on instance "
                          f"{call.param('server_id')} not found")


# ---- migrations ------------------------------------------------------------------------------

_MIGRATION_QUERY = {"2.1": ("host", "status", "instance_uuid", "source_compute", "hidden",
                            "cell_name"),
                    "2.23": ("migration_type",), "2.59": ("limit", "marker", "changes-since"),
                    "2.66": ("changes-before",), "2.80": ("user_id", "project_id")}


@routes.get("/v2.1/os-migrations", _SERVERS + "ListMigrations")
async def list_migrations(call: Call) -> web.StreamResponse:
    """Nova's os-migrations, newest first, filtered as Nova's query asks."""
    q = call.query.only(*(key for version, keys in _MIGRATION_QUERY.items()
                          if call.since(version) for key in keys))
    for key in ("user_id", "project_id"):
        if q.get(key) is not None:
            raise errors.Invalid(key, "novalite does not record who started a migration")
    if q.get("cell_name") is not None:
        raise errors.Invalid("cell_name", "novalite has one cell")
    try:
        found = await blocking(call.managers.api.list_migrations, call.caller,
                               server_id=q.get("instance_uuid"), host=q.get("host"))
    except errors.NotFound:
        found = []  # Nova's answer for an unknown server: no migrations
    since = convert.parse_time("changes-since", q.get("changes-since"))
    before = convert.parse_time("changes-before", q.get("changes-before"))
    found = [m for m in found
             if q.get("status") in (None, m.status)
             and q.get("source_compute") in (None, m.source_host)
             and q.get("migration_type") in (None, m.migration_type)
             and (since is None or m.updated_at >= since)
             and (before is None or m.updated_at <= before)]
    marker = q.get("marker")
    if marker is not None:
        ids = [m.id for m in found]
        if marker not in ids:
            raise errors.Invalid("marker", f"Marker {marker[:64]} could not be found.")
        found = found[ids.index(marker) + 1:]
    limit = q.int("limit", minimum=0)
    more = limit is not None and len(found) > limit
    found = found[:limit] if limit is not None else found
    body: dict[str, Any] = {"migrations": [convert.migration(m, call.base, call.root,
                                                             call.version) for m in found]}
    if more and found:
        body["migrations_links"] = convert.next_link(call.base, "os-migrations", found[-1].id,
                                                     limit, q.params)
    return reply(body)


async def _live_migrations(call: Call) -> list[records.Migration]:
    """The server's live migrations in progress (what Nova's server migrations
    list: from 2.23)."""
    if not call.since("2.23"):
        raise errors.NotFound("server migrations are there from microversion 2.23")
    found = await blocking(call.managers.api.list_migrations, call.caller,
                           server_id=call.param("server_id"))
    return [m for m in found if m.migration_type == "live-migration" and m.is_open]


@routes.get("/v2.1/servers/{server_id}/migrations", _SERVERS + "ListMigrations")
async def server_migrations(call: Call) -> web.StreamResponse:
    call.query.only()
    return reply({"migrations": [convert.server_migration(m, call.version)
                                 for m in await _live_migrations(call)]})


@routes.get("/v2.1/servers/{server_id}/migrations/{migration_id}", _SERVERS + "ListMigrations")
async def server_migration(call: Call) -> web.StreamResponse:
    wanted = call.param("migration_id")
    for m in await _live_migrations(call):
        if wanted in (m.id, str(convert.int_id("migration", m.id))):
            return reply({"migration": convert.server_migration(m, call.version)})
    raise errors.NotFound(f"Migration {wanted} not found for server {call.param('server_id')} "
                          "(or not a live migration in progress)")


# ---- key pairs ---------------------------------------------------------------------------

def _key_owner(call: Call) -> str | None:
    """The user whose key pairs a request names (2.10: ``user_id``, for admins)."""
    return call.query.only(*(("user_id",) if call.since("2.10") else ())).get("user_id")


@routes.get("/v2.1/os-keypairs", _KEYPAIRS + "ListKeypairs")
async def list_key_pairs(call: Call) -> web.StreamResponse:
    q = call.query.only(*(("user_id",) if call.since("2.10") else ()),
                        *(("limit", "marker") if call.since("2.35") else ()))
    pairs = await blocking(call.managers.api.list_key_pairs, call.caller, q.get("user_id"))
    marker = q.get("marker")
    if marker is not None:
        names = [k.name for k in pairs]
        if marker not in names:
            raise errors.Invalid("marker", f"Marker {marker[:64]} could not be found.")
        pairs = pairs[names.index(marker) + 1:]
    limit = q.int("limit", minimum=0)
    more = limit is not None and len(pairs) > limit
    pairs = pairs[:limit] if limit is not None else pairs
    body: dict[str, Any] = {"keypairs": [{"keypair": convert.key_pair(k, call.version,
                                                                      view="index")}
                                         for k in pairs]}
    if more and pairs:
        body["keypairs_links"] = convert.next_link(call.base, "os-keypairs", pairs[-1].name,
                                                   limit, q.params)
    return reply(body)


@routes.get("/v2.1/os-keypairs/{name}", _KEYPAIRS + "ListKeypairs")
async def show_key_pair(call: Call) -> web.StreamResponse:
    owner = _key_owner(call)
    name = call.param("name")
    for k in await blocking(call.managers.api.list_key_pairs, call.caller, owner):
        if k.name == name:
            return reply({"keypair": convert.key_pair(k, call.version, view="show")})
    raise errors.NotFound(f"Keypair {name} not found for user {owner or call.caller.user_id}")


# The names Nova takes before 2.92 ('@' and '.' came then); novalite's own are those
# of 2.92 at every microversion (api/keypairs.py).
_OLD_KEYPAIR_NAME = re.compile(r"^[A-Za-z0-9 _-]+$")
_KEYPAIR_FIELDS = {"name": "keypair.name", "public_key": "keypair.public_key",
                   "user_id": "keypair.user_id"}


@routes.post("/v2.1/os-keypairs", DEFERRED)
async def create_key_pair(call: Call) -> web.StreamResponse:
    """Import a public key, or (before 2.92) generate a pair and answer with its
    private key; 201 from 2.2 (200 before), as Nova."""
    k = (await call.body()).only("keypair").obj("keypair", required=True)
    assert k is not None
    k.only("name", "public_key", *(("type",) if call.since("2.2") else ()),
           *(("user_id",) if call.since("2.10") else ()))
    name = k.str("name", required=True) or ""
    if not call.since("2.92") and not _OLD_KEYPAIR_NAME.match(name):
        raise errors.Invalid("keypair.name", "before microversion 2.92 a key pair's name is "
                                             "letters, digits, spaces, '_' and '-'")
    if k.str("type") not in (None, "ssh"):
        raise errors.Invalid("keypair.type", "novalite has SSH key pairs only (no x509)")
    public_key = k.str("public_key", required=call.since("2.92"), max_len=16384)
    user_id = k.str("user_id")
    try:
        if public_key is None:
            policy.authorize(_KEYPAIRS + "CreateKeypair", call.caller)
            pair = await blocking(call.managers.api.create_key_pair, call.caller, name, user_id)
        else:
            policy.authorize(_KEYPAIRS + "ImportKeypair", call.caller)
            pair = await blocking(call.managers.api.import_key_pair, call.caller, name,
                                  public_key, user_id)
    except errors.Invalid as e:
        raise errors.Invalid(_KEYPAIR_FIELDS.get(e.field, e.field), e.message) from None
    return reply({"keypair": convert.key_pair(pair, call.version, view="create")},
                 status=201 if call.since("2.2") else 200)


@routes.delete("/v2.1/os-keypairs/{name}", _KEYPAIRS + "DeleteKeypair")
async def delete_key_pair(call: Call) -> web.StreamResponse:
    await blocking(call.managers.api.delete_key_pair, call.caller, call.param("name"),
                   _key_owner(call))
    return reply(status=204 if call.since("2.2") else 202)


# ---- networks (Nova's proxy of them, before 2.36) ---------------------------------------------

async def _networks(call: Call) -> list[records.Network]:
    if call.since("2.36"):
        raise errors.NotFound("os-networks is gone from microversion 2.36 (as Nova's network "
                              "proxies)")
    call.query.only()
    return await blocking(call.managers.api.list_networks, call.caller)


@routes.get("/v2.1/os-networks", _NETWORKS + "ListNetworks")
async def list_networks(call: Call) -> web.StreamResponse:
    return reply({"networks": [convert.network(n, admin=call.caller.is_admin)
                               for n in await _networks(call)]})


@routes.get("/v2.1/os-networks/{network_id}", _NETWORKS + "ListNetworks")
async def show_network(call: Call) -> web.StreamResponse:
    wanted = call.param("network_id")
    for n in await _networks(call):
        if n.id == wanted:
            return reply({"network": convert.network(n, admin=call.caller.is_admin)})
    raise errors.NotFound(f"Network {wanted} could not be found.")


# ---- flavors -----------------------------------------------------------------------------

async def _list_flavors(call: Call, detail: bool) -> web.StreamResponse:
    q = call.query.only("is_public", "limit", "marker", "sort_key", "sort_dir")
    if q.get("sort_key") not in (None, "name") or q.get("sort_dir") not in (None, "asc"):
        raise errors.Invalid("sort_key", "novalite lists flavors by name only")
    public_text = (q.get("is_public") or "true").lower()
    is_public = None if public_text == "none" else q.bool("is_public") if "is_public" in q.params \
        else True
    page = await blocking(call.managers.api.list_flavors, call.caller,
                          page_size=_page_size(call), marker=q.get("marker"), is_public=is_public)
    view = convert.flavor if detail else convert.flavor_brief
    return _page_reply(call, "flavors", [view(f, call.base, call.root, call.version)
                                         for f in page.items], page, detail)


@routes.get("/v2.1/flavors", _FLAVORS + "ListFlavors")
@routes.get("/v2.1/flavors/detail", _FLAVORS + "ListFlavors")
async def list_flavors(call: Call) -> web.StreamResponse:
    return await _list_flavors(call, detail=_is_detail(call))


@routes.get("/v2.1/flavors/{flavor_id}", _FLAVORS + "GetFlavor")
async def show_flavor(call: Call) -> web.StreamResponse:
    f = await blocking(call.managers.api.get_flavor, call.caller, call.param("flavor_id"))
    return reply({"flavor": convert.flavor(f, call.base, call.root, call.version)})


@routes.post("/v2.1/flavors", _FLAVORS + "CreateFlavor")
async def create_flavor(call: Call) -> web.StreamResponse:
    f = (await call.body()).only("flavor").obj("flavor", required=True)
    assert f is not None
    f.only("name", "ram", "vcpus", "disk", "id", "swap", "OS-FLV-EXT-DATA:ephemeral",
           "rxtx_factor", "os-flavor-access:is_public", "description")
    if f.str("description", min_len=0, max_len=65535, nullable=True):
        raise errors.Invalid("flavor.description", "novalite has no flavor descriptions yet")
    if f.raw("rxtx_factor") not in (None, 1, 1.0):
        raise errors.Invalid("flavor.rxtx_factor", "novalite has no rxtx factors (only 1.0)")
    flavor_id = f.str("id", max_len=255, nullable=True)
    created = await blocking(
        call.managers.api.create_flavor, call.caller, name=f.str("name", required=True) or "",
        vcpus=f.int("vcpus", required=True, minimum=1) or 0,
        memory_mb=f.int("ram", required=True, minimum=1) or 0,
        root_gb=f.int("disk", minimum=0) or 0, swap=f.int("swap", minimum=0) or 0,
        ephemeral_gb=f.int("OS-FLV-EXT-DATA:ephemeral", minimum=0) or 0,
        is_public=f.bool("os-flavor-access:is_public") is not False,
        flavor_id=None if flavor_id in (None, "auto") else flavor_id)
    return reply({"flavor": convert.flavor(created, call.base, call.root, call.version)})


@routes.delete("/v2.1/flavors/{flavor_id}", _FLAVORS + "DeleteFlavor")
async def delete_flavor(call: Call) -> web.StreamResponse:
    await blocking(call.managers.api.delete_flavor, call.caller, call.param("flavor_id"))
    return reply(status=202)


@routes.get("/v2.1/flavors/{flavor_id}/os-extra_specs", _FLAVORS + "GetFlavor")
async def extra_specs(call: Call) -> web.StreamResponse:
    f = await blocking(call.managers.api.get_flavor, call.caller, call.param("flavor_id"))
    return reply({"extra_specs": dict(f.extra_specs)})


@routes.post("/v2.1/flavors/{flavor_id}/os-extra_specs", _FLAVORS + "SetFlavorExtraSpecs")
async def set_extra_specs(call: Call) -> web.StreamResponse:
    specs = (await call.body()).only("extra_specs").str_map("extra_specs")
    if specs is None:
        raise errors.Invalid("extra_specs", "is required")
    await blocking(call.managers.api.set_extra_specs, call.caller, call.param("flavor_id"), specs)
    return reply({"extra_specs": specs})


@routes.get("/v2.1/flavors/{flavor_id}/os-extra_specs/{key}", _FLAVORS + "GetFlavor")
async def extra_spec(call: Call) -> web.StreamResponse:
    f = await blocking(call.managers.api.get_flavor, call.caller, call.param("flavor_id"))
    key = call.param("key")
    if key not in f.extra_specs:
        raise errors.NotFound(f"Flavor {f.id} has no extra specs with key {key}.")
    return reply({key: f.extra_specs[key]})


@routes.put("/v2.1/flavors/{flavor_id}/os-extra_specs/{key}", _FLAVORS + "SetFlavorExtraSpecs")
async def put_extra_spec(call: Call) -> web.StreamResponse:
    key = call.param("key")
    specs = (await call.body()).value
    if list(specs) != [key] or not isinstance(specs[key], str):
        raise errors.Invalid(key, "the body must be {\"<the key of the URL>\": \"<value>\"}")
    await blocking(call.managers.api.set_extra_specs, call.caller, call.param("flavor_id"), specs)
    return reply(specs)


@routes.delete("/v2.1/flavors/{flavor_id}/os-extra_specs/{key}",
               _FLAVORS + "UnsetFlavorExtraSpecs")
async def delete_extra_spec(call: Call) -> web.StreamResponse:
    await blocking(call.managers.api.unset_extra_specs, call.caller, call.param("flavor_id"),
                   [call.param("key")])
    return reply(status=200)


# ---- server groups -------------------------------------------------------------------------

@routes.get("/v2.1/os-server-groups", _GROUPS + "ListServerGroups")
async def list_server_groups(call: Call) -> web.StreamResponse:
    q = call.query.only("all_projects", "limit", "offset")
    if q.bool("all_projects") and not call.caller.is_admin:
        raise errors.Forbidden("only an admin may list every project's server groups")
    groups = await blocking(call.managers.api.list_server_groups, call.caller)
    if not q.bool("all_projects"):
        groups = [g for g in groups if g.project_id == call.caller.project_id]
    offset = q.int("offset", minimum=0) or 0
    limit = q.int("limit", minimum=1)
    groups = groups[offset:offset + limit if limit is not None else None]
    return reply({"server_groups": [convert.server_group(g, call.version) for g in groups]})


@routes.post("/v2.1/os-server-groups", _GROUPS + "CreateServerGroup")
async def create_server_group(call: Call) -> web.StreamResponse:
    g = (await call.body()).only("server_group").obj("server_group", required=True)
    assert g is not None
    max_per_host = None
    if call.since("2.64"):
        g.only("name", "policy", "rules")
        group_policy = g.str("policy", required=True) or ""
        rules = g.obj("rules")
        if rules is not None:
            max_per_host = rules.only("max_server_per_host").int("max_server_per_host", minimum=1)
    else:
        g.only("name", "policies")
        policies = g.raw("policies", required=True)
        if not isinstance(policies, list) or len(policies) != 1 \
                or not isinstance(policies[0], str):
            raise errors.Invalid("server_group.policies", "must be a list of one policy")
        group_policy = policies[0]
    created = await blocking(call.managers.api.create_server_group, call.caller,
                             name=g.str("name", required=True) or "", policy=group_policy,
                             max_server_per_host=max_per_host)
    return reply({"server_group": convert.server_group(created, call.version)})


@routes.get("/v2.1/os-server-groups/{group_id}", _GROUPS + "GetServerGroup")
async def show_server_group(call: Call) -> web.StreamResponse:
    g = await blocking(call.managers.api.get_server_group, call.caller, call.param("group_id"))
    return reply({"server_group": convert.server_group(g, call.version)})


@routes.delete("/v2.1/os-server-groups/{group_id}", _GROUPS + "DeleteServerGroup")
async def delete_server_group(call: Call) -> web.StreamResponse:
    await blocking(call.managers.api.delete_server_group, call.caller, call.param("group_id"))
    return reply(status=204)


# ---- availability zones, hypervisors, services, os-hosts ----------------------------------

async def _all_hosts(call: Call) -> list[HostView]:
    views: list[HostView] = []
    token = ""
    while True:
        page = await blocking(call.managers.api.list_hosts, call.caller,
                              page_size=MAX_PAGE_SIZE, page_token=token)
        views.extend(page.items)
        if page.next_page_token is None:
            return views
        token = page.next_page_token


async def _zones(call: Call, detail: bool) -> web.StreamResponse:
    zones = await blocking(call.managers.api.list_availability_zones, call.caller)
    return reply({"availabilityZoneInfo": [convert.availability_zone(z, detail=detail)
                                           for z in zones]})


@routes.get("/v2.1/os-availability-zone", "os_compute_api:os-availability-zone:list")
@routes.get("/v2.1/os-availability-zone/detail", "os_compute_api:os-availability-zone:detail")
async def availability_zones(call: Call) -> web.StreamResponse:
    return await _zones(call, detail=_is_detail(call))


async def _hypervisors(call: Call, detail: bool) -> web.StreamResponse:
    q = call.query.only("hypervisor_hostname_pattern", "with_servers", "limit", "marker")
    views = await _all_hosts(call)
    pattern = q.get("hypervisor_hostname_pattern")
    if pattern is not None:
        views = [v for v in views if pattern in v.host.name]
    if q.get("marker") is not None:
        ids = [_hypervisor_id(v, call) for v in views]
        if q.get("marker") not in ids:
            raise errors.Invalid("marker", f"marker [{q.get('marker')}] not found")
        views = views[ids.index(str(q.get("marker"))) + 1:]
    limit = q.int("limit", minimum=1)
    more = limit is not None and len(views) > limit
    views = views[:limit] if limit is not None else views
    out = []
    for v in views:
        servers = await _host_servers(call, v) if q.bool("with_servers") else None
        out.append(convert.hypervisor(v, call.version, detail=detail, servers=servers))
    body: dict[str, Any] = {"hypervisors": out}
    if more and views:
        body["hypervisors_links"] = convert.next_link(
            call.base, "os-hypervisors/detail" if detail else "os-hypervisors",
            _hypervisor_id(views[-1], call), limit, q.params)
    return reply(body)


def _hypervisor_id(view: HostView, call: Call) -> str:
    return str(convert.hypervisor(view, call.version, detail=False)["id"])


async def _host_servers(call: Call, view: HostView) -> list[records.Instance]:
    page = await blocking(call.managers.api.list_servers, call.caller,
                          ServerFilters(host=view.host.name), page_size=MAX_PAGE_SIZE)
    return list(page.items)


@routes.get("/v2.1/os-hypervisors", "os_compute_api:os-hypervisors")
@routes.get("/v2.1/os-hypervisors/detail", "os_compute_api:os-hypervisors")
async def list_hypervisors(call: Call) -> web.StreamResponse:
    return await _hypervisors(call, detail=_is_detail(call))


@routes.get("/v2.1/os-hypervisors/statistics", "os_compute_api:os-hypervisors")
async def hypervisor_statistics(call: Call) -> web.StreamResponse:
    if call.since("2.88"):
        raise errors.NotFound("os-hypervisors/statistics is gone from microversion 2.88")
    stats: dict[str, int] = {}
    for v in await _all_hosts(call):
        for key, value in convert.hypervisor(v, call.version, detail=True).items():
            if isinstance(value, int) and not isinstance(value, bool) and key != "id" \
                    and key != "hypervisor_version":
                stats[key] = stats.get(key, 0) + value
        stats["count"] = stats.get("count", 0) + 1
    return reply({"hypervisor_statistics": stats})


@routes.get("/v2.1/os-hypervisors/{hypervisor_id}", "os_compute_api:os-hypervisors")
async def show_hypervisor(call: Call) -> web.StreamResponse:
    q = call.query.only("with_servers")
    for v in await _all_hosts(call):
        if _hypervisor_id(v, call) == call.param("hypervisor_id"):
            servers = await _host_servers(call, v) if q.bool("with_servers") else None
            return reply({"hypervisor": convert.hypervisor(v, call.version, detail=True,
                                                           servers=servers)})
    raise errors.NotFound(f"Hypervisor with ID {call.param('hypervisor_id')} could not be found.")


async def _zones_by_host(call: Call) -> dict[str, str]:
    return {v.host.name: v.availability_zone for v in await _all_hosts(call)}


@routes.get("/v2.1/os-services", "os_compute_api:os-services:list")
async def list_services(call: Call) -> web.StreamResponse:
    q = call.query.only("host", "binary")
    zones = await _zones_by_host(call)
    found = await blocking(call.managers.api.list_services, call.caller)
    out = [convert.service(s, zones.get(s.host, call.managers.api.default_zone), call.version)
           for s in found if q.get("host") in (None, s.host)
           and q.get("binary") in (None, f"nova-{s.binary}")]
    return reply({"services": out})


async def _set_service(call: Call, svc: records.Service, enabled: bool,
                       reason: str | None) -> records.Service:
    if svc.binary != "compute":
        raise errors.Invalid("binary", "only compute services can be enabled or disabled")
    view = await call.managers.api.set_host_enabled(call.caller, svc.host, enabled, reason)
    assert view.service is not None
    return view.service


@routes.put("/v2.1/os-services/{service_id}", _HOSTS + "DisableHost")
async def update_service(call: Call) -> web.StreamResponse:
    zones = await _zones_by_host(call)
    found = await blocking(call.managers.api.list_services, call.caller)
    if not call.since("2.53"):
        return await _legacy_update_service(call, found, zones)
    svc = next((s for s in found
                if str(convert.service_id(s, call.version)) == call.param("service_id")), None)
    if svc is None:
        raise errors.NotFound(f"Service {call.param('service_id')} could not be found.")
    body = (await call.body()).only("status", "disabled_reason", "forced_down")
    if body.bool("forced_down"):
        raise errors.Invalid("forced_down", "novalite has no forced-down services (its "
                                            "services' heartbeats say whether they are up)")
    status = body.str("status")
    if status not in (None, "enabled", "disabled"):
        raise errors.Invalid("status", "must be 'enabled' or 'disabled'")
    reason = body.str("disabled_reason")
    if reason is not None and status != "disabled":
        raise errors.Invalid("disabled_reason", "only with status 'disabled'")
    if status is not None:
        svc = await _set_service(call, svc, status == "enabled", reason)
    return reply({"service": convert.service(svc, zones.get(svc.host, ""), call.version)})


async def _legacy_update_service(call: Call, found: list[records.Service],
                                 zones: dict[str, str]) -> web.StreamResponse:
    """Before 2.53: PUT /os-services/enable, /disable, /disable-log-reason with
    {"host", "binary"}."""
    what = call.param("service_id")
    if what not in ("enable", "disable", "disable-log-reason"):
        raise errors.NotFound(f"Unknown action {what}")
    body = (await call.body()).only("host", "binary", "disabled_reason")
    host, binary = body.str("host", required=True), body.str("binary", required=True)
    svc = next((s for s in found if s.host == host and f"nova-{s.binary}" == binary), None)
    if svc is None:
        raise errors.NotFound(f"Service {binary} on host {host} could not be found.")
    reason = body.str("disabled_reason", required=what == "disable-log-reason")
    svc = await _set_service(call, svc, what == "enable", reason)
    out: dict[str, Any] = {"host": svc.host, "binary": binary,
                           "status": "disabled" if svc.disabled else "enabled"}
    if reason is not None:
        out["disabled_reason"] = reason
    return reply({"service": out})


@routes.get("/v2.1/os-hosts", "os_compute_api:os-hosts")
async def list_os_hosts(call: Call) -> web.StreamResponse:
    _before_243(call)
    zones = await _zones_by_host(call)
    found = await blocking(call.managers.api.list_services, call.caller)
    return reply({"hosts": [{"host_name": s.host, "service": s.binary,
                             "zone": zones.get(s.host, "internal")} for s in found]})


@routes.get("/v2.1/os-hosts/{host_name}", "os_compute_api:os-hosts")
async def show_os_host(call: Call) -> web.StreamResponse:
    _before_243(call)
    view = await blocking(call.managers.api.get_host, call.caller, call.param("host_name"))
    h = view.host
    rows = []
    for project, amounts in (("(total)", {rc: inv.total for rc, inv in h.inventories.items()}),
                             ("(used_now)", dict(h.usage))):
        rows.append({"resource": {"host": h.name, "project": project,
                                  "cpu": amounts.get("VCPU", 0),
                                  "memory_mb": amounts.get("MEMORY_MB", 0),
                                  "disk_gb": amounts.get("DISK_GB", 0)}})
    return reply({"host": rows})


def _before_243(call: Call) -> None:
    if call.since("2.43"):
        raise errors.NotFound("os-hosts is gone from microversion 2.43: use os-hypervisors "
                              "and os-services")


# ---- limits and quotas -----------------------------------------------------------------------

@routes.get("/v2.1/limits", "os_compute_api:limits")
async def limits(call: Call) -> web.StreamResponse:
    q = call.query.only("tenant_id", "reserved")
    quota = await blocking(call.managers.api.get_quota, call.caller, q.get("tenant_id"))
    return reply(convert.limits(quota))


@routes.get("/v2.1/os-quota-sets/{project_id}", _QUOTAS + "GetQuota")
@routes.get("/v2.1/os-quota-sets/{project_id}/detail", _QUOTAS + "GetQuota")
async def quota_set(call: Call) -> web.StreamResponse:
    call.query.only()
    quota = await blocking(call.managers.api.get_quota, call.caller, call.param("project_id"))
    return reply({"quota_set": convert.quota_set(quota, detail=_is_detail(call))})


@routes.get("/v2.1/os-quota-sets/{project_id}/defaults", _QUOTAS + "GetQuota")
async def quota_set_defaults(call: Call) -> web.StreamResponse:
    call.query.only()
    quota = await blocking(call.managers.api.get_default_quota, call.caller,
                           call.param("project_id"))
    return reply({"quota_set": convert.quota_set(quota, detail=False)})


@routes.put("/v2.1/os-quota-sets/{project_id}", _QUOTAS + "SetQuota")
async def update_quota_set(call: Call) -> web.StreamResponse:
    call.query.only()
    new = convert.quota_limits(await call.body())
    quota = await blocking(call.managers.api.set_quota, call.caller, call.param("project_id"), new)
    body = convert.quota_set(quota, detail=False)
    body.pop("id")
    return reply({"quota_set": body})
