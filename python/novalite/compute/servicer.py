"""The compute agent's gRPC face: protobuf in, ComputeManager, protobuf out.

Domain errors (NotFound for a host this agent does not serve or a guest it does not
have, Invalid naming the request field, InvalidState for an action the guest's state
does not allow, Unavailable when libvirt is down) are raised and mapped to status
codes by the shared error interceptor.

A failed build is not a domain error but an outcome the conductor acts on (it
releases the claim and tries an alternate): it ends the call with
RESOURCE_EXHAUSTED when the local claim did not fit and INTERNAL otherwise, the
message saying why, as compute_agent.proto describes. The interceptor maps no domain
error to INTERNAL with its message (an unexpected error's message is hidden on
purpose), so this one case sets the status on the context itself.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, TypeAlias

import grpc
import grpc.aio

from novalite import convert, errors
from novalite.compute.manager import (
    BuildFailed,
    ComputeManager,
    ComputeResourcesUnavailable,
    GuestFlavor,
    GuestImage,
)
from novalite.rpc.novalite.compute.v1 import servers_pb2, states_pb2
from novalite.rpc.novalite.internal.v1 import compute_agent_pb2 as pb
from novalite.rpc.novalite.internal.v1 import compute_agent_pb2_grpc

if TYPE_CHECKING:  # grpc's classes are generic only in their type stubs
    Context: TypeAlias = grpc.aio.ServicerContext[Any, Any]
else:
    Context = grpc.aio.ServicerContext


def _power(value: int) -> states_pb2.PowerState:
    return convert.power_state(value)


def _host(host: str) -> str:
    if not host:
        raise errors.Invalid("host", "required: the host the server is on")
    return host


class ComputeAgentServicer(compute_agent_pb2_grpc.ComputeAgentServicer):
    def __init__(self, manager: ComputeManager) -> None:
        self.manager = manager

    async def BuildInstance(self, request: pb.BuildInstanceRequest,
                            context: Context) -> pb.BuildInstanceResponse:
        f = request.flavor
        image = None
        if request.HasField("image") and request.image.path:
            image = GuestImage(request.image.path, request.image.disk_format or "qcow2")
        try:
            power = await self.manager.build(
                _host(request.host), request.server.id, request.server.name,
                GuestFlavor(vcpus=f.vcpus, memory_mb=f.memory_mb, root_gb=f.root_gb,
                            ephemeral_gb=f.ephemeral_gb, swap=f.swap),
                image, convert.allocation(request.allocation))
        except BuildFailed as e:
            context.set_code(grpc.StatusCode.RESOURCE_EXHAUSTED
                             if isinstance(e, ComputeResourcesUnavailable)
                             else grpc.StatusCode.INTERNAL)
            context.set_details(str(e))
            return pb.BuildInstanceResponse()
        return pb.BuildInstanceResponse(power_state=_power(power))

    async def DeleteInstance(self, request: pb.DeleteInstanceRequest,
                             context: Context) -> pb.DeleteInstanceResponse:
        await self.manager.delete(_host(request.host), request.server_id)
        return pb.DeleteInstanceResponse()

    async def RebootInstance(self, request: pb.RebootInstanceRequest,
                             context: Context) -> pb.InstanceActionResponse:
        if request.type not in (servers_pb2.REBOOT_TYPE_SOFT, servers_pb2.REBOOT_TYPE_HARD):
            raise errors.Invalid("type", "SOFT or HARD")
        power = await self.manager.reboot_instance(
            _host(request.host), request.server_id, hard=request.type == servers_pb2.REBOOT_TYPE_HARD)
        return pb.InstanceActionResponse(power_state=_power(power))

    async def StopInstance(self, request: pb.StopInstanceRequest,
                           context: Context) -> pb.InstanceActionResponse:
        power = await self.manager.stop_instance(_host(request.host), request.server_id)
        return pb.InstanceActionResponse(power_state=_power(power))

    async def StartInstance(self, request: pb.StartInstanceRequest,
                            context: Context) -> pb.InstanceActionResponse:
        power = await self.manager.start_instance(_host(request.host), request.server_id)
        return pb.InstanceActionResponse(power_state=_power(power))

    async def PauseInstance(self, request: pb.PauseInstanceRequest,
                            context: Context) -> pb.InstanceActionResponse:
        power = await self.manager.pause_instance(_host(request.host), request.server_id)
        return pb.InstanceActionResponse(power_state=_power(power))

    async def UnpauseInstance(self, request: pb.UnpauseInstanceRequest,
                              context: Context) -> pb.InstanceActionResponse:
        power = await self.manager.unpause_instance(_host(request.host), request.server_id)
        return pb.InstanceActionResponse(power_state=_power(power))

    async def SuspendInstance(self, request: pb.SuspendInstanceRequest,
                              context: Context) -> pb.InstanceActionResponse:
        power = await self.manager.suspend_instance(_host(request.host), request.server_id)
        return pb.InstanceActionResponse(power_state=_power(power))

    async def ResumeInstance(self, request: pb.ResumeInstanceRequest,
                             context: Context) -> pb.InstanceActionResponse:
        power = await self.manager.resume_instance(_host(request.host), request.server_id)
        return pb.InstanceActionResponse(power_state=_power(power))


__all__ = ["ComputeAgentServicer"]
