"""The control plane's protobuf contract: the committed stubs match the protos, every
service has the RPCs the design lists, messages survive the wire, and the generated
code serves real calls under grpc.aio."""

from __future__ import annotations

import asyncio
import filecmp
import importlib
import os
import pathlib
import subprocess
import sys
from typing import AsyncIterator

import grpc
import pytest
from google.protobuf import timestamp_pb2

from novalite.rpc.novalite.compute.v1 import (
    faults_pb2,
    flavors_pb2,
    flavors_pb2_grpc,
    servers_pb2,
    servers_pb2_grpc,
    states_pb2,
)

ROOT = pathlib.Path(__file__).resolve().parent.parent
RPC = ROOT / "python" / "novalite" / "rpc"

UNARY, SERVER_STREAM = "unary", "server-stream"

# Every service of the design (docs/control-plane.md), RPC name -> response kind.
EXPECTED_SERVICES: dict[str, dict[str, str]] = {
    "novalite.compute.v1.Servers": {
        "CreateServer": UNARY, "GetServer": UNARY, "ListServers": UNARY,
        "DeleteServer": UNARY, "WatchServers": SERVER_STREAM,
        "RebootServer": UNARY, "StopServer": UNARY, "StartServer": UNARY,
        "PauseServer": UNARY, "UnpauseServer": UNARY, "SuspendServer": UNARY,
        "ResumeServer": UNARY, "RescueServer": UNARY, "UnrescueServer": UNARY,
        "ListServerActions": UNARY, "GetConsoleOutput": UNARY,
                "ResizeServer": UNARY, "ConfirmResize": UNARY, "RevertResize": UNARY,
        "MigrateServer": UNARY, "LiveMigrateServer": UNARY, "EvacuateServer": UNARY,
        "RebuildServer": UNARY, "ShelveServer": UNARY, "ShelveOffloadServer": UNARY,
        "UnshelveServer": UNARY, "LockServer": UNARY, "UnlockServer": UNARY,
        "UpdateServer": UNARY, "SetServerMetadata": UNARY, "DeleteServerMetadata": UNARY,
        "ListMigrations": UNARY,
    },
    "novalite.compute.v1.Keypairs": {
        "CreateKeypair": UNARY, "ImportKeypair": UNARY, "ListKeypairs": UNARY,
        "DeleteKeypair": UNARY,
    },
    "novalite.compute.v1.Networks": {"ListNetworks": UNARY},
    "novalite.compute.v1.Flavors": {
        "CreateFlavor": UNARY, "DeleteFlavor": UNARY, "ListFlavors": UNARY,
        "GetFlavor": UNARY, "SetFlavorExtraSpecs": UNARY, "UnsetFlavorExtraSpecs": UNARY,
        "AddFlavorAccess": UNARY, "RemoveFlavorAccess": UNARY, "ListFlavorAccess": UNARY,
    },
    "novalite.compute.v1.Hosts": {"ListHosts": UNARY, "EnableHost": UNARY, "DisableHost": UNARY,
                                  "AddHostTrait": UNARY, "RemoveHostTrait": UNARY},
    "novalite.compute.v1.Aggregates": {
        "CreateAggregate": UNARY, "GetAggregate": UNARY, "ListAggregates": UNARY,
        "UpdateAggregate": UNARY, "DeleteAggregate": UNARY, "AddAggregateHost": UNARY,
        "RemoveAggregateHost": UNARY, "SetAggregateMetadata": UNARY,
    },
    "novalite.compute.v1.AvailabilityZones": {"ListAvailabilityZones": UNARY},
    "novalite.compute.v1.Quotas": {"GetQuota": UNARY, "SetQuota": UNARY},
    "novalite.compute.v1.Tokens": {"CreateToken": UNARY},
    "novalite.compute.v1.ServerGroups": {
        "CreateServerGroup": UNARY, "GetServerGroup": UNARY, "ListServerGroups": UNARY,
        "DeleteServerGroup": UNARY,
    },
    "novalite.compute.v1.Images": {
        "CreateImage": UNARY, "ListImages": UNARY, "GetImage": UNARY, "DeleteImage": UNARY,
    },
    "novalite.internal.v1.Conductor": {
        "BuildServers": UNARY, "ServerAction": UNARY,
    },
    "novalite.internal.v1.Scheduler": {
        "SelectDestinations": UNARY, "ReportHosts": UNARY, "ReleaseAllocation": UNARY,
        "ClaimAllocation": UNARY, "RefreshAggregates": UNARY, "MoveAllocation": UNARY,
        "CheckRebuild": UNARY,
    },
    "novalite.internal.v1.ComputeAgent": {
        "BuildInstance": UNARY, "DeleteInstance": UNARY, "RunAction": UNARY,
        "GetConsoleOutput": UNARY,
        "PrepareMove": UNARY, "MigrateOut": UNARY, "FinishMove": UNARY, "RevertMove": UNARY,
        "ConfirmMove": UNARY, "RebuildInstance": UNARY, "ShelveInstance": UNARY,
    },
}


