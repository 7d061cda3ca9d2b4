"""Who may do what (issue 3, section 2): signed expiring tokens, the policy table,
and the auth interceptor over a real socket.

* A token round-trips its claims; expired, forged, altered, malformed and
  non-canonical tokens are refused with a message saying which.
* Every RPC of every service in the generated stubs has a policy entry, and the table
  names no method that does not exist.
* Over 127.0.0.1: a missing, expired, forged or malformed token is UNAUTHENTICATED; a
  member calling an admin RPC is PERMISSION_DENIED; the right role gets through and
  the servicer sees the caller's claims; health and reflection need no token.
"""

from __future__ import annotations

import asyncio
import base64
import importlib
import json
import pkgutil
from pathlib import Path
from typing import Any, Awaitable, Callable

import grpc
import grpc.aio
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

import novalite.rpc
from novalite import errors
from novalite.auth import policy
from novalite.auth.tokens import (
    ADMIN, MEMBER, SERVICE, Claims, RefreshingToken, TokenSigner,
)
from novalite.rpc.novalite.compute.v1 import flavors_pb2, flavors_pb2_grpc
from novalite.rpc.novalite.internal.v1 import scheduler_pb2, scheduler_pb2_grpc
from novalite.services.client import channel, sync_channel
from novalite.services.context import current_claims
from novalite.services.server import RunningServer, start_server
from novalite.settings import Settings, load_settings

SECRET = b"a shared secret of 32 bytes!!!!!"
NOW = 1_800_000_000.0


class Clock:
    def __init__(self, now: float = NOW) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


# ---------------------------------------------------------------------------
# Tokens

def test_a_token_carries_its_claims() -> None:
    signer = TokenSigner(SECRET, clock=Clock())
    token, issued = signer.issue_with_claims("proj-1", "alice", ["member"], ttl_seconds=600)
    claims = signer.verify(token)
    assert claims == issued
    assert claims.project_id == "proj-1" and claims.user_id == "alice"
    assert claims.roles == frozenset({"member"}) and not claims.is_admin
    assert claims.expires_at.timestamp() - claims.issued_at.timestamp() == 600
    assert claims.issued_at.timestamp() == NOW
    assert signer.issue("p", "u", ["member"]) != signer.issue("p", "u", ["member"]), "unique token ids"


def test_the_token_format_is_the_designs() -> None:
    token = TokenSigner(SECRET, clock=Clock()).issue("p", "u", ["admin", "member"], 60)
    payload, signature = token.split(".")
    body = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    assert set(body) == {"project_id", "user_id", "roles", "iat", "exp", "jti"}
    assert body["roles"] == ["admin", "member"] and body["exp"] == body["iat"] + 60
    assert "=" not in token and len(base64.urlsafe_b64decode(signature + "=")) == 32


def test_an_expired_token_is_refused_saying_when() -> None:
    clock = Clock()
    signer = TokenSigner(SECRET, clock=clock)
    token = signer.issue("p", "u", ["member"], ttl_seconds=10)
    clock.now += 9.9
    signer.verify(token)
    clock.now += 0.1
    with pytest.raises(errors.Unauthenticated, match=r"token expired at 2027-01-15T08:00:10Z"):
        signer.verify(token)


def test_a_token_signed_with_another_secret_is_forged() -> None:
    token = TokenSigner(b"another secret, also 32 bytes!!!", clock=Clock()).issue("p", "u", ["admin"])
    with pytest.raises(errors.Unauthenticated, match="signature does not match"):
        TokenSigner(SECRET, clock=Clock()).verify(token)


def test_altered_claims_break_the_signature() -> None:
    signer = TokenSigner(SECRET, clock=Clock())
    payload, signature = signer.issue("p", "u", ["member"]).split(".")
    body = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    body["roles"] = ["admin"]
    altered = b64(json.dumps(body, separators=(",", ":"), sort_keys=True).encode())
    with pytest.raises(errors.Unauthenticated, match="signature does not match"):
        signer.verify(f"{altered}.{signature}")


