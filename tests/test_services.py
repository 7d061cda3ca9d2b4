"""The services' shared foundation (issue 3, section 4 "Each service"), over real
sockets on 127.0.0.1, with a small servicer built from the generated stubs:

* domain errors become the status codes of docs/control-plane.md, INVALID_ARGUMENT
  naming the field, with structured details a client can turn back into the error;
  anything unexpected is INTERNAL with a request id, and its traceback is logged,
  not sent;
* health answers SERVING once started and NOT_SERVING from the moment it stops;
  reflection lists the services; the metrics endpoint counts calls;
* a graceful stop lets an in-flight call finish, turns new calls away, ends watch
  streams at once, and SIGTERM does the same to a service in its own process;
* each RPC is logged with method, code, duration, request id and project, and the
  request id follows a call from one service to the next;
* settings: file < environment < overrides, unknown keys and bad values named with
  their source, and the shared secret file.
"""

from __future__ import annotations

import asyncio
import io
import json
import logging
import os
import signal
import stat
import subprocess
import sys
import textwrap
import time
import urllib.request
from pathlib import Path
from typing import Any, AsyncIterator, Awaitable, Callable

import grpc
import grpc.aio
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from novalite import errors
from novalite.auth.tokens import ADMIN, MEMBER, SERVICE, TokenSigner
from novalite.rpc.novalite.compute.v1 import flavors_pb2, flavors_pb2_grpc, servers_pb2, servers_pb2_grpc
from novalite.services import context
from novalite.services.client import channel
from novalite.services.logs import JsonFormatter, TextFormatter, configure_logging
from novalite.services.server import RunningServer, start_server
from novalite.services.status import domain_error, request_id_of, status_details
from novalite.settings import ConfigError, Settings, load_settings

from helpers import failure

ROOT = Path(__file__).resolve().parent.parent
SECRET = b"a shared secret of 32 bytes!!!!!"
FLAVORS = "novalite.compute.v1.Flavors"
SERVERS = "novalite.compute.v1.Servers"

# CreateFlavor raises the error its request's name picks.
DOMAIN_ERRORS: dict[str, tuple[Callable[[], Exception], grpc.StatusCode]] = {
    "not-found": (lambda: errors.NotFound("flavor f-1 not found"), grpc.StatusCode.NOT_FOUND),
    "invalid": (lambda: errors.Invalid("vcpus", "must be at least 1"), grpc.StatusCode.INVALID_ARGUMENT),
    "forbidden": (lambda: errors.Forbidden("flavor f-1 is private"), grpc.StatusCode.PERMISSION_DENIED),
    "unauthenticated": (lambda: errors.Unauthenticated("who are you"), grpc.StatusCode.UNAUTHENTICATED),
    "quota": (lambda: errors.QuotaExceeded("cores", 8, 20, 16), grpc.StatusCode.RESOURCE_EXHAUSTED),
    "no-valid-host": (lambda: errors.NoValidHost(
        "No valid host was found. There are not enough hosts available.",
        [("Placement", 3), ("ComputeFilter", 2)], 1), grpc.StatusCode.RESOURCE_EXHAUSTED),
    "invalid-state": (lambda: errors.InvalidState("server s-1 is building"),
                      grpc.StatusCode.FAILED_PRECONDITION),
    "conflict": (lambda: errors.Conflict("name taken"), grpc.StatusCode.ABORTED),
    "generation": (lambda: errors.GenerationConflict("rp-1", 4), grpc.StatusCode.ABORTED),
    "capacity": (lambda: errors.CapacityExceeded("rp-1", "VCPU", 4, "only 2 free"),
                 grpc.StatusCode.ABORTED),
    "unavailable": (lambda: errors.Unavailable("scheduler unreachable"), grpc.StatusCode.UNAVAILABLE),
    "not-implemented": (lambda: NotImplementedError("resize is not supported"),
                        grpc.StatusCode.UNIMPLEMENTED),
}


