"""The conductor's domain logic (no grpc here): it turns accepted server requests
into running servers. It builds the request spec, asks the scheduler for
destinations (a chosen host and alternates per server, the chosen one already
claimed), asks the chosen host's compute agent to build, and on a failed build
releases that host's claim and tries the next alternate, as Nova's conductor does.
When no host is left the server goes to ERROR with a fault saying why."""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any, Mapping, Sequence

from novalite import errors
from novalite.db.database import UNSET, Database
from novalite.objects import lifecycle, records
from novalite.objects.states import TaskState, VmState
from novalite.conductor import guests
from novalite.conductor.moves import ComputeAPI, MoveTasks, SchedulerAPI, next_alternate
from novalite.placement import Image, InstanceGroup, RequestSpec, Selection

LOG = logging.getLogger(__name__)




@dataclass(frozen=True)
class BuildRequest:
    """What the API hands over: the servers it created (BUILDING/SCHEDULING, quota
    already reserved) and the hints the user gave."""

    server_ids: Sequence[str]
    availability_zone: str | None = None
    group_id: str | None = None
    same_host: Sequence[str] = ()
    different_host: Sequence[str] = ()
    request_id: str | None = None
    # the servers' root password, for their config drives (never stored)
    admin_pass: str | None = None


@dataclass(frozen=True)
class _Boot:
    """What every server of one request boots from: the image, and the kernel and
    ramdisk an image of Glance's AMI layout names (kernel_id, ramdisk_id)."""

    image: records.Image | None
    kernel: records.Image | None
    ramdisk: records.Image | None
    networks: bool  # whether the cloud has networks at all


def _now() -> datetime:
    return datetime.now(timezone.utc)


# The create action's events (Nova's names: its conductor's and compute manager's
# methods).
_SCHEDULE_EVENT = "conductor_schedule_and_build_instances"
_BUILD_EVENT = "compute__do_build_and_run_instance"
_BUILD_STARTS = records.EventStep("create", _BUILD_EVENT)
_BUILD_SUCCEEDED = records.EventStep("create", _BUILD_EVENT, result="Success", close=True)


def _scheduled(started: datetime, error: str | None) -> records.EventStep:
    """The scheduling step, from when the conductor took the request until now."""
    return records.EventStep("create", _SCHEDULE_EVENT, result="Error" if error else "Success",
                             traceback=error, start_time=started)


def _build_failed(reason: str) -> records.EventStep:
    return records.EventStep("create", _BUILD_EVENT, result="Error", traceback=reason, close=True)


