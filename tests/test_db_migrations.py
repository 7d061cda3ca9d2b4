"""The Alembic migrations build exactly the schema the models describe, on SQLite
and (with NOVALITE_TEST_POSTGRES_URL) PostgreSQL."""

from __future__ import annotations

import os
import subprocess
import sys
from typing import Any, Callable

import sqlalchemy as sa
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.config import Config
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory

from novalite.db import Database
from novalite.db.database import MIGRATIONS_DIR
from novalite.db.models import Base
from test_db import PYTHON_DIR, run_threads

# the newest revision of the migrations: what an upgrade must leave in alembic_version
HEAD = ScriptDirectory(str(MIGRATIONS_DIR)).get_current_head()

MODEL_TABLES = {
    "instances", "instance_faults", "instance_actions", "instance_action_events",
    "flavors", "images", "quotas", "quota_usages", "server_groups", "services",
    "resource_providers", "inventories", "allocations", "aggregates", "aggregate_hosts",
    "aggregate_metadata", "traits", "provider_traits", "flavor_projects",
    "projects", "users", "role_assignments", "revoked_tokens", "key_pairs",
    "networks", "fixed_ips", "migrations",
}


def predicate(index: Any) -> str:
    """A partial index's WHERE clause as text ("" for a full index)."""
    options = index.get("dialect_options") or {}
    where = options.get("sqlite_where", options.get("postgresql_where"))
    return "" if where is None else " ".join(str(where).replace("(", "").replace(")", "").split())


def schema_of(database: Database) -> dict[str, Any]:
    """Everything reflection tells about the tables, comparable across two
    databases: columns, keys, foreign keys (with ON DELETE), unique constraints,
    indexes (with partial-index predicates) and check constraints."""
    inspector = sa.inspect(database.engine)
    out: dict[str, Any] = {}
    for table in sorted(set(inspector.get_table_names()) - {"alembic_version"}):
        out[table] = {
            "columns": [(c["name"], str(c["type"]), c["nullable"])
                        for c in inspector.get_columns(table)],
            "pk": inspector.get_pk_constraint(table),
            "fks": sorted((fk["name"], tuple(fk["constrained_columns"]),
                           fk["referred_table"], tuple(fk["referred_columns"]),
                           (fk.get("options") or {}).get("ondelete"))
                          for fk in inspector.get_foreign_keys(table)),
            "uniques": sorted((u["name"], tuple(u["column_names"]))
                              for u in inspector.get_unique_constraints(table)),
            "indexes": sorted((i["name"], tuple(i["column_names"]), bool(i["unique"]),
                               predicate(i)) for i in inspector.get_indexes(table)),
            "checks": sorted((c["name"], " ".join(c["sqltext"].split()))
                             for c in inspector.get_check_constraints(table)),
        }
    return out


def test_upgrade_head_matches_the_models(new_url: Callable[[], str]) -> None:  # noqa: F811
    database = Database(new_url())
    try:
        database.upgrade()
        with database.engine.connect() as conn:
            context = MigrationContext.configure(
                conn, opts={"compare_type": True, "compare_server_default": True})
            assert compare_metadata(context, Base.metadata) == []
        assert set(sa.inspect(database.engine).get_table_names()) == \
            MODEL_TABLES | {"alembic_version"}
    finally:
        database.close()


def test_upgrade_builds_what_create_all_builds(new_url: Callable[[], str]) -> None:  # noqa: F811
    """Reflection of both, side by side: catches what autogenerate does not compare
    (check constraints, partial-index predicates, ON DELETE)."""
    migrated, created = Database(new_url()), Database(new_url())
    try:
        migrated.upgrade()
        Base.metadata.create_all(created.engine)
        migrated_schema, created_schema = schema_of(migrated), schema_of(created)
        assert set(migrated_schema) == MODEL_TABLES
        for table in MODEL_TABLES:
            assert migrated_schema[table] == created_schema[table], table
    finally:
        migrated.close()
        created.close()


def test_live_flavor_names_are_unique_by_a_partial_index(
        new_url: Callable[[], str]) -> None:  # noqa: F811
    database = Database(new_url())
    try:
        database.upgrade()
        [index] = [i for i in sa.inspect(database.engine).get_indexes("flavors")
                   if i["name"] == "uq_flavors_name_live"]
        assert index["unique"]
        assert predicate(index) == "deleted_at IS NULL"
    finally:
        database.close()


def test_downgrade_to_base_and_up_again(new_url: Callable[[], str]) -> None:  # noqa: F811
    database = Database(new_url())
    try:
        database.upgrade()
        database.create_flavor(name="m1", vcpus=1, memory_mb=64)
        config = Config()
        config.set_main_option("script_location", str(MIGRATIONS_DIR))
        config.attributes["database"] = database
        command.downgrade(config, "base")
        assert set(sa.inspect(database.engine).get_table_names()) <= {"alembic_version"}
        database.upgrade()
        assert database.list_flavors() == []
    finally:
        database.close()


def test_concurrent_upgrades_migrate_once(new_url: Callable[[], str]) -> None:  # noqa: F811
    """Services started together each run upgrade(): they serialise, one creates
    the schema and the others find it current."""
    url = new_url()
    databases = [Database(url) for _ in range(4)]
    try:
        results = run_threads(4, lambda i: databases[i].upgrade())
        assert results == [None] * 4, results
        with databases[0].engine.connect() as conn:
            assert conn.exec_driver_sql("SELECT version_num FROM alembic_version").all() == \
                [(HEAD,)]
        databases[1].create_flavor(name="m1", vcpus=1, memory_mb=64)
        assert [f.name for f in databases[2].list_flavors()] == ["m1"]
    finally:
        for database in databases:
            database.close()


def test_concurrent_upgrades_from_separate_processes(
        new_url: Callable[[], str]) -> None:  # noqa: F811
    url = new_url()
    script = "import sys\nfrom novalite.db import Database\nDatabase(sys.argv[1]).upgrade()\n"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(
        [str(PYTHON_DIR), os.environ.get("PYTHONPATH", "")])}
    processes = [subprocess.Popen([sys.executable, "-c", script, url], env=env,
                                  stderr=subprocess.PIPE, text=True) for _ in range(4)]
    for process in processes:
        _, stderr = process.communicate(timeout=120)
        assert process.returncode == 0, stderr
    database = Database(url)
    try:
        with database.engine.connect() as conn:
            assert conn.exec_driver_sql("SELECT version_num FROM alembic_version").all() == \
                [(HEAD,)]
    finally:
        database.close()
