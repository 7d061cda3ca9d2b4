"""The public API's servicers: protobuf in, ApiManager, protobuf out.

Nothing here decides anything: the caller is ``current_claims()`` (the auth
interceptor verified the token and the policy table the role), the manager checks
the rest and raises domain errors, and the error interceptor turns those into
status codes. Methods that only touch the database are plain functions, which the
interceptors run in worker threads; those that call another service or stream are
``async``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, AsyncIterator, Awaitable, Callable, TypeAlias

import grpc.aio

from novalite import convert, errors
from novalite.api.manager import ApiManager, CreateServer, ServerFilters
from novalite.objects import lifecycle, records
from novalite.rpc.novalite.compute.v1 import (
    aggregates_pb2,
    aggregates_pb2_grpc,
    flavors_pb2,
    flavors_pb2_grpc,
    hosts_pb2,
    hosts_pb2_grpc,
    images_pb2,
    images_pb2_grpc,
    keypairs_pb2,
    keypairs_pb2_grpc,
    networks_pb2,
    networks_pb2_grpc,
    quotas_pb2,
    quotas_pb2_grpc,
    server_groups_pb2,
    server_groups_pb2_grpc,
    servers_pb2,
    servers_pb2_grpc,
    tokens_pb2,
    tokens_pb2_grpc,
)
from novalite.services.context import current_claims
from novalite.services.server import AddServicer

if TYPE_CHECKING:  # grpc's classes are generic only in their type stubs
    Context: TypeAlias = grpc.aio.ServicerContext[Any, Any]
else:
    Context = grpc.aio.ServicerContext

_REBOOT_TYPES = {
    servers_pb2.REBOOT_TYPE_SOFT: "reboot_soft",
    servers_pb2.REBOOT_TYPE_HARD: "reboot_hard",
}


def _server(inst: records.Instance) -> servers_pb2.Server:
    return convert.server(inst, show_host=current_claims().is_admin)


def _optional(request: Any, field: str) -> Any:
    """A proto3 optional field's value, None when unset."""
    return getattr(request, field) if request.HasField(field) else None


