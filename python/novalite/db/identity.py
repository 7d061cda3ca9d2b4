"""The identity's queries: projects, users, role assignments (Keystone's v3
subset) and revoked tokens. Password hashes are made and checked by the caller
(identity/manager.py); this module only stores them."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Iterable

import sqlalchemy as sa
from sqlalchemy.orm import Session

from novalite import errors
from novalite.db import models as m
from novalite.db.engine import Transactions, _rowcount
from novalite.db.validation import _name
from novalite.objects.records import Project, RoleAssignment, User

# Keystone's limits: project names 64 characters, user names 255.
PROJECT_NAME_MAX = 64


class Identity(Transactions):
    """Who may authenticate, and with which roles on which project."""

    # --- projects --------------------------------------------------------------------

    def create_project(self, *, project_id: str, name: str, domain_id: str,
                       description: str = "", enabled: bool = True) -> Project:
        """Conflict if the domain has a project of that name, or the id is taken."""
        _name("name", name, max_len=PROJECT_NAME_MAX)
        _name("description", description, max_len=65535, allow_empty=True)

        def work(s: Session) -> Project:
            if s.get(m.Project, project_id) is not None:
                raise errors.Conflict(f"project id {project_id!r} is taken")
            if s.scalar(sa.select(m.Project.id).where(m.Project.domain_id == domain_id,
                                                      m.Project.name == name)):
                raise errors.Conflict(f"a project named {name!r} already exists")
            row = m.Project(id=project_id, name=name, domain_id=domain_id,
                            description=description, enabled=enabled, created_at=self._clock())
            s.add(row)
            s.flush()
            return _project(row)
        return self._write(work)

    def get_project(self, project_id: str) -> Project:
        def work(s: Session) -> Project:
            row = s.get(m.Project, project_id)
            if row is None:
                raise errors.NotFound(f"project {project_id} not found")
            return _project(row)
        return self._read(work)

    def find_project(self, name: str, domain_id: str) -> Project:
        def work(s: Session) -> Project:
            row = s.scalars(sa.select(m.Project).where(m.Project.domain_id == domain_id,
                                                       m.Project.name == name)).one_or_none()
            if row is None:
                raise errors.NotFound(f"project {name!r} not found")
            return _project(row)
        return self._read(work)

    def list_projects(self, *, ids: Iterable[str] | None = None,
                      name: str | None = None) -> list[Project]:
        """Projects by name; only ``ids`` when given, only ``name`` when given."""
        def work(s: Session) -> list[Project]:
            q = sa.select(m.Project).order_by(m.Project.name, m.Project.id)
            if ids is not None:
                q = q.where(m.Project.id.in_(list(ids)))
            if name is not None:
                q = q.where(m.Project.name == name)
            return [_project(r) for r in s.scalars(q)]
        return self._read(work)

    def update_project(self, project_id: str, *, name: str | None = None,
                       description: str | None = None, enabled: bool | None = None) -> Project:
        if name is not None:
            _name("name", name, max_len=PROJECT_NAME_MAX)

        def work(s: Session) -> Project:
            row = s.get(m.Project, project_id, with_for_update=True)
            if row is None:
                raise errors.NotFound(f"project {project_id} not found")
            if name is not None and name != row.name and s.scalar(sa.select(m.Project.id).where(
                    m.Project.domain_id == row.domain_id, m.Project.name == name)):
                raise errors.Conflict(f"a project named {name!r} already exists")
            for field, value in (("name", name), ("description", description),
                                 ("enabled", enabled)):
                if value is not None:
                    setattr(row, field, value)
            s.flush()
            return _project(row)
        return self._write(work)

    def delete_project(self, project_id: str) -> None:
        """The project and its role assignments (its servers are not touched:
        Keystone knows nothing of them either)."""
        def work(s: Session) -> None:
            s.execute(sa.delete(m.RoleAssignment).where(m.RoleAssignment.project_id == project_id))
            if _rowcount(s.execute(sa.delete(m.Project).where(m.Project.id == project_id))) == 0:
                raise errors.NotFound(f"project {project_id} not found")
        self._write(work)

    # --- users -----------------------------------------------------------------------

    def create_user(self, *, user_id: str, name: str, domain_id: str,
                    password_hash: str | None, default_project_id: str | None = None,
                    enabled: bool = True) -> User:
        _name("name", name)

        def work(s: Session) -> User:
            if s.get(m.User, user_id) is not None:
                raise errors.Conflict(f"user id {user_id!r} is taken")
            if s.scalar(sa.select(m.User.id).where(m.User.domain_id == domain_id,
                                                   m.User.name == name)):
                raise errors.Conflict(f"a user named {name!r} already exists")
            if default_project_id is not None and s.get(m.Project, default_project_id) is None:
                raise errors.Invalid("default_project_id",
                                     f"unknown project {default_project_id[:64]!r}")
            row = m.User(id=user_id, name=name, domain_id=domain_id, password_hash=password_hash,
                         default_project_id=default_project_id, enabled=enabled,
                         created_at=self._clock())
            s.add(row)
            s.flush()
            return _user(row)
        return self._write(work)

    def get_user(self, user_id: str) -> User:
        return self._read(lambda s: _user(self._user_row(s, user_id)))

    def find_user(self, name: str, domain_id: str) -> User:
        return self._read(lambda s: _user(self._user_by_name(s, name, domain_id)))

    def user_password_hash(self, user_id: str) -> str | None:
        return self._read(lambda s: self._user_row(s, user_id).password_hash)

    def list_users(self, *, name: str | None = None) -> list[User]:
        def work(s: Session) -> list[User]:
            q = sa.select(m.User).order_by(m.User.name, m.User.id)
            if name is not None:
                q = q.where(m.User.name == name)
            return [_user(r) for r in s.scalars(q)]
        return self._read(work)

    def update_user(self, user_id: str, *, name: str | None = None,
                    password_hash: str | None = None, enabled: bool | None = None,
                    default_project_id: Any = None) -> User:
        if name is not None:
            _name("name", name)

        def work(s: Session) -> User:
            row = self._user_row(s, user_id)
            if name is not None and name != row.name and s.scalar(sa.select(m.User.id).where(
                    m.User.domain_id == row.domain_id, m.User.name == name)):
                raise errors.Conflict(f"a user named {name!r} already exists")
            if default_project_id is not None and s.get(m.Project, default_project_id) is None:
                raise errors.Invalid("default_project_id",
                                     f"unknown project {default_project_id[:64]!r}")
            for field, value in (("name", name), ("password_hash", password_hash),
                                 ("enabled", enabled), ("default_project_id", default_project_id)):
                if value is not None:
                    setattr(row, field, value)
            s.flush()
            return _user(row)
        return self._write(work)

    def delete_user(self, user_id: str) -> None:
        def work(s: Session) -> None:
            s.execute(sa.delete(m.RoleAssignment).where(m.RoleAssignment.user_id == user_id))
            if _rowcount(s.execute(sa.delete(m.User).where(m.User.id == user_id))) == 0:
                raise errors.NotFound(f"user {user_id} not found")
        self._write(work)

    @staticmethod
    def _user_row(s: Session, user_id: str) -> m.User:
        row = s.get(m.User, user_id)
        if row is None:
            raise errors.NotFound(f"user {user_id} not found")
        return row

    @staticmethod
    def _user_by_name(s: Session, name: str, domain_id: str) -> m.User:
        row = s.scalars(sa.select(m.User).where(m.User.domain_id == domain_id,
                                                m.User.name == name)).one_or_none()
        if row is None:
            raise errors.NotFound(f"user {name!r} not found")
        return row

    # --- role assignments ------------------------------------------------------------

    def assign_role(self, user_id: str, project_id: str, role: str) -> None:
        """Idempotent, as Keystone's PUT."""
        def work(s: Session) -> None:
            self._user_row(s, user_id)
            if s.get(m.Project, project_id) is None:
                raise errors.NotFound(f"project {project_id} not found")
            if s.get(m.RoleAssignment, (user_id, project_id, role)) is None:
                s.add(m.RoleAssignment(user_id=user_id, project_id=project_id, role=role))
        self._write(work)

    def unassign_role(self, user_id: str, project_id: str, role: str) -> None:
        def work(s: Session) -> None:
            a = m.RoleAssignment
            if _rowcount(s.execute(sa.delete(a).where(a.user_id == user_id,
                                                      a.project_id == project_id,
                                                      a.role == role))) == 0:
                raise errors.NotFound(f"user {user_id} has no role {role!r} on project "
                                      f"{project_id}")
        self._write(work)

    def list_role_assignments(self, *, user_id: str | None = None,
                              project_id: str | None = None) -> list[RoleAssignment]:
        def work(s: Session) -> list[RoleAssignment]:
            a = m.RoleAssignment
            q = sa.select(a).order_by(a.user_id, a.project_id, a.role)
            if user_id is not None:
                q = q.where(a.user_id == user_id)
            if project_id is not None:
                q = q.where(a.project_id == project_id)
            return [RoleAssignment(r.user_id, r.project_id, r.role) for r in s.scalars(q)]
        return self._read(work)

    # --- revoked tokens --------------------------------------------------------------

    def revoke_token(self, token_id: str, expires_at: datetime) -> None:
        """Idempotent; rows of tokens past their expiry are dropped meanwhile."""
        def work(s: Session) -> None:
            now = self._clock()
            t = m.RevokedToken
            s.execute(sa.delete(t).where(t.expires_at < now))
            if s.get(t, token_id) is None:
                s.add(t(token_id=token_id, expires_at=expires_at, revoked_at=now))
        self._write(work)

    def revoked_tokens(self) -> dict[str, datetime]:
        """The unexpired revoked tokens: id -> when it expires. Revocations are
        rare and short-lived (a token lives an hour), so every service reads them
        all, every second or so."""
        def work(s: Session) -> dict[str, datetime]:
            t = m.RevokedToken
            return {r.token_id: r.expires_at for r in s.execute(
                sa.select(t.token_id, t.expires_at).where(t.expires_at >= self._clock()))}
        return self._read(work)


def _project(r: m.Project) -> Project:
    return Project(id=r.id, name=r.name, domain_id=r.domain_id, description=r.description,
                   enabled=r.enabled, created_at=r.created_at)


def _user(r: m.User) -> User:
    return User(id=r.id, name=r.name, domain_id=r.domain_id,
                default_project_id=r.default_project_id, enabled=r.enabled,
                created_at=r.created_at)
