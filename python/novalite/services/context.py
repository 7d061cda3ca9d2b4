"""The current call: who is calling (their verified Claims) and the request id.

The auth interceptor fills this in for every RPC; servicers and managers read it
with ``current_claims()`` rather than threading the caller through every signature
(managers that take Claims explicitly may still do so). It lives in a ContextVar, so
it follows the call into ``asyncio.to_thread`` and tasks the call creates, and never
leaks into another call. No grpc here.
"""

from __future__ import annotations

import uuid
from contextlib import contextmanager
from contextvars import ContextVar, Token
from dataclasses import dataclass
from typing import Iterator

from novalite import errors
from novalite.auth.tokens import Claims

# The metadata key a request id travels under, between clients and services and
# from one service to the next, so that one user request reads as one thread in the
# logs of every service it touched.
REQUEST_ID_METADATA = "x-request-id"


@dataclass
class CallInfo:
    """One RPC (or one unit of background work) being served."""

    method: str
    request_id: str
    claims: Claims | None = None


_CALL: ContextVar[CallInfo | None] = ContextVar("novalite_call", default=None)


def new_request_id() -> str:
    """A request id in Nova's format (``req-<uuid>``)."""
    return f"req-{uuid.uuid4()}"


def current_call() -> CallInfo | None:
    return _CALL.get()


def current_claims() -> Claims:
    """The verified caller of the RPC being served; errors.Unauthenticated outside
    of an authenticated call (an open method, or no call at all)."""
    call = _CALL.get()
    if call is None or call.claims is None:
        raise errors.Unauthenticated("no authenticated caller in this context")
    return call.claims


def current_request_id() -> str | None:
    call = _CALL.get()
    return None if call is None else call.request_id


@contextmanager
def call_context(claims: Claims | None, *, method: str = "",
                 request_id: str | None = None) -> Iterator[CallInfo]:
    """Run a block as if serving a call by ``claims``: for tests of managers, and for
    background work that should log under its own request id."""
    call = CallInfo(method=method, request_id=request_id or new_request_id(), claims=claims)
    token = _CALL.set(call)
    try:
        yield call
    finally:
        _CALL.reset(token)


def _enter_call(method: str, request_id: str | None) -> tuple[CallInfo, Token[CallInfo | None] | None]:
    """Start serving a call (for the interceptors): the call's info and a token for
    _leave_call. The outermost interceptor creates it; the others find it."""
    existing = _CALL.get()
    if existing is not None and existing.method == method:
        return existing, None
    call = CallInfo(method=method, request_id=request_id or new_request_id())
    return call, _CALL.set(call)


def _leave_call(token: Token[CallInfo | None] | None) -> None:
    if token is not None:
        try:
            _CALL.reset(token)
        except ValueError:
            # A streaming call's generator was closed from another context (a
            # task cancelled on stop); that context dies with the call anyway.
            pass
