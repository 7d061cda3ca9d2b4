"""Who may call what: one table from every RPC's full method name to the roles
allowed to call it.

The auth interceptor checks this table on every call, so a method missing from it is
denied (PERMISSION_DENIED), never open by accident; tests/test_auth.py checks that
every RPC in the generated stubs has an entry. Only the standard health and
reflection services are open to callers without a token.

The table decides by role only. Which project's data a member may touch (their own:
another project's server is NOT_FOUND, another project's quota PERMISSION_DENIED) is
the managers' business, with the caller's Claims in hand.
"""

from __future__ import annotations

from types import MappingProxyType
from typing import Mapping

from novalite import errors
from novalite.auth.tokens import ADMIN, MEMBER, SERVICE, Claims
from novalite.objects import lifecycle

# Who may call: the public API's users, its operators, and the control plane's
# own services (which admins may also call, to debug them).
MEMBERS = frozenset({MEMBER, ADMIN})
ADMINS = frozenset({ADMIN})
SERVICES = frozenset({SERVICE, ADMIN})

# Callable without a token, so that load balancers, orchestrators and grpcurl
# can probe and describe a service.
OPEN_METHODS = frozenset({
    "/grpc.health.v1.Health/Check",
    "/grpc.health.v1.Health/Watch",
    "/grpc.health.v1.Health/List",
    "/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo",
    "/grpc.reflection.v1.ServerReflection/ServerReflectionInfo",
})


def _service(name: str, methods: Mapping[str, frozenset[str]]) -> dict[str, frozenset[str]]:
    return {f"/{name}/{method}": roles for method, roles in methods.items()}


POLICY: Mapping[str, frozenset[str]] = MappingProxyType({
    # Public API. Members act within their own project.
    **_service("novalite.compute.v1.Servers", {
        "CreateServer": MEMBERS,
        "GetServer": MEMBERS,
        "ListServers": MEMBERS,
        "DeleteServer": MEMBERS,
        "WatchServers": MEMBERS,
        # the lifecycle actions: objects/lifecycle.py says who may ask for each
        **{a.rpc: ADMINS if a.admin_only else MEMBERS for a in lifecycle.ACTIONS.values()},
        "ListServerActions": MEMBERS,
        "LockServer": MEMBERS,
        "UnlockServer": MEMBERS,  # an admin's lock stays for admins (the manager checks)
        "UpdateServer": MEMBERS,
        "SetServerMetadata": MEMBERS,
        "DeleteServerMetadata": MEMBERS,
        "ListMigrations": ADMINS,
    }),
    **_service("novalite.compute.v1.Flavors", {
        "CreateFlavor": ADMINS,
        "DeleteFlavor": ADMINS,
        "ListFlavors": MEMBERS,
        "GetFlavor": MEMBERS,
        "SetFlavorExtraSpecs": ADMINS,
        "UnsetFlavorExtraSpecs": ADMINS,
        "AddFlavorAccess": ADMINS,
        "RemoveFlavorAccess": ADMINS,
        "ListFlavorAccess": ADMINS,
    }),
    **_service("novalite.compute.v1.Images", {
        "CreateImage": ADMINS,
        "ListImages": MEMBERS,
        "GetImage": MEMBERS,
        "DeleteImage": ADMINS,
    }),
    **_service("novalite.compute.v1.Hosts", {
        "ListHosts": ADMINS,
        "EnableHost": ADMINS,
        "DisableHost": ADMINS,
        "AddHostTrait": ADMINS,
        "RemoveHostTrait": ADMINS,
    }),
    **_service("novalite.compute.v1.Aggregates", {
        "CreateAggregate": ADMINS,
        "GetAggregate": ADMINS,
        "ListAggregates": ADMINS,
        "UpdateAggregate": ADMINS,
        "DeleteAggregate": ADMINS,
        "AddAggregateHost": ADMINS,
        "RemoveAggregateHost": ADMINS,
        "SetAggregateMetadata": ADMINS,
    }),
    **_service("novalite.compute.v1.AvailabilityZones", {
        "ListAvailabilityZones": MEMBERS,  # the hosts for admins only (the manager)
    }),
    **_service("novalite.compute.v1.Quotas", {
        "GetQuota": MEMBERS,  # a member's own project only (the manager checks)
        "SetQuota": ADMINS,
    }),
    **_service("novalite.compute.v1.Tokens", {
        "CreateToken": ADMINS,
    }),
    # Internal services: the control plane calling itself.
    **_service("novalite.compute.v1.ServerGroups", {
        "CreateServerGroup": MEMBERS,
        "GetServerGroup": MEMBERS,
        "ListServerGroups": MEMBERS,
        "DeleteServerGroup": MEMBERS,
    }),
    **_service("novalite.internal.v1.Conductor", {
        "BuildServers": SERVICES,
        "ServerAction": SERVICES,
    }),
    **_service("novalite.internal.v1.Scheduler", {
        "SelectDestinations": SERVICES,
        "ReportHosts": SERVICES,
        "RefreshAggregates": SERVICES,
        "ReleaseAllocation": SERVICES,
        "ClaimAllocation": SERVICES,
        "MoveAllocation": SERVICES,
        "CheckRebuild": SERVICES,
    }),
    **_service("novalite.internal.v1.ComputeAgent", {
        "BuildInstance": SERVICES,
        "DeleteInstance": SERVICES,
        "RunAction": SERVICES,
        "PrepareMove": SERVICES,
        "MigrateOut": SERVICES,
        "FinishMove": SERVICES,
        "RevertMove": SERVICES,
        "ConfirmMove": SERVICES,
        "RebuildInstance": SERVICES,
        "ShelveInstance": SERVICES,
    }),
})


def is_open(method: str) -> bool:
    """Whether ``method`` may be called without a token."""
    return method in OPEN_METHODS


def allowed_roles(method: str) -> frozenset[str]:
    """The roles that may call ``method`` (none for a method not in the table)."""
    return POLICY.get(method, frozenset())


def authorize(method: str, claims: Claims) -> None:
    """Raise errors.Forbidden unless one of the caller's roles may call ``method``."""
    roles = POLICY.get(method)
    if roles is None:
        raise errors.Forbidden(f"{method} is not in the policy table; nobody may call it")
    if claims.roles.isdisjoint(roles):
        raise errors.Forbidden(
            f"{method} needs role {' or '.join(sorted(roles))}; "
            f"the token has {', '.join(sorted(claims.roles))}")
