"""The user-facing client commands of `novalite` (server, flavor, host, quota, image,
group): each one gRPC call or a few, over a channel that carries the user's token.

Where: --api, else NOVALITE_API, else what `novalite up` wrote to <data_dir>/env,
else 127.0.0.1:8774. Who: --token, else NOVALITE_TOKEN, else <data_dir>/env's
(an admin token). The data directory is the one every command uses (--data-dir,
NOVALITE_DATA_DIR, ~/.local/share/novalite).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import Any, Callable, Iterable, Sequence

import grpc
from google.protobuf.json_format import MessageToDict

from novalite.rpc.novalite.compute.v1 import (
    aggregates_pb2,
    aggregates_pb2_grpc,
    flavors_pb2,
    flavors_pb2_grpc,
    hosts_pb2,
    hosts_pb2_grpc,
    images_pb2,
    images_pb2_grpc,
    keypairs_pb2,
    keypairs_pb2_grpc,
    networks_pb2,
    networks_pb2_grpc,
    quotas_pb2,
    quotas_pb2_grpc,
    server_groups_pb2,
    server_groups_pb2_grpc,
    servers_pb2,
    servers_pb2_grpc,
)
from novalite.objects import lifecycle
from novalite.services.client import sync_channel

FINAL_STATUSES = {"ACTIVE", "ERROR", "SHUTOFF", "PAUSED", "SUSPENDED", "DELETED",
                  "VERIFY_RESIZE", "SHELVED", "SHELVED_OFFLOADED"}


class CommandError(Exception):
    """A failed command: printed as one line, exit status 1."""


def _key_values(items: Sequence[str] | None, what: str) -> dict[str, str]:
    out: dict[str, str] = {}
    for item in items or ():
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise CommandError(f"{what}: expected KEY=VALUE, got {item!r}")
        out[key] = value
    return out


def add_connection_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--api", default=None, metavar="HOST:PORT",
                   help="the API endpoint (default: $NOVALITE_API, else the one `novalite up` "
                        "wrote to <data dir>/env, else 127.0.0.1:8774)")
    p.add_argument("--token", default=None,
                   help="a bearer token (default: $NOVALITE_TOKEN, else <data dir>/env's)")
    p.add_argument("--data-dir", default=None,
                   help="the data directory of `novalite up` (default: $NOVALITE_DATA_DIR, "
                        "else ~/.local/share/novalite)")
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")


def saved_connection(data_dir: str | None) -> tuple[Path, dict[str, str]]:
    """The data directory and what `novalite up` wrote to its env file (NOVALITE_API,
    NOVALITE_TOKEN); empty when there is none."""
    from novalite.settings import load_settings

    path = load_settings(overrides={"data_dir": data_dir}).data_dir / "env"
    saved: dict[str, str] = {}
    try:
        text = path.read_text()
    except OSError:
        return path, saved
    for line in text.splitlines():
        key, sep, value = line.removeprefix("export ").partition("=")
        if sep and key in ("NOVALITE_API", "NOVALITE_TOKEN"):
            saved[key] = value.strip()
    return path, saved


class Client:
    def __init__(self, args: argparse.Namespace) -> None:
        env_file, saved = (None, {}) if args.api and args.token else saved_connection(args.data_dir)
        api = args.api or os.environ.get("NOVALITE_API") or saved.get("NOVALITE_API") or "127.0.0.1:8774"
        token = args.token or os.environ.get("NOVALITE_TOKEN") or saved.get("NOVALITE_TOKEN")
        if not token:
            raise CommandError(f"no token: pass --token, set NOVALITE_TOKEN, or start the cloud with "
                               f"`novalite up` (which writes one to {env_file}); `novalite token create` "
                               "makes more")
        self.channel = sync_channel(api, token)
        self.servers = servers_pb2_grpc.ServersStub(self.channel)
        self.flavors = flavors_pb2_grpc.FlavorsStub(self.channel)
        self.hosts = hosts_pb2_grpc.HostsStub(self.channel)
        self.quotas = quotas_pb2_grpc.QuotasStub(self.channel)
        self.images = images_pb2_grpc.ImagesStub(self.channel)
        self.groups = server_groups_pb2_grpc.ServerGroupsStub(self.channel)
        self.aggregates = aggregates_pb2_grpc.AggregatesStub(self.channel)
        self.zones = aggregates_pb2_grpc.AvailabilityZonesStub(self.channel)
        self.keypairs = keypairs_pb2_grpc.KeypairsStub(self.channel)
        self.networks = networks_pb2_grpc.NetworksStub(self.channel)
        self.json = bool(args.json)


def _print_table(rows: list[dict[str, Any]], columns: Sequence[str]) -> None:
    if not rows:
        print("(none)")
        return
    widths = {c: max(len(c), *(len(str(r.get(c, ""))) for r in rows)) for c in columns}
    print("  ".join(c.upper().ljust(widths[c]) for c in columns))
    for r in rows:
        print("  ".join(str(r.get(c, "")).ljust(widths[c]) for c in columns))


def _show(client: Client, message: Any, columns: Sequence[str] | None = None) -> None:
    d = MessageToDict(message, preserving_proto_field_name=True)
    if client.json:
        print(json.dumps(d, indent=2, sort_keys=True))
        return
    for key in columns or sorted(d):
        if key in d:
            value = d[key]
            print(f"{key:<20} {json.dumps(value) if isinstance(value, (dict, list)) else value}")


def _list(client: Client, messages: Iterable[Any], columns: Sequence[str],
          extra: Callable[[Any, dict[str, Any]], None] | None = None) -> None:
    """Messages as a table (``extra`` adds computed columns to each row) or JSON."""
    messages = list(messages)
    rows = [MessageToDict(m, preserving_proto_field_name=True) for m in messages]
    if client.json:
        print(json.dumps(rows, indent=2, sort_keys=True))
        return
    if extra is not None:
        for m, row in zip(messages, rows):
            extra(m, row)
    _print_table(rows, columns)


# ---- servers ---------------------------------------------------------------------------

def _resolve_flavor(client: Client, ref: str) -> str:
    for f in client.flavors.ListFlavors(flavors_pb2.ListFlavorsRequest(page_size=1000)).flavors:
        if ref in (f.id, f.name):
            return f.id
    raise CommandError(f"no flavor named or with id {ref!r} (novalite flavor list)")


class Progress:
    """A progress bar on stderr (only when it is a terminal, else a line a second)."""

    def __init__(self, total: int, label: str) -> None:
        self.total, self.label = total, label
        self.tty = sys.stderr.isatty()
        self.last = 0.0

    def update(self, counts: dict[str, int], force: bool = False) -> None:
        now = time.monotonic()
        if not force and now - self.last < (0.1 if self.tty else 1.0):
            return
        self.last = now
        done = sum(n for s, n in counts.items() if s in FINAL_STATUSES)
        width = 30
        filled = int(width * done / max(self.total, 1))
        summary = " ".join(f"{s}:{n}" for s, n in sorted(counts.items()))
        line = f"{self.label} [{'#' * filled}{'.' * (width - filled)}] {done}/{self.total} {summary}"
        print(("\r" + line) if self.tty else line, end="" if self.tty else "\n", file=sys.stderr, flush=True)

    def close(self) -> None:
        if self.tty:
            print(file=sys.stderr)


def _settled(server: Any) -> bool:
    """No task in flight and a final status (ACTIVE or ERROR ...; not DELETED)."""
    return server.status in FINAL_STATUSES - {"DELETED"} and not server.task_state


def wait_for(client: Client, ids: Sequence[str], timeout: float, label: str = "waiting",
             done: Callable[[Any], bool] = _settled) -> dict[str, Any]:
    """Watch the servers until ``done(server)`` holds for each one (by default: no
    task in flight and ACTIVE, ERROR, SHUTOFF ...), with a progress bar. Returns the
    last state of each."""
    progress = Progress(len(ids), label)
    latest: dict[str, Any] = {}
    deadline = time.monotonic() + timeout
    stream = client.servers.WatchServers(servers_pb2.WatchServersRequest(ids=list(ids)), timeout=timeout)
    try:
        for event in stream:
            latest[event.server.id] = event.server
            counts: dict[str, int] = {}
            for s in latest.values():
                counts[s.status] = counts.get(s.status, 0) + 1
            progress.update(counts)
            if len(latest) == len(ids) and all(done(s) for s in latest.values()):
                progress.update(counts, force=True)
                break
            if time.monotonic() > deadline:
                raise CommandError(f"timed out after {timeout:.0f} s")
    except grpc.RpcError as e:
        if e.code() == grpc.StatusCode.DEADLINE_EXCEEDED:
            raise CommandError(f"timed out after {timeout:.0f} s") from None
        raise
    finally:
        stream.cancel()
        progress.close()
    return latest


def server_create(client: Client, a: argparse.Namespace) -> int:
    req = servers_pb2.CreateServerRequest(
        name=a.name, flavor_id=_resolve_flavor(client, a.flavor), image_id=a.image or "",
        metadata=_key_values(a.meta, "--meta"))
    count = a.count
    req.min_count = a.min_count if a.min_count is not None else count
    req.max_count = count
    if a.availability_zone:
        req.availability_zone = a.availability_zone
    if a.group:
        req.scheduler_hints.group = a.group
    req.scheduler_hints.same_host.extend(a.same_host or [])
    req.scheduler_hints.different_host.extend(a.different_host or [])
    if a.key_name:
        req.key_name = a.key_name
    if a.user_data:
        try:
            req.user_data = Path(a.user_data).read_bytes()
        except OSError as e:
            raise CommandError(f"--user-data: {e}") from None
    if a.admin_pass is not None:
        req.admin_pass = a.admin_pass
    if a.config_drive is not None:
        req.config_drive = a.config_drive
    req.networks.extend(a.network or [])
    reply = client.servers.CreateServer(req)
    ids = [s.id for s in reply.servers]
    if not client.json:
        print(f"admin password: {reply.admin_pass}", file=sys.stderr)
    if not a.wait:
        _list(client, reply.servers, ["id", "name", "status"])
        return 0
    final = wait_for(client, ids, a.timeout, label=f"building {len(ids)} server(s)")
    _list(client, [final[i] for i in ids], ["id", "name", "status", "host", "addresses"],
          _addresses)
    errors = [s for s in final.values() if s.status == "ERROR"]
    for s in errors:
        print(f"{s.id}: {s.fault.message}", file=sys.stderr)
    return 1 if errors else 0


def _addresses(server: Any, row: dict[str, Any]) -> None:
    """A table's addresses column: network=IP, ..."""
    row["addresses"] = ", ".join(f"{a.network}={a.address}" for a in server.addresses)