class Flavors(flavors_pb2_grpc.FlavorsServicer):
    def __init__(self, downstream: Callable[[], str] | None = None) -> None:
        self.downstream = downstream
        self.finished: list[str] = []

    async def CreateFlavor(self, request: Any, context_: Any) -> flavors_pb2.Flavor:
        if request.name == "slow":
            await asyncio.sleep(request.vcpus / 1000)
            self.finished.append("slow")
            return flavors_pb2.Flavor(name="slow")
        if request.name == "boom":
            raise RuntimeError("the database password is hunter2")
        if request.name in DOMAIN_ERRORS:
            raise DOMAIN_ERRORS[request.name][0]()
        return flavors_pb2.Flavor(name=request.name)

    async def ListFlavors(self, request: Any, context_: Any) -> flavors_pb2.ListFlavorsResponse:
        """Answers with the request id it runs under, or the one a downstream
        service saw when this one called it (request.page_token = its address)."""
        if request.page_token and self.downstream is not None:
            async with channel(request.page_token, self.downstream) as ch:
                reply: flavors_pb2.ListFlavorsResponse = await flavors_pb2_grpc.FlavorsStub(
                    ch).ListFlavors(flavors_pb2.ListFlavorsRequest())
            return reply
        return flavors_pb2.ListFlavorsResponse(next_page_token=context.current_request_id() or "")

    def GetFlavor(self, request: Any, context_: Any) -> flavors_pb2.Flavor:
        """A blocking method: it runs in a thread, and still sees its caller."""
        time.sleep(0.01)
        return flavors_pb2.Flavor(id=context.current_claims().project_id)


class Servers(servers_pb2_grpc.ServersServicer):
    async def WatchServers(self, request: Any, context_: Any) -> AsyncIterator[servers_pb2.ServerEvent]:
        n = 0
        while True:
            yield servers_pb2.ServerEvent(server=servers_pb2.Server(id=f"s-{n}"))
            n += 1
            if list(request.ids) == ["fail"]:
                raise errors.NotFound("server fail vanished")
            await asyncio.sleep(0.02)


def make_settings(tmp_path: Path, **overrides: Any) -> Settings:
    return load_settings(environ={}, overrides={
        "data_dir": str(tmp_path), "secret": SECRET, "log_format": "json",
        "rest.listen": "127.0.0.1:0", **overrides})


class Cloud:
    """One running test server, and tokens for it."""

    def __init__(self, running: RunningServer, signer: TokenSigner, flavors: Flavors) -> None:
        self.running = running
        self.signer = signer
        self.flavors = flavors
        self.admin = signer.issue("admin-project", "root", [ADMIN])
        self.member = signer.issue("project-a", "alice", [MEMBER])

    def channel(self, token: str | None = "admin") -> grpc.aio.Channel:
        return channel(self.running.address, {"admin": self.admin, "member": self.member}.get(
            token or "", token))

    def metrics(self) -> str:
        url = f"http://127.0.0.1:{self.running.metrics_port}/metrics"
        with urllib.request.urlopen(url, timeout=5) as reply:
            return str(reply.read().decode())


async def start_cloud(tmp_path: Path, name: str = "api", **kwargs: Any) -> Cloud:
    settings = make_settings(tmp_path)
    signer = TokenSigner(settings.secret)
    flavors = Flavors(downstream=lambda: signer.issue("admin-project", "relay", [ADMIN]))
    running = await start_server(name, [
        (flavors_pb2_grpc.add_FlavorsServicer_to_server, flavors),
        (servers_pb2_grpc.add_ServersServicer_to_server, Servers()),
    ], "127.0.0.1:0", settings, signer=signer, **kwargs)
    return Cloud(running, signer, flavors)


def run(tmp_path: Path, scenario: Callable[[Cloud], Awaitable[None]], **kwargs: Any) -> None:
    async def main() -> None:
        cloud = await start_cloud(tmp_path, **kwargs)
        try:
            await scenario(cloud)
        finally:
            await cloud.running.stop(1.0)
    asyncio.run(main())


def create(name: str, vcpus: int = 1) -> flavors_pb2.CreateFlavorRequest:
    return flavors_pb2.CreateFlavorRequest(name=name, vcpus=vcpus)


# ---------------------------------------------------------------------------
# Errors

def test_domain_errors_become_the_designs_status_codes(tmp_path: Path) -> None:
    async def scenario(cloud: Cloud) -> None:
        async with cloud.channel() as ch:
            stub = flavors_pb2_grpc.FlavorsStub(ch)
            for name, (make, code) in DOMAIN_ERRORS.items():
                error = await failure(stub.CreateFlavor(create(name)))
                assert error.code() is code, name
                assert error.details() == str(make()), name
                assert (request_id_of(error) or "").startswith("req-"), name
    run(tmp_path, scenario)


