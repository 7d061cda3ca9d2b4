"""Alembic environment: the database comes from the Database object that runs the
upgrade (Database.upgrade puts itself in config.attributes), never from
alembic.ini. From the alembic command line, NOVALITE_DATABASE_URL names it."""

from __future__ import annotations

import os

from alembic import context

from novalite.db.database import Database
from novalite.db.models import Base

config = context.config


def _database() -> Database:
    database = config.attributes.get("database")
    if isinstance(database, Database):
        return database
    url = os.environ.get("NOVALITE_DATABASE_URL")
    if not url:
        raise SystemExit("set NOVALITE_DATABASE_URL to the database to migrate")
    return Database(url)


def run_migrations_offline() -> None:
    context.configure(url=_database().url, target_metadata=Base.metadata,
                      literal_binds=True, dialect_opts={"paramstyle": "named"})
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    # One transaction holding the write lock (SQLite) or an advisory lock
    # (PostgreSQL): services starting together migrate once, the rest wait and
    # find the schema current.
    with _database().migration_connection() as connection:
        context.configure(connection=connection, target_metadata=Base.metadata,
                          compare_type=True, render_as_batch=True)
        with context.begin_transaction():
            context.run_migrations()


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
