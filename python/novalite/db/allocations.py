"""The allocations' queries: what consumers (instances) hold on resource
providers (hosts), claimed and released with a compare-and-swap on each
provider's generation."""

from __future__ import annotations

from collections import defaultdict
from typing import Iterable, Mapping

import sqlalchemy as sa
from sqlalchemy.orm import Session

from novalite import errors
from novalite.db import models as m
from novalite.db.engine import (
    _ALLOCATIONS, _INVENTORIES, _PROVIDERS, Transactions, _bump_generation, _stmt,
)
from novalite.db.validation import _is_int
from novalite.objects.records import Allocation


class Allocations(Transactions):
    """Claims and releases. An instance's delete releases its allocations inside
    its own transaction (_release)."""

    def claim_allocations(
        self, consumer_uuid: str, allocations: Mapping[str, Mapping[str, int]], *,
        generations: Mapping[str, int] | None = None,
    ) -> dict[str, int]:
        """Write a consumer's allocations ({provider uuid: {resource class:
        amount}}), replacing any it held, in one transaction.

        Each touched provider's generation is bumped with a compare-and-swap against
        ``generations[provider]`` when given (GenerationConflict when another writer
        got there first). Every amount must respect min_unit/max_unit/step_size and
        fit: used + amount <= int((total - reserved) * allocation_ratio), unless it
        does not grow what the consumer already held there (CapacityExceeded).
        On any error nothing is written. Returns the providers' new generations.
        """
        wanted: dict[str, dict[str, int]] = {}
        for provider, resources in allocations.items():
            for rc, amount in resources.items():
                if not _is_int(amount) or amount < 1:
                    raise errors.Invalid(f"allocations.{provider}.{rc}",
                                         "must be an integer >= 1")
                wanted.setdefault(provider, {})[rc] = amount
        if not wanted:
            raise errors.Invalid("allocations", "must allocate something; release instead")
        return self._write(lambda s: self._claim(s, {consumer_uuid: wanted}, generations or {}))

    def claim_allocations_many(
        self, claims: Mapping[str, Mapping[str, Mapping[str, int]]], *,
        generations: Mapping[str, int] | None = None, moves: Mapping[str, str] | None = None,
    ) -> dict[str, int]:
        """``claim_allocations`` for several consumers at once ({consumer: {provider:
        {resource class: amount}}}), all or nothing, in one transaction: a
        multi-create's instances are claimed with one compare-and-swap per provider
        instead of one transaction each. Later consumers see the earlier ones'
        usage. Returns the providers' new generations (each bumped once).

        ``moves`` ({from consumer: to consumer}, Placement's POST /allocations
        move, applied first): what ``from`` holds becomes ``to``'s (``to``'s own
        released), with no capacity check since nothing grows; a move starts so,
        the instance's source allocation passing to its migration while the
        instance claims the destination."""
        wanted: dict[str, dict[str, dict[str, int]]] = {}
        for consumer, allocations in claims.items():
            for provider, resources in allocations.items():
                for rc, amount in resources.items():
                    if not _is_int(amount) or amount < 1:
                        raise errors.Invalid(f"allocations.{consumer}.{provider}.{rc}",
                                             "must be an integer >= 1")
                    wanted.setdefault(consumer, {}).setdefault(provider, {})[rc] = amount
            if consumer not in wanted:
                raise errors.Invalid(f"allocations.{consumer}", "must allocate something")
        if not wanted:
            raise errors.Invalid("allocations", "must allocate something")
        return self._write(lambda s: self._claim(s, wanted, generations or {}, moves or {}))

    def move_allocations(self, moves: Mapping[str, str], *,
                         generations: Mapping[str, int] | None = None) -> dict[str, int]:
        """Placement's allocation move alone ({from consumer: to consumer}, see
        claim_allocations_many), in one transaction: a revert gives a migration's
        source allocation back to its instance, whose destination one goes. A
        ``from`` holding nothing moves nothing (``to`` keeps what it has), so a
        repeated move is harmless. Returns the touched providers' new generations."""
        return self._write(lambda s: self._claim(s, {}, generations or {}, moves))

    def _claim(self, s: Session, wanted: Mapping[str, Mapping[str, Mapping[str, int]]],
               expected: Mapping[str, int],
               moves: Mapping[str, str] | None = None) -> dict[str, int]:
        """The transaction of claim_allocations(_many) and move_allocations: the
        ``moves`` first, then replace each consumer's allocations with
        ``wanted[consumer]``, checking every amount against the providers'
        inventories and usage (the consumers in order, each seeing the ones before
        it); each touched provider's generation bumped once, with a
        compare-and-swap where ``expected`` names it."""
        conn = s.connection()
        a = _ALLOCATIONS.c
        moves = moves or {}
        consumers = sorted(wanted)
        involved = sorted(set(consumers) | set(moves) | set(moves.values()))
        held_before = [tuple(r) for r in conn.execute(_stmt("held", lambda: sa.select(
            a.consumer_uuid, a.provider_uuid, a.resource_class, a.used)
            .where(a.consumer_uuid.in_(sa.bindparam("consumers", expanding=True)))),
            {"consumers": involved})]
        providers = sorted({p for w in wanted.values() for p in w})
        holders = {r[0] for r in held_before}
        moving = {source: target for source, target in moves.items() if source in holders}
        relevant = set(consumers) | set(moving) | set(moving.values())
        touched = sorted(set(providers) | {r[1] for r in held_before if r[0] in relevant})
        # Bump generations first, in uuid order: on PostgreSQL the UPDATE takes the
        # provider's row lock, so the usage read below cannot miss a racing claim,
        # and a stale expected generation fails here.
        new_generations = {p: _bump_generation(s, p, expected.get(p)) for p in touched}
        for source, target in sorted(moving.items()):
            conn.execute(sa.delete(_ALLOCATIONS).where(a.consumer_uuid == target))
            conn.execute(sa.update(_ALLOCATIONS).where(a.consumer_uuid == source)
                         .values(consumer_uuid=target))
        if not wanted:
            return new_generations
        held: dict[tuple[str, str, str], int] = {
            (c, p, rc): used for c, p, rc, used in conn.execute(_stmt("held", lambda: sa.select(
                a.consumer_uuid, a.provider_uuid, a.resource_class, a.used)
                .where(a.consumer_uuid.in_(sa.bindparam("consumers", expanding=True)))),
                {"consumers": consumers})} if moves else {
            (c, p, rc): used for c, p, rc, used in held_before if c in relevant}
        conn.execute(_stmt("drop held", lambda: sa.delete(_ALLOCATIONS).where(
            a.consumer_uuid.in_(sa.bindparam("consumers", expanding=True)))),
            {"consumers": consumers})
        inventories = {(i.provider_uuid, i.resource_class): i for i in conn.execute(
            _stmt("inventories of", lambda: sa.select(_INVENTORIES).where(
                _INVENTORIES.c.provider_uuid.in_(sa.bindparam("providers", expanding=True)))),
            {"providers": providers})}
        usage = {(p, rc): int(used) for p, rc, used in conn.execute(
            _stmt("usage of", lambda: sa.select(a.provider_uuid, a.resource_class,
                                                sa.func.sum(a.used))
                  .where(a.provider_uuid.in_(sa.bindparam("providers", expanding=True)))
                  .group_by(a.provider_uuid, a.resource_class)),
            {"providers": providers})}
        now = self._clock()
        rows = []
        for consumer in consumers:
            for provider, resources in sorted(wanted[consumer].items()):
                for rc, amount in sorted(resources.items()):
                    inv = inventories.get((provider, rc))
                    if inv is None:
                        raise errors.CapacityExceeded(provider, rc, amount,
                                                      "no inventory of that class")
                    if amount < inv.min_unit or amount > inv.max_unit:
                        raise errors.CapacityExceeded(
                            provider, rc, amount,
                            f"outside min_unit {inv.min_unit} .. max_unit {inv.max_unit}")
                    if amount % inv.step_size:
                        raise errors.CapacityExceeded(
                            provider, rc, amount, f"not a multiple of step_size {inv.step_size}")
                    capacity = int((inv.total - inv.reserved) * inv.allocation_ratio)
                    used = usage.get((provider, rc), 0)
                    if used + amount > capacity and amount > held.get((consumer, provider, rc), 0):
                        raise errors.CapacityExceeded(
                            provider, rc, amount, f"{used} of {capacity} in use")
                    usage[(provider, rc)] = used + amount
                    rows.append({"consumer_uuid": consumer, "provider_uuid": provider,
                                 "resource_class": rc, "used": amount, "created_at": now})
        if rows:
            conn.execute(_stmt("insert allocation", lambda: sa.insert(_ALLOCATIONS)), rows)
        return new_generations

    def get_generations(self, provider_uuids: Iterable[str]) -> dict[str, int]:
        """The current generation of each of these resource providers that exists."""
        wanted = sorted(set(provider_uuids))

        def work(s: Session) -> dict[str, int]:
            rp = _PROVIDERS.c
            return {uuid: int(gen) for uuid, gen in s.connection().execute(
                _stmt("generations", lambda: sa.select(rp.uuid, rp.generation).where(
                    rp.uuid.in_(sa.bindparam("uuids", expanding=True)))), {"uuids": wanted})}
        return self._read(work) if wanted else {}

    def release_allocations(self, consumer_uuid: str) -> dict[str, int]:
        """Remove all of a consumer's allocations, bumping each provider's
        generation. Returns the new generations ({} when it held nothing)."""
        return self._write(lambda s: self._release(s, consumer_uuid))

    def get_allocations(self, consumer_uuid: str) -> dict[str, dict[str, int]]:
        """A consumer's allocations: {provider uuid: {resource class: amount}}."""
        def work(s: Session) -> dict[str, dict[str, int]]:
            out: dict[str, dict[str, int]] = defaultdict(dict)
            a = m.Allocation
            for p, rc, used in s.execute(sa.select(a.provider_uuid, a.resource_class, a.used)
                                         .where(a.consumer_uuid == consumer_uuid)):
                out[p][rc] = used
            return dict(out)
        return self._read(work)

    def list_allocations(self, provider_uuid: str) -> list[Allocation]:
        """Every allocation against a provider, by consumer."""
        def work(s: Session) -> list[Allocation]:
            if s.get(m.ResourceProvider, provider_uuid) is None:
                raise errors.NotFound(f"resource provider {provider_uuid} not found")
            a = m.Allocation
            return [Allocation(r.consumer_uuid, r.provider_uuid, r.resource_class, r.used,
                               r.created_at)
                    for r in s.scalars(sa.select(a).where(a.provider_uuid == provider_uuid)
                                       .order_by(a.consumer_uuid, a.resource_class))]
        return self._read(work)

    @staticmethod
    def _release(s: Session, consumer_uuid: str) -> dict[str, int]:
        a = m.Allocation
        providers = sorted(set(s.scalars(sa.select(a.provider_uuid)
                                         .where(a.consumer_uuid == consumer_uuid))))
        generations = {p: _bump_generation(s, p, None) for p in providers}
        s.execute(sa.delete(a).where(a.consumer_uuid == consumer_uuid))
        return generations