def test_invalid_argument_names_the_field(tmp_path: Path) -> None:
    async def scenario(cloud: Cloud) -> None:
        async with cloud.channel() as ch:
            error = await failure(flavors_pb2_grpc.FlavorsStub(ch).CreateFlavor(create("invalid")))
        assert error.code() is grpc.StatusCode.INVALID_ARGUMENT
        assert error.details() == "vcpus: must be at least 1"
        assert [d.TypeName() for d in status_details(error)] == ["google.rpc.BadRequest"]
        again = domain_error(error)
        assert isinstance(again, errors.Invalid)
        assert (again.field, again.message) == ("vcpus", "must be at least 1")
    run(tmp_path, scenario)


def test_no_valid_host_and_quota_errors_carry_their_numbers(tmp_path: Path) -> None:
    async def scenario(cloud: Cloud) -> None:
        async with cloud.channel() as ch:
            stub = flavors_pb2_grpc.FlavorsStub(ch)
            no_host = domain_error(await failure(stub.CreateFlavor(create("no-valid-host"))))
            quota = domain_error(await failure(stub.CreateFlavor(create("quota"))))
            lost_race = domain_error(await failure(stub.CreateFlavor(create("generation"))))
        assert isinstance(no_host, errors.NoValidHost)
        assert no_host.reason.startswith("No valid host was found.")
        assert no_host.rejections == [("Placement", 3), ("ComputeFilter", 2)]
        assert no_host.instance_index == 1
        assert isinstance(quota, errors.QuotaExceeded)
        assert (quota.resource, quota.requested, quota.limit, quota.in_use) == ("cores", 8, 20, 16)
        assert isinstance(lost_race, errors.Conflict)
    run(tmp_path, scenario)