@pytest.mark.parametrize("token, message", [
    ("", "empty"),
    ("nodot", "two base64url parts"),
    ("a.b.c", "two base64url parts"),
    (".abc", "two base64url parts"),
    ("abc.de!f", "signature is not base64url"),
    ("abc.def", "signature is not canonical base64url"),
    ("abc.defg", "signature does not match"),
    ("abcd.a", "signature is not base64url"),
    ("x" * 5000, "longer than"),
])
def test_malformed_tokens_are_refused_saying_why(token: str, message: str) -> None:
    with pytest.raises(errors.Unauthenticated, match=message):
        TokenSigner(SECRET).verify(token)


def _signed(body: object) -> str:
    payload = b64(json.dumps(body).encode())
    import hashlib
    import hmac
    return f"{payload}.{b64(hmac.new(SECRET, payload.encode(), hashlib.sha256).digest())}"


@pytest.mark.parametrize("body, message", [
    ([1, 2], "not a JSON object"),
    ({"user_id": "u", "roles": ["member"], "iat": 1, "exp": 2, "jti": "j"}, "'project_id'"),
    ({"project_id": "p", "user_id": "u", "roles": [], "iat": 1, "exp": 2, "jti": "j"}, "'roles'"),
    ({"project_id": "p", "user_id": "u", "roles": ["root"], "iat": 1, "exp": 2, "jti": "j"},
     "unknown role 'root'"),
    ({"project_id": "p", "user_id": "u", "roles": ["member"], "iat": "1", "exp": 2, "jti": "j"},
     "'iat' must be an integer"),
    ({"project_id": "p", "user_id": "u", "roles": ["member"], "iat": 5, "exp": 5, "jti": "j"},
     "'exp' is not after 'iat'"),
])
def test_genuine_tokens_with_bad_claims_are_malformed(body: object, message: str) -> None:
    with pytest.raises(errors.Unauthenticated, match=message):
        TokenSigner(SECRET, clock=Clock(0)).verify(_signed(body))


def test_a_signature_has_one_spelling() -> None:
    signer = TokenSigner(SECRET, clock=Clock())
    payload, signature = signer.issue("p", "u", ["member"]).split(".")
    # 32 bytes are 43 base64 characters: the last one has 2 bits to spare.
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
    twin = signature[:-1] + alphabet[alphabet.index(signature[-1]) ^ 1]
    with pytest.raises(errors.Unauthenticated, match="canonical"):
        signer.verify(f"{payload}.{twin}")


@pytest.mark.parametrize("args, field", [
    (("", "u", ["member"], 60), "project_id"),
    (("p" * 256, "u", ["member"], 60), "project_id"),
    (("p", "", ["member"], 60), "user_id"),
    (("p", "u\n", ["member"], 60), "user_id"),
    (("p", "u", [], 60), "roles"),
    (("p", "u", ["root"], 60), "roles"),
    (("p", "u", "member", 60), "roles"),
    (("p", "u", ["member"], 0), "ttl_seconds"),
    (("p", "u", ["member"], 30 * 24 * 3600 + 1), "ttl_seconds"),
    (("p", "u", ["member"], True), "ttl_seconds"),
])
def test_issuing_checks_its_input_naming_the_field(args: tuple[Any, ...], field: str) -> None:
    with pytest.raises(errors.Invalid) as info:
        TokenSigner(SECRET).issue(*args)
    assert info.value.field == field


def test_a_short_secret_is_refused() -> None:
    with pytest.raises(ValueError, match="at least 16 bytes"):
        TokenSigner(b"short")


def test_a_refreshing_token_renews_before_expiry() -> None:
    clock = Clock()
    signer = TokenSigner(SECRET, clock=clock)
    source = RefreshingToken(signer, "service", "conductor", [SERVICE], ttl_seconds=100, clock=clock)
    first = source()
    clock.now += 49
    assert source() == first
    clock.now += 1
    second = source()
    assert second != first
    clock.now += 60  # the first would have expired by now; the second has not
    assert signer.verify(second).user_id == "conductor"


