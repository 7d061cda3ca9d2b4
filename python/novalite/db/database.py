"""The Database facade: one method per unit of work the services need.

Every method runs in its own transaction and has committed it before it returns,
so a caller may acknowledge a request as soon as the call is back. Methods are
blocking and thread-safe; asyncio services call them through ``asyncio.to_thread``.

Concurrency:

* SQLite runs in WAL mode and opens every write transaction with ``BEGIN
  IMMEDIATE``: racing writers queue on the database lock (up to the busy timeout)
  instead of failing halfway, and each sees the previous writer's commit.
* PostgreSQL writes run at READ COMMITTED and take row locks in a fixed order
  (instance, then quota usages, then resource providers by uuid), so racing
  writers serialise on the rows they share without deadlocking. Reads run at
  REPEATABLE READ so a multi-query read (the scheduler's load) is one snapshot.
* Allocation writes compare-and-swap each provider's generation; quota
  check-and-reserve locks the project's quota_usages rows (SELECT ... FOR UPDATE).
"""

from __future__ import annotations

import base64
import logging
import fcntl
import math
import os
import random
import re
import threading
import time
import uuid as uuidlib
from collections import defaultdict
from contextlib import contextmanager
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Mapping, Sequence, TypeVar, cast

import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.orm import Session

from novalite import errors
from novalite.db import models as m
from novalite.objects.records import (
    ActionEvent, Aggregate, Allocation, ComputeView, EventStep, Flavor, Fault, Host, Image,
    Instance, InstanceAction, InstancePage, Inventory, NewFault, QuotaSet, Service, ServerGroup,
)
from novalite.objects.states import STATUSES, PowerState, TaskState, VmState, states_with_status

T = TypeVar("T")
LOG = logging.getLogger(__name__)

MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"

# Quota resources, in the order their usage rows are locked.
QUOTA_RESOURCES = ("cores", "instances", "ram")
# Nova's defaults ([quota] instances, cores, ram); -1 means unlimited.
DEFAULT_QUOTAS: Mapping[str, int] = {"instances": 10, "cores": 20, "ram": 51200}
# One multi-create may not ask for more instances than this, whatever the quota.
MAX_BATCH = 1000
# Nova's metadata_items quota default.
MAX_METADATA_ITEMS = 128
SERVER_GROUP_POLICIES = frozenset({"affinity", "anti-affinity", "soft-affinity",
                                   "soft-anti-affinity"})
SERVICE_BINARIES = frozenset({"api", "conductor", "scheduler", "compute"})
# Nova's [DEFAULT] service_down_time: no heartbeat for this long means down.
SERVICE_DOWN_TIME = 60.0

_NAME_MAX = 255
# Resource class and trait names, as Placement spells them.
_UPPER_SNAKE = re.compile(r"^[A-Z0-9_]+$")
# PostgreSQL's serialization_failure and deadlock_detected: the transaction did
# nothing durable and can simply run again.
_RETRYABLE_SQLSTATES = frozenset({"40001", "40P01"})
_RETRIES = 5
# Alembic keeps the running migration's context in module globals: one upgrade at
# a time per process. Across processes the database's own lock serialises them.
_MIGRATION_LOCK = threading.Lock()

# The hot paths (a server's create, its state changes, the scheduler's claims) read
# and write tables through SQLAlchemy Core: loading plain rows costs a fraction of
# building ORM objects. An instance row's columns carry the ORM attribute names, so
# the record builders read either kind.
_INSTANCES = cast(sa.Table, m.Instance.__table__)
_FLAVORS = cast(sa.Table, m.Flavor.__table__)
_QUOTA_USAGES = cast(sa.Table, m.QuotaUsage.__table__)
_ALLOCATIONS = cast(sa.Table, m.Allocation.__table__)
_INVENTORIES = cast(sa.Table, m.Inventory.__table__)
_PROVIDERS = cast(sa.Table, m.ResourceProvider.__table__)
_INSTANCE_ROW = tuple(c.label("metadata_") if c.name == "metadata" else c
                      for c in _INSTANCES.c)


class _Unset:
    """Marks an argument that was not given (None is a meaningful value)."""

    _instance: _Unset | None = None

    def __new__(cls) -> _Unset:
        if cls._instance is None:
            cls._instance = super().__new__(cls)
        return cls._instance

    def __repr__(self) -> str:
        return "UNSET"


UNSET: Any = _Unset()


_STATEMENTS: dict[str, Any] = {}


def _stmt(key: str, build: Callable[[], T]) -> T:
    """A statement built once (with bind parameters) and reused: building one
    costs more than running it."""
    stmt = _STATEMENTS.get(key)
    if stmt is None:
        stmt = _STATEMENTS[key] = build()
    return cast(T, stmt)


def _utcnow() -> datetime:
    return datetime.now(timezone.utc)


def _new_uuid() -> str:
    return str(uuidlib.uuid4())


