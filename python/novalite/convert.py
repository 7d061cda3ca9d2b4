"""Conversions between protobuf messages and the domain (database records and the
placement model), in one place so that every servicer and client stays thin and
they all agree."""

from __future__ import annotations

import json
from datetime import datetime, timezone
from typing import Any, Iterable, Mapping, cast

from google.protobuf.timestamp_pb2 import Timestamp

from novalite import errors
from novalite.objects import records
from novalite.objects.lifecycle import SystemMetadata
from novalite.objects.states import PowerState, TaskState, VmState
from novalite.placement import model
from novalite.rpc.novalite.compute.v1 import (
    aggregates_pb2,
    faults_pb2,
    flavors_pb2,
    hosts_pb2,
    images_pb2,
    keypairs_pb2,
    networks_pb2,
    quotas_pb2,
    server_groups_pb2,
    servers_pb2,
    states_pb2,
)
from novalite.rpc.novalite.internal.v1 import compute_agent_pb2, request_spec_pb2, scheduler_pb2

# ---- states --------------------------------------------------------------------------

_VM: dict[str, states_pb2.VmState] = {
    VmState.BUILDING: states_pb2.VM_STATE_BUILDING, VmState.ACTIVE: states_pb2.VM_STATE_ACTIVE,
    VmState.STOPPED: states_pb2.VM_STATE_STOPPED, VmState.PAUSED: states_pb2.VM_STATE_PAUSED,
    VmState.SUSPENDED: states_pb2.VM_STATE_SUSPENDED, VmState.ERROR: states_pb2.VM_STATE_ERROR,
    VmState.DELETED: states_pb2.VM_STATE_DELETED, VmState.RESIZED: states_pb2.VM_STATE_RESIZED,
    VmState.SHELVED: states_pb2.VM_STATE_SHELVED,
    VmState.SHELVED_OFFLOADED: states_pb2.VM_STATE_SHELVED_OFFLOADED,
    VmState.RESCUED: states_pb2.VM_STATE_RESCUED,
}
_TASK: dict[str | None, states_pb2.TaskState] = {
    None: states_pb2.TASK_STATE_NONE,
    TaskState.SCHEDULING: states_pb2.TASK_STATE_SCHEDULING,
    TaskState.NETWORKING: states_pb2.TASK_STATE_NETWORKING,
    TaskState.BLOCK_DEVICE_MAPPING: states_pb2.TASK_STATE_BLOCK_DEVICE_MAPPING,
    TaskState.SPAWNING: states_pb2.TASK_STATE_SPAWNING,
    TaskState.DELETING: states_pb2.TASK_STATE_DELETING,
    TaskState.REBOOTING: states_pb2.TASK_STATE_REBOOTING,
    TaskState.REBOOTING_HARD: states_pb2.TASK_STATE_REBOOTING_HARD,
    TaskState.POWERING_OFF: states_pb2.TASK_STATE_POWERING_OFF,
    TaskState.POWERING_ON: states_pb2.TASK_STATE_POWERING_ON,
    TaskState.PAUSING: states_pb2.TASK_STATE_PAUSING,
    TaskState.UNPAUSING: states_pb2.TASK_STATE_UNPAUSING,
    TaskState.SUSPENDING: states_pb2.TASK_STATE_SUSPENDING,
    TaskState.RESUMING: states_pb2.TASK_STATE_RESUMING,
    TaskState.RESIZE_PREP: states_pb2.TASK_STATE_RESIZE_PREP,
    TaskState.RESIZE_MIGRATING: states_pb2.TASK_STATE_RESIZE_MIGRATING,
    TaskState.RESIZE_MIGRATED: states_pb2.TASK_STATE_RESIZE_MIGRATED,
    TaskState.RESIZE_FINISH: states_pb2.TASK_STATE_RESIZE_FINISH,
    TaskState.RESIZE_REVERTING: states_pb2.TASK_STATE_RESIZE_REVERTING,
    TaskState.RESIZE_CONFIRMING: states_pb2.TASK_STATE_RESIZE_CONFIRMING,
    TaskState.MIGRATING: states_pb2.TASK_STATE_MIGRATING,
    TaskState.REBUILDING: states_pb2.TASK_STATE_REBUILDING,
    TaskState.REBUILD_SPAWNING: states_pb2.TASK_STATE_REBUILD_SPAWNING,
    TaskState.SHELVING: states_pb2.TASK_STATE_SHELVING,
    TaskState.SHELVING_OFFLOADING: states_pb2.TASK_STATE_SHELVING_OFFLOADING,
    TaskState.UNSHELVING: states_pb2.TASK_STATE_UNSHELVING,
    TaskState.RESCUING: states_pb2.TASK_STATE_RESCUING,
    TaskState.UNRESCUING: states_pb2.TASK_STATE_UNRESCUING,
}
_TASK_BACK: dict[int, str | None] = {int(v): k for k, v in _TASK.items()}
_VM_BACK: dict[int, str] = {int(v): k for k, v in _VM.items()}


