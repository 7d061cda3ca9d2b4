"""Keystone's identity subset in process (identity/manager.py over a real SQLite
database), and the REST edge's pure parts: microversions and fault shapes. The
clients over real sockets are tests/test_rest.py's."""

from __future__ import annotations

from pathlib import Path

import pytest

from novalite import errors
from novalite.auth.tokens import ADMIN, MEMBER, READER, TokenSigner
from novalite.db.database import Database
from novalite.identity.manager import IdentityManager, Scope
from novalite.rest import faults, microversion
from novalite.rest.microversion import Version

SECRET = b"0123456789abcdef0123456789abcdef"


@pytest.fixture
def identity(tmp_path: Path) -> IdentityManager:
    db = Database(f"sqlite:///{tmp_path / 'identity.db'}")
    db.upgrade()
    manager = IdentityManager(db, TokenSigner(SECRET), expiration=600)
    manager.bootstrap(password="admin-pw")
    return manager


def test_bootstrap_is_idempotent_and_resets_the_password(identity: IdentityManager) -> None:
    identity.bootstrap(password="new-pw")
    with pytest.raises(errors.Unauthenticated):
        identity.authenticate_password(user_name="admin", domain_id="default", password="admin-pw")
    info = identity.authenticate_password(user_name="admin", domain_id="default", password="new-pw")
    assert info.claims.project_id == "admin" and info.claims.roles == {ADMIN, MEMBER, READER}
    assert [a.role for a in identity.db.list_role_assignments(user_id="admin")] == [ADMIN]


def test_password_authentication_fails_alike_whatever_was_wrong(identity: IdentityManager) -> None:
    project = identity.create_project(name="demo")
    user = identity.create_user(name="alice", password="pw", default_project_id=project.id)
    identity.assign_role(user.id, project.id, MEMBER)
    info = identity.authenticate_password(user_name="alice", domain_name="Default", password="pw")
    assert (info.claims.project_id, info.claims.roles) == (project.id, {MEMBER, READER})
    stored = identity.db.user_password_hash(user.id)
    assert stored is not None and stored.startswith("$argon2id$") and "pw" not in stored
    messages = set()
    for kwargs in ({"user_name": "alice", "password": "wrong"},
                   {"user_name": "nobody", "password": "pw"},
                   {"user_id": "no-such-id", "password": "pw"}):
        with pytest.raises(errors.Unauthenticated) as e:
            identity.authenticate_password(domain_id="default", **kwargs)
        messages.add(str(e.value))
    identity.update_user(user.id, enabled=False)
    with pytest.raises(errors.Unauthenticated) as e:
        identity.authenticate_password(user_name="alice", domain_id="default", password="pw")
    messages.add(str(e.value))
    assert len(messages) == 1
    with pytest.raises(errors.Invalid, match="domain"):
        identity.authenticate_password(user_name="alice", password="pw")


def test_scopes_and_rescoping(identity: IdentityManager) -> None:
    a, b, c = (identity.create_project(name=n) for n in "abc")
    user = identity.create_user(name="bob", password="pw")
    identity.assign_role(user.id, a.id, READER)
    identity.assign_role(user.id, b.id, ADMIN)
    with pytest.raises(errors.Unauthenticated, match="project-scoped"):
        identity.authenticate_password(user_id=user.id, password="pw")
    first = identity.authenticate_password(user_id=user.id, password="pw",
                                           scope=Scope(project_name="a", domain_id="default"))
    assert first.claims.roles == {READER}
    second = identity.authenticate_token(first.token, Scope(project_id=b.id))
    assert second.claims.project_id == b.id and second.claims.is_admin
    assert second.claims.expires_at <= first.claims.expires_at
    with pytest.raises(errors.Unauthenticated, match="no role"):
        identity.authenticate_token(first.token, Scope(project_id=c.id))
    # an identity that only a signed token knows stays in its own project
    minted = identity.signer.issue("elsewhere", "someone", [MEMBER])
    again = identity.authenticate_token(minted)
    assert (again.claims.project_id, again.claims.user_id) == ("elsewhere", "someone")
    with pytest.raises(errors.Unauthenticated, match="own project"):
        identity.authenticate_token(minted, Scope(project_id=a.id))


