"""Starting and stopping a service's gRPC server.

    running = await start_server("scheduler", [(add_SchedulerServicer_to_server, servicer)],
                                 settings.listen.scheduler, settings, signer=signer)
    await run_forever(running, on_stop=[manager.close])

gives a ``grpc.aio`` server with the interceptors of novalite.services.interceptors,
the standard health service (SERVING once started, NOT_SERVING from the moment it
stops), reflection for every service it serves (so grpcurl works), and Prometheus
metrics on HTTP. ``run_forever`` stops it gracefully on SIGTERM or SIGINT. The
services start through novalite.services.runner, which builds on these.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import signal
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Awaitable, Callable, Iterable, Protocol, Sequence

import grpc
import grpc.aio
import uvloop
from grpc_health.v1 import health as _health  # type: ignore[import-untyped, unused-ignore]
from grpc_health.v1 import health_pb2, health_pb2_grpc  # type: ignore[import-untyped, unused-ignore]
from grpc_reflection.v1alpha import reflection  # type: ignore[import-untyped, unused-ignore]
from prometheus_client import CollectorRegistry

from novalite.auth.tokens import TokenSigner
from novalite.services.interceptors import (
    AuthInterceptor, ErrorInterceptor, LoggingInterceptor, MetricsInterceptor, StreamTracker,
)
from novalite.services.logs import configure_logging
from novalite.services.metrics import MetricsEndpoint, RpcMetrics
from novalite.settings import SERVICES, Settings, connect_address, join_address, split_address

LOG = logging.getLogger(__name__)

HEALTH_SERVICE = "grpc.health.v1.Health"
REFLECTION_SERVICE = "grpc.reflection.v1alpha.ServerReflection"
# Streaming calls (watches) never end by themselves: on stop they get this long to
# see the NOT_SERVING news before they are cancelled; unary calls get the full grace.
STREAM_DRAIN_SECONDS = 0.25
# A generated add_<Service>Servicer_to_server function, and the servicer it adds.
AddServicer = Callable[[Any, Any], None]


class RunningServer:
    """A started server. ``port`` is the port it listens on (the one picked, for
    port 0); ``metrics_port`` its Prometheus endpoint's (None when turned off)."""

    def __init__(self, name: str, server: grpc.aio.Server, host: str, port: int,
                 services: Sequence[str], health: Any, registry: CollectorRegistry,
                 metrics: MetricsEndpoint | None, streams: StreamTracker) -> None:
        self.name = name
        self.server = server
        self.host = host
        self.port = port
        self.services = tuple(services)
        self.registry = registry
        self._health = health
        self._metrics = metrics
        self._streams = streams
        self._stopping: asyncio.Future[None] | None = None

    @property
    def metrics_port(self) -> int | None:
        return self._metrics.port if self._metrics is not None else None

    @property
    def address(self) -> str:
        """Where a client on this machine reaches the server."""
        return connect_address(join_address(self.host, self.port))

    async def mark_serving(self) -> None:
        """Health: SERVING, for the server and each of its services (ignored once
        stopping)."""
        for service in ("", *self.services):
            await self._health.set(service, health_pb2.HealthCheckResponse.SERVING)

    async def stop(self, grace: float | None = 10.0) -> None:
        """Stop gracefully: health says NOT_SERVING, no new calls are accepted, unary
        calls in flight get ``grace`` seconds to finish (None: none) and are then
        cancelled, streaming calls (watches) end with UNAVAILABLE after a short
        drain, and the metrics endpoint closes. Safe to call twice."""
        if self._stopping is None:
            self._stopping = asyncio.ensure_future(self._stop(grace))
        await asyncio.shield(self._stopping)

    async def _stop(self, grace: float | None) -> None:
        LOG.info("stopping %s", self.name, extra={"fields": {"service": self.name, "grace": grace}})
        await self._health.enter_graceful_shutdown()
        stopping = asyncio.ensure_future(self.server.stop(grace))
        if self._streams.tasks and grace:
            await asyncio.sleep(min(grace, STREAM_DRAIN_SECONDS))
            self._streams.end_all()
        await stopping
        if self._metrics is not None:
            await asyncio.to_thread(self._metrics.close)
        LOG.info("stopped %s", self.name, extra={"fields": {"service": self.name}})

    async def wait_for_termination(self) -> None:
        """Return once the server has stopped (by ``stop``)."""
        # Shielded: grpc awaits its own shutdown future here, and cancelling this
        # wait would cancel that future, breaking every later stop.
        await asyncio.shield(self.server.wait_for_termination())


class _RecordingServer:
    """Stands in for the server while the generated add_*_to_server functions run,
    to learn the names of the services they add."""

    def __init__(self, server: grpc.aio.Server) -> None:
        self._server = server
        self.services: list[str] = []

    def add_generic_rpc_handlers(self, handlers: Iterable[grpc.GenericRpcHandler]) -> None:
        for handler in handlers:
            name = getattr(handler, "service_name", None)
            if callable(name) and name() not in self.services:
                self.services.append(name())
        self._server.add_generic_rpc_handlers(handlers)

    def add_registered_method_handlers(self, service_name: str, method_handlers: Any) -> None:
        if service_name not in self.services:
            self.services.append(service_name)
        self._server.add_registered_method_handlers(service_name, method_handlers)


