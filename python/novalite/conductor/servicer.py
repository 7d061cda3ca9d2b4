"""The conductor's gRPC face: accept builds and actions (durable before the API
called), and run them in the background."""

from __future__ import annotations

from typing import Any

from novalite import errors
from novalite.conductor.manager import BuildRequest, ConductorManager
from novalite.objects import lifecycle
from novalite.rpc.novalite.internal.v1 import conductor_pb2, conductor_pb2_grpc


class ConductorServicer(conductor_pb2_grpc.ConductorServicer):
    def __init__(self, manager: ConductorManager) -> None:
        self.manager = manager

    async def BuildServers(self, request: conductor_pb2.BuildServersRequest,
                           context: Any) -> conductor_pb2.BuildServersResponse:
        spec = request.request_spec
        self.manager.accept(BuildRequest(
            server_ids=list(request.server_ids),
            availability_zone=spec.availability_zone if spec.HasField("availability_zone") else None,
            group_id=spec.instance_group.uuid or None if spec.HasField("instance_group") else None,
            same_host=list(spec.same_host), different_host=list(spec.different_host),
            request_id=spec.request_id or None, admin_pass=request.admin_pass or None))
        return conductor_pb2.BuildServersResponse()

    async def ServerAction(self, request: conductor_pb2.ServerActionRequest,
                           context: Any) -> conductor_pb2.ServerActionResponse:
        action = request.action
        if action != "delete" and action not in lifecycle.ACTIONS:
            raise errors.Invalid("action", f"unknown action {action[:64]!r}")
        if action == "delete":
            self.manager.run(self.manager.delete(request.id))
        else:
            self.manager.run(self.manager.server_action(request.id, action, request.request_id or None))
        return conductor_pb2.ServerActionResponse()
