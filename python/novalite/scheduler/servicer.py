"""The scheduler's gRPC face: protobuf in, the manager (in a worker thread: the core
releases the GIL, and the event loop stays free), protobuf out."""

from __future__ import annotations

import asyncio
from typing import Any

from novalite import convert, errors
from novalite.rpc.novalite.internal.v1 import scheduler_pb2, scheduler_pb2_grpc
from novalite.scheduler.manager import SchedulerManager


class SchedulerServicer(scheduler_pb2_grpc.SchedulerServicer):
    def __init__(self, manager: SchedulerManager) -> None:
        self.manager = manager

    async def SelectDestinations(self, request: scheduler_pb2.SelectDestinationsRequest,
                                 context: Any) -> scheduler_pb2.SelectDestinationsResponse:
        spec = convert.request_spec_from_proto(request.request_spec, request.instance_uuids)
        selections = await asyncio.to_thread(self.manager.select_destinations, spec,
                                             return_alternates=request.return_alternates,
                                             migration=request.migration_uuid or None)
        return convert.selections_to_proto(request.instance_uuids, selections)

    async def CheckRebuild(self, request: scheduler_pb2.SelectDestinationsRequest,
                           context: Any) -> scheduler_pb2.SelectDestinationsResponse:
        spec = convert.request_spec_from_proto(request.request_spec, request.instance_uuids)
        selections = await asyncio.to_thread(self.manager.check_rebuild, spec)
        return convert.selections_to_proto(request.instance_uuids, selections)

    async def MoveAllocation(self, request: scheduler_pb2.MoveAllocationRequest,
                             context: Any) -> scheduler_pb2.MoveAllocationResponse:
        for name, value in (("source", request.source), ("target", request.target)):
            if not value:
                raise errors.Invalid(name, "required: a consumer's id")
        await asyncio.to_thread(self.manager.move_allocation, request.source, request.target)
        return scheduler_pb2.MoveAllocationResponse()

    async def ReportHosts(self, request: scheduler_pb2.ReportHostsRequest,
                          context: Any) -> scheduler_pb2.ReportHostsResponse:
        await asyncio.to_thread(self.manager.refresh_hosts, convert.host_names(request.names))
        return scheduler_pb2.ReportHostsResponse()

    async def RefreshAggregates(self, request: scheduler_pb2.RefreshAggregatesRequest,
                                context: Any) -> scheduler_pb2.RefreshAggregatesResponse:
        await asyncio.to_thread(self.manager.refresh_aggregates)
        return scheduler_pb2.RefreshAggregatesResponse()

    async def ReleaseAllocation(self, request: scheduler_pb2.ReleaseAllocationRequest,
                                context: Any) -> scheduler_pb2.ReleaseAllocationResponse:
        await asyncio.to_thread(self.manager.release, request.instance_uuid)
        return scheduler_pb2.ReleaseAllocationResponse()

    async def ClaimAllocation(self, request: scheduler_pb2.ClaimAllocationRequest,
                              context: Any) -> scheduler_pb2.ClaimAllocationResponse:
        claimed = await asyncio.to_thread(self.manager.claim_alternate, request.instance_uuid,
                                          request.host, convert.allocation(request.allocation))
        return scheduler_pb2.ClaimAllocationResponse(claimed=claimed)
