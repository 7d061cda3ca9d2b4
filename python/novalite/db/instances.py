"""The instances' queries: an instance's create, reads, state changes and delete,
its faults, and its actions with their events."""

from __future__ import annotations

import base64
import uuid as uuidlib
from collections import defaultdict
from datetime import datetime
from typing import Any, Iterable, Mapping, Sequence, cast

import sqlalchemy as sa
from sqlalchemy.engine import Connection
from sqlalchemy.orm import Session

from novalite import errors
from novalite.db import models as m
from novalite.db.engine import (
    _ACTION_EVENTS, _ACTIONS, _FLAVORS, _INSTANCES, UNSET, _chunks, _matches_bound, _new_uuid, _rowcount, _stmt,
)
from novalite.db.moves import Moves
from novalite.db.quotas import Quotas
from novalite.db.validation import _NAME_MAX, _is_int, _name, _string_map
from novalite.objects.records import (
    MIGRATION_DONE_STATUSES, ActionEvent, EventStep, Fault, Flavor, Instance, InstanceAction,
    InstancePage, MigrationChange, NewAction, NewFault, NewMigration, Vif,
)
from novalite.objects.states import STATUSES, PowerState, TaskState, VmState, states_with_status

# One multi-create may not ask for more instances than this, whatever the quota.
MAX_BATCH = 1000
# Nova's metadata_items quota default.
MAX_METADATA_ITEMS = 128

# An instance row's columns carry the ORM attribute names, so the record builders
# read either kind.
_INSTANCE_ROW = tuple(c.label("metadata_") if c.name == "metadata" else c
                      for c in _INSTANCES.c)


class _NotApplied(Exception):
    """A compare-and-swap failed after the instance's row was written: the whole
    transaction rolls back and the update reports False."""