class ServersServicer(servers_pb2_grpc.ServersServicer):
    def __init__(self, manager: ApiManager) -> None:
        self.manager = manager

    async def CreateServer(self, request: servers_pb2.CreateServerRequest,
                           context: Context) -> servers_pb2.CreateServerResponse:
        hints = request.scheduler_hints
        req = CreateServer(
            name=request.name, flavor_id=request.flavor_id, image_id=request.image_id,
            min_count=request.min_count if request.HasField("min_count") else 1,
            max_count=request.max_count if request.HasField("max_count") else None,
            availability_zone=(request.availability_zone
                               if request.HasField("availability_zone") else None),
            metadata=dict(request.metadata),
            group=hints.group if hints.HasField("group") else None,
            same_host=list(hints.same_host), different_host=list(hints.different_host),
            key_name=request.key_name if request.HasField("key_name") else None,
            user_data=request.user_data or None,
            admin_pass=request.admin_pass if request.HasField("admin_pass") else None,
            config_drive=request.config_drive if request.HasField("config_drive") else None,
            networks=list(request.networks))
        claims = current_claims()
        created = await self.manager.create_servers(claims, req)
        return servers_pb2.CreateServerResponse(
            servers=[convert.server(s, show_host=claims.is_admin) for s in created.servers],
            reservation_id=created.reservation_id, admin_pass=created.admin_pass)

    def GetServer(self, request: servers_pb2.GetServerRequest, context: Context) -> servers_pb2.Server:
        return _server(self.manager.get_server(current_claims(), request.id))

    def ListServers(self, request: servers_pb2.ListServersRequest,
                    context: Context) -> servers_pb2.ListServersResponse:
        f = request.filters
        filters = ServerFilters(
            status=f.status if f.HasField("status") else None,
            name=f.name if f.HasField("name") else None,
            host=f.host if f.HasField("host") else None,
            project_id=f.project_id if f.HasField("project_id") else None)
        page = self.manager.list_servers(current_claims(), filters, page_size=request.page_size,
                                         page_token=request.page_token)
        return servers_pb2.ListServersResponse(servers=[_server(s) for s in page.items],
                                               next_page_token=page.next_page_token or "")

    async def DeleteServer(self, request: servers_pb2.DeleteServerRequest,
                           context: Context) -> servers_pb2.Server:
        return _server(await self.manager.delete_server(current_claims(), request.id))

    async def WatchServers(self, request: servers_pb2.WatchServersRequest,
                           context: Context) -> AsyncIterator[servers_pb2.ServerEvent]:
        claims = current_claims()
        async for inst, when in self.manager.watch(claims, list(request.ids)):
            yield convert.server_event(inst, when, show_host=claims.is_admin)

    async def _action(self, server_id: str, action: str, **arguments: Any) -> servers_pb2.Server:
        return _server(await self.manager.server_action(current_claims(), server_id, action,
                                                        **arguments))

    async def RebootServer(self, request: servers_pb2.RebootServerRequest,
                           context: Context) -> servers_pb2.Server:
        action = _REBOOT_TYPES.get(request.type)
        if action is None:
            raise errors.Invalid("type", "must be REBOOT_TYPE_SOFT or REBOOT_TYPE_HARD")
        return await self._action(request.id, action)

    async def GetConsoleOutput(self, request: servers_pb2.GetConsoleOutputRequest,
                               context: Context) -> servers_pb2.GetConsoleOutputResponse:
        return servers_pb2.GetConsoleOutputResponse(output=await self.manager.console_output(
            current_claims(), request.id, request.length if request.HasField("length") else None))

    async def ResizeServer(self, request: servers_pb2.ResizeServerRequest,
                           context: Context) -> servers_pb2.Server:
        return await self._action(request.id, "resize", flavor_id=request.flavor_id)

    async def MigrateServer(self, request: servers_pb2.MigrateServerRequest,
                            context: Context) -> servers_pb2.Server:
        return await self._action(request.id, "migrate", host=_optional(request, "host"))

    async def LiveMigrateServer(self, request: servers_pb2.LiveMigrateServerRequest,
                                context: Context) -> servers_pb2.Server:
        return await self._action(request.id, "live_migrate", host=_optional(request, "host"))

    async def EvacuateServer(self, request: servers_pb2.EvacuateServerRequest,
                             context: Context) -> servers_pb2.Server:
        return await self._action(request.id, "evacuate", host=_optional(request, "host"))

    async def RebuildServer(self, request: servers_pb2.RebuildServerRequest,
                            context: Context) -> servers_pb2.Server:
        return await self._action(
            request.id, "rebuild", image_id=request.image_id, name=_optional(request, "name"),
            metadata=dict(request.metadata.items) if request.HasField("metadata") else None)

    async def UnshelveServer(self, request: servers_pb2.UnshelveServerRequest,
                             context: Context) -> servers_pb2.Server:
        return await self._action(request.id, "unshelve",
                                  availability_zone=_optional(request, "availability_zone"),
                                  host=_optional(request, "host"))

    def LockServer(self, request: servers_pb2.LockServerRequest, context: Context) -> servers_pb2.Server:
        return _server(self.manager.lock_server(current_claims(), request.id,
                                                _optional(request, "reason")))

    def UnlockServer(self, request: servers_pb2.UnlockServerRequest,
                     context: Context) -> servers_pb2.Server:
        return _server(self.manager.unlock_server(current_claims(), request.id))

    def UpdateServer(self, request: servers_pb2.UpdateServerRequest,
                     context: Context) -> servers_pb2.Server:
        return _server(self.manager.update_server(current_claims(), request.id,
                                                  name=_optional(request, "name")))

    def SetServerMetadata(self, request: servers_pb2.SetServerMetadataRequest,
                          context: Context) -> servers_pb2.Server:
        return _server(self.manager.set_metadata(current_claims(), request.id,
                                                 dict(request.metadata), replace=request.replace))

    def DeleteServerMetadata(self, request: servers_pb2.DeleteServerMetadataRequest,
                             context: Context) -> servers_pb2.Server:
        return _server(self.manager.delete_metadata(current_claims(), request.id,
                                                    list(request.keys)))

    def ListMigrations(self, request: servers_pb2.ListMigrationsRequest,
                       context: Context) -> servers_pb2.ListMigrationsResponse:
        return servers_pb2.ListMigrationsResponse(migrations=[
            convert.migration(m) for m in self.manager.list_migrations(
                current_claims(), server_id=_optional(request, "server_id"),
                host=_optional(request, "host"))])

    def ListServerActions(self, request: servers_pb2.ListServerActionsRequest,
                          context: Context) -> servers_pb2.ListServerActionsResponse:
        claims = current_claims()
        return servers_pb2.ListServerActionsResponse(actions=[
            convert.instance_action(a, show_traceback=claims.is_admin)
            for a in self.manager.list_actions(claims, request.id)])