def vm_state(value: str) -> states_pb2.VmState:
    return _VM.get(value, states_pb2.VM_STATE_UNSPECIFIED)


def vm_state_name(value: int) -> str:
    return _VM_BACK[value]


def task_state(value: str | None) -> states_pb2.TaskState:
    return _TASK.get(value, states_pb2.TASK_STATE_NONE)


def task_state_name(value: int) -> str | None:
    return _TASK_BACK.get(value)


def power_state(value: int) -> states_pb2.PowerState:
    # Nova's numbers are the enum's numbers
    if PowerState.is_known(value):
        return cast(states_pb2.PowerState, int(value))
    return states_pb2.POWER_STATE_NOSTATE


# ---- times -----------------------------------------------------------------------------

def timestamp(value: datetime | None) -> Timestamp | None:
    if value is None:
        return None
    ts = Timestamp()
    ts.FromDatetime(value if value.tzinfo else value.replace(tzinfo=timezone.utc))
    return ts


def _set_time(message: Any, field: str, value: datetime | None) -> None:
    ts = timestamp(value)
    if ts is not None:
        getattr(message, field).CopyFrom(ts)


# ---- public API records ----------------------------------------------------------------

def fault(f: records.Fault | None, *, show_details: bool = True) -> faults_pb2.Fault | None:
    """A server's fault. As in Nova, callers other than admins see the details of
    a fault only when its code is not 500 (``show_details`` False hides them);
    the rejection counts of a "no valid host" are shown to everyone."""
    if f is None:
        return None
    rejections = [faults_pb2.Rejection(check=str(c), hosts=int(n))
                  for c, n in f.details.get("rejections", [])]
    data = {k: v for k, v in f.details.items() if k != "rejections"}
    visible = show_details or f.code != 500
    out = faults_pb2.Fault(code=f.code, message=f.message,
                           details=explain_fault(f.details) if visible else "", rejections=rejections)
    if data and visible:
        out.data.update(json.loads(json.dumps(data)))  # plain JSON values only
    _set_time(out, "created_at", f.created_at)
    return out


def _hosts(n: int) -> str:
    return "1 host" if n == 1 else f"{n} hosts"


def explain_fault(details: Mapping[str, Any]) -> str:
    """A fault's recorded details (the conductor's and compute agents' facts) in
    sentences for a person; Fault.data carries the same for programs."""
    said: list[str] = []
    rejections = [(str(c), int(n)) for c, n in details.get("rejections", [])]
    if "instance_index" in details:
        index = int(details["instance_index"])
        which = "the request's first server" if index == 0 else f"server {index + 1} of the request"
        said.append(f"No host could take {which}, so none of the request's servers was placed "
                    "(a request is placed all or nothing).")
    if rejections:
        removed = ", ".join(f"{check} removed {n}" for check, n in rejections if n)
        said.append(f"Of {_hosts(sum(n for _, n in rejections))} checked, {removed}; none was left.")
    attempts = [str(a) for a in details.get("attempts", [])]
    if attempts:
        said.append(f"Tried {_hosts(len(attempts))}, and the build failed on each: {'; '.join(attempts)}.")
    missing = "; ".join(str(m) for m in details.get("missing", []))
    if missing:
        said.append(f"{missing[0].upper()}{missing[1:]}.")
    for key in sorted(set(details) - {"instance_index", "rejections", "attempts", "missing"}):
        said.append(f"{key.replace('_', ' ').capitalize()}: {details[key]}.")
    return " ".join(said)


