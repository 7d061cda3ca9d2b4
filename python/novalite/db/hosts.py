"""The hosts' queries: services, compute hosts (resource providers with their
inventories and compute views), host aggregates and traits."""

from __future__ import annotations

from collections import defaultdict
from datetime import datetime, timedelta
from typing import Any, Iterable, Mapping, Sequence

import sqlalchemy as sa
from sqlalchemy.orm import Session

from novalite import errors
from novalite.db import models as m
from novalite.db.engine import (
    _ALLOCATIONS, _INVENTORIES, _PROVIDERS, UNSET, Transactions, _bump_generation, _new_uuid,
    _rowcount, _stmt,
)
from novalite.db.validation import (
    _NAME_MAX, _is_int, _name, _not_negative, _string_map, _trait_name, _valid_inventory,
)
from novalite.objects.records import (
    CPU_TRAIT_PREFIX, Aggregate, ComputeView, Host, Inventory, Service,
)
from novalite.settings import default

SERVICE_BINARIES = frozenset({"api", "conductor", "scheduler", "compute"})
# The aggregate metadata key that makes an aggregate an availability zone (Nova's).
ZONE_KEY = "availability_zone"
# Nova's [DEFAULT] service_down_time (the settings' option is its one home): no
# heartbeat for this long means down, unless a caller passes its own.
SERVICE_DOWN_TIME = float(default("service_down_time"))


