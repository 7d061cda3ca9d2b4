"""The client side of the conductor service (the API calls it)."""

from __future__ import annotations

from typing import Sequence

from novalite.rpc.novalite.internal.v1 import conductor_pb2, conductor_pb2_grpc, request_spec_pb2
from novalite.services.client import TokenSource, channel
from novalite.services.status import domain_call

class ConductorClient:
    def __init__(self, target: str, token: TokenSource, *, timeout: float = 30.0) -> None:
        self._channel = channel(target, token)
        self._stub = conductor_pb2_grpc.ConductorStub(self._channel)
        self._timeout = timeout

    async def close(self) -> None:
        await self._channel.close()

    async def build_servers(self, server_ids: Sequence[str], *, availability_zone: str | None,
                            group_id: str | None, same_host: Sequence[str],
                            different_host: Sequence[str], request_id: str,
                            admin_pass: str | None = None) -> None:
        spec = request_spec_pb2.RequestSpec(request_id=request_id, same_host=list(same_host),
                                            different_host=list(different_host))
        if availability_zone is not None:
            spec.availability_zone = availability_zone
        if group_id is not None:
            spec.instance_group.uuid = group_id
        await domain_call(self._stub.BuildServers(
            conductor_pb2.BuildServersRequest(request_spec=spec, server_ids=list(server_ids),
                                              admin_pass=admin_pass or ""),
            timeout=self._timeout))

    async def delete_server(self, server_id: str) -> None:
        await self.server_action(server_id, "delete", "")

    async def server_action(self, server_id: str, action: str, request_id: str) -> None:
        await domain_call(self._stub.ServerAction(conductor_pb2.ServerActionRequest(
            id=server_id, action=action, request_id=request_id), timeout=self._timeout))