def server(inst: records.Instance, *, show_host: bool,
           show_fault_details: bool | None = None) -> servers_pb2.Server:
    """A server as the API shows it: ``show_host`` for admins (the host, and the
    fault's details whatever its code, unless ``show_fault_details`` says)."""
    out = servers_pb2.Server(
        id=inst.id, name=inst.name, project_id=inst.project_id, user_id=inst.user_id,
        flavor_id=inst.flavor_id, image_id=inst.image_id or "",
        status="DELETED" if inst.deleted_at is not None else inst.status,
        vm_state=vm_state(inst.vm_state if inst.deleted_at is None else VmState.DELETED),
        task_state=task_state(inst.task_state), power_state=power_state(inst.power_state),
        host=(inst.host or "") if show_host else "",
        availability_zone=inst.availability_zone or "", metadata=dict(inst.metadata),
        addresses=[servers_pb2.Address(network=v.network, address=v.address, version=v.version,
                                       mac=v.mac, type="fixed") for v in inst.network_info],
        key_name=inst.key_name or "", config_drive=inst.config_drive,
        locked=inst.locked,
        locked_reason=str(inst.system_metadata.get(SystemMetadata.LOCKED_REASON) or ""))
    _set_time(out, "created_at", inst.created_at)
    _set_time(out, "updated_at", inst.updated_at)
    _set_time(out, "launched_at", inst.launched_at)
    f = fault(inst.fault, show_details=show_host if show_fault_details is None else show_fault_details)
    if f is not None:
        out.fault.CopyFrom(f)
    return out


def migration(m: records.Migration) -> servers_pb2.Migration:
    out = servers_pb2.Migration(
        id=m.id, server_id=m.instance_id, migration_type=m.migration_type, status=m.status,
        source_host=m.source_host, dest_host=m.dest_host or "", old_flavor_id=m.old_flavor_id,
        new_flavor_id=m.new_flavor_id)
    _set_time(out, "created_at", m.created_at)
    _set_time(out, "updated_at", m.updated_at)
    return out


def server_event(inst: records.Instance, when: datetime, *, show_host: bool) -> servers_pb2.ServerEvent:
    out = servers_pb2.ServerEvent(server=server(inst, show_host=show_host))
    _set_time(out, "time", when)
    return out


def instance_action(a: records.InstanceAction, *, show_traceback: bool) -> servers_pb2.InstanceAction:
    """One entry of a server's action log; event tracebacks only for admins."""
    out = servers_pb2.InstanceAction(action=a.action, request_id=a.request_id or "",
                                     user_id=a.user_id or "", project_id=a.project_id or "",
                                     message=a.message or "")
    _set_time(out, "start_time", a.start_time)
    _set_time(out, "finish_time", a.finish_time)
    for e in a.events:
        event = servers_pb2.InstanceActionEvent(
            event=e.event, result=e.result or "",
            traceback=(e.traceback or "") if show_traceback else "")
        _set_time(event, "start_time", e.start_time)
        _set_time(event, "finish_time", e.finish_time)
        out.events.append(event)
    return out


def flavor(f: records.Flavor) -> flavors_pb2.Flavor:
    out = flavors_pb2.Flavor(id=f.id, name=f.name, vcpus=f.vcpus, memory_mb=f.memory_mb,
                             root_gb=f.root_gb, ephemeral_gb=f.ephemeral_gb, swap=f.swap,
                             is_public=f.is_public, extra_specs=dict(f.extra_specs))
    _set_time(out, "created_at", f.created_at)
    return out


