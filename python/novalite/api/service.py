"""The API service over the runner (novalite.services.runner): clients of the
conductor and the scheduler, the manager and its servicers.

    running = await start(settings)          # serving on settings.listen.api
    ...
    await running.stop()                     # also closes the clients and the database

``main(settings)`` runs it until SIGTERM or SIGINT (``novalite api``).
"""

from __future__ import annotations

from typing import Any

from novalite.api.manager import ApiManager, ConductorAPI, SchedulerAPI
from novalite.api.servicer import servicers
from novalite.auth.tokens import TokenSigner
from novalite.conductor.rpcapi import ConductorClient
from novalite.scheduler.rpcapi import SchedulerFanout
from novalite.services import runner
from novalite.services.runner import Parts, RunningService, Startup, start_service
from novalite.settings import Settings

# The largest request the API accepts. Every valid request is far smaller (the
# largest, a CreateServer with 128 metadata entries of 255 + 255 characters, is
# about 66 KB); anything beyond this is refused by grpc itself with
# RESOURCE_EXHAUSTED before it reaches a servicer.
MAX_REQUEST_BYTES = 1 << 20

# The running API service; its stop also stops the watch feed and closes the
# clients and the database.
ApiServer = RunningService[ApiManager]


async def start(settings: Settings, *, signer: TokenSigner | None = None,
                conductor: ConductorAPI | None = None, scheduler: SchedulerAPI | None = None,
                listen: str | None = None, metrics_port: int | None = None,
                poll_interval: float = 0.2, **server_options: Any) -> ApiServer:
    """Start the API service on ``listen`` (default settings.listen.api).

    Opens ``settings.database_url`` and brings its schema up to date. Unless given
    ``conductor`` / ``scheduler`` (tests), it calls the conductor at its settings
    endpoint and every registered scheduler replica, with a service token signed
    by ``signer`` (default: one over settings.secret).
    """
    async def build(startup: Startup) -> Parts[ApiManager]:
        token = startup.service_token()
        to_conductor, to_scheduler = conductor, scheduler
        if to_conductor is None:
            conductor_client = ConductorClient(settings.endpoint("conductor"), token)
            startup.on_stop(conductor_client.close)
            to_conductor = conductor_client
        if to_scheduler is None:
            schedulers = SchedulerFanout(startup.db, token,
                                         service_down_time=settings.service_down_time)
            startup.on_stop(schedulers.close)
            to_scheduler = schedulers
        manager = ApiManager(startup.db, to_conductor, to_scheduler, signer=startup.signer,
                             poll_interval=poll_interval,
                             default_zone=settings.scheduler.default_availability_zone,
                             service_down_time=settings.service_down_time,
                             scheduler_config=settings.scheduler)
        startup.on_stop(manager.close)
        return Parts(manager, servicers(manager))

    options = [("grpc.max_receive_message_length", MAX_REQUEST_BYTES),
               *server_options.pop("options", ())]
    return await start_service("api", settings, build, signer=signer, listen=listen,
                               metrics_port=metrics_port, options=options, **server_options)


async def serve(settings: Settings) -> None:
    """Run the API service until SIGTERM or SIGINT, then stop it gracefully."""
    await runner.serve(await start(settings), settings)


def main(settings: Settings) -> None:
    """``novalite api``: serve the public API until SIGTERM."""
    runner.run(lambda: start(settings), settings)


__all__ = ["MAX_REQUEST_BYTES", "ApiServer", "main", "serve", "start"]