class Instances(Quotas, Moves):
    """Servers, as the database knows them. A create reserves its project's quota
    and a delete gives it back and releases the allocations, each in the
    instance's own transaction: hence the bases."""

    # --- instances -------------------------------------------------------------------

    def create_instances(
        self, *, project_id: str, user_id: str, name: str, flavor_id: str,
        image_id: str | None = None, min_count: int = 1, max_count: int = 1,
        availability_zone: str | None = None, metadata: Mapping[str, str] | None = None,
        group_id: str | None = None, reservation_id: str | None = None,
        request_id: str | None = None, flavor_visible_to: str | None = None,
        forced_host: str | None = None, forced_node: str | None = None,
        key_name: str | None = None, key_data: str | None = None,
        user_data: str | None = None, config_drive: bool = False,
        requested_networks: Sequence[str] | None = None,
    ) -> list[Instance]:
        """Create a multi-create batch in BUILDING/SCHEDULING, reserving quota in
        the same transaction.

        As Nova does, as many instances as the quota allows are created, between
        min_count and max_count; below min_count it raises QuotaExceeded and writes
        nothing. With more than one, names get "-1", "-2", ... suffixes. A "create"
        instance action is started for each. ``flavor_visible_to``: a project
        (a member's request), for which a private flavor it was given no access to
        is refused as unknown.
        """
        project_id = _name("project_id", project_id)
        user_id = _name("user_id", user_id)
        name = _name("name", name)
        if not _is_int(min_count) or min_count < 1:
            raise errors.Invalid("min_count", "must be an integer >= 1")
        if not _is_int(max_count) or max_count < min_count:
            raise errors.Invalid("max_count", "must be an integer >= min_count")
        if max_count > MAX_BATCH:
            raise errors.Invalid("max_count", f"at most {MAX_BATCH} instances per request")
        if max_count > 1 and len(f"{name}-{max_count}") > _NAME_MAX:
            raise errors.Invalid("name", f"too long for a batch of {max_count}")
        if availability_zone is not None:
            availability_zone = _name("availability_zone", availability_zone)
        if forced_host is not None:
            forced_host = _name("forced_host", forced_host)
        if forced_node is not None:
            forced_node = _name("forced_node", forced_node)
        meta = _string_map("metadata", metadata or {})
        networks = list(requested_networks) if requested_networks is not None else None
        if len(meta) > MAX_METADATA_ITEMS:
            raise errors.Invalid("metadata", f"at most {MAX_METADATA_ITEMS} items")
        reservation = reservation_id or f"r-{uuidlib.uuid4().hex[:8]}"

        def work(s: Session) -> list[Instance]:
            conn = s.connection()
            flavor = conn.execute(_stmt("live flavor", lambda: sa.select(
                _FLAVORS.c.id, _FLAVORS.c.vcpus, _FLAVORS.c.memory_mb, _FLAVORS.c.root_gb,
                _FLAVORS.c.ephemeral_gb, _FLAVORS.c.is_public).where(
                    _FLAVORS.c.id == sa.bindparam("id"), _FLAVORS.c.deleted_at.is_(None))),
                                  {"id": flavor_id}).one_or_none()
            if flavor is None or (flavor_visible_to is not None and not flavor.is_public
                                  and s.get(m.FlavorProject,
                                            (flavor_id, flavor_visible_to)) is None):
                raise errors.Invalid("flavor_id", f"flavor {flavor_id} not found")
            if image_id is not None:
                image = s.get(m.Image, image_id)
                if image is None or image.deleted_at is not None:
                    raise errors.Invalid("image_id", f"image {image_id} not found")
            if group_id is not None:
                group = s.get(m.ServerGroup, group_id)
                if group is None or group.project_id != project_id:
                    raise errors.Invalid("group_id", f"server group {group_id} not found")

            per_instance = {"instances": 1, "cores": flavor.vcpus, "ram": flavor.memory_mb}
            usages = self._lock_usages(s, project_id)
            limits = self._limits(s, project_id)
            count = max_count
            for resource in ("instances", "cores", "ram"):
                limit, in_use, per = limits[resource], usages[resource], per_instance[resource]
                if limit < 0 or per == 0:
                    continue
                room = (limit - in_use) // per
                if room < min_count:
                    raise errors.QuotaExceeded(resource, min_count * per, limit, in_use)
                count = min(count, room)

            now = self._clock()
            self._set_usages(s, project_id, {r: usages[r] + count * per
                                             for r, per in per_instance.items()}, now)
            rows = [dict(
                id=_new_uuid(), name=f"{name}-{i + 1}" if count > 1 else name,
                project_id=project_id, user_id=user_id, flavor_id=flavor.id,
                image_id=image_id, vcpus=flavor.vcpus, memory_mb=flavor.memory_mb,
                root_gb=flavor.root_gb, ephemeral_gb=flavor.ephemeral_gb,
                vm_state=VmState.BUILDING, task_state=TaskState.SCHEDULING,
                power_state=PowerState.NOSTATE, host=None, node=None,
                availability_zone=availability_zone, metadata=dict(meta),
                reservation_id=reservation, launched_at=None, created_at=now,
                updated_at=now, deleted_at=None, attempts=0, group_id=group_id,
                forced_host=forced_host, forced_node=forced_node, key_name=key_name,
                key_data=key_data, user_data=user_data, config_drive=bool(config_drive),
                requested_networks=networks, network_info=None, locked_by=None,
                system_metadata=None)
                for i in range(count)]
            conn.execute(_stmt("insert instance", lambda: sa.insert(_INSTANCES)), rows)
            conn.execute(_stmt("insert action", lambda: sa.insert(_ACTIONS)), [
                {"instance_id": row["id"], "action": "create", "request_id": request_id,
                 "user_id": user_id, "project_id": project_id, "start_time": now,
                 "finish_time": None, "message": None} for row in rows])
            return [_instance_of(row) for row in rows]
        return self._write(work)

    def get_instance(self, instance_id: str, *, project_id: str | None = None,
                     include_deleted: bool = False) -> Instance:
        """An instance with its latest fault. With project_id, another project's
        instance is NotFound too."""
        def work(s: Session) -> Instance:
            def query() -> Any:
                i = _INSTANCES.c
                q = sa.select(*_INSTANCE_ROW).where(i.id == sa.bindparam("id"))
                if project_id is not None:
                    q = q.where(i.project_id == sa.bindparam("project_id"))
                if not include_deleted:
                    q = q.where(i.deleted_at.is_(None))
                return q
            row = s.connection().execute(
                _stmt(f"instance project={project_id is not None} deleted={include_deleted}",
                      query), {"id": instance_id, "project_id": project_id}).one_or_none()
            if row is None:
                raise errors.NotFound(f"instance {instance_id} not found")
            return self._instances_with_faults(s, [row])[0]
        return self._read(work)

    def get_instances(self, instance_ids: Iterable[str], *,
                      project_id: str | None = None) -> dict[str, Instance]:
        """The live ones of these instances (of that project, when given), each with
        its latest fault, read as one snapshot; the missing are simply absent."""
        wanted = sorted(set(instance_ids))

        def query() -> Any:
            i = _INSTANCES.c
            q = sa.select(*_INSTANCE_ROW).where(i.id.in_(sa.bindparam("ids", expanding=True)),
                                                i.deleted_at.is_(None))
            return q if project_id is None else q.where(i.project_id == sa.bindparam("project_id"))

        def work(s: Session) -> dict[str, Instance]:
            conn = s.connection()
            rows = [row for chunk in _chunks(wanted, 500) for row in conn.execute(
                _stmt(f"instances project={project_id is not None}", query),
                {"ids": chunk, "project_id": project_id})]
            return {inst.id: inst for inst in self._instances_with_faults(s, rows)}
        return self._read(work) if wanted else {}

    def list_instances(
        self, *, project_id: str | None = None, status: str | None = None,
        vm_state: str | None = None, name: str | None = None, host: str | None = None,
        reservation_id: str | None = None, include_deleted: bool = False,
        limit: int | None = None, marker: str | None = None,
        task_states: Sequence[str] | None = None,
    ) -> InstancePage:
        """Instances newest first, each with its latest fault.

        Filters: project, API status (e.g. "ACTIVE", "REBOOT"), vm_state, name
        (case-insensitive substring), host, reservation, task_state (one of). Keyset pagination: pass
        the page's ``next_marker`` back as ``marker``; rows created or deleted
        between pages neither repeat nor shift the rest.
        """
        if limit is not None and (not _is_int(limit) or limit < 1):
            raise errors.Invalid("limit", "must be an integer >= 1")
        if status is not None and status not in STATUSES:
            raise errors.Invalid("status", f"unknown status {status!r}")
        after = _decode_marker(marker) if marker is not None else None

        def work(s: Session) -> InstancePage:
            i = _INSTANCES.c
            q = sa.select(*_INSTANCE_ROW).order_by(i.created_at.desc(), i.id.desc())
            if not include_deleted:
                q = q.where(i.deleted_at.is_(None))
            if project_id is not None:
                q = q.where(i.project_id == project_id)
            if status is not None:
                q = q.where(_status_condition(status))
            if vm_state is not None:
                q = q.where(i.vm_state == vm_state)
            if name is not None:
                q = q.where(i.name.icontains(name, autoescape=True))
            if host is not None:
                q = q.where(i.host == host)
            if reservation_id is not None:
                q = q.where(i.reservation_id == reservation_id)
            if task_states is not None:
                q = q.where(i.task_state.in_(list(task_states)))
            if after is not None:
                created_at, last_id = after
                q = q.where(sa.or_(i.created_at < created_at,
                                   sa.and_(i.created_at == created_at, i.id < last_id)))
            if limit is not None:
                q = q.limit(limit + 1)
            rows = list(s.execute(q))
            more = limit is not None and len(rows) > limit
            rows = rows[:limit] if limit is not None else rows
            next_marker = _encode_marker(rows[-1]) if more else None
            return InstancePage(self._instances_with_faults(s, rows), next_marker)
        return self._read(work)

    @staticmethod
    def instance_marker(inst: Instance) -> str:
        """The ``marker`` of a listing that goes on after ``inst``."""
        return _encode_marker(inst)

    def update_instance(
        self, instance_id: str, *, expected_vm_state: Any = UNSET,
        expected_task_state: Any = UNSET, vm_state: Any = UNSET, task_state: Any = UNSET,
        power_state: Any = UNSET, host: Any = UNSET, node: Any = UNSET,
        availability_zone: Any = UNSET, launched_at: Any = UNSET, add_attempt: bool = False,
        fault: NewFault | None = None, finish_action: str | None = None,
        action_message: str | None = None, events: Sequence[EventStep] = (),
        flavor: Flavor | None = None, image_id: Any = UNSET, name: Any = UNSET,
        metadata: Any = UNSET, locked_by: Any = UNSET,
        system_metadata: Mapping[str, Any] | None = None, start_action: NewAction | None = None,
        new_migration: tuple[str, NewMigration] | None = None,
        migration: MigrationChange | None = None, quota_delta: Mapping[str, int] | None = None,
    ) -> bool:
        """Change a live instance's state (and where it runs), compare-and-swap.

        ``expected_vm_state`` / ``expected_task_state``: a value (None included) or
        a collection of values the current state must match. Returns False, having
        changed nothing, when it does not; NotFound when there is no such live
        instance. ``add_attempt`` counts one more build attempt; ``fault`` is
        recorded in the same transaction when the change applies, and so is the end
        of the instance's unfinished actions named ``finish_action`` (e.g. "create",
        with ``action_message`` when it failed), after the steps in ``events`` (an
        action's events, e.g. the create's build on a host, opened or closed).
        Deleting goes through delete_instance, which releases quota.

        What a move changes goes in the same transaction: ``flavor`` (the instance
        takes its id and sizes), ``image_id``, ``name``, ``metadata`` (replaced),
        ``locked_by``, ``system_metadata`` (merged: a key given None is removed),
        ``start_action`` (a new entry of the action log), ``new_migration`` (its id
        and record), ``migration`` (a status change, compare-and-swap too: nothing
        applies unless it does) and ``quota_delta`` (the project's usage changed by
        these amounts: QuotaExceeded, and nothing written, when an increase does
        not fit the project's limits).
        """
        for step in events:
            _name("events.action", step.action, max_len=64)
            _name("events.event", step.event)
            if step.close and step.result is None:
                raise errors.Invalid("events.result", "closing an event needs its result")
        values: dict[str, Any] = {}
        if vm_state is not UNSET:
            if vm_state not in VmState.ALL or vm_state == VmState.DELETED:
                raise errors.Invalid("vm_state", f"cannot set vm_state {vm_state!r}")
            values["vm_state"] = vm_state
        if task_state is not UNSET:
            if task_state is not None and task_state not in TaskState.ALL:
                raise errors.Invalid("task_state", f"unknown task_state {task_state!r}")
            values["task_state"] = task_state
        if power_state is not UNSET:
            if not PowerState.is_known(power_state):
                raise errors.Invalid("power_state", f"unknown power_state {power_state!r}")
            values["power_state"] = power_state
        for field, value in (("host", host), ("node", node),
                             ("availability_zone", availability_zone),
                             ("launched_at", launched_at), ("image_id", image_id)):
            if value is not UNSET:
                values[field] = value
        if name is not UNSET:
            values["name"] = _name("name", name)
        if metadata is not UNSET:
            meta = _string_map("metadata", metadata)
            if len(meta) > MAX_METADATA_ITEMS:
                raise errors.Invalid("metadata", f"at most {MAX_METADATA_ITEMS} items")
            values["metadata"] = meta
        if locked_by is not UNSET:
            if locked_by not in (None, "owner", "admin"):
                raise errors.Invalid("locked_by", "must be 'owner', 'admin' or None")
            values["locked_by"] = locked_by
        if flavor is not None:
            values.update(flavor_id=flavor.id, vcpus=flavor.vcpus, memory_mb=flavor.memory_mb,
                          root_gb=flavor.root_gb, ephemeral_gb=flavor.ephemeral_gb)
        if start_action is not None:
            _name("start_action.action", start_action.action, max_len=64)
        params: dict[str, Any] = {f"v_{k}": v for k, v in values.items()}
        params["b_id"] = instance_id
        shape: list[object] = [tuple(sorted(values)), add_attempt]
        for name, expected in (("vm_state", expected_vm_state), ("task_state", expected_task_state)):
            if expected is UNSET:
                shape.append(None)
                continue
            wanted = ([expected] if expected is None or isinstance(expected, (str, int))
                      else list(expected))
            present = [v for v in wanted if v is not None]
            shape.append((None in wanted, bool(present)))
            params[f"e_{name}"] = present

        def statement() -> Any:
            i = _INSTANCES.c
            stmt = sa.update(_INSTANCES).where(i.id == sa.bindparam("b_id"),
                                               i.deleted_at.is_(None))
            for name, matched in zip(("vm_state", "task_state"), shape[2:]):
                if matched is not None:
                    with_none, with_present = cast(tuple[bool, bool], matched)
                    stmt = stmt.where(_matches_bound(i[name], f"e_{name}", with_none, with_present))
            new: dict[str, Any] = {k: sa.bindparam(f"v_{k}") for k in values}
            if add_attempt:
                new["attempts"] = i.attempts + 1
            return stmt.values(**new, updated_at=sa.bindparam("v_updated_at"))

        def work(s: Session) -> bool:
            conn = s.connection()
            now = self._clock()
            result = conn.execute(_stmt(f"update instance {shape}", statement),
                                  {**params, "v_updated_at": now})
            if _rowcount(result) == 0:
                i = _INSTANCES.c
                if conn.execute(_stmt("live instance id", lambda: sa.select(i.id).where(
                        i.id == sa.bindparam("id"), i.deleted_at.is_(None))),
                        {"id": instance_id}).first() is None:
                    raise errors.NotFound(f"instance {instance_id} not found")
                return False
            if migration is not None and not self._change_migration(
                    conn, instance_id, migration, now):
                raise _NotApplied()
            if new_migration is not None:
                self._insert_migration(conn, instance_id, *new_migration, now)
            if quota_delta or system_metadata is not None or start_action is not None:
                self._instance_extras(s, instance_id, now, system_metadata=system_metadata,
                                      quota_delta=quota_delta, start_action=start_action)
            if fault is not None:
                s.add(_new_fault(instance_id, fault, now))
            if events:
                self._event_steps(conn, instance_id, events, now)
            if finish_action is not None:
                a = _ACTIONS.c
                with_message = action_message is not None
                conn.execute(_stmt(f"finish action message={with_message}", lambda: sa.update(
                    _ACTIONS).where(
                        a.instance_id == sa.bindparam("b_instance_id"),
                        a.action == sa.bindparam("b_action"), a.finish_time.is_(None)).values(
                            finish_time=sa.bindparam("b_now"),
                            **({"message": sa.bindparam("b_message")} if with_message else {}))),
                    {"b_instance_id": instance_id, "b_action": finish_action, "b_now": now,
                     "b_message": action_message})
            return True
        try:
            return self._write(work)
        except _NotApplied:
            return False

    def _instance_extras(self, s: Session, instance_id: str, now: datetime, *,
                         system_metadata: Mapping[str, Any] | None,
                         quota_delta: Mapping[str, int] | None,
                         start_action: NewAction | None) -> None:
        """update_instance's quota change, system metadata merge and new action."""
        i = _INSTANCES.c
        conn = s.connection()
        row = conn.execute(sa.select(i.project_id, i.system_metadata)
                           .where(i.id == instance_id)).one()
        if quota_delta:
            self._change_usages(s, row.project_id, quota_delta, now)
        if system_metadata is not None:
            merged = {k: v for k, v in {**(row.system_metadata or {}), **system_metadata}.items()
                      if v is not None}
            conn.execute(sa.update(_INSTANCES).where(i.id == instance_id)
                         .values(system_metadata=merged))
        if start_action is not None:
            conn.execute(sa.insert(_ACTIONS).values(
                instance_id=instance_id, action=start_action.action,
                request_id=start_action.request_id, user_id=start_action.user_id,
                project_id=start_action.project_id, start_time=now, finish_time=None,
                message=None))

    @staticmethod
    def _event_steps(conn: Connection, instance_id: str, steps: Sequence[EventStep],
                     now: datetime) -> None:
        """update_instance's EventSteps, each on the instance's latest unfinished
        action of its name (nothing when there is none): the closes, then the new
        events, each kind in one statement."""
        a, e = _ACTIONS.c, _ACTION_EVENTS.c
        params = [{"b_instance_id": instance_id, "b_action": step.action, "b_event": step.event,
                   "b_now": now, "b_start": step.start_time or now,
                   "b_finish": now if step.result is not None else None,
                   "b_result": step.result, "b_traceback": step.traceback} for step in steps]
        closing = [p for p, step in zip(params, steps) if step.close]
        adding = [p for p, step in zip(params, steps) if not step.close]

        def open_action() -> Any:
            return (sa.select(a.id).where(a.instance_id == sa.bindparam("b_instance_id"),
                                          a.action == sa.bindparam("b_action"),
                                          a.finish_time.is_(None))
                    .order_by(a.id.desc()).limit(1).scalar_subquery())
        if closing:
            conn.execute(_stmt("close event", lambda: sa.update(_ACTION_EVENTS).where(
                e.action_id == open_action(), e.event == sa.bindparam("b_event"),
                e.finish_time.is_(None)).values(
                    finish_time=sa.bindparam("b_now"), result=sa.bindparam("b_result"),
                    traceback=sa.bindparam("b_traceback"))), closing)
        if not adding:
            return
        conn.execute(_stmt("add event", lambda: sa.insert(_ACTION_EVENTS).from_select(
            ["action_id", "event", "start_time", "finish_time", "result", "traceback"],
            sa.select(open_action().label("action_id"),
                      sa.bindparam("b_event", type_=e.event.type),
                      sa.bindparam("b_start", type_=e.start_time.type),
                      sa.bindparam("b_finish", type_=e.finish_time.type),
                      sa.bindparam("b_result", type_=e.result.type),
                      sa.bindparam("b_traceback", type_=e.traceback.type))
            .where(open_action().is_not(None)))), adding)

    def delete_instance(self, instance_id: str, *, project_id: str | None = None) -> Instance:
        """Soft-delete an instance: DELETED, its quota usage released and its
        allocations removed (bumping those providers' generations), in one
        transaction; a move in progress ends with it (its migration closed, the
        allocation it held on the other host released, the larger of a resize's
        two flavors' usage given back). NotFound if it is already deleted."""
        def work(s: Session) -> Instance:
            q = (sa.select(m.Instance).where(m.Instance.id == instance_id,
                                             m.Instance.deleted_at.is_(None))
                 .with_for_update())
            if project_id is not None:
                q = q.where(m.Instance.project_id == project_id)
            row = s.scalars(q).one_or_none()
            if row is None:
                raise errors.NotFound(f"instance {instance_id} not found")
            now = self._clock()
            cores, ram = self._usage_while_resizing(s, row)
            row.vm_state = VmState.DELETED
            row.task_state = None
            row.power_state = PowerState.NOSTATE
            row.deleted_at = row.updated_at = now
            usages = self._lock_usages(s, row.project_id)
            self._set_usages(s, row.project_id, {
                resource: max(0, usages[resource] - amount)
                for resource, amount in (("instances", 1), ("cores", cores),
                                         ("ram", ram))}, now)
            s.flush()
            self._release(s, instance_id)
            # its fixed IPs are free again (the network info stays on the record)
            s.execute(sa.delete(m.FixedIp).where(m.FixedIp.instance_id == instance_id))
            for migration_id in self._close_migrations(s.connection(), instance_id, now):
                self._release(s, migration_id)
            return self._instances_with_faults(s, [row])[0]
        return self._write(work)

    @staticmethod
    def _usage_while_resizing(s: Session, row: m.Instance) -> tuple[int, int]:
        """The cores and RAM an instance counts against its project's quota: its
        flavor's, or during a resize the larger of the old and new flavors' (an
        upsize reserves the growth when it starts, a downsize gives back the
        difference only when confirmed)."""
        cores, ram = row.vcpus, row.memory_mb
        mg, f = m.Migration, m.Flavor
        for old_id, new_id in s.execute(sa.select(mg.old_flavor_id, mg.new_flavor_id).where(
                mg.instance_id == row.id, mg.migration_type == "resize",
                mg.status.not_in(sorted(MIGRATION_DONE_STATUSES)))):
            for flavor in s.scalars(sa.select(f).where(f.id.in_([old_id, new_id]))):
                cores, ram = max(cores, flavor.vcpus), max(ram, flavor.memory_mb)
        return cores, ram

    def _instances_with_faults(self, s: Session, rows: Sequence[Any]) -> list[Instance]:
        """Records of instance rows (ORM objects or _INSTANCE_ROW rows), each with
        its latest fault."""
        if not rows:
            return []
        latest: dict[str, Any] = {}
        ids = [r.id for r in rows]
        f = m.InstanceFault.__table__.c
        query = _stmt("faults", lambda: sa.select(m.InstanceFault.__table__)
                      .where(f.instance_id.in_(sa.bindparam("ids", expanding=True)))
                      .order_by(f.instance_id, f.created_at, f.id))
        for chunk in _chunks(ids, 500):
            for fault in s.connection().execute(query, {"ids": chunk}):
                latest[fault.instance_id] = fault
        return [_instance(r, _fault(latest[r.id]) if r.id in latest else None) for r in rows]

    # --- faults ----------------------------------------------------------------------

    def add_instance_fault(self, instance_id: str, *, code: int, message: str,
                           details: Mapping[str, Any] | None = None) -> Fault:
        """Record why an instance failed (e.g. the scheduler's rejection counts)."""
        def work(s: Session) -> Fault:
            if s.get(m.Instance, instance_id) is None:
                raise errors.NotFound(f"instance {instance_id} not found")
            row = _new_fault(instance_id, NewFault(code, message, dict(details or {})),
                             self._clock())
            s.add(row)
            s.flush()
            return _fault(row)
        return self._write(work)

    def latest_instance_fault(self, instance_id: str) -> Fault | None:
        def work(s: Session) -> Fault | None:
            f = m.InstanceFault
            row = s.scalars(sa.select(f).where(f.instance_id == instance_id)
                            .order_by(f.created_at.desc(), f.id.desc()).limit(1)).first()
            return _fault(row) if row is not None else None
        return self._read(work)

    # --- instance actions ------------------------------------------------------------

    def start_instance_action(self, instance_id: str, action: str, *,
                              request_id: str | None = None, user_id: str | None = None,
                              project_id: str | None = None,
                              message: str | None = None) -> InstanceAction:
        """Open an action (create, delete, reboot...) on an instance."""
        action = _name("action", action, max_len=64)

        def work(s: Session) -> InstanceAction:
            if s.get(m.Instance, instance_id) is None:
                raise errors.NotFound(f"instance {instance_id} not found")
            row = m.InstanceAction(instance_id=instance_id, action=action,
                                   request_id=request_id, user_id=user_id,
                                   project_id=project_id, start_time=self._clock(),
                                   finish_time=None, message=message)
            s.add(row)
            s.flush()
            return _action(row, [])
        return self._write(work)

    def finish_instance_action(self, action_id: int, *,
                               message: str | None = None) -> InstanceAction:
        def work(s: Session) -> InstanceAction:
            row = s.get(m.InstanceAction, action_id, with_for_update=True)
            if row is None:
                raise errors.NotFound(f"instance action {action_id} not found")
            row.finish_time = self._clock()
            if message is not None:
                row.message = message
            s.flush()
            return _action(row, self._events(s, [action_id])[action_id])
        return self._write(work)

    def start_action_event(self, action_id: int, event: str) -> ActionEvent:
        """Open a step of an action (e.g. compute_build_and_run_instance)."""
        event = _name("event", event)

        def work(s: Session) -> ActionEvent:
            if s.get(m.InstanceAction, action_id) is None:
                raise errors.NotFound(f"instance action {action_id} not found")
            row = m.InstanceActionEvent(action_id=action_id, event=event,
                                        start_time=self._clock(), finish_time=None,
                                        result=None, traceback=None)
            s.add(row)
            s.flush()
            return _event(row)
        return self._write(work)

    def finish_action_event(self, event_id: int, *, result: str,
                            traceback: str | None = None) -> ActionEvent:
        """Close a step with its result ("Success" or "Error", as Nova writes)."""
        def work(s: Session) -> ActionEvent:
            row = s.get(m.InstanceActionEvent, event_id, with_for_update=True)
            if row is None:
                raise errors.NotFound(f"action event {event_id} not found")
            row.finish_time = self._clock()
            row.result = result
            row.traceback = traceback
            s.flush()
            return _event(row)
        return self._write(work)

    def list_instance_actions(self, instance_id: str) -> list[InstanceAction]:
        """An instance's actions, oldest first, each with its events."""
        def work(s: Session) -> list[InstanceAction]:
            a = m.InstanceAction
            rows = list(s.scalars(sa.select(a).where(a.instance_id == instance_id)
                                  .order_by(a.start_time, a.id)))
            events = self._events(s, [r.id for r in rows])
            return [_action(r, events[r.id]) for r in rows]
        return self._read(work)

    @staticmethod
    def _events(s: Session, action_ids: list[int]) -> dict[int, list[ActionEvent]]:
        out: dict[int, list[ActionEvent]] = defaultdict(list)
        e = m.InstanceActionEvent
        for chunk in _chunks(action_ids, 500):
            for row in s.scalars(sa.select(e).where(e.action_id.in_(chunk))
                                 .order_by(e.start_time, e.id)):
                out[row.action_id].append(_event(row))
        return out


