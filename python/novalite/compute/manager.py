"""The compute agent's domain logic (no grpc here).

One agent serves one or more hosts, each through its own virt driver connection
(`qemu:///system` for a real hypervisor, `test:///...` for a simulated one), and
does for them what Nova's compute manager and resource tracker do:

* register each host (service row, resource provider, inventory from the driver
  with the configured reserved amounts and allocation ratios, the CPU traits) and
  heartbeat;
* claim locally, through the same placement core the scheduler uses, before
  building (Nova's instance_claim): a claim that does not fit fails the build with
  ComputeResourcesUnavailable, so the conductor tries an alternate;
* spawn, destroy and run lifecycle actions on guests, returning the power state
  (the conductor commits the server's vm_state/task_state/power_state);
* keep the compute-node view (vcpus_used, free_ram_mb, free_disk_mb, num_instances,
  num_io_ops, failed_builds) as Nova's resource tracker computes it, write it after
  each change and periodically, and ask the scheduler to re-read the host;
* count consecutive failed builds (and disable the host at the threshold);
* sync power states as Nova's _sync_power_states does, and reap guests whose server
  was deleted or now lives on another host;
* after a restart, find its guests again: each server the database places here is
  tracked and claimed again, a build the restart interrupted goes to ERROR.

Every libvirt call and every database call runs in a worker thread, never on the
event loop. Calls on one instance are serialised by a per-instance lock.

Which servers count on a host (the "tracked" set, Nova's tracked_instances): the
servers the database places here that hold an allocation on this host's provider or
have a guest here, plus the builds in flight; minus the ones this agent deleted or
failed to build until the database stops placing them here.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import math
import re
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping
from contextlib import asynccontextmanager, suppress
from dataclasses import dataclass, replace
from pathlib import Path
from typing import ParamSpec, Protocol, TypeVar

from novalite import errors
from novalite.db.database import Database
from novalite.objects import records
from novalite.objects.records import ComputeView
from novalite.objects.states import PowerState, VmState
from novalite.placement import Host, HostTable, PlacementError
from novalite.settings import ComputeSettings
from novalite.virt import (
    ActionFailed,
    DriverError,
    HostInfo,
    HypervisorUnavailable,
    InstanceExists,
    InstanceNotFound,
    InvalidInstanceId,
    SpawnFailed,
    domain_name,
)
from novalite.virt import linux_net

LOG = logging.getLogger(__name__)

_P = ParamSpec("_P")
_T = TypeVar("_T")

# Hosts whose start-up (driver, registration, recovery) runs at once.
_START_CONCURRENCY = 8
# Seconds close() waits for a host's last view write to finish.
_CLOSE_TIMEOUT = 10.0
_PAGE = 500


class Driver(Protocol):
    """What the agent needs of a virt driver (novalite.virt.LibvirtDriver). Every
    method blocks: the manager calls them through asyncio.to_thread."""

    def host_info(self) -> HostInfo: ...
    def spawn(self, instance_id: str, name: str, vcpus: int, memory_mb: int, root_gb: int,
              image_path: str | None = None, image_format: str = "qcow2",
              guest: records.GuestConfig | None = None) -> None: ...
    def console_output(self, instance_id: str) -> str: ...
    def destroy(self, instance_id: str) -> None: ...
    def power_state(self, instance_id: str) -> int: ...
    def list_instances(self) -> Mapping[str, int]: ...
    def reboot(self, instance_id: str, hard: bool = False) -> str: ...
    def power_off(self, instance_id: str, timeout: float | None = None) -> None: ...
    def power_on(self, instance_id: str) -> None: ...
    def pause(self, instance_id: str) -> None: ...
    def unpause(self, instance_id: str) -> None: ...
    def suspend(self, instance_id: str) -> None: ...
    def resume(self, instance_id: str) -> None: ...
    def rescue(self, instance_id: str) -> None: ...
    def unrescue(self, instance_id: str) -> None: ...
    def close(self) -> None: ...
    # the steps of a move (novalite.virt.moves)
    def migrate_disk_and_power_off(self, instance_id: str, *, live: bool = False) -> str: ...
    def finish_migration(self, instance_id: str, name: str, vcpus: int, memory_mb: int,
                         root_gb: int, *, source: str, power_on: bool,
                         image_path: str | None = None,
                         guest: records.GuestConfig | None = None) -> None: ...
    def finish_revert_migration(self, instance_id: str, *, power_on: bool) -> None: ...
    def confirm_migration(self, instance_id: str) -> None: ...
    def has_stash(self, instance_id: str) -> bool: ...
    def snapshot(self, instance_id: str) -> str | None: ...


@dataclass(frozen=True)
class ComputeOptions:
    """Nova's [DEFAULT] compute options the agent needs, taken from ComputeSettings
    (``from_settings``), where their defaults and meanings live."""

    reserved_host_memory_mb: int
    reserved_host_cpus: int
    reserved_host_disk_mb: int
    cpu_allocation_ratio: float
    ram_allocation_ratio: float
    disk_allocation_ratio: float
    max_concurrent_builds: int
    consecutive_build_service_disable_threshold: int
    # the CPU traits of simulated hosts (a real host's come from its driver)
    cpu_traits: frozenset[str] = frozenset()
    # hosts whose builds fail on purpose (to exercise rescheduling; tests only)
    fail_builds_on: frozenset[str] = frozenset()
    # real hosts: where this machine's networks are described (linux_net); the
    # agent reports them at start. None: simulated hosts, which have none.
    networks_path: Path | None = None
    # seconds each step of a move waits before it starts (so that a test can kill
    # a service in the middle of one; tests only)
    move_step_delay: float = 0.0

    @classmethod
    def from_settings(cls, settings: ComputeSettings, *, fail_builds_on: Iterable[str] = (),
                      move_step_delay: float = 0.0) -> ComputeOptions:
        real = not settings.virt_uri.startswith("test:")
        return cls(
            reserved_host_memory_mb=settings.reserved_host_memory_mb,
            reserved_host_cpus=settings.reserved_host_cpus,
            reserved_host_disk_mb=settings.reserved_host_disk_mb,
            cpu_allocation_ratio=settings.cpu_allocation_ratio,
            ram_allocation_ratio=settings.ram_allocation_ratio,
            disk_allocation_ratio=settings.disk_allocation_ratio,
            max_concurrent_builds=settings.max_concurrent_builds,
            consecutive_build_service_disable_threshold=(
                settings.consecutive_build_service_disable_threshold),
            cpu_traits=(frozenset(settings.cpu_traits) if settings.virt_uri.startswith("test:")
                        else frozenset()),
            fail_builds_on=frozenset(fail_builds_on),
            networks_path=settings.networks_path if real else None,
            move_step_delay=move_step_delay,
        )


@dataclass(frozen=True)
class _Usage:
    vcpus: int
    memory_mb: int
    disk_mb: int
    seq: int  # when it was tracked: a reconcile only drops entries older than its reads


# Seconds a compute report waits to gather more changed hosts (see _Reporter).
REPORT_DELAY = 0.05


class _Reporter:
    """Writes the compute views of an agent's hosts to the database and tells the
    scheduler which hosts changed. Requests coalesce: the hosts that changed while a
    write was in flight go together in the next one (one transaction, each view as
    it is when written), and the reports of REPORT_DELAY seconds in one call; a
    caller waits for a write that started after it asked. A write nobody waits for
    (after a build) first gathers REPORT_DELAY seconds of changes."""

    def __init__(self, view: Callable[[str], ComputeView],
                 write: Callable[[dict[str, ComputeView]], Awaitable[None]],
                 report: Callable[[list[str]], Awaitable[None]] | None) -> None:
        self._view = view
        self._write = write
        self._report = report
        self._dirty: set[str] = set()
        self._waiters: list[asyncio.Future[None]] = []
        self._task: asyncio.Task[None] | None = None
        self._unreported: set[str] = set()
        self._reported = False  # whether a report has reached the scheduler yet
        self._report_task: asyncio.Task[None] | None = None

    async def request(self, host: str, *, wait: bool = True) -> None:
        loop = asyncio.get_running_loop()
        self._dirty.add(host)
        done: asyncio.Future[None] | None = None
        if wait:
            done = loop.create_future()
            self._waiters.append(done)
        if self._task is None or self._task.done():
            self._task = loop.create_task(self._run(), name="compute-view-writer")
        if done is not None:
            await asyncio.shield(done)

    async def _run(self) -> None:
        if not self._waiters:
            # nobody waits for this write: gather the changes of REPORT_DELAY in it
            await asyncio.sleep(REPORT_DELAY)
        while self._dirty:
            hosts, self._dirty = sorted(self._dirty), set()
            waiters, self._waiters = self._waiters, []
            try:
                await self._write({h: self._view(h) for h in hosts})
            except Exception:  # noqa: BLE001 - the periodic update writes it again
                LOG.warning("could not write the compute views of %s", ", ".join(hosts),
                            exc_info=True)
            for waiter in waiters:
                if not waiter.done():
                    waiter.set_result(None)
            if self._report is not None:
                self._unreported.update(hosts)
                if self._report_task is None or self._report_task.done():
                    self._report_task = asyncio.get_running_loop().create_task(
                        self._send_reports(), name="compute-reports")

    async def _send_reports(self) -> None:
        """Tell the scheduler which hosts changed, at most once per REPORT_DELAY:
        its table already counts what it placed, so a report only confirms the
        agent's own view, and one call for many builds costs less than one each."""
        assert self._report is not None
        while self._unreported:
            await asyncio.sleep(REPORT_DELAY)
            hosts, self._unreported = sorted(self._unreported), set()
            try:
                await self._report(hosts)
            except errors.Unavailable as e:
                if self._reported:  # it was there, and is gone
                    LOG.warning("could not report %s to the scheduler: %s", ", ".join(hosts), e)
                else:  # not started yet: it reads every host from the database when it starts
                    LOG.info("the scheduler is not reachable yet (%s); it reads %s from the "
                             "database when it starts", e, ", ".join(hosts))
            except Exception:  # noqa: BLE001 - the periodic report catches up
                LOG.warning("could not report %s to the scheduler", ", ".join(hosts),
                            exc_info=True)
            else:
                self._reported = True

    async def settled(self) -> None:
        """Return once every change asked for so far is written."""
        while self._task is not None and not self._task.done():
            await asyncio.shield(self._task)

    async def close(self, timeout: float) -> None:
        for which in ("_task", "_report_task"):  # the writer may start a report
            task: asyncio.Task[None] | None = getattr(self, which)
            if task is None or task.done():
                continue
            try:
                await asyncio.wait_for(asyncio.shield(task), timeout)
            except Exception:  # noqa: BLE001 - timed out or failed: closing anyway
                task.cancel()
                with suppress(asyncio.CancelledError, Exception):
                    await task


