"""The catalogue's queries: flavors, images and server groups."""

from __future__ import annotations

from typing import Any, Iterable, Mapping

import sqlalchemy as sa
from sqlalchemy.orm import Session

from novalite import errors
from novalite.db import models as m
from novalite.db.engine import _FLAVORS, Transactions, _new_uuid, _stmt
from novalite.db.validation import _name, _not_negative, _positive, _string_map
from novalite.objects.records import Flavor, Image, ServerGroup

SERVER_GROUP_POLICIES = frozenset({"affinity", "anti-affinity", "soft-affinity",
                                   "soft-anti-affinity"})


class Catalog(Transactions):
    """What servers are made from (flavors, images) and grouped by."""

    # --- flavors ---------------------------------------------------------------------

    def create_flavor(
        self, *, name: str, vcpus: int, memory_mb: int, root_gb: int = 0,
        ephemeral_gb: int = 0, swap: int = 0, is_public: bool = True,
        extra_specs: Mapping[str, str] | None = None, flavor_id: str | None = None,
    ) -> Flavor:
        """Create a flavor. Conflict if a live flavor has that name or the id is taken."""
        name = _name("name", name)
        _positive("vcpus", vcpus)
        _positive("memory_mb", memory_mb)
        for field, value in (("root_gb", root_gb), ("ephemeral_gb", ephemeral_gb), ("swap", swap)):
            _not_negative(field, value)
        specs = _string_map("extra_specs", extra_specs or {})
        fid = _name("flavor_id", flavor_id) if flavor_id is not None else _new_uuid()

        def work(s: Session) -> Flavor:
            if s.scalar(sa.select(m.Flavor.id).where(m.Flavor.name == name,
                                                     m.Flavor.deleted_at.is_(None))):
                raise errors.Conflict(f"a flavor named {name!r} already exists")
            if s.get(m.Flavor, fid) is not None:
                raise errors.Conflict(f"flavor id {fid!r} is taken")
            row = m.Flavor(id=fid, name=name, vcpus=vcpus, memory_mb=memory_mb,
                           root_gb=root_gb, ephemeral_gb=ephemeral_gb, swap=swap,
                           is_public=bool(is_public), extra_specs=specs,
                           created_at=self._clock(), deleted_at=None)
            s.add(row)
            s.flush()
            return _flavor(row)
        return self._write(work)

    def get_flavor(self, flavor_id: str, *, include_deleted: bool = False,
                   visible_to: str | None = None) -> Flavor:
        """A flavor by id; deleted ones only with include_deleted (instances built
        from a deleted flavor still name it). ``visible_to``: a project, for which
        a private flavor it was not given access to is NotFound (Nova's)."""
        def query() -> Any:
            stmt = sa.select(_FLAVORS).where(_FLAVORS.c.id == sa.bindparam("id"))
            return stmt if include_deleted else stmt.where(_FLAVORS.c.deleted_at.is_(None))

        def work(s: Session) -> Flavor:
            row = s.connection().execute(_stmt(f"flavor deleted={include_deleted}", query),
                                         {"id": flavor_id}).one_or_none()
            if row is None or (visible_to is not None and not row.is_public
                               and not _has_access(s, flavor_id, visible_to)):
                raise errors.NotFound(f"flavor {flavor_id} not found")
            return _flavor(row)
        return self._read(work)

    def list_flavors(self, *, is_public: bool | None = None,
                     visible_to: str | None = None) -> list[Flavor]:
        """Live flavors by name, optionally only public or only private ones;
        ``visible_to``: only the public ones and the private ones that project was
        given access to."""
        def work(s: Session) -> list[Flavor]:
            q = sa.select(m.Flavor).where(m.Flavor.deleted_at.is_(None)).order_by(m.Flavor.name)
            if is_public is not None:
                q = q.where(m.Flavor.is_public == is_public)
            if visible_to is not None:
                fp = m.FlavorProject
                q = q.where(sa.or_(m.Flavor.is_public, sa.exists().where(
                    fp.flavor_id == m.Flavor.id, fp.project_id == visible_to)))
            return [_flavor(r) for r in s.scalars(q)]
        return self._read(work)

    # Nova's os-flavor-access: which projects may use a private flavor.

    def add_flavor_access(self, flavor_id: str, project_id: str) -> list[str]:
        """Give a project access to a private flavor; returns every project that
        has it. InvalidState for a public flavor (everyone has it), Conflict when
        the project has it already."""
        project_id = _name("project_id", project_id)

        def work(s: Session) -> list[str]:
            row = self._flavor_row(s, flavor_id, lock=True)
            if row.is_public:
                raise errors.InvalidState(f"flavor {flavor_id} is public: every project may "
                                          "use it already")
            if s.get(m.FlavorProject, (flavor_id, project_id)) is not None:
                raise errors.Conflict(f"project {project_id} already has access to flavor "
                                      f"{flavor_id}")
            s.add(m.FlavorProject(flavor_id=flavor_id, project_id=project_id))
            s.flush()
            return _access_list(s, flavor_id)
        return self._write(work)

    def remove_flavor_access(self, flavor_id: str, project_id: str) -> list[str]:
        """Take a project's access to a flavor away (its servers keep running);
        returns the projects left. NotFound when it had none."""
        def work(s: Session) -> list[str]:
            self._flavor_row(s, flavor_id, lock=True)
            entry = s.get(m.FlavorProject, (flavor_id, project_id))
            if entry is None:
                raise errors.NotFound(f"project {project_id} has no access to flavor {flavor_id}")
            s.delete(entry)
            s.flush()
            return _access_list(s, flavor_id)
        return self._write(work)

    def list_flavor_access(self, flavor_id: str) -> list[str]:
        """The projects given access to a private flavor, sorted; InvalidState for
        a public one (Nova: no access list for public flavors)."""
        def work(s: Session) -> list[str]:
            if self._flavor_row(s, flavor_id).is_public:
                raise errors.InvalidState(f"flavor {flavor_id} is public: it has no access list")
            return _access_list(s, flavor_id)
        return self._read(work)

    def delete_flavor(self, flavor_id: str) -> None:
        """Soft-delete a flavor: its name becomes free, its row stays for the
        instances that reference it."""
        def work(s: Session) -> None:
            self._flavor_row(s, flavor_id, lock=True).deleted_at = self._clock()
        self._write(work)

    def set_flavor_extra_specs(self, flavor_id: str, specs: Mapping[str, str]) -> Flavor:
        """Add or overwrite extra specs; the others stay."""
        new = _string_map("extra_specs", specs)

        def work(s: Session) -> Flavor:
            row = self._flavor_row(s, flavor_id, lock=True)
            row.extra_specs = {**row.extra_specs, **new}
            s.flush()
            return _flavor(row)
        return self._write(work)

    def unset_flavor_extra_specs(self, flavor_id: str, keys: Iterable[str]) -> Flavor:
        """Remove extra specs; NotFound (and nothing removed) if one is not set."""
        keys = list(keys)

        def work(s: Session) -> Flavor:
            row = self._flavor_row(s, flavor_id, lock=True)
            missing = [k for k in keys if k not in row.extra_specs]
            if missing:
                raise errors.NotFound(f"flavor {flavor_id} has no extra spec {missing[0]!r}")
            row.extra_specs = {k: v for k, v in row.extra_specs.items() if k not in keys}
            s.flush()
            return _flavor(row)
        return self._write(work)

    def _flavor_row(self, s: Session, flavor_id: str, include_deleted: bool = False,
                    lock: bool = False) -> m.Flavor:
        q = sa.select(m.Flavor).where(m.Flavor.id == flavor_id)
        if not include_deleted:
            q = q.where(m.Flavor.deleted_at.is_(None))
        if lock:
            q = q.with_for_update()
        row = s.scalars(q).one_or_none()
        if row is None:
            raise errors.NotFound(f"flavor {flavor_id} not found")
        return row

    # --- images ----------------------------------------------------------------------

    def register_image(
        self, *, name: str, path: str, disk_format: str, size_bytes: int | None = None,
        properties: Mapping[str, Any] | None = None, image_id: str | None = None,
    ) -> Image:
        """Record an image file the compute agents can boot from."""
        name = _name("name", name)
        if not isinstance(path, str) or not path or len(path) > 4096:
            raise errors.Invalid("path", "must be a non-empty path of at most 4096 characters")
        disk_format = _name("disk_format", disk_format, max_len=32)
        if size_bytes is not None:
            _not_negative("size_bytes", size_bytes)
        iid = _name("image_id", image_id) if image_id is not None else _new_uuid()

        def work(s: Session) -> Image:
            if s.get(m.Image, iid) is not None:
                raise errors.Conflict(f"image id {iid!r} is taken")
            row = m.Image(id=iid, name=name, path=path, disk_format=disk_format,
                          size_bytes=size_bytes, properties=dict(properties or {}),
                          created_at=self._clock(), deleted_at=None)
            s.add(row)
            s.flush()
            return _image(row)
        return self._write(work)

    def get_image(self, image_id: str, *, include_deleted: bool = False) -> Image:
        def work(s: Session) -> Image:
            row = s.get(m.Image, image_id)
            if row is None or (row.deleted_at is not None and not include_deleted):
                raise errors.NotFound(f"image {image_id} not found")
            return _image(row)
        return self._read(work)

    def list_images(self) -> list[Image]:
        """Live images by name."""
        return self._read(lambda s: [_image(r) for r in s.scalars(
            sa.select(m.Image).where(m.Image.deleted_at.is_(None))
            .order_by(m.Image.name, m.Image.id))])

    def delete_image(self, image_id: str) -> None:
        """Soft-delete an image; instances booted from it keep their reference."""
        def work(s: Session) -> None:
            row = s.get(m.Image, image_id, with_for_update=True)
            if row is None or row.deleted_at is not None:
                raise errors.NotFound(f"image {image_id} not found")
            row.deleted_at = self._clock()
        self._write(work)

    # --- server groups ---------------------------------------------------------------

    def create_server_group(self, *, name: str, project_id: str, user_id: str, policy: str,
                            max_server_per_host: int | None = None) -> ServerGroup:
        """A server group; max_server_per_host is a rule of anti-affinity only."""
        name = _name("name", name)
        if policy not in SERVER_GROUP_POLICIES:
            raise errors.Invalid("policy", f"must be one of {sorted(SERVER_GROUP_POLICIES)}")
        if max_server_per_host is not None:
            if policy != "anti-affinity":
                raise errors.Invalid("max_server_per_host", "only anti-affinity takes rules")
            _positive("max_server_per_host", max_server_per_host)

        def work(s: Session) -> ServerGroup:
            row = m.ServerGroup(id=_new_uuid(), name=name, project_id=project_id,
                                user_id=user_id, policy=policy,
                                max_server_per_host=max_server_per_host,
                                created_at=self._clock())
            s.add(row)
            s.flush()
            return self._group(s, row)
        return self._write(work)

    def get_server_group(self, group_id: str, *, project_id: str | None = None) -> ServerGroup:
        """A group with its live members and their hosts."""
        return self._read(lambda s: self._group(s, self._group_row(s, group_id, project_id)))

    def list_server_groups(self, *, project_id: str | None = None) -> list[ServerGroup]:
        def work(s: Session) -> list[ServerGroup]:
            q = sa.select(m.ServerGroup).order_by(m.ServerGroup.created_at, m.ServerGroup.id)
            if project_id is not None:
                q = q.where(m.ServerGroup.project_id == project_id)
            return [self._group(s, row) for row in s.scalars(q)]
        return self._read(work)

    def delete_server_group(self, group_id: str, *, project_id: str | None = None) -> None:
        """Delete a group; its members stay, outside any group."""
        def work(s: Session) -> None:
            s.delete(self._group_row(s, group_id, project_id))
        self._write(work)

    def add_server_group_members(self, group_id: str, instance_ids: Iterable[str]) -> ServerGroup:
        """Put live instances of the group's project into the group. Conflict if
        one already belongs to another group; nothing is changed then."""
        ids = sorted(set(instance_ids))

        def work(s: Session) -> ServerGroup:
            group = self._group_row(s, group_id, None)
            i = m.Instance
            for iid in ids:
                row = s.scalars(sa.select(i).where(i.id == iid, i.deleted_at.is_(None),
                                                   i.project_id == group.project_id)
                                .with_for_update()).one_or_none()
                if row is None:
                    raise errors.NotFound(f"instance {iid} not found")
                if row.group_id not in (None, group_id):
                    raise errors.Conflict(f"instance {iid} is in server group {row.group_id}")
                row.group_id = group_id
            s.flush()
            return self._group(s, group)
        return self._write(work)

    def server_group_hosts(self, group_id: str) -> frozenset[str]:
        """The hosts the group's live members are on (for affinity checks)."""
        return self._read(lambda s: self._group(s, self._group_row(s, group_id, None)).hosts)

    def server_group_placement(self, group_id: str) -> tuple[ServerGroup, dict[str, tuple[str | None, str]]]:
        """A group and, per live member, its host and vm_state, read together (a
        compute agent's late check of the group's policy)."""
        def work(s: Session) -> tuple[ServerGroup, dict[str, tuple[str | None, str]]]:
            row = self._group_row(s, group_id, None)
            i = m.Instance
            members = {iid: (host, vm) for iid, host, vm in s.execute(
                sa.select(i.id, i.host, i.vm_state).where(i.group_id == group_id,
                                                          i.deleted_at.is_(None)))}
            return self._group(s, row), members
        return self._read(work)

    @staticmethod
    def _group_row(s: Session, group_id: str, project_id: str | None) -> m.ServerGroup:
        row = s.get(m.ServerGroup, group_id)
        if row is None or (project_id is not None and row.project_id != project_id):
            raise errors.NotFound(f"server group {group_id} not found")
        return row

    @staticmethod
    def _group(s: Session, row: m.ServerGroup) -> ServerGroup:
        i = m.Instance
        members = list(s.execute(sa.select(i.id, i.host).where(i.group_id == row.id,
                                                                i.deleted_at.is_(None))
                                 .order_by(i.created_at, i.id)))
        return ServerGroup(
            id=row.id, name=row.name, project_id=row.project_id, user_id=row.user_id,
            policy=row.policy, max_server_per_host=row.max_server_per_host,
            members=tuple(mid for mid, _ in members),
            hosts=frozenset(h for _, h in members if h is not None),
            created_at=row.created_at)


# --- rows to records ------------------------------------------------------------------

def _has_access(s: Session, flavor_id: str, project_id: str) -> bool:
    return s.get(m.FlavorProject, (flavor_id, project_id)) is not None


def _access_list(s: Session, flavor_id: str) -> list[str]:
    fp = m.FlavorProject
    return list(s.scalars(sa.select(fp.project_id).where(fp.flavor_id == flavor_id)
                          .order_by(fp.project_id)))


def _flavor(r: m.Flavor | sa.Row[Any]) -> Flavor:
    return Flavor(id=r.id, name=r.name, vcpus=r.vcpus, memory_mb=r.memory_mb,
                  root_gb=r.root_gb, ephemeral_gb=r.ephemeral_gb, swap=r.swap,
                  is_public=r.is_public, extra_specs=dict(r.extra_specs),
                  created_at=r.created_at, deleted_at=r.deleted_at)


def _image(r: m.Image) -> Image:
    return Image(id=r.id, name=r.name, path=r.path, disk_format=r.disk_format,
                 size_bytes=r.size_bytes, properties=dict(r.properties),
                 created_at=r.created_at, deleted_at=r.deleted_at)