def server_list(client: Client, a: argparse.Namespace) -> int:
    req = servers_pb2.ListServersRequest(page_size=1000)
    if a.status:
        req.filters.status = a.status
    if a.name:
        req.filters.name = a.name
    if a.host:
        req.filters.host = a.host
    if a.project:
        req.filters.project_id = a.project
    servers: list[Any] = []
    while True:
        reply = client.servers.ListServers(req)
        servers.extend(reply.servers)
        if not reply.next_page_token:
            break
        req.page_token = reply.next_page_token
    _list(client, servers, ["id", "name", "status", "task_state", "power_state", "host",
                            "addresses"], _addresses)
    return 0


def server_show(client: Client, a: argparse.Namespace) -> int:
    _show(client, client.servers.GetServer(servers_pb2.GetServerRequest(id=a.id)))
    return 0


def server_delete(client: Client, a: argparse.Namespace) -> int:
    """Delete each server named (one refusal does not stop the others); with --wait,
    watch those being deleted until they are gone. Status 1 if any was refused."""
    deleting: list[str] = []
    failed = 0
    for sid in dict.fromkeys(a.ids):
        try:
            client.servers.DeleteServer(servers_pb2.DeleteServerRequest(id=sid))
        except grpc.RpcError as e:
            failed += 1
            print(f"error: {sid}: {e.code().name}: {e.details()}", file=sys.stderr)  # type: ignore[attr-defined]
        else:
            deleting.append(sid)
    if a.wait and deleting:
        wait_for(client, deleting, a.timeout, label=f"deleting {len(deleting)} server(s)",
                 done=lambda s: s.status == "DELETED")
    return 1 if failed else 0


