"""The one way a novalite service starts, serves and stops.

A service says what it is: its name, and a ``build`` that makes its manager and
servicers from what the runner opened (``Startup``: settings, signer, database):

    async def build(startup: Startup) -> Parts[SchedulerManager]:
        manager = SchedulerManager(startup.db, startup.settings.scheduler)
        await asyncio.to_thread(manager.load)
        return Parts(manager, [(add_SchedulerServicer_to_server, SchedulerServicer(manager))],
                     periodic=[Periodic("service check", 10, refresh)])

    service = await start_service("scheduler", settings, build, register=True)
    ...
    await service.stop(grace)             # or run(start, settings): until SIGTERM

``start_service``, the same for every service:

1. opens the database (``settings.database_url``; WAL checkpoints; schema brought
   up to date) and awaits ``build``;
2. starts the gRPC server (``start_server``: interceptors, health, reflection, the
   Prometheus endpoint), its health NOT_SERVING;
3. with ``register``, writes the service's row (the address it bound) and
   heartbeats it every ``report_interval`` seconds (the compute agent's manager
   heartbeats each of its hosts itself);
4. awaits the service's ``when_listening`` (work that needs the port, or that calls
   arriving meanwhile may wait for), then says SERVING and starts the periodic tasks,
   among them the re-read of the revoked tokens every
   ``token.revocation_refresh_interval`` (the signer refuses them).

Should a step fail, what the earlier ones opened is closed and the error raised.
``RunningService.stop(grace)`` stops in the reverse order: periodic tasks, the
server (calls in flight get ``grace`` seconds), the service's own ``drain``, then
what ``Startup.on_stop`` was given, the last first (manager, clients, database).
``run`` is a service's process: uvloop, until SIGTERM or SIGINT, then a graceful
stop with ``settings.graceful_shutdown_timeout``.
"""

from __future__ import annotations

import asyncio
import logging
import socket
from contextlib import suppress
from dataclasses import dataclass
from typing import Any, Awaitable, Callable, Generic, Sequence, TypeVar

from prometheus_client import CollectorRegistry

from novalite.auth.tokens import SERVICE, RefreshingToken, TokenSigner
from novalite.db.database import Database
from novalite.services.server import (
    AddServicer, RunningServer, run_forever, run_process, start_server,
)
from novalite.settings import Settings

LOG = logging.getLogger(__name__)

# The project of the tokens services call each other with.
SERVICE_PROJECT = "service"

M = TypeVar("M")
Closer = Callable[[], Awaitable[object]]


@dataclass(frozen=True)
class Periodic:
    """Work repeated while the service serves: ``run()`` every ``interval`` seconds,
    the first after one interval. A failure is logged; the next round tries again."""

    what: str
    interval: float
    run: Callable[[], Awaitable[object]]


@dataclass(frozen=True)
class Parts(Generic[M]):
    """What a service's ``build`` makes: its manager and the servicers serving it."""

    manager: M
    servicers: Sequence[tuple[AddServicer, Any]]
    # Once the server listens (its port is known), before health says SERVING.
    when_listening: Callable[[RunningServer], Awaitable[object]] | None = None
    periodic: Sequence[Periodic] = ()
    # Once the server has stopped, given the grace again: work the service runs on
    # its own, beyond the calls it serves (the conductor's builds).
    drain: Callable[[float | None], Awaitable[object]] | None = None


class Startup:
    """What a service's ``build`` is given."""

    def __init__(self, name: str, settings: Settings, signer: TokenSigner, db: Database) -> None:
        self.name = name
        self.settings = settings
        self.signer = signer
        self.db = db
        self.closers: list[Closer] = []

    def service_token(self) -> RefreshingToken:
        """The token this service calls the others with (role ``service``)."""
        return RefreshingToken(self.signer, SERVICE_PROJECT,
                               f"{self.name}@{socket.gethostname()}", [SERVICE])

    def on_stop(self, close: Closer) -> None:
        """Await ``close()`` when the service stops (or fails to start), after its
        server: the last given first, so what was opened later closes earlier."""
        self.closers.insert(0, close)