def flavor_access(flavor_id: str, project_ids: Iterable[str]) -> flavors_pb2.FlavorAccess:
    return flavors_pb2.FlavorAccess(flavor_id=flavor_id, project_ids=list(project_ids))


def flavor_from_proto(f: flavors_pb2.Flavor) -> records.Flavor:
    return records.Flavor(name=f.name, vcpus=f.vcpus, memory_mb=f.memory_mb, root_gb=f.root_gb,
                          ephemeral_gb=f.ephemeral_gb, swap=f.swap, extra_specs=dict(f.extra_specs),
                          id=f.id, is_public=f.is_public)


def image_from_proto(i: images_pb2.Image) -> records.Image:
    return records.Image(id=i.id, name=i.name, path=i.path, disk_format=i.disk_format or "qcow2",
                         size_bytes=i.size_bytes or None, properties=dict(i.properties),
                         checksum=i.checksum or None)


def image(i: records.Image, *, show_path: bool = True) -> images_pb2.Image:
    """An image; its path (a file on the compute hosts) for admins and services only."""
    out = images_pb2.Image(id=i.id, name=i.name, path=i.path if show_path else "",
                           disk_format=i.disk_format, size_bytes=i.size_bytes or 0,
                           properties={k: str(v) for k, v in i.properties.items()},
                           checksum=i.checksum or "")
    _set_time(out, "created_at", i.created_at)
    return out


def key_pair(k: records.KeyPair) -> keypairs_pb2.Keypair:
    out = keypairs_pb2.Keypair(name=k.name, type=k.type, public_key=k.public_key,
                               fingerprint=k.fingerprint, user_id=k.user_id,
                               private_key=k.private_key or "")
    _set_time(out, "created_at", k.created_at)
    return out


def network(n: records.Network, *, show_bridge: bool) -> networks_pb2.Network:
    out = networks_pb2.Network(id=n.id, name=n.name, cidr=n.cidr, gateway=n.gateway,
                               dhcp_server=n.dhcp_server, bridge=n.bridge if show_bridge else "")
    _set_time(out, "created_at", n.created_at)
    return out


_VIF_FIELDS = ("network_id", "network", "bridge", "mac", "address", "cidr", "gateway", "dhcp_server")


def guest_to_proto(g: records.GuestConfig) -> compute_agent_pb2.GuestConfig:
    return compute_agent_pb2.GuestConfig(
        hostname=g.hostname, vifs=[compute_agent_pb2.Vif(**v.as_dict()) for v in g.vifs],
        config_drive=g.config_drive, user_data=g.user_data or b"", key_name=g.key_name or "",
        key_data=g.key_data or "", admin_pass=g.admin_pass or "", metadata=dict(g.metadata),
        project_id=g.project_id, availability_zone=g.availability_zone,
        launch_index=g.launch_index, kernel_path=g.kernel_path or "",
        ramdisk_path=g.ramdisk_path or "", kernel_args=g.kernel_args or "")


def guest_from_proto(p: compute_agent_pb2.GuestConfig) -> records.GuestConfig:
    return records.GuestConfig(
        hostname=p.hostname or "server",
        vifs=tuple(records.Vif(**{f: getattr(v, f) for f in _VIF_FIELDS}) for v in p.vifs),
        config_drive=p.config_drive, user_data=p.user_data or None, key_name=p.key_name or None,
        key_data=p.key_data or None, admin_pass=p.admin_pass or None, metadata=dict(p.metadata),
        project_id=p.project_id, availability_zone=p.availability_zone,
        launch_index=p.launch_index, kernel_path=p.kernel_path or None,
        ramdisk_path=p.ramdisk_path or None, kernel_args=p.kernel_args or None)


def server_group(g: records.ServerGroup) -> server_groups_pb2.ServerGroup:
    out = server_groups_pb2.ServerGroup(id=g.id, name=g.name, project_id=g.project_id,
                                        policy=g.policy, members=list(g.members))
    if g.max_server_per_host is not None:
        out.max_server_per_host = g.max_server_per_host
    _set_time(out, "created_at", g.created_at)
    return out


