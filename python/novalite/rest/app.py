"""The REST application: its routes, the edge every request goes through, and the
server the API service runs it on.

A route is a handler with what the edge needs to know of it (``Route``): which API
it belongs to (identity, compute, image: its error bodies), and the policy entry
(auth/policy.py) that says who may call it, an RPC's name where an RPC does the
same work. The edge, for every request:

1. gives it a request id (``X-OpenStack-Request-ID``, Nova's
   ``X-Compute-Request-Id`` too), which the managers log and record under;
2. checks ``X-Auth-Token`` (the signer: genuine, unexpired, unrevoked) and the
   policy entry: 401 (Keystone's body, as keystonemiddleware answers) or 403;
3. reads the compute microversion (406 outside what is served) and says it back;
4. runs the handler, and maps a domain error to its status and body in the API's
   own shape (faults.py); an unexpected one is a 500, logged with its traceback;
5. logs one line: method, path, status, duration, request id, caller.

Handlers are thin: read the request (schema.py), call a manager (blocking calls in
a worker thread, as the gRPC servicers' are), render the records (convert.py).
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
import time
from dataclasses import dataclass
from typing import Any, Awaitable, Callable, Mapping, TypeVar

from aiohttp import web

from novalite import errors
from novalite.api.manager import ApiManager
from novalite.auth import policy
from novalite.auth.tokens import Claims, TokenSigner
from novalite.identity.manager import IdentityManager
from novalite.rest import faults, microversion
from novalite.rest.schema import Body, Query
from novalite.services.context import call_context, new_request_id

LOG = logging.getLogger("novalite.rest")

# The largest request body accepted (the gRPC API's limit; a create with the most
# metadata and 64 KiB of user data is far smaller).
MAX_REQUEST_BYTES = 1 << 20
# Where each API lives under the one port (devstack's paths).
PREFIXES = {"identity": "/identity", "compute": "/compute", "image": "/image"}
_REQUEST_ID_RE = re.compile(r"^req-[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")

T = TypeVar("T")
# A route's policy when its handler authorizes the call itself, by what the request
# asks (a server action: the policy of the lifecycle row's RPC); a token is needed.
DEFERRED = "(decided by the handler)"


@dataclass
class Call:
    """One request as a handler sees it."""

    request: web.Request
    api: str
    claims: Claims | None
    version: microversion.Version
    # the base URL of this API ("http://host:port/compute/v2.1", ".../identity/v3",
    # ".../image"), for the links responses carry
    base: str
    root: str  # http://host:port
    managers: "Managers"

    @property
    def caller(self) -> Claims:
        if self.claims is None:
            raise errors.Unauthenticated("The request you have made requires authentication.")
        return self.claims

    @property
    def query(self) -> Query:
        q = self.request.query
        multi = {k: q.getall(k) for k in q.keys()}
        return Query({k: v[-1] for k, v in multi.items()}, multi)

    def param(self, name: str) -> str:
        return self.request.match_info[name]

    async def body(self) -> Body:
        return Body(await self.json())

    async def json(self) -> Any:
        if not self.request.can_read_body:
            raise errors.Invalid("body", "a JSON body is required")
        ctype = self.request.content_type
        if ctype not in ("application/json", "application/octet-stream", "") \
                and not ctype.endswith("+json"):
            raise faults.HttpError(415, f"the body must be application/json, not {ctype}")
        try:
            return json.loads(await self.request.read())
        except (ValueError, UnicodeDecodeError) as e:
            raise errors.Invalid("body", f"malformed request body: {e}") from None

    def since(self, version: str) -> bool:
        """Whether the request's microversion is ``version`` or later."""
        return self.version.at_least(version)


@dataclass
class Managers:
    api: ApiManager
    identity: IdentityManager
    signer: TokenSigner
    public_url: str
    region: str


Handler = Callable[[Call], Awaitable[web.StreamResponse]]


@dataclass(frozen=True)
class Route:
    method: str
    path: str  # under the API's prefix
    handler: Handler
    # the policy entry (auth/policy.py); None: open (version documents, authentication)
    policy: str | None