def server_console_log(client: Client, a: argparse.Namespace) -> int:
    req = servers_pb2.GetConsoleOutputRequest(id=a.id)
    if a.lines is not None:
        req.length = a.lines
    output = client.servers.GetConsoleOutput(req).output
    if client.json:
        print(json.dumps({"output": output}))
    else:
        sys.stdout.write(output)
    return 0


def _call_action(client: Client, a: argparse.Namespace) -> Any:
    """The RPC of ``a.action``: RebootServer with its type, else the lifecycle
    table's RPC for the action, whose request is the server's id."""
    if a.action == "reboot":
        return client.servers.RebootServer(servers_pb2.RebootServerRequest(
            id=a.id, type=servers_pb2.REBOOT_TYPE_HARD if a.hard else servers_pb2.REBOOT_TYPE_SOFT))
    rpc = lifecycle.PLAIN_ACTIONS[a.action].rpc
    return getattr(client.servers, rpc)(getattr(servers_pb2, f"{rpc}Request")(id=a.id))


# `novalite server ACTION`: the lifecycle table's actions, both reboots as one
CLI_ACTIONS = ("reboot", *lifecycle.PLAIN_ACTIONS)
_ACTION_HELP = {
    "confirm_resize": "confirm a resize or cold migration (the old host's copy is freed)",
    "revert_resize": "revert a resize or cold migration (back on the old host, as it was)",
    "shelve": "shelve a server: powered off, its disk kept, its host freed (offloaded)",
    "shelve_offload": "offload a shelved server: its host freed (admin)",
}


def server_action(client: Client, a: argparse.Namespace) -> int:
    _call_action(client, a)
    return _maybe_wait(client, a, a.action)


def _maybe_wait(client: Client, a: argparse.Namespace, label: str) -> int:
    """With --wait: watch the server until its task is done, show where it ended
    (and its fault, status 1, when the action failed)."""
    if not a.wait:
        return 0
    # the status alone does not tell: a server being stopped, paused or
    # suspended stays ACTIVE until its task is done (Nova's status map)
    final = wait_for(client, [a.id], a.timeout, label=label)[a.id]
    _show(client, final, ["id", "status", "vm_state", "task_state", "power_state", "host"])
    actions = client.servers.ListServerActions(servers_pb2.ListServerActionsRequest(id=a.id)).actions
    if final.status == "ERROR" or (actions and actions[0].message == "Error"):
        print(f"{a.id}: {final.fault.message or 'the action failed'}", file=sys.stderr)
        return 1
    return 0


def server_resize(client: Client, a: argparse.Namespace) -> int:
    client.servers.ResizeServer(servers_pb2.ResizeServerRequest(
        id=a.id, flavor_id=_resolve_flavor(client, a.flavor)))
    return _maybe_wait(client, a, "resize")


def server_move(client: Client, a: argparse.Namespace) -> int:
    """migrate, live-migrate, evacuate: to --host or where the scheduler says."""
    rpc, request = {"migrate": ("MigrateServer", servers_pb2.MigrateServerRequest),
                    "live-migrate": ("LiveMigrateServer", servers_pb2.LiveMigrateServerRequest),
                    "evacuate": ("EvacuateServer", servers_pb2.EvacuateServerRequest)}[a.move]
    message = request(id=a.id)
    if a.host:
        message.host = a.host
    getattr(client.servers, rpc)(message)
    return _maybe_wait(client, a, a.move)


def server_rebuild(client: Client, a: argparse.Namespace) -> int:
    req = servers_pb2.RebuildServerRequest(id=a.id, image_id=a.image)
    if a.name is not None:
        req.name = a.name
    if a.meta is not None:
        req.metadata.items.update(_key_values(a.meta, "--meta"))
    client.servers.RebuildServer(req)
    return _maybe_wait(client, a, "rebuild")


def server_unshelve(client: Client, a: argparse.Namespace) -> int:
    req = servers_pb2.UnshelveServerRequest(id=a.id)
    if a.availability_zone:
        req.availability_zone = a.availability_zone
    if a.host:
        req.host = a.host
    client.servers.UnshelveServer(req)
    return _maybe_wait(client, a, "unshelve")


def server_lock(client: Client, a: argparse.Namespace) -> int:
    req = servers_pb2.LockServerRequest(id=a.id)
    if a.reason:
        req.reason = a.reason
    _show(client, client.servers.LockServer(req), ["id", "locked", "locked_reason"])
    return 0


def server_unlock(client: Client, a: argparse.Namespace) -> int:
    _show(client, client.servers.UnlockServer(servers_pb2.UnlockServerRequest(id=a.id)),
          ["id", "locked"])
    return 0


def server_rename(client: Client, a: argparse.Namespace) -> int:
    _show(client, client.servers.UpdateServer(servers_pb2.UpdateServerRequest(id=a.id, name=a.name)),
          ["id", "name"])
    return 0


def server_set_meta(client: Client, a: argparse.Namespace) -> int:
    _show(client, client.servers.SetServerMetadata(servers_pb2.SetServerMetadataRequest(
        id=a.id, metadata=_key_values(a.items, "KEY=VALUE"), replace=a.replace)), ["id", "metadata"])
    return 0


def server_unset_meta(client: Client, a: argparse.Namespace) -> int:
    _show(client, client.servers.DeleteServerMetadata(servers_pb2.DeleteServerMetadataRequest(
        id=a.id, keys=a.keys)), ["id", "metadata"])
    return 0


def server_actions(client: Client, a: argparse.Namespace) -> int:
    """The server's action log, newest first, each action with its events."""
    actions = client.servers.ListServerActions(servers_pb2.ListServerActionsRequest(id=a.id)).actions
    if client.json:
        _list(client, actions, [])
        return 0
    rows = []
    for action in actions:
        d = MessageToDict(action, preserving_proto_field_name=True)
        rows.append({"action": d["action"], "start_time": d.get("start_time", ""),
                     "finish_time": d.get("finish_time", ""), "message": d.get("message", "")})
        for e in d.get("events", []):
            rows.append({"action": "  " + e["event"], "start_time": e.get("start_time", ""),
                         "finish_time": e.get("finish_time", ""), "message": e.get("result", "")})
    _print_table(rows, ["action", "start_time", "finish_time", "message"])
    return 0