class Database:
    """The control plane's database, SQLite or PostgreSQL by URL.

    ``url``: ``sqlite:////path/to/novalite.db`` or ``postgresql+psycopg://...``
    (a bare ``postgresql://`` is taken to mean psycopg 3). ``default_quotas``
    apply to projects without their own limits. ``clock`` gives the current UTC
    time (tests pass their own).
    """

    def __init__(
        self,
        url: str | sa.URL,
        *,
        default_quotas: Mapping[str, int] | None = None,
        busy_timeout: float = 30.0,
        pool_size: int = 10,
        clock: Callable[[], datetime] = _utcnow,
        echo: bool = False,
    ) -> None:
        parsed = sa.make_url(url)
        if parsed.drivername == "postgresql":
            parsed = parsed.set(drivername="postgresql+psycopg")
        self.url = parsed
        self.backend = parsed.get_backend_name()
        if self.backend not in ("sqlite", "postgresql"):
            raise errors.Invalid("url", f"unsupported database {self.backend!r}; "
                                        "use sqlite or postgresql")
        self._default_quotas = dict(DEFAULT_QUOTAS)
        for resource, limit in (default_quotas or {}).items():
            if resource not in QUOTA_RESOURCES or not _is_int(limit) or limit < -1:
                raise errors.Invalid(f"default_quotas.{resource}",
                                     "a known resource with a limit >= -1")
            self._default_quotas[resource] = limit
        self._clock = clock
        self._busy_timeout = busy_timeout
        # group commit (SQLite): writers that arrive while one is committing go
        # together in the next transaction
        self._commits = threading.Condition()
        self._queue: list[_Pending] = []
        self._leading = False
        self._leader: int | None = None
        self._turn_fd: int | None = None  # see _writer_turn
        # SQLite's automatic checkpoint (pages of WAL); see start_checkpoints
        self._sqlite_pragmas = {"wal_autocheckpoint": 1000}
        self._checkpoints: tuple[threading.Thread, threading.Event] | None = None
        self.engine: Engine
        if self.backend == "sqlite":
            if parsed.database in (None, "", ":memory:") or parsed.query.get("mode") == "memory":
                raise errors.Invalid("url", "in-memory SQLite cannot be shared between "
                                            "connections; give a file path")
            self.engine = sa.create_engine(
                parsed, echo=echo, pool_size=pool_size, max_overflow=pool_size,
                connect_args={"timeout": busy_timeout, "check_same_thread": False})
            _configure_sqlite(self.engine, busy_timeout, self._sqlite_pragmas)
        else:
            self.engine = sa.create_engine(
                parsed, echo=echo, pool_size=pool_size, max_overflow=pool_size,
                pool_pre_ping=True)

    # --- lifecycle -------------------------------------------------------------------

    def upgrade(self, revision: str = "head") -> None:
        """Bring the schema to ``revision`` with the Alembic migrations. Safe to run
        from several processes at once: they serialise and the later ones find
        nothing to do."""
        from alembic import command
        from alembic.config import Config

        config = Config()
        config.set_main_option("script_location", str(MIGRATIONS_DIR))
        config.attributes["database"] = self
        with _MIGRATION_LOCK:
            command.upgrade(config, revision)

    @contextmanager
    def migration_connection(self) -> Iterator[Connection]:
        """A connection whose transaction takes the write lock (SQLite) or an
        advisory lock (PostgreSQL), for migrations/env.py."""
        with self.engine.connect() as conn:
            # no retry loop here: let SQLite's own busy handler wait for the lock
            conn.execution_options(novalite_write=True, novalite_wait=True)
            with conn.begin():
                if self.backend == "postgresql":
                    conn.execute(sa.text("SELECT pg_advisory_xact_lock(7386617)"))
                yield conn

    def start_checkpoints(self, interval: float = 0.5) -> None:
        """SQLite, for a long-running service: copy the WAL into the database file
        every ``interval`` seconds from a thread of its own, outside any write. A
        checkpoint otherwise runs inside the commit that fills the WAL (1,000 pages),
        and every other process's writers wait for it: one took 146 ms under load.
        SQLite's own checkpoint stays as a backstop, at 10,000 pages."""
        if self.backend != "sqlite" or self._checkpoints is not None:
            return
        self._sqlite_pragmas["wal_autocheckpoint"] = 10_000
        self.engine.dispose()  # pooled connections take the new setting
        stop = threading.Event()

        def run() -> None:
            while not stop.wait(interval):
                try:
                    raw = self.engine.raw_connection()
                    try:
                        cursor = raw.cursor()
                        cursor.execute("PRAGMA wal_checkpoint(PASSIVE)")
                        cursor.fetchall()
                        cursor.close()
                    finally:
                        raw.close()
                except Exception:  # noqa: BLE001 - the next round, or SQLite's own, does it
                    LOG.debug("WAL checkpoint failed", exc_info=True)
        thread = threading.Thread(target=run, name="sqlite-checkpoints", daemon=True)
        self._checkpoints = (thread, stop)
        thread.start()

    def close(self) -> None:
        if self._checkpoints is not None:
            thread, stop = self._checkpoints
            stop.set()
            thread.join(timeout=10)
            self._checkpoints = None
        self.engine.dispose()
        if self._turn_fd is not None:
            os.close(self._turn_fd)
            self._turn_fd = None

    def __enter__(self) -> Database:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- flavors ---------------------------------------------------------------------

    def create_flavor(
        self, *, name: str, vcpus: int, memory_mb: int, root_gb: int = 0,
        ephemeral_gb: int = 0, swap: int = 0, is_public: bool = True,
        extra_specs: Mapping[str, str] | None = None, flavor_id: str | None = None,
    ) -> Flavor:
        """Create a flavor. Conflict if a live flavor has that name or the id is taken."""
        name = _name("name", name)
        _positive("vcpus", vcpus)
        _positive("memory_mb", memory_mb)
        for field, value in (("root_gb", root_gb), ("ephemeral_gb", ephemeral_gb), ("swap", swap)):
            _not_negative(field, value)
        specs = _string_map("extra_specs", extra_specs or {})
        fid = _name("flavor_id", flavor_id) if flavor_id is not None else _new_uuid()

        def work(s: Session) -> Flavor:
            if s.scalar(sa.select(m.Flavor.id).where(m.Flavor.name == name,
                                                     m.Flavor.deleted_at.is_(None))):
                raise errors.Conflict(f"a flavor named {name!r} already exists")
            if s.get(m.Flavor, fid) is not None:
                raise errors.Conflict(f"flavor id {fid!r} is taken")
            row = m.Flavor(id=fid, name=name, vcpus=vcpus, memory_mb=memory_mb,
                           root_gb=root_gb, ephemeral_gb=ephemeral_gb, swap=swap,
                           is_public=bool(is_public), extra_specs=specs,
                           created_at=self._clock(), deleted_at=None)
            s.add(row)
            s.flush()
            return _flavor(row)
        return self._write(work)

    def get_flavor(self, flavor_id: str, *, include_deleted: bool = False) -> Flavor:
        """A flavor by id; deleted ones only with include_deleted (instances built
        from a deleted flavor still name it)."""
        def query() -> Any:
            stmt = sa.select(_FLAVORS).where(_FLAVORS.c.id == sa.bindparam("id"))
            return stmt if include_deleted else stmt.where(_FLAVORS.c.deleted_at.is_(None))

        def work(s: Session) -> Flavor:
            row = s.connection().execute(_stmt(f"flavor deleted={include_deleted}", query),
                                         {"id": flavor_id}).one_or_none()
            if row is None:
                raise errors.NotFound(f"flavor {flavor_id} not found")
            return _flavor(row)
        return self._read(work)

    def list_flavors(self, *, is_public: bool | None = None) -> list[Flavor]:
        """Live flavors by name, optionally only public or only private ones."""
        def work(s: Session) -> list[Flavor]:
            q = sa.select(m.Flavor).where(m.Flavor.deleted_at.is_(None)).order_by(m.Flavor.name)
            if is_public is not None:
                q = q.where(m.Flavor.is_public == is_public)
            return [_flavor(r) for r in s.scalars(q)]
        return self._read(work)

    def delete_flavor(self, flavor_id: str) -> None:
        """Soft-delete a flavor: its name becomes free, its row stays for the
        instances that reference it."""
        def work(s: Session) -> None:
            self._flavor_row(s, flavor_id, lock=True).deleted_at = self._clock()
        self._write(work)

    def set_flavor_extra_specs(self, flavor_id: str, specs: Mapping[str, str]) -> Flavor:
        """Add or overwrite extra specs; the others stay."""
        new = _string_map("extra_specs", specs)

        def work(s: Session) -> Flavor:
            row = self._flavor_row(s, flavor_id, lock=True)
            row.extra_specs = {**row.extra_specs, **new}
            s.flush()
            return _flavor(row)
        return self._write(work)

    def unset_flavor_extra_specs(self, flavor_id: str, keys: Iterable[str]) -> Flavor:
        """Remove extra specs; NotFound (and nothing removed) if one is not set."""
        keys = list(keys)

        def work(s: Session) -> Flavor:
            row = self._flavor_row(s, flavor_id, lock=True)
            missing = [k for k in keys if k not in row.extra_specs]
            if missing:
                raise errors.NotFound(f"flavor {flavor_id} has no extra spec {missing[0]!r}")
            row.extra_specs = {k: v for k, v in row.extra_specs.items() if k not in keys}
            s.flush()
            return _flavor(row)
        return self._write(work)

    def _flavor_row(self, s: Session, flavor_id: str, include_deleted: bool = False,
                    lock: bool = False) -> m.Flavor:
        q = sa.select(m.Flavor).where(m.Flavor.id == flavor_id)
        if not include_deleted:
            q = q.where(m.Flavor.deleted_at.is_(None))
        if lock:
            q = q.with_for_update()
        row = s.scalars(q).one_or_none()
        if row is None:
            raise errors.NotFound(f"flavor {flavor_id} not found")
        return row

    # --- images ----------------------------------------------------------------------

    def register_image(
        self, *, name: str, path: str, disk_format: str, size_bytes: int | None = None,
        properties: Mapping[str, Any] | None = None, image_id: str | None = None,
    ) -> Image:
        """Record an image file the compute agents can boot from."""
        name = _name("name", name)
        if not isinstance(path, str) or not path or len(path) > 4096:
            raise errors.Invalid("path", "must be a non-empty path of at most 4096 characters")
        disk_format = _name("disk_format", disk_format, max_len=32)
        if size_bytes is not None:
            _not_negative("size_bytes", size_bytes)
        iid = _name("image_id", image_id) if image_id is not None else _new_uuid()

        def work(s: Session) -> Image:
            if s.get(m.Image, iid) is not None:
                raise errors.Conflict(f"image id {iid!r} is taken")
            row = m.Image(id=iid, name=name, path=path, disk_format=disk_format,
                          size_bytes=size_bytes, properties=dict(properties or {}),
                          created_at=self._clock(), deleted_at=None)
            s.add(row)
            s.flush()
            return _image(row)
        return self._write(work)

    def get_image(self, image_id: str, *, include_deleted: bool = False) -> Image:
        def work(s: Session) -> Image:
            row = s.get(m.Image, image_id)
            if row is None or (row.deleted_at is not None and not include_deleted):
                raise errors.NotFound(f"image {image_id} not found")
            return _image(row)
        return self._read(work)

    def list_images(self) -> list[Image]:
        """Live images by name."""
        return self._read(lambda s: [_image(r) for r in s.scalars(
            sa.select(m.Image).where(m.Image.deleted_at.is_(None))
            .order_by(m.Image.name, m.Image.id))])

    def delete_image(self, image_id: str) -> None:
        """Soft-delete an image; instances booted from it keep their reference."""
        def work(s: Session) -> None:
            row = s.get(m.Image, image_id, with_for_update=True)
            if row is None or row.deleted_at is not None:
                raise errors.NotFound(f"image {image_id} not found")
            row.deleted_at = self._clock()
        self._write(work)

    # --- instances -------------------------------------------------------------------

    def create_instances(
        self, *, project_id: str, user_id: str, name: str, flavor_id: str,
        image_id: str | None = None, min_count: int = 1, max_count: int = 1,
        availability_zone: str | None = None, metadata: Mapping[str, str] | None = None,
        group_id: str | None = None, reservation_id: str | None = None,
        request_id: str | None = None, public_flavor_only: bool = False,
        forced_host: str | None = None, forced_node: str | None = None,
    ) -> list[Instance]:
        """Create a multi-create batch in BUILDING/SCHEDULING, reserving quota in
        the same transaction.

        As Nova does, as many instances as the quota allows are created, between
        min_count and max_count; below min_count it raises QuotaExceeded and writes
        nothing. With more than one, names get "-1", "-2", ... suffixes. A "create"
        instance action is started for each. ``public_flavor_only``: a private
        flavor is refused as unknown (a member's request).
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
            if flavor is None or (public_flavor_only and not flavor.is_public):
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
                forced_host=forced_host, forced_node=forced_node)
                for i in range(count)]
            conn.execute(_stmt("insert instance", lambda: sa.insert(_INSTANCES)), rows)
            conn.execute(_stmt("insert action", lambda: sa.insert(m.InstanceAction.__table__)), [
                {"instance_id": row["id"], "action": "create", "request_id": request_id,
                 "user_id": user_id, "project_id": project_id, "start_time": now,
                 "finish_time": None, "message": None} for row in rows])
            return [Instance(**{**row, "metadata": dict(meta)}) for row in rows]
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
    ) -> InstancePage:
        """Instances newest first, each with its latest fault.

        Filters: project, API status (e.g. "ACTIVE", "REBOOT"), vm_state, name
        (case-insensitive substring), host, reservation. Keyset pagination: pass
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

    def update_instance(
        self, instance_id: str, *, expected_vm_state: Any = UNSET,
        expected_task_state: Any = UNSET, vm_state: Any = UNSET, task_state: Any = UNSET,
        power_state: Any = UNSET, host: Any = UNSET, node: Any = UNSET,
        availability_zone: Any = UNSET, launched_at: Any = UNSET, add_attempt: bool = False,
        fault: NewFault | None = None, finish_action: str | None = None,
        action_message: str | None = None, events: Sequence[EventStep] = (),
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
                             ("launched_at", launched_at)):
            if value is not UNSET:
                values[field] = value
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
            if fault is not None:
                s.add(_new_fault(instance_id, fault, now))
            if events:
                self._event_steps(conn, instance_id, events, now)
            if finish_action is not None:
                a = m.InstanceAction.__table__.c
                with_message = action_message is not None
                conn.execute(_stmt(f"finish action message={with_message}", lambda: sa.update(
                    m.InstanceAction.__table__).where(
                        a.instance_id == sa.bindparam("b_instance_id"),
                        a.action == sa.bindparam("b_action"), a.finish_time.is_(None)).values(
                            finish_time=sa.bindparam("b_now"),
                            **({"message": sa.bindparam("b_message")} if with_message else {}))),
                    {"b_instance_id": instance_id, "b_action": finish_action, "b_now": now,
                     "b_message": action_message})
            return True
        return self._write(work)

    @staticmethod
    def _event_steps(conn: Connection, instance_id: str, steps: Sequence[EventStep],
                     now: datetime) -> None:
        """update_instance's EventSteps, each on the instance's latest unfinished
        action of its name (nothing when there is none): the closes, then the new
        events, each kind in one statement."""
        actions = cast(sa.Table, m.InstanceAction.__table__)
        events = cast(sa.Table, m.InstanceActionEvent.__table__)
        a, e = actions.c, events.c
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
            conn.execute(_stmt("close event", lambda: sa.update(events).where(
                e.action_id == open_action(), e.event == sa.bindparam("b_event"),
                e.finish_time.is_(None)).values(
                    finish_time=sa.bindparam("b_now"), result=sa.bindparam("b_result"),
                    traceback=sa.bindparam("b_traceback"))), closing)
        if not adding:
            return
        conn.execute(_stmt("add event", lambda: sa.insert(events).from_select(
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
        transaction. NotFound if it is already deleted."""
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
            row.vm_state = VmState.DELETED
            row.task_state = None
            row.power_state = PowerState.NOSTATE
            row.deleted_at = row.updated_at = now
            usages = self._lock_usages(s, row.project_id)
            self._set_usages(s, row.project_id, {
                resource: max(0, usages[resource] - amount)
                for resource, amount in (("instances", 1), ("cores", row.vcpus),
                                         ("ram", row.memory_mb))}, now)
            s.flush()
            self._release(s, instance_id)
            return self._instances_with_faults(s, [row])[0]
        return self._write(work)

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

    # --- quotas ----------------------------------------------------------------------

    def get_quota(self, project_id: str) -> QuotaSet:
        """A project's limits (its own or the defaults) and what it uses."""
        def work(s: Session) -> QuotaSet:
            usage = {r: 0 for r in QUOTA_RESOURCES}
            for row in s.scalars(sa.select(m.QuotaUsage)
                                 .where(m.QuotaUsage.project_id == project_id)):
                usage[row.resource] = row.in_use
            return QuotaSet(project_id, self._limits(s, project_id), usage)
        return self._read(work)

    def set_quota(self, project_id: str, limits: Mapping[str, int]) -> QuotaSet:
        """Set some of a project's limits (-1: unlimited). A limit below current
        usage is allowed: it only stops further creates."""
        project_id = _name("project_id", project_id)
        for resource, limit in limits.items():
            if resource not in QUOTA_RESOURCES:
                raise errors.Invalid(f"limits.{resource}", "unknown quota resource")
            if not _is_int(limit) or limit < -1:
                raise errors.Invalid(f"limits.{resource}", "must be an integer >= -1")

        def work(s: Session) -> QuotaSet:
            for resource, limit in sorted(limits.items()):
                stmt = self._insert(m.Quota).values(project_id=project_id, resource=resource,
                                                    hard_limit=limit)
                s.execute(stmt.on_conflict_do_update(
                    index_elements=["project_id", "resource"], set_={"hard_limit": limit}))
            usage = {r: 0 for r in QUOTA_RESOURCES}
            for row in s.scalars(sa.select(m.QuotaUsage)
                                 .where(m.QuotaUsage.project_id == project_id)):
                usage[row.resource] = row.in_use
            return QuotaSet(project_id, self._limits(s, project_id), usage)
        return self._write(work)

    def _limits(self, s: Session, project_id: str) -> dict[str, int]:
        limits = dict(self._default_quotas)
        q = m.Quota.__table__.c
        for resource, hard_limit in s.connection().execute(_stmt("limits", lambda: sa.select(
                q.resource, q.hard_limit).where(q.project_id == sa.bindparam("project_id"))),
                {"project_id": project_id}):
            limits[resource] = hard_limit
        return limits

    def _lock_usages(self, s: Session, project_id: str) -> dict[str, int]:
        """The project's usage of each resource, its rows created if missing and
        locked until commit. On PostgreSQL a racing insert waits for ours and then
        does nothing, and FOR UPDATE then reads the committed row; on SQLite the
        write lock is held."""
        conn = s.connection()
        u = _QUOTA_USAGES.c
        conn.execute(_stmt(f"{self.backend} insert missing usages", lambda: self._insert(
            m.QuotaUsage).values(project_id=sa.bindparam("project_id"),
                                 resource=sa.bindparam("resource"), in_use=0,
                                 updated_at=sa.bindparam("now")).on_conflict_do_nothing()),
            [{"project_id": project_id, "resource": r, "now": self._clock()}
             for r in QUOTA_RESOURCES])
        rows = conn.execute(_stmt("lock usages", lambda: sa.select(u.resource, u.in_use)
                                  .where(u.project_id == sa.bindparam("project_id"))
                                  .order_by(u.resource).with_for_update()),
                            {"project_id": project_id})
        return {resource: int(in_use) for resource, in_use in rows}

    @staticmethod
    def _set_usages(s: Session, project_id: str, in_use: Mapping[str, int],
                    now: datetime) -> None:
        """Write back usages read by _lock_usages in the same transaction."""
        u = _QUOTA_USAGES.c
        s.connection().execute(_stmt("set usage", lambda: sa.update(_QUOTA_USAGES).where(
            u.project_id == sa.bindparam("b_project_id"),
            u.resource == sa.bindparam("b_resource")).values(
                in_use=sa.bindparam("b_in_use"), updated_at=sa.bindparam("b_now"))),
            [{"b_project_id": project_id, "b_resource": r, "b_in_use": n, "b_now": now}
             for r, n in sorted(in_use.items())])

    # --- server groups ---------------------------------------------------------------

    def create_server_group(self, *, name: str, project_id: str, user_id: str, policy: str,
                            max_server_per_host: int | None = None) -> ServerGroup:
        """A server group; max_server_per_host is a rule of anti-affinity only."""
        name = _name("name", name)
        if policy not in SERVER_GROUP_POLICIES:
            raise errors.Invalid("policy", f"must be one of {sorted(SERVER_GROUP_POLICIES)}")
        if max_server_per_host is not None:
            if policy != "anti-affinity":
                raise errors.Invalid("max_server_per_host", "only anti-affinity takes rules")
            _positive("max_server_per_host", max_server_per_host)

        def work(s: Session) -> ServerGroup:
            row = m.ServerGroup(id=_new_uuid(), name=name, project_id=project_id,
                                user_id=user_id, policy=policy,
                                max_server_per_host=max_server_per_host,
                                created_at=self._clock())
            s.add(row)
            s.flush()
            return self._group(s, row)
        return self._write(work)

    def get_server_group(self, group_id: str, *, project_id: str | None = None) -> ServerGroup:
        """A group with its live members and their hosts."""
        return self._read(lambda s: self._group(s, self._group_row(s, group_id, project_id)))

    def list_server_groups(self, *, project_id: str | None = None) -> list[ServerGroup]:
        def work(s: Session) -> list[ServerGroup]:
            q = sa.select(m.ServerGroup).order_by(m.ServerGroup.created_at, m.ServerGroup.id)
            if project_id is not None:
                q = q.where(m.ServerGroup.project_id == project_id)
            return [self._group(s, row) for row in s.scalars(q)]
        return self._read(work)

    def delete_server_group(self, group_id: str, *, project_id: str | None = None) -> None:
        """Delete a group; its members stay, outside any group."""
        def work(s: Session) -> None:
            s.delete(self._group_row(s, group_id, project_id))
        self._write(work)

    def add_server_group_members(self, group_id: str, instance_ids: Iterable[str]) -> ServerGroup:
        """Put live instances of the group's project into the group. Conflict if
        one already belongs to another group; nothing is changed then."""
        ids = sorted(set(instance_ids))

        def work(s: Session) -> ServerGroup:
            group = self._group_row(s, group_id, None)
            i = m.Instance
            for iid in ids:
                row = s.scalars(sa.select(i).where(i.id == iid, i.deleted_at.is_(None),
                                                   i.project_id == group.project_id)
                                .with_for_update()).one_or_none()
                if row is None:
                    raise errors.NotFound(f"instance {iid} not found")
                if row.group_id not in (None, group_id):
                    raise errors.Conflict(f"instance {iid} is in server group {row.group_id}")
                row.group_id = group_id
            s.flush()
            return self._group(s, group)
        return self._write(work)

    def server_group_hosts(self, group_id: str) -> frozenset[str]:
        """The hosts the group's live members are on (for affinity checks)."""
        return self._read(lambda s: self._group(s, self._group_row(s, group_id, None)).hosts)

    @staticmethod
    def _group_row(s: Session, group_id: str, project_id: str | None) -> m.ServerGroup:
        row = s.get(m.ServerGroup, group_id)
        if row is None or (project_id is not None and row.project_id != project_id):
            raise errors.NotFound(f"server group {group_id} not found")
        return row

    @staticmethod
    def _group(s: Session, row: m.ServerGroup) -> ServerGroup:
        i = m.Instance
        members = list(s.execute(sa.select(i.id, i.host).where(i.group_id == row.id,
                                                                i.deleted_at.is_(None))
                                 .order_by(i.created_at, i.id)))
        return ServerGroup(
            id=row.id, name=row.name, project_id=row.project_id, user_id=row.user_id,
            policy=row.policy, max_server_per_host=row.max_server_per_host,
            members=tuple(mid for mid, _ in members),
            hosts=frozenset(h for _, h in members if h is not None),
            created_at=row.created_at)

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

    def _hosts(self, s: Session, rows: list[m.ResourceProvider],
               service_down_time: float, everything: bool = False) -> list[Host]:
        """Host records for provider rows; ``everything`` reads whole tables
        instead of filtering on the providers."""
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

    # --- allocations -----------------------------------------------------------------

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
        generations: Mapping[str, int] | None = None,
    ) -> dict[str, int]:
        """``claim_allocations`` for several consumers at once ({consumer: {provider:
        {resource class: amount}}}), all or nothing, in one transaction: a
        multi-create's instances are claimed with one compare-and-swap per provider
        instead of one transaction each. Later consumers see the earlier ones'
        usage. Returns the providers' new generations (each bumped once)."""
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
        return self._write(lambda s: self._claim(s, wanted, generations or {}))

    def _claim(self, s: Session, wanted: Mapping[str, Mapping[str, Mapping[str, int]]],
               expected: Mapping[str, int]) -> dict[str, int]:
        """The transaction of claim_allocations(_many): replace each consumer's
        allocations with ``wanted[consumer]``, checking every amount against the
        providers' inventories and usage (the consumers in order, each seeing the
        ones before it); each touched provider's generation bumped once, with a
        compare-and-swap where ``expected`` names it."""
        conn = s.connection()
        a = _ALLOCATIONS.c
        consumers = sorted(wanted)
        held: dict[tuple[str, str, str], int] = {
            (c, p, rc): used for c, p, rc, used in conn.execute(_stmt("held", lambda: sa.select(
                a.consumer_uuid, a.provider_uuid, a.resource_class, a.used)
                .where(a.consumer_uuid.in_(sa.bindparam("consumers", expanding=True)))),
                {"consumers": consumers})}
        providers = sorted({p for w in wanted.values() for p in w})
        touched = sorted(set(providers) | {p for _, p, _ in held})
        # Bump generations first, in uuid order: on PostgreSQL the UPDATE takes the
        # provider's row lock, so the usage read below cannot miss a racing claim,
        # and a stale expected generation fails here.
        new_generations = {p: self._bump_generation(s, p, expected.get(p)) for p in touched}
        conn.execute(_stmt("drop held", lambda: sa.delete(_ALLOCATIONS).where(
            a.consumer_uuid.in_(sa.bindparam("consumers", expanding=True)))),
            {"consumers": consumers})
        inv = _INVENTORIES.c
        inventories = {(i.provider_uuid, i.resource_class): i for i in conn.execute(
            _stmt("inventories of", lambda: sa.select(_INVENTORIES).where(
                inv.provider_uuid.in_(sa.bindparam("providers", expanding=True)))),
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

    def _release(self, s: Session, consumer_uuid: str) -> dict[str, int]:
        a = m.Allocation
        providers = sorted(set(s.scalars(sa.select(a.provider_uuid)
                                         .where(a.consumer_uuid == consumer_uuid))))
        generations = {p: self._bump_generation(s, p, None) for p in providers}
        s.execute(sa.delete(a).where(a.consumer_uuid == consumer_uuid))
        return generations

    @staticmethod
    def _bump_generation(s: Session, provider_uuid: str, expected: int | None) -> int:
        rp = m.ResourceProvider

        def statement() -> Any:
            c = m.ResourceProvider.__table__.c
            stmt = sa.update(m.ResourceProvider.__table__).where(c.uuid == sa.bindparam("b_uuid"))
            if expected is not None:
                stmt = stmt.where(c.generation == sa.bindparam("b_expected"))
            return stmt.values(generation=c.generation + 1).returning(c.generation)
        new = s.connection().execute(
            _stmt(f"bump generation checked={expected is not None}", statement),
            {"b_uuid": provider_uuid, "b_expected": expected}).scalar()
        if new is None:
            if s.get(rp, provider_uuid) is None:
                raise errors.NotFound(f"resource provider {provider_uuid} not found")
            raise errors.GenerationConflict(provider_uuid, expected)
        return int(new)

    # --- aggregates ------------------------------------------------------------------

    def create_aggregate(self, name: str, *,
                         metadata: Mapping[str, str] | None = None) -> Aggregate:
        """A host aggregate (metadata "availability_zone" makes it an AZ)."""
        name = _name("name", name)
        meta = _string_map("metadata", metadata or {})

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
        return self._read(lambda s: [self._aggregate(s, r) for r in s.scalars(
            sa.select(m.Aggregate).order_by(m.Aggregate.name))])

    def delete_aggregate(self, aggregate_id: str) -> None:
        """Delete an aggregate, its metadata and host list."""
        self._write(lambda s: s.delete(self._aggregate_row(s, aggregate_id, lock=True)))

    def set_aggregate_metadata(self, aggregate_id: str,
                               metadata: Mapping[str, str | None]) -> Aggregate:
        """Set metadata keys; a None value removes the key (as Nova's API does)."""
        for key, value in metadata.items():
            _name("metadata", key)
            if value is not None:
                _name(f"metadata.{key}", value, allow_empty=True)

        def work(s: Session) -> Aggregate:
            row = self._aggregate_row(s, aggregate_id, lock=True)
            md = m.AggregateMetadata
            for key, value in sorted(metadata.items()):
                s.execute(sa.delete(md).where(md.aggregate_id == aggregate_id, md.key == key))
                if value is not None:
                    s.add(md(aggregate_id=aggregate_id, key=key, value=value))
            s.flush()
            return self._aggregate(s, row)
        return self._write(work)

    def add_aggregate_host(self, aggregate_id: str, host: str) -> Aggregate:
        """Add a known compute host; Conflict if it is already a member."""
        def work(s: Session) -> Aggregate:
            row = self._aggregate_row(s, aggregate_id, lock=True)
            if s.scalar(sa.select(m.ResourceProvider.uuid)
                        .where(m.ResourceProvider.name == host)) is None:
                raise errors.NotFound(f"host {host} not found")
            if s.get(m.AggregateHost, (aggregate_id, host)) is not None:
                raise errors.Conflict(f"host {host} is already in aggregate {row.name}")
            s.add(m.AggregateHost(aggregate_id=aggregate_id, host=host))
            s.flush()
            return self._aggregate(s, row)
        return self._write(work)

    def remove_aggregate_host(self, aggregate_id: str, host: str) -> Aggregate:
        def work(s: Session) -> Aggregate:
            row = self._aggregate_row(s, aggregate_id, lock=True)
            member = s.get(m.AggregateHost, (aggregate_id, host))
            if member is None:
                raise errors.NotFound(f"host {host} is not in aggregate {row.name}")
            s.delete(member)
            s.flush()
            return self._aggregate(s, row)
        return self._write(work)

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

        def work(s: Session) -> int:
            new_generation = self._bump_generation(s, provider_uuid, generation)
            self._ensure_traits(s, names)
            pt = m.ProviderTrait
            s.execute(sa.delete(pt).where(pt.provider_uuid == provider_uuid))
            s.add_all(pt(provider_uuid=provider_uuid, trait_name=n) for n in names)
            s.flush()
            return new_generation
        return self._write(work)

    def _ensure_traits(self, s: Session, names: list[str]) -> None:
        if names:
            now = self._clock()
            s.execute(self._insert(m.Trait).values(
                [{"name": n, "created_at": now} for n in names]).on_conflict_do_nothing())

    # --- transactions ----------------------------------------------------------------

    def _insert(self, model: type[m.Base]) -> Any:
        """INSERT with the dialect's ON CONFLICT clause available."""
        return (pg_insert if self.backend == "postgresql" else sqlite_insert)(model)

    def _write(self, work: Callable[[Session], T]) -> T:
        """Run ``work`` in a write transaction and commit it; return once committed.

        On SQLite, which has one writer at a time across every process, writes of
        this process's threads that arrive while another of its transactions holds
        the lock, or while it waits for its turn (_writer_turn), are committed
        together (group commit): the first waiting thread runs everyone's work in one
        transaction; a work that fails (bad input, a conflict) rolls it back and
        raises in its own caller while the others run again without it, and each
        caller returns after the commit that holds its work. Fewer, larger
        transactions hand SQLite's lock between processes far less often."""
        if self.backend != "sqlite":
            return self._transaction(work)
        if self._leader == threading.get_ident():
            raise RuntimeError("a database write inside another write's transaction")
        pending = _Pending(work)
        with self._commits:
            self._queue.append(pending)
            while self._leading and not pending.finished:
                self._commits.wait()
            if pending.finished:
                return cast(T, pending.result())
            self._leading = True
            self._leader = threading.get_ident()
        try:
            with self._writer_turn():
                # whoever queued while we waited for our turn goes in this group
                with self._commits:
                    batch, self._queue = self._queue, []
                self._commit_group(batch)
        finally:
            with self._commits:
                self._leading = False
                self._leader = None
                self._commits.notify_all()
        return cast(T, pending.result())

    @contextmanager
    def _writer_turn(self) -> Iterator[None]:
        """This process's turn to write the SQLite file: an exclusive flock on a
        lock file beside it, which the processes sharing the database queue on in
        the kernel (woken the moment it is free, and released by the kernel if a
        holder dies). SQLite's own lock cannot be waited for, only polled, and
        polling let one process's waiters lose to the others again and again (tens
        of ms for a lock held for one). The flock is held for one transaction."""
        if self._turn_fd is None:
            self._turn_fd = os.open(f"{self.url.database}.writer-lock", os.O_RDWR | os.O_CREAT,
                                    0o644)
        fcntl.flock(self._turn_fd, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(self._turn_fd, fcntl.LOCK_UN)

    def _commit_group(self, batch: list[_Pending]) -> None:
        if len(batch) == 1:
            only = batch[0]
            try:
                only.value = self._transaction(only.work)
            except BaseException as e:  # noqa: BLE001 - handed to its caller
                only.error = e
            only.finished = True
            return

        # Everyone's work in one transaction. A work that raises rolls the whole
        # transaction back; it gets its error and the others run again without it
        # (cheaper than a savepoint around each work, since errors are rare).
        pending = list(batch)
        while pending:
            failed: list[_Pending] = []

            def everyone(s: Session) -> None:
                s.connection()  # BEGIN IMMEDIATE: a busy database is retried whole
                for p in pending:
                    try:
                        p.value = p.work(s)
                        s.flush()  # its ORM changes, so that their errors are its own
                    except sa.exc.OperationalError:
                        raise  # the transaction itself failed: nothing is kept
                    except Exception as e:  # noqa: BLE001 - handed to its caller
                        p.error = (errors.Conflict(f"conflicts with existing data: {e.orig}")
                                   if isinstance(e, sa.exc.IntegrityError) else e)
                        failed.append(p)
                        raise _WorkFailed from e
            try:
                self._transaction(everyone)
            except _WorkFailed:
                pending.remove(failed[0])
                failed[0].finished = True
                continue
            except BaseException as e:  # noqa: BLE001 - nothing was committed
                for p in pending:
                    p.error = e
            for p in pending:
                p.finished = True
            return

    def _transaction(self, work: Callable[[Session], T]) -> T:
        """Run ``work`` in a write transaction of its own and commit it; run it
        again if PostgreSQL reports a deadlock or serialization failure (nothing
        was kept).

        On SQLite the write lock is asked for without SQLite's own busy handler
        (which sleeps 1, 2, 5, 10... up to 100 ms between tries and so hands the lock
        over slowly between processes): a busy database is retried here after a
        fraction of a millisecond, up to ``busy_timeout``."""
        attempt = 0
        deadline = time.monotonic() + self._busy_timeout
        pause = 0.0002
        while True:
            try:
                with self.engine.connect() as conn:
                    conn.execution_options(novalite_write=True)
                    with Session(bind=conn, expire_on_commit=False, autoflush=False) as s:
                        with s.begin():
                            return work(s)
            except sa.exc.IntegrityError as e:
                raise errors.Conflict(f"conflicts with existing data: {e.orig}") from e
            except sa.exc.DBAPIError as e:
                if self.backend == "sqlite" and _sqlite_busy(e) and time.monotonic() < deadline:
                    time.sleep(pause * (0.5 + random.random()))
                    pause = min(pause * 1.5, 0.005)
                    continue
                sqlstate = getattr(e.orig, "sqlstate", None)
                if sqlstate not in _RETRYABLE_SQLSTATES or attempt == _RETRIES - 1:
                    raise
                time.sleep(0.01 * 2 ** attempt)
                attempt += 1

    def _read(self, work: Callable[[Session], T]) -> T:
        """Run ``work`` in a read-only transaction, one snapshot throughout."""
        with self.engine.connect() as conn:
            if self.backend == "postgresql":
                conn.execution_options(isolation_level="REPEATABLE READ",
                                       postgresql_readonly=True)
            with Session(bind=conn, autoflush=False) as s:
                with s.begin():
                    return work(s)


class _WorkFailed(Exception):
    """A work of a group commit raised: the group's transaction is rolled back."""


class _Pending:
    """One caller's work waiting for a group commit, and its outcome."""

    __slots__ = ("work", "value", "error", "finished")

    def __init__(self, work: Callable[[Session], Any]) -> None:
        self.work = work
        self.value: Any = None
        self.error: BaseException | None = None
        self.finished = False

    def result(self) -> Any:
        if self.error is not None:
            raise self.error
        return self.value


def _configure_sqlite(engine: Engine, busy_timeout: float, pragmas: Mapping[str, int]) -> None:
    @event.listens_for(engine, "connect")
    def on_connect(dbapi_connection: Any, _record: Any) -> None:
        # Let SQLAlchemy's "begin" event below issue BEGIN itself, instead of the
        # sqlite3 module's implicit (deferred) transactions.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute(f"PRAGMA busy_timeout = {int(busy_timeout * 1000)}")
        cursor.execute("PRAGMA journal_mode = WAL")
        # FULL: a commit is on disk before it returns, even across power loss.
        cursor.execute("PRAGMA synchronous = FULL")
        cursor.execute("PRAGMA foreign_keys = ON")
        for name, value in pragmas.items():
            cursor.execute(f"PRAGMA {name} = {int(value)}")
        cursor.close()

    @event.listens_for(engine, "begin")
    def on_begin(conn: Connection) -> None:
        # A write transaction takes the write lock up front, so racing writers wait
        # for it rather than failing when a read lock cannot be upgraded; the
        # waiting is Database._write's (busy_timeout 0 here), reads keep SQLite's.
        options = conn.get_execution_options()
        write = options.get("novalite_write", False)
        quick = write and not options.get("novalite_wait", False)
        timeout_ms = 0 if quick else int(busy_timeout * 1000)
        info = conn.connection.info  # per SQLite connection: set only when it changes
        if info.get("busy_timeout_ms") != timeout_ms:
            conn.exec_driver_sql(f"PRAGMA busy_timeout = {timeout_ms}")
            info["busy_timeout_ms"] = timeout_ms
        conn.exec_driver_sql("BEGIN IMMEDIATE" if write else "BEGIN")


def _sqlite_busy(e: sa.exc.DBAPIError) -> bool:
    """SQLITE_BUSY: another connection holds the write lock."""
    return "database is locked" in str(e.orig) or getattr(e.orig, "sqlite_errorname", "") == "SQLITE_BUSY"


# --- validation -----------------------------------------------------------------------

def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _name(field: str, value: object, *, max_len: int = _NAME_MAX,
          allow_empty: bool = False) -> str:
    if not isinstance(value, str):
        raise errors.Invalid(field, "must be a string")
    if not allow_empty and not value.strip():
        raise errors.Invalid(field, "must not be empty")
    if len(value) > max_len:
        raise errors.Invalid(field, f"at most {max_len} characters")
    if "\x00" in value:
        raise errors.Invalid(field, "must not contain NUL")
    return value


def _positive(field: str, value: object) -> None:
    if not _is_int(value) or value < 1:  # type: ignore[operator]
        raise errors.Invalid(field, "must be an integer >= 1")


def _not_negative(field: str, value: object) -> None:
    if not _is_int(value) or value < 0:  # type: ignore[operator]
        raise errors.Invalid(field, "must be an integer >= 0")


def _string_map(field: str, value: Mapping[str, str]) -> dict[str, str]:
    out = {}
    for k, v in value.items():
        _name(field, k)
        _name(f"{field}.{k}", v, allow_empty=True)
        out[k] = v
    return out


def _trait_name(name: str) -> str:
    _name("traits", name)
    if not _UPPER_SNAKE.match(name):
        raise errors.Invalid("traits", f"{name!r}: upper-case letters, digits and _ only")
    return name


def _valid_inventory(rc: str, inv: Inventory) -> Inventory:
    _name("inventories", rc)
    if not _UPPER_SNAKE.match(rc):
        raise errors.Invalid("inventories", f"{rc!r}: upper-case letters, digits and _ only")
    field = f"inventories.{rc}"
    _positive(f"{field}.total", inv.total)
    _not_negative(f"{field}.reserved", inv.reserved)
    if inv.reserved > inv.total:
        raise errors.Invalid(f"{field}.reserved", "must not exceed total")
    _positive(f"{field}.min_unit", inv.min_unit)
    _positive(f"{field}.max_unit", inv.max_unit)
    if inv.max_unit < inv.min_unit:
        raise errors.Invalid(f"{field}.max_unit", "must be >= min_unit")
    _positive(f"{field}.step_size", inv.step_size)
    ratio = inv.allocation_ratio
    if not isinstance(ratio, (int, float)) or not math.isfinite(ratio) or ratio <= 0:
        raise errors.Invalid(f"{field}.allocation_ratio", "must be a finite number > 0")
    return inv


# --- queries --------------------------------------------------------------------------

def _matches_bound(column: Any, name: str, with_none: bool, with_present: bool) -> Any:
    """column is NULL (with_none) or one of the values in the expanding bind
    parameter ``name`` (with_present)."""
    conditions = []
    if with_none:
        conditions.append(column.is_(None))
    if with_present:
        conditions.append(column.in_(sa.bindparam(name, expanding=True)))
    return sa.or_(*conditions) if conditions else sa.false()


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


def _rowcount(result: Any) -> int:
    return int(result.rowcount)


def _chunks(items: list[T], size: int) -> Iterator[list[T]]:
    for start in range(0, len(items), size):
        yield items[start:start + size]


# --- rows to records ------------------------------------------------------------------

def _flavor(r: m.Flavor) -> Flavor:
    return Flavor(id=r.id, name=r.name, vcpus=r.vcpus, memory_mb=r.memory_mb,
                  root_gb=r.root_gb, ephemeral_gb=r.ephemeral_gb, swap=r.swap,
                  is_public=r.is_public, extra_specs=dict(r.extra_specs),
                  created_at=r.created_at, deleted_at=r.deleted_at)


def _image(r: m.Image) -> Image:
    return Image(id=r.id, name=r.name, path=r.path, disk_format=r.disk_format,
                 size_bytes=r.size_bytes, properties=dict(r.properties),
                 created_at=r.created_at, deleted_at=r.deleted_at)


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
        forced_node=r.forced_node, fault=fault)


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


def _service(r: m.Service, now: datetime, service_down_time: float) -> Service:
    is_up = (r.last_seen_up is not None
             and now - r.last_seen_up <= timedelta(seconds=service_down_time))
    return Service(id=r.id, host=r.host, binary=r.binary, endpoint=r.endpoint,
                   disabled=r.disabled, disabled_reason=r.disabled_reason,
                   last_seen_up=r.last_seen_up, created_at=r.created_at, is_up=is_up)