# ---------------------------------------------------------------------------
# Policy table

def _generated_methods() -> dict[str, str]:
    """Every RPC of every service in the generated stubs: full method -> service."""
    methods: dict[str, str] = {}
    for module_info in pkgutil.walk_packages(novalite.rpc.__path__, "novalite.rpc."):
        if not module_info.name.endswith("_pb2"):
            continue
        module = importlib.import_module(module_info.name)
        for service in module.DESCRIPTOR.services_by_name.values():
            for method in service.methods:
                methods[f"/{service.full_name}/{method.name}"] = service.full_name
    return methods


def test_every_rpc_in_the_stubs_has_a_policy_entry() -> None:
    methods = _generated_methods()
    assert len(methods) > 40
    missing = sorted(set(methods) - set(policy.POLICY))
    assert not missing, f"add these to novalite/auth/policy.py: {missing}"
    stale = sorted(set(policy.POLICY) - set(methods))
    assert not stale, f"the policy table names methods that do not exist: {stale}"


def test_the_policy_follows_the_roles_of_the_design() -> None:
    methods = _generated_methods()
    for method, service in methods.items():
        roles = policy.allowed_roles(method)
        assert roles, method
        if service.startswith("novalite.internal."):
            assert roles == {SERVICE, ADMIN}, method
        else:
            assert SERVICE not in roles, method
            assert ADMIN in roles, method
    admin_only = {m.rsplit("/", 1)[1] for m in methods if policy.allowed_roles(m) == {ADMIN}}
    assert admin_only == {
        "CreateFlavor", "DeleteFlavor", "SetFlavorExtraSpecs", "UnsetFlavorExtraSpecs",
        "ListHosts", "EnableHost", "DisableHost", "SetQuota", "CreateToken",
        "CreateImage", "DeleteImage", "AddFlavorAccess", "RemoveFlavorAccess", "ListFlavorAccess",
        "CreateAggregate", "GetAggregate", "ListAggregates", "UpdateAggregate", "DeleteAggregate",
        "AddAggregateHost", "RemoveAggregateHost", "SetAggregateMetadata", "AddHostTrait",
        "RemoveHostTrait",
        # the moves an operator makes (Nova's admin-only policies), and their record
        "MigrateServer", "LiveMigrateServer", "EvacuateServer", "ShelveOffloadServer",
        "ListMigrations",
    }
    members = {m for m in methods if MEMBER in policy.allowed_roles(m)}
    operators = {f"/novalite.compute.v1.Servers/{name}" for name in admin_only}
    assert {m for m in methods if "/novalite.compute.v1.Servers/" in m} - operators <= members
    assert "/novalite.compute.v1.Quotas/GetQuota" in members


def _claims(*roles: str) -> Claims:
    from datetime import datetime, timezone
    now = datetime.now(timezone.utc)
    return Claims("p", "u", frozenset(roles), now, now, "jti")


def test_a_method_missing_from_the_table_is_denied_to_everyone() -> None:
    with pytest.raises(errors.Forbidden, match="not in the policy table"):
        policy.authorize("/novalite.compute.v1.Servers/Launch", _claims(ADMIN, MEMBER, SERVICE))
    assert not policy.is_open("/novalite.compute.v1.Servers/Launch")
    assert policy.is_open("/grpc.health.v1.Health/Check")


# ---------------------------------------------------------------------------
# Over the wire

class Flavors(flavors_pb2_grpc.FlavorsServicer):
    """Shows the servicer sees the caller: the flavor it returns is named after them."""

    async def ListFlavors(self, request: Any, context: Any) -> flavors_pb2.ListFlavorsResponse:
        claims = current_claims()
        return flavors_pb2.ListFlavorsResponse(flavors=[flavors_pb2.Flavor(
            id=claims.project_id, name=claims.user_id, extra_specs={"roles": ",".join(sorted(claims.roles))})])

    async def CreateFlavor(self, request: Any, context: Any) -> flavors_pb2.Flavor:
        return flavors_pb2.Flavor(name=request.name)


