"""Server interceptors: what every RPC of every service goes through.

``start_server`` installs them outermost first:

1. LoggingInterceptor: gives the call its request id (the caller's ``x-request-id``
   or a new one, returned in the trailing metadata) and logs one structured line
   per RPC: method, code, duration, request id, project.
2. MetricsInterceptor: Prometheus counters and latency histograms per method and code.
3. StreamTracker: knows the streaming calls in flight, so that a graceful stop can
   end them (a WatchServers stream never ends by itself).
4. ErrorInterceptor: turns exceptions into status codes (novalite.services.status);
   servicers never call ``context.abort``.
5. AuthInterceptor: verifies the bearer token, checks the policy table, and makes
   the caller's Claims the current call's (``novalite.services.context``).

Each interceptor wraps a method's behaviour in an async context manager (its
``scope``), for unary and streaming responses alike; the wrapped handlers are made
once per method and reused.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import time
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import (
    TYPE_CHECKING, Any, AsyncIterator, Awaitable, Callable, Iterable, Iterator, Sequence, TypeAlias,
)

import grpc
import grpc.aio

from novalite import errors
from novalite.auth import policy
from novalite.auth.tokens import SERVICE, TokenSigner
from novalite.services.context import (
    REQUEST_ID_METADATA, _enter_call, _leave_call, current_call,
)
from novalite.services.metrics import RpcMetrics
from novalite.services.status import status_for

LOG = logging.getLogger("novalite.rpc")

if TYPE_CHECKING:  # grpc's classes are generic only in their type stubs
    Context: TypeAlias = grpc.aio.ServicerContext[Any, Any]
    Handler: TypeAlias = grpc.RpcMethodHandler[Any, Any]
else:
    Context = grpc.aio.ServicerContext
    Handler = grpc.RpcMethodHandler
Scope = Callable[[str, str, Context], AbstractAsyncContextManager[None]]

UNARY, CLIENT_STREAM, SERVER_STREAM, BIDI_STREAM = (
    "UNARY", "CLIENT_STREAM", "SERVER_STREAM", "BIDI_STREAM")
# Probes arrive every few seconds: log them only at DEBUG.
_QUIET_METHODS = policy.OPEN_METHODS
_MAX_REQUEST_ID = 128
_DONE = object()


class ScopedInterceptor(grpc.aio.ServerInterceptor):
    """Runs every call of every method inside ``self.scope(method, rpc_type, context)``."""

    def __init__(self) -> None:
        self._wrapped: dict[str, tuple[Handler, Handler]] = {}

    def scope(self, method: str, rpc_type: str, context: Context) -> AbstractAsyncContextManager[None]:
        raise NotImplementedError

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[Handler | None]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> Handler | None:
        handler = await continuation(handler_call_details)
        if handler is None:
            return handler  # unknown method: grpc answers UNIMPLEMENTED
        method = handler_call_details.method
        cached = self._wrapped.get(method)
        if cached is not None and cached[0] is handler:
            return cached[1]
        wrapped = _wrap_handler(handler, method, self.scope)
        self._wrapped[method] = (handler, wrapped)
        return wrapped


def _wrap_handler(handler: Handler, method: str, scope: Scope) -> Handler:
    deserializer = handler.request_deserializer
    serializer = handler.response_serializer
    if handler.unary_unary is not None:
        return grpc.unary_unary_rpc_method_handler(
            _wrap_unary_response(handler.unary_unary, method, UNARY, scope),
            deserializer, serializer)
    if handler.unary_stream is not None:
        return grpc.unary_stream_rpc_method_handler(
            _wrap_stream_response(handler.unary_stream, method, SERVER_STREAM, scope),
            deserializer, serializer)
    if handler.stream_unary is not None:
        return grpc.stream_unary_rpc_method_handler(
            _wrap_unary_response(handler.stream_unary, method, CLIENT_STREAM, scope),
            deserializer, serializer)
    if handler.stream_stream is not None:
        return grpc.stream_stream_rpc_method_handler(
            _wrap_stream_response(handler.stream_stream, method, BIDI_STREAM, scope),
            deserializer, serializer)
    raise TypeError(f"{method}: a method handler without a behaviour")


def _wrap_unary_response(behavior: Callable[..., Any], method: str, rpc_type: str,
                         scope: Scope) -> Callable[..., Any]:
    if inspect.iscoroutinefunction(behavior):
        async def run(request: Any, context: Context) -> Any:
            async with scope(method, rpc_type, context):
                return await behavior(request, context)
    else:
        # A blocking servicer method must not stall the event loop.
        async def run(request: Any, context: Context) -> Any:
            async with scope(method, rpc_type, context):
                return await asyncio.to_thread(behavior, request, context)
    return run


def _wrap_stream_response(behavior: Callable[..., Any], method: str, rpc_type: str,
                          scope: Scope) -> Callable[..., Any]:
    if inspect.isasyncgenfunction(behavior):
        async def stream(request: Any, context: Context) -> AsyncIterator[Any]:
            async with scope(method, rpc_type, context):
                async for item in behavior(request, context):
                    yield item
        return stream
    if inspect.iscoroutinefunction(behavior):
        # Writes its messages with context.write and returns None, as health's Watch.
        async def run(request: Any, context: Context) -> Any:
            async with scope(method, rpc_type, context):
                return await behavior(request, context)
        return run

    async def blocking(request: Any, context: Context) -> AsyncIterator[Any]:
        async with scope(method, rpc_type, context):
            items: Iterator[Any] = iter(behavior(request, context))
            while (item := await asyncio.to_thread(next, items, _DONE)) is not _DONE:
                yield item
    return blocking


def _incoming_request_id(context: Context) -> str | None:
    for key, value in context.invocation_metadata() or ():
        if key == REQUEST_ID_METADATA and isinstance(value, str) \
                and 0 < len(value) <= _MAX_REQUEST_ID and value.isprintable():
            return value
    return None


def _code_name(code: grpc.StatusCode | int | None) -> str:
    if code is None:
        return "OK"
    if isinstance(code, grpc.StatusCode):
        return code.name
    for member in grpc.StatusCode:
        if member.value[0] == code:
            return member.name
    return "UNKNOWN"


@asynccontextmanager
async def _outcome(method: str, context: Context,
                   finished: Callable[[str, float], None]) -> AsyncIterator[None]:
    """Calls ``finished(code name, seconds)`` once the call inside has ended, however."""
    call, token = _enter_call(method, _incoming_request_id(context))
    start = time.perf_counter()
    code = "UNKNOWN"
    try:
        yield
        code = _code_name(context.code())
    except grpc.aio.AbortError:
        code = _code_name(context.code())
        raise
    except (asyncio.CancelledError, GeneratorExit):
        code = "CANCELLED"
        raise
    finally:
        finished(code, time.perf_counter() - start)
        _leave_call(token)


class LoggingInterceptor(ScopedInterceptor):
    """One structured log line per RPC; gives each call its request id."""

    def __init__(self, logger: logging.Logger = LOG) -> None:
        super().__init__()
        self._log = logger

    @asynccontextmanager
    async def scope(self, method: str, rpc_type: str, context: Context) -> AsyncIterator[None]:
        call, token = _enter_call(method, _incoming_request_id(context))
        context.set_trailing_metadata(((REQUEST_ID_METADATA, call.request_id),))
        # read now, while the call is alive: grpc_call_get_peer on a call the client
        # cancelled reads freed transport memory (grpc/grpc#29069), and a
        # WatchServers stream cancelled by its client crashed the server (SIGSEGV)
        peer = context.peer()

        def finished(code: str, seconds: float) -> None:
            claims = call.claims
            # probes, and the services' calls to each other that succeeded, only at
            # DEBUG: a create makes four internal calls, which would bury the
            # users' calls (and cost a tenth of a cheap call's CPU)
            quiet = method in _QUIET_METHODS or (
                code == "OK" and claims is not None and SERVICE in claims.roles)
            level = logging.DEBUG if quiet else logging.INFO
            if not self._log.isEnabledFor(level):
                return
            self._log.log(level, "rpc %s %s", method, code, extra={"fields": {
                "method": method,
                "code": code,
                "duration_ms": round(seconds * 1000.0, 3),
                "request_id": call.request_id,
                "project": claims.project_id if claims else None,
                "user": claims.user_id if claims else None,
                "peer": peer,
            }})

        try:
            async with _outcome(method, context, finished):
                yield
        finally:
            _leave_call(token)


class MetricsInterceptor(ScopedInterceptor):
    """Counts RPCs started and handled, and times them, per method and code."""

    def __init__(self, metrics: RpcMetrics) -> None:
        super().__init__()
        self._metrics = metrics

    @asynccontextmanager
    async def scope(self, method: str, rpc_type: str, context: Context) -> AsyncIterator[None]:
        self._metrics.observe_start(method, rpc_type)

        def finished(code: str, seconds: float) -> None:
            self._metrics.observe_end(method, rpc_type, code, seconds)

        async with _outcome(method, context, finished):
            yield


class StreamTracker(ScopedInterceptor):
    """Knows the streaming calls in flight, so that a stop can end them. A stream
    ended this way gets UNAVAILABLE ("reconnect"): cancelling its task alone would
    leave the call open until the server's grace ran out."""

    def __init__(self) -> None:
        super().__init__()
        self.tasks: set[asyncio.Task[Any]] = set()
        self._ending = False

    @asynccontextmanager
    async def scope(self, method: str, rpc_type: str, context: Context) -> AsyncIterator[None]:
        task = asyncio.current_task() if rpc_type in (SERVER_STREAM, BIDI_STREAM) else None
        if task is None:
            yield
            return
        self.tasks.add(task)
        try:
            yield
        except asyncio.CancelledError:
            if not self._ending:
                raise
            task.uncancel()
            call = current_call()
            trailing = ((REQUEST_ID_METADATA, call.request_id),) if call is not None else ()
            await context.abort(grpc.StatusCode.UNAVAILABLE,
                                "the server is shutting down; reconnect", trailing)
        finally:
            self.tasks.discard(task)

    def end_all(self) -> int:
        """End every streaming call in flight; the number ended."""
        self._ending = True
        for task in self.tasks:
            task.cancel()
        return len(self.tasks)