def test_an_unexpected_exception_is_internal_and_logged_not_sent(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    async def scenario(cloud: Cloud) -> None:
        async with cloud.channel() as ch:
            error = await failure(flavors_pb2_grpc.FlavorsStub(ch).CreateFlavor(create("boom")))
        request_id = request_id_of(error)
        assert error.code() is grpc.StatusCode.INTERNAL
        assert error.details() == f"internal error (request {request_id})"
        assert "hunter2" not in (error.details() or "") + str(error.trailing_metadata())
        logged = [r for r in caplog.records if r.levelno == logging.ERROR]
        assert len(logged) == 1 and logged[0].exc_info is not None
        assert "hunter2" in str(logged[0].exc_info[1])
        assert logged[0].fields["request_id"] == request_id  # type: ignore[attr-defined]
        assert domain_error(error) is None
    with caplog.at_level(logging.INFO):
        run(tmp_path, scenario)


def test_errors_in_a_stream_map_too(tmp_path: Path) -> None:
    async def scenario(cloud: Cloud) -> None:
        async with cloud.channel("member") as ch:
            call = servers_pb2_grpc.ServersStub(ch).WatchServers(servers_pb2.WatchServersRequest(ids=["fail"]))
            seen = []
            with pytest.raises(grpc.aio.AioRpcError) as info:
                async for event in call:
                    seen.append(event.server.id)
        assert seen == ["s-0"]
        assert info.value.code() is grpc.StatusCode.NOT_FOUND
        assert info.value.details() == "server fail vanished"
    run(tmp_path, scenario)


def test_blocking_servicer_methods_run_in_a_thread_as_the_caller(tmp_path: Path) -> None:
    async def scenario(cloud: Cloud) -> None:
        async with cloud.channel("member") as ch:
            stub = flavors_pb2_grpc.FlavorsStub(ch)
            replies = await asyncio.gather(*(stub.GetFlavor(flavors_pb2.GetFlavorRequest())
                                             for _ in range(20)))
        assert {r.id for r in replies} == {"project-a"}
    run(tmp_path, scenario)


# ---------------------------------------------------------------------------
# Health, reflection, metrics

def test_health_serving_once_started_and_not_serving_on_stop(tmp_path: Path) -> None:
    async def scenario(cloud: Cloud) -> None:
        async with cloud.channel(None) as ch:
            health = health_pb2_grpc.HealthStub(ch)
            for service in ("", FLAVORS, SERVERS):
                reply = await health.Check(health_pb2.HealthCheckRequest(service=service))
                assert reply.status == health_pb2.HealthCheckResponse.SERVING, service
            unknown = await failure(health.Check(health_pb2.HealthCheckRequest(service="nope")))
            assert unknown.code() is grpc.StatusCode.NOT_FOUND
            watch = health.Watch(health_pb2.HealthCheckRequest(service=FLAVORS))
            statuses = [(await watch.read()).status]
            stopping = asyncio.ensure_future(cloud.running.stop(5.0))
            statuses.append((await watch.read()).status)
            watch.cancel()
            started = time.monotonic()
            await stopping
            assert time.monotonic() - started < 2.0
        assert statuses == [health_pb2.HealthCheckResponse.SERVING,
                            health_pb2.HealthCheckResponse.NOT_SERVING]
    run(tmp_path, scenario)


def test_reflection_lists_the_services(tmp_path: Path) -> None:
    async def scenario(cloud: Cloud) -> None:
        async with cloud.channel(None) as ch:
            stub = reflection_pb2_grpc.ServerReflectionStub(ch)
            requests = [
                reflection_pb2.ServerReflectionRequest(list_services=""),
                reflection_pb2.ServerReflectionRequest(file_containing_symbol=FLAVORS),
            ]
            replies = [r async for r in stub.ServerReflectionInfo(iter(requests))]
        names = {s.name for s in replies[0].list_services_response.service}
        assert names == {FLAVORS, SERVERS, "grpc.health.v1.Health",
                         "grpc.reflection.v1alpha.ServerReflection"}
        assert replies[1].file_descriptor_response.file_descriptor_proto, "grpcurl can describe it"
    run(tmp_path, scenario)


def _sample(text: str, name: str, **labels: str) -> float:
    for line in text.splitlines():
        if line.startswith(name + "{") and all(f'{k}="{v}"' in line for k, v in labels.items()):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


def test_metrics_count_calls_by_method_and_code(tmp_path: Path) -> None:
    async def scenario(cloud: Cloud) -> None:
        assert cloud.running.metrics_port
        before = await asyncio.to_thread(cloud.metrics)
        async with cloud.channel() as ch:
            stub = flavors_pb2_grpc.FlavorsStub(ch)
            for _ in range(3):
                await stub.CreateFlavor(create("m1.small"))
            await failure(stub.CreateFlavor(create("not-found")))
        after = await asyncio.to_thread(cloud.metrics)
        labels = {"grpc_service": FLAVORS, "grpc_method": "CreateFlavor", "grpc_type": "UNARY"}
        for code, more in (("OK", 3), ("NOT_FOUND", 1)):
            assert _sample(after, "grpc_server_handled_total", grpc_code=code, **labels) \
                - _sample(before, "grpc_server_handled_total", grpc_code=code, **labels) == more
        assert _sample(after, "grpc_server_started_total", **labels) == 4
        assert _sample(after, "grpc_server_handling_seconds_count", **labels) == 4
    run(tmp_path, scenario)


def test_metrics_endpoint_can_be_turned_off(tmp_path: Path) -> None:
    async def scenario(cloud: Cloud) -> None:
        assert cloud.running.metrics_port is None
    run(tmp_path, scenario, metrics_port=-1)


# ---------------------------------------------------------------------------
# Stopping

def test_a_graceful_stop_lets_an_in_flight_call_finish(tmp_path: Path) -> None:
    async def scenario(cloud: Cloud) -> None:
        async with cloud.channel() as ch:
            stub = flavors_pb2_grpc.FlavorsStub(ch)
            slow = asyncio.ensure_future(stub.CreateFlavor(create("slow", vcpus=600)))  # 0.6 s
            await asyncio.sleep(0.2)
            started = time.monotonic()
            stopping = asyncio.ensure_future(cloud.running.stop(5.0))
            await asyncio.sleep(0.1)
            late = await failure(stub.CreateFlavor(create("m1.late")))
            assert late.code() is grpc.StatusCode.UNAVAILABLE
            assert (await slow).name == "slow"
            await stopping
            assert time.monotonic() - started < 2.0, "the stop waits for the call, not the grace"
        assert cloud.flavors.finished == ["slow"]
    run(tmp_path, scenario)


def test_a_call_longer_than_the_grace_is_cancelled(tmp_path: Path) -> None:
    async def scenario(cloud: Cloud) -> None:
        async with cloud.channel() as ch:
            slow = asyncio.ensure_future(
                flavors_pb2_grpc.FlavorsStub(ch).CreateFlavor(create("slow", vcpus=30_000)))
            await asyncio.sleep(0.2)
            started = time.monotonic()
            await cloud.running.stop(0.3)
            assert time.monotonic() - started < 2.0
            assert (await failure(slow)).code() in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.CANCELLED)
    run(tmp_path, scenario)