# --- queries --------------------------------------------------------------------------

def _status_condition(status: str) -> Any:
    i = _INSTANCES.c
    conditions = []
    for vm_state, task_states, include in states_with_status(status):
        if include:
            conditions.append(sa.and_(i.vm_state == vm_state, i.task_state.in_(task_states)))
        elif task_states:
            conditions.append(sa.and_(i.vm_state == vm_state, sa.or_(
                i.task_state.is_(None), i.task_state.not_in(task_states))))
        else:
            conditions.append(i.vm_state == vm_state)
    return sa.or_(*conditions) if conditions else sa.false()


def _encode_marker(row: Any) -> str:
    raw = f"{row.created_at.isoformat()}|{row.id}".encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _decode_marker(marker: str) -> tuple[datetime, str]:
    try:
        raw = base64.urlsafe_b64decode(marker + "=" * (-len(marker) % 4)).decode()
        created, last_id = raw.split("|", 1)
        created_at = datetime.fromisoformat(created)
    except (ValueError, UnicodeDecodeError):
        raise errors.Invalid("marker", "not a marker this service returned") from None
    if created_at.tzinfo is None:
        raise errors.Invalid("marker", "not a marker this service returned")
    return created_at, last_id


# --- rows to records ------------------------------------------------------------------

def _instance(r: m.Instance, fault: Fault | None = None) -> Instance:
    return Instance(
        id=r.id, name=r.name, project_id=r.project_id, user_id=r.user_id,
        flavor_id=r.flavor_id, image_id=r.image_id, vcpus=r.vcpus, memory_mb=r.memory_mb,
        root_gb=r.root_gb, ephemeral_gb=r.ephemeral_gb, vm_state=r.vm_state,
        task_state=r.task_state, power_state=r.power_state, host=r.host, node=r.node,
        availability_zone=r.availability_zone, metadata=dict(r.metadata_),
        reservation_id=r.reservation_id, launched_at=r.launched_at,
        created_at=r.created_at, updated_at=r.updated_at, deleted_at=r.deleted_at,
        attempts=r.attempts, group_id=r.group_id, forced_host=r.forced_host,
        forced_node=r.forced_node, fault=fault, key_name=r.key_name, key_data=r.key_data,
        user_data=r.user_data, config_drive=bool(r.config_drive),
        requested_networks=(tuple(r.requested_networks) if r.requested_networks is not None
                            else None),
        network_info=vifs(r.network_info), locked_by=r.locked_by,
        system_metadata=dict(r.system_metadata or {}))