def migration_list(client: Client, a: argparse.Namespace) -> int:
    req = servers_pb2.ListMigrationsRequest()
    if a.server:
        req.server_id = a.server
    if a.host:
        req.host = a.host
    _list(client, client.servers.ListMigrations(req).migrations,
          ["id", "server_id", "migration_type", "status", "source_host", "dest_host"])
    return 0


def host_evacuate(client: Client, a: argparse.Namespace) -> int:
    """Nova's host-evacuate: every server of a host that is down, each evacuated
    (one refusal does not stop the others). Status 1 if any was refused or failed."""
    req = servers_pb2.ListServersRequest(page_size=1000)
    req.filters.host = a.name
    ids = [s.id for s in client.servers.ListServers(req).servers]
    started, failed = [], 0
    for sid in ids:
        message = servers_pb2.EvacuateServerRequest(id=sid)
        if a.target:
            message.host = a.target
        try:
            client.servers.EvacuateServer(message)
        except grpc.RpcError as e:
            failed += 1
            print(f"error: {sid}: {e.code().name}: {e.details()}", file=sys.stderr)  # type: ignore[attr-defined]
        else:
            started.append(sid)
    if not ids:
        print(f"host {a.name} has no servers")
    if a.wait and started:
        final = wait_for(client, started, a.timeout, label=f"evacuating {len(started)} server(s)")
        _list(client, [final[i] for i in started], ["id", "name", "status", "host"])
        failed += sum(1 for s in final.values() if s.status == "ERROR")
    return 1 if failed else 0


# ---- flavors, hosts, quotas, images, groups -------------------------------------------------

def flavor_create(client: Client, a: argparse.Namespace) -> int:
    req = flavors_pb2.CreateFlavorRequest(name=a.name, vcpus=a.vcpus, memory_mb=a.ram, root_gb=a.disk,
                                          ephemeral_gb=a.ephemeral, swap=a.swap,
                                          extra_specs=_key_values(a.property, "--property"))
    req.is_public = not a.private
    _show(client, client.flavors.CreateFlavor(req))
    return 0


def flavor_list(client: Client, a: argparse.Namespace) -> int:
    _list(client, client.flavors.ListFlavors(flavors_pb2.ListFlavorsRequest(page_size=1000)).flavors,
          ["id", "name", "vcpus", "memory_mb", "root_gb", "ephemeral_gb", "swap"])
    return 0


def flavor_show(client: Client, a: argparse.Namespace) -> int:
    _show(client, client.flavors.GetFlavor(flavors_pb2.GetFlavorRequest(id=_resolve_flavor(client, a.flavor))))
    return 0


def flavor_delete(client: Client, a: argparse.Namespace) -> int:
    client.flavors.DeleteFlavor(flavors_pb2.DeleteFlavorRequest(id=_resolve_flavor(client, a.flavor)))
    return 0


def flavor_set(client: Client, a: argparse.Namespace) -> int:
    _show(client, client.flavors.SetFlavorExtraSpecs(flavors_pb2.SetFlavorExtraSpecsRequest(
        flavor_id=_resolve_flavor(client, a.flavor), extra_specs=_key_values(a.property, "--property"))))
    return 0


def flavor_access(client: Client, a: argparse.Namespace) -> int:
    """Who may use a private flavor: add or remove a project, or list them."""
    flavor_id = _resolve_flavor(client, a.flavor)
    if a.access_command == "add":
        reply = client.flavors.AddFlavorAccess(flavors_pb2.AddFlavorAccessRequest(
            flavor_id=flavor_id, project_id=a.project))
    elif a.access_command == "remove":
        reply = client.flavors.RemoveFlavorAccess(flavors_pb2.RemoveFlavorAccessRequest(
            flavor_id=flavor_id, project_id=a.project))
    else:
        reply = client.flavors.ListFlavorAccess(flavors_pb2.ListFlavorAccessRequest(flavor_id=flavor_id))
    if client.json:
        _show(client, reply)
    else:
        _print_table([{"project_id": p} for p in reply.project_ids], ["project_id"])
    return 0


def host_list(client: Client, a: argparse.Namespace) -> int:
    hosts = client.hosts.ListHosts(hosts_pb2.ListHostsRequest(page_size=1000)).hosts
    if client.json:
        _list(client, hosts, [])
        return 0
    rows = []
    for h in hosts:
        res = {r.resource_class: r for r in h.resources}
        row: dict[str, Any] = {
            "name": h.name, "state": hosts_pb2.ServiceState.Name(h.state).split("_")[-1].lower(),
            "status": hosts_pb2.ServiceStatus.Name(h.status).split("_")[-1].lower(),
            "instances": h.compute.num_instances, "zone": h.availability_zone}
        for rc, label in (("VCPU", "vcpus"), ("MEMORY_MB", "ram_mb"), ("DISK_GB", "disk_gb")):
            r = res.get(rc)
            row[label] = f"{r.used}/{r.capacity}" if r else "-"
        rows.append(row)
    _print_table(rows, ["name", "state", "status", "vcpus", "ram_mb", "disk_gb", "instances", "zone"])
    return 0


def host_show(client: Client, a: argparse.Namespace) -> int:
    req = hosts_pb2.ListHostsRequest(page_size=1000)
    while True:
        reply = client.hosts.ListHosts(req)
        for h in reply.hosts:
            if h.name == a.name:
                _show(client, h)
                return 0
        if not reply.next_page_token:
            raise CommandError(f"no host named {a.name!r} (novalite host list)")
        req.page_token = reply.next_page_token


def host_trait(client: Client, a: argparse.Namespace) -> int:
    request = hosts_pb2.HostTraitRequest(name=a.name, trait=a.trait)
    host = (client.hosts.AddHostTrait(request) if a.trait_command == "add"
            else client.hosts.RemoveHostTrait(request))
    _show(client, host, ["name", "traits"])
    return 0


def host_enable(client: Client, a: argparse.Namespace) -> int:
    _show(client, client.hosts.EnableHost(hosts_pb2.EnableHostRequest(name=a.name)), ["name", "status"])
    return 0


