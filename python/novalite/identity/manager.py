"""The identity's domain logic (no HTTP here): password and token authentication,
token validation and revocation, projects, users and role assignments, Keystone's
way.

Tokens are auth/tokens.py's: signed, expiring, carrying the project, the user and
the roles (with the roles they imply: admin > member > reader). Passwords are
stored as argon2id hashes (argon2-cffi); a failed authentication says only that it
failed, whichever part was wrong, and takes as long when the user does not exist.

novalite has one domain, Keystone's ``default`` ("Default"); a request naming
another is refused.

Identities that tokens name but that are not in the database (tokens signed with
``novalite token create``) still validate and rescope to their own project: the
database holds whom a password can authenticate, not every identity there is.
"""

from __future__ import annotations

import logging
import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Callable, Sequence, TypeVar

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

from novalite import errors
from novalite.auth.tokens import ADMIN, IMPLIED_ROLES, MEMBER, READER, Claims, TokenSigner
from novalite.db.database import Database
from novalite.objects import records
from novalite.settings import default

LOG = logging.getLogger(__name__)

DEFAULT_DOMAIN_ID = "default"
DEFAULT_DOMAIN_NAME = "Default"
# The roles a user may be assigned (Keystone's defaults); "service" is the
# control plane's own and is never assigned.
ASSIGNABLE_ROLES = (ADMIN, MEMBER, READER)
PASSWORD_MAX = 4096

_FAILED = "The request you have made requires authentication."
# argon2id at OWASP's recommended minimum (19 MiB, 2 passes, 1 lane): 60 ms a
# check on this project's loaded 2-core machine, where argon2-cffi's default (64 MiB,
# 3 passes, 4 lanes) took 400 ms. A hash made with other parameters is redone at the
# next successful authentication.
def password_hasher() -> PasswordHasher:
    return PasswordHasher(time_cost=2, memory_cost=19 * 1024, parallelism=1)

T = TypeVar("T")


@dataclass(frozen=True)
class Scope:
    """The project a token is asked for: by id, or by name within a domain."""

    project_id: str | None = None
    project_name: str | None = None
    domain_id: str | None = None
    domain_name: str | None = None


@dataclass(frozen=True)
class TokenInfo:
    """A token and what it says, with the records it names (None for an identity
    that is not in the database)."""

    token: str
    claims: Claims
    methods: tuple[str, ...]
    user: records.User | None
    project: records.Project | None

    @property
    def user_name(self) -> str:
        return self.user.name if self.user is not None else self.claims.user_id

    @property
    def project_name(self) -> str:
        return self.project.name if self.project is not None else self.claims.project_id


def new_id() -> str:
    """Keystone's ids: 32 hex digits."""
    return uuid.uuid4().hex


def check_domain(domain_id: str | None, domain_name: str | None, field: str) -> None:
    if domain_id not in (None, DEFAULT_DOMAIN_ID) or domain_name not in (None, DEFAULT_DOMAIN_NAME):
        raise errors.Invalid(field, f"novalite has one domain, {DEFAULT_DOMAIN_ID!r} "
                                    f"({DEFAULT_DOMAIN_NAME})")


