"""`novalite scheduler`: load every host once, then keep the in-memory table current
(compute reports, conflicts, a periodic service check) and serve selections."""

from __future__ import annotations

import asyncio
import logging
import socket

from novalite.auth.tokens import TokenSigner
from novalite.db.database import Database
from novalite.rpc.novalite.internal.v1 import scheduler_pb2_grpc
from novalite.scheduler.manager import SchedulerManager
from novalite.scheduler.servicer import SchedulerServicer
from novalite.services.server import RunningServer, run_forever, run_process, start_server
from novalite.settings import Settings

LOG = logging.getLogger(__name__)


class SchedulerService:
    def __init__(self, settings: Settings, server: RunningServer, manager: SchedulerManager,
                 db: Database, periodic: asyncio.Task[None]) -> None:
        self.settings = settings
        self.server = server
        self.manager = manager
        self.db = db
        self._periodic = periodic

    @property
    def port(self) -> int:
        return self.server.port

    async def stop(self, grace: float | None = None) -> None:
        self._periodic.cancel()
        await self.server.stop(self.settings.graceful_shutdown_timeout if grace is None else grace)
        self.db.close()


async def _periodic(settings: Settings, manager: SchedulerManager, db: Database, service_id: int) -> None:
    while True:
        await asyncio.sleep(settings.report_interval)
        try:
            await asyncio.to_thread(db.heartbeat, service_id)
            await asyncio.to_thread(manager.refresh_services)
        except Exception:  # noqa: BLE001 - the next round tries again
            LOG.warning("scheduler periodic task failed", exc_info=True)


async def start(settings: Settings, *, signer: TokenSigner | None = None) -> SchedulerService:
    db = Database(settings.database_url)
    db.start_checkpoints()
    await asyncio.to_thread(db.upgrade)
    manager = SchedulerManager(db, settings.scheduler, service_down_time=settings.service_down_time)
    count = await asyncio.to_thread(manager.load)
    server = await start_server(
        "scheduler", [(scheduler_pb2_grpc.add_SchedulerServicer_to_server, SchedulerServicer(manager))],
        settings.listen.scheduler, settings, signer=signer or TokenSigner(settings.secret))
    svc = await asyncio.to_thread(db.register_service, f"{socket.gethostname()}:{server.port}", "scheduler",
                                  endpoint=settings.advertised("scheduler", server.port))
    LOG.info("scheduler serving %d hosts", count)
    periodic = asyncio.get_running_loop().create_task(_periodic(settings, manager, db, svc.id))
    return SchedulerService(settings, server, manager, db, periodic)


def main(settings: Settings) -> None:
    async def run() -> None:
        service = await start(settings)
        await run_forever(service.server, grace=settings.graceful_shutdown_timeout,
                          on_stop=[lambda: asyncio.to_thread(service.db.close)])
        service._periodic.cancel()

    run_process(run)
