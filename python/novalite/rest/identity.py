"""Keystone v3's subset: version documents, password and token authentication,
token validation and revocation, the catalog, projects, users, roles and role
assignments. The rules are the identity manager's (and the policy table's)."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from novalite import errors
from novalite.identity.manager import (
    ASSIGNABLE_ROLES, DEFAULT_DOMAIN_ID, DEFAULT_DOMAIN_NAME, Scope, check_domain,
)
from novalite.rest import convert
from novalite.rest.app import Call, Routes, blocking, reply
from novalite.rest.schema import Body

routes = Routes("identity")

# Keystone's newest v3 minor release that this subset follows.
_V3 = "v3.14"
_UPDATED = "2020-04-07T00:00:00Z"
_MEDIA = [{"base": "application/json", "type": "application/vnd.openstack.identity-v3+json"}]


def _version(call: Call) -> dict[str, Any]:
    return {"id": _V3, "status": "stable", "updated": _UPDATED, "media-types": _MEDIA,
            "links": [{"rel": "self", "href": f"{call.base}/"}]}


@routes.get("", None)
@routes.get("/", None)
async def versions(call: Call) -> web.StreamResponse:
    return reply({"versions": {"values": [_version(call)]}}, status=300)


@routes.get("/v3", None)
@routes.get("/v3/", None)
async def version(call: Call) -> web.StreamResponse:
    return reply({"version": _version(call)})


# ---- tokens ------------------------------------------------------------------------------

def _scope(auth: Body) -> Scope | None:
    scope = auth.obj("scope")
    if scope is None:
        return None
    if "project" not in scope:
        raise errors.Unauthenticated("novalite issues project-scoped tokens only "
                                     "(no system or domain scope)")
    project = scope.only("project").obj("project", required=True)
    assert project is not None
    domain = project.obj("domain")
    return Scope(project_id=project.str("id", max_len=64), project_name=project.str("name"),
                 domain_id=domain.str("id", max_len=64) if domain else None,
                 domain_name=domain.str("name") if domain else None)


@routes.post("/v3/auth/tokens", None)
async def authenticate(call: Call) -> web.StreamResponse:
    auth = (await call.body()).obj("auth", required=True)
    assert auth is not None
    identity = auth.obj("identity", required=True)
    assert identity is not None
    methods = identity.raw("methods", required=True)
    if not isinstance(methods, list) or not methods or not all(isinstance(m, str) for m in methods):
        raise errors.Invalid("auth.identity.methods", "must be a list of method names")
    scope = _scope(auth)
    manager = call.managers.identity
    if "password" in methods:
        password = identity.obj("password", required=True)
        assert password is not None
        user = password.obj("user", required=True)
        assert user is not None
        domain = user.obj("domain")
        info = await blocking(
            manager.authenticate_password, password=user.str("password", required=True,
                                                             min_len=0, max_len=4096) or "",
            user_id=user.str("id", max_len=64), user_name=user.str("name"),
            domain_id=domain.str("id", max_len=64) if domain else None,
            domain_name=domain.str("name") if domain else None, scope=scope)
    elif "token" in methods:
        given = identity.obj("token", required=True)
        assert given is not None
        info = await blocking(manager.authenticate_token,
                              given.str("id", required=True, max_len=4096) or "", scope)
    else:
        raise errors.Unauthenticated(f"unsupported authentication method {methods[0]!r}; "
                                     "novalite takes password and token")
    body = convert.token(info, call.root, call.managers.region,
                         with_catalog="nocatalog" not in call.request.query)
    return reply(body, status=201, headers={"X-Subject-Token": info.token})


def _subject(call: Call) -> str:
    subject = call.request.headers.get("X-Subject-Token", "").strip()
    if not subject:
        raise errors.Invalid("X-Subject-Token", "name the token to check in this header")
    return subject


@routes.get("/v3/auth/tokens", "identity:validate_token")
async def validate(call: Call) -> web.StreamResponse:
    subject = _subject(call)
    info = await blocking(call.managers.identity.validate, call.caller, subject)
    return reply(convert.token(info, call.root, call.managers.region,
                               with_catalog="nocatalog" not in call.request.query),
                 headers={"X-Subject-Token": subject})


@routes.head("/v3/auth/tokens", "identity:validate_token")
async def check(call: Call) -> web.StreamResponse:
    await blocking(call.managers.identity.validate, call.caller, _subject(call))
    return reply(status=200)


@routes.delete("/v3/auth/tokens", "identity:revoke_token")
async def revoke(call: Call) -> web.StreamResponse:
    await blocking(call.managers.identity.revoke, call.caller, _subject(call))
    return reply(status=204)


@routes.get("/v3/auth/catalog", "identity:validate_token")
async def auth_catalog(call: Call) -> web.StreamResponse:
    return reply({"catalog": convert.catalog(call.root, call.managers.region),
                  "links": {"self": f"{call.base}/auth/catalog"}})


@routes.get("/v3/auth/projects", "identity:list_user_projects")
async def auth_projects(call: Call) -> web.StreamResponse:
    projects = await blocking(call.managers.identity.user_projects, call.caller,
                              call.caller.user_id)
    return reply({"projects": [convert.project(p, call.base) for p in projects],
                  "links": {"self": f"{call.base}/auth/projects"}})


# ---- domains (the one) -----------------------------------------------------------------

def _domain(call: Call) -> dict[str, Any]:
    return {"id": DEFAULT_DOMAIN_ID, "name": DEFAULT_DOMAIN_NAME, "enabled": True,
            "description": "The default domain", "tags": [], "options": {},
            "links": {"self": f"{call.base}/domains/{DEFAULT_DOMAIN_ID}"}}


@routes.get("/v3/domains", "identity:get_project")
async def list_domains(call: Call) -> web.StreamResponse:
    name = call.query.only("name", "enabled").get("name")
    found = [_domain(call)] if name in (None, DEFAULT_DOMAIN_NAME) else []
    return reply({"domains": found, "links": {"self": f"{call.base}/domains"}})


@routes.get("/v3/domains/{domain_id}", "identity:get_project")
async def get_domain(call: Call) -> web.StreamResponse:
    if call.param("domain_id") not in (DEFAULT_DOMAIN_ID, DEFAULT_DOMAIN_NAME):
        raise errors.NotFound(f"Could not find domain: {call.param('domain_id')}.")
    return reply({"domain": _domain(call)})


# ---- projects ----------------------------------------------------------------------------

@routes.get("/v3/projects", "identity:list_projects")
async def list_projects(call: Call) -> web.StreamResponse:
    q = call.query.only("name", "domain_id", "enabled", "is_domain")
    if q.bool("is_domain"):
        return reply({"projects": [], "links": {"self": f"{call.base}/projects"}})
    projects = await blocking(call.managers.identity.list_projects, name=q.get("name"),
                              domain_id=q.get("domain_id"))
    enabled = q.bool("enabled")
    return reply({"projects": [convert.project(p, call.base) for p in projects
                               if enabled is None or p.enabled == enabled],
                  "links": {"self": f"{call.base}/projects"}})


@routes.post("/v3/projects", "identity:create_project")
async def create_project(call: Call) -> web.StreamResponse:
    p = (await call.body()).only("project").obj("project", required=True)
    assert p is not None
    p.only("name", "domain_id", "description", "enabled", "is_domain", "parent_id", "tags",
           "options")
    if p.bool("is_domain"):
        raise errors.Invalid("project.is_domain", "novalite has one domain; projects only")
    parent = p.str("parent_id", max_len=64, nullable=True)
    check_domain(p.str("domain_id", max_len=64) or parent, None, "project.domain_id")
    project = await blocking(call.managers.identity.create_project,
                             name=p.str("name", required=True, max_len=64) or "",
                             description=p.str("description", min_len=0, max_len=65535) or "",
                             enabled=p.bool("enabled") is not False)
    return reply({"project": convert.project(project, call.base)}, status=201)


@routes.get("/v3/projects/{project_id}", "identity:get_project")
async def get_project(call: Call) -> web.StreamResponse:
    project = await blocking(call.managers.identity.get_project, call.caller,
                             call.param("project_id"))
    return reply({"project": convert.project(project, call.base)})


@routes.patch("/v3/projects/{project_id}", "identity:update_project")
async def update_project(call: Call) -> web.StreamResponse:
    p = (await call.body()).only("project").obj("project", required=True)
    assert p is not None
    p.only("name", "description", "enabled", "tags", "options")
    project = await blocking(call.managers.identity.update_project, call.param("project_id"),
                             name=p.str("name", max_len=64),
                             description=p.str("description", min_len=0, max_len=65535),
                             enabled=p.bool("enabled"))
    return reply({"project": convert.project(project, call.base)})


@routes.delete("/v3/projects/{project_id}", "identity:delete_project")
async def delete_project(call: Call) -> web.StreamResponse:
    await blocking(call.managers.identity.delete_project, call.param("project_id"))
    return reply(status=204)


# ---- users -------------------------------------------------------------------------------

@routes.get("/v3/users", "identity:list_users")
async def list_users(call: Call) -> web.StreamResponse:
    q = call.query.only("name", "domain_id", "enabled")
    users = await blocking(call.managers.identity.list_users, name=q.get("name"))
    return reply({"users": [convert.user(u, call.base) for u in users],
                  "links": {"self": f"{call.base}/users"}})


@routes.post("/v3/users", "identity:create_user")
async def create_user(call: Call) -> web.StreamResponse:
    u = (await call.body()).only("user").obj("user", required=True)
    assert u is not None
    u.only("name", "password", "domain_id", "default_project_id", "enabled", "description",
           "email", "options")
    user = await blocking(call.managers.identity.create_user,
                          name=u.str("name", required=True) or "",
                          password=u.str("password", max_len=4096, nullable=True),
                          domain_id=u.str("domain_id", max_len=64),
                          default_project_id=u.str("default_project_id", max_len=64,
                                                   nullable=True),
                          enabled=u.bool("enabled") is not False)
    return reply({"user": convert.user(user, call.base)}, status=201)


@routes.get("/v3/users/{user_id}", "identity:get_user")
async def get_user(call: Call) -> web.StreamResponse:
    user = await blocking(call.managers.identity.get_user, call.caller, call.param("user_id"))
    return reply({"user": convert.user(user, call.base)})


@routes.patch("/v3/users/{user_id}", "identity:update_user")
async def update_user(call: Call) -> web.StreamResponse:
    u = (await call.body()).only("user").obj("user", required=True)
    assert u is not None
    u.only("name", "password", "default_project_id", "enabled", "description", "email", "options")
    user = await blocking(call.managers.identity.update_user, call.param("user_id"),
                          name=u.str("name"), password=u.str("password", max_len=4096),
                          enabled=u.bool("enabled"),
                          default_project_id=u.str("default_project_id", max_len=64))
    return reply({"user": convert.user(user, call.base)})


@routes.delete("/v3/users/{user_id}", "identity:delete_user")
async def delete_user(call: Call) -> web.StreamResponse:
    await blocking(call.managers.identity.delete_user, call.param("user_id"))
    return reply(status=204)


@routes.get("/v3/users/{user_id}/projects", "identity:list_user_projects")
async def user_projects(call: Call) -> web.StreamResponse:
    projects = await blocking(call.managers.identity.user_projects, call.caller,
                              call.param("user_id"))
    return reply({"projects": [convert.project(p, call.base) for p in projects],
                  "links": {"self": f"{call.base}/users/{call.param('user_id')}/projects"}})


# ---- roles and assignments ---------------------------------------------------------------

@routes.get("/v3/roles", "identity:list_roles")
async def list_roles(call: Call) -> web.StreamResponse:
    name = call.query.only("name", "domain_id").get("name")
    return reply({"roles": [convert.role(r) for r in ASSIGNABLE_ROLES if name in (None, r)],
                  "links": {"self": f"{call.base}/roles"}})


@routes.get("/v3/roles/{role_id}", "identity:list_roles")
async def get_role(call: Call) -> web.StreamResponse:
    return reply({"role": convert.role(call.managers.identity.check_role(call.param("role_id")))})


_GRANT = "/v3/projects/{project_id}/users/{user_id}/roles/{role_id}"


@routes.put(_GRANT, "identity:create_grant")
async def grant(call: Call) -> web.StreamResponse:
    await blocking(call.managers.identity.assign_role, call.param("user_id"),
                   call.param("project_id"), call.param("role_id"))
    return reply(status=204)


@routes.head(_GRANT, "identity:check_grant")
async def check_grant(call: Call) -> web.StreamResponse:
    await blocking(call.managers.identity.check_assignment, call.param("user_id"),
                   call.param("project_id"), call.param("role_id"))
    return reply(status=204)


@routes.get(_GRANT, "identity:check_grant")
async def get_grant(call: Call) -> web.StreamResponse:
    return await check_grant(call)


@routes.delete(_GRANT, "identity:revoke_grant")
async def revoke_grant(call: Call) -> web.StreamResponse:
    await blocking(call.managers.identity.unassign_role, call.param("user_id"),
                   call.param("project_id"), call.param("role_id"))
    return reply(status=204)


@routes.get("/v3/projects/{project_id}/users/{user_id}/roles", "identity:list_role_assignments")
async def grants(call: Call) -> web.StreamResponse:
    found = await blocking(call.managers.identity.role_assignments, call.caller,
                           user_id=call.param("user_id"), project_id=call.param("project_id"))
    return reply({"roles": [convert.role(a.role) for a in found],
                  "links": {"self": call.request.path}})


@routes.get("/v3/role_assignments", "identity:list_role_assignments")
async def role_assignments(call: Call) -> web.StreamResponse:
    q = call.query.only("user.id", "scope.project.id", "role.id", "effective", "include_names",
                        "include_subtree")
    found = await blocking(call.managers.identity.role_assignments, call.caller,
                           user_id=q.get("user.id"), project_id=q.get("scope.project.id"))
    role_id = q.get("role.id")
    return reply({"role_assignments": [convert.role_assignment(a, call.base) for a in found
                                       if role_id in (None, a.role)],
                  "links": {"self": f"{call.base}/role_assignments"}})