def host_disable(client: Client, a: argparse.Namespace) -> int:
    _show(client, client.hosts.DisableHost(hosts_pb2.DisableHostRequest(name=a.name, reason=a.reason or "")),
          ["name", "status", "disabled_reason"])
    return 0


def _resolve_aggregate(client: Client, ref: str) -> str:
    for agg in client.aggregates.ListAggregates(aggregates_pb2.ListAggregatesRequest()).aggregates:
        if ref in (agg.id, agg.name):
            return agg.id
    raise CommandError(f"no aggregate named or with id {ref!r} (novalite aggregate list)")


_AGGREGATE_COLUMNS = ["id", "name", "availability_zone", "hosts", "metadata"]


def aggregate_create(client: Client, a: argparse.Namespace) -> int:
    req = aggregates_pb2.CreateAggregateRequest(name=a.name, metadata=_key_values(a.property, "--property"))
    if a.zone is not None:
        req.availability_zone = a.zone
    _show(client, client.aggregates.CreateAggregate(req), _AGGREGATE_COLUMNS)
    return 0


def aggregate_list(client: Client, a: argparse.Namespace) -> int:
    aggregates = client.aggregates.ListAggregates(aggregates_pb2.ListAggregatesRequest()).aggregates
    if client.json:
        _list(client, aggregates, [])
        return 0
    _print_table([{"id": g.id, "name": g.name, "availability_zone": g.availability_zone,
                   "hosts": ",".join(g.hosts),
                   "metadata": ",".join(f"{k}={v}" for k, v in sorted(g.metadata.items())
                                        if k != "availability_zone")} for g in aggregates],
                 _AGGREGATE_COLUMNS)
    return 0


def aggregate_show(client: Client, a: argparse.Namespace) -> int:
    _show(client, client.aggregates.GetAggregate(aggregates_pb2.GetAggregateRequest(
        id=_resolve_aggregate(client, a.aggregate))), _AGGREGATE_COLUMNS)
    return 0


def aggregate_set(client: Client, a: argparse.Namespace) -> int:
    """A new name and/or zone (UpdateAggregate), then metadata (SetAggregateMetadata)."""
    agg_id = _resolve_aggregate(client, a.aggregate)
    properties = _key_values(a.property, "--property")
    if a.new_name is None and a.zone is None and not properties:
        raise CommandError("nothing to set: give --name, --zone or --property")
    reply = None
    if a.new_name is not None or a.zone is not None:
        req = aggregates_pb2.UpdateAggregateRequest(id=agg_id)
        if a.new_name is not None:
            req.name = a.new_name
        if a.zone is not None:
            req.availability_zone = a.zone
        reply = client.aggregates.UpdateAggregate(req)
    if properties:
        reply = client.aggregates.SetAggregateMetadata(aggregates_pb2.SetAggregateMetadataRequest(
            id=agg_id, metadata=properties))
    _show(client, reply, _AGGREGATE_COLUMNS)
    return 0


def aggregate_unset(client: Client, a: argparse.Namespace) -> int:
    _show(client, client.aggregates.SetAggregateMetadata(aggregates_pb2.SetAggregateMetadataRequest(
        id=_resolve_aggregate(client, a.aggregate), unset=a.property)), _AGGREGATE_COLUMNS)
    return 0


def aggregate_delete(client: Client, a: argparse.Namespace) -> int:
    client.aggregates.DeleteAggregate(aggregates_pb2.DeleteAggregateRequest(
        id=_resolve_aggregate(client, a.aggregate)))
    return 0


def aggregate_host(client: Client, a: argparse.Namespace) -> int:
    agg_id = _resolve_aggregate(client, a.aggregate)
    if a.add:
        reply = client.aggregates.AddAggregateHost(aggregates_pb2.AddAggregateHostRequest(id=agg_id, host=a.host))
    else:
        reply = client.aggregates.RemoveAggregateHost(aggregates_pb2.RemoveAggregateHostRequest(
            id=agg_id, host=a.host))
    _show(client, reply, _AGGREGATE_COLUMNS)
    return 0


def zone_list(client: Client, a: argparse.Namespace) -> int:
    zones = client.zones.ListAvailabilityZones(aggregates_pb2.ListAvailabilityZonesRequest()).availability_zones
    if client.json:
        _list(client, zones, [])
        return 0
    rows: list[dict[str, Any]] = []
    for z in zones:
        state = "available" if z.available else "not available"
        if not z.hosts:
            rows.append({"zone": z.name, "state": state})
        for h in z.hosts:
            rows.append({"zone": z.name, "state": state, "host": h.name,
                         "host_state": "up" if h.up else "down",
                         "host_status": "enabled" if h.enabled else "disabled"})
    _print_table(rows, ["zone", "state", "host", "host_state", "host_status"])
    return 0


def quota_show(client: Client, a: argparse.Namespace) -> int:
    _show(client, client.quotas.GetQuota(quotas_pb2.GetQuotaRequest(project_id=a.project or "")))
    return 0


def quota_set(client: Client, a: argparse.Namespace) -> int:
    req = quotas_pb2.SetQuotaRequest(project_id=a.project)
    for name in ("instances", "cores", "ram"):
        value = getattr(a, name)
        if value is not None:
            setattr(req, name, value)
    _show(client, client.quotas.SetQuota(req))
    return 0


def image_create(client: Client, a: argparse.Namespace) -> int:
    path = os.path.abspath(a.file)
    req = images_pb2.CreateImageRequest(name=a.name, path=path, properties=_key_values(a.property, "--property"))
    if a.disk_format:
        req.disk_format = a.disk_format
    _show(client, client.images.CreateImage(req))
    return 0


def image_list(client: Client, a: argparse.Namespace) -> int:
    _list(client, client.images.ListImages(images_pb2.ListImagesRequest(page_size=1000)).images,
          ["id", "name", "disk_format", "size_bytes", "path"])
    return 0


def image_show(client: Client, a: argparse.Namespace) -> int:
    _show(client, client.images.GetImage(images_pb2.GetImageRequest(id=a.id)))
    return 0


def image_delete(client: Client, a: argparse.Namespace) -> int:
    client.images.DeleteImage(images_pb2.DeleteImageRequest(id=a.id))
    return 0