def test_a_stop_ends_watch_streams_at_once(tmp_path: Path) -> None:
    async def scenario(cloud: Cloud) -> None:
        async with cloud.channel("member") as ch:
            call = servers_pb2_grpc.ServersStub(ch).WatchServers(servers_pb2.WatchServersRequest())
            await call.read()
            started = time.monotonic()
            await cloud.running.stop(30.0)
            assert time.monotonic() - started < 5.0, "a watch must not hold the stop for the grace"
            with pytest.raises(grpc.aio.AioRpcError) as info:
                while True:
                    await call.read()
                    if call.done():
                        await call
        assert info.value.code() is grpc.StatusCode.UNAVAILABLE
        assert "shutting down" in (info.value.details() or "")
    run(tmp_path, scenario)


def test_sigterm_stops_a_service_gracefully(tmp_path: Path) -> None:
    script = textwrap.dedent(f"""
        import asyncio, sys
        sys.path.insert(0, {str(Path(__file__).parent)!r})
        from test_services import start_cloud
        from novalite.services.server import run_forever
        from pathlib import Path

        async def main():
            cloud = await start_cloud(Path({str(tmp_path)!r}))
            print(cloud.running.port, flush=True)
            async def closed():
                print("closed", cloud.flavors.finished, flush=True)
            await run_forever(cloud.running, grace=10.0, on_stop=[closed])
        asyncio.run(main())
    """)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(
        p for p in (str(ROOT / "python"), os.environ.get("PYTHONPATH")) if p)}
    proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE,
                            stderr=subprocess.DEVNULL, text=True, env=env)
    try:
        assert proc.stdout is not None
        port = int(proc.stdout.readline())

        async def main() -> None:
            signer = TokenSigner(SECRET)
            async with channel(f"127.0.0.1:{port}", signer.issue("p", "u", [ADMIN])) as ch:
                slow = asyncio.ensure_future(
                    flavors_pb2_grpc.FlavorsStub(ch).CreateFlavor(create("slow", vcpus=800)))
                await asyncio.sleep(0.3)
                proc.send_signal(signal.SIGTERM)
                assert (await slow).name == "slow"
        asyncio.run(main())
        assert proc.wait(timeout=20) == 0
        assert proc.stdout.read().strip() == "closed ['slow']"
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_a_busy_port_is_an_error_not_a_shared_port(tmp_path: Path) -> None:
    async def main() -> None:
        first = await start_cloud(tmp_path, metrics_port=-1)
        try:
            settings = make_settings(tmp_path)
            with pytest.raises(OSError, match="cannot listen"):
                await start_server("api", [], f"127.0.0.1:{first.running.port}", settings,
                                   signer=TokenSigner(SECRET), metrics_port=-1)
        finally:
            await first.running.stop(1.0)
    asyncio.run(main())


# ---------------------------------------------------------------------------
# Logs and request ids