class _HostState:
    def __init__(self, name: str, driver: Driver) -> None:
        self.name = name
        self.driver = driver
        self.info: HostInfo | None = None
        self.uuid = ""  # resource provider
        self.service_id: int | None = None
        self.tracked: dict[str, _Usage] = {}
        self.dropped: set[str] = set()
        self.building: set[str] = set()
        self.failed_builds = 0
        self.unknown_guests: set[str] = set()


class _LockEntry:
    __slots__ = ("lock", "users")

    def __init__(self) -> None:
        self.lock = asyncio.Lock()
        self.users = 0


class ComputeManager:
    """The agent's hosts and what runs on them. ``drivers``: host name -> its virt
    driver (the manager owns them and closes them). ``endpoint``: the address the
    agent's gRPC server is dialled at, registered for every host (set it before
    start()). ``report(host)``: tells the scheduler a host changed."""

    def __init__(self, db: Database, drivers: Mapping[str, Driver], options: ComputeOptions, *,
                 endpoint: str, report: Callable[[list[str]], Awaitable[None]] | None = None) -> None:
        if not drivers:
            raise ValueError("a compute agent needs at least one host")
        self.db = db
        self.options = options
        self.endpoint = endpoint
        self._hosts = {name: _HostState(name, driver) for name, driver in drivers.items()}
        self._reporter = _Reporter(self.view, self._write_views, report)
        # local claims, through the same core the scheduler uses
        self.claims = HostTable()
        self._claimed: dict[str, str] = {}  # consumer -> host holding its local claim
        self._locks: dict[str, _LockEntry] = {}
        self._seq = 0
        # Nova's max_concurrent_builds is per compute service, i.e. per host: an
        # agent serving many (simulated) hosts keeps one limit for each
        self._builds: dict[str, asyncio.Semaphore] = {}
        self._flavor_swap: dict[str, int] = {}
        self._ready = asyncio.Event()
        self._closing = False
        self._periodic_task: asyncio.Task[None] | None = None
        self._cleanups: list[Callable[[], Awaitable[object]]] = []

    # ---- helpers -------------------------------------------------------------------

    @property
    def hosts(self) -> tuple[str, ...]:
        return tuple(self._hosts)

    def driver(self, host: str) -> Driver:
        return self._host(host).driver

    def _host(self, host: str) -> _HostState:
        try:
            return self._hosts[host]
        except KeyError:
            raise errors.NotFound(f"this compute agent does not serve host {host!r}") from None

    async def _db(self, fn: Callable[_P, _T], *args: _P.args, **kwargs: _P.kwargs) -> _T:
        return await asyncio.to_thread(fn, *args, **kwargs)

    def _next_seq(self) -> int:
        self._seq += 1
        return self._seq

    @asynccontextmanager
    async def _lock(self, instance_id: str) -> AsyncIterator[None]:
        entry = self._locks.get(instance_id)
        if entry is None:
            entry = self._locks[instance_id] = _LockEntry()
        entry.users += 1
        try:
            async with entry.lock:
                yield
        finally:
            entry.users -= 1
            if entry.users == 0:
                del self._locks[instance_id]

    def _busy(self, h: _HostState, instance_id: str) -> bool:
        """An RPC is working on the instance (the periodic tasks leave it alone)."""
        return instance_id in self._locks or instance_id in h.building

    async def _serving(self) -> None:
        if self._closing:
            raise errors.Unavailable("the compute agent is stopping")
        if not self._ready.is_set():
            await self._ready.wait()

    def add_cleanup(self, callback: Callable[[], Awaitable[object]]) -> None:
        """Something close() awaits last (closing clients, the database...)."""
        self._cleanups.append(callback)

    # ---- start-up ------------------------------------------------------------------

    def inventories(self, host: str) -> dict[str, records.Inventory]:
        """The host's inventory: totals from the driver, reserved amounts and
        allocation ratios from the options, as Nova's libvirt driver reports it
        (min_unit 1, max_unit total, step 1)."""
        info = self._info(self._host(host))
        o = self.options
        disk_reserved = math.ceil(o.reserved_host_disk_mb / 1024)
        return {
            "VCPU": records.Inventory(total=info.vcpus, reserved=o.reserved_host_cpus,
                                      max_unit=info.vcpus, allocation_ratio=o.cpu_allocation_ratio),
            "MEMORY_MB": records.Inventory(total=info.memory_mb, reserved=o.reserved_host_memory_mb,
                                           max_unit=info.memory_mb,
                                           allocation_ratio=o.ram_allocation_ratio),
            "DISK_GB": records.Inventory(total=info.disk_gb, reserved=disk_reserved,
                                         max_unit=max(info.disk_gb, 1),
                                         allocation_ratio=o.disk_allocation_ratio),
        }

    @staticmethod
    def _info(h: _HostState) -> HostInfo:
        if h.info is None:
            raise errors.Unavailable(f"host {h.name} is not started yet")
        return h.info

    async def start(self) -> None:
        """Register every host, reload local claims and reconcile the guests the
        hypervisors run with the servers the database places here. RPCs that
        arrive meanwhile wait for it."""
        limit = asyncio.Semaphore(_START_CONCURRENCY)

        async def one(h: _HostState) -> None:
            async with limit:
                await self._start_host(h)

        await asyncio.gather(*(one(h) for h in self._hosts.values()))
        self._ready.set()
        LOG.info("compute agent serving %d host(s) at %s", len(self._hosts), self.endpoint)

    async def _start_host(self, h: _HostState) -> None:
        h.info = await asyncio.to_thread(h.driver.host_info)
        svc = await self._db(self.db.register_service, h.name, "compute", endpoint=self.endpoint)
        h.service_id = svc.id
        invs = self.inventories(h.name)
        info = h.info
        provider = await self._db(
            self.db.upsert_host, h.name, inventories=invs, service_id=svc.id,
            hypervisor_type=info.hypervisor_type, hypervisor_version=int(info.hypervisor_version),
            cpu_info=dict(info.cpu_info),
            supported_instances=[list(t) for t in info.supported_instances])
        h.uuid = provider.uuid
        await self._db(self.db.set_reported_traits, h.uuid, info.traits | self.options.cpu_traits)
        if self.options.networks_path is not None:
            await self._register_networks(self.options.networks_path)

        self.claims.add_host(Host(name=h.name, uuid=h.uuid, vcpu=invs["VCPU"],
                                  memory_mb=invs["MEMORY_MB"], disk_gb=invs["DISK_GB"]))
        await self._recover(h)

    async def _register_networks(self, path: Path) -> None:
        """Nova's flat networks: a host with a network's bridge reports it, and the
        conductor hands out fixed IPs on it (an unknown one is created)."""
        for net in await asyncio.to_thread(linux_net.host_networks, path):
            await self._db(self.db.register_network, name=net.name, cidr=net.cidr,
                           gateway=net.gateway, bridge=net.bridge, dhcp_server=net.dhcp_server)
            LOG.info("network %s: bridge %s, %s", net.name, net.bridge, net.cidr)

    async def _recover(self, h: _HostState) -> None:
        """After a (re)start: a build the restart interrupted fails (ERROR, as Nova's
        _init_instance does); every server placed here is tracked and claimed again;
        then the power states are synced and orphaned guests reaped."""
        since = self._seq
        guests = dict(await asyncio.to_thread(h.driver.list_instances))
        placed = await self._db(self._placed, h.name)
        held = await self._db(self._held, h.uuid)
        interrupted = [i for i in placed if i.vm_state == VmState.BUILDING]
        for inst in interrupted:
            LOG.warning("server %s on %s was building when the agent stopped: ERROR", inst.id, h.name)
            await self._db(
                self.db.update_instance, inst.id, expected_vm_state=VmState.BUILDING,
                vm_state=VmState.ERROR, task_state=None,
                power_state=int(guests.get(inst.id, PowerState.NOSTATE)),
                fault=records.NewFault(500, f"Build of instance {inst.id} was interrupted: the "
                                            f"compute agent of host {h.name} restarted"))
        if interrupted:
            placed = await self._db(self._placed, h.name)
        moves = await self._db(self.db.list_migrations, host=h.name, open_only=True)
        if await self._clean_evacuated(h, guests, moves) | await self._restore_stranded(
                h, placed, guests, moves):
            guests = dict(await asyncio.to_thread(h.driver.list_instances))
            held = await self._db(self._held, h.uuid)
            moves = await self._db(self.db.list_migrations, host=h.name, open_only=True)
        await self._reconcile(h, placed, held, guests, since, moves)
        await self._sync(h, guests, placed, moves)
        await self.update_host(h.name)

    def _placed(self, host: str) -> list[records.Instance]:
        """Every live server the database places on the host (blocking)."""
        out: list[records.Instance] = []
        marker = None
        while True:
            page = self.db.list_instances(host=host, limit=_PAGE, marker=marker)
            out.extend(page.instances)
            if page.next_marker is None:
                return out
            marker = page.next_marker

    def _held(self, provider_uuid: str) -> dict[str, dict[str, int]]:
        """consumer -> its allocation on the provider (blocking)."""
        out: dict[str, dict[str, int]] = {}
        for a in self.db.list_allocations(provider_uuid):
            out.setdefault(a.consumer_uuid, {})[a.resource_class] = a.used
        return out

    async def _flavor_of(self, flavor_id: str) -> records.Flavor:
        """A flavor by id, deleted ones too (a move's old or new flavor)."""
        try:
            return await self._db(self.db.get_flavor, flavor_id, include_deleted=True)
        except errors.NotFound:
            return records.Flavor(name="", id=flavor_id, vcpus=1, memory_mb=1)

    async def _flavor(self, inst: records.Instance) -> records.Flavor:
        swap = self._flavor_swap.get(inst.flavor_id)
        if swap is None:
            try:
                flavor = await self._db(self.db.get_flavor, inst.flavor_id, include_deleted=True)
                swap = flavor.swap
            except errors.NotFound:
                swap = 0
            self._flavor_swap[inst.flavor_id] = swap
        return records.Flavor(name="", id=inst.flavor_id, vcpus=inst.vcpus, memory_mb=inst.memory_mb,
                              root_gb=inst.root_gb, ephemeral_gb=inst.ephemeral_gb, swap=swap)

    # ---- tracking (Nova's resource tracker) ----------------------------------------

    def _track(self, h: _HostState, instance_id: str, flavor: records.Flavor,
               amounts: Mapping[str, int], *, force: bool) -> None:
        """Count the instance on the host and claim it locally. A claim that does not
        fit raises PlacementError, unless ``force`` (a server already placed here:
        counted anyway, logged)."""
        if amounts:
            try:
                if instance_id in self._claimed:
                    self.claims.replace(instance_id, {h.name: dict(amounts)})
                else:
                    self.claims.claim(instance_id, {h.name: dict(amounts)})
                self._claimed[instance_id] = h.name
            except PlacementError:
                if not force:
                    raise
                LOG.warning("server %s on %s is beyond the host's capacity", instance_id, h.name)
        h.tracked[instance_id] = _Usage(flavor.vcpus, flavor.memory_mb, flavor.disk_mb,
                                        self._next_seq())

    def _untrack(self, h: _HostState, instance_id: str) -> None:
        h.tracked.pop(instance_id, None)
        if self._claimed.get(instance_id) == h.name:
            del self._claimed[instance_id]
            self.claims.release(instance_id)

    async def _reconcile(self, h: _HostState, placed: list[records.Instance],
                         held: Mapping[str, Mapping[str, int]], guests: Mapping[str, int],
                         since: int, moves: Iterable[records.Migration] = ()) -> None:
        """Make the tracked set match what the database and the hypervisor say (read
        after ``since``): Nova's update_available_resource. A move in progress
        counts on both of its hosts, as Nova's resource tracker counts migrations:
        its migration (the old flavor) on the source, its instance (the new one)
        on the destination before the instance's host changes."""
        moving: dict[str, str] = {}  # consumer -> its flavor's id
        for m in moves:
            if m.source_host == h.name and m.id in held:
                moving[m.id] = m.old_flavor_id
            if m.dest_host == h.name and m.instance_id in held:
                moving[m.instance_id] = m.new_flavor_id
        here = {i.id for i in placed} | set(moving)
        h.dropped &= here  # the database has caught up with those
        for inst in placed:
            iid = inst.id
            if iid in h.tracked or iid in h.dropped or iid in h.building:
                continue
            if iid not in held and iid not in guests:
                continue  # neither a claim nor a guest here: not on this host after all
            flavor = await self._flavor(inst)
            if iid in h.tracked or iid in h.dropped or iid in h.building:
                continue  # changed while the flavor was read
            self._track(h, iid, flavor, held.get(iid) or flavor.amounts(), force=True)
        for consumer, flavor_id in moving.items():
            if consumer in h.tracked or consumer in h.dropped or consumer in h.building:
                continue
            flavor = await self._flavor_of(flavor_id)
            if consumer in h.tracked or consumer in h.dropped or consumer in h.building:
                continue
            self._track(h, consumer, flavor, held[consumer], force=True)
        for iid, usage in list(h.tracked.items()):
            if usage.seq > since or iid in h.building:
                continue  # tracked after the reads: they cannot know it
            if iid not in here or (iid not in held and iid not in guests):
                LOG.info("server %s is no longer on %s", iid, h.name)
                self._untrack(h, iid)

    def view(self, host: str) -> ComputeView:
        """The compute view as Nova's resource tracker computes it: used = reserved +
        the tracked servers' flavors; free = total - used (no ratio, may be
        negative); disk in MiB (root + ephemeral + swap)."""
        h = self._host(host)
        info = self._info(h)
        o = self.options
        tracked = h.tracked.values()
        memory_used = o.reserved_host_memory_mb + sum(u.memory_mb for u in tracked)
        disk_used_mb = o.reserved_host_disk_mb + sum(u.disk_mb for u in tracked)
        return ComputeView(
            vcpus_used=o.reserved_host_cpus + sum(u.vcpus for u in tracked),
            free_ram_mb=info.memory_mb - memory_used,
            free_disk_mb=info.disk_gb * 1024 - disk_used_mb,
            num_instances=len(h.tracked),
            num_io_ops=len(h.building),
            failed_builds=h.failed_builds,
        )

    def tracked(self, host: str) -> frozenset[str]:
        """The servers counted on the host."""
        return frozenset(self._host(host).tracked)

    async def _write_views(self, views: dict[str, ComputeView]) -> None:
        try:
            await self._db(self.db.set_compute_views, views)
        except Exception:
            if len(views) == 1:
                raise
            # one host's failure (gone from the database, say) must not hold back
            # the others' views: write them one by one
            for name, view in views.items():
                try:
                    await self._db(self.db.set_compute_views, {name: view})
                except Exception:  # noqa: BLE001 - logged; the periodic update retries
                    LOG.warning("could not write the compute view of %s", name, exc_info=True)

    async def update_host(self, host: str) -> None:
        """Write the host's compute view now and tell the scheduler (coalesced with
        other changes of the host: returns once a write that started after this
        call is in the database)."""
        self._host(host)
        await self._reporter.request(host)

    async def views_written(self) -> None:
        """Return once the compute views of every change so far (a build's, which
        is written shortly after it) are in the database."""
        await self._reporter.settled()

    async def update_available_resource(self, host: str, *, wait: bool = True) -> None:
        """The periodic recount (Nova's update_available_resource): reconcile the
        tracked servers with the database and the hypervisor, then write and report
        (``wait``: return once written; else the write joins the other hosts')."""
        h = self._host(host)
        since = self._seq
        guests = dict(await asyncio.to_thread(h.driver.list_instances))
        placed = await self._db(self._placed, h.name)
        held = await self._db(self._held, h.uuid)
        moves = await self._db(self.db.list_migrations, host=h.name, open_only=True)
        await self._reconcile(h, placed, held, guests, since, moves)
        await self._reporter.request(host, wait=wait)

    async def heartbeat(self) -> None:
        for h in self._hosts.values():
            if h.service_id is None:
                continue
            try:
                await self._db(self.db.heartbeat, h.service_id)
            except errors.NotFound:  # the service row went away: register again
                svc = await self._db(self.db.register_service, h.name, "compute",
                                     endpoint=self.endpoint)
                h.service_id = svc.id

    async def periodic(self, *, sync: bool = True, recount: bool = True) -> None:
        """One round of the periodic tasks: heartbeats, then (unless told not to) the
        power sync and the recount with its usage reports."""
        await self.heartbeat()
        if not (sync or recount):
            return
        for host in self._hosts:
            try:
                if sync:
                    await self.sync_power_states(host)
                if recount:
                    # the views of every host in a few transactions, not one each
                    await self.update_available_resource(host, wait=False)
            except Exception:  # noqa: BLE001 - one host must not stop the others
                LOG.warning("periodic task failed for %s", host, exc_info=True)
        await self._reporter.settled()

    def start_periodic(self, interval: float, *, sync_every: float = 0.0,
                       recount_every: float = 0.0) -> None:
        """Run periodic() every ``interval`` seconds in the background until close():
        the heartbeat each time, the power sync and the recount once ``sync_every`` /
        ``recount_every`` seconds have passed since their last run (0: every round;
        math.inf: never)."""
        if self._periodic_task is not None:
            raise RuntimeError("the periodic task is already running")
        loop_time = asyncio.get_running_loop().time
        last = {"sync": loop_time(), "recount": loop_time()}  # start() just did both

        def due(task: str, every: float) -> bool:
            if loop_time() - last[task] >= every - interval / 2:
                last[task] = loop_time()
                return True
            return False

        async def loop() -> None:
            while True:
                await asyncio.sleep(interval)
                try:
                    await self.periodic(sync=due("sync", sync_every),
                                        recount=due("recount", recount_every))
                except Exception:  # noqa: BLE001 - the next round tries again
                    LOG.warning("compute periodic task failed", exc_info=True)

        self._periodic_task = asyncio.get_running_loop().create_task(loop(), name="compute-periodic")

    async def close(self) -> None:
        """Stop the periodic task, let the last view writes finish, run the cleanups
        and close the drivers. New calls get Unavailable. Call it after the gRPC
        server stopped (builds in flight have finished then)."""
        self._closing = True
        task, self._periodic_task = self._periodic_task, None
        if task is not None:
            task.cancel()
            with suppress(asyncio.CancelledError):
                await task
        await self._reporter.close(_CLOSE_TIMEOUT)
        for cleanup in reversed(self._cleanups):
            try:
                await cleanup()
            except Exception:  # noqa: BLE001 - close the rest anyway
                LOG.warning("compute agent cleanup failed", exc_info=True)
        for h in self._hosts.values():
            await asyncio.to_thread(h.driver.close)

    # ---- building and deleting -----------------------------------------------------

    async def build(self, host: str, instance_id: str, name: str, flavor: records.Flavor,
                    image: records.Image | None, allocation: Mapping[str, int], *,
                    group_id: str | None = None,
                    guest: records.GuestConfig | None = None) -> int:
        """Claim locally (``allocation``, what the scheduler claimed here; the
        flavor's resources if empty), spawn, start. Returns the power state.
        BuildFailed (ComputeResourcesUnavailable for a claim that does not fit,
        GroupAffinityViolation when the server group ``group_id``'s policy forbids
        this host) when the guest cannot be built here; Invalid for a malformed
        request; NotFound for a host this agent does not serve. A repeated build
        of a server already running here returns its power state."""
        h = self._host(host)
        _check_instance_id(instance_id, "server.id")
        if group_id is not None:
            _check_instance_id(group_id, "group_id")
        _check_flavor(flavor)
        amounts = _check_allocation(allocation) or flavor.amounts()
        if guest is not None:
            _check_guest(guest)
        await self._serving()
        async with self._build_slot(host), self._lock(instance_id):
            if instance_id in h.tracked:
                try:
                    power = await asyncio.to_thread(h.driver.power_state, instance_id)
                except DriverError:
                    pass  # counted from the database, not built yet (or libvirt is down:
                    # the build below says so)
                else:
                    LOG.info("server %s already runs on %s", instance_id, host)
                    return int(power)
            return await self._build(h, instance_id, name or instance_id, flavor, image, amounts,
                                     group_id, guest)

    @asynccontextmanager
    async def _build_slot(self, host: str) -> AsyncIterator[None]:
        limit = self.options.max_concurrent_builds
        if limit <= 0:
            yield
            return
        slots = self._builds.get(host)
        if slots is None:
            slots = self._builds[host] = asyncio.Semaphore(limit)
        async with slots:
            yield

    async def _build(self, h: _HostState, instance_id: str, name: str, flavor: records.Flavor,
                     image: records.Image | None, amounts: Mapping[str, int],
                     group_id: str | None, guest: records.GuestConfig | None) -> int:
        h.dropped.discard(instance_id)
        h.building.add(instance_id)
        try:
            if group_id is None:
                self._claim(h, instance_id, flavor, amounts)
            else:
                # the check and the claim under one lock on the group: of two
                # members racing to this host, the second sees the first
                async with self._lock(f"group {group_id}"):
                    await self._check_group_policy(h, instance_id, group_id)
                    self._claim(h, instance_id, flavor, amounts)
            if h.name in self.options.fail_builds_on:
                raise errors.BuildFailed(f"build failure injected on host {h.name} (fail_builds_on)")
            await asyncio.to_thread(
                h.driver.spawn, instance_id, name, flavor.vcpus, flavor.memory_mb, flavor.root_gb,
                image.path if image is not None else None,
                image.disk_format if image is not None else "qcow2", guest)
            power = int(await asyncio.to_thread(h.driver.power_state, instance_id))
        except asyncio.CancelledError:
            # the caller went away (or the agent is stopping): no guest stays behind
            # untracked for long; the periodic reap destroys it if it was spawned
            self._untrack(h, instance_id)
            h.dropped.add(instance_id)
            h.building.discard(instance_id)
            await self._reporter.request(h.name, wait=False)
            raise
        except Exception as e:  # noqa: BLE001 - any failure reschedules, as in Nova
            self._untrack(h, instance_id)
            h.dropped.add(instance_id)
            failure = await self._build_failure(h, instance_id, e)
            h.building.discard(instance_id)
            if isinstance(failure, errors.GroupAffinityViolation):
                # the host is fine, the race is not its fault (Nova's FAILED_BY_POLICY)
                await self._reporter.request(h.name, wait=False)
            else:
                await self._build_failed(h)
            raise failure from None
        h.building.discard(instance_id)
        h.failed_builds = 0
        # The view is derived (the allocation, already claimed, is what counts; the
        # periodic recount rebuilds the view): written and reported shortly, together
        # with the other builds', without holding up this one's answer.
        await self._reporter.request(h.name, wait=False)
        return power

    def _claim(self, h: _HostState, instance_id: str, flavor: records.Flavor,
               amounts: Mapping[str, int]) -> None:
        try:
            self._track(h, instance_id, flavor, amounts, force=False)
        except PlacementError as e:
            raise errors.ComputeResourcesUnavailable(
                f"Insufficient compute resources on host {h.name}: {e}") from None

    async def _check_group_policy(self, h: _HostState, instance_id: str, group_id: str) -> None:
        """Nova's _validate_instance_group_policy, the late check: the scheduler
        placed the server by what it knew, and another build of the group may
        have raced it here. Anti-affinity: the members this host counts (those
        this agent tracks, claimed under this same lock, and those settled here)
        must stay below max_server_per_host. Affinity: the other members' hosts,
        when there are any, must include this one (a check across hosts, racy
        between agents as Nova's is)."""
        try:
            group, members = await self._db(self.db.server_group_placement, group_id)
        except errors.NotFound:
            return  # deleted meanwhile: no policy to keep
        others = {m: placed for m, placed in members.items() if m != instance_id}
        if group.policy == "anti-affinity":
            here = sorted(m for m, (host, vm) in others.items()
                          if m in h.tracked or (host == h.name and vm != VmState.BUILDING))
            limit = group.max_server_per_host or 1
            if len(here) >= limit:
                raise errors.GroupAffinityViolation(
                    f"Anti-affinity instance group policy was violated: host {h.name} already "
                    f"has {len(here)} member(s) of server group {group_id} (at most {limit}): "
                    f"{', '.join(here)}")
        elif group.policy == "affinity":
            hosts = sorted({host for host, _ in others.values() if host})
            if hosts and h.name not in hosts:
                raise errors.GroupAffinityViolation(
                    f"Affinity instance group policy was violated: the other members of server "
                    f"group {group_id} are on {', '.join(hosts)}, not {h.name}")

    async def _build_failure(self, h: _HostState, instance_id: str, e: Exception) -> errors.BuildFailed:
        """The BuildFailed to raise for ``e``, after cleaning up what it left."""
        if isinstance(e, errors.BuildFailed):
            LOG.info("build of %s on %s failed: %s", instance_id, h.name, e)
            return e
        if isinstance(e, DriverError):
            if not isinstance(e, (SpawnFailed, InstanceExists)):
                # SpawnFailed leaves nothing behind; anything else might have
                await self._destroy_quietly(h, instance_id)
            LOG.warning("build of %s on %s failed: %s", instance_id, h.name, e)
            return errors.BuildFailed(str(e))
        LOG.error("build of %s on %s failed unexpectedly", instance_id, h.name, exc_info=e)
        await self._destroy_quietly(h, instance_id)
        return errors.BuildFailed(f"unexpected error building {instance_id} on {h.name}: {e!r}")

    async def _destroy_quietly(self, h: _HostState, instance_id: str) -> None:
        try:
            await asyncio.to_thread(h.driver.destroy, instance_id)
        except Exception:  # noqa: BLE001 - best effort; the periodic reap retries
            LOG.warning("could not clean up %s on %s", instance_id, h.name, exc_info=True)

    async def _build_failed(self, h: _HostState) -> None:
        """Nova's _build_failed: count it; at the threshold the host disables itself
        and the count starts afresh (for when an admin enables it again)."""
        h.failed_builds += 1
        threshold = self.options.consecutive_build_service_disable_threshold
        if threshold and h.failed_builds >= threshold:
            LOG.error("disabling %s after %d consecutive build failures", h.name, h.failed_builds)
            try:
                await self._db(self.db.disable_service, h.name, "compute",
                               reason=f"Auto-disabled due to {h.failed_builds} build failures")
            except Exception:  # noqa: BLE001 - the count is still reported
                LOG.warning("could not disable %s", h.name, exc_info=True)
            else:
                h.failed_builds = 0
        await self.update_host(h.name)

    async def delete(self, host: str, instance_id: str) -> None:
        """Destroy the guest (disk and all) and drop its local claim. A guest the host
        does not have is fine, so a retry is safe."""
        h = self._host(host)
        _check_instance_id(instance_id, "server_id")
        await self._serving()
        async with self._lock(instance_id):
            try:
                await asyncio.to_thread(h.driver.destroy, instance_id)
            except HypervisorUnavailable as e:
                raise errors.Unavailable(str(e)) from None
            self._untrack(h, instance_id)
            h.dropped.add(instance_id)
        await self.update_host(host)

    # ---- moves ---------------------------------------------------------------------
    #
    # The conductor drives a move step by step and repeats a step after a crash:
    # each one here finds its own work done and does not do it twice. While a
    # move is open its instance counts on both hosts (see _reconcile): as the
    # migration (the old flavor) on the source, as the instance (the new one) on
    # the destination.

    async def prepare_move(self, host: str, instance_id: str, flavor: records.Flavor,
                           allocation: Mapping[str, int], migration_id: str) -> None:
        """The destination's claim before the source stops its guest (Nova's
        prep_resize and resize claim): ComputeResourcesUnavailable when the new
        flavor does not fit here."""
        h = self._host(host)
        _check_instance_id(instance_id, "server_id")
        _check_instance_id(migration_id, "migration_id")
        _check_flavor(flavor)
        amounts = _check_allocation(allocation) or flavor.amounts()
        await self._serving()
        async with self._lock(instance_id):
            source = self._claimed.get(instance_id)
            if source is not None and source != h.name:
                # the source is a host of this agent too: its part is the migration's now
                self._rekey(self._hosts[source], instance_id, migration_id)
            h.dropped.discard(instance_id)
            try:
                self._track(h, instance_id, flavor, amounts, force=False)
            except PlacementError as e:
                if source is not None and source != h.name:
                    self._rekey(self._hosts[source], migration_id, instance_id)
                raise errors.ComputeResourcesUnavailable(
                    f"Insufficient compute resources on host {h.name}: {e}") from None
        await self.update_host(host)

    async def migrate_out(self, host: str, instance_id: str, migration_id: str, *,
                          live: bool) -> str:
        """The source's half (Nova's migrate_disk_and_power_off; ``live``: the
        guest's memory saved first, to carry on where it stopped): the guest set
        aside, what it holds here the migration's. Returns where the destination
        copies the disk from."""
        h = self._host(host)
        _check_instance_id(instance_id, "server_id")
        _check_instance_id(migration_id, "migration_id")
        await self._serving()
        async with self._lock(instance_id):
            stash = await self._driver_step(h, instance_id, "migrate", lambda d: d.migrate_disk_and_power_off(
                instance_id, live=live))
            self._rekey(h, instance_id, migration_id)
        await self.update_host(host)
        return str(stash)

    async def finish_move(self, host: str, instance_id: str, name: str, flavor: records.Flavor,
                          image: records.Image | None, source: str, *, power_on: bool,
                          guest: records.GuestConfig | None = None) -> int:
        """The destination's half (Nova's finish_migration): the disk copied from
        ``source``, the guest defined with ``flavor`` and what it was given
        (``guest``: its NICs, config drive and kernel) and started (or restored
        as it was, for a live move). Returns its power state."""
        h = self._host(host)
        _check_instance_id(instance_id, "server_id")
        _check_flavor(flavor)
        if not source:
            raise errors.Invalid("source", "required: where the source set the guest aside")
        if guest is not None:
            _check_guest(guest)
        await self._serving()
        async with self._lock(instance_id):
            if instance_id not in h.tracked:  # the claim was made before a restart
                self._track(h, instance_id, flavor, flavor.amounts(), force=True)
            def finish(d: Driver) -> int:
                d.finish_migration(instance_id, name or instance_id, flavor.vcpus, flavor.memory_mb,
                                   flavor.root_gb, source=source, power_on=power_on,
                                   image_path=image.path if image is not None else None,
                                   guest=guest)
                return d.power_state(instance_id)
            power = await self._driver_step(h, instance_id, "finish", finish)
        await self.update_host(host)
        return int(power)

    async def revert_move(self, host: str, instance_id: str, migration_id: str, *,
                          power_on: bool) -> int:
        """A revert or rollback on the source (Nova's finish_revert_resize): the
        guest set aside is back, started if ``power_on`` (restored as it was after
        a live move), counted as the instance's again. Returns its power state."""
        h = self._host(host)
        _check_instance_id(instance_id, "server_id")
        _check_instance_id(migration_id, "migration_id")
        await self._serving()
        async with self._lock(instance_id):
            def revert(d: Driver) -> int:
                d.finish_revert_migration(instance_id, power_on=power_on)
                return d.power_state(instance_id)
            power = await self._driver_step(h, instance_id, "revert", revert)
            self._rekey(h, migration_id, instance_id)
        await self.update_host(host)
        return int(power)

    async def confirm_move(self, host: str, instance_id: str, migration_id: str) -> None:
        """A confirm on the source (Nova's confirm_migration): what was set aside
        removed, the migration no longer counted here."""
        h = self._host(host)
        _check_instance_id(instance_id, "server_id")
        _check_instance_id(migration_id, "migration_id")
        await self._serving()
        async with self._lock(instance_id):
            await self._driver_step(h, instance_id, "confirm",
                                    lambda d: d.confirm_migration(instance_id))
            self._untrack(h, migration_id)
            h.dropped.add(migration_id)
        await self.update_host(host)

    async def rebuild(self, host: str, instance_id: str, name: str, flavor: records.Flavor,
                      image: records.Image | None, allocation: Mapping[str, int], *,
                      power_on: bool, guest: records.GuestConfig | None = None) -> int:
        """Nova's rebuild_instance, for a rebuild on the same host, an evacuation
        to a new one and an offloaded server's unshelve: whatever guest the
        instance has here destroyed, a new one spawned from ``image`` with what
        it is given (``guest``), claimed here first (an evacuation, an unshelve),
        left stopped unless ``power_on``. Returns its power state."""
        h = self._host(host)
        _check_instance_id(instance_id, "server_id")
        _check_flavor(flavor)
        amounts = _check_allocation(allocation) or flavor.amounts()
        if guest is not None:
            _check_guest(guest)
        await self._serving()
        async with self._build_slot(host), self._lock(instance_id):
            h.dropped.discard(instance_id)
            try:
                self._track(h, instance_id, flavor, amounts, force=instance_id in h.tracked)
            except PlacementError as e:
                raise errors.ComputeResourcesUnavailable(
                    f"Insufficient compute resources on host {h.name}: {e}") from None
            h.building.add(instance_id)
            try:
                await self._driver_step(h, instance_id, "rebuild", lambda d: d.destroy(instance_id))
                await self._driver_step(h, instance_id, "rebuild", lambda d: d.spawn(
                    instance_id, name or instance_id, flavor.vcpus, flavor.memory_mb, flavor.root_gb,
                    image.path if image is not None else None,
                    image.disk_format if image is not None else "qcow2", guest))
                if not power_on:
                    await self._driver_step(h, instance_id, "rebuild",
                                            lambda d: d.power_off(instance_id))
                power = await self._driver_step(h, instance_id, "rebuild",
                                                lambda d: d.power_state(instance_id))
            finally:
                h.building.discard(instance_id)
        await self.update_host(host)
        return int(power)

    async def shelve(self, host: str, instance_id: str) -> tuple[int, str | None]:
        """Nova's shelve_instance: the guest powered off and its disk copied to a
        snapshot (a real guest's; a simulated one has no disk). Returns its power
        state and the snapshot's path (None without one)."""
        h = self._host(host)
        _check_instance_id(instance_id, "server_id")
        await self._serving()

        def shelve(d: Driver) -> tuple[int, str | None]:
            d.power_off(instance_id)
            return int(d.power_state(instance_id)), d.snapshot(instance_id)
        async with self._lock(instance_id):
            power, snapshot = await self._driver_step(h, instance_id, "shelve", shelve)
        await self.update_host(host)
        return power, snapshot

    async def _driver_step(self, h: _HostState, instance_id: str, what: str,
                           fn: Callable[[Driver], _T]) -> _T:
        """A driver call of a move, its failures as the conductor acts on them:
        NotFound (no such guest), Unavailable (libvirt down: try again), BuildFailed
        (the step failed: undo the move)."""
        if self.options.move_step_delay:
            await asyncio.sleep(self.options.move_step_delay)
        try:
            return await asyncio.to_thread(fn, h.driver)
        except InstanceNotFound:
            raise errors.NotFound(f"server {instance_id} has no guest on host {h.name}") from None
        except HypervisorUnavailable as e:
            raise errors.Unavailable(str(e)) from None
        except DriverError as e:
            raise errors.BuildFailed(f"{what} of {instance_id} on {h.name} failed: {e}") from None

    def _rekey(self, h: _HostState, old: str, new: str) -> None:
        """What ``old`` counts on the host (its usage and local claim) becomes
        ``new``'s: an instance's becomes its migration's when it moves off, and back
        when the move is undone."""
        usage = h.tracked.pop(old, None)
        if usage is None:
            return
        amounts: dict[str, int] | None = None
        if self._claimed.get(old) == h.name:
            amounts = self.claims.allocations(old).get(h.name)
            del self._claimed[old]
            self.claims.release(old)
        if amounts:
            if new in self._claimed:
                self.claims.replace(new, {h.name: amounts})
            else:
                self.claims.claim(new, {h.name: amounts})
            self._claimed[new] = h.name
        h.tracked[new] = replace(usage, seq=self._next_seq())
        h.dropped.discard(new)

    async def _restore_stranded(self, h: _HostState, placed: Iterable[records.Instance],
                                guests: Mapping[str, int],
                                moves: Iterable[records.Migration]) -> bool:
        """A guest a move set aside here that nobody came back for (the move was
        given up while this agent was unreachable: its server is here, in ERROR,
        with no move open): defined again, stopped, so that the server can be
        started (a hard reboot) rather than lost. Returns whether it did any."""
        moving = {m.instance_id for m in moves}
        restored = False
        for inst in placed:
            if inst.id in guests or inst.id in moving or self._busy(h, inst.id):
                continue
            if not await asyncio.to_thread(h.driver.has_stash, inst.id):
                continue
            LOG.warning("server %s: its guest was set aside on %s by a move given up; "
                        "defining it again, stopped", inst.id, h.name)
            async with self._lock(inst.id):
                await asyncio.to_thread(h.driver.finish_revert_migration, inst.id, power_on=False)
            restored = True
        return restored

    async def _clean_evacuated(self, h: _HostState, guests: Mapping[str, int],
                               moves: Iterable[records.Migration]) -> bool:
        """Nova's _destroy_evacuated_instances: a host back from the dead destroys
        the guests of servers evacuated from it (two copies must never run), and
        once an evacuation is done releases what its migration held here.
        Returns whether it changed anything."""
        changed = settled = False
        for m in moves:
            if m.migration_type != "evacuation" or m.source_host != h.name:
                continue
            if m.instance_id in guests and not self._busy(h, m.instance_id):
                LOG.warning("destroying guest %s on %s: its server was evacuated",
                            m.instance_id, h.name)
                async with self._lock(m.instance_id):
                    await asyncio.to_thread(h.driver.destroy, m.instance_id)
                    self._untrack(h, m.instance_id)
                changed = True
            if m.status == "done":
                await self._db(self.db.complete_evacuation, m.id)
                self._untrack(h, m.id)
                changed = settled = True
        if settled:
            await self.update_host(h.name)
        return changed

    # ---- lifecycle actions ---------------------------------------------------------

    # What the hypervisor does for each lifecycle action (objects/lifecycle.py has the
    # states around it). Soft reboot: ACPI shutdown and start, hard after the driver's
    # timeout (as Nova); suspend: libvirt's managed save (the guest's memory to disk,
    # as Nova), power state SHUTDOWN while the vm_state (SUSPENDED) is the conductor's.
    HYPERVISOR_CALLS: Mapping[str, Callable[[Driver, str], object]] = {
        "reboot_soft": lambda d, i: d.reboot(i, False),
        "reboot_hard": lambda d, i: d.reboot(i, True),
        "stop": lambda d, i: d.power_off(i),
        "start": lambda d, i: d.power_on(i),
        "pause": lambda d, i: d.pause(i),
        "unpause": lambda d, i: d.unpause(i),
        "suspend": lambda d, i: d.suspend(i),
        "resume": lambda d, i: d.resume(i),
        "rescue": lambda d, i: d.rescue(i),
        "unrescue": lambda d, i: d.unrescue(i),
    }

    async def run_action(self, host: str, instance_id: str, action: str) -> int:
        """Run a lifecycle action's hypervisor part; returns the power state after it."""
        call = self.HYPERVISOR_CALLS.get(action)
        if call is None:
            raise errors.Invalid("action", f"unknown action {action!r}")
        return await self._act(host, instance_id, action.replace("_", " "),
                               lambda d: call(d, instance_id))

    async def _act(self, host: str, instance_id: str, action: str,
                   fn: Callable[[Driver], object]) -> int:
        h = self._host(host)
        _check_instance_id(instance_id, "server_id")
        await self._serving()
        async with self._lock(instance_id):
            try:
                await asyncio.to_thread(fn, h.driver)
                power = await asyncio.to_thread(h.driver.power_state, instance_id)
            except InstanceNotFound:
                raise errors.NotFound(f"server {instance_id} has no guest on host {host}") from None
            except ActionFailed as e:
                raise errors.InvalidState(f"cannot {action} server {instance_id}: {e.reason}") from None
            except HypervisorUnavailable as e:
                raise errors.Unavailable(str(e)) from None
        LOG.info("%s of %s on %s: power state %s", action, instance_id, host,
                 PowerState.name_of(int(power)))
        return int(power)

    async def console_output(self, host: str, instance_id: str) -> str:
        """The end of the guest's serial console log (the driver's last 100 KiB)."""
        h = self._host(host)
        _check_instance_id(instance_id, "server_id")
        await self._serving()
        try:
            return await asyncio.to_thread(h.driver.console_output, instance_id)
        except InstanceNotFound:
            raise errors.NotFound(f"server {instance_id} has no guest on host {host}") from None
        except HypervisorUnavailable as e:
            raise errors.Unavailable(str(e)) from None

    # ---- power state sync (Nova's _sync_power_states) ------------------------------

    async def sync_power_states(self, host: str) -> None:
        """Nova's _sync_power_states for one host: the database's power state follows
        the hypervisor's; a server ACTIVE whose guest shut down (or crashed, or
        pm-suspended) by itself is stopped (STOPPED/SHUTDOWN), a STOPPED one whose
        guest runs is forced off, a PAUSED one whose guest shut down is stopped; a
        missing guest only sets NOSTATE. Servers with a task in flight are left
        alone. Guests whose server was deleted, or is now on another host, are
        destroyed."""
        h = self._host(host)
        guests = dict(await asyncio.to_thread(h.driver.list_instances))
        placed = await self._db(self._placed, host)
        moves = await self._db(self.db.list_migrations, host=host, open_only=True)
        await self._clean_evacuated(h, guests, moves)
        await self._sync(h, guests, placed, moves)

    async def _sync(self, h: _HostState, guests: Mapping[str, int],
                    placed: list[records.Instance],
                    moves: Iterable[records.Migration] = ()) -> None:
        # a guest arriving by a move is the conductor's until its server's host
        # changes (or the move is undone): neither synced nor reaped
        # (an evacuation's source is a host that was down: what it still runs goes)
        arriving = {m.instance_id for m in moves
                    if m.dest_host == h.name or m.migration_type != "evacuation"}
        for inst in placed:
            if inst.task_state is not None or self._busy(h, inst.id) or inst.id in arriving:
                continue  # "During sync_power_state the instance has a pending task"
            try:
                await self._sync_instance(h, inst, int(guests.get(inst.id, PowerState.NOSTATE)))
            except Exception:  # noqa: BLE001 - the next round tries again
                LOG.warning("power state sync of %s failed", inst.id, exc_info=True)
        here = {i.id for i in placed}
        for iid in sorted(set(guests) - here - arriving):
            if not self._busy(h, iid):
                try:
                    await self._reap(h, iid)
                except Exception:  # noqa: BLE001
                    LOG.warning("could not reap guest %s on %s", iid, h.name, exc_info=True)

    @staticmethod
    def _stop_or_force_off(vm: str, power: int) -> tuple[bool, bool]:
        """What Nova's _sync_instance_power_state does about a guest in ``power``
        for a server in ``vm``: (call the stop API, force the guest off)."""
        if vm == VmState.ACTIVE:
            # SHUTDOWN, CRASHED, SUSPENDED: "Instance shutdown by itself. Calling the
            # stop API."; PAUSED: "Instance is paused unexpectedly. Ignore."
            return power in (PowerState.SHUTDOWN, PowerState.CRASHED, PowerState.SUSPENDED), False
        if vm == VmState.STOPPED:
            return False, power not in (PowerState.NOSTATE, PowerState.SHUTDOWN, PowerState.CRASHED)
        if vm == VmState.PAUSED:
            return power in (PowerState.SHUTDOWN, PowerState.CRASHED), False
        return False, False  # BUILDING, SUSPENDED, ERROR: only the power state follows

    async def _sync_instance(self, h: _HostState, inst: records.Instance, power: int) -> None:
        if power == inst.power_state and not any(self._stop_or_force_off(inst.vm_state, power)):
            return
        # The listing and the server were read a while ago, and an action may have
        # completed in between (a guest listed SHUTDOWN, its server read ACTIVE once
        # started): decide on fresh reads of both, under the instance's lock, as Nova's
        # query_driver_power_state_and_sync does.
        async with self._lock(inst.id):
            try:
                power = int(await asyncio.to_thread(h.driver.power_state, inst.id))
            except InstanceNotFound:
                power = PowerState.NOSTATE
            try:
                inst = await self._db(self.db.get_instance, inst.id)
            except errors.NotFound:
                return
            if inst.task_state is not None or inst.host != h.name:
                return  # someone acted meanwhile
            vm = inst.vm_state
            stop, force_off = self._stop_or_force_off(vm, power)
            if not (stop or force_off):
                if power != inst.power_state:
                    if vm == VmState.ACTIVE and power == PowerState.NOSTATE:
                        LOG.warning("server %s: its guest is unexpectedly not found on %s",
                                    inst.id, h.name)
                    LOG.info("server %s: power state %s -> %s (sync)", inst.id,
                             PowerState.name_of(inst.power_state), PowerState.name_of(power))
                    await self._db(self.db.update_instance, inst.id, expected_vm_state=vm,
                                   expected_task_state=None, power_state=power)
                return
            LOG.warning("server %s (%s) on %s: guest is %s; stopping it (sync)", inst.id, vm,
                        h.name, PowerState.name_of(power))
            if power != PowerState.NOSTATE:
                try:
                    await asyncio.to_thread(h.driver.power_off, inst.id)
                    power = int(await asyncio.to_thread(h.driver.power_state, inst.id))
                except InstanceNotFound:
                    power = PowerState.NOSTATE
            applied = await self._db(self.db.update_instance, inst.id, expected_vm_state=vm,
                                     expected_task_state=None, vm_state=VmState.STOPPED,
                                     power_state=power)
            if applied and vm != VmState.STOPPED:
                await self._record_stop(inst)

    async def _record_stop(self, inst: records.Instance) -> None:
        """The "stop" instance action Nova's compute API records when the sync calls it."""
        try:
            action = await self._db(
                self.db.start_instance_action, inst.id, "stop", project_id=inst.project_id,
                message="Instance shutdown by itself (power state sync)")
            await self._db(self.db.finish_instance_action, action.id)
        except errors.NotFound:
            pass

    async def _reap(self, h: _HostState, instance_id: str) -> None:
        """A guest no server on this host owns: destroyed when its server was deleted
        or lives on another host now; left alone (and logged once) when the database
        does not know it (another cloud's, or another test's)."""
        try:
            inst = await self._db(self.db.get_instance, instance_id, include_deleted=True)
        except errors.NotFound:
            if instance_id not in h.unknown_guests:
                h.unknown_guests.add(instance_id)
                LOG.warning("guest %s on %s belongs to no server this cloud knows; leaving it",
                            instance_id, h.name)
            return
        if inst.deleted_at is None and inst.host == h.name:
            return  # placed here after all (it moved meanwhile)
        async with self._lock(instance_id):
            if instance_id in h.building:
                return
            LOG.warning("destroying guest %s on %s: its server is %s", instance_id, h.name,
                        "deleted" if inst.deleted_at is not None else f"on host {inst.host}")
            await asyncio.to_thread(h.driver.destroy, instance_id)
            self._untrack(h, instance_id)