def quota(q: records.QuotaSet) -> quotas_pb2.Quota:
    def amounts(values: Mapping[str, int]) -> quotas_pb2.QuotaSet:
        return quotas_pb2.QuotaSet(instances=int(values.get("instances", 0)),
                                   cores=int(values.get("cores", 0)), ram=int(values.get("ram", 0)))
    return quotas_pb2.Quota(project_id=q.project_id, limits=amounts(q.limits),
                            usage=amounts(q.usage))


def host(h: records.Host, service: records.Service | None, availability_zone: str) -> hosts_pb2.Host:
    """A compute host with its service's state and status, and per resource class
    Placement's inventory and usage (capacity = floor((total - reserved) * ratio))."""
    out = hosts_pb2.Host(
        name=h.name, uuid=h.uuid,
        state=hosts_pb2.SERVICE_STATE_UP if service is not None and service.is_up
        else hosts_pb2.SERVICE_STATE_DOWN,
        status=hosts_pb2.SERVICE_STATUS_DISABLED if service is not None and service.disabled
        else hosts_pb2.SERVICE_STATUS_ENABLED,
        disabled_reason=(service.disabled_reason or "") if service is not None and service.disabled
        else "",
        resources=[hosts_pb2.ResourceClassUsage(
            resource_class=rc, total=inv.total, reserved=inv.reserved,
            allocation_ratio=inv.allocation_ratio, capacity=inv.capacity,
            used=int(h.usage.get(rc, 0))) for rc, inv in sorted(h.inventories.items())],
        compute=hosts_pb2.ComputeView(
            vcpus_used=h.vcpus_used, free_ram_mb=h.free_ram_mb, free_disk_mb=h.free_disk_mb,
            num_instances=h.num_instances, num_io_ops=h.num_io_ops,
            failed_builds=h.failed_builds),
        hypervisor_type=h.hypervisor_type or "", hypervisor_version=h.hypervisor_version or 0,
        availability_zone=availability_zone, traits=sorted(h.traits))
    if service is not None:
        _set_time(out, "last_seen_up", service.last_seen_up)
    return out


def aggregate(a: records.Aggregate) -> aggregates_pb2.Aggregate:
    out = aggregates_pb2.Aggregate(id=a.id, name=a.name,
                                   availability_zone=a.metadata.get("availability_zone", ""),
                                   hosts=sorted(a.hosts), metadata=dict(a.metadata))
    _set_time(out, "created_at", a.created_at)
    return out


def availability_zone(name: str, available: bool,
                      services: Iterable[records.Service]) -> aggregates_pb2.AvailabilityZone:
    return aggregates_pb2.AvailabilityZone(name=name, available=available, hosts=[
        aggregates_pb2.ZoneHost(name=s.host, up=s.is_up, enabled=not s.disabled)
        for s in services])


# ---- internal: request specs and selections --------------------------------------------

def request_spec_to_proto(spec: model.RequestSpec, request_id: str = "") -> request_spec_pb2.RequestSpec:
    f = spec.flavor
    out = request_spec_pb2.RequestSpec(
        request_id=request_id, project_id=spec.project_id, user_id=spec.user_id,
        flavor=flavors_pb2.Flavor(name=f.name, vcpus=f.vcpus, memory_mb=f.memory_mb,
                                  root_gb=f.root_gb, ephemeral_gb=f.ephemeral_gb, swap=f.swap,
                                  extra_specs=dict(f.extra_specs)),
        same_host=list(spec.same_host), different_host=list(spec.different_host),
        force_hosts=list(spec.force_hosts), force_nodes=list(spec.force_nodes),
        ignore_hosts=list(spec.ignore_hosts), is_rebuild=spec.is_rebuild)
    if spec.requested_host is not None:
        out.requested_host = spec.requested_host
    if spec.image is not None:
        out.image.CopyFrom(images_pb2.Image(id=spec.image.id or "",
                                            properties=dict(spec.image.properties)))
    if spec.availability_zone is not None:
        out.availability_zone = spec.availability_zone
    g = spec.instance_group
    if g is not None:
        out.instance_group.CopyFrom(request_spec_pb2.InstanceGroup(
            uuid=g.uuid, policy=g.policy, members=list(g.members), hosts=list(g.hosts)))
        if g.max_server_per_host is not None:
            out.instance_group.max_server_per_host = g.max_server_per_host
    return out


