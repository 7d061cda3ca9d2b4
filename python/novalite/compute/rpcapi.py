"""The client side of the compute agents (the conductor calls them): a host name is
resolved to its agent's endpoint through the services table (remembered for a few
seconds, and read again when a call finds the agent unreachable)."""

from __future__ import annotations

import time
from typing import Any, Mapping

import grpc
import grpc.aio

from novalite import convert, errors
from novalite.objects import records
from novalite.db.database import Database
from novalite.rpc.novalite.internal.v1 import compute_agent_pb2, compute_agent_pb2_grpc
from novalite.services.client import TokenSource, channel
from novalite.services.status import domain_call

# How long a host's agent endpoint is taken from memory before the services table is
# read again (an agent restarted elsewhere is found within this, or at once when a
# call finds the old endpoint unreachable).
ENDPOINT_TTL = 5.0


class ComputeClient:
    def __init__(self, db: Database, token: TokenSource, *, build_timeout: float = 300.0,
                 timeout: float = 120.0) -> None:
        self.db = db
        self._token = token
        self._stubs: dict[str, compute_agent_pb2_grpc.ComputeAgentStub] = {}
        self._channels: list[grpc.aio.Channel] = []
        self._build_timeout = build_timeout
        self._timeout = timeout
        self._endpoints: dict[str, tuple[str, float]] = {}  # host -> (endpoint, when read)

    async def close(self) -> None:
        for ch in self._channels:
            await ch.close()

    def _stub(self, host: str, *, fresh: bool = False) -> tuple[compute_agent_pb2_grpc.ComputeAgentStub, bool]:
        """The host's agent stub, and whether its endpoint came from memory."""
        known = self._endpoints.get(host)
        cached = not fresh and known is not None and time.monotonic() - known[1] < ENDPOINT_TTL
        if cached:
            assert known is not None
            endpoint = known[0]
        else:
            svc = self.db.get_service(host, "compute")
            if not svc.endpoint:
                raise errors.Unavailable(f"compute service of host {host!r} has no endpoint")
            endpoint = svc.endpoint
            self._endpoints[host] = (endpoint, time.monotonic())
        stub = self._stubs.get(endpoint)
        if stub is None:
            ch = channel(endpoint, self._token)
            self._channels.append(ch)
            stub = self._stubs[endpoint] = compute_agent_pb2_grpc.ComputeAgentStub(ch)
        return stub, cached

    async def _invoke(self, host: str, method: str, request: Any, timeout: float) -> Any:
        """Call the host's agent. When an endpoint taken from memory is unreachable,
        the services table is read again and, if the agent has moved, the call is
        made there (every agent call is safe to repeat)."""
        stub, cached = self._stub(host)
        try:
            return await getattr(stub, method)(request, timeout=timeout)
        except grpc.aio.AioRpcError as e:
            if e.code() != grpc.StatusCode.UNAVAILABLE or not cached:
                raise
            moved, _ = self._stub(host, fresh=True)
            if moved is stub:
                raise
            return await getattr(moved, method)(request, timeout=timeout)

    async def build(self, host: str, instance: records.Instance, flavor: records.Flavor,
                    image: records.Image | None, allocation: Mapping[str, int],
                    guest: records.GuestConfig | None = None) -> int:
        request = compute_agent_pb2.BuildInstanceRequest(
            server_id=instance.id, name=instance.name, flavor=convert.flavor(flavor),
            allocation=dict(allocation), host=host, group_id=instance.group_id or "")
        if guest is not None:
            request.guest.CopyFrom(convert.guest_to_proto(guest))
        if image is not None:
            request.image.CopyFrom(convert.image(image))
        try:
            reply = await self._invoke(host, "BuildInstance", request, self._build_timeout)
        except grpc.aio.AioRpcError as e:
            raise errors.BuildFailed(f"{e.code().name}: {e.details()}") from None
        except errors.NovaliteError as e:
            raise errors.BuildFailed(str(e)) from None
        return int(reply.power_state)

    async def delete(self, host: str, instance_id: str) -> None:
        await domain_call(self._invoke(host, "DeleteInstance", compute_agent_pb2.DeleteInstanceRequest(
            server_id=instance_id, host=host), self._timeout))

    async def console_output(self, host: str, instance_id: str) -> str:
        """The end of the guest's serial console log."""
        reply = await domain_call(self._invoke(host, "GetConsoleOutput",
                                               compute_agent_pb2.GetConsoleOutputRequest(
                                                   server_id=instance_id, host=host), self._timeout))
        return str(reply.output)

    async def action(self, host: str, instance_id: str, action: str) -> int:
        """A lifecycle action (objects/lifecycle.py) on the host; its power state after."""
        reply = await domain_call(self._invoke(host, "RunAction", compute_agent_pb2.RunActionRequest(
            server_id=instance_id, host=host, action=action), self._timeout))
        return int(reply.power_state)

    # ---- the steps of a move (each BuildFailed when it could not be done; see
    # compute_agent.proto) -------------------------------------------------------------

    async def _step(self, host: str, method: str, request: Any) -> Any:
        try:
            return await domain_call(self._invoke(host, method, request, self._build_timeout))
        except grpc.aio.AioRpcError as e:
            if e.code() == grpc.StatusCode.RESOURCE_EXHAUSTED:
                raise errors.ComputeResourcesUnavailable(e.details() or "") from None
            if e.code() == grpc.StatusCode.INTERNAL:
                raise errors.BuildFailed(e.details() or "internal error") from None
            raise

    async def prepare_move(self, host: str, instance_id: str, flavor: records.Flavor,
                           allocation: Mapping[str, int], migration_id: str) -> None:
        await self._step(host, "PrepareMove", compute_agent_pb2.PrepareMoveRequest(
            server_id=instance_id, host=host, flavor=convert.flavor(flavor),
            allocation=dict(allocation), migration_id=migration_id))

    async def migrate_out(self, host: str, instance_id: str, migration_id: str, *,
                          live: bool) -> str:
        reply = await self._step(host, "MigrateOut", compute_agent_pb2.MigrateOutRequest(
            server_id=instance_id, host=host, migration_id=migration_id, live=live))
        return str(reply.source)

    async def finish_move(self, host: str, instance: records.Instance, flavor: records.Flavor,
                          image: records.Image | None, source: str, *, power_on: bool,
                          guest: records.GuestConfig | None = None) -> int:
        request = compute_agent_pb2.FinishMoveRequest(
            server_id=instance.id, host=host, name=instance.name, flavor=convert.flavor(flavor),
            source=source, power_on=power_on)
        if image is not None:
            request.image.CopyFrom(convert.image(image))
        if guest is not None:
            request.guest.CopyFrom(convert.guest_to_proto(guest))
        return int((await self._step(host, "FinishMove", request)).power_state)

    async def revert_move(self, host: str, instance_id: str, migration_id: str, *,
                          power_on: bool) -> int:
        reply = await self._step(host, "RevertMove", compute_agent_pb2.RevertMoveRequest(
            server_id=instance_id, host=host, migration_id=migration_id, power_on=power_on))
        return int(reply.power_state)

    async def confirm_move(self, host: str, instance_id: str, migration_id: str) -> None:
        await self._step(host, "ConfirmMove", compute_agent_pb2.ConfirmMoveRequest(
            server_id=instance_id, host=host, migration_id=migration_id))

    async def rebuild(self, host: str, instance: records.Instance, flavor: records.Flavor,
                      image: records.Image | None, allocation: Mapping[str, int], *,
                      power_on: bool, guest: records.GuestConfig | None = None) -> int:
        request = compute_agent_pb2.RebuildInstanceRequest(
            server_id=instance.id, host=host, name=instance.name, flavor=convert.flavor(flavor),
            allocation=dict(allocation), power_on=power_on)
        if image is not None:
            request.image.CopyFrom(convert.image(image))
        if guest is not None:
            request.guest.CopyFrom(convert.guest_to_proto(guest))
        return int((await self._step(host, "RebuildInstance", request)).power_state)

    async def shelve(self, host: str, instance_id: str) -> tuple[int, str | None]:
        reply = await self._step(host, "ShelveInstance", compute_agent_pb2.ShelveInstanceRequest(
            server_id=instance_id, host=host))
        return int(reply.power_state), reply.snapshot or None