def _plain_action_rpc(action: str) -> Callable[[ServersServicer, Any, Context], Awaitable[servers_pb2.Server]]:
    """The RPC of a lifecycle action whose request is only the server's id."""
    async def rpc(self: ServersServicer, request: Any, context: Context) -> servers_pb2.Server:
        return await self._action(request.id, action)
    rpc.__name__ = rpc.__qualname__ = lifecycle.PLAIN_ACTIONS[action].rpc
    return rpc


# One RPC per row of the lifecycle table whose request is only the server's id (the
# others are above: RebootServer picks one of two rows by its type, the moves with
# arguments have theirs).
for _name, _row in lifecycle.PLAIN_ACTIONS.items():
    setattr(ServersServicer, _row.rpc, _plain_action_rpc(_name))


class FlavorsServicer(flavors_pb2_grpc.FlavorsServicer):
    def __init__(self, manager: ApiManager) -> None:
        self.manager = manager

    def CreateFlavor(self, request: flavors_pb2.CreateFlavorRequest,
                     context: Context) -> flavors_pb2.Flavor:
        return convert.flavor(self.manager.create_flavor(
            current_claims(), name=request.name, vcpus=request.vcpus, memory_mb=request.memory_mb,
            root_gb=request.root_gb, ephemeral_gb=request.ephemeral_gb, swap=request.swap,
            is_public=request.is_public if request.HasField("is_public") else True,
            extra_specs=dict(request.extra_specs)))

    def DeleteFlavor(self, request: flavors_pb2.DeleteFlavorRequest,
                     context: Context) -> flavors_pb2.DeleteFlavorResponse:
        self.manager.delete_flavor(current_claims(), request.id)
        return flavors_pb2.DeleteFlavorResponse()

    def ListFlavors(self, request: flavors_pb2.ListFlavorsRequest,
                    context: Context) -> flavors_pb2.ListFlavorsResponse:
        page = self.manager.list_flavors(current_claims(), page_size=request.page_size,
                                         page_token=request.page_token)
        return flavors_pb2.ListFlavorsResponse(flavors=[convert.flavor(f) for f in page.items],
                                               next_page_token=page.next_page_token or "")

    def GetFlavor(self, request: flavors_pb2.GetFlavorRequest, context: Context) -> flavors_pb2.Flavor:
        return convert.flavor(self.manager.get_flavor(current_claims(), request.id))

    def SetFlavorExtraSpecs(self, request: flavors_pb2.SetFlavorExtraSpecsRequest,
                            context: Context) -> flavors_pb2.Flavor:
        return convert.flavor(self.manager.set_extra_specs(
            current_claims(), request.flavor_id, dict(request.extra_specs)))

    def UnsetFlavorExtraSpecs(self, request: flavors_pb2.UnsetFlavorExtraSpecsRequest,
                              context: Context) -> flavors_pb2.Flavor:
        return convert.flavor(self.manager.unset_extra_specs(
            current_claims(), request.flavor_id, list(request.keys)))

    def AddFlavorAccess(self, request: flavors_pb2.AddFlavorAccessRequest,
                        context: Context) -> flavors_pb2.FlavorAccess:
        return convert.flavor_access(request.flavor_id, self.manager.add_flavor_access(
            current_claims(), request.flavor_id, request.project_id))

    def RemoveFlavorAccess(self, request: flavors_pb2.RemoveFlavorAccessRequest,
                           context: Context) -> flavors_pb2.FlavorAccess:
        return convert.flavor_access(request.flavor_id, self.manager.remove_flavor_access(
            current_claims(), request.flavor_id, request.project_id))

    def ListFlavorAccess(self, request: flavors_pb2.ListFlavorAccessRequest,
                         context: Context) -> flavors_pb2.FlavorAccess:
        return convert.flavor_access(request.flavor_id, self.manager.list_flavor_access(
            current_claims(), request.flavor_id))