def _tree(root: pathlib.Path) -> set[str]:
    return {p.relative_to(root).as_posix() for p in root.rglob("*")
            if p.is_file() and "__pycache__" not in p.parts}


def _generated_modules() -> list[str]:
    return sorted("novalite.rpc." + rel[: -len(".py")].replace("/", ".")
                  for rel in _tree(RPC) if rel.endswith(("_pb2.py", "_pb2_grpc.py")))


def test_committed_stubs_match_the_protos(tmp_path: pathlib.Path) -> None:
    out = tmp_path / "rpc"
    run = subprocess.run(
        ["bash", str(ROOT / "scripts" / "gen_protos.sh"), str(out)],
        cwd=ROOT, env={**os.environ, "PYTHON": sys.executable},
        capture_output=True, text=True,
    )
    assert run.returncode == 0, run.stderr
    fresh, committed = _tree(out), _tree(RPC)
    assert fresh == committed, (
        f"stub files differ: missing {sorted(fresh - committed)}, "
        f"stale {sorted(committed - fresh)}; run scripts/gen_protos.sh")
    _, mismatch, errors = filecmp.cmpfiles(out, RPC, sorted(fresh), shallow=False)
    assert not mismatch and not errors, (
        f"stubs drifted from protos/: {mismatch + errors}; run scripts/gen_protos.sh")


def test_every_module_imports_and_every_service_has_its_rpcs() -> None:
    found: dict[str, dict[str, str]] = {}
    for name in _generated_modules():
        module = importlib.import_module(name)
        if not name.endswith("_pb2"):
            continue
        grpc_module = importlib.import_module(name + "_grpc")
        for service in module.DESCRIPTOR.services_by_name.values():
            assert not any(m.client_streaming for m in service.methods), service.full_name
            found[service.full_name] = {
                m.name: SERVER_STREAM if m.server_streaming else UNARY for m in service.methods}
            for attr in (f"{service.name}Stub", f"{service.name}Servicer",
                         f"add_{service.name}Servicer_to_server"):
                assert hasattr(grpc_module, attr), f"{grpc_module.__name__}.{attr}"
    assert found == EXPECTED_SERVICES


def test_power_states_carry_novas_numbers() -> None:
    assert dict(states_pb2.PowerState.items()) == {
        "POWER_STATE_NOSTATE": 0, "POWER_STATE_RUNNING": 1, "POWER_STATE_PAUSED": 3,
        "POWER_STATE_SHUTDOWN": 4, "POWER_STATE_CRASHED": 6, "POWER_STATE_SUSPENDED": 7,
    }
    assert states_pb2.TaskState.Name(0) == "TASK_STATE_NONE"  # Nova's None is the default


def test_create_server_request_round_trips_with_presence() -> None:
    request = servers_pb2.CreateServerRequest(
        name="web", flavor_id="f-1", image_id="i-1", min_count=2, max_count=5,
        availability_zone="az1", metadata={"role": "frontend", "tier": ""},
        scheduler_hints=servers_pb2.SchedulerHints(
            group="0b8e1a5c-0000-4000-8000-000000000001",
            same_host=["s-1"], different_host=["s-2", "s-3"]),
    )
    back = servers_pb2.CreateServerRequest.FromString(request.SerializeToString())
    assert back == request
    assert back.HasField("min_count") and back.min_count == 2
    assert dict(back.metadata) == {"role": "frontend", "tier": ""}
    assert list(back.scheduler_hints.different_host) == ["s-2", "s-3"]

    # Unset optional fields stay unset on the far side: the API can default them.
    bare = servers_pb2.CreateServerRequest.FromString(
        servers_pb2.CreateServerRequest(name="x", flavor_id="f", image_id="i").SerializeToString())
    assert not bare.HasField("min_count") and not bare.HasField("max_count")
    assert not bare.HasField("availability_zone") and not bare.HasField("scheduler_hints")