# ---- request checks ------------------------------------------------------------------

def _check_instance_id(instance_id: str, field: str) -> None:
    if not instance_id:
        raise errors.Invalid(field, "required")
    try:
        domain_name(instance_id)
    except InvalidInstanceId as e:
        raise errors.Invalid(field, str(e)) from None


def _check_flavor(flavor: records.Flavor) -> None:
    for name, low in (("vcpus", 1), ("memory_mb", 1), ("root_gb", 0), ("ephemeral_gb", 0),
                      ("swap", 0)):
        value = getattr(flavor, name)
        if not isinstance(value, int) or value < low:
            raise errors.Invalid(f"flavor.{name}", f"must be an integer >= {low}, got {value!r}")


_MAC_RE = re.compile(r"^[0-9a-f]{2}(:[0-9a-f]{2}){5}$")
_BRIDGE_RE = re.compile(r"^[A-Za-z0-9_.-]{1,15}$")


def _check_guest(guest: records.GuestConfig) -> None:
    """A guest's NICs: a MAC address, a bridge name, a fixed IP in its subnet."""
    for i, vif in enumerate(guest.vifs):
        field = f"guest.vifs[{i}]"
        if not _MAC_RE.match(vif.mac):
            raise errors.Invalid(f"{field}.mac", f"not a MAC address: {vif.mac[:32]!r}")
        if not _BRIDGE_RE.match(vif.bridge):
            raise errors.Invalid(f"{field}.bridge", f"not a bridge name: {vif.bridge[:32]!r}")
        try:
            inside = ipaddress.ip_address(vif.address) in ipaddress.ip_network(vif.cidr)
        except ValueError as e:
            raise errors.Invalid(f"{field}.address", str(e)) from None
        if not inside:
            raise errors.Invalid(f"{field}.address", f"{vif.address} is not in {vif.cidr}")


def _check_allocation(allocation: Mapping[str, int]) -> dict[str, int]:
    out: dict[str, int] = {}
    for rc, amount in allocation.items():
        if not rc or not isinstance(amount, int) or amount < 1:
            raise errors.Invalid(f"allocation.{rc}", f"must be an integer >= 1, got {amount!r}")
        out[rc] = amount
    return out


__all__ = ["ComputeManager", "ComputeOptions", "ComputeView", "Driver"]
