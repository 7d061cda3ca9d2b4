"""The quotas' queries: a project's limits and what it uses."""

from __future__ import annotations

from datetime import datetime
from typing import Mapping

import sqlalchemy as sa
from sqlalchemy.orm import Session

from novalite import errors
from novalite.db import models as m
from novalite.db.engine import _QUOTA_USAGES, Transactions, _stmt
from novalite.db.validation import _is_int, _name
from novalite.objects.records import QuotaSet
from novalite.settings import default

# Quota resources, in the order their usage rows are locked.
QUOTA_RESOURCES = ("cores", "instances", "ram")
# Nova's defaults ([quota] instances, cores, ram; the settings' options are their one
# home); -1 means unlimited.
DEFAULT_QUOTAS: Mapping[str, int] = {r: int(default(f"quotas.{r}")) for r in QUOTA_RESOURCES}


class Quotas(Transactions):
    """Projects' limits and usages. An instance's create and delete change the
    usages inside their own transactions (_lock_usages, _set_usages), so that
    the check and the change cannot be raced."""

    # the limits of a project without its own (see _default_limits)
    _default_quotas: dict[str, int]

    def default_quota_limits(self) -> dict[str, int]:
        """The limits of a project without its own."""
        return dict(self._default_quotas)

    def get_quota(self, project_id: str) -> QuotaSet:
        """A project's limits (its own or the defaults) and what it uses."""
        return self._read(lambda s: self._quota_set(s, project_id))

    def set_quota(self, project_id: str, limits: Mapping[str, int]) -> QuotaSet:
        """Set some of a project's limits (-1: unlimited). A limit below current
        usage is allowed: it only stops further creates."""
        project_id = _name("project_id", project_id)
        for resource, limit in limits.items():
            if resource not in QUOTA_RESOURCES:
                raise errors.Invalid(f"limits.{resource}", "unknown quota resource")
            if not _is_int(limit) or limit < -1:
                raise errors.Invalid(f"limits.{resource}", "must be an integer >= -1")

        def work(s: Session) -> QuotaSet:
            for resource, limit in sorted(limits.items()):
                stmt = self._insert(m.Quota).values(project_id=project_id, resource=resource,
                                                    hard_limit=limit)
                s.execute(stmt.on_conflict_do_update(
                    index_elements=["project_id", "resource"], set_={"hard_limit": limit}))
            return self._quota_set(s, project_id)
        return self._write(work)

    def _quota_set(self, s: Session, project_id: str) -> QuotaSet:
        usage = {r: 0 for r in QUOTA_RESOURCES}
        for row in s.scalars(sa.select(m.QuotaUsage)
                             .where(m.QuotaUsage.project_id == project_id)):
            usage[row.resource] = row.in_use
        return QuotaSet(project_id, self._limits(s, project_id), usage)

    def _limits(self, s: Session, project_id: str) -> dict[str, int]:
        limits = dict(self._default_quotas)
        q = m.Quota.__table__.c
        for resource, hard_limit in s.connection().execute(_stmt("limits", lambda: sa.select(
                q.resource, q.hard_limit).where(q.project_id == sa.bindparam("project_id"))),
                {"project_id": project_id}):
            limits[resource] = hard_limit
        return limits

    def _lock_usages(self, s: Session, project_id: str) -> dict[str, int]:
        """The project's usage of each resource, its rows created if missing and
        locked until commit. On PostgreSQL a racing insert waits for ours and then
        does nothing, and FOR UPDATE then reads the committed row; on SQLite the
        write lock is held."""
        conn = s.connection()
        u = _QUOTA_USAGES.c
        conn.execute(_stmt(f"{self.backend} insert missing usages", lambda: self._insert(
            m.QuotaUsage).values(project_id=sa.bindparam("project_id"),
                                 resource=sa.bindparam("resource"), in_use=0,
                                 updated_at=sa.bindparam("now")).on_conflict_do_nothing()),
            [{"project_id": project_id, "resource": r, "now": self._clock()}
             for r in QUOTA_RESOURCES])
        rows = conn.execute(_stmt("lock usages", lambda: sa.select(u.resource, u.in_use)
                                  .where(u.project_id == sa.bindparam("project_id"))
                                  .order_by(u.resource).with_for_update()),
                            {"project_id": project_id})
        return {resource: int(in_use) for resource, in_use in rows}

    def _change_usages(self, s: Session, project_id: str, delta: Mapping[str, int],
                       now: datetime) -> None:
        """Change the project's usages by ``delta`` (a resize's), in the caller's
        transaction: QuotaExceeded when an increase does not fit its limit (usage
        already over a lowered limit may still shrink); never below 0."""
        usages = self._lock_usages(s, project_id)
        limits = self._limits(s, project_id)
        for resource, amount in delta.items():
            if resource not in QUOTA_RESOURCES:
                raise errors.Invalid(f"quota_delta.{resource}", "unknown quota resource")
            limit = limits[resource]
            if amount > 0 and limit >= 0 and usages[resource] + amount > limit:
                raise errors.QuotaExceeded(resource, amount, limit, usages[resource])
        self._set_usages(s, project_id, {r: max(0, usages[r] + delta.get(r, 0))
                                         for r in QUOTA_RESOURCES}, now)

    @staticmethod
    def _set_usages(s: Session, project_id: str, in_use: Mapping[str, int],
                    now: datetime) -> None:
        """Write back usages read by _lock_usages in the same transaction."""
        u = _QUOTA_USAGES.c
        s.connection().execute(_stmt("set usage", lambda: sa.update(_QUOTA_USAGES).where(
            u.project_id == sa.bindparam("b_project_id"),
            u.resource == sa.bindparam("b_resource")).values(
                in_use=sa.bindparam("b_in_use"), updated_at=sa.bindparam("b_now"))),
            [{"b_project_id": project_id, "b_resource": r, "b_in_use": n, "b_now": now}
             for r, n in sorted(in_use.items())])


def _default_limits(overrides: Mapping[str, int] | None) -> dict[str, int]:
    """Nova's default limits, with ``overrides`` (the settings' [quotas])."""
    limits = dict(DEFAULT_QUOTAS)
    for resource, limit in (overrides or {}).items():
        if resource not in QUOTA_RESOURCES or not _is_int(limit) or limit < -1:
            raise errors.Invalid(f"default_quotas.{resource}",
                                 "a known resource with a limit >= -1")
        limits[resource] = limit
    return limits
