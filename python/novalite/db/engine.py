"""The database's engine and transactions, which every query runs through, and
the machinery the queries share (prebuilt statements, compare-and-swap helpers).

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

import fcntl
import logging
import os
import random
import threading
import time
import uuid as uuidlib
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable, Iterator, Mapping, Self, TypeVar, cast

import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.orm import Session

from novalite import errors
from novalite.db import models as m

T = TypeVar("T")
LOG = logging.getLogger(__name__)

MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"

# PostgreSQL's serialization_failure and deadlock_detected: the transaction did
# nothing durable and can simply run again.
_RETRYABLE_SQLSTATES = frozenset({"40001", "40P01"})
_RETRIES = 5
# Alembic keeps the running migration's context in module globals: one upgrade at
# a time per process. Across processes the database's own lock serialises them.
_MIGRATION_LOCK = threading.Lock()

# The hot paths (a server's create, its state changes, the scheduler's claims) read
# and write tables through SQLAlchemy Core: loading plain rows costs a fraction of
# building ORM objects.
_INSTANCES = cast(sa.Table, m.Instance.__table__)
_ACTIONS = cast(sa.Table, m.InstanceAction.__table__)
_ACTION_EVENTS = cast(sa.Table, m.InstanceActionEvent.__table__)
_FLAVORS = cast(sa.Table, m.Flavor.__table__)
_QUOTA_USAGES = cast(sa.Table, m.QuotaUsage.__table__)
_ALLOCATIONS = cast(sa.Table, m.Allocation.__table__)
_INVENTORIES = cast(sa.Table, m.Inventory.__table__)
_PROVIDERS = cast(sa.Table, m.ResourceProvider.__table__)


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


class Transactions:
    """The engine of a database by URL (see Database, which gives the defaults),
    its lifecycle (migrations, WAL checkpoints, close), and the read and write
    transactions the query mixins run their units of work in."""

    def __init__(self, url: str | sa.URL, *, busy_timeout: float, pool_size: int,
                 clock: Callable[[], datetime], echo: bool) -> None:
        parsed = sa.make_url(url)
        if parsed.drivername == "postgresql":
            parsed = parsed.set(drivername="postgresql+psycopg")
        self.url = parsed
        self.backend = parsed.get_backend_name()
        if self.backend not in ("sqlite", "postgresql"):
            raise errors.Invalid("url", f"unsupported database {self.backend!r}; "
                                        "use sqlite or postgresql")
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

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

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
        # waiting is Transactions._write's (busy_timeout 0 here), reads keep SQLite's.
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


# --- compare-and-swap -----------------------------------------------------------------

def _bump_generation(s: Session, provider_uuid: str, expected: int | None) -> int:
    """Bump a resource provider's generation, checking it is still ``expected``
    when given (GenerationConflict otherwise); return the new one."""
    rp = m.ResourceProvider

    def statement() -> Any:
        c = _PROVIDERS.c
        stmt = sa.update(_PROVIDERS).where(c.uuid == sa.bindparam("b_uuid"))
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


def _matches_bound(column: Any, name: str, with_none: bool, with_present: bool) -> Any:
    """column is NULL (with_none) or one of the values in the expanding bind
    parameter ``name`` (with_present): an expected state, for a prebuilt
    compare-and-swap UPDATE."""
    conditions = []
    if with_none:
        conditions.append(column.is_(None))
    if with_present:
        conditions.append(column.in_(sa.bindparam(name, expanding=True)))
    return sa.or_(*conditions) if conditions else sa.false()


# --- small helpers --------------------------------------------------------------------

def _rowcount(result: Any) -> int:
    return int(result.rowcount)


def _chunks(items: list[T], size: int) -> Iterator[list[T]]:
    for start in range(0, len(items), size):
        yield items[start:start + size]
