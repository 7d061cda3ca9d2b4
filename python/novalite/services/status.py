"""Domain errors <-> gRPC status codes, in one place (docs/control-plane.md).

Server side, ``status_for(exc)`` says which code and message an exception becomes,
and which structured details travel with it in the standard
``grpc-status-details-bin`` trailer (a google.rpc.Status, as grpcio-status reads
it):

* errors.Invalid -> INVALID_ARGUMENT, "<field>: <why>", with a google.rpc.BadRequest
  naming the field;
* errors.QuotaExceeded -> RESOURCE_EXHAUSTED, with a google.rpc.ErrorInfo carrying
  resource, requested, limit and in_use;
* errors.NoValidHost -> RESOURCE_EXHAUSTED, with a novalite.internal.v1.NoValidHost
  carrying the per-check rejection counts;
* NotFound -> NOT_FOUND, Forbidden -> PERMISSION_DENIED, Unauthenticated ->
  UNAUTHENTICATED, InvalidState -> FAILED_PRECONDITION, Conflict -> ABORTED,
  Unavailable -> UNAVAILABLE, NotImplementedError -> UNIMPLEMENTED;
* a failed call to another service: UNAVAILABLE or DEADLINE_EXCEEDED as it was,
  anything else INTERNAL (the caller can do nothing about our bug);
* anything else -> INTERNAL, "internal error (request <id>)", and the traceback
  goes to the log, not to the caller.

Client side, ``domain_error(rpc_error)`` turns such a status back into the domain
error (a conductor re-raises the scheduler's NoValidHost, with its counts).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Awaitable, Iterable, Sequence, TypeVar

import grpc
import grpc.aio
from google.protobuf import any_pb2
from google.protobuf.message import DecodeError, Message
from google.rpc import error_details_pb2, status_pb2  # type: ignore[import-untyped, unused-ignore]

from novalite import errors
from novalite.rpc.novalite.compute.v1 import faults_pb2
from novalite.rpc.novalite.internal.v1 import scheduler_pb2
from novalite.services.context import REQUEST_ID_METADATA

DETAILS_METADATA = "grpc-status-details-bin"
ERROR_DOMAIN = "novalite"
QUOTA_EXCEEDED_REASON = "QUOTA_EXCEEDED"

# Most specific first is not needed: the lookup walks each exception's MRO.
CODES: dict[type[BaseException], grpc.StatusCode] = {
    errors.NotFound: grpc.StatusCode.NOT_FOUND,
    errors.Invalid: grpc.StatusCode.INVALID_ARGUMENT,
    errors.Forbidden: grpc.StatusCode.PERMISSION_DENIED,
    errors.Unauthenticated: grpc.StatusCode.UNAUTHENTICATED,
    errors.QuotaExceeded: grpc.StatusCode.RESOURCE_EXHAUSTED,
    errors.NoValidHost: grpc.StatusCode.RESOURCE_EXHAUSTED,
    errors.InvalidState: grpc.StatusCode.FAILED_PRECONDITION,
    errors.Conflict: grpc.StatusCode.ABORTED,
    errors.Unavailable: grpc.StatusCode.UNAVAILABLE,
    NotImplementedError: grpc.StatusCode.UNIMPLEMENTED,
}
# Codes of a failed downstream call that are passed on as they are: they say "try
# again later" whoever failed.
_PASSED_ON = frozenset({grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED})


@dataclass(frozen=True)
class MappedStatus:
    code: grpc.StatusCode
    message: str
    # Packed into the google.rpc.Status of the grpc-status-details-bin trailer.
    details: tuple[Message, ...] = ()
    # A bug or an outage rather than the caller's doing: log it with its traceback.
    unexpected: bool = False

    def trailing_metadata(self) -> tuple[tuple[str, bytes], ...]:
        if not self.details:
            return ()
        status = status_pb2.Status(code=self.code.value[0], message=self.message)
        for detail in self.details:
            packed = any_pb2.Any()
            packed.Pack(detail)
            status.details.append(packed)
        return ((DETAILS_METADATA, status.SerializeToString()),)


def status_for(exc: BaseException, request_id: str | None = None) -> MappedStatus:
    """The status an exception raised by a servicer becomes."""
    for klass in type(exc).__mro__:
        code = CODES.get(klass)
        if code is not None:
            if code is grpc.StatusCode.UNIMPLEMENTED:
                return MappedStatus(code, str(exc) or "method not implemented")
            return MappedStatus(code, str(exc) or type(exc).__name__, _details(exc))
    if isinstance(exc, grpc.RpcError):
        code, message = _code_and_message(exc)
        if code in _PASSED_ON:
            return MappedStatus(code, "a service this call depends on did not answer: "
                                      f"{message or code.name}", unexpected=True)
    suffix = f" (request {request_id})" if request_id else ""
    return MappedStatus(grpc.StatusCode.INTERNAL, f"internal error{suffix}", unexpected=True)


def _details(exc: BaseException) -> tuple[Message, ...]:
    if isinstance(exc, errors.Invalid):
        return (error_details_pb2.BadRequest(field_violations=[
            error_details_pb2.BadRequest.FieldViolation(field=exc.field, description=exc.message)]),)
    if isinstance(exc, errors.QuotaExceeded):
        return (error_details_pb2.ErrorInfo(
            reason=QUOTA_EXCEEDED_REASON, domain=ERROR_DOMAIN,
            metadata={"resource": exc.resource, "requested": str(exc.requested),
                      "limit": str(exc.limit), "in_use": str(exc.in_use)}),)
    if isinstance(exc, errors.NoValidHost):
        return (scheduler_pb2.NoValidHost(
            reason=exc.reason, instance_index=exc.instance_index, missing=exc.missing,
            rejections=[faults_pb2.Rejection(check=c, hosts=n) for c, n in exc.rejections]),)
    return ()


# ---------------------------------------------------------------------------
# Client side

# A failed call is a grpc.aio.AioRpcError (asyncio channels) or a grpc.RpcError that
# is also a grpc.Call (blocking channels): the same methods, no common base class.

def _code_and_message(error: grpc.RpcError) -> tuple[grpc.StatusCode | None, str]:
    if isinstance(error, (grpc.aio.AioRpcError, grpc.Call)):
        return error.code(), error.details() or ""
    return None, ""


def _metadata_pairs(error: grpc.RpcError) -> Iterable[tuple[str, str | bytes]]:
    trailing: Any = None
    if isinstance(error, (grpc.aio.AioRpcError, grpc.Call)):
        trailing = error.trailing_metadata()
    for item in trailing or ():
        yield item[0], item[1]


def status_details(error: grpc.RpcError) -> list[any_pb2.Any]:
    """The packed details of a failed call's google.rpc.Status (empty if none)."""
    for key, value in _metadata_pairs(error):
        if key == DETAILS_METADATA and isinstance(value, bytes):
            status = status_pb2.Status()
            try:
                status.ParseFromString(value)
            except DecodeError:
                return []
            return list(status.details)
    return []


