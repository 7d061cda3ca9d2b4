"""The client side of the compute agents (the conductor calls them): a host name is
resolved to its agent's endpoint through the services table."""

from __future__ import annotations

from typing import Mapping

import grpc
import grpc.aio

from novalite import convert, errors
from novalite.compute.manager import BuildFailed
from novalite.db import records
from novalite.db.database import Database
from novalite.rpc.novalite.compute.v1 import servers_pb2
from novalite.rpc.novalite.internal.v1 import compute_agent_pb2, compute_agent_pb2_grpc
from novalite.services.client import TokenSource, channel
from novalite.services.status import domain_error

_ACTIONS = {
    "reboot_soft": ("RebootInstance", lambda i, h: compute_agent_pb2.RebootInstanceRequest(
        server_id=i, host=h, type=servers_pb2.REBOOT_TYPE_SOFT)),
    "reboot_hard": ("RebootInstance", lambda i, h: compute_agent_pb2.RebootInstanceRequest(
        server_id=i, host=h, type=servers_pb2.REBOOT_TYPE_HARD)),
    "stop": ("StopInstance", lambda i, h: compute_agent_pb2.StopInstanceRequest(server_id=i, host=h)),
    "start": ("StartInstance", lambda i, h: compute_agent_pb2.StartInstanceRequest(server_id=i, host=h)),
    "pause": ("PauseInstance", lambda i, h: compute_agent_pb2.PauseInstanceRequest(server_id=i, host=h)),
    "unpause": ("UnpauseInstance", lambda i, h: compute_agent_pb2.UnpauseInstanceRequest(server_id=i, host=h)),
    "suspend": ("SuspendInstance", lambda i, h: compute_agent_pb2.SuspendInstanceRequest(server_id=i, host=h)),
    "resume": ("ResumeInstance", lambda i, h: compute_agent_pb2.ResumeInstanceRequest(server_id=i, host=h)),
}


class ComputeClient:
    def __init__(self, db: Database, token: TokenSource, *, build_timeout: float = 300.0,
                 timeout: float = 120.0) -> None:
        self.db = db
        self._token = token
        self._stubs: dict[str, compute_agent_pb2_grpc.ComputeAgentStub] = {}
        self._channels: list[grpc.aio.Channel] = []
        self._build_timeout = build_timeout
        self._timeout = timeout

    async def close(self) -> None:
        for ch in self._channels:
            await ch.close()

    def _stub(self, host: str) -> compute_agent_pb2_grpc.ComputeAgentStub:
        svc = self.db.get_service(host, "compute")
        if not svc.endpoint:
            raise errors.Unavailable(f"compute service of host {host!r} has no endpoint")
        stub = self._stubs.get(svc.endpoint)
        if stub is None:
            ch = channel(svc.endpoint, self._token)
            self._channels.append(ch)
            stub = self._stubs[svc.endpoint] = compute_agent_pb2_grpc.ComputeAgentStub(ch)
        return stub

    async def build(self, host: str, instance: records.Instance, flavor: records.Flavor,
                    image: records.Image | None, allocation: Mapping[str, int]) -> int:
        request = compute_agent_pb2.BuildInstanceRequest(
            server=convert.server(instance, show_host=True), flavor=convert.flavor(flavor),
            allocation=dict(allocation), host=host)
        if image is not None:
            request.image.CopyFrom(convert.image(image))
        try:
            reply = await self._stub(host).BuildInstance(request, timeout=self._build_timeout)
        except grpc.aio.AioRpcError as e:
            raise BuildFailed(f"{e.code().name}: {e.details()}") from None
        except errors.NovaliteError as e:
            raise BuildFailed(str(e)) from None
        return int(reply.power_state)

    async def delete(self, host: str, instance_id: str) -> None:
        try:
            await self._stub(host).DeleteInstance(
                compute_agent_pb2.DeleteInstanceRequest(server_id=instance_id, host=host), timeout=self._timeout)
        except grpc.aio.AioRpcError as e:
            err = domain_error(e)
            if err is not None:
                raise err from None
            raise

    async def action(self, host: str, instance_id: str, action: str) -> int:
        method, build = _ACTIONS[action]
        try:
            reply = await getattr(self._stub(host), method)(build(instance_id, host), timeout=self._timeout)
        except grpc.aio.AioRpcError as e:
            err = domain_error(e)
            if err is not None:
                raise err from None
            raise
        return int(reply.power_state)
