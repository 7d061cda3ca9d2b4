"""The client side of the scheduler service (the conductor, the API and the compute
agents call it); domain in, domain out, domain errors raised."""

from __future__ import annotations

import asyncio
import logging
from typing import Any, Awaitable, Callable, Mapping, Sequence

import grpc.aio

from novalite import convert
from novalite.db.database import Database
from novalite.placement import model
from novalite.rpc.novalite.internal.v1 import scheduler_pb2, scheduler_pb2_grpc
from novalite.services.client import TokenSource, channel
from novalite.services.status import domain_call

LOG = logging.getLogger(__name__)


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

    async def hosts_changed(self, hosts: Sequence[str]) -> None:
        """Ask the scheduler to re-read these hosts from the database (one call)."""
        await domain_call(self._stub.ReportHosts(scheduler_pb2.ReportHostsRequest(names=list(hosts)),
                                           timeout=self._timeout))


class SchedulerFanout:
    """Every scheduler replica at once (Nova's fanout casts to the schedulers): the
    scheduler services the services table has up. The API tells them what an admin
    changed (a host enabled or disabled, a host's traits, aggregates and zones) and
    returns once each has re-read it from the database, so that the next request,
    whichever replica decides it, sees the change.

    A replica that cannot be told is logged, not an error (the change is committed)
    and catches up by itself: services every report_interval, hosts with the
    compute agents' periodic reports, aggregates every 60 s; one that starts later
    reads everything then."""

    def __init__(self, db: Database, token: TokenSource, *, service_down_time: float,
                 timeout: float = 10.0) -> None:
        self.db = db
        self._token = token
        self._service_down_time = service_down_time
        self._timeout = timeout
        self._stubs: dict[str, scheduler_pb2_grpc.SchedulerStub] = {}
        self._channels: list[grpc.aio.Channel] = []

    async def close(self) -> None:
        for ch in self._channels:
            await ch.close()

    async def hosts_changed(self, hosts: Sequence[str]) -> None:
        """Every scheduler re-reads these hosts from the database."""
        request = scheduler_pb2.ReportHostsRequest(names=list(hosts))
        await self._each("ReportHosts", lambda stub: stub.ReportHosts(request, timeout=self._timeout))

    async def aggregates_changed(self) -> None:
        """Every scheduler re-reads every aggregate from the database."""
        request = scheduler_pb2.RefreshAggregatesRequest()
        await self._each("RefreshAggregates",
                         lambda stub: stub.RefreshAggregates(request, timeout=self._timeout))

    async def _each(self, what: str,
                    call: Callable[[scheduler_pb2_grpc.SchedulerStub], Awaitable[Any]]) -> None:
        services = await asyncio.to_thread(self.db.list_services, binary="scheduler",
                                           service_down_time=self._service_down_time)
        endpoints = sorted({s.endpoint for s in services if s.is_up and s.endpoint})
        results = await asyncio.gather(*(call(self._stub(e)) for e in endpoints),
                                       return_exceptions=True)
        for endpoint, result in zip(endpoints, results):
            if isinstance(result, BaseException):
                LOG.warning("the scheduler at %s did not take %s (%s); it catches up by itself",
                            endpoint, what, result)

    def _stub(self, endpoint: str) -> scheduler_pb2_grpc.SchedulerStub:
        stub = self._stubs.get(endpoint)
        if stub is None:
            ch = channel(endpoint, self._token)
            self._channels.append(ch)
            stub = self._stubs[endpoint] = scheduler_pb2_grpc.SchedulerStub(ch)
        return stub