class RunningService(Generic[M]):
    """A started service: its gRPC server (``server``), manager and database."""

    def __init__(self, server: RunningServer, manager: M, db: Database, closers: list[Closer],
                 tasks: list[asyncio.Task[None]],
                 drain: Callable[[float | None], Awaitable[object]] | None) -> None:
        self.server = server
        self.manager = manager
        self.db = db
        # What stop() still has to close, in order; empty once stopped.
        self.closers = closers
        self._tasks = tasks
        self._drain = drain
        self._stopping: asyncio.Future[None] | None = None

    @property
    def name(self) -> str:
        return self.server.name

    @property
    def port(self) -> int:
        return self.server.port

    @property
    def address(self) -> str:
        return self.server.address

    async def stop(self, grace: float | None = 10.0) -> None:
        """Stop gracefully (see the module's docstring); ``grace`` as
        ``RunningServer.stop``'s. Safe to call twice."""
        if self._stopping is None:
            self._stopping = asyncio.ensure_future(self._stop(grace))
        await asyncio.shield(self._stopping)

    async def _stop(self, grace: float | None) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with suppress(asyncio.CancelledError):
                await task
        await self.server.stop(grace)
        if self._drain is not None:
            try:
                await self._drain(grace)
            except Exception:  # noqa: BLE001 - close the rest anyway
                LOG.exception("draining %s failed", self.name)
        closers, self.closers = self.closers, []
        await _close(closers)

    async def wait_for_termination(self) -> None:
        await self.server.wait_for_termination()


async def _close(closers: Sequence[Closer]) -> None:
    for close in closers:
        try:
            await close()
        except Exception:  # noqa: BLE001 - close the rest anyway
            LOG.exception("closing %s failed", close)


async def _repeat(name: str, periodic: Periodic) -> None:
    while True:
        await asyncio.sleep(periodic.interval)
        try:
            await periodic.run()
        except Exception:  # noqa: BLE001 - the next round tries again
            LOG.warning("%s %s failed", name, periodic.what, exc_info=True)


async def _register(name: str, settings: Settings, db: Database, port: int) -> Periodic:
    """The service's row, with the address others dial; its heartbeat."""
    row = await asyncio.to_thread(db.register_service, f"{socket.gethostname()}:{port}", name,
                                  endpoint=settings.advertised(name, port))
    return Periodic("heartbeat", settings.report_interval,
                    lambda: asyncio.to_thread(db.heartbeat, row.id))


async def _revocations(signer: TokenSigner, db: Database, settings: Settings) -> Periodic:
    """The revoked tokens read now, and the task that reads them again."""
    async def refresh() -> None:
        signer.revocations.replace(await asyncio.to_thread(db.revoked_tokens))

    await refresh()
    return Periodic("token revocations", settings.token.revocation_refresh_interval, refresh)


async def start_service(
    name: str,
    settings: Settings,
    build: Callable[[Startup], Awaitable[Parts[M]]],
    *,
    signer: TokenSigner | None = None,
    register: bool = False,
    listen: str | None = None,
    metrics_port: int | None = None,
    registry: CollectorRegistry | None = None,
    options: Sequence[tuple[str, Any]] = (),
) -> RunningService[M]:
    """Start the service ``name`` ("api", "conductor", "scheduler", "compute") as the
    module's docstring says, on ``listen`` (default: its ``settings.listen``).
    ``signer``: default one over settings.secret. ``metrics_port``, ``registry``
    and ``options`` (grpc server options) go to ``start_server``."""
    signer = signer if signer is not None else TokenSigner(settings.secret)
    db = Database(settings.database_url, default_quotas=settings.quotas.as_dict())
    startup = Startup(name, settings, signer, db)
    startup.on_stop(lambda: asyncio.to_thread(db.close))
    server: RunningServer | None = None
    try:
        db.start_checkpoints()
        await asyncio.to_thread(db.upgrade)
        revocations = await _revocations(signer, db, settings)
        parts = await build(startup)
        server = await start_server(name, parts.servicers, listen or settings.listen.of(name),
                                    settings, signer=signer, metrics_port=metrics_port,
                                    registry=registry, options=options, ready=False)
        periodic = [*parts.periodic, revocations]
        if register:
            periodic.insert(0, await _register(name, settings, db, server.port))
        if parts.when_listening is not None:
            await parts.when_listening(server)
        await server.mark_serving()
    except BaseException:
        if server is not None:
            await server.stop(None)
        await _close(startup.closers)
        raise
    loop = asyncio.get_running_loop()
    tasks = [loop.create_task(_repeat(name, p), name=f"{name} {p.what}") for p in periodic]
    return RunningService(server, parts.manager, db, startup.closers, tasks, parts.drain)


def run(start: Callable[[], Awaitable[RunningService[Any]]], settings: Settings) -> None:
    """A service's process: ``start()`` it, serve until SIGTERM or SIGINT, then stop
    it gracefully, calls in flight getting settings.graceful_shutdown_timeout."""
    async def main() -> None:
        await serve(await start(), settings)

    run_process(main)


async def serve(service: RunningService[Any], settings: Settings) -> None:
    """Serve until SIGTERM or SIGINT, then stop gracefully."""
    await run_forever(service, grace=settings.graceful_shutdown_timeout)


__all__ = ["Parts", "Periodic", "RunningService", "Startup", "run", "serve", "start_service"]