class ConductorManager:
    """``moves``: the options of the moves (MoveTasks' keyword arguments)."""

    def __init__(self, db: Database, scheduler: SchedulerAPI, compute: ComputeAPI,
                 **moves: Any) -> None:
        self.db = db
        self.scheduler = scheduler
        self.compute = compute
        self.moves = MoveTasks(db, scheduler, compute, **moves)
        self._tasks: set[asyncio.Task[None]] = set()

    # ---- building ------------------------------------------------------------------

    def accept(self, request: BuildRequest) -> None:
        """Start building in the background; the caller may acknowledge at once (the
        servers are already durable in BUILDING)."""
        task = asyncio.get_running_loop().create_task(self.build(request))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def drain(self, timeout: float | None = None) -> None:
        """Wait for the builds in flight (graceful shutdown)."""
        if self._tasks:
            await asyncio.wait(list(self._tasks), timeout=timeout)

    def _request_spec(self, request: BuildRequest, instances: list[records.Instance],
                      flavor: records.Flavor, image: records.Image | None) -> RequestSpec:
        first = instances[0]
        group = None
        if request.group_id:
            g = self.db.get_server_group(request.group_id)
            group = InstanceGroup(uuid=g.id, policy=g.policy,  # type: ignore[arg-type]
                                  members=list(g.members), hosts=sorted(g.hosts),
                                  max_server_per_host=g.max_server_per_host)
        return RequestSpec(
            flavor=flavor,
            instance_uuids=[i.id for i in instances],
            image=Image(image.id, {k: str(v) for k, v in image.properties.items()}) if image else None,
            project_id=first.project_id, user_id=first.user_id, instance_group=group,
            same_host=list(request.same_host), different_host=list(request.different_host),
            availability_zone=request.availability_zone,
            force_hosts=[first.forced_host] if first.forced_host else [],
            force_nodes=[first.forced_node] if first.forced_node else [],
        )

    async def build(self, request: BuildRequest) -> None:
        # every database call of a build runs in a worker thread: the event loop
        # stays free, and concurrent builds' writes commit together
        started = _now()
        prepared = await asyncio.to_thread(self._prepare, request)
        if prepared is None:
            return
        instances, flavor, boot, spec = prepared
        image = boot.image
        try:
            selections = await self.scheduler.select_destinations(spec)
        except errors.NoValidHost as e:
            counts = ", ".join(f"{n} {c}" for c, n in e.rejections if n) or "no hosts"
            message = f"No valid host was found. {counts}" + "".join(f"; {m}" for m in e.missing)
            details: dict[str, Any] = {"rejections": [list(r) for r in e.rejections],
                                       "instance_index": e.instance_index}
            if e.missing:
                details["missing"] = e.missing
            for inst in instances:
                await self._error(inst.id, message, details, code=500,
                                  events=[_scheduled(started, message)])
            return
        except Exception as e:  # noqa: BLE001 - any scheduler failure becomes the fault
            LOG.exception("scheduling failed for %s", request.server_ids)
            for inst in instances:
                await self._error(inst.id, f"Scheduling failed: {e}", {}, code=500,
                                  events=[_scheduled(started, f"Scheduling failed: {e}")])
            return
        await asyncio.gather(*(self._build_one(inst, sels, flavor, boot, started, index,
                                               request.admin_pass)
                               for index, (inst, sels) in enumerate(zip(instances, selections))))

    async def _guest(self, inst: records.Instance, boot: _Boot, index: int,
                     admin_pass: str | None) -> records.GuestConfig:
        """What the guest is given (conductor/guests.py): fixed IPs on its networks
        handed out here, once (Nova's task NETWORKING)."""
        vifs: tuple[records.Vif, ...] = ()
        if boot.networks and inst.requested_networks != ():
            vifs = await asyncio.to_thread(self.db.allocate_fixed_ips, inst.id)
        return guests.guest_config(inst, boot.image, boot.kernel, boot.ramdisk, vifs,
                                   launch_index=index, admin_pass=admin_pass)

    async def _build_one(self, inst: records.Instance, selections: list[Selection],
                         flavor: records.Flavor, boot: _Boot, started: datetime,
                         index: int = 0, admin_pass: str | None = None) -> None:
        image = boot.image
        try:
            guest = await self._guest(inst, boot, index, admin_pass)
        except errors.NotFound:  # deleted meanwhile
            await self.scheduler.release(inst.id)
            return
        except errors.Conflict as e:  # a network is full
            await self.scheduler.release(inst.id)
            await self._error(inst.id, f"Networking failed: {e}", {}, code=500,
                              events=[_scheduled(started, f"Networking failed: {e}")])
            return
        alternates = list(selections[1:])
        current: Selection | None = selections[0]
        reasons: list[str] = []
        # the create action's events, written with the state changes (Nova's names):
        # the scheduling, then one build per host tried
        steps = [_scheduled(started, None), _BUILD_STARTS]
        while current is not None:
            host = current
            applied = await asyncio.to_thread(self._try, lambda: self.db.update_instance(
                inst.id, expected_vm_state=VmState.BUILDING, host=host.host,
                node=host.host, task_state=TaskState.SPAWNING,
                availability_zone=host.availability_zone, add_attempt=True, events=steps))
            if not applied:
                # deleted (or otherwise moved on) while we were scheduling
                await self.scheduler.release(inst.id)
                return
            try:
                power = await self.compute.build(current.host, inst, flavor, image,
                                                 dict(current.allocation), guest)
            except errors.BuildFailed as e:
                reasons.append(f"{current.host}: {e}")
                LOG.info("build of %s failed on %s: %s", inst.id, current.host, e)
                await self.scheduler.release(inst.id)
                current = await next_alternate(self.scheduler, inst.id, alternates)
                steps = [_build_failed(f"{host.host}: {e}"), _BUILD_STARTS]
                continue
            done = await asyncio.to_thread(self._try, lambda: self.db.update_instance(
                inst.id, expected_vm_state=VmState.BUILDING, vm_state=VmState.ACTIVE,
                task_state=None, power_state=power, launched_at=_now(),
                finish_action="create", events=[_BUILD_SUCCEEDED]))
            if not done:
                # deleted while building: the guest must not outlive its server
                await self._quietly(self.compute.delete(current.host, inst.id))
                await self.scheduler.release(inst.id)
                await asyncio.to_thread(self._finish_create, inst.id, None)
            return
        # on no host any more, as Nova's compute leaves it (_nil_out_instance_obj_host_
        # and_node): a host's late group check must not count a server that is not there
        await self._error(inst.id,
                    "Exceeded maximum number of retries. Exhausted all hosts available "
                    f"for retrying build failures for instance {inst.id}.",
                    {"attempts": reasons}, code=500, events=steps[:1], host=None)

    def _live_instances(self, ids: Sequence[str]) -> list[records.Instance]:
        """The servers of a build that still exist (one may be deleted before the
        build gets to it: the rest are built)."""
        found = self.db.get_instances(ids)
        return [found[i] for i in ids if i in found]

    def _prepare(self, request: BuildRequest) -> tuple[
            list[records.Instance], records.Flavor, _Boot, RequestSpec] | None:
        """What a build needs from the database (one worker thread): the servers
        still to build, their flavor and image (shared by one request's servers) and
        the request spec; None when every server is gone."""
        instances = self._live_instances(request.server_ids)
        if not instances:
            return None
        flavor, image = self._flavor_and_image(instances[0])
        kernel, ramdisk = guests.boot_files(self.db, image)
        boot = _Boot(image, kernel, ramdisk, networks=bool(self.db.list_networks()))
        return instances, flavor, boot, self._request_spec(request, instances, flavor, image)

    def _flavor_and_image(self, inst: records.Instance) -> tuple[records.Flavor, records.Image | None]:
        flavor = self.db.get_flavor(inst.flavor_id, include_deleted=True)
        image = self.db.get_image(inst.image_id, include_deleted=True) if inst.image_id else None
        return flavor, image

    async def _error(self, instance_id: str, message: str, details: Mapping[str, Any], *,
                     code: int, events: Sequence[records.EventStep] = (),
                     host: Any = UNSET) -> None:
        """ERROR with a fault; ``host`` None takes the server off its host."""
        await asyncio.to_thread(self._try, lambda: self.db.update_instance(
            instance_id, vm_state=VmState.ERROR, task_state=None, host=host, node=host,
            fault=records.NewFault(code=code, message=message, details=dict(details)),
            finish_action="create", action_message="Error", events=events))

    def _finish_create(self, instance_id: str, message: str | None) -> None:
        try:
            for action in self.db.list_instance_actions(instance_id):
                if action.action == "create" and action.finish_time is None:
                    self.db.finish_instance_action(action.id, message=message)
        except errors.NotFound:
            pass

    @staticmethod
    def _try(fn: Any) -> bool:
        try:
            return bool(fn())
        except errors.NotFound:
            return False

    @staticmethod
    async def _quietly(aw: Any) -> None:
        try:
            await aw
        except Exception:  # noqa: BLE001 - best effort cleanup, logged
            LOG.exception("cleanup failed")

    # ---- lifecycle actions ---------------------------------------------------------

    def run(self, coro: Any) -> None:
        """Run an accepted action in the background (the API already acknowledged)."""
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def server_action(self, instance_id: str, action: str, request_id: str | None = None) -> None:
        """Carry out an action the API accepted (it set the task_state): on the
        server's host, then commit the final state, as Nova's compute manager does.
        A failure puts the task_state back and records a fault on the action.

        Either is written only while the server still has this action's task_state
        (or none: an earlier action with the same task finished first), as Nova's
        instance.save(expected_task_state=...): a hard reboot that took over
        meanwhile (the API allows one during a soft reboot, pause, suspend...) or a
        delete keeps its own task, and the action it superseded ends in Error
        (Nova's UnexpectedTaskStateError) without touching the server."""
        if action in lifecycle.MOVES:
            await self.moves.run(instance_id, action)
            return
        try:
            inst = await asyncio.to_thread(self.db.get_instance, instance_id)
        except errors.NotFound:
            return

        def start() -> tuple[records.InstanceAction | None, records.ActionEvent | None]:
            record = self._action_record(instance_id, action, request_id)
            return record, (self.db.start_action_event(record.id, row.event) if record else None)
        row = lifecycle.ACTIONS[action]
        record, event = await asyncio.to_thread(start)
        final = row.final_vm_state
        expected = (row.task_state, None)
        try:
            if not inst.host:
                raise errors.InvalidState(f"server {instance_id} is on no host")
            power = await self.compute.action(inst.host, instance_id, action)
        except Exception as e:  # noqa: BLE001 - reported on the action and as a fault
            LOG.warning("%s of %s failed: %s", action, instance_id, e)
            error = e

            def failed() -> None:
                self._try(lambda: self.db.update_instance(
                    instance_id, expected_task_state=expected, task_state=None,
                    fault=records.NewFault(500, f"{action} failed: {error}")))
                self._finish_action(record, event, str(error))
            await asyncio.to_thread(failed)
            return

        def done() -> None:
            if not self._try(lambda: self.db.update_instance(
                    instance_id, expected_task_state=expected, vm_state=final, task_state=None,
                    power_state=power)):
                try:
                    now = self.db.get_instance(instance_id).task_state
                except errors.NotFound:
                    now = TaskState.DELETING
                LOG.info("%s of %s done, but its task is now %s: leaving the state to that one",
                         action, instance_id, now)
                self._finish_action(record, event, f"UnexpectedTaskStateError: expected "
                                                   f"task_state {expected[0]}, found {now}")
                return
            self._finish_action(record, event, None)
        await asyncio.to_thread(done)

    def _finish_action(self, record: records.InstanceAction | None,
                       event: records.ActionEvent | None, error: str | None) -> None:
        """Close an action and its compute event: Success, or Error with the reason
        in the event's traceback (the action's message is "Error", as Nova's)."""
        if event is not None:
            self.db.finish_action_event(event.id, result="Error" if error else "Success",
                                        traceback=error)
        if record is not None:
            self.db.finish_instance_action(record.id, message="Error" if error else None)

    def _action_record(self, instance_id: str, action: str, request_id: str | None) -> records.InstanceAction | None:
        """The instance action the API started for this request (or the latest
        unfinished one of that kind)."""
        try:
            actions = self.db.list_instance_actions(instance_id)
        except errors.NotFound:
            return None
        for a in actions:
            if a.finish_time is not None:
                continue
            if request_id and a.request_id == request_id:
                return a
            if not request_id and a.action == action.split("_")[0]:
                return a
        return None

    async def resume_interrupted(self) -> None:
        """At start: builds a previous conductor accepted but did not finish. Those
        not yet placed are scheduled again (their group and zone are on record; the
        same/different-host hints are not); those caught mid-build go to ERROR."""
        page = self.db.list_instances(vm_state=VmState.BUILDING, limit=1000)
        pending: dict[str, list[records.Instance]] = {}
        for inst in page.instances:
            if inst.host is None and inst.task_state == TaskState.SCHEDULING:
                pending.setdefault(inst.reservation_id, []).append(inst)
            elif inst.host is not None:
                await self._error(inst.id, "Build interrupted by a conductor restart", {}, code=500,
                                  events=[_build_failed("Build interrupted by a conductor restart")])
        for batch in pending.values():
            first = batch[0]
            self.accept(BuildRequest(server_ids=[i.id for i in batch], availability_zone=first.availability_zone,
                                     group_id=first.group_id))
        await self.moves.resume_all()

    # ---- deleting ------------------------------------------------------------------

    async def delete(self, instance_id: str) -> None:
        """Delete a server: the guest on its host (and, during a move, what the
        move left on the other host), then the record (which releases quota and
        allocations, the move's too), then the scheduler's copy of the claims."""
        try:
            inst = await asyncio.to_thread(self.db.get_instance, instance_id)
        except errors.NotFound:
            return
        await asyncio.to_thread(self._try, lambda: self.db.update_instance(
            instance_id, task_state=TaskState.DELETING))
        moves = await asyncio.to_thread(self.db.list_migrations, instance_id=instance_id,
                                        open_only=True)
        steps = [self.compute.delete(inst.host, instance_id)] if inst.host else []
        for m in moves:
            if m.dest_host and m.dest_host != inst.host:
                steps.append(self.compute.delete(m.dest_host, instance_id))
            if m.migration_type != "evacuation":
                steps.append(self.compute.confirm_move(m.source_host, instance_id, m.id))
        for step in steps:
            try:
                await step
            except Exception:  # noqa: BLE001 - an unreachable host must not keep the record
                LOG.exception("deleting %s: a host's part failed; removing the record anyway",
                              instance_id)
        await asyncio.to_thread(self._delete_record, instance_id)
        await self.scheduler.release(instance_id)
        for m in moves:
            await self.scheduler.release(m.id)

    def _delete_record(self, instance_id: str) -> None:
        record = self._action_record(instance_id, "delete", None)
        if record is not None:
            self.db.finish_instance_action(record.id)
        try:
            self.db.delete_instance(instance_id)
        except errors.NotFound:
            pass


__all__ = ["BuildRequest", "ComputeAPI", "ConductorManager", "SchedulerAPI"]