async def start_server(
    name: str,
    servicers: Sequence[tuple[AddServicer, Any]],
    listen: str,
    settings: Settings,
    *,
    signer: TokenSigner,
    metrics_port: int | None = None,
    registry: CollectorRegistry | None = None,
    options: Sequence[tuple[str, Any]] = (),
    ready: bool = True,
) -> RunningServer:
    """Start serving ``servicers`` on ``listen`` (host:port; port 0 picks one).

    ``name`` is the service's ("api", "conductor", "scheduler", "compute"): its
    metrics port comes from ``settings.metrics_ports`` unless ``metrics_port`` says
    otherwise (0 picks one, -1 turns the endpoint off). ``registry`` collects the
    RPC metrics and any the service adds (a new one by default). Configures logging
    as the settings say. Raises OSError when it cannot listen.

    Health says SERVING once the server listens; with ``ready`` False it says
    NOT_SERVING until ``mark_serving()``: calls are served meanwhile, but whoever
    waits for SERVING waits until the service has finished starting.
    """
    configure_logging(settings)
    host, _ = split_address(listen)
    if metrics_port is None:
        metrics_port = settings.metrics_ports.of(name) if name in SERVICES else 0
    registry = registry if registry is not None else CollectorRegistry()
    streams = StreamTracker()
    server = grpc.aio.server(
        interceptors=[LoggingInterceptor(), MetricsInterceptor(RpcMetrics(registry)), streams,
                      ErrorInterceptor(), AuthInterceptor(signer)],
        # grpc sets SO_REUSEPORT by default: a second server on a busy port would
        # then share it silently instead of failing.
        options=[("grpc.so_reuseport", 0), *options],
    )
    recorder = _RecordingServer(server)
    for add, servicer in servicers:
        add(servicer, recorder)
    health = _health.aio.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health, server)
    services = [*recorder.services, HEALTH_SERVICE, REFLECTION_SERVICE]
    reflection.enable_server_reflection(services, server)
    try:
        port = server.add_insecure_port(listen)
    except RuntimeError as e:
        raise OSError(f"{name}: cannot listen on {listen}: {e}") from None
    for service in ("", *recorder.services):
        await health.set(service, health_pb2.HealthCheckResponse.NOT_SERVING)
    await server.start()
    endpoint: MetricsEndpoint | None = None
    try:
        if metrics_port != -1:
            endpoint = await asyncio.to_thread(MetricsEndpoint, registry, host, metrics_port)
    except OSError as e:
        await server.stop(None)
        raise OSError(f"{name}: cannot serve metrics on port {metrics_port}: {e}") from None
    running = RunningServer(name, server, host, port, recorder.services, health, registry,
                            endpoint, streams)
    if ready:
        await running.mark_serving()
    LOG.info("%s listening on %s", name, join_address(host, port), extra={"fields": {
        "service": name, "address": join_address(host, port), "metrics_port": running.metrics_port,
        "services": ",".join(recorder.services)}})
    return running


# Worker threads per service process for asyncio.to_thread (database calls): a write
# waiting for its group commit holds one, and the default pool (cores + 4) ran
# out under load, queueing Create calls for up to 50 ms.
WORKER_THREADS = 32


def run_process(main: Callable[[], Awaitable[None]]) -> None:
    """Run ``main()`` as a service's process: on uvloop's event loop, with
    WORKER_THREADS worker threads as its default executor.

    A service spends most of its time in the event loop (gRPC calls, futures of
    worker threads); on uvloop a single create costs 5.6 instead of 7.9 ms of CPU
    across the four services (benches/RESULTS.md)."""
    async def with_workers() -> None:
        asyncio.get_running_loop().set_default_executor(
            ThreadPoolExecutor(WORKER_THREADS, thread_name_prefix="novalite-worker"))
        await main()
    uvloop.run(with_workers())


class Stoppable(Protocol):
    """What run_forever serves: a RunningServer, or a service built on one."""

    async def stop(self, grace: float | None = 10.0) -> None: ...

    async def wait_for_termination(self) -> None: ...


async def run_forever(
    *servers: Stoppable,
    grace: float | None = 10.0,
    on_stop: Sequence[Callable[[], Awaitable[object]]] = (),
    stop_event: asyncio.Event | None = None,
) -> None:
    """Serve until SIGTERM or SIGINT (or ``stop_event`` is set, or a server ends by
    itself), then stop every server gracefully, giving calls in flight ``grace``
    seconds (services pass settings.graceful_shutdown_timeout), and await the
    ``on_stop`` callbacks in order (close the database, stop periodic tasks...)."""
    loop = asyncio.get_running_loop()
    stop = stop_event if stop_event is not None else asyncio.Event()
    installed: list[signal.Signals] = []
    for sig in (signal.SIGTERM, signal.SIGINT):
        try:
            loop.add_signal_handler(sig, stop.set)
            installed.append(sig)
        except (NotImplementedError, RuntimeError, ValueError):
            pass  # not the main thread, or no signals here: stop_event still works
    # What a service allocated while starting (modules, stubs, mappers, hosts) lives
    # as long as the process: frozen, the garbage collector stops rescanning it,
    # which made full collections pause a service for 25-60 ms under load.
    gc.collect()
    gc.freeze()
    waiters = [asyncio.ensure_future(stop.wait()),
               *(asyncio.ensure_future(s.wait_for_termination()) for s in servers)]
    try:
        await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for waiter in waiters:
            waiter.cancel()
        for sig in installed:
            loop.remove_signal_handler(sig)
        await asyncio.gather(*(s.stop(grace) for s in servers))
        for callback in on_stop:
            await callback()
