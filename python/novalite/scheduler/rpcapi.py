"""The client side of the scheduler service (the conductor, the API and the compute
agents call it); domain in, domain out, domain errors raised."""

from __future__ import annotations

from typing import Mapping, Sequence

from novalite import convert
from novalite.placement import model
from novalite.rpc.novalite.internal.v1 import scheduler_pb2, scheduler_pb2_grpc
from novalite.services.client import TokenSource, channel
from novalite.services.status import domain_call


class SchedulerClient:
    """Placement calls (select, release, claim) wait for a scheduler that is not
    reachable, a restarting one say, up to their deadline, as a call through Nova's
    message queue would; reports fail at once (the next one catches up)."""

    def __init__(self, target: str, token: TokenSource, *, timeout: float = 60.0) -> None:
        self._channel = channel(target, token)
        self._stub = scheduler_pb2_grpc.SchedulerStub(self._channel)
        self._timeout = timeout

    async def close(self) -> None:
        await self._channel.close()

    async def select_destinations(self, spec: model.RequestSpec, *,
                                  migration: str | None = None) -> list[list[model.Selection]]:
        reply = await domain_call(self._stub.SelectDestinations(scheduler_pb2.SelectDestinationsRequest(
            request_spec=convert.request_spec_to_proto(spec),
            instance_uuids=list(spec.instance_uuids), return_alternates=True,
            migration_uuid=migration or ""), timeout=self._timeout, wait_for_ready=True))
        return convert.selections_from_proto(reply)

    async def check_rebuild(self, spec: model.RequestSpec) -> None:
        """NoValidHost unless the server's host passes the rebuild's filters."""
        await domain_call(self._stub.CheckRebuild(scheduler_pb2.SelectDestinationsRequest(
            request_spec=convert.request_spec_to_proto(spec),
            instance_uuids=list(spec.instance_uuids)), timeout=self._timeout, wait_for_ready=True))

    async def move_allocation(self, source: str, target: str) -> None:
        await domain_call(self._stub.MoveAllocation(scheduler_pb2.MoveAllocationRequest(
            source=source, target=target), timeout=self._timeout, wait_for_ready=True))

    async def release(self, instance_uuid: str) -> None:
        await domain_call(self._stub.ReleaseAllocation(
            scheduler_pb2.ReleaseAllocationRequest(instance_uuid=instance_uuid), timeout=self._timeout,
            wait_for_ready=True))

    async def claim_alternate(self, instance_uuid: str, host: str, allocation: Mapping[str, int]) -> bool:
        reply = await domain_call(self._stub.ClaimAllocation(scheduler_pb2.ClaimAllocationRequest(
            instance_uuid=instance_uuid, host=host, allocation=dict(allocation)), timeout=self._timeout,
            wait_for_ready=True))
        return bool(reply.claimed)

    async def host_changed(self, host: str) -> None:
        """Ask the scheduler to re-read one host from the database."""
        await self.hosts_changed([host])

    async def hosts_changed(self, hosts: Sequence[str]) -> None:
        """Ask the scheduler to re-read these hosts from the database (one call)."""
        await domain_call(self._stub.ReportHosts(scheduler_pb2.ReportHostsRequest(names=list(hosts)),
                                           timeout=self._timeout))