def test_each_rpc_is_logged_with_its_fields(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    async def scenario(cloud: Cloud) -> None:
        async with cloud.channel("member") as ch:
            await flavors_pb2_grpc.FlavorsStub(ch).ListFlavors(
                flavors_pb2.ListFlavorsRequest(), metadata=(("x-request-id", "req-from-client"),))
            await failure(flavors_pb2_grpc.FlavorsStub(ch).CreateFlavor(create("m1")))
    with caplog.at_level(logging.INFO, logger="novalite.rpc"):
        run(tmp_path, scenario)
    lines = [r for r in caplog.records if r.name == "novalite.rpc"]
    fields = [r.fields for r in lines]  # type: ignore[attr-defined]
    assert [(f["method"], f["code"]) for f in fields] == [
        (f"/{FLAVORS}/ListFlavors", "OK"), (f"/{FLAVORS}/CreateFlavor", "PERMISSION_DENIED")]
    assert fields[0]["request_id"] == "req-from-client"
    assert fields[1]["request_id"].startswith("req-")
    assert all(f["project"] == "project-a" and f["user"] == "alice" for f in fields)
    assert all(isinstance(f["duration_ms"], float) and f["duration_ms"] >= 0 for f in fields)
    line = json.loads(JsonFormatter().format(lines[0]))
    assert line["level"] == "INFO" and line["method"] == f"/{FLAVORS}/ListFlavors"
    assert line["request_id"] == "req-from-client" and line["project"] == "project-a"
    text = TextFormatter().format(lines[0])
    assert "code=OK" in text and "request_id=req-from-client" in text


def test_services_calls_are_logged_at_info_only_when_they_fail(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """The services' calls to each other would bury the users' (a create makes
    four): at INFO only their failures are logged, all of them at DEBUG."""
    async def scenario(cloud: Cloud) -> None:
        # a service's token (allowed the public methods too, for this test's server)
        service = cloud.signer.issue("service", "conductor@here", [SERVICE, ADMIN])
        async with cloud.channel(service) as ch:
            await flavors_pb2_grpc.FlavorsStub(ch).ListFlavors(flavors_pb2.ListFlavorsRequest())
            await failure(flavors_pb2_grpc.FlavorsStub(ch).CreateFlavor(create("not-found")))
        async with cloud.channel("member") as ch:
            await flavors_pb2_grpc.FlavorsStub(ch).ListFlavors(flavors_pb2.ListFlavorsRequest())
    with caplog.at_level(logging.DEBUG, logger="novalite.rpc"):
        run(tmp_path, scenario)
    lines = [(r.levelname, r.fields["method"], r.fields["code"])  # type: ignore[attr-defined]
             for r in caplog.records if r.name == "novalite.rpc"]
    assert lines == [("DEBUG", f"/{FLAVORS}/ListFlavors", "OK"),
                     ("INFO", f"/{FLAVORS}/CreateFlavor", "NOT_FOUND"),
                     ("INFO", f"/{FLAVORS}/ListFlavors", "OK")]


def test_configure_logging_follows_the_settings(tmp_path: Path) -> None:
    stream = io.StringIO()
    root = logging.getLogger()
    level = root.level
    try:
        configure_logging(make_settings(tmp_path, log_level="warning", log_format="json"), stream)
        configure_logging(make_settings(tmp_path, log_level="warning", log_format="json"), stream)
        with context.call_context(None, request_id="req-bg"):
            logging.getLogger("novalite.test").info("hidden")
            logging.getLogger("novalite.test").warning("shown %d", 1)
    finally:
        for handler in [h for h in root.handlers if type(h).__name__ == "_NovaliteHandler"]:
            root.removeHandler(handler)
        root.setLevel(level)
    lines = stream.getvalue().splitlines()
    assert len(lines) == 1, "one handler, however often configured, and the level applies"
    assert json.loads(lines[0])["msg"] == "shown 1"
    assert json.loads(lines[0])["request_id"] == "req-bg"


def test_the_request_id_follows_a_call_to_the_next_service(tmp_path: Path) -> None:
    async def main() -> None:
        upstream = await start_cloud(tmp_path / "up", metrics_port=-1)
        downstream = await start_cloud(tmp_path / "down", metrics_port=-1)
        try:
            async with upstream.channel("member") as ch:
                reply = await flavors_pb2_grpc.FlavorsStub(ch).ListFlavors(
                    flavors_pb2.ListFlavorsRequest(page_token=downstream.running.address),
                    metadata=(("x-request-id", "req-user-42"),))
            assert reply.next_page_token == "req-user-42"
        finally:
            await asyncio.gather(upstream.running.stop(1.0), downstream.running.stop(1.0))
    asyncio.run(main())


def test_the_current_caller_outside_a_call() -> None:
    with pytest.raises(errors.Unauthenticated):
        context.current_claims()
    assert context.current_request_id() is None
    claims = TokenSigner(SECRET).verify(TokenSigner(SECRET).issue("p", "u", [MEMBER]))
    with context.call_context(claims, request_id="req-1"):
        assert context.current_claims() == claims
        assert asyncio.run(asyncio.to_thread(context.current_claims)) == claims
        assert context.current_request_id() == "req-1"
    assert context.current_request_id() is None


# ---------------------------------------------------------------------------
# Settings

def test_settings_defaults(tmp_path: Path) -> None:
    settings = load_settings(environ={"HOME": str(tmp_path)})
    assert settings.data_dir == tmp_path / ".local" / "share" / "novalite"
    assert settings.database_url == f"sqlite:///{settings.data_dir}/novalite.db"
    assert (settings.listen.api, settings.listen.conductor, settings.listen.scheduler,
            settings.listen.compute) == ("127.0.0.1:8774", "127.0.0.1:8775", "127.0.0.1:8776",
                                         "127.0.0.1:8777")
    assert (settings.service_down_time, settings.report_interval) == (60, 10)
    assert settings.quotas.as_dict() == {"instances": 10, "cores": 20, "ram": 51200}
    compute = settings.compute
    assert (compute.cpu_allocation_ratio, compute.ram_allocation_ratio,
            compute.disk_allocation_ratio) == (4.0, 1.0, 1.0)
    assert (compute.reserved_host_memory_mb, compute.reserved_host_cpus,
            compute.reserved_host_disk_mb) == (512, 0, 0)
    assert (compute.max_concurrent_builds, compute.consecutive_build_service_disable_threshold) == (10, 10)
    assert compute.instances_path == settings.data_dir / "instances"
    assert settings.scheduler.max_attempts == 3
    assert settings == Settings(data_dir=settings.data_dir), "direct construction agrees"


def test_settings_precedence_file_env_overrides(tmp_path: Path) -> None:
    config = tmp_path / "novalite.toml"
    config.write_text(textwrap.dedent("""
        data_dir = "data"
        log_level = "debug"
        report_interval = 5
        [listen]
        api = "0.0.0.0:9000"
        scheduler = "[::1]:9001"
        [scheduler]
        enabled_filters = ["ComputeFilter", "SameHostFilter"]
        max_attempts = 5
        metrics_weight_setting = { "cpu.percent" = -1.5 }
        [quotas]
        cores = 40
        [compute]
        hosts = ["node-a", "node-b"]
        cpu_allocation_ratio = 16
        instances_path = "/srv/instances"
    """))
    env = {
        "NOVALITE_CONFIG": str(config),
        "NOVALITE_REPORT_INTERVAL": "7",
        "NOVALITE_LISTEN_API": "127.0.0.2:9100",
        "NOVALITE_SCHEDULER_MAX_ATTEMPTS": "6",
        "NOVALITE_SCHEDULER_SHUFFLE_BEST_SAME_WEIGHED_HOSTS": "yes",
        "NOVALITE_COMPUTE_RESERVED_HOST_MEMORY_MB": "1024",
        "NOVALITE_METRICS_PORTS_SCHEDULER": "-1",
        "NOVALITE_TEST_POSTGRES_URL": "postgresql://for-the-tests-not-the-settings",
        "UNRELATED": "x",
    }
    settings = load_settings(environ=env, overrides={
        "scheduler.max_attempts": 7, "compute": {"host_count": None, "reserved_host_cpus": "2"},
        "log_format": None})
    assert settings.data_dir == Path("data").absolute()
    assert settings.log_level == "DEBUG" and settings.log_format == "text"
    assert settings.report_interval == 7  # env over file
    assert settings.listen.api == "127.0.0.2:9100"  # env over file
    assert settings.listen.scheduler == "[::1]:9001" and settings.endpoint("scheduler") == "[::1]:9001"
    assert settings.scheduler.max_attempts == 7  # override over env over file
    assert settings.scheduler.enabled_filters == ("ComputeFilter", "SameHostFilter")
    assert settings.scheduler.shuffle_best_same_weighed_hosts is True
    assert settings.scheduler.metrics_weight_setting == {"cpu.percent": -1.5}
    assert settings.quotas.as_dict() == {"instances": 10, "cores": 40, "ram": 51200}
    assert settings.compute.host_names == ("node-a", "node-b")
    assert settings.compute.cpu_allocation_ratio == 16.0
    assert settings.compute.reserved_host_memory_mb == 1024
    assert settings.compute.reserved_host_cpus == 2
    assert settings.compute.instances_path == Path("/srv/instances")
    assert settings.metrics_ports.scheduler == -1
    # --config beats NOVALITE_CONFIG
    other = tmp_path / "other.toml"
    other.write_text("log_format = 'json'\n")
    assert load_settings(other, environ={**env, "NOVALITE_REPORT_INTERVAL": "7"}).log_format == "json"


def test_simulated_host_names_and_the_endpoint_of_a_wildcard(tmp_path: Path) -> None:
    settings = make_settings(tmp_path, compute={"host_count": 12}, listen={"api": "0.0.0.0:0"})
    assert settings.compute.host_names[0] == "compute-001" and len(settings.compute.host_names) == 12
    assert settings.endpoint("api") == "127.0.0.1:0"
    assert settings.endpoint("conductor") == "127.0.0.1:8775"


@pytest.mark.parametrize("where, key, message", [
    ("file", "colour = 'blue'", "colour: unknown setting"),
    ("file", "[compute]\nhost_cout = 3", "compute.host_cout: unknown setting of [compute]"),
    ("file", "[listen]\napi = 'localhost'", "listen.api: expected host:port"),
    ("file", "[listen]\napi = 'localhost:99999'", "listen.api: port must be 0..65535"),
    ("file", "[metrics_ports]\napi = 70000", "metrics_ports.api: must be a port"),
    ("file", "[scheduler]\nmax_attempts = 'three'", "scheduler.max_attempts: expected an integer"),
    ("file", "[scheduler]\nenabled_filters = ['RamFilterr']", "scheduler.enabled_filters: unknown filter"),
    ("file", "[compute]\ncpu_allocation_ratio = 0", "compute.cpu_allocation_ratio: must be a number > 0"),
    ("file", "[compute]\nupdate_resources_interval = 'often'",
     "compute.update_resources_interval: expected an integer"),
    ("file", "[quotas]\ncores = -2", "quotas.cores: must be an integer >= -1"),
    ("file", "secret = 'x'", "secret: is never read from a file"),
    ("file", "log_format = 'xml'", "log_format: must be json or text"),
    ("file", "compute = 3", "compute: expected a [compute] table"),
    ("file", "not toml at all [", "config: not valid TOML"),
    ("env", "NOVALITE_COMPUTE_HOST_COUT=3", "NOVALITE_COMPUTE_HOST_COUT: unknown setting"),
    ("env", "NOVALITE_LISTEN_CONDUCTOR=127.0.0.1:http", "listen.conductor: expected host:port"),
    ("env", "NOVALITE_SERVICE_DOWN_TIME=soon", "service_down_time: expected an integer"),
    ("env", "NOVALITE_REPORT_INTERVAL=60", "report_interval: must be less than service_down_time"),
    ("env", "NOVALITE_SECRET=short", "secret: must be at least 16 bytes"),
    ("env", "NOVALITE_ADVERTISE_HOST=0.0.0.0", "advertise_host: expected a host name or IP"),
    ("env", "NOVALITE_ADVERTISE_HOST=node7:8774", "advertise_host: expected a host name or IP"),
    ("override", "compute.nope=1", "compute.nope: unknown setting of [compute]"),
    ("override", "nope.x=1", "nope.x: unknown setting"),
    ("override", "metrics_ports.api=-2", "metrics_ports.api: must be a port"),
    ("override", "compute.hosts=['a','a']", "compute.hosts: a host is listed twice"),
])
def test_bad_settings_name_the_key_and_the_source(tmp_path: Path, where: str, key: str,
                                                  message: str) -> None:
    config = tmp_path / "novalite.toml"
    env: dict[str, str] = {"HOME": str(tmp_path)}
    overrides: dict[str, Any] = {}
    if where == "file":
        config.write_text(key + "\n")
        source = f"file {config}"
    elif where == "env":
        name, _, value = key.partition("=")
        env[name] = value
        source = f"environment variable {name}" if "COUT" not in name else "environment"
    else:
        name, _, value = key.partition("=")
        overrides[name] = eval(value)  # a typed value, as argparse gives
        source = "overrides"
    with pytest.raises(ConfigError) as info:
        load_settings(config if where == "file" else None, environ=env, overrides=overrides)
    assert str(info.value).startswith(message), str(info.value)
    assert info.value.source == source
    assert str(info.value).endswith(f"(from {source})")


def test_a_missing_config_file_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        load_settings(environ={"NOVALITE_CONFIG": str(tmp_path / "missing.toml")})


def test_the_secret_file_is_created_once_private_and_shared(tmp_path: Path) -> None:
    settings = load_settings(environ={}, overrides={"data_dir": str(tmp_path / "data")})
    secret = settings.secret
    path = tmp_path / "data" / "secret.key"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert len(secret) >= 32 and secret == path.read_bytes().strip()
    assert load_settings(environ={}, overrides={"data_dir": str(tmp_path / "data")}).secret == secret
    # another machine gets the same secret through the environment
    elsewhere = load_settings(environ={"NOVALITE_SECRET": path.read_text().strip()},
                              overrides={"data_dir": str(tmp_path / "elsewhere")})
    assert elsewhere.secret == secret
    assert not (tmp_path / "elsewhere").exists()
    assert secret.decode() not in repr(elsewhere)
    path.chmod(0o644)
    with pytest.raises(ConfigError, match=r"open to other users \(mode 0644\); chmod 600"):
        _ = settings.secret


def test_the_secret_file_race_has_one_winner(tmp_path: Path) -> None:
    import concurrent.futures

    settings = [load_settings(environ={}, overrides={"data_dir": str(tmp_path)}) for _ in range(8)]
    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        secrets = set(pool.map(lambda s: s.secret, settings))
    assert len(secrets) == 1
    assert [p.name for p in tmp_path.iterdir()] == ["secret.key"]
