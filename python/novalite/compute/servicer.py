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

from typing import TYPE_CHECKING, Any, TypeAlias

import grpc
import grpc.aio

from novalite import convert, errors
from novalite.compute.manager import ComputeManager
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


def _host(host: str) -> str:
    if not host:
        raise errors.Invalid("host", "required: the host the server is on")
    return host


class ComputeAgentServicer(compute_agent_pb2_grpc.ComputeAgentServicer):
    def __init__(self, manager: ComputeManager) -> None:
        self.manager = manager

    async def BuildInstance(self, request: pb.BuildInstanceRequest,
                            context: Context) -> pb.BuildInstanceResponse:
        image = None
        if request.HasField("image") and request.image.path:
            image = convert.image_from_proto(request.image)
        try:
            power = await self.manager.build(
                _host(request.host), request.server_id, request.name,
                convert.flavor_from_proto(request.flavor), image,
                convert.allocation(request.allocation), group_id=request.group_id or None,
                guest=convert.guest_from_proto(request.guest) if request.HasField("guest") else None)
        except errors.BuildFailed as e:
            context.set_code(_BUILD_FAILURE_CODES.get(type(e), grpc.StatusCode.INTERNAL))
            context.set_details(str(e))
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


__all__ = ["ComputeAgentServicer"]
