"""The Database facade: one method per unit of work the services need.

Every method runs in its own transaction and has committed it before it returns,
so a caller may acknowledge a request as soon as the call is back. Methods are
blocking and thread-safe; asyncio services call them through ``asyncio.to_thread``.

The methods live by what they hold, one mixin each: instances.py (instances,
faults, actions), quotas.py, allocations.py, hosts.py (services, resource
providers, aggregates, traits), catalog.py (flavors, images, server groups),
identity.py (projects, users, role assignments, revoked tokens),
keypairs.py, networks.py (networks and their fixed IPs); the
engine and its transactions, and the helpers they share, in engine.py (whose
docstring says how concurrent writers are kept apart).
"""

from __future__ import annotations

from datetime import datetime
from typing import Callable, Mapping

import sqlalchemy as sa

from novalite.db.allocations import Allocations
from novalite.db.catalog import SERVER_GROUP_POLICIES, Catalog
from novalite.db.engine import MIGRATIONS_DIR, UNSET, _utcnow
from novalite.db.hosts import SERVICE_BINARIES, SERVICE_DOWN_TIME, ZONE_KEY, Hosts
from novalite.db.identity import Identity
from novalite.db.instances import MAX_BATCH, MAX_METADATA_ITEMS, Instances
from novalite.db.keypairs import KeyPairs
from novalite.db.networks import Networks
from novalite.db.moves import Moves
from novalite.db.quotas import DEFAULT_QUOTAS, QUOTA_RESOURCES, Quotas, _default_limits

__all__ = [
    "DEFAULT_QUOTAS", "MAX_BATCH", "MAX_METADATA_ITEMS", "MIGRATIONS_DIR", "QUOTA_RESOURCES",
    "SERVER_GROUP_POLICIES", "SERVICE_BINARIES", "SERVICE_DOWN_TIME", "UNSET", "ZONE_KEY",
    "Database",
]


class Database(Instances, Quotas, Moves, Allocations, Hosts, Catalog, Identity, KeyPairs,
               Networks):
    """The control plane's database, SQLite or PostgreSQL by URL.

    ``url``: ``sqlite:////path/to/novalite.db`` or ``postgresql+psycopg://...``
    (a bare ``postgresql://`` is taken to mean psycopg 3). ``default_quotas``
    apply to projects without their own limits. ``clock`` gives the current UTC
    time (tests pass their own).
    """

    def __init__(
        self,
        url: str | sa.URL,
        *,
        default_quotas: Mapping[str, int] | None = None,
        busy_timeout: float = 30.0,
        pool_size: int = 10,
        clock: Callable[[], datetime] = _utcnow,
        echo: bool = False,
    ) -> None:
        self._default_quotas = _default_limits(default_quotas)
        super().__init__(url, busy_timeout=busy_timeout, pool_size=pool_size, clock=clock,
                         echo=echo)