class Scheduler(scheduler_pb2_grpc.SchedulerServicer):
    async def ReleaseAllocation(self, request: Any, context: Any) -> scheduler_pb2.ReleaseAllocationResponse:
        return scheduler_pb2.ReleaseAllocationResponse()


def _settings(tmp_path: Path) -> Settings:
    return load_settings(environ={}, overrides={
        "data_dir": str(tmp_path), "secret": SECRET, "metrics_ports": {"api": -1}})


def serve(tmp_path: Path, scenario: Callable[[RunningServer, TokenSigner], Awaitable[None]],
          clock: Clock | None = None) -> None:
    async def main() -> None:
        settings = _settings(tmp_path)
        signer = TokenSigner(settings.secret, clock=clock or Clock(__import__("time").time()))
        running = await start_server("api", [
            (flavors_pb2_grpc.add_FlavorsServicer_to_server, Flavors()),
            (scheduler_pb2_grpc.add_SchedulerServicer_to_server, Scheduler()),
        ], "127.0.0.1:0", settings, signer=signer)
        try:
            await scenario(running, signer)
        finally:
            await running.stop(1.0)
    asyncio.run(main())


async def _code_of(call: Awaitable[Any]) -> tuple[grpc.StatusCode, str]:
    try:
        await call
    except grpc.aio.AioRpcError as e:
        return e.code(), e.details() or ""
    return grpc.StatusCode.OK, ""


def test_calls_without_a_good_token_are_unauthenticated(tmp_path: Path) -> None:
    async def scenario(running: RunningServer, signer: TokenSigner) -> None:
        expired = TokenSigner(SECRET, clock=Clock(1_000_000_000)).issue("p", "u", [ADMIN], 60)
        forged = TokenSigner(b"not the cloud's secret, 32 bytes", clock=Clock(10**10 - 10**6)).issue(
            "p", "u", [ADMIN])
        good = signer.issue("p", "u", [ADMIN])
        cases: list[tuple[str | None, str]] = [
            (None, "missing bearer token"),
            (expired, "token expired at 2001-09-09T01:47:40Z"),
            (forged, "signature does not match"),
            ("not-a-token", "malformed token"),
            (good[:-3] + "A.B", "malformed token"),
        ]
        for token, message in cases:
            async with channel(running.address, token) as ch:
                code, details = await _code_of(
                    flavors_pb2_grpc.FlavorsStub(ch).ListFlavors(flavors_pb2.ListFlavorsRequest()))
            assert code is grpc.StatusCode.UNAUTHENTICATED, (token, code)
            assert message in details
        async with grpc.aio.insecure_channel(running.address) as ch:
            code, details = await _code_of(flavors_pb2_grpc.FlavorsStub(ch).ListFlavors(
                flavors_pb2.ListFlavorsRequest(), metadata=(("authorization", f"Basic {good}"),)))
        assert code is grpc.StatusCode.UNAUTHENTICATED and "expected 'Bearer <token>'" in details
    serve(tmp_path, scenario)


