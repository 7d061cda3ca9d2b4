"""`novalite compute` over the runner (novalite.services.runner): one agent serving
its hosts over gRPC.

    running, manager = await start(settings)
    ...
    await stop(running, manager)

* ``test:///...`` (settings.compute.virt_uri): simulated hosts, one libvirt test
  driver each, their node files under ``<data_dir>/nodes/<host>.xml`` (written with
  the sizes from settings the first time, then kept: they hold the hosts' guests
  across restarts);
* ``qemu:///system`` (or any other qemu URI): the machine itself as one real host,
  named ``compute.hosts[0]`` or the machine's hostname, guests' disks under
  ``compute.instances_path``.

The gRPC server starts first (its port may be 0: picked), then every host is
registered with that endpoint and recovered, and only then does health say
SERVING; calls arriving meanwhile wait. The manager's periodic task heartbeats
every host every settings.report_interval seconds, and, as Nova's, syncs power
states every compute.sync_power_state_interval seconds (600) and recounts and
reports usage every compute.update_resources_interval seconds (60).
"""

from __future__ import annotations

import asyncio
import socket
from pathlib import Path
from typing import Iterable

from novalite.auth.tokens import TokenSigner
from novalite.compute.manager import ComputeManager, ComputeOptions, Driver
from novalite.compute.servicer import ComputeAgentServicer
from novalite.rpc.novalite.internal.v1 import compute_agent_pb2_grpc
from novalite.scheduler.rpcapi import SchedulerClient
from novalite.services import runner
from novalite.services.runner import Parts, RunningService, Startup, start_service
from novalite.services.server import RunningServer
from novalite.settings import ConfigError, Settings
from novalite.virt import LibvirtDriver, accel, node_uri, write_test_node

NODES_DIR = "nodes"

ComputeService = RunningService[ComputeManager]


def node_path(settings: Settings, host: str) -> Path:
    """The node file of a simulated host."""
    return settings.data_dir / NODES_DIR / f"{host}.xml"


def host_names(settings: Settings) -> tuple[str, ...]:
    """The hosts an agent with these settings serves."""
    cs = settings.compute
    if _is_test(cs.virt_uri):
        names = cs.host_names
        for name in names:
            if "/" in name or name.startswith(".") or "\0" in name:
                raise ConfigError("compute.hosts", f"{name!r} cannot name a node file")
        return names
    if len(cs.hosts) > 1:
        raise ConfigError("compute.hosts", f"{cs.virt_uri} is one real host: give at most one name")
    return (cs.hosts[0] if cs.hosts else socket.gethostname(),)


def _is_test(uri: str) -> bool:
    return uri.startswith("test:")


def _domain_type(virt_type: str) -> str:
    """Real guests' libvirt domain type for compute.virt_type (virt/accel.py)."""
    try:
        return accel.domain_type(virt_type)
    except ValueError as exc:
        raise ConfigError("compute.virt_type", str(exc)) from None


def make_drivers(settings: Settings, *, soft_reboot_timeout: float | None = None,
                 shutdown_timeout: float | None = None) -> dict[str, Driver]:
    """One driver per host (blocking: each connects to libvirt). A simulated host's
    node file is written only when missing."""
    cs = settings.compute
    drivers: dict[str, Driver] = {}
    try:
        for name in host_names(settings):
            if _is_test(cs.virt_uri):
                path = node_path(settings, name)
                if not path.exists():
                    write_test_node(path, name, cs.host_vcpus, cs.host_memory_mb,
                                    disk_gb=cs.host_disk_gb)
                drivers[name] = LibvirtDriver(node_uri(path))
            else:
                drivers[name] = LibvirtDriver(
                    cs.virt_uri, instances_path=cs.instances_path,
                    soft_reboot_timeout=(cs.wait_soft_reboot_seconds if soft_reboot_timeout is None
                                         else soft_reboot_timeout),
                    shutdown_timeout=(cs.shutdown_timeout if shutdown_timeout is None
                                      else shutdown_timeout),
                    networks_path=cs.networks_path, domain_type=_domain_type(cs.virt_type))
    except BaseException:
        for driver in drivers.values():
            driver.close()
        raise
    return drivers


async def start(settings: Settings, *, signer: TokenSigner | None = None,
                fail_builds_on: Iterable[str] = frozenset(), move_step_delay: float = 0.0,
                periodic_interval: float | None = None,
                soft_reboot_timeout: float | None = None,
                shutdown_timeout: float | None = None) -> tuple[ComputeService, ComputeManager]:
    """Start a compute agent: drivers, gRPC server on settings.listen.compute,
    registration and recovery of every host, the periodic task. Returns the
    service and its manager; stop them with ``stop``.

    ``fail_builds_on``: hosts whose builds fail (tests of rescheduling);
    ``move_step_delay``: seconds each step of a move waits first (tests that kill a
    service in the middle of a move).
    ``periodic_interval``: seconds between periodic rounds (settings.report_interval).
    ``soft_reboot_timeout`` / ``shutdown_timeout``: for real guests, how long a soft
    reboot / a stop waits for the guest OS (Nova's [libvirt] wait_soft_reboot_seconds
    and [DEFAULT] shutdown_timeout; settings.compute's otherwise)."""
    async def build(startup: Startup) -> Parts[ComputeManager]:
        drivers = await asyncio.to_thread(make_drivers, settings,
                                          soft_reboot_timeout=soft_reboot_timeout,
                                          shutdown_timeout=shutdown_timeout)
        scheduler = SchedulerClient(settings.endpoint("scheduler"), startup.service_token(),
                                    timeout=float(settings.report_interval))
        startup.on_stop(scheduler.close)
        manager = ComputeManager(
            startup.db, drivers,
            ComputeOptions.from_settings(settings.compute, fail_builds_on=fail_builds_on,
                                         move_step_delay=move_step_delay),
            endpoint="", report=scheduler.hosts_changed)
        startup.on_stop(manager.close)

        async def when_listening(server: RunningServer) -> None:
            # where others dial: this machine's address for the service, with the
            # port actually bound (the listen port may be 0)
            manager.endpoint = settings.advertised("compute", server.port)
            await manager.start()
            manager.start_periodic(
                periodic_interval if periodic_interval is not None else float(settings.report_interval),
                sync_every=settings.compute.periodic_spacing("sync_power_state"),
                recount_every=settings.compute.periodic_spacing("update_resources"))

        return Parts(manager, [(compute_agent_pb2_grpc.add_ComputeAgentServicer_to_server,
                                ComputeAgentServicer(manager))], when_listening=when_listening)

    service = await start_service("compute", settings, build, signer=signer)
    return service, service.manager


async def stop(running: ComputeService, manager: ComputeManager, grace: float | None = 10.0) -> None:
    """Stop gracefully: no new calls, builds in flight get ``grace`` seconds to
    finish, then the periodic task, the drivers, the clients and the database.
    ``manager`` is the one ``start`` returned with ``running``, which closes it."""
    await running.stop(grace)


def main(settings: Settings, *, fail_builds_on: Iterable[str] = frozenset(),
         move_step_delay: float = 0.0) -> None:
    """Run an agent until SIGTERM or SIGINT, then stop gracefully: no new calls,
    builds in flight get settings.graceful_shutdown_timeout seconds to finish."""
    async def start_agent() -> ComputeService:
        service, _ = await start(settings, fail_builds_on=fail_builds_on,
                                 move_step_delay=move_step_delay)
        return service

    runner.run(start_agent, settings)


__all__ = ["ComputeService", "host_names", "main", "make_drivers", "node_path", "start", "stop"]
