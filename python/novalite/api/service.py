"""Starting the API service: the database, clients of the conductor and the
scheduler (with a service token), the manager and its servicers on one gRPC
server.

    running = await start(settings)          # serving on settings.listen.api
    ...
    await running.stop()                     # also closes the clients and the database

``main(settings)`` runs it until SIGTERM or SIGINT (``novalite api``).
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any, Awaitable, Callable

from novalite.api.manager import ApiManager, ConductorAPI, SchedulerAPI
from novalite.api.servicer import servicers
from novalite.auth.tokens import SERVICE, RefreshingToken, TokenSigner
from novalite.conductor.rpcapi import ConductorClient
from novalite.db.database import Database
from novalite.scheduler.rpcapi import SchedulerClient
from novalite.services.server import RunningServer, run_forever, run_process, start_server
from novalite.settings import Settings

LOG = logging.getLogger(__name__)

# The largest request the API accepts. Every valid request is far smaller (the
# largest, a CreateServer with 128 metadata entries of 255 + 255 characters, is
# about 66 KB); anything beyond this is refused by grpc itself with
# RESOURCE_EXHAUSTED before it reaches a servicer.
MAX_REQUEST_BYTES = 1 << 20
# Who the API is when it calls the other services.
SERVICE_PROJECT = "service"
SERVICE_USER = "api"


class ApiServer(RunningServer):
    """The running API service: a RunningServer whose stop also stops the watch
    feed and closes the conductor and scheduler clients and the database."""

    closers: list[Callable[[], Awaitable[object]]]
    manager: ApiManager
    db: Database

    @classmethod
    def wrap(cls, running: RunningServer, manager: ApiManager, db: Database,
             closers: list[Callable[[], Awaitable[object]]]) -> ApiServer:
        server = cls.__new__(cls)
        server.__dict__.update(vars(running))
        server.manager = manager
        server.db = db
        server.closers = closers
        return server

    async def stop(self, grace: float | None = 10.0) -> None:
        await super().stop(grace)
        closers, self.closers = self.closers, []
        for close in closers:
            try:
                await close()
            except Exception:  # noqa: BLE001 - close the rest anyway
                LOG.exception("closing %s failed", close)


async def start(settings: Settings, *, signer: TokenSigner | None = None,
                conductor: ConductorAPI | None = None, scheduler: SchedulerAPI | None = None,
                listen: str | None = None, metrics_port: int | None = None,
                poll_interval: float = 0.2, **server_options: Any) -> ApiServer:
    """Start the API service on ``listen`` (default settings.listen.api).

    Opens ``settings.database_url`` and brings its schema up to date. Unless given
    ``conductor`` / ``scheduler`` (tests), it calls the conductor and scheduler at
    their settings endpoints with a service token signed by ``signer`` (default:
    one over settings.secret).
    """
    signer = signer if signer is not None else TokenSigner(settings.secret)
    db = Database(settings.database_url, default_quotas=settings.quotas.as_dict())
    db.start_checkpoints()
    closers: list[Callable[[], Awaitable[object]]] = []

    async def close_db() -> None:
        await asyncio.to_thread(db.close)

    try:
        await asyncio.to_thread(db.upgrade)
        token = RefreshingToken(signer, SERVICE_PROJECT, SERVICE_USER, [SERVICE])
        if conductor is None:
            conductor_client = ConductorClient(settings.endpoint("conductor"), token)
            closers.append(conductor_client.close)
            conductor = conductor_client
        if scheduler is None:
            scheduler_client = SchedulerClient(settings.endpoint("scheduler"), token)
            closers.append(scheduler_client.close)
            scheduler = scheduler_client
        manager = ApiManager(db, conductor, scheduler, signer=signer, poll_interval=poll_interval,
                             default_zone=settings.scheduler.default_availability_zone,
                             service_down_time=settings.service_down_time)
        closers.insert(0, manager.close)
        options = [("grpc.max_receive_message_length", MAX_REQUEST_BYTES),
                   *server_options.pop("options", ())]
        running = await start_server("api", servicers(manager), listen or settings.listen.api,
                                     settings, signer=signer, metrics_port=metrics_port,
                                     options=options, **server_options)
    except BaseException:
        for close in [*closers, close_db]:
            await close()
        raise
    return ApiServer.wrap(running, manager, db, [*closers, close_db])


async def serve(settings: Settings) -> None:
    """Run the API service until SIGTERM or SIGINT, then stop it gracefully."""
    running = await start(settings)
    await run_forever(running, grace=settings.graceful_shutdown_timeout)


def main(settings: Settings) -> None:
    """``novalite api``: serve the public API until SIGTERM."""
    run_process(lambda: serve(settings))


__all__ = ["MAX_REQUEST_BYTES", "ApiServer", "main", "serve", "start"]
