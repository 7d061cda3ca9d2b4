"""Who may call what: one table from every RPC's full method name to the roles
allowed to call it, and beside it the operations only the REST API has (Keystone's
identity calls, Nova's read-only views of hosts), under Nova's and Keystone's policy
names. A REST route names the RPC it does the work of, or one of these, and is
allowed exactly when that RPC would be.

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
from novalite.auth.tokens import ADMIN, MEMBER, READER, SERVICE, Claims
from novalite.objects import lifecycle

# Who may call: the public API's users, its operators, and the control plane's
# own services (which admins may also call, to debug them).
MEMBERS = frozenset({MEMBER, ADMIN})
# Readers look, never change (Keystone's reader role).
READERS = frozenset({READER, MEMBER, ADMIN})
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
        "GetServer": READERS,
        "ListServers": READERS,
        "DeleteServer": MEMBERS,
        "WatchServers": READERS,
        # the lifecycle actions: objects/lifecycle.py says who may ask for each
        **{a.rpc: ADMINS if a.admin_only else MEMBERS for a in lifecycle.ACTIONS.values()},
        "ListServerActions": READERS,
        "GetConsoleOutput": MEMBERS,
        "LockServer": MEMBERS,
        "UnlockServer": MEMBERS,  # an admin's lock stays for admins (the manager checks)
        "UpdateServer": MEMBERS,
        "SetServerMetadata": MEMBERS,
        "DeleteServerMetadata": MEMBERS,
        "ListMigrations": ADMINS,
    }),
    **_service("novalite.compute.v1.Keypairs", {
        # a member's own key pairs; an admin may name another user's (the manager checks)
        "CreateKeypair": MEMBERS,
        "ImportKeypair": MEMBERS,
        "ListKeypairs": READERS,
        "DeleteKeypair": MEMBERS,
    }),
    **_service("novalite.compute.v1.Networks", {
        "ListNetworks": READERS,
    }),
    **_service("novalite.compute.v1.Flavors", {
        "CreateFlavor": ADMINS,
        "DeleteFlavor": ADMINS,
        "ListFlavors": READERS,
        "GetFlavor": READERS,
        "SetFlavorExtraSpecs": ADMINS,
        "UnsetFlavorExtraSpecs": ADMINS,
        "AddFlavorAccess": ADMINS,
        "RemoveFlavorAccess": ADMINS,
        "ListFlavorAccess": ADMINS,
    }),
    **_service("novalite.compute.v1.Images", {
        "CreateImage": ADMINS,
        "ListImages": READERS,
        "GetImage": READERS,
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
        "GetQuota": READERS,  # a member's own project only (the manager checks)
        "SetQuota": ADMINS,
    }),
    **_service("novalite.compute.v1.Tokens", {
        "CreateToken": ADMINS,
    }),
    # Internal services: the control plane calling itself.
    **_service("novalite.compute.v1.ServerGroups", {
        "CreateServerGroup": MEMBERS,
        "GetServerGroup": READERS,
        "ListServerGroups": READERS,
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
        "GetConsoleOutput": SERVICES,
        "PrepareMove": SERVICES,
        "MigrateOut": SERVICES,
        "FinishMove": SERVICES,
        "RevertMove": SERVICES,
        "ConfirmMove": SERVICES,
        "RebuildInstance": SERVICES,
        "ShelveInstance": SERVICES,
    }),
})


# The REST API's operations that no RPC does: Keystone's and Nova's policy names.
# Which user or project a caller may see (their own) the identity manager checks.
REST_OPERATIONS: Mapping[str, frozenset[str]] = MappingProxyType({
    # any authenticated caller: their own token, projects, roles
    "identity:validate_token": READERS,
    "identity:revoke_token": READERS,
    "identity:list_user_projects": READERS,
    "identity:get_project": READERS,
    "identity:get_user": READERS,
    "identity:list_roles": READERS,
    "identity:list_role_assignments": READERS,
    "identity:list_projects": ADMINS,
    "identity:create_project": ADMINS,
    "identity:update_project": ADMINS,
    "identity:delete_project": ADMINS,
    "identity:list_users": ADMINS,
    "identity:create_user": ADMINS,
    "identity:update_user": ADMINS,
    "identity:delete_user": ADMINS,
    "identity:create_grant": ADMINS,
    "identity:revoke_grant": ADMINS,
    "identity:check_grant": ADMINS,
    # Nova's views of what the API already knows
    "os_compute_api:servers:update": MEMBERS,
    "os_compute_api:os-availability-zone:list": READERS,
    "os_compute_api:os-availability-zone:detail": ADMINS,
    "os_compute_api:limits": READERS,
    "os_compute_api:os-hypervisors": ADMINS,
    "os_compute_api:os-services:list": ADMINS,
    "os_compute_api:os-hosts": ADMINS,
})


def is_open(method: str) -> bool:
    """Whether ``method`` may be called without a token."""
    return method in OPEN_METHODS


def allowed_roles(method: str) -> frozenset[str]:
    """The roles that may call ``method`` (none for a method not in the table)."""
    return POLICY.get(method, REST_OPERATIONS.get(method, frozenset()))


def authorize(method: str, claims: Claims) -> None:
    """Raise errors.Forbidden unless one of the caller's roles may call ``method``
    (an RPC, or one of the REST_OPERATIONS)."""
    roles = POLICY.get(method, REST_OPERATIONS.get(method))
    if roles is None:
        raise errors.Forbidden(f"{method} is not in the policy table; nobody may call it")
    if claims.roles.isdisjoint(roles):
        raise errors.Forbidden(
            f"{method} needs role {' or '.join(sorted(roles))}; "
            f"the token has {', '.join(sorted(claims.roles))}")
