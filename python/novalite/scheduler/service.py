"""`novalite scheduler` over the runner (novalite.services.runner): load every host
once, then keep the in-memory table current (compute reports, conflicts, a
periodic service check every report_interval) and serve selections."""

from __future__ import annotations

import asyncio
import logging

from novalite.auth.tokens import TokenSigner
from novalite.rpc.novalite.internal.v1 import scheduler_pb2_grpc
from novalite.scheduler.manager import SchedulerManager
from novalite.scheduler.servicer import SchedulerServicer
from novalite.services import runner
from novalite.services.runner import Parts, Periodic, RunningService, Startup, start_service
from novalite.settings import DEFAULT_PERIODIC_SPACING, Settings

LOG = logging.getLogger(__name__)

SchedulerService = RunningService[SchedulerManager]


async def _build(startup: Startup) -> Parts[SchedulerManager]:
    settings = startup.settings
    manager = SchedulerManager(startup.db, settings.scheduler, service_down_time=settings.service_down_time)
    count = await asyncio.to_thread(manager.load)
    LOG.info("scheduler loaded %d hosts", count)
    return Parts(manager, [(scheduler_pb2_grpc.add_SchedulerServicer_to_server, SchedulerServicer(manager))],
                 periodic=[Periodic("service check", settings.report_interval,
                                    lambda: asyncio.to_thread(manager.refresh_services)),
                           # the API tells every scheduler of an aggregate change at once;
                           # this catches up one that the call did not reach
                           Periodic("aggregate resync", DEFAULT_PERIODIC_SPACING,
                                    lambda: asyncio.to_thread(manager.refresh_aggregates))])


async def start(settings: Settings, *, signer: TokenSigner | None = None) -> SchedulerService:
    return await start_service("scheduler", settings, _build, signer=signer, register=True)


def main(settings: Settings) -> None:
    runner.run(lambda: start(settings), settings)