class Hosts(Transactions):
    """What the scheduler places on and the services that run there."""

    # --- services --------------------------------------------------------------------

    def register_service(self, host: str, binary: str, *,
                         endpoint: str | None = None) -> Service:
        """Record a service at start (or again after a restart) and count it as a
        heartbeat. An existing record keeps its id and enabled/disabled status."""
        host = _name("host", host)
        if binary not in SERVICE_BINARIES:
            raise errors.Invalid("binary", f"must be one of {sorted(SERVICE_BINARIES)}")

        def work(s: Session) -> Service:
            now = self._clock()
            s.execute(self._insert(m.Service).values(
                host=host, binary=binary, endpoint=endpoint, disabled=False,
                disabled_reason=None, last_seen_up=now, created_at=now,
            ).on_conflict_do_nothing())
            row = self._service_row(s, host, binary)
            row.endpoint = endpoint
            row.last_seen_up = now
            s.flush()
            return _service(row, now, SERVICE_DOWN_TIME)
        return self._write(work)

    def heartbeat(self, service_id: int) -> None:
        """The service is alive now."""
        def work(s: Session) -> None:
            result = s.execute(sa.update(m.Service).where(m.Service.id == service_id)
                               .values(last_seen_up=self._clock()))
            if _rowcount(result) == 0:
                raise errors.NotFound(f"service {service_id} not found")
        self._write(work)

    def get_service(self, host: str, binary: str, *,
                    service_down_time: float = SERVICE_DOWN_TIME) -> Service:
        return self._read(lambda s: _service(self._service_row(s, host, binary),
                                             self._clock(), service_down_time))

    def list_services(self, *, binary: str | None = None, host: str | None = None,
                      service_down_time: float = SERVICE_DOWN_TIME) -> list[Service]:
        """Services by host and binary; is_up when the last heartbeat is at most
        service_down_time seconds old (Nova's [DEFAULT] service_down_time)."""
        def work(s: Session) -> list[Service]:
            q = sa.select(m.Service).order_by(m.Service.host, m.Service.binary)
            if binary is not None:
                q = q.where(m.Service.binary == binary)
            if host is not None:
                q = q.where(m.Service.host == host)
            now = self._clock()
            return [_service(r, now, service_down_time) for r in s.scalars(q)]
        return self._read(work)

    def enable_service(self, host: str, binary: str = "compute", *,
                       service_down_time: float = SERVICE_DOWN_TIME) -> Service:
        return self._set_disabled(host, binary, False, None, service_down_time)

    def disable_service(self, host: str, binary: str = "compute", *,
                        reason: str | None = None,
                        service_down_time: float = SERVICE_DOWN_TIME) -> Service:
        """The scheduler stops placing on a disabled compute host."""
        if reason is not None and len(reason) > _NAME_MAX:
            raise errors.Invalid("reason", f"at most {_NAME_MAX} characters")
        return self._set_disabled(host, binary, True, reason, service_down_time)

    def _set_disabled(self, host: str, binary: str, disabled: bool, reason: str | None,
                      service_down_time: float) -> Service:
        def work(s: Session) -> Service:
            row = self._service_row(s, host, binary, lock=True)
            row.disabled = disabled
            row.disabled_reason = reason
            s.flush()
            return _service(row, self._clock(), service_down_time)
        return self._write(work)

    @staticmethod
    def _service_row(s: Session, host: str, binary: str, lock: bool = False) -> m.Service:
        q = sa.select(m.Service).where(m.Service.host == host, m.Service.binary == binary)
        if lock:
            q = q.with_for_update()
        row = s.scalars(q.execution_options(populate_existing=True)).one_or_none()
        if row is None:
            raise errors.NotFound(f"no {binary} service on host {host}")
        return row

    # --- hosts (resource providers) --------------------------------------------------

    def upsert_host(
        self, name: str, *, inventories: Mapping[str, Inventory] | None = None,
        uuid: str | None = None, generation: int | None = None,
        service_id: Any = UNSET, hypervisor_type: Any = UNSET,
        hypervisor_version: Any = UNSET, cpu_info: Any = UNSET,
        supported_instances: Any = UNSET, availability_zone: Any = UNSET,
        vcpus_used: Any = UNSET, free_ram_mb: Any = UNSET, free_disk_mb: Any = UNSET,
        num_instances: Any = UNSET, num_io_ops: Any = UNSET, failed_builds: Any = UNSET,
    ) -> Host:
        """Create or update a compute host's resource provider.

        ``inventories`` (when given) replaces the host's inventory: classes not in
        it are removed, which is a Conflict while allocations hold them. Any
        inventory change bumps the generation; with ``generation`` the write is a
        compare-and-swap (GenerationConflict). The compute view and the other
        fields change only when given; they do not bump the generation, so the
        agent's periodic reports do not disturb the scheduler's claims.
        """
        name = _name("name", name)
        invs = ({rc: _valid_inventory(rc, inv) for rc, inv in inventories.items()}
                if inventories is not None else None)
        fields: dict[str, Any] = {
            k: v for k, v in (
                ("service_id", service_id), ("hypervisor_type", hypervisor_type),
                ("hypervisor_version", hypervisor_version), ("cpu_info", cpu_info),
                ("supported_instances", supported_instances),
                ("availability_zone", availability_zone), ("vcpus_used", vcpus_used),
                ("free_ram_mb", free_ram_mb), ("free_disk_mb", free_disk_mb),
                ("num_instances", num_instances), ("num_io_ops", num_io_ops),
                ("failed_builds", failed_builds),
            ) if v is not UNSET}
        for counter in ("num_instances", "num_io_ops", "failed_builds", "vcpus_used"):
            if counter in fields:
                _not_negative(counter, fields[counter])
        new_uuid = uuid or _new_uuid()

        def work(s: Session) -> Host:
            now = self._clock()
            rp = m.ResourceProvider
            s.execute(self._insert(rp).values(
                uuid=new_uuid, name=name, generation=0, service_id=None,
                hypervisor_type=None, hypervisor_version=None, cpu_info={},
                supported_instances=[], availability_zone=None, vcpus_used=0,
                free_ram_mb=0, free_disk_mb=0, num_instances=0, num_io_ops=0,
                failed_builds=0, created_at=now, updated_at=now,
            ).on_conflict_do_nothing())
            row = s.scalars(sa.select(rp).where(rp.name == name).with_for_update()
                            .execution_options(populate_existing=True)).one_or_none()
            if row is None or (uuid is not None and row.uuid != uuid):
                raise errors.Conflict(f"host {name!r} and resource provider uuid "
                                      f"{uuid} belong to different providers")
            if generation is not None and row.generation != generation:
                raise errors.GenerationConflict(row.uuid, generation)
            if fields.get("service_id") is not None and \
                    s.get(m.Service, fields["service_id"]) is None:
                raise errors.Invalid("service_id", f"service {fields['service_id']} not found")
            for key, value in fields.items():
                setattr(row, key, value)
            row.updated_at = now
            if invs is not None and self._replace_inventories(s, row.uuid, invs):
                row.generation += 1
            s.flush()
            return self._hosts(s, [row], SERVICE_DOWN_TIME)[0]
        return self._write(work)

    def set_compute_views(self, views: Mapping[str, ComputeView]) -> None:
        """Write hosts' compute views (what a compute agent counts after every
        change) in one transaction: one UPDATE each, no generation bump, nothing
        read back. All or nothing: NotFound naming an unknown host, Invalid for a
        negative counter."""
        for name, v in views.items():
            for counter, value in (("vcpus_used", v.vcpus_used), ("num_instances", v.num_instances),
                                   ("num_io_ops", v.num_io_ops), ("failed_builds", v.failed_builds)):
                _not_negative(counter, value)
            for field, value in (("free_ram_mb", v.free_ram_mb), ("free_disk_mb", v.free_disk_mb)):
                if not _is_int(value):
                    raise errors.Invalid(field, "must be an integer")

        fields = ("vcpus_used", "free_ram_mb", "free_disk_mb", "num_instances", "num_io_ops",
                  "failed_builds")

        def work(s: Session) -> None:
            rp = _PROVIDERS.c
            now = self._clock()
            conn = s.connection()
            result = conn.execute(_stmt("set compute view", lambda: sa.update(_PROVIDERS).where(
                rp.name == sa.bindparam("b_name")).values(
                    updated_at=sa.bindparam("b_now"),
                    **{f: sa.bindparam(f"b_{f}") for f in fields})),
                [{"b_name": name, "b_now": now, **{f"b_{f}": getattr(v, f) for f in fields}}
                 for name, v in sorted(views.items())])
            if _rowcount(result) != len(views):
                known = set(conn.execute(sa.select(rp.name).where(rp.name.in_(list(views))))
                            .scalars())
                raise errors.NotFound(f"host {min(set(views) - known)} not found")
        if views:
            self._write(work)

    def get_host(self, name: str | None = None, *, uuid: str | None = None,
                 service_down_time: float = SERVICE_DOWN_TIME) -> Host:
        """A host by name or by resource provider uuid."""
        if (name is None) == (uuid is None):
            raise errors.Invalid("name", "give a host name or a uuid")

        def work(s: Session) -> Host:
            rp = m.ResourceProvider
            row = s.scalars(sa.select(rp).where(
                rp.uuid == uuid if uuid is not None else rp.name == name)).one_or_none()
            if row is None:
                raise errors.NotFound(f"host {name or uuid} not found")
            return self._hosts(s, [row], service_down_time)[0]
        return self._read(work)

    def get_hosts(self, names: Iterable[str], *,
                  service_down_time: float = SERVICE_DOWN_TIME) -> dict[str, Host]:
        """The hosts of those names that exist, read as one snapshot."""
        wanted = sorted(set(names))

        def work(s: Session) -> dict[str, Host]:
            rp = _PROVIDERS.c
            rows = list(s.connection().execute(_stmt("providers named", lambda: sa.select(
                _PROVIDERS).where(rp.name.in_(sa.bindparam("names", expanding=True)))),
                {"names": wanted})) if wanted else []
            return {h.name: h for h in self._hosts(s, rows, service_down_time)}
        return self._read(work)

    def list_hosts(self, *, service_down_time: float = SERVICE_DOWN_TIME) -> list[Host]:
        """Every host with its inventories, usage (sum of allocations), generation,
        traits, aggregates and compute service: what the scheduler loads at start,
        read as one snapshot."""
        return self._read(lambda s: self._hosts(
            s, list(s.scalars(sa.select(m.ResourceProvider)
                              .order_by(m.ResourceProvider.name))),
            service_down_time, everything=True))

    def delete_host(self, name: str) -> None:
        """Remove a host's provider and inventories. Conflict while it holds
        allocations."""
        def work(s: Session) -> None:
            rp = m.ResourceProvider
            row = s.scalars(sa.select(rp).where(rp.name == name).with_for_update()).one_or_none()
            if row is None:
                raise errors.NotFound(f"host {name} not found")
            if s.scalar(sa.select(m.Allocation.consumer_uuid)
                        .where(m.Allocation.provider_uuid == row.uuid).limit(1)):
                raise errors.Conflict(f"host {name} still holds allocations")
            s.delete(row)
        self._write(work)

    def _replace_inventories(self, s: Session, provider_uuid: str,
                             new: Mapping[str, Inventory]) -> bool:
        inv = m.Inventory
        existing = {row.resource_class: row for row in s.scalars(
            sa.select(inv).where(inv.provider_uuid == provider_uuid))}
        changed = False
        for rc in sorted(set(existing) - set(new)):
            if s.scalar(sa.select(m.Allocation.consumer_uuid).where(
                    m.Allocation.provider_uuid == provider_uuid,
                    m.Allocation.resource_class == rc).limit(1)):
                raise errors.Conflict(f"inventory of {rc} on resource provider "
                                      f"{provider_uuid} is in use")
            s.delete(existing[rc])
            changed = True
        for rc, spec in sorted(new.items()):
            values = {"total": spec.total, "reserved": spec.reserved,
                      "min_unit": spec.min_unit, "max_unit": spec.max_unit,
                      "step_size": spec.step_size, "allocation_ratio": spec.allocation_ratio}
            row = existing.get(rc)
            if row is None:
                s.add(inv(provider_uuid=provider_uuid, resource_class=rc, **values))
                changed = True
            elif any(getattr(row, k) != v for k, v in values.items()):
                for k, v in values.items():
                    setattr(row, k, v)
                changed = True
        return changed

    def _hosts(self, s: Session, rows: Sequence[m.ResourceProvider | sa.Row[Any]],
               service_down_time: float, everything: bool = False) -> list[Host]:
        """Host records for provider rows (ORM objects or Core rows); ``everything``
        reads whole tables instead of filtering on the providers."""
        conn = s.connection()
        uuids = [r.uuid for r in rows]
        names = [r.name for r in rows]
        keys = {"uuids": uuids, "names": names}

        def query(table: Any, columns: Sequence[str], key_column: str, keys: str,
                  sum_of: str | None = None) -> Any:
            """SELECT columns (with sum(sum_of) per them) FROM table, of rows whose
            key_column is in the bind parameter ``keys`` unless ``everything``."""
            def build() -> Any:
                c = table.c
                picked = [c[n] for n in columns]
                stmt = sa.select(*picked, *([sa.func.sum(c[sum_of])] if sum_of else []))
                if not everything:
                    stmt = stmt.where(c[key_column].in_(sa.bindparam(keys, expanding=True)))
                return stmt.group_by(*picked) if sum_of else stmt
            return _stmt(f"hosts {table.name} {columns} everything={everything}", build)

        inventories: dict[str, dict[str, Inventory]] = defaultdict(dict)
        for i in conn.execute(query(_INVENTORIES, [c.name for c in _INVENTORIES.c],
                                    "provider_uuid", "uuids"), keys):
            inventories[i.provider_uuid][i.resource_class] = Inventory(
                total=i.total, reserved=i.reserved, min_unit=i.min_unit, max_unit=i.max_unit,
                step_size=i.step_size, allocation_ratio=i.allocation_ratio)
        usage: dict[str, dict[str, int]] = defaultdict(dict)
        for provider, rc, used in conn.execute(query(
                _ALLOCATIONS, ["provider_uuid", "resource_class"], "provider_uuid", "uuids",
                sum_of="used"), keys):
            usage[provider][rc] = int(used)
        traits: dict[str, set[str]] = defaultdict(set)
        for provider, trait in conn.execute(query(
                m.ProviderTrait.__table__, ["provider_uuid", "trait_name"], "provider_uuid",
                "uuids"), keys):
            traits[provider].add(trait)
        aggregates: dict[str, set[str]] = defaultdict(set)
        for aggregate_id, host in conn.execute(query(
                m.AggregateHost.__table__, ["aggregate_id", "host"], "host", "names"), keys):
            aggregates[host].add(aggregate_id)
        services: dict[int, Any] = {}
        service_ids = [r.service_id for r in rows if r.service_id is not None]
        if service_ids:
            sv = m.Service.__table__
            for svc in conn.execute(_stmt("services by id", lambda: sa.select(sv).where(
                    sv.c.id.in_(sa.bindparam("ids", expanding=True)))), {"ids": service_ids}):
                services[svc.id] = svc
        now = self._clock()
        return [Host(
            uuid=r.uuid, name=r.name, generation=r.generation, service_id=r.service_id,
            hypervisor_type=r.hypervisor_type, hypervisor_version=r.hypervisor_version,
            cpu_info=r.cpu_info, supported_instances=r.supported_instances,
            availability_zone=r.availability_zone, vcpus_used=r.vcpus_used,
            free_ram_mb=r.free_ram_mb, free_disk_mb=r.free_disk_mb,
            num_instances=r.num_instances, num_io_ops=r.num_io_ops,
            failed_builds=r.failed_builds, updated_at=r.updated_at,
            inventories=dict(inventories[r.uuid]), usage=dict(usage[r.uuid]),
            traits=frozenset(traits[r.uuid]), aggregates=frozenset(aggregates[r.name]),
            service=(_service(services[r.service_id], now, service_down_time)
                     if r.service_id in services else None),
        ) for r in rows]

    # --- aggregates ------------------------------------------------------------------
    #
    # Nova's AggregateAPI rules hold inside the transactions that write, with the
    # provider rows of the hosts concerned locked, so that two admins cannot put
    # one host into two zones at once: a host is in one availability zone at most;
    # a change that would move a host with servers to another zone is refused
    # (its servers would leave the zone they were created in); an aggregate with
    # hosts is not deleted. A refusal is InvalidState and changes nothing.

    def create_aggregate(self, name: str, *, availability_zone: str | None = None,
                         metadata: Mapping[str, str] | None = None) -> Aggregate:
        """A host aggregate; ``availability_zone`` makes it a zone (its metadata key
        "availability_zone"). Conflict when the name is taken."""
        name = _name("name", name)
        meta = _string_map("metadata", metadata or {})
        if availability_zone is not None:
            meta[ZONE_KEY] = _name("availability_zone", availability_zone)

        def work(s: Session) -> Aggregate:
            if s.scalar(sa.select(m.Aggregate.id).where(m.Aggregate.name == name)):
                raise errors.Conflict(f"an aggregate named {name!r} already exists")
            row = m.Aggregate(id=_new_uuid(), name=name, created_at=self._clock())
            s.add(row)
            s.flush()
            s.add_all(m.AggregateMetadata(aggregate_id=row.id, key=k, value=v)
                      for k, v in meta.items())
            s.flush()
            return self._aggregate(s, row)
        return self._write(work)

    def get_aggregate(self, aggregate_id: str) -> Aggregate:
        return self._read(lambda s: self._aggregate(s, self._aggregate_row(s, aggregate_id)))

    def list_aggregates(self) -> list[Aggregate]:
        """Every aggregate by name, with hosts and metadata (three queries, whatever
        their number: the schedulers re-read them all after each change)."""
        def work(s: Session) -> list[Aggregate]:
            hosts: dict[str, set[str]] = defaultdict(set)
            for aggregate_id, host in s.execute(sa.select(m.AggregateHost.aggregate_id,
                                                          m.AggregateHost.host)):
                hosts[aggregate_id].add(host)
            metadata: dict[str, dict[str, str]] = defaultdict(dict)
            md = m.AggregateMetadata
            for aggregate_id, key, value in s.execute(sa.select(md.aggregate_id, md.key, md.value)):
                metadata[aggregate_id][key] = value
            return [Aggregate(id=r.id, name=r.name, hosts=frozenset(hosts[r.id]),
                              metadata=metadata[r.id], created_at=r.created_at)
                    for r in s.scalars(sa.select(m.Aggregate).order_by(m.Aggregate.name))]
        return self._read(work)

    def delete_aggregate(self, aggregate_id: str) -> None:
        """Delete an empty aggregate and its metadata; InvalidState while it has
        hosts (Nova's "Host aggregate is not empty")."""
        def work(s: Session) -> None:
            row = self._aggregate_row(s, aggregate_id, lock=True)
            hosts = self._aggregate_hosts(s, aggregate_id)
            if hosts:
                raise errors.InvalidState(f"aggregate {row.name} is not empty: remove its hosts "
                                          f"first ({', '.join(sorted(hosts))})")
            s.delete(row)
        self._write(work)

    def update_aggregate(self, aggregate_id: str, *, name: str | None = None,
                         availability_zone: str | None = None,
                         default_zone: str = default("scheduler.default_availability_zone"),
                         ) -> Aggregate:
        """Rename an aggregate and/or set its availability zone (Nova's
        update_aggregate), in one transaction: Conflict when the name is taken,
        InvalidState when the zone breaks a rule above."""
        if name is not None:
            name = _name("name", name)
        change = {} if availability_zone is None else {
            ZONE_KEY: _name("availability_zone", availability_zone)}

        def work(s: Session) -> Aggregate:
            row = self._aggregate_row(s, aggregate_id, lock=True)
            if name is not None and name != row.name:
                if s.scalar(sa.select(m.Aggregate.id).where(m.Aggregate.name == name)):
                    raise errors.Conflict(f"an aggregate named {name!r} already exists")
                row.name = name
            self._change_metadata(s, row, change, default_zone)
            s.flush()
            return self._aggregate(s, row)
        return self._write(work)

    def set_aggregate_metadata(self, aggregate_id: str, metadata: Mapping[str, str | None], *,
                               default_zone: str = default("scheduler.default_availability_zone"),
                               ) -> Aggregate:
        """Set metadata keys; a None value removes the key (as Nova's API does).
        The key "availability_zone" is the aggregate's zone: InvalidState when the
        change breaks a rule above."""
        for key, value in metadata.items():
            _name("metadata", key)
            if value is not None:
                _name(f"metadata.{key}", value, allow_empty=key != ZONE_KEY)

        def work(s: Session) -> Aggregate:
            row = self._aggregate_row(s, aggregate_id, lock=True)
            self._change_metadata(s, row, metadata, default_zone)
            s.flush()
            return self._aggregate(s, row)
        return self._write(work)

    def add_aggregate_host(self, aggregate_id: str, host: str, *,
                           default_zone: str = default("scheduler.default_availability_zone"),
                           ) -> Aggregate:
        """Add a known compute host: NotFound for an unknown one, Conflict if it is
        already a member, InvalidState when its zone would clash or change."""
        def work(s: Session) -> Aggregate:
            row = self._aggregate_row(s, aggregate_id, lock=True)
            if not self._lock_providers(s, [host]):
                raise errors.NotFound(f"host {host} not found")
            if s.get(m.AggregateHost, (aggregate_id, host)) is not None:
                raise errors.Conflict(f"host {host} is already in aggregate {row.name}")
            zone = self._zone_of(s, aggregate_id)
            self._check_zones(s, [host], aggregate_id, zone_after=zone, member_after=True,
                              default_zone=default_zone)
            s.add(m.AggregateHost(aggregate_id=aggregate_id, host=host))
            s.flush()
            return self._aggregate(s, row)
        return self._write(work)

    def remove_aggregate_host(self, aggregate_id: str, host: str, *,
                              default_zone: str = default("scheduler.default_availability_zone"),
                              ) -> Aggregate:
        """NotFound when the host is not a member; InvalidState when its servers
        would change zone."""
        def work(s: Session) -> Aggregate:
            row = self._aggregate_row(s, aggregate_id, lock=True)
            self._lock_providers(s, [host])
            member = s.get(m.AggregateHost, (aggregate_id, host))
            if member is None:
                raise errors.NotFound(f"host {host} is not in aggregate {row.name}")
            self._check_zones(s, [host], aggregate_id, zone_after=None, member_after=False,
                              default_zone=default_zone)
            s.delete(member)
            s.flush()
            return self._aggregate(s, row)
        return self._write(work)

    def zone_services(self, *, default_zone: str = default("scheduler.default_availability_zone"),
                      service_down_time: float = SERVICE_DOWN_TIME) -> dict[str, list[Service]]:
        """Each availability zone with the compute services of its hosts, by name
        (Nova's get_availability_zones): a host's zone is its aggregates'
        availability_zone (the first by name if several differ), else the default
        zone. A zone no host is in is not one (Nova's)."""
        def work(s: Session) -> dict[str, list[Service]]:
            ah, md = m.AggregateHost, m.AggregateMetadata
            zone_of: dict[str, str] = {}
            for host, zone in s.execute(sa.select(ah.host, md.value).join(
                    md, sa.and_(md.aggregate_id == ah.aggregate_id, md.key == ZONE_KEY))):
                zone_of[host] = min(zone, zone_of.get(host, zone))
            now = self._clock()
            out: dict[str, list[Service]] = defaultdict(list)
            for row in s.scalars(sa.select(m.Service).where(m.Service.binary == "compute")
                                 .order_by(m.Service.host)):
                out[zone_of.get(row.host, default_zone)].append(
                    _service(row, now, service_down_time))
            return dict(sorted(out.items()))
        return self._read(work)

    def zone_availability(self, zone: str, *,
                          default_zone: str = default("scheduler.default_availability_zone"),
                          ) -> bool | None:
        """Whether a zone has an enabled compute host (True), disabled ones only
        (False) or no host at all (None): zone_services' answer for one zone, in
        one query whatever the number of hosts (every create naming a zone asks)."""
        def work(s: Session) -> bool | None:
            ah, md, sv = m.AggregateHost, m.AggregateMetadata, m.Service
            in_zone = sa.select(ah.host).join(md, sa.and_(
                md.aggregate_id == ah.aggregate_id, md.key == ZONE_KEY))
            named = sv.host.in_(in_zone.where(md.value == zone))
            hosts = sa.or_(named, sv.host.not_in(in_zone)) if zone == default_zone else named
            disabled = set(s.scalars(sa.select(sv.disabled).where(sv.binary == "compute", hosts)
                                     .distinct()))
            return (False in disabled) if disabled else None
        return self._read(work)

    def _change_metadata(self, s: Session, row: m.Aggregate, metadata: Mapping[str, str | None],
                         default_zone: str) -> None:
        if ZONE_KEY in metadata and metadata[ZONE_KEY] != self._zone_of(s, row.id):
            hosts = sorted(self._aggregate_hosts(s, row.id))
            self._lock_providers(s, hosts)
            self._check_zones(s, hosts, row.id, zone_after=metadata[ZONE_KEY], member_after=True,
                              default_zone=default_zone)
        md = m.AggregateMetadata
        for key, value in sorted(metadata.items()):
            s.execute(sa.delete(md).where(md.aggregate_id == row.id, md.key == key))
            if value is not None:
                s.add(md(aggregate_id=row.id, key=key, value=value))

    def _check_zones(self, s: Session, hosts: Sequence[str], aggregate_id: str, *,
                     zone_after: str | None, member_after: bool, default_zone: str) -> None:
        """Refuse a change to one aggregate's zone or membership that would put a
        host in two zones, or move a host that has servers to another zone."""
        if not hosts:
            return
        ah, md = m.AggregateHost, m.AggregateMetadata
        zones: dict[str, dict[str, str]] = defaultdict(dict)  # host -> aggregate -> zone
        for host, agg, zone in s.execute(
                sa.select(ah.host, ah.aggregate_id, md.value)
                .join(md, sa.and_(md.aggregate_id == ah.aggregate_id, md.key == ZONE_KEY))
                .where(ah.host.in_(list(hosts)))):
            zones[host][agg] = zone
        busy = dict(s.execute(sa.select(m.Instance.host, sa.func.count()).where(
            m.Instance.host.in_(list(hosts)), m.Instance.deleted_at.is_(None))
            .group_by(m.Instance.host)).all())
        for host in hosts:
            others = {z for a, z in zones[host].items() if a != aggregate_id}
            after = others | ({zone_after} if member_after and zone_after else set())
            if len(after) > 1:
                raise errors.InvalidState(
                    f"host {host} is already in availability zone "
                    f"{', '.join(sorted(others))}; a host is in one zone at most")
            before = min(zones[host].values(), default=default_zone)
            now = min(after, default=default_zone)
            if before != now and busy.get(host):
                raise errors.InvalidState(
                    f"host {host} has {busy[host]} server(s): its availability zone cannot "
                    f"change from {before!r} to {now!r} (the servers would leave the zone "
                    "they were created in); move them away first")

    @staticmethod
    def _lock_providers(s: Session, hosts: Sequence[str]) -> list[str]:
        """Lock the hosts' provider rows (in name order: no deadlock between two
        such transactions); returns the names found."""
        rp = m.ResourceProvider
        return list(s.scalars(sa.select(rp.name).where(rp.name.in_(list(hosts)))
                              .order_by(rp.name).with_for_update()))

    @staticmethod
    def _aggregate_hosts(s: Session, aggregate_id: str) -> set[str]:
        return set(s.scalars(sa.select(m.AggregateHost.host)
                             .where(m.AggregateHost.aggregate_id == aggregate_id)))

    @staticmethod
    def _zone_of(s: Session, aggregate_id: str) -> str | None:
        md = m.AggregateMetadata
        return s.scalar(sa.select(md.value).where(md.aggregate_id == aggregate_id,
                                                  md.key == ZONE_KEY))

    @staticmethod
    def _aggregate_row(s: Session, aggregate_id: str, lock: bool = False) -> m.Aggregate:
        row = s.get(m.Aggregate, aggregate_id, with_for_update=lock or None)
        if row is None:
            raise errors.NotFound(f"aggregate {aggregate_id} not found")
        return row

    @staticmethod
    def _aggregate(s: Session, row: m.Aggregate) -> Aggregate:
        hosts = s.scalars(sa.select(m.AggregateHost.host)
                          .where(m.AggregateHost.aggregate_id == row.id))
        md = s.execute(sa.select(m.AggregateMetadata.key, m.AggregateMetadata.value)
                       .where(m.AggregateMetadata.aggregate_id == row.id))
        return Aggregate(id=row.id, name=row.name, hosts=frozenset(hosts),
                         metadata={k: v for k, v in md}, created_at=row.created_at)

    # --- traits ----------------------------------------------------------------------

    def create_trait(self, name: str) -> None:
        """Make a trait known (idempotent)."""
        name = _trait_name(name)
        self._write(lambda s: self._ensure_traits(s, [name]))

    def list_traits(self) -> list[str]:
        return self._read(lambda s: list(s.scalars(sa.select(m.Trait.name)
                                                   .order_by(m.Trait.name))))

    def delete_trait(self, name: str) -> None:
        """Forget a trait; Conflict while a provider carries it."""
        def work(s: Session) -> None:
            row = s.get(m.Trait, name)
            if row is None:
                raise errors.NotFound(f"trait {name} not found")
            if s.scalar(sa.select(m.ProviderTrait.provider_uuid)
                        .where(m.ProviderTrait.trait_name == name).limit(1)):
                raise errors.Conflict(f"trait {name} is in use")
            s.delete(row)
        self._write(work)

    def set_provider_traits(self, provider_uuid: str, traits: Iterable[str], *,
                            generation: int | None = None) -> int:
        """Replace a provider's traits (unknown ones are created), bumping its
        generation (compare-and-swap with ``generation``). Returns the new one."""
        names = sorted({_trait_name(t) for t in traits})
        return self._write(lambda s: self._replace_traits(s, provider_uuid, names, generation))

    def set_reported_traits(self, provider_uuid: str, traits: Iterable[str]) -> bool:
        """What a compute agent reports of its host's CPU: the host's traits with
        CPU_TRAIT_PREFIX become exactly ``traits``, the others (an admin's) stay.
        The generation moves only when something changed; returns whether it did."""
        names = {_trait_name(t) for t in traits}
        stray = sorted(t for t in names if not t.startswith(CPU_TRAIT_PREFIX))
        if stray:
            raise errors.Invalid("traits", f"{stray[0]!r}: a compute agent reports "
                                           f"{CPU_TRAIT_PREFIX}* traits only")

        def work(s: Session) -> bool:
            current = self._provider_traits(s, provider_uuid, lock=True)
            wanted = {t for t in current if not t.startswith(CPU_TRAIT_PREFIX)} | names
            if wanted == current:
                return False
            self._replace_traits(s, provider_uuid, wanted, None)
            return True
        return self._write(work)

    def add_host_trait(self, host: str, trait: str) -> Host:
        """An admin's trait on a host (Placement's custom traits, and standard ones
        such as STORAGE_DISK_SSD), bumping its generation. Invalid for a
        CPU_TRAIT_PREFIX trait (the host's agent owns those), Conflict when the
        host has it already."""
        trait = _admin_trait(trait)

        def work(s: Session) -> Host:
            row = self._provider_row(s, host)
            current = self._provider_traits(s, row.uuid)
            if trait in current:
                raise errors.Conflict(f"host {host} already has trait {trait}")
            self._replace_traits(s, row.uuid, current | {trait}, None)
            return self._hosts(s, [row], SERVICE_DOWN_TIME)[0]
        return self._write(work)

    def remove_host_trait(self, host: str, trait: str) -> Host:
        """Take an admin's trait off a host; NotFound when it has none such."""
        trait = _admin_trait(trait)

        def work(s: Session) -> Host:
            row = self._provider_row(s, host)
            current = self._provider_traits(s, row.uuid)
            if trait not in current:
                raise errors.NotFound(f"host {host} has no trait {trait}")
            self._replace_traits(s, row.uuid, current - {trait}, None)
            return self._hosts(s, [row], SERVICE_DOWN_TIME)[0]
        return self._write(work)

    @staticmethod
    def _provider_row(s: Session, host: str) -> m.ResourceProvider:
        """A host's provider row, locked: its traits and generation change."""
        rp = m.ResourceProvider
        row = s.scalars(sa.select(rp).where(rp.name == host).with_for_update()
                        .execution_options(populate_existing=True)).one_or_none()
        if row is None:
            raise errors.NotFound(f"host {host} not found")
        return row

    @staticmethod
    def _provider_traits(s: Session, provider_uuid: str, lock: bool = False) -> set[str]:
        if lock:  # the provider row: concurrent reports of one host take turns
            s.execute(sa.select(m.ResourceProvider.uuid)
                      .where(m.ResourceProvider.uuid == provider_uuid).with_for_update())
        pt = m.ProviderTrait
        return set(s.scalars(sa.select(pt.trait_name).where(pt.provider_uuid == provider_uuid)))

    def _replace_traits(self, s: Session, provider_uuid: str, names: Iterable[str],
                        generation: int | None) -> int:
        """Replace a provider's traits (unknown ones are created), bumping its
        generation (compare-and-swap with ``generation``). Returns the new one."""
        names = sorted(set(names))
        new_generation = _bump_generation(s, provider_uuid, generation)
        self._ensure_traits(s, names)
        pt = m.ProviderTrait
        s.execute(sa.delete(pt).where(pt.provider_uuid == provider_uuid))
        s.add_all(pt(provider_uuid=provider_uuid, trait_name=n) for n in names)
        s.flush()
        return new_generation

    def _ensure_traits(self, s: Session, names: list[str]) -> None:
        if names:
            now = self._clock()
            s.execute(self._insert(m.Trait).values(
                [{"name": n, "created_at": now} for n in names]).on_conflict_do_nothing())


# --- rows to records ------------------------------------------------------------------

def _admin_trait(trait: str) -> str:
    trait = _trait_name(trait)
    if trait.startswith(CPU_TRAIT_PREFIX):
        raise errors.Invalid("trait", f"{trait}: the host's compute agent reports the "
                                      f"{CPU_TRAIT_PREFIX}* traits of its CPU; set others "
                                      "(CUSTOM_*, for example)")
    return trait


def _service(r: m.Service, now: datetime, service_down_time: float) -> Service:
    is_up = (r.last_seen_up is not None
             and now - r.last_seen_up <= timedelta(seconds=service_down_time))
    return Service(id=r.id, host=r.host, binary=r.binary, endpoint=r.endpoint,
                   disabled=r.disabled, disabled_reason=r.disabled_reason,
                   last_seen_up=r.last_seen_up, created_at=r.created_at, is_up=is_up)