class ImagesServicer(images_pb2_grpc.ImagesServicer):
    def __init__(self, manager: ApiManager) -> None:
        self.manager = manager

    def CreateImage(self, request: images_pb2.CreateImageRequest, context: Context) -> images_pb2.Image:
        return convert.image(self.manager.create_image(
            current_claims(), name=request.name, path=request.path,
            disk_format=request.disk_format, properties=dict(request.properties)))

    def ListImages(self, request: images_pb2.ListImagesRequest,
                   context: Context) -> images_pb2.ListImagesResponse:
        claims = current_claims()
        page = self.manager.list_images(claims, page_size=request.page_size,
                                        page_token=request.page_token)
        return images_pb2.ListImagesResponse(
            images=[convert.image(i, show_path=claims.is_admin) for i in page.items],
            next_page_token=page.next_page_token or "")

    def GetImage(self, request: images_pb2.GetImageRequest, context: Context) -> images_pb2.Image:
        claims = current_claims()
        return convert.image(self.manager.get_image(claims, request.id), show_path=claims.is_admin)

    def DeleteImage(self, request: images_pb2.DeleteImageRequest,
                    context: Context) -> images_pb2.DeleteImageResponse:
        self.manager.delete_image(current_claims(), request.id)
        return images_pb2.DeleteImageResponse()


def _user(request: Any) -> str | None:
    return request.user_id if request.HasField("user_id") else None


class KeypairsServicer(keypairs_pb2_grpc.KeypairsServicer):
    def __init__(self, manager: ApiManager) -> None:
        self.manager = manager

    def CreateKeypair(self, request: keypairs_pb2.CreateKeypairRequest,
                      context: Context) -> keypairs_pb2.Keypair:
        return convert.key_pair(self.manager.create_key_pair(current_claims(), request.name,
                                                             _user(request)))

    def ImportKeypair(self, request: keypairs_pb2.ImportKeypairRequest,
                      context: Context) -> keypairs_pb2.Keypair:
        return convert.key_pair(self.manager.import_key_pair(
            current_claims(), request.name, request.public_key, _user(request)))

    def ListKeypairs(self, request: keypairs_pb2.ListKeypairsRequest,
                     context: Context) -> keypairs_pb2.ListKeypairsResponse:
        return keypairs_pb2.ListKeypairsResponse(keypairs=[
            convert.key_pair(k) for k in self.manager.list_key_pairs(current_claims(), _user(request))])

    def DeleteKeypair(self, request: keypairs_pb2.DeleteKeypairRequest,
                      context: Context) -> keypairs_pb2.DeleteKeypairResponse:
        self.manager.delete_key_pair(current_claims(), request.name, _user(request))
        return keypairs_pb2.DeleteKeypairResponse()


class NetworksServicer(networks_pb2_grpc.NetworksServicer):
    def __init__(self, manager: ApiManager) -> None:
        self.manager = manager

    def ListNetworks(self, request: networks_pb2.ListNetworksRequest,
                     context: Context) -> networks_pb2.ListNetworksResponse:
        claims = current_claims()
        return networks_pb2.ListNetworksResponse(networks=[
            convert.network(n, show_bridge=claims.is_admin)
            for n in self.manager.list_networks(claims)])


class ServerGroupsServicer(server_groups_pb2_grpc.ServerGroupsServicer):
    def __init__(self, manager: ApiManager) -> None:
        self.manager = manager

    def CreateServerGroup(self, request: server_groups_pb2.CreateServerGroupRequest,
                          context: Context) -> server_groups_pb2.ServerGroup:
        return convert.server_group(self.manager.create_server_group(
            current_claims(), name=request.name, policy=request.policy,
            max_server_per_host=(request.max_server_per_host
                                 if request.HasField("max_server_per_host") else None)))

    def GetServerGroup(self, request: server_groups_pb2.GetServerGroupRequest,
                       context: Context) -> server_groups_pb2.ServerGroup:
        return convert.server_group(self.manager.get_server_group(current_claims(), request.id))

    def ListServerGroups(self, request: server_groups_pb2.ListServerGroupsRequest,
                         context: Context) -> server_groups_pb2.ListServerGroupsResponse:
        return server_groups_pb2.ListServerGroupsResponse(server_groups=[
            convert.server_group(g) for g in self.manager.list_server_groups(current_claims())])

    def DeleteServerGroup(self, request: server_groups_pb2.DeleteServerGroupRequest,
                          context: Context) -> server_groups_pb2.DeleteServerGroupResponse:
        self.manager.delete_server_group(current_claims(), request.id)
        return server_groups_pb2.DeleteServerGroupResponse()


