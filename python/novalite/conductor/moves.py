"""The moves (no grpc here): the conductor's task for each row of the lifecycle
table that it drives itself (objects/lifecycle.py MOVES): resize and cold
migration with their confirm and revert, live migration, evacuation, rebuild,
shelve, shelve offload and unshelve.

Each task is a sequence of steps: a call to a compute agent or to the scheduler,
then a commit of where the move has got to (the server's task_state and, for the
moves between hosts, its migration's status, in one transaction). A step repeated
finds its own work done (the agents' and the scheduler's steps are idempotent), so
a conductor that restarts, or that finds a move nobody drives (an API that died
between its commit and its call), takes each one up where the database says it
stopped (``resume``). A step that cannot be done undoes the move: the server back
on its source as it was, or in ERROR with a fault when not even that works. An
agent that cannot be reached is waited for (up to ``retry_timeout`` seconds: one
being restarted comes back), not given up on at once.

The allocations, as Nova holds them: while a move between hosts is open its
migration (the id is the consumer) holds what the server held on the source and
the server holds the destination's, both claimed in one transaction by the
scheduler; a confirm releases the migration's, a revert or a rollback gives it
back to the server (releasing the destination's), an evacuation's is released by
its source host once that is back. A shelved-offloaded server holds nothing.

Each step that defines the guest anew on a host (a move's finish, the build of
an evacuation, a rebuild or an unshelve) sends what a real guest is given
(conductor/guests.py, as a build does): the server's own fixed IPs (a move hands
out none), its config drive's metadata, the kernel of the image it boots from.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from datetime import datetime, timedelta, timezone
from typing import Any, Awaitable, Callable, Mapping, Protocol, TypeVar

from novalite import errors
from novalite.conductor import guests
from novalite.db.database import Database
from novalite.objects import lifecycle, records
from novalite.objects.records import EventStep, MigrationChange, NewFault
from novalite.objects.states import PowerState, TaskState, VmState
from novalite.placement import Image, InstanceGroup, RequestSpec, Selection

LOG = logging.getLogger(__name__)

T = TypeVar("T")

SHELVED_AT = lifecycle.SystemMetadata.SHELVED_AT
SHELVED_HOST = lifecycle.SystemMetadata.SHELVED_HOST
SHELVED_IMAGE_ID = lifecycle.SystemMetadata.SHELVED_IMAGE_ID
ORIG_IMAGE = lifecycle.SystemMetadata.ORIG_IMAGE_REF
UNSHELVE_HOST = lifecycle.SystemMetadata.UNSHELVE_HOST
MOVE_SOURCE = lifecycle.SystemMetadata.MOVE_SOURCE

# The task states each move runs under (the conductor picks them up at start).
MOVE_TASK_STATES = frozenset({
    TaskState.RESIZE_PREP, TaskState.RESIZE_MIGRATING, TaskState.RESIZE_MIGRATED,
    TaskState.RESIZE_FINISH, TaskState.RESIZE_CONFIRMING, TaskState.RESIZE_REVERTING,
    TaskState.MIGRATING, TaskState.REBUILDING, TaskState.REBUILD_SPAWNING, TaskState.SHELVING,
    TaskState.SHELVING_OFFLOADING, TaskState.UNSHELVING,
})


class SchedulerAPI(Protocol):
    async def select_destinations(self, spec: RequestSpec, *,
                                  migration: str | None = None) -> list[list[Selection]]: ...
    async def release(self, instance_uuid: str) -> None: ...
    async def claim_alternate(self, instance_uuid: str, host: str,
                              allocation: Mapping[str, int]) -> bool: ...
    async def move_allocation(self, source: str, target: str) -> None: ...
    async def check_rebuild(self, spec: RequestSpec) -> None: ...


class ComputeAPI(Protocol):
    async def build(self, host: str, instance: records.Instance, flavor: records.Flavor,
                    image: records.Image | None, allocation: Mapping[str, int],
                    guest: records.GuestConfig | None = None) -> int:
        """Build and start; returns the power state. Raises BuildFailed."""
        ...
    async def delete(self, host: str, instance_id: str) -> None: ...
    async def action(self, host: str, instance_id: str, action: str) -> int: ...
    async def prepare_move(self, host: str, instance_id: str, flavor: records.Flavor,
                           allocation: Mapping[str, int], migration_id: str) -> None: ...
    async def migrate_out(self, host: str, instance_id: str, migration_id: str, *,
                          live: bool) -> str: ...
    async def finish_move(self, host: str, instance: records.Instance, flavor: records.Flavor,
                          image: records.Image | None, source: str, *, power_on: bool,
                          guest: records.GuestConfig | None = None) -> int: ...
    async def revert_move(self, host: str, instance_id: str, migration_id: str, *,
                          power_on: bool) -> int: ...
    async def confirm_move(self, host: str, instance_id: str, migration_id: str) -> None: ...
    async def rebuild(self, host: str, instance: records.Instance, flavor: records.Flavor,
                      image: records.Image | None, allocation: Mapping[str, int], *,
                      power_on: bool, guest: records.GuestConfig | None = None) -> int: ...
    async def shelve(self, host: str, instance_id: str) -> tuple[int, str | None]: ...


class _PatientScheduler:
    """The scheduler as a move calls it: a scheduler that cannot be reached (being
    restarted) is waited for, up to ``timeout`` seconds, as an agent is."""

    def __init__(self, scheduler: SchedulerAPI, timeout: float) -> None:
        self._scheduler = scheduler
        self._timeout = timeout

    async def _patiently(self, call: Callable[[], Awaitable[T]]) -> T:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self._timeout
        while True:
            try:
                return await call()
            except errors.Unavailable:
                if loop.time() >= deadline:
                    raise
                await asyncio.sleep(0.5)

    async def select_destinations(self, spec: RequestSpec, *,
                                  migration: str | None = None) -> list[list[Selection]]:
        return await self._patiently(lambda: self._scheduler.select_destinations(
            spec, migration=migration))

    async def release(self, instance_uuid: str) -> None:
        await self._patiently(lambda: self._scheduler.release(instance_uuid))

    async def claim_alternate(self, instance_uuid: str, host: str,
                              allocation: Mapping[str, int]) -> bool:
        return await self._patiently(lambda: self._scheduler.claim_alternate(
            instance_uuid, host, allocation))

    async def move_allocation(self, source: str, target: str) -> None:
        await self._patiently(lambda: self._scheduler.move_allocation(source, target))

    async def check_rebuild(self, spec: RequestSpec) -> None:
        await self._patiently(lambda: self._scheduler.check_rebuild(spec))


class _Gone(Exception):
    """The server was deleted, or another action took it over: the move stops."""


class _Failed(Exception):
    """A step of the move could not be done; the message says why."""


def _now() -> datetime:
    return datetime.now(timezone.utc)


class MoveTasks:
    """The conductor's moves. ``retry_timeout``: seconds an unreachable agent is
    waited for before the move is undone (or the server put in ERROR)."""

    def __init__(self, db: Database, scheduler: SchedulerAPI, compute: ComputeAPI, *,
                 allow_resize_to_same_host: bool = False, shelved_offload_time: int = 0,
                 resize_confirm_window: int = 0, retry_timeout: float = 60.0) -> None:
        self.db = db
        self.scheduler: SchedulerAPI = _PatientScheduler(scheduler, retry_timeout)
        self.compute = compute
        self.allow_resize_to_same_host = allow_resize_to_same_host
        self.shelved_offload_time = shelved_offload_time
        self.resize_confirm_window = resize_confirm_window
        self.retry_timeout = retry_timeout
        self._running: set[str] = set()  # servers whose move this conductor drives now

    # ---- entry points --------------------------------------------------------------

    async def run(self, instance_id: str, action: str) -> None:
        """Carry out (or take up again) a move the API accepted: its task_state,
        its migration and its action log entry are committed."""
        if action not in lifecycle.MOVES:
            raise errors.Invalid("action", f"{action!r} is not a move")
        if instance_id in self._running:
            return
        self._running.add(instance_id)
        try:
            inst = await self._get(instance_id)
            await getattr(self, f"_{action}")(inst)
        except (_Gone, errors.NotFound):
            LOG.info("%s of %s stopped: the server was deleted or taken over", action, instance_id)
        except Exception:  # noqa: BLE001 - logged; the next resume takes it up again
            LOG.exception("%s of %s failed unexpectedly", action, instance_id)
        finally:
            self._running.discard(instance_id)

    def action_of(self, inst: records.Instance, migration: records.Migration | None) -> str | None:
        """The move a server in a move's task state is in, to take it up again."""
        task = inst.task_state
        rebuild = ("evacuate" if migration is not None and migration.migration_type == "evacuation"
                   else "rebuild")
        if task in (TaskState.RESIZE_PREP, TaskState.RESIZE_MIGRATING, TaskState.RESIZE_MIGRATED,
                    TaskState.RESIZE_FINISH):
            return "resize" if migration is not None and migration.migration_type == "resize" \
                else "migrate"
        return {TaskState.RESIZE_CONFIRMING: "confirm_resize",
                TaskState.RESIZE_REVERTING: "revert_resize",
                TaskState.MIGRATING: "live_migrate",
                TaskState.REBUILDING: rebuild,
                TaskState.REBUILD_SPAWNING: rebuild,
                TaskState.SHELVING: "shelve",
                TaskState.SHELVING_OFFLOADING: "shelve_offload",
                TaskState.UNSHELVING: "unshelve"}.get(task or "")

    async def resume_all(self, *, older_than: float = 0.0) -> None:
        """Take up every move nobody drives here (at start: all of them; then
        periodically, those whose server has not changed for ``older_than``
        seconds: the API that accepted them died before telling a conductor)."""
        found = await asyncio.to_thread(self._interrupted, older_than)
        for inst, migration in found:
            action = self.action_of(inst, migration)
            if action is not None and inst.id not in self._running:
                LOG.warning("taking up the %s of server %s (task %s)", action, inst.id,
                            inst.task_state)
                asyncio.get_running_loop().create_task(self.run(inst.id, action))

    def _interrupted(self, older_than: float) -> list[tuple[records.Instance, records.Migration | None]]:
        cutoff = _now() - timedelta(seconds=older_than)
        out = []
        page = self.db.list_instances(task_states=sorted(MOVE_TASK_STATES), limit=1000)
        for inst in page.instances:
            if inst.updated_at > cutoff or inst.id in self._running:
                continue
            open_moves = self.db.list_migrations(instance_id=inst.id, open_only=True, limit=1)
            out.append((inst, open_moves[0] if open_moves else None))
        return out

    async def periodic(self) -> None:
        """Nova's _poll_unconfirmed_resizes (resize_confirm_window) and
        _poll_shelved_instances (shelved_offload_time > 0), and the moves left
        without a driver."""
        await self.resume_all(older_than=max(self.retry_timeout, 30.0))
        if self.resize_confirm_window > 0:
            for inst in await asyncio.to_thread(self._due_for_confirm):
                await self._auto(inst, "confirm_resize", "Automatically confirmed after "
                                 f"resize_confirm_window ({self.resize_confirm_window} s)")
        if self.shelved_offload_time > 0:
            for inst in await asyncio.to_thread(self._due_for_offload):
                await self._auto(inst, "shelve_offload", "Offloaded after shelved_offload_time "
                                 f"({self.shelved_offload_time} s)")

    def _due_for_confirm(self) -> list[records.Instance]:
        cutoff = _now() - timedelta(seconds=self.resize_confirm_window)
        page = self.db.list_instances(vm_state=VmState.RESIZED, limit=1000)
        due = []
        for inst in page.instances:
            if inst.task_state is not None:
                continue
            moves = self.db.list_migrations(instance_id=inst.id, open_only=True, limit=1)
            if moves and moves[0].status == "finished" and moves[0].updated_at <= cutoff:
                due.append(inst)
        return due

    def _due_for_offload(self) -> list[records.Instance]:
        cutoff = _now() - timedelta(seconds=self.shelved_offload_time)
        page = self.db.list_instances(vm_state=VmState.SHELVED, limit=1000)
        return [i for i in page.instances if i.task_state is None
                and datetime.fromisoformat(str(i.system_metadata.get(SHELVED_AT, _now().isoformat())))
                <= cutoff]

    async def _auto(self, inst: records.Instance, action: str, message: str) -> None:
        """A move the conductor starts itself, as the API would (task and action
        log entry first, then the move)."""
        row = lifecycle.ACTIONS[action]
        change = None
        if action == "confirm_resize":
            moves = await asyncio.to_thread(self.db.list_migrations, instance_id=inst.id,
                                            open_only=True, limit=1)
            if not moves:
                return
            change = MigrationChange(moves[0].id, "confirming", frozenset({"finished"}))
        started = await asyncio.to_thread(self._try, lambda: self.db.update_instance(
            inst.id, expected_vm_state=inst.vm_state, expected_task_state=None,
            task_state=row.task_state, migration=change,
            start_action=records.NewAction(row.log_name, project_id=inst.project_id)))
        if started:
            LOG.info("server %s: %s", inst.id, message)
            await self.run(inst.id, action)

    # ---- resize and cold migration ---------------------------------------------------

    async def _resize(self, inst: records.Instance) -> None:
        await self._cold_move(inst, "resize")

    async def _migrate(self, inst: records.Instance) -> None:
        await self._cold_move(inst, "migrate")

    async def _cold_move(self, inst: records.Instance, action: str) -> None:
        """Nova's resize/cold migration: schedule and claim (the migration takes the
        source's allocation), the destination's claim (prep_resize), the source
        stops and sets the guest aside (resize_instance), the destination starts
        it with the new flavor (finish_resize): RESIZED, VERIFY_RESIZE."""
        migration = await self._migration_of(inst)
        old, new = await self._flavors(migration)
        image = await self._image(inst)
        log = lifecycle.ACTIONS[action].log_name
        source = migration.source_host
        if migration.status == "pre-migrating":
            scheduled = await self._schedule(inst, migration, new, image, log,
                                             "conductor_migrate_server",
                                             claim_event="compute_prep_resize")
            if scheduled is None:
                return
            migration = await self._set(inst, scheduled, "migrating", log,
                                        "compute_resize_instance",
                                        task_state=TaskState.RESIZE_MIGRATING)
        dest = migration.dest_host
        assert dest is not None
        if migration.status == "migrating":
            stash = await self._agent_or_roll_back(
                inst, migration, log, "compute_resize_instance",
                lambda: self.compute.migrate_out(source, inst.id, migration.id, live=False))
            if stash is None:
                return
            migration = await self._set(inst, migration, "post-migrating", log,
                                        "compute_resize_instance", done=True,
                                        task_state=TaskState.RESIZE_MIGRATED,
                                        system_metadata={MOVE_SOURCE: stash})
            inst = await self._get(inst.id)
        if migration.status == "post-migrating":
            stash = str(inst.system_metadata.get(MOVE_SOURCE, ""))
            await self._commit(inst, task_state=TaskState.RESIZE_FINISH,
                               events=[EventStep(log, "compute_finish_resize")])
            guest = await self._guest(inst, image)
            power = await self._agent_or_roll_back(
                inst, migration, log, "compute_finish_resize",
                lambda: self.compute.finish_move(dest, inst, new, image, stash, guest=guest,
                                                 power_on=migration.old_vm_state == VmState.ACTIVE))
            if power is None:
                return
            zone = await asyncio.to_thread(self._zone_of, dest, inst)
            await self._commit(
                inst, expected_task_state=TaskState.RESIZE_FINISH, vm_state=VmState.RESIZED,
                task_state=None, power_state=power, host=dest, node=dest,
                availability_zone=zone, flavor=new, system_metadata={MOVE_SOURCE: None},
                migration=MigrationChange(migration.id, "finished", frozenset({"post-migrating"})),
                finish_action=log,
                events=[EventStep(log, "compute_finish_resize", result="Success", close=True)])
            LOG.info("%s of %s: %s -> %s (%s -> %s), waiting for a confirm", action, inst.id,
                     source, dest, old.name, new.name)

    async def _confirm_resize(self, inst: records.Instance) -> None:
        """Nova's confirm_resize: the source's set-aside copy removed and the
        migration's allocation released; ACTIVE, or STOPPED when it was off. A
        downsize gives back its quota now."""
        migration = await self._migration_of(inst)
        old, new = await self._flavors(migration)
        log = "confirmResize"
        await self._commit(inst, events=[EventStep(log, "compute_confirm_resize")])
        fault = None
        try:
            await self._agent(lambda: self.compute.confirm_move(
                migration.source_host, inst.id, migration.id))
        except _Failed as e:
            fault = f"the old host {migration.source_host} kept its copy: {e}"
            LOG.warning("confirm of %s: %s", inst.id, fault)
        await self.scheduler.release(migration.id)
        vm = VmState.STOPPED if inst.power_state == PowerState.SHUTDOWN else VmState.ACTIVE
        await self._commit(
            inst, expected_task_state=TaskState.RESIZE_CONFIRMING, vm_state=vm, task_state=None,
            migration=MigrationChange(migration.id, "confirmed", frozenset({"confirming"})),
            quota_delta=_negate(new.resize_growth(old)), finish_action=log,
            action_message="Error" if fault else None,
            fault=NewFault(500, f"confirmResize: {fault}") if fault else None,
            events=[EventStep(log, "compute_confirm_resize", result="Error" if fault else "Success",
                              traceback=fault, close=True)])

    async def _revert_resize(self, inst: records.Instance) -> None:
        """Nova's revert_resize: the destination's guest and allocation go, the
        migration's allocation is the server's again, the source's guest is back
        as it was (flavor, vm_state)."""
        migration = await self._migration_of(inst)
        old, new = await self._flavors(migration)
        log = "revertResize"
        await self._commit(inst, events=[EventStep(log, "compute_revert_resize")])
        dest = migration.dest_host
        if dest is not None:
            await self._quiet_agent(lambda: self.compute.delete(dest, inst.id))
        await self.scheduler.move_allocation(migration.id, inst.id)
        power_on = migration.old_vm_state == VmState.ACTIVE
        try:
            power = await self._agent(lambda: self.compute.revert_move(
                migration.source_host, inst.id, migration.id, power_on=power_on))
        except _Failed as e:
            await self._fail(
                inst, log, "compute_revert_resize",
                f"revertResize failed on {migration.source_host}: {e}", traceback=str(e),
                expected_task_state=TaskState.RESIZE_REVERTING, vm_state=VmState.ERROR,
                host=migration.source_host, node=migration.source_host, flavor=old,
                migration=MigrationChange(migration.id, "error"),
                quota_delta=_negate(old.resize_growth(new)))
            return
        zone = await asyncio.to_thread(self._zone_of, migration.source_host, inst)
        await self._commit(
            inst, expected_task_state=TaskState.RESIZE_REVERTING, vm_state=migration.old_vm_state,
            task_state=None, power_state=power, host=migration.source_host,
            node=migration.source_host, availability_zone=zone, flavor=old,
            migration=MigrationChange(migration.id, "reverted", frozenset({"reverting"})),
            quota_delta=_negate(old.resize_growth(new)), finish_action=log,
            events=[EventStep(log, "compute_revert_resize", result="Success", close=True)])

    # ---- live migration -----------------------------------------------------------

    async def _live_migrate(self, inst: records.Instance) -> None:
        """Nova's live migration: schedule and claim, the destination's claim, the
        running guest moved (its memory and devices carried over: see
        virt/moves.py for what "live" is on one machine), the source cleaned up;
        the vm_state is what it was."""
        migration = await self._migration_of(inst)
        flavor, _ = await self._flavors(migration)
        image = await self._image(inst)
        log = "live-migration"
        source = migration.source_host
        if migration.status == "accepted":
            scheduled = await self._schedule(inst, migration, flavor, image, log,
                                             "conductor_live_migrate_instance",
                                             claim_event="compute_pre_live_migration",
                                             status="preparing")
            if scheduled is None:
                return
            migration = scheduled
        if migration.status == "preparing":
            migration = await self._set(inst, migration, "running", log, "compute_live_migration")
        dest = migration.dest_host
        assert dest is not None
        if migration.status == "running":
            stash = inst.system_metadata.get(MOVE_SOURCE)
            if stash is None:
                stash = await self._agent_or_roll_back(
                    inst, migration, log, "compute_live_migration",
                    lambda: self.compute.migrate_out(source, inst.id, migration.id, live=True))
                if stash is None:
                    return
                await self._commit(inst, system_metadata={MOVE_SOURCE: stash})
            moved_from = str(stash)
            guest = await self._guest(inst, image)
            power = await self._agent_or_roll_back(
                inst, migration, log, "compute_live_migration",
                lambda: self.compute.finish_move(dest, inst, flavor, image, moved_from,
                                                 power_on=True, guest=guest))
            if power is None:
                return
            zone = await asyncio.to_thread(self._zone_of, dest, inst)
            await self._commit(
                inst, expected_task_state=TaskState.MIGRATING, power_state=power, host=dest,
                node=dest, availability_zone=zone, system_metadata={MOVE_SOURCE: None},
                migration=MigrationChange(migration.id, "post-migrating", frozenset({"running"})),
                events=[EventStep(log, "compute_live_migration", result="Success", close=True),
                        EventStep(log, "compute_post_live_migration")])
            migration = await self._get_migration(migration.id)
        if migration.status == "post-migrating":
            await self._quiet_agent(lambda: self.compute.confirm_move(source, inst.id, migration.id))
            await self.scheduler.release(migration.id)
            await self._commit(
                inst, expected_task_state=TaskState.MIGRATING, task_state=None,
                migration=MigrationChange(migration.id, "completed", frozenset({"post-migrating"})),
                finish_action=log,
                events=[EventStep(log, "compute_post_live_migration", result="Success", close=True)])
            LOG.info("live migration of %s: %s -> %s", inst.id, source, dest)

    # ---- evacuation and rebuild -----------------------------------------------------

    async def _evacuate(self, inst: records.Instance) -> None:
        """Nova's evacuate: a server of a host that is down rebuilt from its image
        on another (the disk does not survive: no shared storage); the migration
        holds the dead host's allocation until that host is back and cleans up.
        Stopped servers stay stopped (Nova's microversion 2.95)."""
        migration = await self._migration_of(inst)
        flavor, _ = await self._flavors(migration)
        image = await self._image(inst)
        log = "evacuate"
        if migration.status == "accepted":
            scheduled = await self._schedule(inst, migration, flavor, image, log,
                                             "conductor_rebuild_server", claim_event=None,
                                             status="pre-migrating")
            if scheduled is None:
                return
            migration = scheduled
        dest = migration.dest_host
        assert dest is not None
        allocation = await asyncio.to_thread(self._allocation_on, inst.id, dest)
        await self._commit(inst, task_state=TaskState.REBUILD_SPAWNING,
                           expected_task_state=(TaskState.REBUILDING, TaskState.REBUILD_SPAWNING),
                           events=[EventStep(log, "compute_rebuild_instance")])
        stopped = migration.old_vm_state == VmState.STOPPED
        guest = await self._guest(inst, image)
        try:
            power = await self._agent(lambda: self.compute.rebuild(
                dest, inst, flavor, image, allocation, power_on=not stopped, guest=guest))
        except _Failed as e:
            await self._quiet_agent(lambda: self.compute.delete(dest, inst.id))
            await self.scheduler.move_allocation(migration.id, inst.id)
            await self._fail(inst, log, "compute_rebuild_instance",
                             f"Evacuation to {dest} failed: {e}", traceback=str(e),
                             expected_task_state=TaskState.REBUILD_SPAWNING,
                             vm_state=VmState.ERROR,
                             migration=MigrationChange(migration.id, "failed"))
            return
        zone = await asyncio.to_thread(self._zone_of, dest, inst)
        await self._commit(
            inst, expected_task_state=TaskState.REBUILD_SPAWNING,
            vm_state=VmState.STOPPED if stopped else VmState.ACTIVE, task_state=None,
            power_state=power, host=dest, node=dest, availability_zone=zone,
            migration=MigrationChange(migration.id, "done", frozenset({"pre-migrating"})),
            finish_action=log,
            events=[EventStep(log, "compute_rebuild_instance", result="Success", close=True)])
        LOG.info("evacuated %s: %s -> %s", inst.id, migration.source_host, dest)

    async def _rebuild(self, inst: records.Instance) -> None:
        """Nova's rebuild: a new image (its ImagePropertiesFilter & co. checked
        against the server's host, as Nova's rebuild check does) or the same one,
        a fresh disk from it on the same host; ACTIVE, STOPPED if it was."""
        log = "rebuild"
        host = inst.host
        flavor = await asyncio.to_thread(self.db.get_flavor, inst.flavor_id, include_deleted=True)
        image = await self._image(inst)
        original = inst.system_metadata.get(ORIG_IMAGE)
        if host is None:
            await self._fail(inst, log, None, "rebuild: the server is on no host", code=400,
                             system_metadata={ORIG_IMAGE: None})
            return
        if inst.task_state == TaskState.REBUILDING:
            if original is not None and original != (inst.image_id or ""):
                await self._commit(inst, events=[EventStep(log, "conductor_rebuild_server")])
                try:
                    await self.scheduler.check_rebuild(self._spec(
                        inst, flavor, image, force_hosts=[host], is_rebuild=True))
                except errors.NoValidHost as e:
                    await self._fail(
                        inst, log, "conductor_rebuild_server",
                        f"The image {inst.image_id} cannot run on {host}: {_rejections(e)}",
                        code=400, details={"rejections": [list(r) for r in e.rejections]},
                        expected_task_state=TaskState.REBUILDING, image_id=original or None,
                        system_metadata={ORIG_IMAGE: None})
                    return
                await self._commit(inst, events=[EventStep(log, "conductor_rebuild_server",
                                                           result="Success", close=True)])
            await self._commit(inst, expected_task_state=TaskState.REBUILDING,
                               task_state=TaskState.REBUILD_SPAWNING,
                               events=[EventStep(log, "compute_rebuild_instance")])
        stopped = inst.vm_state == VmState.STOPPED
        guest = await self._guest(inst, image)
        try:
            power = await self._agent(lambda: self.compute.rebuild(
                host, inst, flavor, image, {}, power_on=not stopped, guest=guest))
        except _Failed as e:
            await self._fail(inst, log, "compute_rebuild_instance",
                             f"Rebuild on {host} failed: {e}", traceback=str(e),
                             expected_task_state=TaskState.REBUILD_SPAWNING,
                             vm_state=VmState.ERROR, system_metadata={ORIG_IMAGE: None})
            return
        await self._commit(
            inst, expected_task_state=TaskState.REBUILD_SPAWNING,
            vm_state=VmState.STOPPED if stopped else VmState.ACTIVE, task_state=None,
            power_state=power, system_metadata={ORIG_IMAGE: None}, finish_action=log,
            events=[EventStep(log, "compute_rebuild_instance", result="Success", close=True)])

    # ---- shelving -------------------------------------------------------------------

    async def _shelve(self, inst: records.Instance) -> None:
        """Nova's shelve: powered off, its disk snapshotted into an image;
        offloaded at once when shelved_offload_time is 0 (Nova's default)."""
        log = "shelve"
        host = inst.host
        if host is None:
            await self._fail(inst, log, None, "shelve: the server is on no host", code=400)
            return
        image_id = inst.system_metadata.get(SHELVED_IMAGE_ID)
        if image_id is None:
            image_id = str(uuid.uuid4())
            await self._commit(inst, system_metadata={SHELVED_IMAGE_ID: image_id},
                               events=[EventStep(log, "compute_shelve_instance")])
        try:
            power, snapshot = await self._agent(lambda: self.compute.shelve(host, inst.id))
        except _Failed as e:
            await self._fail(inst, log, "compute_shelve_instance", f"shelve failed on {host}: {e}",
                             traceback=str(e), expected_task_state=TaskState.SHELVING,
                             system_metadata={SHELVED_IMAGE_ID: None})
            return
        if snapshot is not None:
            await asyncio.to_thread(self._register_snapshot, inst, str(image_id), snapshot)
        offload = self.shelved_offload_time == 0
        await self._commit(
            inst, expected_task_state=TaskState.SHELVING,
            vm_state=VmState.SHELVED if not offload else inst.vm_state,
            task_state=TaskState.SHELVING_OFFLOADING if offload else None, power_state=power,
            system_metadata={SHELVED_AT: _now().isoformat(), SHELVED_HOST: host,
                             SHELVED_IMAGE_ID: image_id if snapshot is not None else None},
            finish_action=None if offload else log,
            events=[EventStep(log, "compute_shelve_instance", result="Success", close=True)])
        if offload:
            await self._offload(await self._get(inst.id), log)

    async def _shelve_offload(self, inst: records.Instance) -> None:
        await self._offload(inst, "shelveOffload")

    async def _offload(self, inst: records.Instance, log: str) -> None:
        """Nova's shelve_offload: the guest destroyed on its host and its
        allocation released; SHELVED_OFFLOADED, on no host."""
        await self._commit(inst, events=[EventStep(log, "compute_shelve_offload_instance")])
        if inst.host is not None:
            host = inst.host
            try:
                await self._agent(lambda: self.compute.delete(host, inst.id))
            except _Failed as e:
                LOG.warning("offload of %s: %s; its guest is left for %s to reap", inst.id, e, host)
        await self.scheduler.release(inst.id)
        await self._commit(
            inst, expected_task_state=TaskState.SHELVING_OFFLOADING,
            vm_state=VmState.SHELVED_OFFLOADED, task_state=None,
            power_state=PowerState.NOSTATE, host=None, node=None, finish_action=log,
            events=[EventStep(log, "compute_shelve_offload_instance", result="Success",
                              close=True)])

    async def _unshelve(self, inst: records.Instance) -> None:
        """Nova's unshelve: a shelved server started on its host; an offloaded one
        placed afresh (an admin may name the host), claimed, and spawned there from
        its snapshot (or its image, a simulated server having no disk to keep)."""
        log = "unshelve"
        cleared: dict[str, Any] = {SHELVED_AT: None, SHELVED_HOST: None, SHELVED_IMAGE_ID: None,
                                   UNSHELVE_HOST: None}
        if inst.vm_state == VmState.SHELVED and inst.host is not None:
            host = inst.host
            await self._commit(inst, events=[EventStep(log, "compute_unshelve_instance")])
            try:
                power = await self._agent(lambda: self.compute.action(host, inst.id, "start"))
            except _Failed as e:
                await self._fail(inst, log, "compute_unshelve_instance",
                                 f"unshelve failed on {host}: {e}", traceback=str(e),
                                 expected_task_state=TaskState.UNSHELVING)
                return
            await self._commit(inst, expected_task_state=TaskState.UNSHELVING,
                               vm_state=VmState.ACTIVE, task_state=None, power_state=power,
                               system_metadata=cleared, finish_action=log,
                               events=[EventStep(log, "compute_unshelve_instance",
                                                 result="Success", close=True)])
            return
        flavor = await asyncio.to_thread(self.db.get_flavor, inst.flavor_id, include_deleted=True)
        snapshot_id = inst.system_metadata.get(SHELVED_IMAGE_ID)
        image = await self._image(inst, str(snapshot_id) if snapshot_id else None)
        selections: list[Selection]
        if inst.host is None:
            await self.scheduler.release(inst.id)  # a claim made before a restart
            await self._commit(inst, events=[EventStep(log, "conductor_unshelve_instance")])
            requested = inst.system_metadata.get(UNSHELVE_HOST)
            try:
                [selections] = await self.scheduler.select_destinations(self._spec(
                    inst, flavor, image, requested_host=str(requested) if requested else None))
            except errors.NoValidHost as e:
                await self._fail(inst, log, "conductor_unshelve_instance",
                                 f"No valid host was found. {_rejections(e)}",
                                 details={"rejections": [list(r) for r in e.rejections]},
                                 expected_task_state=TaskState.UNSHELVING,
                                 system_metadata={UNSHELVE_HOST: None})
                return
            await self._commit(inst, events=[EventStep(log, "conductor_unshelve_instance",
                                                       result="Success", close=True)])
        else:  # placed and claimed before a restart: build there
            allocation = await asyncio.to_thread(self._allocation_on, inst.id, inst.host)
            selections = [Selection(inst.host, "", -1, allocation, inst.availability_zone or "",
                                    "", 0.0)]
        reasons: list[str] = []
        current: Selection | None = selections[0]
        alternates = list(selections[1:])
        guest = await self._guest(inst, image)
        while current is not None:
            chosen = current
            await self._commit(inst, host=chosen.host, node=chosen.host,
                               availability_zone=chosen.availability_zone or inst.availability_zone,
                               events=[EventStep(log, "compute_unshelve_instance")])
            try:
                power = await self._agent(lambda: self.compute.rebuild(
                    chosen.host, inst, flavor, image, dict(chosen.allocation), power_on=True,
                    guest=guest))
            except _Failed as e:
                reasons.append(f"{chosen.host}: {e}")
                await self.scheduler.release(inst.id)
                current = await next_alternate(self.scheduler, inst.id, alternates)
                await self._commit(inst, events=[EventStep(
                    log, "compute_unshelve_instance", result="Error", traceback=str(e), close=True)])
                continue
            await self._commit(
                inst, expected_task_state=TaskState.UNSHELVING, vm_state=VmState.ACTIVE,
                task_state=None, power_state=power, system_metadata=cleared, finish_action=log,
                events=[EventStep(log, "compute_unshelve_instance", result="Success", close=True)])
            return
        await self._fail(inst, log, None, "unshelve failed on every host tried",
                         details={"attempts": reasons}, expected_task_state=TaskState.UNSHELVING,
                         host=None, node=None)

    # ---- steps shared by the moves ----------------------------------------------------

    async def _schedule(self, inst: records.Instance, migration: records.Migration,
                        flavor: records.Flavor, image: records.Image | None, log: str,
                        event: str, *, claim_event: str | None,
                        status: str = "pre-migrating") -> records.Migration | None:
        """Pick and claim the destination (the migration taking the source's
        allocation), then, with a ``claim_event``, its claim on the agent (trying
        the alternates when it does not fit); the chosen host recorded, then the
        migration's ``status`` once claimed. Returns the migration as it is now;
        None when the move was undone: no host, or none could take it."""
        # a claim made before a restart: the migration gives the source back first
        await self.scheduler.move_allocation(migration.id, inst.id)
        await self._commit(inst, events=[EventStep(log, event)])
        same_host_ok = migration.migration_type == "resize" and self.allow_resize_to_same_host
        spec = self._spec(inst, flavor, image,
                          ignore_hosts=[] if same_host_ok else [migration.source_host],
                          requested_host=migration.requested_host)
        try:
            [selections] = await self.scheduler.select_destinations(spec, migration=migration.id)
        except errors.NoValidHost as e:
            message = f"No valid host was found. {_rejections(e)}"
            await self._give_up(inst, migration, log, event, message, code=400,
                                details={"rejections": [list(r) for r in e.rejections]})
            return None
        await self._commit(inst, events=[EventStep(log, event, result="Success", close=True)])
        alternates = list(selections[1:])
        current: Selection | None = selections[0]
        reasons: list[str] = []
        while current is not None:
            chosen = current
            await self._commit(inst, migration=MigrationChange(
                migration.id, migration.status, frozenset({migration.status}),
                dest_host=chosen.host), events=[EventStep(log, claim_event)] if claim_event else [])
            if claim_event is None:
                return await self._set(inst, migration, status, log, None)
            try:
                await self._agent(lambda: self.compute.prepare_move(
                    chosen.host, inst.id, flavor, dict(chosen.allocation), migration.id))
            except _Failed as e:
                reasons.append(f"{chosen.host}: {e}")
                await self._commit(inst, events=[EventStep(log, claim_event, result="Error",
                                                           traceback=str(e), close=True)])
                await self.scheduler.release(inst.id)
                current = await next_alternate(self.scheduler, inst.id, alternates)
                continue
            return await self._set(inst, migration, status, log, claim_event, done=True)
        await self.scheduler.move_allocation(migration.id, inst.id)
        await self._give_up(inst, migration, log, claim_event or event,
                            "no host could take the server: " + "; ".join(reasons), code=500,
                            details={"attempts": reasons})
        return None

    async def _give_up(self, inst: records.Instance, migration: records.Migration, log: str,
                       event: str, message: str, *, code: int,
                       details: Mapping[str, Any] | None = None) -> None:
        """A move that never left its source: back as it was, the action failed."""
        old, new = await self._flavors(migration)
        await self._fail(inst, log, event, message, code=code, details=details,
                         migration=MigrationChange(migration.id, "error"),
                         quota_delta=_negate(old.resize_growth(new)))

    async def _roll_back(self, inst: records.Instance, migration: records.Migration, log: str,
                         event: str, reason: str) -> None:
        """Undo a move that got past its scheduling: the destination's guest (if
        any) and claim dropped, the migration's allocation the server's again,
        its guest back on the source as it was. If the source cannot bring it
        back the server is in ERROR there, with the fault."""
        old, new = await self._flavors(migration)
        if migration.dest_host is not None:
            dest = migration.dest_host
            await self._quiet_agent(lambda: self.compute.delete(dest, inst.id))
        await self.scheduler.move_allocation(migration.id, inst.id)
        vm_state = migration.old_vm_state
        fault = f"{log} to {migration.dest_host} failed and was undone: {reason}"
        try:
            power: int | None = await self._agent(lambda: self.compute.revert_move(
                migration.source_host, inst.id, migration.id,
                power_on=migration.old_vm_state in (VmState.ACTIVE, VmState.PAUSED)))
        except _Failed as e:
            vm_state, power = VmState.ERROR, None
            fault += f"; and the server could not be brought back on {migration.source_host}: {e}"
        extra: dict[str, Any] = {} if power is None else {"power_state": power}
        await self._fail(inst, log, event, fault, traceback=reason, vm_state=vm_state,
                         host=migration.source_host, node=migration.source_host,
                         migration=MigrationChange(migration.id, "error"),
                         quota_delta=_negate(old.resize_growth(new)), **extra)
        LOG.warning("%s of %s undone: %s", log, inst.id, fault)

    async def _agent_or_roll_back(self, inst: records.Instance, migration: records.Migration,
                                  log: str, event: str, call: Callable[[], Awaitable[T]]) -> T | None:
        try:
            return await self._agent(call)
        except _Failed as e:
            await self._roll_back(inst, migration, log, event, str(e))
            return None

    async def _set(self, inst: records.Instance, migration: records.Migration, status: str,
                   log: str, event: str | None, *, done: bool = False,
                   **changes: Any) -> records.Migration:
        """Commit a step: the migration's status with ``changes`` (the server's
        task...), the step's event (if any) started (or, ``done``, ended)."""
        steps = [] if event is None else [
            EventStep(log, event, result="Success", close=True) if done else EventStep(log, event)]
        await self._commit(inst, migration=MigrationChange(migration.id, status,
                                                           frozenset({migration.status})),
                           events=steps, **changes)
        return await self._get_migration(migration.id)

    async def _fail(self, inst: records.Instance, log: str, event: str | None, message: str, *,
                    code: int = 500, details: Mapping[str, Any] | None = None,
                    traceback: str | None = None, **changes: Any) -> None:
        """End the move's action in Error (its step's event too, the reason as its
        traceback), the server's task cleared, a fault saying why, with
        ``changes`` (a vm_state, what the move gives back...) in the same commit."""
        await self._commit(
            inst, task_state=None, fault=NewFault(code, message, dict(details or {})),
            finish_action=log, action_message="Error",
            events=[] if event is None else [EventStep(log, event, result="Error",
                                                       traceback=traceback or message,
                                                       close=True)],
            **changes)

    async def _agent(self, call: Callable[[], Awaitable[T]]) -> T:
        """A compute agent's step; an agent that cannot be reached (or whose
        libvirt is down) is tried again until retry_timeout. _Failed when the
        step cannot be done."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.retry_timeout
        delay = 0.2
        while True:
            try:
                return await call()
            except errors.Unavailable as e:
                if loop.time() >= deadline:
                    raise _Failed(f"the compute agent could not be reached: {e}") from None
                await asyncio.sleep(delay)
                delay = min(delay * 2, 2.0)
            except (errors.BuildFailed, errors.NotFound, errors.InvalidState,
                    errors.Invalid) as e:
                raise _Failed(str(e)) from None

    async def _quiet_agent(self, call: Callable[[], Awaitable[object]]) -> None:
        """A cleanup step: tried (and waited for) like any other, its failure only
        logged (the agents reap what is left: a guest whose server is elsewhere)."""
        try:
            await self._agent(call)
        except _Failed as e:
            LOG.warning("cleanup step failed: %s", e)

    async def _commit(self, inst: records.Instance, *,
                      expected_task_state: Any = None, **changes: Any) -> None:
        """update_instance, compare-and-swap on the move's own task_state: a
        server deleted or taken over (a delete sets its own task) stops the move
        (_Gone)."""
        expected = expected_task_state if expected_task_state is not None else (
            tuple(MOVE_TASK_STATES))
        ok = await asyncio.to_thread(self._try, lambda: self.db.update_instance(
            inst.id, expected_task_state=expected, **changes))
        if not ok:
            raise _Gone()

    @staticmethod
    def _try(fn: Callable[[], bool]) -> bool:
        try:
            return bool(fn())
        except errors.NotFound:
            return False

    async def _get(self, instance_id: str) -> records.Instance:
        return await asyncio.to_thread(self.db.get_instance, instance_id)

    async def _get_migration(self, migration_id: str) -> records.Migration:
        return await asyncio.to_thread(self.db.get_migration, migration_id)

    async def _migration_of(self, inst: records.Instance) -> records.Migration:
        moves = await asyncio.to_thread(self.db.list_migrations, instance_id=inst.id,
                                        open_only=True, limit=1)
        if not moves:
            raise _Gone()
        return moves[0]

    async def _flavors(self, migration: records.Migration) -> tuple[records.Flavor, records.Flavor]:
        def read() -> tuple[records.Flavor, records.Flavor]:
            return (self.db.get_flavor(migration.old_flavor_id, include_deleted=True),
                    self.db.get_flavor(migration.new_flavor_id, include_deleted=True))
        return await asyncio.to_thread(read)

    async def _guest(self, inst: records.Instance,
                     image: records.Image | None) -> records.GuestConfig:
        """What the guest was given, for the host that defines it anew
        (conductor/guests.py): the server's own fixed IPs, ``image``'s kernel."""
        return await asyncio.to_thread(guests.moved_guest, self.db, inst, image)

    async def _image(self, inst: records.Instance,
                     image_id: str | None = None) -> records.Image | None:
        wanted = image_id or inst.image_id
        if not wanted:
            return None
        try:
            return await asyncio.to_thread(self.db.get_image, wanted, include_deleted=True)
        except errors.NotFound:
            return None

    def _allocation_on(self, consumer: str, host: str) -> dict[str, int]:
        provider = self.db.get_host(host).uuid
        return dict(self.db.get_allocations(consumer).get(provider, {}))

    def _zone_of(self, host: str, inst: records.Instance) -> str | None:
        """The zone of the host a server moved to, as the scheduler gives it: its
        aggregates' availability_zone, else its own; else the server keeps its
        zone (the default one: moves keep a server in its zone)."""
        try:
            h = self.db.get_host(host)
        except errors.NotFound:
            return inst.availability_zone
        zones = sorted(a.metadata["availability_zone"] for a in self.db.list_aggregates()
                       if a.id in h.aggregates and a.metadata.get("availability_zone"))
        return zones[0] if zones else (h.availability_zone or inst.availability_zone)

    def _register_snapshot(self, inst: records.Instance, image_id: str, path: str) -> None:
        """The shelved server's snapshot as an image (once: a repeated shelve step
        finds it), with its original image's properties, so that it is scheduled
        as the original was."""
        try:
            self.db.get_image(image_id, include_deleted=True)
            return
        except errors.NotFound:
            pass
        properties: dict[str, Any] = {}
        if inst.image_id:
            try:
                properties = dict(self.db.get_image(inst.image_id, include_deleted=True).properties)
            except errors.NotFound:
                pass
        self.db.register_image(name=f"{inst.name}-shelved"[:255], path=path, disk_format="qcow2",
                               properties=properties, image_id=image_id)

    def _spec(self, inst: records.Instance, flavor: records.Flavor, image: records.Image | None, *,
              ignore_hosts: list[str] | None = None, requested_host: str | None = None,
              force_hosts: list[str] | None = None, is_rebuild: bool = False) -> RequestSpec:
        """The request spec of a move: the server's flavor (the new one for a
        resize), image, group (its members' hosts, its own included, as Nova's
        setup_instance_group counts them) and zone."""
        group = None
        if inst.group_id:
            try:
                g = self.db.get_server_group(inst.group_id)
            except errors.NotFound:
                g = None
            if g is not None:
                group = InstanceGroup(uuid=g.id, policy=g.policy,  # type: ignore[arg-type]
                                      members=list(g.members), hosts=sorted(g.hosts),
                                      max_server_per_host=g.max_server_per_host)
        return RequestSpec(
            flavor=flavor, instance_uuids=[inst.id],
            image=Image(image.id, {k: str(v) for k, v in image.properties.items()}) if image else None,
            project_id=inst.project_id, user_id=inst.user_id, instance_group=group,
            availability_zone=inst.availability_zone, ignore_hosts=ignore_hosts or [],
            requested_host=requested_host, force_hosts=force_hosts or [], is_rebuild=is_rebuild)


def _rejections(e: errors.NoValidHost) -> str:
    return ", ".join(f"{n} {c}" for c, n in e.rejections if n) or "no hosts"


def _negate(delta: Mapping[str, int]) -> dict[str, int]:
    return {k: -v for k, v in delta.items()}


async def next_alternate(scheduler: SchedulerAPI, instance_id: str,
                         alternates: list[Selection]) -> Selection | None:
    """Claim the first of ``alternates`` that still fits (popping those tried):
    after a failed build, or a destination that could not take a move."""
    while alternates:
        alt = alternates.pop(0)
        if await scheduler.claim_alternate(instance_id, alt.host, dict(alt.allocation)):
            return alt
    return None


__all__ = ["MOVE_TASK_STATES", "MoveTasks", "next_alternate"]