def test_server_with_fault_round_trips() -> None:
    created = timestamp_pb2.Timestamp(seconds=1_700_000_000, nanos=123_000_000)
    server = servers_pb2.Server(
        id="6f1c2b7e-0000-4000-8000-000000000002", name="web-1", project_id="p", user_id="u",
        flavor_id="f-1", image_id="i-1", status="ERROR",
        vm_state=states_pb2.VM_STATE_ERROR, task_state=states_pb2.TASK_STATE_NONE,
        power_state=states_pb2.POWER_STATE_NOSTATE, availability_zone="nova",
        metadata={"k": "v"}, created_at=created, updated_at=created,
        fault=faults_pb2.Fault(
            code=500, message="No valid host was found.", created_at=created,
            rejections=[faults_pb2.Rejection(check="Placement", hosts=12),
                        faults_pb2.Rejection(check="RamFilter", hosts=8)]),
    )
    back = servers_pb2.Server.FromString(server.SerializeToString())
    assert back == server
    assert [(r.check, r.hosts) for r in back.fault.rejections] == [("Placement", 12), ("RamFilter", 8)]
    assert back.created_at.ToNanoseconds() == 1_700_000_000_123_000_000
    assert not back.HasField("launched_at")


class _OneFlavor(flavors_pb2_grpc.FlavorsServicer):
    async def ListFlavors(self, request: flavors_pb2.ListFlavorsRequest,
                          context: grpc.aio.ServicerContext) -> flavors_pb2.ListFlavorsResponse:
        return flavors_pb2.ListFlavorsResponse(flavors=[flavors_pb2.Flavor(
            id="f-1", name="m1.small", vcpus=1, memory_mb=2048, root_gb=20, is_public=True)])


class _TwoEvents(servers_pb2_grpc.ServersServicer):
    async def WatchServers(self, request: servers_pb2.WatchServersRequest,
                           context: grpc.aio.ServicerContext) -> AsyncIterator[servers_pb2.ServerEvent]:
        for status in ("BUILD", "ACTIVE"):
            yield servers_pb2.ServerEvent(server=servers_pb2.Server(id=request.ids[0], status=status))


async def _serve_and_call() -> tuple[list[flavors_pb2.Flavor], grpc.StatusCode, list[str]]:
    server = grpc.aio.server()
    flavors_pb2_grpc.add_FlavorsServicer_to_server(_OneFlavor(), server)
    servers_pb2_grpc.add_ServersServicer_to_server(_TwoEvents(), server)
    port = server.add_insecure_port("127.0.0.1:0")
    assert port > 0
    await server.start()
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
            flavors = flavors_pb2_grpc.FlavorsStub(channel)
            listed = await flavors.ListFlavors(flavors_pb2.ListFlavorsRequest(page_size=10), timeout=10)
            with pytest.raises(grpc.aio.AioRpcError) as missing:
                await flavors.GetFlavor(flavors_pb2.GetFlavorRequest(id="f-1"), timeout=10)
            watch = servers_pb2_grpc.ServersStub(channel).WatchServers(
                servers_pb2.WatchServersRequest(ids=["s-1"]), timeout=10)
            statuses = [event.server.status async for event in watch]
        return list(listed.flavors), missing.value.code(), statuses
    finally:
        await server.stop(grace=None)


def test_stubs_serve_real_calls_under_grpc_aio() -> None:
    flavors, unimplemented, statuses = asyncio.run(_serve_and_call())
    assert [(f.name, f.vcpus, f.memory_mb) for f in flavors] == [("m1.small", 1, 2048)]
    assert unimplemented == grpc.StatusCode.UNIMPLEMENTED  # base servicer methods say so
    assert statuses == ["BUILD", "ACTIVE"]