def image_create_guest(client: Client, a: argparse.Namespace) -> int:
    from novalite.client.guest_image import register

    try:
        image = register(client.images, a.dir, a.name)
    except (OSError, KeyError, ValueError) as e:
        raise CommandError(f"{a.dir}: not a guest image build (scripts/build_guest_image.sh "
                           f"makes one): {e}") from None
    _show(client, image)
    return 0


def keypair_create(client: Client, a: argparse.Namespace) -> int:
    req = keypairs_pb2.CreateKeypairRequest(name=a.name)
    if a.user:
        req.user_id = a.user
    pair = client.keypairs.CreateKeypair(req)
    if a.private_key:
        path = Path(a.private_key)
        try:
            path.touch(mode=0o600, exist_ok=False)
            path.write_text(pair.private_key)
        except OSError as e:
            raise CommandError(f"--private-key: {e} (the key pair is created; delete it "
                               "and try again)") from None
        pair.ClearField("private_key")
    _show(client, pair, ["name", "fingerprint", "public_key", "user_id", "private_key"])
    return 0


def keypair_import(client: Client, a: argparse.Namespace) -> int:
    try:
        public_key = Path(a.public_key).read_text()
    except OSError as e:
        raise CommandError(f"--public-key: {e}") from None
    req = keypairs_pb2.ImportKeypairRequest(name=a.name, public_key=public_key)
    if a.user:
        req.user_id = a.user
    _show(client, client.keypairs.ImportKeypair(req), ["name", "fingerprint", "public_key", "user_id"])
    return 0


def keypair_list(client: Client, a: argparse.Namespace) -> int:
    req = keypairs_pb2.ListKeypairsRequest()
    if a.user:
        req.user_id = a.user
    _list(client, client.keypairs.ListKeypairs(req).keypairs, ["name", "fingerprint", "type"])
    return 0


def keypair_delete(client: Client, a: argparse.Namespace) -> int:
    req = keypairs_pb2.DeleteKeypairRequest(name=a.name)
    if a.user:
        req.user_id = a.user
    client.keypairs.DeleteKeypair(req)
    return 0


def network_list(client: Client, a: argparse.Namespace) -> int:
    _list(client, client.networks.ListNetworks(networks_pb2.ListNetworksRequest()).networks,
          ["id", "name", "cidr", "gateway", "bridge"])
    return 0


def group_create(client: Client, a: argparse.Namespace) -> int:
    req = server_groups_pb2.CreateServerGroupRequest(name=a.name, policy=a.policy)
    if a.max_server_per_host is not None:
        req.max_server_per_host = a.max_server_per_host
    _show(client, client.groups.CreateServerGroup(req))
    return 0


def group_list(client: Client, a: argparse.Namespace) -> int:
    _list(client, client.groups.ListServerGroups(server_groups_pb2.ListServerGroupsRequest()).server_groups,
          ["id", "name", "policy", "members"])
    return 0


def group_delete(client: Client, a: argparse.Namespace) -> int:
    client.groups.DeleteServerGroup(server_groups_pb2.DeleteServerGroupRequest(id=a.id))
    return 0


