"""Test-wide setup: the strategies module sits beside the tests, hypothesis has a
quick default profile and a thorough one (HYPOTHESIS_PROFILE=thorough), and the
database fixtures: ``db_url`` (a fresh database on each backend: SQLite, and
PostgreSQL when NOVALITE_TEST_POSTGRES_URL names a server) and ``new_url`` (makes
more of them)."""

from __future__ import annotations

import os
import sys
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa
from hypothesis import settings

from novalite.db.database import Database

PG_URL = os.environ.get("NOVALITE_TEST_POSTGRES_URL")

sys.path.insert(0, os.path.dirname(__file__))

settings.register_profile("default", deadline=None)
settings.register_profile("thorough", deadline=None, max_examples=3000)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "default"))


@pytest.fixture(params=["sqlite", "postgresql"])
def backend(request: pytest.FixtureRequest) -> str:
    if request.param == "postgresql" and not PG_URL:
        pytest.skip("NOVALITE_TEST_POSTGRES_URL is not set")
    return str(request.param)


@pytest.fixture
def new_url(backend: str, tmp_path: Path) -> Iterator[Callable[[], str]]:
    """Makes URLs of fresh, empty databases: a file for SQLite, a schema of its own
    (put first on the search_path) for PostgreSQL; dropped afterwards."""
    schemas: list[str] = []
    base = Database(PG_URL).url if backend == "postgresql" and PG_URL else None

    def make() -> str:
        if base is None:
            return f"sqlite:///{tmp_path}/novalite-{uuid.uuid4().hex[:8]}.db"
        schema = f"test_{uuid.uuid4().hex[:12]}"
        engine = sa.create_engine(base)
        with engine.begin() as conn:
            conn.exec_driver_sql(f"CREATE SCHEMA {schema}")
        engine.dispose()
        schemas.append(schema)
        return base.update_query_dict({"options": f"-csearch_path={schema}"}) \
            .render_as_string(hide_password=False)

    yield make
    if base is not None and schemas:
        engine = sa.create_engine(base)
        with engine.begin() as conn:
            for schema in schemas:
                conn.exec_driver_sql(f"DROP SCHEMA {schema} CASCADE")
        engine.dispose()


@pytest.fixture
def db_url(new_url: Callable[[], str]) -> str:
    return new_url()