class Routes:
    """A module's routes, declared with ``@routes.get(path, policy)``..."""

    def __init__(self, api: str) -> None:
        self.api = api
        self.all: list[Route] = []

    def add(self, method: str, path: str, policy_entry: str | None) -> Callable[[Handler], Handler]:
        def register(handler: Handler) -> Handler:
            self.all.append(Route(method, path, handler, policy_entry))
            return handler
        return register

    def get(self, path: str, policy_entry: str | None) -> Callable[[Handler], Handler]:
        return self.add("GET", path, policy_entry)

    def post(self, path: str, policy_entry: str | None) -> Callable[[Handler], Handler]:
        return self.add("POST", path, policy_entry)

    def put(self, path: str, policy_entry: str | None) -> Callable[[Handler], Handler]:
        return self.add("PUT", path, policy_entry)

    def patch(self, path: str, policy_entry: str | None) -> Callable[[Handler], Handler]:
        return self.add("PATCH", path, policy_entry)

    def delete(self, path: str, policy_entry: str | None) -> Callable[[Handler], Handler]:
        return self.add("DELETE", path, policy_entry)

    def head(self, path: str, policy_entry: str | None) -> Callable[[Handler], Handler]:
        return self.add("HEAD", path, policy_entry)


async def blocking(fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """A blocking manager call, in a worker thread (the call's context goes along)."""
    return await asyncio.to_thread(fn, *args, **kwargs)


def reply(body: Any = None, status: int = 200, headers: Mapping[str, str] | None = None) -> web.Response:
    if body is None:
        return web.Response(status=status, headers=headers)
    return web.json_response(body, status=status, headers=headers, dumps=_dumps)


def _dumps(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"))


# ---- the edge --------------------------------------------------------------------------

def _api_of(path: str) -> str:
    for api, prefix in PREFIXES.items():
        if path == prefix or path.startswith(prefix + "/"):
            return api
    return "compute"


def _root(request: web.Request, managers: Managers) -> str:
    """The base URL clients reach us at: public_url, else what this request used."""
    if managers.public_url:
        return managers.public_url
    return f"{request.scheme}://{request.host}"


def _request_id(request: web.Request) -> str:
    given = request.headers.get("X-OpenStack-Request-ID", "")
    return given if _REQUEST_ID_RE.match(given) else new_request_id()


def _error_response(api: str, status: int, message: str, request_id: str,
                    managers: Managers, request: web.Request) -> web.Response:
    headers = {}
    if status == 401:
        # keystonemiddleware's answer in front of every OpenStack API
        body = faults.keystone(401, message)
        headers["WWW-Authenticate"] = f'Keystone uri="{_root(request, managers)}/identity"'
    else:
        body = faults.BODIES[api](status, message)
    return reply(body, status, headers)


def _make_handler(route: Route, api: str,
                  managers: Managers) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
    async def handle(request: web.Request) -> web.StreamResponse:
        started = time.perf_counter()
        request_id = _request_id(request)
        claims: Claims | None = None
        version = microversion.MIN_VERSION
        response: web.StreamResponse
        try:
            token = request.headers.get("X-Auth-Token", "").strip()
            if route.policy is not None:
                if not token:
                    raise errors.Unauthenticated(
                        "The request you have made requires authentication.")
                claims = managers.signer.verify(token)
            if route.policy not in (None, DEFERRED):
                assert claims is not None and route.policy is not None
                policy.authorize(route.policy, claims)
            if api == "compute":
                version = microversion.requested(request.headers)
            root = _root(request, managers)
            base = root + PREFIXES[api] + {"compute": "/v2.1", "identity": "/v3",
                                            "image": ""}[api]
            call = Call(request, api, claims, version, base, root, managers)
            with call_context(claims, method=route.policy or route.path, request_id=request_id):
                response = await route.handler(call)
        except Exception as exc:  # noqa: BLE001 - every error is answered in the API's shape
            status = faults.status_of(exc)
            if isinstance(exc, web.HTTPException) and exc.status >= 400:
                status, message = exc.status, _http_message(request, exc.status, exc.reason)
            elif status is None:
                LOG.error("unexpected error in %s %s", request.method, request.path, exc_info=exc,
                          extra={"fields": {"request_id": request_id}})
                status, message = 500, f"Unexpected error (request {request_id}); see the API's log"
            else:
                message = faults.message_of(exc)
            response = _error_response(api, status, message, request_id, managers, request)
        _finish(request, response, api, version, request_id)
        _log(request, response.status, started, request_id, claims)
        return response
    return handle


def _finish(request: web.Request, response: web.StreamResponse, api: str,
            version: microversion.Version, request_id: str) -> None:
    response.headers["X-OpenStack-Request-ID"] = request_id
    if api == "compute":
        response.headers["X-Compute-Request-Id"] = request_id
        for key, value in microversion.response_headers(version).items():
            response.headers[key] = value


def _log(request: web.Request, status: int, started: float, request_id: str,
         claims: Claims | None) -> None:
    level = logging.INFO if status < 500 else logging.WARNING
    if not LOG.isEnabledFor(level):
        return
    LOG.log(level, "%s %s %d", request.method, request.path, status, extra={"fields": {
        "method": request.method, "path": request.path, "status": status,
        "duration_ms": round((time.perf_counter() - started) * 1000.0, 3),
        "request_id": request_id, "project": claims.project_id if claims else None,
        "user": claims.user_id if claims else None, "peer": request.remote}})


def _http_message(request: web.Request, status: int, reason: str) -> str:
    return {404: f"no such resource: {request.path}",
            405: f"{request.method} is not allowed on {request.path}",
            413: f"the request body is larger than {MAX_REQUEST_BYTES} bytes"}.get(status, reason)


def _fallback(managers: Managers) -> Callable[..., Awaitable[web.StreamResponse]]:
    """No route, or a method the route does not take: the API's error body."""
    @web.middleware
    async def middleware(request: web.Request, handler: Callable[[web.Request], Awaitable[
            web.StreamResponse]]) -> web.StreamResponse:
        try:
            return await handler(request)
        except web.HTTPException as exc:
            if exc.status < 400:
                raise
            started = time.perf_counter()
            request_id = _request_id(request)
            api = _api_of(request.path)
            message = _http_message(request, exc.status, exc.reason)
            response = _error_response(api, exc.status, message, request_id, managers, request)
            _finish(request, response, api, microversion.MIN_VERSION, request_id)
            _log(request, exc.status, started, request_id, None)
            return response
    return middleware


def build_app(managers: Managers) -> web.Application:
    """The application serving every route of identity, compute and image."""
    from novalite.rest import compute, identity, image

    app = web.Application(client_max_size=MAX_REQUEST_BYTES, middlewares=[_fallback(managers)])
    for module in (identity, compute, image):
        api = module.routes.api
        for route in module.routes.all:
            path = PREFIXES[api] + route.path
            app.router.add_route(route.method, path, _make_handler(route, api, managers))
    app.router.add_route("GET", "/", _make_handler(Route("GET", "/", _root_document, None),
                                                    "identity", managers))
    return app


async def _root_document(call: Call) -> web.StreamResponse:
    """What is served where, for a person who opens the base URL."""
    return reply({"apis": {api: call.root + prefix for api, prefix in PREFIXES.items()}})


# ---- the server ------------------------------------------------------------------------

class RestServer:
    """The application on a TCP port: ``await start(host, port)``, ``port``,
    ``await stop()`` (requests in flight get ``grace`` seconds)."""

    def __init__(self, app: web.Application, *, grace: float = 10.0) -> None:
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=grace)
        self.port = 0
        self.host = ""
        self._started = False

    async def start(self, host: str, port: int) -> None:
        await self._runner.setup()
        site = web.TCPSite(self._runner, host, port, reuse_address=True)
        await site.start()
        self._started = True
        server = site._server
        sockets = getattr(server, "sockets", None) or ()
        self.host, self.port = host, int(sockets[0].getsockname()[1]) if sockets else port
        LOG.info("REST API serving on %s:%d", host, self.port)

    async def stop(self) -> None:
        if self._started:
            self._started = False
            await self._runner.cleanup()


__all__ = ["DEFERRED", "Call", "Managers", "RestServer", "Route", "Routes", "blocking", "build_app", "reply"]