class HostsServicer(hosts_pb2_grpc.HostsServicer):
    def __init__(self, manager: ApiManager) -> None:
        self.manager = manager

    def ListHosts(self, request: hosts_pb2.ListHostsRequest,
                  context: Context) -> hosts_pb2.ListHostsResponse:
        page = self.manager.list_hosts(current_claims(), page_size=request.page_size,
                                       page_token=request.page_token)
        return hosts_pb2.ListHostsResponse(
            hosts=[convert.host(v.host, v.service, v.availability_zone) for v in page.items],
            next_page_token=page.next_page_token or "")

    async def EnableHost(self, request: hosts_pb2.EnableHostRequest, context: Context) -> hosts_pb2.Host:
        view = await self.manager.set_host_enabled(current_claims(), request.name, True)
        return convert.host(view.host, view.service, view.availability_zone)

    async def DisableHost(self, request: hosts_pb2.DisableHostRequest,
                          context: Context) -> hosts_pb2.Host:
        view = await self.manager.set_host_enabled(current_claims(), request.name, False,
                                                   request.reason)
        return convert.host(view.host, view.service, view.availability_zone)

    async def AddHostTrait(self, request: hosts_pb2.HostTraitRequest, context: Context) -> hosts_pb2.Host:
        view = await self.manager.set_host_trait(current_claims(), request.name, request.trait, True)
        return convert.host(view.host, view.service, view.availability_zone)

    async def RemoveHostTrait(self, request: hosts_pb2.HostTraitRequest,
                              context: Context) -> hosts_pb2.Host:
        view = await self.manager.set_host_trait(current_claims(), request.name, request.trait, False)
        return convert.host(view.host, view.service, view.availability_zone)


class AggregatesServicer(aggregates_pb2_grpc.AggregatesServicer):
    def __init__(self, manager: ApiManager) -> None:
        self.manager = manager

    async def CreateAggregate(self, request: aggregates_pb2.CreateAggregateRequest,
                              context: Context) -> aggregates_pb2.Aggregate:
        return convert.aggregate(await self.manager.create_aggregate(
            current_claims(), name=request.name,
            availability_zone=(request.availability_zone
                               if request.HasField("availability_zone") else None),
            metadata=dict(request.metadata)))

    def GetAggregate(self, request: aggregates_pb2.GetAggregateRequest,
                     context: Context) -> aggregates_pb2.Aggregate:
        return convert.aggregate(self.manager.get_aggregate(current_claims(), request.id))

    def ListAggregates(self, request: aggregates_pb2.ListAggregatesRequest,
                       context: Context) -> aggregates_pb2.ListAggregatesResponse:
        return aggregates_pb2.ListAggregatesResponse(aggregates=[
            convert.aggregate(a) for a in self.manager.list_aggregates(current_claims())])

    async def UpdateAggregate(self, request: aggregates_pb2.UpdateAggregateRequest,
                              context: Context) -> aggregates_pb2.Aggregate:
        return convert.aggregate(await self.manager.update_aggregate(
            current_claims(), request.id,
            name=request.name if request.HasField("name") else None,
            availability_zone=(request.availability_zone
                               if request.HasField("availability_zone") else None)))

    async def DeleteAggregate(self, request: aggregates_pb2.DeleteAggregateRequest,
                              context: Context) -> aggregates_pb2.DeleteAggregateResponse:
        await self.manager.delete_aggregate(current_claims(), request.id)
        return aggregates_pb2.DeleteAggregateResponse()

    async def AddAggregateHost(self, request: aggregates_pb2.AddAggregateHostRequest,
                               context: Context) -> aggregates_pb2.Aggregate:
        return convert.aggregate(await self.manager.add_aggregate_host(
            current_claims(), request.id, request.host))

    async def RemoveAggregateHost(self, request: aggregates_pb2.RemoveAggregateHostRequest,
                                  context: Context) -> aggregates_pb2.Aggregate:
        return convert.aggregate(await self.manager.remove_aggregate_host(
            current_claims(), request.id, request.host))

    async def SetAggregateMetadata(self, request: aggregates_pb2.SetAggregateMetadataRequest,
                                   context: Context) -> aggregates_pb2.Aggregate:
        return convert.aggregate(await self.manager.set_aggregate_metadata(
            current_claims(), request.id, convert.metadata_change(request.metadata, request.unset)))


