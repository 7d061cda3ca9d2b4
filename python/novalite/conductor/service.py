"""`novalite conductor`: drives builds and actions between the API, the scheduler and
the compute agents, and commits the servers' state changes."""

from __future__ import annotations

import asyncio
import logging
import socket

from novalite.auth.tokens import SERVICE, RefreshingToken, TokenSigner
from novalite.compute.rpcapi import ComputeClient
from novalite.conductor.manager import ConductorManager
from novalite.conductor.servicer import ConductorServicer
from novalite.db.database import Database
from novalite.rpc.novalite.internal.v1 import conductor_pb2_grpc
from novalite.scheduler.rpcapi import SchedulerClient
from novalite.services.server import RunningServer, run_forever, run_process, start_server
from novalite.settings import Settings

LOG = logging.getLogger(__name__)


class ConductorService:
    def __init__(self, settings: Settings, server: RunningServer, manager: ConductorManager, db: Database,
                 scheduler: SchedulerClient, compute: ComputeClient, periodic: asyncio.Task[None]) -> None:
        self.settings, self.server, self.manager, self.db = settings, server, manager, db
        self.scheduler, self.compute, self._periodic = scheduler, compute, periodic

    @property
    def port(self) -> int:
        return self.server.port

    async def stop(self, grace: float | None = None) -> None:
        grace = self.settings.graceful_shutdown_timeout if grace is None else grace
        self._periodic.cancel()
        await self.server.stop(grace)
        await self.manager.drain(grace)
        await self.scheduler.close()
        await self.compute.close()
        self.db.close()


async def _heartbeat(settings: Settings, db: Database, service_id: int) -> None:
    while True:
        await asyncio.sleep(settings.report_interval)
        try:
            await asyncio.to_thread(db.heartbeat, service_id)
        except Exception:  # noqa: BLE001 - the next round tries again
            LOG.warning("conductor heartbeat failed", exc_info=True)


async def start(settings: Settings, *, signer: TokenSigner | None = None) -> ConductorService:
    signer = signer or TokenSigner(settings.secret)
    db = Database(settings.database_url)
    db.start_checkpoints()
    await asyncio.to_thread(db.upgrade)
    token = RefreshingToken(signer, "service", f"conductor@{socket.gethostname()}", [SERVICE])
    scheduler = SchedulerClient(settings.endpoint("scheduler"), token)
    compute = ComputeClient(db, token)
    manager = ConductorManager(db, scheduler, compute)
    server = await start_server(
        "conductor", [(conductor_pb2_grpc.add_ConductorServicer_to_server, ConductorServicer(manager))],
        settings.listen.conductor, settings, signer=signer)
    svc = await asyncio.to_thread(db.register_service, f"{socket.gethostname()}:{server.port}", "conductor",
                                  endpoint=settings.advertised("conductor", server.port))
    await manager.resume_interrupted()
    periodic = asyncio.get_running_loop().create_task(_heartbeat(settings, db, svc.id))
    return ConductorService(settings, server, manager, db, scheduler, compute, periodic)


def main(settings: Settings) -> None:
    async def run() -> None:
        service = await start(settings)
        await run_forever(service.server, grace=settings.graceful_shutdown_timeout,
                          on_stop=[lambda: service.manager.drain(settings.graceful_shutdown_timeout)])
        await service.stop(0)

    run_process(run)