def test_roles_decide_who_may_call_what(tmp_path: Path) -> None:
    async def scenario(running: RunningServer, signer: TokenSigner) -> None:
        member = signer.issue("proj-a", "alice", [MEMBER])
        admin = signer.issue("admin-proj", "root", [ADMIN])
        service = signer.issue("service", "conductor", [SERVICE])
        create = flavors_pb2.CreateFlavorRequest(name="m1.tiny", vcpus=1, memory_mb=512)
        async with channel(running.address, member) as ch:
            code, details = await _code_of(flavors_pb2_grpc.FlavorsStub(ch).CreateFlavor(create))
            assert code is grpc.StatusCode.PERMISSION_DENIED
            assert details == ("/novalite.compute.v1.Flavors/CreateFlavor needs role admin; "
                               "the token has member")
            reply = await flavors_pb2_grpc.FlavorsStub(ch).ListFlavors(flavors_pb2.ListFlavorsRequest())
            assert (reply.flavors[0].id, reply.flavors[0].name) == ("proj-a", "alice")
            code, _ = await _code_of(scheduler_pb2_grpc.SchedulerStub(ch).ReleaseAllocation(
                scheduler_pb2.ReleaseAllocationRequest()))
            assert code is grpc.StatusCode.PERMISSION_DENIED, "members may not call internal services"
        async with channel(running.address, service) as ch:
            await scheduler_pb2_grpc.SchedulerStub(ch).ReleaseAllocation(
                scheduler_pb2.ReleaseAllocationRequest())
            code, _ = await _code_of(flavors_pb2_grpc.FlavorsStub(ch).ListFlavors(
                flavors_pb2.ListFlavorsRequest()))
            assert code is grpc.StatusCode.PERMISSION_DENIED, "services do not use the public API"
        async with channel(running.address, admin) as ch:
            assert (await flavors_pb2_grpc.FlavorsStub(ch).CreateFlavor(create)).name == "m1.tiny"
            reply = await flavors_pb2_grpc.FlavorsStub(ch).ListFlavors(flavors_pb2.ListFlavorsRequest())
            assert reply.flavors[0].extra_specs["roles"] == "admin"
    serve(tmp_path, scenario)


def test_health_needs_no_token_but_the_api_does(tmp_path: Path) -> None:
    async def scenario(running: RunningServer, signer: TokenSigner) -> None:
        async with channel(running.address, None) as ch:
            reply = await health_pb2_grpc.HealthStub(ch).Check(health_pb2.HealthCheckRequest())
            assert reply.status == health_pb2.HealthCheckResponse.SERVING
    serve(tmp_path, scenario)


def test_the_blocking_channel_carries_the_token(tmp_path: Path) -> None:
    async def scenario(running: RunningServer, signer: TokenSigner) -> None:
        def blocking() -> tuple[str, grpc.StatusCode]:
            with sync_channel(running.address, lambda: signer.issue("proj-s", "cli", [MEMBER])) as ch:
                reply = flavors_pb2_grpc.FlavorsStub(ch).ListFlavors(flavors_pb2.ListFlavorsRequest())
            with sync_channel(running.address, None) as ch:
                try:
                    flavors_pb2_grpc.FlavorsStub(ch).ListFlavors(flavors_pb2.ListFlavorsRequest())
                except grpc.RpcError as e:
                    return reply.flavors[0].id, e.code()
            raise AssertionError("a call without a token went through")
        assert await asyncio.to_thread(blocking) == ("proj-s", grpc.StatusCode.UNAUTHENTICATED)
    serve(tmp_path, scenario)


def test_a_served_method_missing_from_the_table_is_denied(tmp_path: Path) -> None:
    """Default deny: a servicer added without a policy entry answers nobody."""
    async def ping(request: bytes, context: Any) -> bytes:
        return b"pong"

    echo = grpc.method_handlers_generic_handler("novalite.test.v1.Echo", {
        "Ping": grpc.unary_unary_rpc_method_handler(ping)})

    async def main() -> None:
        settings = _settings(tmp_path)
        signer = TokenSigner(settings.secret)
        running = await start_server(
            "api", [(lambda servicer, server: server.add_generic_rpc_handlers((servicer,)), echo)],
            "127.0.0.1:0", settings, signer=signer)
        try:
            async with channel(running.address, signer.issue("p", "u", [ADMIN, MEMBER, SERVICE])) as ch:
                code, details = await _code_of(ch.unary_unary("/novalite.test.v1.Echo/Ping")(b"ping"))
        finally:
            await running.stop(1.0)
        assert code is grpc.StatusCode.PERMISSION_DENIED
        assert "not in the policy table" in details
        assert "novalite.test.v1.Echo" in running.services
    asyncio.run(main())