class AvailabilityZonesServicer(aggregates_pb2_grpc.AvailabilityZonesServicer):
    def __init__(self, manager: ApiManager) -> None:
        self.manager = manager

    def ListAvailabilityZones(self, request: aggregates_pb2.ListAvailabilityZonesRequest,
                              context: Context) -> aggregates_pb2.ListAvailabilityZonesResponse:
        return aggregates_pb2.ListAvailabilityZonesResponse(availability_zones=[
            convert.availability_zone(z.name, z.available, z.services)
            for z in self.manager.list_availability_zones(current_claims())])


class QuotasServicer(quotas_pb2_grpc.QuotasServicer):
    def __init__(self, manager: ApiManager) -> None:
        self.manager = manager

    def GetQuota(self, request: quotas_pb2.GetQuotaRequest, context: Context) -> quotas_pb2.Quota:
        return convert.quota(self.manager.get_quota(current_claims(), request.project_id or None))

    def SetQuota(self, request: quotas_pb2.SetQuotaRequest, context: Context) -> quotas_pb2.Quota:
        limits = {name: int(getattr(request, name)) for name in ("instances", "cores", "ram")
                  if request.HasField(name)}
        return convert.quota(self.manager.set_quota(current_claims(), request.project_id, limits))


class TokensServicer(tokens_pb2_grpc.TokensServicer):
    def __init__(self, manager: ApiManager) -> None:
        self.manager = manager

    def CreateToken(self, request: tokens_pb2.CreateTokenRequest,
                    context: Context) -> tokens_pb2.CreateTokenResponse:
        issued = self.manager.create_token(
            current_claims(), project_id=request.project_id, user_id=request.user_id,
            roles=list(request.roles),
            ttl_seconds=request.ttl_seconds if request.HasField("ttl_seconds") else None)
        out = tokens_pb2.CreateTokenResponse(token=issued.token)
        ts = convert.timestamp(issued.expires_at)
        if ts is not None:
            out.expires_at.CopyFrom(ts)
        return out


def servicers(manager: ApiManager) -> list[tuple[AddServicer, Any]]:
    """Every public service, ready for services.server.start_server."""
    return [
        (servers_pb2_grpc.add_ServersServicer_to_server, ServersServicer(manager)),
        (flavors_pb2_grpc.add_FlavorsServicer_to_server, FlavorsServicer(manager)),
        (images_pb2_grpc.add_ImagesServicer_to_server, ImagesServicer(manager)),
        (keypairs_pb2_grpc.add_KeypairsServicer_to_server, KeypairsServicer(manager)),
        (networks_pb2_grpc.add_NetworksServicer_to_server, NetworksServicer(manager)),
        (server_groups_pb2_grpc.add_ServerGroupsServicer_to_server, ServerGroupsServicer(manager)),
        (hosts_pb2_grpc.add_HostsServicer_to_server, HostsServicer(manager)),
        (aggregates_pb2_grpc.add_AggregatesServicer_to_server, AggregatesServicer(manager)),
        (aggregates_pb2_grpc.add_AvailabilityZonesServicer_to_server,
         AvailabilityZonesServicer(manager)),
        (quotas_pb2_grpc.add_QuotasServicer_to_server, QuotasServicer(manager)),
        (tokens_pb2_grpc.add_TokensServicer_to_server, TokensServicer(manager)),
    ]


__all__ = [
    "AggregatesServicer", "AvailabilityZonesServicer", "FlavorsServicer", "HostsServicer",
    "ImagesServicer", "KeypairsServicer", "NetworksServicer", "QuotasServicer",
    "ServerGroupsServicer",
    "ServersServicer", "TokensServicer", "servicers",
]