def register(sub: Any, positive: Callable[[str], Callable[[str], int]]) -> None:
    """Add the client commands to the CLI's subparsers."""
    def cmd(parent: Any, name: str, fn: Callable[[Client, argparse.Namespace], int], help: str) -> argparse.ArgumentParser:
        p = parent.add_parser(name, help=help, description=help)
        add_connection_arguments(p)
        p.set_defaults(client_command=fn)
        return p

    server = sub.add_parser("server", help="create, list, show, delete servers and run actions on them")
    ss = server.add_subparsers(dest="server_command", metavar="ACTION", required=True)
    p = cmd(ss, "create", server_create, "create servers (a batch with --count)")
    p.add_argument("name")
    p.add_argument("--flavor", required=True, help="flavor name or id")
    p.add_argument("--image", help="image id")
    p.add_argument("--count", type=positive("--count"), default=1, help="how many servers (max_count)")
    p.add_argument("--min-count", type=positive("--min-count"), default=None,
                   help="create at least this many, as the quota allows (default: --count)")
    p.add_argument("--availability-zone", metavar="ZONE",
                   help="a zone (novalite zone list); an admin may force a host with Nova's "
                        "ZONE:HOST, ZONE:HOST:NODE or ZONE::NODE (the filters are skipped, "
                        "capacity, traits and the group's policy are not)")
    p.add_argument("--group", help="server group id (scheduler hint)")
    p.add_argument("--same-host", action="append", metavar="SERVER_ID")
    p.add_argument("--different-host", action="append", metavar="SERVER_ID")
    p.add_argument("--meta", action="append", metavar="KEY=VALUE")
    p.add_argument("--key-name", help="a key pair of yours: its public key goes to the guest")
    p.add_argument("--user-data", metavar="FILE", help="user data for the guest (a script runs)")
    p.add_argument("--admin-pass", help="the guest's root password (default: generated, printed)")
    drive = p.add_mutually_exclusive_group()
    drive.add_argument("--config-drive", dest="config_drive", action="store_true", default=None,
                       help="give the guest a config drive (the default)")
    drive.add_argument("--no-config-drive", dest="config_drive", action="store_false")
    p.add_argument("--network", action="append", metavar="NAME",
                   help="a network to put the server on (repeat; default: every network; 'none')")
    p.add_argument("--wait", action="store_true", help="show progress until every server is ACTIVE or ERROR")
    p.add_argument("--timeout", type=float, default=600.0)
    p = cmd(ss, "list", server_list, "list servers")
    p.add_argument("--status")
    p.add_argument("--name")
    p.add_argument("--host", help="admin only")
    p.add_argument("--project", help="admin only")
    p = cmd(ss, "show", server_show, "show a server")
    p.add_argument("id")
    p = cmd(ss, "console-log", server_console_log,
            "the guest's serial console output (Nova's os-getConsoleOutput)")
    p.add_argument("id")
    p.add_argument("--lines", type=int, help="only the last N lines (default: all)")
    p = cmd(ss, "delete", server_delete, "delete servers")
    p.add_argument("ids", nargs="+", metavar="ID")
    p.add_argument("--wait", action="store_true")
    p.add_argument("--timeout", type=float, default=300.0)
    def waits(p: argparse.ArgumentParser) -> None:
        p.add_argument("--wait", action="store_true",
                       help="watch the server until its task is done (status 1 if it failed)")
        p.add_argument("--timeout", type=float, default=600.0)

    for action in CLI_ACTIONS:
        name = action.replace("_", "-")
        p = cmd(ss, name, server_action, _ACTION_HELP.get(action, f"{name} a server"))
        p.add_argument("id")
        if action == "reboot":
            p.add_argument("--hard", action="store_true")
        waits(p)
        p.set_defaults(action=action)
    p = cmd(ss, "resize", server_resize, "resize a server to another flavor (then confirm-resize "
                                         "or revert-resize)")
    p.add_argument("id")
    p.add_argument("--flavor", required=True, help="flavor name or id")
    waits(p)
    for move, what in (("migrate", "cold-migrate a server to another host (admin; then "
                                   "confirm-resize or revert-resize)"),
                       ("live-migrate", "move a running server to another host (admin)"),
                       ("evacuate", "rebuild a server of a host that is down on another (admin)")):
        p = cmd(ss, move, server_move, what)
        p.add_argument("id")
        p.add_argument("--host", help="the host to go to (the filters still run); default: "
                                      "the scheduler's choice")
        waits(p)
        p.set_defaults(move=move)
    p = cmd(ss, "rebuild", server_rebuild, "rebuild a server from an image, on its host")
    p.add_argument("id")
    p.add_argument("--image", required=True, help="image id (the server's own, or another)")
    p.add_argument("--name", help="a new name")
    p.add_argument("--meta", action="append", metavar="KEY=VALUE",
                   help="new metadata, replacing the server's")
    waits(p)
    p = cmd(ss, "unshelve", server_unshelve, "start a shelved server (placed again when offloaded)")
    p.add_argument("id")
    p.add_argument("--availability-zone", help="an offloaded server's zone")
    p.add_argument("--host", help="an offloaded server's host (admin)")
    waits(p)
    p = cmd(ss, "lock", server_lock, "lock a server: only admins may act on it until unlocked")
    p.add_argument("id")
    p.add_argument("--reason")
    p = cmd(ss, "unlock", server_unlock, "unlock a server")
    p.add_argument("id")
    p = cmd(ss, "rename", server_rename, "rename a server")
    p.add_argument("id")
    p.add_argument("name")
    p = cmd(ss, "set-meta", server_set_meta, "set metadata items of a server")
    p.add_argument("id")
    p.add_argument("items", nargs="+", metavar="KEY=VALUE")
    p.add_argument("--replace", action="store_true", help="replace all the server's metadata")
    p = cmd(ss, "unset-meta", server_unset_meta, "remove metadata items of a server")
    p.add_argument("id")
    p.add_argument("keys", nargs="+", metavar="KEY")
    p = cmd(ss, "actions", server_actions, "a server's action log (newest first) with events")
    p.add_argument("id")

    migration = sub.add_parser("migration", help="moves of servers between hosts (admin)")
    ms = migration.add_subparsers(dest="migration_command", metavar="ACTION", required=True)
    p = cmd(ms, "list", migration_list, "migrations, newest first")
    p.add_argument("--server", help="a server's only")
    p.add_argument("--host", help="a host's only (from or to it)")

    flavor = sub.add_parser("flavor", help="manage flavors (create/delete: admin)")
    fs = flavor.add_subparsers(dest="flavor_command", metavar="ACTION", required=True)
    p = cmd(fs, "create", flavor_create, "create a flavor")
    p.add_argument("name")
    p.add_argument("--vcpus", type=int, required=True)
    p.add_argument("--ram", type=int, required=True, help="MiB")
    p.add_argument("--disk", type=int, default=0, help="root disk, GiB")
    p.add_argument("--ephemeral", type=int, default=0, help="GiB")
    p.add_argument("--swap", type=int, default=0, help="MiB")
    p.add_argument("--private", action="store_true")
    p.add_argument("--property", action="append", metavar="KEY=VALUE", help="extra spec")
    cmd(fs, "list", flavor_list, "list flavors")
    for name, fn in (("show", flavor_show), ("delete", flavor_delete)):
        p = cmd(fs, name, fn, f"{name} a flavor")
        p.add_argument("flavor", help="name or id")
    p = cmd(fs, "set", flavor_set, "set extra specs")
    p.add_argument("flavor")
    p.add_argument("--property", action="append", metavar="KEY=VALUE", required=True)
    access = fs.add_parser("access", help="the projects that may use a private flavor (admin)",
                           description="Nova's flavor access: a private flavor is visible to, "
                                       "and usable by, admins and the projects given access.")
    acs = access.add_subparsers(dest="access_command", metavar="ACTION", required=True)
    for name, what in (("add", "give a project access"), ("remove", "take a project's access away")):
        p = cmd(acs, name, flavor_access, what)
        p.add_argument("flavor", help="name or id of a private flavor")
        p.add_argument("project", help="project id")
    p = cmd(acs, "list", flavor_access, "the projects with access")
    p.add_argument("flavor", help="name or id of a private flavor")

    host = sub.add_parser("host", help="list, show, enable, disable compute hosts; their traits (admin)")
    hs = host.add_subparsers(dest="host_command", metavar="ACTION", required=True)
    cmd(hs, "list", host_list, "hosts with capacity and usage per resource class")
    p = cmd(hs, "enable", host_enable, "enable a host")
    p.add_argument("name")
    p = cmd(hs, "disable", host_disable, "disable a host")
    p.add_argument("name")
    p.add_argument("--reason")
    p = cmd(hs, "show", host_show, "one host: capacity, usage, zone, traits")
    p.add_argument("name")
    trait = hs.add_parser("trait", help="traits on a host (a flavor's trait:NAME=required|forbidden)",
                          description="Add or remove a trait on a host: Placement's CUSTOM_* traits or "
                                      "standard ones such as STORAGE_DISK_SSD. The HW_CPU_* traits "
                                      "are the host's compute agent's, reported from its CPU.")
    ts = trait.add_subparsers(dest="trait_command", metavar="ACTION", required=True)
    for name in ("add", "remove"):
        p = cmd(ts, name, host_trait, f"{name} a trait")
        p.add_argument("name", help="host name")
        p.add_argument("trait", help="e.g. CUSTOM_GPU")

    aggregate = sub.add_parser("aggregate", help="host aggregates and availability zones (admin)",
                               description="Nova's host aggregates: groups of hosts whose metadata the "
                                           "scheduler reads (flavor pinning, tenant isolation, limits, "
                                           "weight multipliers); --zone makes one an availability zone. "
                                           "Every change reaches the schedulers before the command returns.")
    ags = aggregate.add_subparsers(dest="aggregate_command", metavar="ACTION", required=True)
    p = cmd(ags, "create", aggregate_create, "create an aggregate")
    p.add_argument("name")
    p.add_argument("--zone", help="make it this availability zone")
    p.add_argument("--property", action="append", metavar="KEY=VALUE", help="metadata")
    cmd(ags, "list", aggregate_list, "list aggregates")
    p = cmd(ags, "show", aggregate_show, "show an aggregate")
    p.add_argument("aggregate", help="name or id")
    p = cmd(ags, "set", aggregate_set, "rename, move to a zone, set metadata")
    p.add_argument("aggregate", help="name or id")
    p.add_argument("--name", dest="new_name", help="the new name")
    p.add_argument("--zone", help="the new availability zone")
    p.add_argument("--property", action="append", metavar="KEY=VALUE", help="metadata to set")
    p = cmd(ags, "unset", aggregate_unset, "remove metadata keys (availability_zone: leave the zone)")
    p.add_argument("aggregate", help="name or id")
    p.add_argument("--property", action="append", metavar="KEY", required=True)
    p = cmd(ags, "delete", aggregate_delete, "delete an aggregate without hosts")
    p.add_argument("aggregate", help="name or id")
    for name, add in (("add-host", True), ("remove-host", False)):
        p = cmd(ags, name, aggregate_host, f"{'add a host to' if add else 'remove a host from'} an aggregate")
        p.add_argument("aggregate", help="name or id")
        p.add_argument("host")
        p.set_defaults(add=add)

    zone = sub.add_parser("zone", help="availability zones")
    zs = zone.add_subparsers(dest="zone_command", metavar="ACTION", required=True)
    cmd(zs, "list", zone_list, "the zones with hosts, and (admin) their hosts")
    p = cmd(hs, "evacuate", host_evacuate, "evacuate every server of a host that is down")
    p.add_argument("name")
    p.add_argument("--target", help="the host to rebuild them on; default: the scheduler's choice")
    waits(p)

    quota = sub.add_parser("quota", help="show and set quotas")
    qs = quota.add_subparsers(dest="quota_command", metavar="ACTION", required=True)
    p = cmd(qs, "show", quota_show, "a project's limits and usage")
    p.add_argument("--project")
    p = cmd(qs, "set", quota_set, "set a project's limits (admin)")
    p.add_argument("project")
    p.add_argument("--instances", type=int)
    p.add_argument("--cores", type=int)
    p.add_argument("--ram", type=int, help="MiB")

    image = sub.add_parser("image", help="register and list images")
    ims = image.add_subparsers(dest="image_command", metavar="ACTION", required=True)
    p = cmd(ims, "create", image_create, "register a local qcow2 or raw file (admin)")
    p.add_argument("name")
    p.add_argument("--file", required=True)
    p.add_argument("--disk-format", choices=["qcow2", "raw", "aki", "ari"])
    p.add_argument("--property", action="append", metavar="KEY=VALUE",
                   help="e.g. hw_architecture=x86_64, img_hv_type=qemu, hw_vm_mode=hvm")
    p = cmd(ims, "create-guest", image_create_guest,
            "register the guest image scripts/build_guest_image.sh built (kernel, ramdisk, disk)")
    p.add_argument("dir", help="its output directory (the setup's: .venv/guest)")
    p.add_argument("--name", default="novalite-tiny")
    cmd(ims, "list", image_list, "list images")
    for name, fn in (("show", image_show), ("delete", image_delete)):
        p = cmd(ims, name, fn, f"{name} an image")
        p.add_argument("id")

    keypair = sub.add_parser("keypair", help="your SSH key pairs")
    ks = keypair.add_subparsers(dest="keypair_command", metavar="ACTION", required=True)
    p = cmd(ks, "create", keypair_create, "generate a key pair (its private key is shown once)")
    p.add_argument("name")
    p.add_argument("--private-key", metavar="FILE", help="write the private key there (mode 0600)")
    p.add_argument("--user", help="admin only: for another user")
    p = cmd(ks, "import", keypair_import, "store a public key you have")
    p.add_argument("name")
    p.add_argument("--public-key", metavar="FILE", required=True, help="e.g. ~/.ssh/id_ed25519.pub")
    p.add_argument("--user", help="admin only: for another user")
    p = cmd(ks, "list", keypair_list, "list your key pairs")
    p.add_argument("--user", help="admin only: another user's")
    p = cmd(ks, "delete", keypair_delete, "delete a key pair")
    p.add_argument("name")
    p.add_argument("--user", help="admin only: another user's")

    network = sub.add_parser("network", help="networks")
    ns = network.add_subparsers(dest="network_command", metavar="ACTION", required=True)
    cmd(ns, "list", network_list, "list networks")

    group = sub.add_parser("group", help="server groups")
    gs = group.add_subparsers(dest="group_command", metavar="ACTION", required=True)
    p = cmd(gs, "create", group_create, "create a server group")
    p.add_argument("name")
    p.add_argument("--policy", required=True, choices=["affinity", "anti-affinity", "soft-affinity", "soft-anti-affinity"])
    p.add_argument("--max-server-per-host", type=positive("--max-server-per-host"))
    cmd(gs, "list", group_list, "list server groups")
    p = cmd(gs, "delete", group_delete, "delete a server group")
    p.add_argument("id")


def run(args: argparse.Namespace) -> int:
    try:
        client = Client(args)
        return int(args.client_command(client, args))
    except grpc.RpcError as e:
        print(f"error: {e.code().name}: {e.details()}", file=sys.stderr)  # type: ignore[attr-defined]
        return 1
    except CommandError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