def request_spec_from_proto(p: request_spec_pb2.RequestSpec,
                            instance_uuids: Iterable[str]) -> model.RequestSpec:
    f = p.flavor
    group = None
    if p.HasField("instance_group") and p.instance_group.uuid:
        g = p.instance_group
        group = model.InstanceGroup(
            uuid=g.uuid, policy=g.policy,  # type: ignore[arg-type]  # the core validates it
            members=list(g.members), hosts=list(g.hosts),
            max_server_per_host=g.max_server_per_host if g.HasField("max_server_per_host") else None)
    image = None
    if p.HasField("image") and (p.image.id or p.image.properties):
        image = model.Image(p.image.id or None, dict(p.image.properties))
    return model.RequestSpec(
        flavor=model.Flavor(f.name, f.vcpus, f.memory_mb, f.root_gb, f.ephemeral_gb, f.swap,
                            dict(f.extra_specs)),
        instance_uuids=list(instance_uuids), image=image, project_id=p.project_id,
        user_id=p.user_id, instance_group=group, same_host=list(p.same_host),
        different_host=list(p.different_host),
        availability_zone=p.availability_zone if p.HasField("availability_zone") else None,
        force_hosts=list(p.force_hosts), force_nodes=list(p.force_nodes),
        ignore_hosts=list(p.ignore_hosts),
        requested_host=p.requested_host if p.HasField("requested_host") else None,
        is_rebuild=p.is_rebuild)


def selections_to_proto(uuids: Iterable[str],
                        selections: Iterable[list[model.Selection]]) -> scheduler_pb2.SelectDestinationsResponse:
    out = scheduler_pb2.SelectDestinationsResponse()
    for uuid, sels in zip(uuids, selections):
        out.selections.append(scheduler_pb2.InstanceSelection(
            instance_uuid=uuid,
            hosts=[scheduler_pb2.Selection(host=s.host, host_uuid=s.host_uuid,
                                           allocation=dict(s.allocation),
                                           availability_zone=s.availability_zone,
                                           weight=s.weight) for s in sels]))
    return out


def selections_from_proto(p: scheduler_pb2.SelectDestinationsResponse) -> list[list[model.Selection]]:
    return [[model.Selection(host=s.host, host_uuid=s.host_uuid, row=-1,
                             allocation=dict(s.allocation), availability_zone=s.availability_zone,
                             cell="", weight=s.weight) for s in inst.hosts]
            for inst in p.selections]


def metadata_change(values: Mapping[str, str], unset: Iterable[str]) -> dict[str, str | None]:
    """Keys to set and keys to remove as one mapping (None removes, as Nova's
    set_metadata reads a null); a key both set and removed is an error."""
    out: dict[str, str | None] = dict(values)
    for key in unset:
        if key in out:
            raise errors.Invalid("unset", f"{key[:64]!r} is both set and removed")
        out[key] = None
    return out


def allocation(values: Mapping[str, int]) -> dict[str, int]:
    return {str(k): int(v) for k, v in values.items()}


def host_names(values: Iterable[str], field: str = "names") -> list[str]:
    """Host names from a request: at least one, each 1-255 characters."""
    names = list(values)
    if not names:
        raise errors.Invalid(field, "must name at least one host")
    for i, name in enumerate(names):
        if not name or len(name) > 255:
            raise errors.Invalid(f"{field}[{i}]", "must be 1 to 255 characters")
    return names
