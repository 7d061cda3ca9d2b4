"""The scheduler's domain logic (no grpc here).

The scheduler keeps every host in the placement core's in-memory table, loaded from
the database once at start and then updated host by host (a compute report, a
conflict, a periodic service check) -- never rebuilt per request, which is what Nova
spends 98-99% of its scheduling time on. A selection is worked out in memory, then
written to the database as allocations with a compare-and-swap on each host's
generation; a conflict (another scheduler replica, or a conductor claiming an
alternate, got there first) refreshes the hosts involved and tries again. The
database stays the truth; the table is a cache that cannot drift past a conflict.
"""

from __future__ import annotations

import logging
import random
import threading
from collections import defaultdict
from typing import Iterable, Mapping

from novalite import errors
from novalite.db.database import Database
from novalite.objects import records
from novalite.objects.groups import unsupported_policy
from novalite.objects.records import RESOURCE_CLASSES
from novalite.placement import (
    Aggregate,
    ConfigError,
    Host,
    HostTable,
    Inventory,
    NoValidHost,
    PlacementError,
    RequestSpec,
    Scheduler,
    SchedulerConfig,
    Selection,
)
from novalite.settings import default

LOG = logging.getLogger(__name__)

# Room to replay a host's existing allocations before its real inventory is set
# (an inventory may have shrunk below what is already allocated).
_LOAD_TOTAL = 2**31 - 1


def _inventory(inv: Inventory | None) -> Inventory:
    return Inventory(total=0) if inv is None else inv


def _triples(value: Iterable[object]) -> list[tuple[str, str, str]]:
    out = []
    for t in value:
        if isinstance(t, (list, tuple)) and len(t) == 3:
            out.append((str(t[0]), str(t[1]), str(t[2])))
    return out


def _hosts(n: int) -> str:
    return "1 host" if n == 1 else f"{n} hosts"


class _Ticket:
    """One select_destinations call waiting for, or decided in, a round. A move's
    (``migration``) has one instance, whose current allocation passes to the
    migration when the new one is claimed."""

    def __init__(self, spec: RequestSpec, return_alternates: bool,
                 migration: str | None = None) -> None:
        self.spec = spec
        self.return_alternates = return_alternates
        self.migration = migration
        self.source: dict[str, dict[str, int]] = {}  # what the instance held before
        self.selections: list[list[Selection]] | None = None
        self.error: BaseException | None = None
        self.finished = False
        self.deferred = False

    def succeed(self) -> None:
        self.finished = True

    def fail(self, error: BaseException) -> None:
        self.selections = None
        self.error = error
        self.finished = True

    def result(self) -> list[list[Selection]]:
        if self.error is not None:
            raise self.error
        assert self.selections is not None
        return self.selections


