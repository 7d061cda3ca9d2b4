"""The compute agent's gRPC face: protobuf in, ComputeManager, protobuf out.

Domain errors (NotFound for a host this agent does not serve or a guest it does not
have, Invalid naming the request field, InvalidState for an action the guest's state
does not allow, Unavailable when libvirt is down) are raised and mapped to status
codes by the shared error interceptor.

A failed build is not a domain error but an outcome the conductor acts on (it
releases the claim and tries an alternate): it ends the call with
RESOURCE_EXHAUSTED when the local claim did not fit, ABORTED when the server
group's late check refused the host, and INTERNAL otherwise, the message saying
why, as compute_agent.proto describes. The interceptor maps no domain
error to INTERNAL with its message (an unexpected error's message is hidden on
purpose), so this one case sets the status on the context itself.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Awaitable, Callable, TypeAlias, TypeVar

import grpc
import grpc.aio

from novalite import convert, errors
from novalite.compute.manager import ComputeManager
from novalite.objects import records
from novalite.rpc.novalite.internal.v1 import compute_agent_pb2 as pb
from novalite.rpc.novalite.internal.v1 import compute_agent_pb2_grpc

if TYPE_CHECKING:  # grpc's classes are generic only in their type stubs
    Context: TypeAlias = grpc.aio.ServicerContext[Any, Any]
else:
    Context = grpc.aio.ServicerContext


# How a failed build ends the call (compute_agent.proto).
_BUILD_FAILURE_CODES = {
    errors.ComputeResourcesUnavailable: grpc.StatusCode.RESOURCE_EXHAUSTED,
    errors.GroupAffinityViolation: grpc.StatusCode.ABORTED,
}

T = TypeVar("T")
R = TypeVar("R")


def _host(host: str) -> str:
    if not host:
        raise errors.Invalid("host", "required: the host the server is on")
    return host


def _failed(context: Context, e: errors.BuildFailed) -> None:
    """A build or a move's step that could not be done here (see the module's
    docstring)."""
    context.set_code(_BUILD_FAILURE_CODES.get(type(e), grpc.StatusCode.INTERNAL))
    context.set_details(str(e))


def _image(request: Any) -> Any:
    if request.HasField("image") and request.image.path:
        return convert.image_from_proto(request.image)
    return None


def _guest(request: Any) -> records.GuestConfig | None:
    return convert.guest_from_proto(request.guest) if request.HasField("guest") else None


class ComputeAgentServicer(compute_agent_pb2_grpc.ComputeAgentServicer):
    def __init__(self, manager: ComputeManager) -> None:
        self.manager = manager

    async def BuildInstance(self, request: pb.BuildInstanceRequest,
                            context: Context) -> pb.BuildInstanceResponse:
        try:
            power = await self.manager.build(
                _host(request.host), request.server_id, request.name,
                convert.flavor_from_proto(request.flavor), _image(request),
                convert.allocation(request.allocation), group_id=request.group_id or None,
                guest=_guest(request))
        except errors.BuildFailed as e:
            _failed(context, e)
            return pb.BuildInstanceResponse()
        return pb.BuildInstanceResponse(power_state=convert.power_state(power))

    async def DeleteInstance(self, request: pb.DeleteInstanceRequest,
                             context: Context) -> pb.DeleteInstanceResponse:
        await self.manager.delete(_host(request.host), request.server_id)
        return pb.DeleteInstanceResponse()

    async def RunAction(self, request: pb.RunActionRequest, context: Context) -> pb.RunActionResponse:
        power = await self.manager.run_action(_host(request.host), request.server_id, request.action)
        return pb.RunActionResponse(power_state=convert.power_state(power))

    async def GetConsoleOutput(self, request: pb.GetConsoleOutputRequest,
                               context: Context) -> pb.GetConsoleOutputResponse:
        return pb.GetConsoleOutputResponse(output=await self.manager.console_output(
            _host(request.host), request.server_id))


    # ---- the steps of a move -------------------------------------------------------

    async def PrepareMove(self, request: pb.PrepareMoveRequest, context: Context) -> pb.PrepareMoveResponse:
        return await _respond(context, pb.PrepareMoveResponse, self.manager.prepare_move(
            _host(request.host), request.server_id, convert.flavor_from_proto(request.flavor),
            convert.allocation(request.allocation), request.migration_id),
            lambda _: pb.PrepareMoveResponse())

    async def MigrateOut(self, request: pb.MigrateOutRequest, context: Context) -> pb.MigrateOutResponse:
        return await _respond(context, pb.MigrateOutResponse, self.manager.migrate_out(
            _host(request.host), request.server_id, request.migration_id, live=request.live),
            lambda source: pb.MigrateOutResponse(source=source))

    async def FinishMove(self, request: pb.FinishMoveRequest, context: Context) -> pb.PowerStateResponse:
        return await _respond(context, pb.PowerStateResponse, self.manager.finish_move(
            _host(request.host), request.server_id, request.name,
            convert.flavor_from_proto(request.flavor), _image(request), request.source,
            power_on=request.power_on, guest=_guest(request)), _power)

    async def RevertMove(self, request: pb.RevertMoveRequest, context: Context) -> pb.PowerStateResponse:
        return await _respond(context, pb.PowerStateResponse, self.manager.revert_move(
            _host(request.host), request.server_id, request.migration_id,
            power_on=request.power_on), _power)

    async def ConfirmMove(self, request: pb.ConfirmMoveRequest, context: Context) -> pb.ConfirmMoveResponse:
        return await _respond(context, pb.ConfirmMoveResponse, self.manager.confirm_move(
            _host(request.host), request.server_id, request.migration_id),
            lambda _: pb.ConfirmMoveResponse())

    async def RebuildInstance(self, request: pb.RebuildInstanceRequest,
                              context: Context) -> pb.PowerStateResponse:
        return await _respond(context, pb.PowerStateResponse, self.manager.rebuild(
            _host(request.host), request.server_id, request.name,
            convert.flavor_from_proto(request.flavor), _image(request),
            convert.allocation(request.allocation), power_on=request.power_on,
            guest=_guest(request)), _power)

    async def ShelveInstance(self, request: pb.ShelveInstanceRequest,
                             context: Context) -> pb.ShelveInstanceResponse:
        return await _respond(
            context, pb.ShelveInstanceResponse,
            self.manager.shelve(_host(request.host), request.server_id),
            lambda done: pb.ShelveInstanceResponse(power_state=convert.power_state(done[0]),
                                                   snapshot=done[1] or ""))


async def _respond(context: Context, empty: Callable[[], R], call: Awaitable[T],
                   response: Callable[[T], R]) -> R:
    """A move step's response, or (its step could not be done) the status that
    says so and an empty response."""
    try:
        done = await call
    except errors.BuildFailed as e:
        _failed(context, e)
        return empty()
    return response(done)


def _power(power: int) -> pb.PowerStateResponse:
    return pb.PowerStateResponse(power_state=convert.power_state(power))


__all__ = ["ComputeAgentServicer"]
