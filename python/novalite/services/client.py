"""Channels to novalite services whose every call carries a bearer token.

    async with channel(settings.endpoint("scheduler"), service_token) as ch:
        reply = await scheduler_pb2_grpc.SchedulerStub(ch).SelectDestinations(request)

``token`` is a token, or a callable returning one (``RefreshingToken``, for a
long-running service whose tokens expire). Calls made while serving an RPC also
pass its request id on, so one user request reads as one thread across the logs of
every service. A failed call raises grpc.aio.AioRpcError (grpc.RpcError from
``sync_channel``) as usual; ``novalite.services.status.domain_call`` (or
``domain_error``) turns it back into the domain error it stands for.
"""

from __future__ import annotations

from typing import Any, Callable, Sequence

import grpc
import grpc.aio

from novalite.services.context import REQUEST_ID_METADATA, current_request_id

TokenSource = str | Callable[[], str]
Metadata = tuple[tuple[str, str | bytes], ...]


def _metadata(token: TokenSource, existing: Any) -> Metadata:
    value = token() if callable(token) else token
    pairs: list[tuple[str, str | bytes]] = [
        (key, item) for key, item in (existing or ()) if key != "authorization"]
    pairs.append(("authorization", f"Bearer {value}"))
    request_id = current_request_id()
    if request_id is not None and not any(key == REQUEST_ID_METADATA for key, _ in pairs):
        pairs.append((REQUEST_ID_METADATA, request_id))
    return tuple(pairs)


def _aio_details(details: grpc.aio.ClientCallDetails, token: TokenSource) -> grpc.aio.ClientCallDetails:
    return grpc.aio.ClientCallDetails(
        details.method, details.timeout, grpc.aio.Metadata(*_metadata(token, details.metadata)),
        details.credentials, details.wait_for_ready)


class _AioBearer:
    def __init__(self, token: TokenSource) -> None:
        self._token = token


# grpc.aio files each interceptor under the first call kind it implements, so each
# kind needs its own object.
class _AioUnaryUnary(_AioBearer, grpc.aio.UnaryUnaryClientInterceptor):
    async def intercept_unary_unary(self, continuation: Any, client_call_details: Any,
                                    request: Any) -> Any:
        return await continuation(_aio_details(client_call_details, self._token), request)


class _AioUnaryStream(_AioBearer, grpc.aio.UnaryStreamClientInterceptor):
    async def intercept_unary_stream(self, continuation: Any, client_call_details: Any,
                                     request: Any) -> Any:
        return await continuation(_aio_details(client_call_details, self._token), request)


class _AioStreamUnary(_AioBearer, grpc.aio.StreamUnaryClientInterceptor):
    async def intercept_stream_unary(self, continuation: Any, client_call_details: Any,
                                     request_iterator: Any) -> Any:
        return await continuation(_aio_details(client_call_details, self._token), request_iterator)


class _AioStreamStream(_AioBearer, grpc.aio.StreamStreamClientInterceptor):
    async def intercept_stream_stream(self, continuation: Any, client_call_details: Any,
                                      request_iterator: Any) -> Any:
        return await continuation(_aio_details(client_call_details, self._token), request_iterator)


def channel(target: str, token: TokenSource | None,
            options: Sequence[tuple[str, Any]] = ()) -> grpc.aio.Channel:
    """An asyncio channel to ``target`` (host:port); with ``token`` None, calls go
    without one (only health and reflection answer those)."""
    interceptors: list[grpc.aio.ClientInterceptor] | None = None
    if token is not None:
        interceptors = [_AioUnaryUnary(token), _AioUnaryStream(token),
                        _AioStreamUnary(token), _AioStreamStream(token)]
    return grpc.aio.insecure_channel(target, options=list(options), interceptors=interceptors)


class _SyncDetails(grpc.ClientCallDetails):
    def __init__(self, details: grpc.ClientCallDetails, metadata: Metadata) -> None:
        self.method = details.method
        self.timeout = details.timeout
        self.metadata = metadata
        self.credentials = details.credentials
        self.wait_for_ready = getattr(details, "wait_for_ready", None)
        self.compression = getattr(details, "compression", None)


class _SyncBearer(grpc.UnaryUnaryClientInterceptor, grpc.UnaryStreamClientInterceptor,
                  grpc.StreamUnaryClientInterceptor, grpc.StreamStreamClientInterceptor):
    def __init__(self, token: TokenSource) -> None:
        self._token = token

    def _details(self, details: grpc.ClientCallDetails) -> grpc.ClientCallDetails:
        return _SyncDetails(details, _metadata(self._token, details.metadata))

    def intercept_unary_unary(self, continuation: Any, client_call_details: Any, request: Any) -> Any:
        return continuation(self._details(client_call_details), request)

    def intercept_unary_stream(self, continuation: Any, client_call_details: Any, request: Any) -> Any:
        return continuation(self._details(client_call_details), request)

    def intercept_stream_unary(self, continuation: Any, client_call_details: Any,
                               request_iterator: Any) -> Any:
        return continuation(self._details(client_call_details), request_iterator)

    def intercept_stream_stream(self, continuation: Any, client_call_details: Any,
                                request_iterator: Any) -> Any:
        return continuation(self._details(client_call_details), request_iterator)


def sync_channel(target: str, token: TokenSource | None,
                 options: Sequence[tuple[str, Any]] = ()) -> grpc.Channel:
    """A blocking channel for the command line; otherwise as ``channel``."""
    base = grpc.insecure_channel(target, options=list(options))
    if token is None:
        return base
    return grpc.intercept_channel(base, _SyncBearer(token))