class IdentityManager:
    """``signer`` issues and checks the tokens; ``expiration`` is their lifetime
    in seconds (Keystone's [token] expiration)."""

    def __init__(self, db: Database, signer: TokenSigner, *,
                 expiration: int = default("token.expiration"),
                 hasher: PasswordHasher | None = None) -> None:
        self.db = db
        self.signer = signer
        self.expiration = expiration
        self.hasher = hasher or password_hasher()
        # checked when the user does not exist, so that the answer takes as long
        self._dummy_hash = self.hasher.hash(uuid.uuid4().hex)

    # ---- authentication ------------------------------------------------------------

    def authenticate_password(self, *, password: str, user_id: str | None = None,
                              user_name: str | None = None, domain_id: str | None = None,
                              domain_name: str | None = None,
                              scope: Scope | None = None) -> TokenInfo:
        """A token for the user whose password this is, scoped to ``scope`` (else
        to the user's default project). Unauthenticated for anything wrong."""
        if not isinstance(password, str) or len(password) > PASSWORD_MAX:
            raise errors.Invalid("auth.identity.password.user.password",
                                 f"must be a string of at most {PASSWORD_MAX} characters")
        if user_id is None and user_name is None:
            raise errors.Invalid("auth.identity.password.user", "give the user's id or name")
        if user_id is None and domain_id is None and domain_name is None:
            raise errors.Invalid("auth.identity.password.user.domain",
                                 "a user named by name needs its domain")
        try:
            check_domain(domain_id, domain_name, "auth.identity.password.user.domain")
            user = (self.db.get_user(user_id) if user_id is not None
                    else self.db.find_user(str(user_name), DEFAULT_DOMAIN_ID))
            stored = self.db.user_password_hash(user.id)
        except (errors.NotFound, errors.Invalid):
            user, stored = None, None
        if not self._password_matches(stored, password) or user is None:
            raise errors.Unauthenticated(_FAILED)
        if not user.enabled:
            raise errors.Unauthenticated(_FAILED)
        if stored is not None and self.hasher.check_needs_rehash(stored):
            self.db.update_user(user.id, password_hash=self.hasher.hash(password))
        project = self._scope_project(user, scope)
        return self._issue(user, project, ("password",))

    def _password_matches(self, stored: str | None, password: str) -> bool:
        try:
            return self.hasher.verify(stored or self._dummy_hash, password) and stored is not None
        except (VerifyMismatchError, VerificationError, InvalidHashError):
            return False

    def authenticate_token(self, token: str, scope: Scope | None = None) -> TokenInfo:
        """A new token from a valid one (Keystone's "token" method): for the same
        user, on ``scope``'s project (one the user has a role on) or the token's
        own; it expires when the original does, not later."""
        claims = self.signer.verify(token)
        user = self._maybe(self.db.get_user, claims.user_id)
        if user is None or scope is None:
            project_id = self._scope_id(scope) if scope is not None else claims.project_id
            if project_id != claims.project_id:
                raise errors.Unauthenticated("this identity can only be scoped to its own project")
            return self._reissue(claims, user, self._maybe(self.db.get_project, project_id))
        if not user.enabled:
            raise errors.Unauthenticated(_FAILED)
        project = self._scope_project(user, scope)
        return self._issue(user, project, ("token",), not_after=claims.expires_at)

    def _reissue(self, claims: Claims, user: records.User | None,
                 project: records.Project | None) -> TokenInfo:
        ttl = int(claims.expires_at.timestamp() - self.signer.now())
        if ttl < 1:
            raise errors.Unauthenticated("the token expires within a second")
        token, new = self.signer.issue_with_claims(claims.project_id, claims.user_id,
                                                   claims.roles, min(ttl, self.expiration))
        return TokenInfo(token, new, ("token",), user, project)

    def _scope_id(self, scope: Scope) -> str:
        if scope.project_id is not None:
            return scope.project_id
        try:
            check_domain(scope.domain_id, scope.domain_name, "auth.scope.project.domain")
            return self.db.find_project(str(scope.project_name), DEFAULT_DOMAIN_ID).id
        except (errors.NotFound, errors.Invalid):
            raise errors.Unauthenticated("unknown project in the scope") from None

    def _scope_project(self, user: records.User, scope: Scope | None) -> records.Project:
        if scope is None:
            if user.default_project_id is None:
                raise errors.Unauthenticated(
                    "novalite issues project-scoped tokens only: name a project in "
                    "auth.scope, or give the user a default project")
            project_id = user.default_project_id
        else:
            if scope.project_id is None and scope.project_name is None:
                raise errors.Invalid("auth.scope.project", "give the project's id or name")
            project_id = self._scope_id(scope)
        project = self._maybe(self.db.get_project, project_id)
        if project is None or not project.enabled:
            raise errors.Unauthenticated("unknown or disabled project in the scope")
        return project

    def _issue(self, user: records.User, project: records.Project, methods: tuple[str, ...],
               not_after: datetime | None = None) -> TokenInfo:
        roles = self.effective_roles(user.id, project.id)
        if not roles:
            raise errors.Unauthenticated(f"user {user.id} has no role on project {project.id}")
        ttl = self.expiration
        if not_after is not None:
            ttl = min(ttl, int(not_after.timestamp() - self.signer.now()))
            if ttl < 1:
                raise errors.Unauthenticated("the token expires within a second")
        token, claims = self.signer.issue_with_claims(project.id, user.id, roles, ttl)
        return TokenInfo(token, claims, methods, user, project)

    def effective_roles(self, user_id: str, project_id: str) -> frozenset[str]:
        """The roles assigned on the project and those they imply."""
        out: set[str] = set()
        for a in self.db.list_role_assignments(user_id=user_id, project_id=project_id):
            out |= IMPLIED_ROLES.get(a.role, frozenset())
        return frozenset(out)

    # ---- tokens --------------------------------------------------------------------

    def validate(self, caller: Claims, subject: str) -> TokenInfo:
        """What ``subject`` says, if it is valid: NotFound otherwise (Keystone's
        404). Callers may validate their own tokens; admins anyone's."""
        info = self._subject(subject)
        if info.claims.user_id != caller.user_id and not caller.is_admin:
            raise errors.Forbidden("only an admin may validate another user's token")
        return info

    def revoke(self, caller: Claims, subject: str) -> None:
        """Revoke ``subject``, at once for this process and every service within
        token.revocation_refresh_interval. One's own tokens, or as admin anyone's."""
        info = self._subject(subject)
        if info.claims.user_id != caller.user_id and not caller.is_admin:
            raise errors.Forbidden("only an admin may revoke another user's token")
        self.db.revoke_token(info.claims.token_id, info.claims.expires_at)
        self.signer.revocations.add(info.claims.token_id, info.claims.expires_at)

    def _subject(self, subject: str) -> TokenInfo:
        try:
            claims = self.signer.verify(subject)
        except errors.Unauthenticated as e:
            raise errors.NotFound(f"could not find token: {e}") from None
        return TokenInfo(subject, claims, ("password",), self._maybe(self.db.get_user, claims.user_id),
                         self._maybe(self.db.get_project, claims.project_id))

    @staticmethod
    def _maybe(get: Callable[[str], T], key: str) -> T | None:
        try:
            return get(key)
        except errors.NotFound:
            return None

    # ---- projects ------------------------------------------------------------------

    def create_project(self, *, name: str, domain_id: str | None = None, description: str = "",
                       enabled: bool = True, project_id: str | None = None) -> records.Project:
        check_domain(domain_id, None, "project.domain_id")
        return self.db.create_project(project_id=project_id or new_id(), name=name,
                                      domain_id=DEFAULT_DOMAIN_ID, description=description,
                                      enabled=enabled)

    def get_project(self, caller: Claims, project_id: str) -> records.Project:
        """Members see the projects they have a role on; admins every one."""
        if not caller.is_admin and project_id not in self._own_projects(caller):
            raise errors.NotFound(f"project {project_id} not found")
        return self.db.get_project(project_id)

    def list_projects(self, *, name: str | None = None,
                      domain_id: str | None = None) -> list[records.Project]:
        if domain_id not in (None, DEFAULT_DOMAIN_ID):
            return []
        return self.db.list_projects(name=name)

    def user_projects(self, caller: Claims, user_id: str) -> list[records.Project]:
        if user_id != caller.user_id and not caller.is_admin:
            raise errors.Forbidden("only an admin may list another user's projects")
        ids = {a.project_id for a in self.db.list_role_assignments(user_id=user_id)}
        if user_id == caller.user_id:
            ids.add(caller.project_id)
        return self.db.list_projects(ids=ids)

    def _own_projects(self, caller: Claims) -> set[str]:
        own = {a.project_id for a in self.db.list_role_assignments(user_id=caller.user_id)}
        return own | {caller.project_id}

    def update_project(self, project_id: str, *, name: str | None = None,
                       description: str | None = None,
                       enabled: bool | None = None) -> records.Project:
        return self.db.update_project(project_id, name=name, description=description,
                                      enabled=enabled)

    def delete_project(self, project_id: str) -> None:
        self.db.delete_project(project_id)

    # ---- users ---------------------------------------------------------------------

    def create_user(self, *, name: str, password: str | None = None, domain_id: str | None = None,
                    default_project_id: str | None = None, enabled: bool = True,
                    user_id: str | None = None) -> records.User:
        check_domain(domain_id, None, "user.domain_id")
        return self.db.create_user(user_id=user_id or new_id(), name=name,
                                   domain_id=DEFAULT_DOMAIN_ID,
                                   password_hash=self._hash(password),
                                   default_project_id=default_project_id, enabled=enabled)

    def _hash(self, password: str | None) -> str | None:
        if password is None:
            return None
        if not isinstance(password, str) or not 1 <= len(password) <= PASSWORD_MAX:
            raise errors.Invalid("user.password", f"must be 1..{PASSWORD_MAX} characters")
        return self.hasher.hash(password)

    def get_user(self, caller: Claims, user_id: str) -> records.User:
        if user_id != caller.user_id and not caller.is_admin:
            raise errors.NotFound(f"user {user_id} not found")
        return self.db.get_user(user_id)

    def list_users(self, *, name: str | None = None) -> list[records.User]:
        return self.db.list_users(name=name)

    def update_user(self, user_id: str, *, name: str | None = None, password: str | None = None,
                    enabled: bool | None = None,
                    default_project_id: str | None = None) -> records.User:
        return self.db.update_user(user_id, name=name, password_hash=self._hash(password),
                                   enabled=enabled, default_project_id=default_project_id)

    def delete_user(self, user_id: str) -> None:
        self.db.delete_user(user_id)

    # ---- roles ---------------------------------------------------------------------

    @staticmethod
    def check_role(role: str) -> str:
        if role not in ASSIGNABLE_ROLES:
            raise errors.NotFound(f"role {role} not found; the roles are "
                                  f"{', '.join(ASSIGNABLE_ROLES)}")
        return role

    def assign_role(self, user_id: str, project_id: str, role: str) -> None:
        self.db.assign_role(user_id, project_id, self.check_role(role))

    def unassign_role(self, user_id: str, project_id: str, role: str) -> None:
        self.db.unassign_role(user_id, project_id, self.check_role(role))

    def check_assignment(self, user_id: str, project_id: str, role: str) -> None:
        self.check_role(role)
        if not any(a.role == role for a in self.db.list_role_assignments(
                user_id=user_id, project_id=project_id)):
            raise errors.NotFound(f"user {user_id} has no role {role} on project {project_id}")

    def role_assignments(self, caller: Claims, *, user_id: str | None = None,
                         project_id: str | None = None) -> list[records.RoleAssignment]:
        """Admins see all; others only their own."""
        if not caller.is_admin:
            if user_id not in (None, caller.user_id):
                raise errors.Forbidden("only an admin may list another user's role assignments")
            user_id = caller.user_id
        return self.db.list_role_assignments(user_id=user_id, project_id=project_id)

    # ---- bootstrap -----------------------------------------------------------------

    def bootstrap(self, *, password: str, project: str = "admin", user: str = "admin") -> None:
        """Keystone's ``bootstrap``: the project ``project`` and the user ``user``
        (both with that id and name), the user an admin there, its password
        ``password`` (reset if the user exists). Idempotent."""
        try:
            self.db.get_project(project)
        except errors.NotFound:
            self.create_project(name=project, project_id=project,
                                description="Bootstrap project for initializing the cloud.")
        try:
            self.db.get_user(user)
        except errors.NotFound:
            self.create_user(name=user, password=password, default_project_id=project,
                             user_id=user)
        else:
            self.update_user(user, password=password, enabled=True)
        self.assign_role(user, project, ADMIN)


__all__: Sequence[str] = [
    "ASSIGNABLE_ROLES", "DEFAULT_DOMAIN_ID", "DEFAULT_DOMAIN_NAME", "IdentityManager", "Scope",
    "TokenInfo", "check_domain", "new_id",
]
