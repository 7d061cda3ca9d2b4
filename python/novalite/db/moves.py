"""The migrations' queries: the record of each move of an instance between hosts
(Nova's migrations table). A migration is created, and its status changed,
together with its instance's state in update_instance (instances.py), so a move's
progress and its server's task never disagree."""

from __future__ import annotations

from datetime import datetime
from typing import Any, cast

import sqlalchemy as sa
from sqlalchemy.engine import Connection
from sqlalchemy.orm import Session

from novalite import errors
from novalite.db import models as m
from novalite.db.allocations import Allocations
from novalite.db.engine import _rowcount
from novalite.objects.records import (
    MIGRATION_DONE_STATUSES, MIGRATION_TYPES, Migration, MigrationChange, NewMigration,
)

_MIGRATIONS = cast(sa.Table, m.Migration.__table__)


class Moves(Allocations):
    """Reading migrations; their writes go with their instance's (update_instance),
    but for the end of an evacuation, which its source host's agent settles."""

    def complete_evacuation(self, migration_id: str) -> dict[str, int]:
        """An evacuation done (the server rebuilt elsewhere) settled by its source
        host once that is back, as Nova's _destroy_evacuated_instances: the
        allocation the migration held there released, the migration "completed",
        in one transaction. Returns the providers' new generations ({} when it was
        settled already)."""
        def work(s: Session) -> dict[str, int]:
            c = _MIGRATIONS.c
            done = s.connection().execute(sa.update(_MIGRATIONS).where(
                c.id == migration_id, c.migration_type == "evacuation", c.status == "done")
                .values(status="completed", updated_at=self._clock()))
            return self._release(s, migration_id) if _rowcount(done) else {}
        return self._write(work)

    def get_migration(self, migration_id: str) -> Migration:
        def work(s: Session) -> Migration:
            row = s.get(m.Migration, migration_id)
            if row is None:
                raise errors.NotFound(f"migration {migration_id} not found")
            return _migration(row)
        return self._read(work)

    def list_migrations(self, *, instance_id: str | None = None, host: str | None = None,
                        open_only: bool = False, migration_type: str | None = None,
                        limit: int | None = None) -> list[Migration]:
        """Migrations newest first: of an instance, from or to a host, only those
        still in progress (their allocations not settled), of one type."""
        def work(s: Session) -> list[Migration]:
            q = sa.select(m.Migration).order_by(m.Migration.created_at.desc(),
                                                m.Migration.id.desc())
            if instance_id is not None:
                q = q.where(m.Migration.instance_id == instance_id)
            if host is not None:
                q = q.where(sa.or_(m.Migration.source_host == host, m.Migration.dest_host == host))
            if open_only:
                q = q.where(m.Migration.status.not_in(sorted(MIGRATION_DONE_STATUSES)))
            if migration_type is not None:
                q = q.where(m.Migration.migration_type == migration_type)
            if limit is not None:
                q = q.limit(limit)
            return [_migration(r) for r in s.scalars(q)]
        return self._read(work)

    @staticmethod
    def _insert_migration(conn: Connection, instance_id: str, migration_id: str,
                          new: NewMigration, now: datetime) -> None:
        if new.migration_type not in MIGRATION_TYPES:
            raise errors.Invalid("migration_type", f"unknown migration type {new.migration_type!r}")
        conn.execute(sa.insert(_MIGRATIONS).values(
            id=migration_id, instance_id=instance_id, migration_type=new.migration_type,
            status=new.status, source_host=new.source_host, dest_host=None,
            requested_host=new.requested_host, old_flavor_id=new.old_flavor_id,
            new_flavor_id=new.new_flavor_id, old_vm_state=new.old_vm_state, created_at=now,
            updated_at=now))

    @staticmethod
    def _change_migration(conn: Connection, instance_id: str, change: MigrationChange,
                          now: datetime) -> bool:
        """Apply ``change`` to the instance's migration; False when its status is
        not one of those expected (or it is another instance's)."""
        c = _MIGRATIONS.c
        stmt = sa.update(_MIGRATIONS).where(c.id == change.id, c.instance_id == instance_id)
        if change.expected_status is not None:
            stmt = stmt.where(c.status.in_(sorted(change.expected_status)))
        values: dict[str, Any] = {"status": change.status, "updated_at": now}
        if change.dest_host is not None:
            values["dest_host"] = change.dest_host
        return _rowcount(conn.execute(stmt.values(**values))) == 1

    @staticmethod
    def _close_migrations(conn: Connection, instance_id: str, now: datetime) -> list[str]:
        """A deleted instance's open migrations: a resize waiting for its confirm is
        confirmed (as Nova confirms it on delete), any other ends in error. Returns
        their ids (the consumers whose allocations go too)."""
        c = _MIGRATIONS.c
        rows = conn.execute(sa.select(c.id, c.status).where(
            c.instance_id == instance_id, c.status.not_in(sorted(MIGRATION_DONE_STATUSES)))).all()
        for migration_id, status in rows:
            conn.execute(sa.update(_MIGRATIONS).where(c.id == migration_id).values(
                status="confirmed" if status == "finished" else "error", updated_at=now))
        return [r[0] for r in rows]


def _migration(r: m.Migration) -> Migration:
    return Migration(
        id=r.id, instance_id=r.instance_id, migration_type=r.migration_type, status=r.status,
        source_host=r.source_host, dest_host=r.dest_host, requested_host=r.requested_host,
        old_flavor_id=r.old_flavor_id, new_flavor_id=r.new_flavor_id,
        old_vm_state=r.old_vm_state, created_at=r.created_at, updated_at=r.updated_at)