class SchedulerManager:
    """Select destinations over the in-memory host table, claiming in the database."""

    def __init__(self, db: Database, config: SchedulerConfig, *,
                 service_down_time: float = default("service_down_time"), max_retries: int = 8,
                 rng: random.Random | None = None) -> None:
        self.db = db
        self.config = config
        self.service_down_time = service_down_time
        self.max_retries = max_retries
        self._rng = rng or random.Random()
        self._lock = threading.RLock()
        self.table = HostTable(default_availability_zone=config.default_availability_zone)
        self.scheduler = Scheduler(self.table, config)
        # what the database said last: host name -> (provider uuid, generation)
        self._provider: dict[str, str] = {}
        self._host_of: dict[str, str] = {}  # provider uuid -> host name
        self._generation: dict[str, int] = {}
        self._traits: dict[str, frozenset[str]] = {}  # host -> its traits (NoValidHost's why)
        # the aggregates as the database said last (id -> record)
        self._aggregates: dict[str, records.Aggregate] = {}
        # who holds what, host by host (mirrors the table's ledger for quick syncs)
        self._held: dict[str, dict[str, dict[str, int]]] = {}
        self._by_host: dict[str, set[str]] = {}
        # the host each consumer's instance record is on in the table (what the
        # server-group filters count; see _locate)
        self._located: dict[str, str] = {}
        # select_destinations calls waiting for the next round
        self._queue_lock = threading.Lock()
        self._queue: list[_Ticket] = []

    # ---- loading and refreshing ----------------------------------------------------

    def load(self) -> int:
        """Load every host, its usage, aggregates and instances. Returns the count."""
        with self._lock:
            self._apply_aggregates(self.db.list_aggregates())
            hosts = self.db.list_hosts(service_down_time=self.service_down_time)
            for h in hosts:
                self._add_or_refresh(h)
            LOG.info("loaded %d hosts", len(hosts))
            return len(hosts)

    def refresh_aggregates(self) -> None:
        """Re-read every aggregate (name, metadata, hosts) from the database: an
        admin changed one (the API tells every scheduler at once, as Nova's
        update_aggregates fanout), or the periodic resync that catches a scheduler
        up whom that call did not reach. The zone, tenant, flavor and limit filters
        and the per-aggregate multipliers read the table from the next request on."""
        aggregates = self.db.list_aggregates()
        with self._lock:
            self._apply_aggregates(aggregates)

    def _apply_aggregates(self, aggregates: Iterable[records.Aggregate]) -> None:
        wanted = {a.id: a for a in aggregates}
        for gone in set(self._aggregates) - set(wanted):
            self.table.remove_aggregate(gone)
            del self._aggregates[gone]
        for agg in wanted.values():
            known = self._aggregates.get(agg.id)
            if known is None or (known.name, dict(known.metadata)) != (agg.name, dict(agg.metadata)):
                self.table.set_aggregate(Aggregate(agg.id, agg.name, dict(agg.metadata)))
            self._aggregates[agg.id] = agg
        member_of_by_host: dict[str, set[str]] = defaultdict(set)
        for agg in wanted.values():
            for host in agg.hosts:
                member_of_by_host[host].add(agg.id)
        for host in self._provider:
            member_of = member_of_by_host.get(host, set())
            current = set(self.table.host_aggregates(host))
            for agg_id in current - member_of:
                self.table.remove_host_from_aggregate(agg_id, host)
            for agg_id in member_of - current:
                self.table.add_host_to_aggregate(agg_id, host)

    def _model_host(self, h: records.Host, inventories: Mapping[str, Inventory]) -> Host:
        up = h.service.is_up if h.service is not None else False
        enabled = not h.service.disabled if h.service is not None else False
        return Host(
            name=h.name, uuid=h.uuid,
            vcpu=inventories["VCPU"], memory_mb=inventories["MEMORY_MB"],
            disk_gb=inventories["DISK_GB"],
            vcpus_used=max(0, h.vcpus_used), free_ram_mb=h.free_ram_mb,
            free_disk_mb=h.free_disk_mb, num_instances=max(0, h.num_instances),
            num_io_ops=max(0, h.num_io_ops), failed_builds=max(0, h.failed_builds),
            enabled=enabled, up=up,
            hypervisor_type=h.hypervisor_type or "QEMU",
            hypervisor_version=max(0, h.hypervisor_version or 0),
            supported_instances=_triples(h.supported_instances),
            cpu_info=dict(h.cpu_info), traits=sorted(h.traits),
            aggregates=sorted(a for a in h.aggregates if a in self._aggregates),
        )

    def _add_or_refresh(self, h: records.Host) -> None:
        """Make the table's copy of one host match the database record: inventory,
        usage (consumer by consumer), compute view, service state, instances. The
        allocations are read only when the host's generation moved since the last
        time this scheduler knew it (every allocation change moves it)."""
        if not h.aggregates <= self._aggregates.keys():
            self._apply_aggregates(self.db.list_aggregates())
        real: dict[str, Inventory] = {rc: _inventory(h.inventories.get(rc)) for rc in RESOURCE_CLASSES}
        known = h.name in self._provider
        allocations: dict[str, dict[str, int]] | None = None
        if not known or self._generation.get(h.name) != h.generation:
            allocations = defaultdict(dict)
            for a in self.db.list_allocations(h.uuid):
                allocations[a.consumer_uuid][a.resource_class] = a.used
        if not known:
            assert allocations is not None
            roomy: dict[str, Inventory] = {rc: Inventory(total=_LOAD_TOTAL) for rc in RESOURCE_CLASSES}
            self.table.add_host(self._model_host(h, roomy))
            for consumer, amounts in allocations.items():
                self._replace_consumer(consumer, {h.name: amounts})
        else:
            host = self._model_host(h, real)
            self.table.update_host(
                h.name, vcpus_used=host.vcpus_used, free_ram_mb=host.free_ram_mb,
                free_disk_mb=host.free_disk_mb, num_instances=host.num_instances,
                num_io_ops=host.num_io_ops, failed_builds=host.failed_builds,
                enabled=host.enabled, up=host.up, hypervisor_type=host.hypervisor_type,
                hypervisor_version=host.hypervisor_version,
                supported_instances=host.supported_instances, cpu_info=host.cpu_info,
                traits=list(host.traits))
            current = set(self.table.host_aggregates(h.name))
            for agg in current - set(host.aggregates):
                self.table.remove_host_from_aggregate(agg, h.name)
            for agg in set(host.aggregates) - current:
                self.table.add_host_to_aggregate(agg, h.name)
            if allocations is not None:
                self._sync_consumers(h.name, allocations)
        for rc in RESOURCE_CLASSES:
            if self.table.inventory(h.name, rc) != real[rc]:
                self.table.set_inventory(h.name, rc, real[rc])
        self._provider[h.name] = h.uuid
        self._host_of[h.uuid] = h.name
        self._generation[h.name] = h.generation
        self._traits[h.name] = h.traits

    def _replace_consumer(self, consumer: str, allocation: Mapping[str, Mapping[str, int]]) -> None:
        """Make a consumer hold exactly ``allocation`` in the table (what the database
        says), even where that is over a capacity that has since shrunk."""
        try:
            self.table.replace(consumer, allocation)
        except PlacementError:
            # the database holds it already: replay it with room, then put the real
            # inventory back (a shrink below usage is allowed; new claims then fail)
            saved = {(h, rc): self.table.inventory(h, rc) for h in allocation for rc in RESOURCE_CLASSES}
            for (h, rc) in saved:
                self.table.set_inventory(h, rc, Inventory(total=_LOAD_TOTAL, max_unit=_LOAD_TOTAL))
            try:
                self.table.replace(consumer, allocation)
            finally:
                for (h, rc), inv in saved.items():
                    self.table.set_inventory(h, rc, inv)
        self._index(consumer, allocation)

    def _index(self, consumer: str, allocation: Mapping[str, Mapping[str, int]] | None, *,
               placed: bool = False) -> None:
        """Record what ``consumer`` holds; ``placed``: a selection the core just
        committed, which already put its instance record on the chosen host."""
        for host in self._held.pop(consumer, {}):
            self._by_host.get(host, set()).discard(consumer)
        if allocation:
            self._held[consumer] = {h: dict(a) for h, a in allocation.items()}
            for host in allocation:
                self._by_host.setdefault(host, set()).add(consumer)
        hosts = list(allocation or ())
        only: str | None = hosts[0] if len(hosts) == 1 else None
        if placed and only is not None:
            self._located[consumer] = only
        else:
            self._locate(consumer, only)

    def _locate(self, consumer: str, host: str | None) -> None:
        """Put the consumer's instance record on ``host`` (None: on none), so that
        the server-group filters and the same/different-host hints count the
        servers this scheduler did not place itself (booted before it started,
        or moved): each instance is where its allocation is."""
        if self._located.get(consumer) == host:
            return
        self._located.pop(consumer, None)
        try:
            self.table.remove_instance(consumer)
        except PlacementError:
            pass  # it had none
        if host is not None:
            try:
                self.table.add_instance(host, consumer)
            except PlacementError:
                return  # a host the table does not have
            self._located[consumer] = host

    def _sync_consumers(self, host: str, db_allocations: Mapping[str, Mapping[str, int]]) -> None:
        in_table = set(self._by_host.get(host, set()))
        for consumer in in_table - set(db_allocations):
            self.table.release(consumer)
            self._index(consumer, None)
        for consumer, amounts in db_allocations.items():
            if self._held.get(consumer) != {host: dict(amounts)}:
                self._replace_consumer(consumer, {host: amounts})

    def refresh_host(self, name: str) -> None:
        """Re-read one host from the database (a compute report, or a conflict)."""
        self.refresh_hosts([name])

    def refresh_hosts(self, names: Iterable[str]) -> None:
        """Re-read hosts from the database, one snapshot for all of them: a host it
        no longer has is dropped. The snapshot is read before taking the table's
        lock (a report of 100 hosts held decisions up for up to 66 ms); a host this
        scheduler has claimed on since is read again under the lock."""
        wanted = set(names)
        found = self.db.get_hosts(wanted, service_down_time=self.service_down_time)
        with self._lock:
            behind = [n for n, h in found.items() if self._generation.get(n, -1) > h.generation]
            if behind:
                found.update(self.db.get_hosts(behind, service_down_time=self.service_down_time))
            for name in sorted(wanted):
                h = found.get(name)
                if h is not None:
                    self._add_or_refresh(h)
                elif name in self._provider:
                    self._forget(name)

    def _forget(self, name: str) -> None:
        for consumer in list(self._by_host.get(name, set())):
            self.table.release(consumer)
            self._index(consumer, None)
        self.table.remove_host(name)
        self._host_of.pop(self._provider.get(name, ""), None)
        self._provider.pop(name, None)
        self._generation.pop(name, None)
        self._traits.pop(name, None)

    def refresh_services(self) -> None:
        """Periodic: up/down and enabled/disabled of every compute service."""
        with self._lock:
            for svc in self.db.list_services(binary="compute", service_down_time=self.service_down_time):
                if svc.host in self._provider:
                    self.table.update_host(svc.host, up=svc.is_up, enabled=not svc.disabled)

    def hosts(self) -> list[str]:
        return self.table.host_names()

    # ---- selecting -----------------------------------------------------------------

    def select_destinations(self, spec: RequestSpec, *, return_alternates: bool = True,
                            migration: str | None = None) -> list[list[Selection]]:
        """Nova's select_destinations: one list per instance, chosen host first, then
        alternates; each chosen host's allocation is written to the database before
        this returns. NoValidHost (domain error) carries the rejection counts.

        A move (``migration``: its id; one instance) claims the destination for the
        instance and, in the same transaction, hands what the instance held until
        now (the source host's allocation) to the migration, as Nova's conductor
        does with move_allocations before it schedules a move.

        Requests that arrive while another is being written go together: each is
        decided in turn over the in-memory table (each sees the ones before it), and
        their allocations are written in one transaction, a compare-and-swap on each
        chosen host's generation. When that loses a race (another replica, or an
        alternate claimed by a conductor, got there first), the round's claims are
        undone in memory, the hosts re-read, and the round decided again."""
        if migration is not None and len(spec.instance_uuids) != 1:
            raise errors.Invalid("instance_uuids", "a move places exactly one instance")
        ticket = _Ticket(spec, return_alternates, migration)
        with self._queue_lock:
            self._queue.append(ticket)
        with self._lock:
            if not ticket.finished:
                with self._queue_lock:
                    batch, self._queue = self._queue, []
                try:
                    self._select_round(batch)
                except BaseException as e:
                    for t in batch:
                        if not t.finished:
                            t.fail(e)
                    raise
        return ticket.result()

    def _select_round(self, batch: list[_Ticket]) -> None:
        for attempt in range(self.max_retries):
            chosen: list[_Ticket] = []
            consumers: set[str] = set()
            for t in batch:
                if t.finished:
                    continue
                group = t.spec.instance_group
                refusal = group and unsupported_policy(group.policy, self.config.enabled_filters,
                                                       self.config.weight_classes)
                if refusal:
                    t.fail(errors.InvalidState(refusal))
                    continue
                if consumers & set(t.spec.instance_uuids):
                    # the same instance twice in one round: it waits for the next
                    with self._queue_lock:
                        self._queue.append(t)
                    t.deferred = True
                    continue
                self._hand_over(t)
                try:
                    placed = self.scheduler.select(t.spec, claim=True, seed=self._rng.getrandbits(64),
                                                   return_alternates=t.return_alternates)
                except NoValidHost as e:
                    self._take_back(t)
                    t.fail(errors.NoValidHost(str(e), e.rejections, e.instance_index,
                                              self._trait_shortfall(t.spec, e.rejections)))
                    continue
                except (PlacementError, ConfigError) as e:
                    self._take_back(t)
                    t.fail(errors.Invalid("request_spec", str(e)))
                    continue
                t.selections = placed.selections
                consumers.update(t.spec.instance_uuids)
                chosen.append(t)
            if not chosen:
                break
            try:
                conflicted = self._write_allocations(chosen)
            except Exception as e:  # noqa: BLE001 - nothing was written: undo, report
                self._undo(chosen)
                for t in chosen:
                    t.fail(e)
                break
            if not conflicted:
                for t in chosen:
                    assert t.selections is not None
                    for uuid, sels in zip(t.spec.instance_uuids, t.selections):
                        self._index(uuid, {sels[0].host: dict(sels[0].allocation)}, placed=True)
                    t.succeed()
                break
            LOG.info("allocation conflict on %s (attempt %d); refreshing", sorted(conflicted), attempt + 1)
            self._undo(chosen)
            batch = [t for t in batch if not t.finished and not t.deferred]
        for t in batch:
            if not t.finished and not t.deferred:
                t.fail(errors.Conflict(f"could not claim resources after {self.max_retries} attempts "
                                       "(hosts kept changing under the scheduler)"))
        if any(t.deferred for t in batch):
            with self._queue_lock:
                again, self._queue = self._queue, []
            for t in again:
                t.deferred = False
            self._select_round(again)

    def _hand_over(self, t: _Ticket) -> None:
        """A move's first step, in memory: the instance's allocation passes to its
        migration, leaving the instance free to claim its destination."""
        if t.migration is None:
            return
        instance = t.spec.instance_uuids[0]
        t.source = {h: dict(a) for h, a in self._held.get(instance, {}).items()}
        if t.source:
            self.table.release(instance)
            self._index(instance, None)
            self._replace_consumer(t.migration, t.source)

    def _take_back(self, t: _Ticket) -> None:
        """Undo _hand_over (the move found no host)."""
        if t.migration is None or not t.source:
            return
        if t.migration in self._held:
            self.table.release(t.migration)
            self._index(t.migration, None)
        self._replace_consumer(t.spec.instance_uuids[0], t.source)
        t.source = {}

    def _trait_shortfall(self, spec: RequestSpec,
                         rejections: Iterable[tuple[str, int]]) -> list[str]:
        """Which trait a request could not have, when the trait checks removed
        hosts: for each required trait how many hosts have it, for each forbidden
        one how many do not (the core counts the hosts each check removed, not
        which trait did it)."""
        removed = {check for check, n in rejections if n}
        wanted: dict[str, str] = {}
        for key, value in spec.flavor.extra_specs.items():
            if key.startswith("trait:"):
                wanted[key[len("trait:"):]] = value
        wanted.update({t: "required" for t in spec.required_traits})
        wanted.update({t: "forbidden" for t in spec.forbidden_traits})
        out = []
        total = len(self._traits)
        for trait, how in sorted(wanted.items()):
            if f"{how}_traits" not in removed:
                continue
            having = sum(trait in traits for traits in self._traits.values())
            if how == "required":
                has = "no host has it" if not having else f"{having} of {_hosts(total)} have it"
            else:
                has = ("every host has it" if having == total
                       else f"{total - having} of {_hosts(total)} do not have it")
            out.append(f"trait {trait} is {how}: {has}")
        return out

    def _undo(self, chosen: list[_Ticket]) -> None:
        """Take a round's claims back out of the table, and re-read its hosts in
        full (allocations too: a re-scheduled instance may have held one before;
        a move's source, which the database still gives to the instance)."""
        hosts: set[str] = set()
        for t in chosen:
            for uuid, sels in zip(t.spec.instance_uuids, t.selections or []):
                hosts.add(sels[0].host)
                self.table.release(uuid)
                self._index(uuid, None)
            if t.migration is not None and t.migration in self._held:
                hosts.update(self._held[t.migration])
                self.table.release(t.migration)
                self._index(t.migration, None)
            t.selections = None
            t.source = {}
        for host in hosts:
            if host in self._generation:
                self._generation[host] = -1
        self.refresh_hosts(hosts)

    def _write_allocations(self, chosen: list[_Ticket]) -> set[str]:
        """Write a round's allocations in one transaction, with a compare-and-swap
        on each chosen host's generation. Returns the hosts to refresh when it lost
        a race (nothing was written then), else an empty set."""
        claims: dict[str, dict[str, dict[str, int]]] = {}
        moves: dict[str, str] = {}
        hosts: set[str] = set()
        sources: set[str] = set()
        for t in chosen:
            assert t.selections is not None
            for uuid, sels in zip(t.spec.instance_uuids, t.selections):
                claims[uuid] = {self._provider[sels[0].host]: dict(sels[0].allocation)}
                hosts.add(sels[0].host)
            if t.migration is not None and t.source:
                moves[t.spec.instance_uuids[0]] = t.migration
                sources.update(t.source)
        try:
            generations = self.db.claim_allocations_many(
                claims, generations={self._provider[h]: self._generation[h] for h in hosts},
                moves=moves)
        except (errors.GenerationConflict, errors.CapacityExceeded, errors.NotFound):
            return hosts | sources
        self._note(generations)
        return set()

    def _note(self, generations: Mapping[str, int]) -> None:
        """Providers' generations after a write of ours. Each write moves a
        generation by one: a jump of more means someone else wrote in between, so
        the generation is forgotten (the next claim there fails its compare-and-swap
        and re-reads the host) rather than taken for what this scheduler has seen."""
        for provider, gen in generations.items():
            name = self._host_of.get(provider)
            if name is None:
                continue
            self._generation[name] = gen if self._generation.get(name) == gen - 1 else -1

    def release(self, instance_uuid: str) -> None:
        """A build failed or a server is gone: drop its allocation everywhere.

        When the database held nothing any more, a deleted server's record released
        it, moving the host's generation behind this scheduler's back; left alone,
        the next claim there would lose its compare-and-swap and redo its round. So
        the host's generation is read: one step past the known one is that release
        (taken as seen); more, and the host is re-read in full."""
        with self._lock:
            try:
                generations = self.db.release_allocations(instance_uuid)
            except errors.NotFound:
                generations = {}
            self._note(generations)
            held = set(self._held.get(instance_uuid, {}))
            if instance_uuid in self._held:
                self.table.release(instance_uuid)
                self._index(instance_uuid, None)
            released_by_others = held - {self._host_of.get(p) for p in generations}
            if released_by_others:
                self._catch_up(released_by_others)

    def move_allocation(self, source: str, target: str) -> None:
        """Placement's allocation move: what ``source`` holds becomes ``target``'s
        (whose own is released), in the database and then in memory; a move's
        revert or rollback gives the migration's source allocation back to the
        instance. A source holding nothing (a repeated call) changes nothing."""
        with self._lock:
            generations = self.db.move_allocations({source: target})
            moved = self._held.get(source)
            if moved and generations:
                for consumer in (source, target):
                    if consumer in self._held:
                        self.table.release(consumer)
                        self._index(consumer, None)
                self._replace_consumer(target, moved)
                self._note(generations)
                return
            # the database did not hold what this scheduler thought: read it again
            hosts = ({self._host_of[p] for p in generations if p in self._host_of}
                     | set(moved or {}) | set(self._held.get(target, {})))
            for host in hosts:
                self._generation[host] = -1
            self.refresh_hosts(hosts)

    def check_rebuild(self, spec: RequestSpec) -> list[list[Selection]]:
        """Nova's rebuild check (a new image on the same host): the filters that
        run on a rebuild, over the host in ``spec.force_hosts``, its capacity
        counted without the instance's own allocation; nothing is claimed.
        NoValidHost when the host does not pass."""
        if len(spec.instance_uuids) != 1 or len(spec.force_hosts) != 1 or not spec.is_rebuild:
            raise errors.Invalid("request_spec", "a rebuild check is of one instance on its host")
        instance = spec.instance_uuids[0]
        with self._lock:
            held = {h: dict(a) for h, a in self._held.get(instance, {}).items()}
            if held:
                self.table.release(instance)
            try:
                return self.scheduler.select(spec, claim=False, seed=self._rng.getrandbits(64),
                                             return_alternates=False).selections
            except NoValidHost as e:
                raise errors.NoValidHost(str(e), e.rejections, e.instance_index) from None
            except (PlacementError, ConfigError) as e:
                raise errors.Invalid("request_spec", str(e)) from None
            finally:
                if held:
                    self._replace_consumer(instance, held)

    def _catch_up(self, hosts: set[str]) -> None:
        providers = {self._provider[h]: h for h in hosts if h in self._provider}
        now = self.db.get_generations(providers)
        stale = {h for h in hosts if h not in self._provider}
        for provider, host in providers.items():
            known = self._generation.get(host, -1)  # -1: not known (see _note)
            if known >= 0 and now.get(provider) == known + 1:
                self._generation[host] = now[provider]
            else:
                stale.add(host)
        if stale:
            self.refresh_hosts(stale)

    def claim_alternate(self, instance_uuid: str, host: str, allocation: Mapping[str, int]) -> bool:
        """Claim a specific host (an alternate) for an instance: in the database with
        the compare-and-swap, then in memory. False when it no longer fits."""
        with self._lock:
            for _ in range(self.max_retries):
                provider = self._provider.get(host)
                if provider is None:
                    return False
                try:
                    self._note(self.db.claim_allocations(
                        instance_uuid, {provider: dict(allocation)},
                        generations={provider: self._generation[host]}))
                except errors.GenerationConflict:
                    self.refresh_host(host)
                    continue
                except (errors.CapacityExceeded, errors.NotFound):
                    self.refresh_host(host)
                    return False
                self._replace_consumer(instance_uuid, {host: allocation})
                return True
            return False
