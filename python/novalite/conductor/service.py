"""`novalite conductor` over the runner (novalite.services.runner): drives builds and
actions between the API, the scheduler and the compute agents, and commits the
servers' state changes. Its service row is heartbeated; builds a previous
conductor left are taken up before it says SERVING, and a stop lets the builds
in flight finish."""

from __future__ import annotations

from novalite.auth.tokens import TokenSigner
from novalite.compute.rpcapi import ComputeClient
from novalite.conductor.manager import ConductorManager
from novalite.conductor.servicer import ConductorServicer
from novalite.rpc.novalite.internal.v1 import conductor_pb2_grpc
from novalite.scheduler.rpcapi import SchedulerClient
from novalite.services import runner
from novalite.services.runner import Parts, Periodic, RunningService, Startup, start_service
from novalite.settings import Settings

ConductorService = RunningService[ConductorManager]


async def _build(startup: Startup) -> Parts[ConductorManager]:
    token = startup.service_token()
    scheduler = SchedulerClient(startup.settings.endpoint("scheduler"), token)
    startup.on_stop(scheduler.close)
    compute = ComputeClient(startup.db, token)
    startup.on_stop(compute.close)
    settings = startup.settings
    manager = ConductorManager(
        startup.db, scheduler, compute,
        allow_resize_to_same_host=settings.allow_resize_to_same_host,
        shelved_offload_time=settings.shelved_offload_time,
        resize_confirm_window=settings.resize_confirm_window,
        # an agent being restarted is waited for; one gone longer than a host is
        # allowed to miss heartbeats is given up on (30 s at least)
        retry_timeout=max(float(settings.service_down_time), 30.0))
    return Parts(manager, [(conductor_pb2_grpc.add_ConductorServicer_to_server, ConductorServicer(manager))],
                 when_listening=lambda _: manager.resume_interrupted(), drain=manager.drain,
                 periodic=[Periodic("moves", float(settings.report_interval), manager.moves.periodic)])


async def start(settings: Settings, *, signer: TokenSigner | None = None) -> ConductorService:
    return await start_service("conductor", settings, _build, signer=signer, register=True)


def main(settings: Settings) -> None:
    runner.run(lambda: start(settings), settings)