def test_validate_and_revoke(identity: IdentityManager) -> None:
    admin = identity.authenticate_password(user_id="admin", password="admin-pw")
    project = identity.create_project(name="p")
    user = identity.create_user(name="carol", password="pw", default_project_id=project.id)
    identity.assign_role(user.id, project.id, MEMBER)
    carol = identity.authenticate_password(user_id=user.id, password="pw")
    assert identity.validate(carol.claims, carol.token).user_name == "carol"
    with pytest.raises(errors.Forbidden):
        identity.validate(carol.claims, admin.token)
    assert identity.validate(admin.claims, carol.token).project_name == "p"
    identity.revoke(carol.claims, carol.token)
    with pytest.raises(errors.Unauthenticated, match="revoked"):
        identity.signer.verify(carol.token)
    with pytest.raises(errors.NotFound):
        identity.validate(admin.claims, carol.token)
    # another process learns it from the database
    other = TokenSigner(SECRET)
    other.verify(carol.token)
    other.revocations.replace(identity.db.revoked_tokens())
    with pytest.raises(errors.Unauthenticated, match="revoked"):
        other.verify(carol.token)
    assert carol.claims.token_id in identity.db.revoked_tokens()


def test_roles_are_keystones_defaults(identity: IdentityManager) -> None:
    project = identity.create_project(name="q")
    with pytest.raises(errors.NotFound, match="roles are admin, member, reader"):
        identity.assign_role("admin", project.id, "service")
    with pytest.raises(errors.Conflict):
        identity.create_project(name="q")


def test_microversions() -> None:
    assert microversion.requested({}) == Version(2, 1)
    assert microversion.requested({"OpenStack-API-Version": "compute 2.47"}) == Version(2, 47)
    assert microversion.requested({"OpenStack-API-Version": "volume 3.1, compute latest"}) \
        == microversion.MAX_VERSION
    assert microversion.requested({"X-OpenStack-Nova-API-Version": "2.10"}) == Version(2, 10)
    with pytest.raises(microversion.NotAcceptable, match="maximum is 2.95"):
        microversion.requested({"OpenStack-API-Version": "compute 2.96"})
    with pytest.raises(errors.Invalid):
        microversion.requested({"OpenStack-API-Version": "compute two"})
    assert Version(2, 10) > Version(2, 9)


def test_faults_have_novas_and_keystones_shapes() -> None:
    assert faults.status_of(errors.Invalid("server.name", "x")) == 400
    assert faults.status_of(errors.QuotaExceeded("cores", 1, 1, 1)) == 403
    assert faults.status_of(errors.InvalidState("busy")) == 409
    assert faults.status_of(RuntimeError()) is None
    assert faults.nova(404, "gone") == {"itemNotFound": {"code": 404, "message": "gone"}}
    assert faults.nova(406, "v") == {"computeFault": {"code": 406, "message": "v"}}
    assert faults.keystone(401, "no") == {"error": {"code": 401, "title": "Unauthorized",
                                                     "message": "no"}}


def test_every_route_names_a_policy_entry_and_every_entry_a_route() -> None:
    """A route is allowed by an RPC's entry or one of the REST-only operations, so
    no REST route is open by accident and no entry is stale."""
    from novalite.auth import policy
    from novalite.rest import compute, identity, image
    from novalite.rest.app import DEFERRED

    used = set()
    for module in (identity, compute, image):
        for route in module.routes.all:
            if route.policy in (None, DEFERRED):
                continue
            assert route.policy in policy.POLICY or route.policy in policy.REST_OPERATIONS, route
            used.add(route.policy)
    assert set(policy.REST_OPERATIONS) <= used
    open_routes = {(r.method, r.path) for m in (identity, compute, image) for r in m.routes.all
                   if r.policy is None}
    assert all(path in ("", "/", "/v3", "/v3/", "/v2.1", "/v2.1/") or path == "/v3/auth/tokens"
               for _, path in open_routes), open_routes


def test_every_lifecycle_action_has_its_nova_key() -> None:
    """POST /servers/{id}/action serves the lifecycle table by each row's Nova key:
    a new row needs one (``rest_action=``) to appear in the REST API."""
    from novalite.objects import lifecycle

    keys = lifecycle.by_rest_action()
    assert all(a.rest_action for a in lifecycle.ACTIONS.values()), [
        name for name, a in lifecycle.ACTIONS.items() if not a.rest_action]
    assert {k: v for k, v in keys.items() if len(v) > 1} == {"reboot": ["reboot_soft", "reboot_hard"]}