class ErrorInterceptor(ScopedInterceptor):
    """Domain errors -> status codes; anything unexpected -> INTERNAL, logged with
    its traceback under the call's request id."""

    def __init__(self, logger: logging.Logger = LOG) -> None:
        super().__init__()
        self._log = logger

    @asynccontextmanager
    async def scope(self, method: str, rpc_type: str, context: Context) -> AsyncIterator[None]:
        try:
            yield
        except grpc.aio.AbortError:
            raise
        except Exception as exc:
            call = current_call()
            request_id = call.request_id if call is not None else None
            mapped = status_for(exc, request_id)
            if mapped.unexpected:
                self._log.error("unexpected error in %s", method, exc_info=exc, extra={"fields": {
                    "method": method, "code": mapped.code.name, "request_id": request_id}})
            trailing: Sequence[tuple[str, str | bytes]] = mapped.trailing_metadata()
            if request_id is not None:
                trailing = ((REQUEST_ID_METADATA, request_id), *trailing)
            await context.abort(mapped.code, mapped.message, tuple(trailing))


class AuthInterceptor(ScopedInterceptor):
    """Every call but the open ones (health, reflection) needs a genuine, unexpired
    bearer token whose roles the policy table allows for the method."""

    def __init__(self, signer: TokenSigner) -> None:
        super().__init__()
        self._signer = signer

    @asynccontextmanager
    async def scope(self, method: str, rpc_type: str, context: Context) -> AsyncIterator[None]:
        if policy.is_open(method):
            yield
            return
        claims = self._signer.verify(bearer_token(context.invocation_metadata() or ()))
        call, token = _enter_call(method, _incoming_request_id(context))
        call.claims = claims  # before the policy check, so a denial is logged with its caller
        try:
            policy.authorize(method, claims)
        except BaseException:
            _leave_call(token)
            raise
        try:
            yield
        finally:
            _leave_call(token)


def bearer_token(metadata: Iterable[tuple[str, str | bytes]]) -> str:
    """The token of the ``authorization: Bearer <token>`` entry; errors.Unauthenticated
    if there is none, or it is not a bearer token."""
    values = [value for key, value in metadata if key == "authorization"]
    if not values:
        raise errors.Unauthenticated(
            "missing bearer token: send 'authorization: Bearer <token>' metadata")
    if len(values) > 1:
        raise errors.Unauthenticated("more than one authorization metadata entry")
    value = values[0]
    if not isinstance(value, str):
        raise errors.Unauthenticated("malformed authorization metadata: expected text")
    scheme, _, token = value.strip().partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise errors.Unauthenticated("malformed authorization metadata: expected 'Bearer <token>'")
    return token.strip()