def vifs(network_info: Sequence[Mapping[str, str]] | None) -> tuple[Vif, ...]:
    """The NICs of a stored network info (Nova's cache: a JSON list)."""
    return tuple(Vif(**dict(v)) for v in network_info or ())


def _instance_of(row: Mapping[str, Any]) -> Instance:
    """The record of an instance row just inserted (a dict of its columns)."""
    return _instance(cast(m.Instance, _Row(row)))


class _Row:
    """A dict's keys as attributes, the ORM's names (metadata_), for _instance."""

    def __init__(self, row: Mapping[str, Any]) -> None:
        self.__dict__.update(row)
        self.metadata_ = row["metadata"]


def _new_fault(instance_id: str, fault: NewFault, now: datetime) -> m.InstanceFault:
    return m.InstanceFault(instance_id=instance_id, code=fault.code, message=fault.message,
                           details=dict(fault.details), created_at=now)


def _fault(r: m.InstanceFault) -> Fault:
    return Fault(id=r.id, instance_id=r.instance_id, code=r.code, message=r.message,
                 details=dict(r.details), created_at=r.created_at)


def _action(r: m.InstanceAction, events: list[ActionEvent]) -> InstanceAction:
    return InstanceAction(id=r.id, instance_id=r.instance_id, action=r.action,
                          request_id=r.request_id, user_id=r.user_id,
                          project_id=r.project_id, start_time=r.start_time,
                          finish_time=r.finish_time, message=r.message,
                          events=tuple(events))


def _event(r: m.InstanceActionEvent) -> ActionEvent:
    return ActionEvent(id=r.id, action_id=r.action_id, event=r.event,
                       start_time=r.start_time, finish_time=r.finish_time,
                       result=r.result, traceback=r.traceback)