def _unpack(details: Sequence[any_pb2.Any], message: Message) -> bool:
    for packed in details:
        if packed.TypeName() == message.DESCRIPTOR.full_name:
            return packed.Unpack(message)
    return False


def request_id_of(error: grpc.RpcError) -> str | None:
    """The request id the server logged the failed call under."""
    for key, value in _metadata_pairs(error):
        if key == REQUEST_ID_METADATA:
            return value.decode() if isinstance(value, bytes) else value
    return None


_T = TypeVar("_T")


async def domain_call(call: Awaitable[_T]) -> _T:
    """Await a call to another novalite service; a failure that stands for a domain
    error (see ``domain_error``) is raised as that error, any other as it came."""
    try:
        return await call
    except grpc.aio.AioRpcError as e:
        err = domain_error(e)
        if err is not None:
            raise err from None
        raise


def domain_error(error: grpc.RpcError) -> errors.NovaliteError | None:
    """The domain error a failed call to another novalite service stands for, to
    re-raise so that it maps to the same status again; None for statuses that do
    not travel (UNAUTHENTICATED or PERMISSION_DENIED between services is a
    misconfiguration here, not the end user's doing; INTERNAL is the other side's bug).
    """
    code, message = _code_and_message(error)
    details = status_details(error)
    if code is grpc.StatusCode.NOT_FOUND:
        return errors.NotFound(message)
    if code is grpc.StatusCode.INVALID_ARGUMENT:
        bad = error_details_pb2.BadRequest()
        if _unpack(details, bad) and bad.field_violations:
            violation = bad.field_violations[0]
            return errors.Invalid(violation.field, violation.description)
        return errors.Invalid("request", message)
    if code is grpc.StatusCode.RESOURCE_EXHAUSTED:
        no_valid_host = scheduler_pb2.NoValidHost()
        if _unpack(details, no_valid_host):
            return errors.NoValidHost(no_valid_host.reason,
                                      [(r.check, r.hosts) for r in no_valid_host.rejections],
                                      no_valid_host.instance_index, no_valid_host.missing)
        info = error_details_pb2.ErrorInfo()
        if _unpack(details, info) and info.reason == QUOTA_EXCEEDED_REASON:
            try:
                return errors.QuotaExceeded(info.metadata["resource"], int(info.metadata["requested"]),
                                            int(info.metadata["limit"]), int(info.metadata["in_use"]))
            except (KeyError, ValueError):
                pass
        return None
    if code is grpc.StatusCode.FAILED_PRECONDITION:
        return errors.InvalidState(message)
    if code is grpc.StatusCode.ABORTED:
        return errors.Conflict(message)
    if code in _PASSED_ON:
        return errors.Unavailable(message or code.name)
    return None
