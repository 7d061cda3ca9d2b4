"""Moves: the migrations table (resize, cold and live migration, evacuation), and
each instance's lock and system metadata.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-06 10:00:00
"""

from __future__ import annotations

from typing import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = '0006'
down_revision: str | None = '0005'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column('instances', sa.Column('locked_by', sa.String(length=16), nullable=True))
    op.add_column('instances', sa.Column('system_metadata', sa.JSON(), nullable=True))
    op.create_table('migrations',
        sa.Column('id', sa.String(length=36), nullable=False),
        sa.Column('instance_id', sa.String(length=36), nullable=False),
        sa.Column('migration_type', sa.String(length=32), nullable=False),
        sa.Column('status', sa.String(length=32), nullable=False),
        sa.Column('source_host', sa.String(length=255), nullable=False),
        sa.Column('dest_host', sa.String(length=255), nullable=True),
        sa.Column('requested_host', sa.String(length=255), nullable=True),
        sa.Column('old_flavor_id', sa.String(length=36), nullable=False),
        sa.Column('new_flavor_id', sa.String(length=36), nullable=False),
        sa.Column('old_vm_state', sa.String(length=32), nullable=False),
        sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
        sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint("migration_type IN ('resize', 'migration', 'live-migration', 'evacuation')",
                           name=op.f('ck_migrations_migration_type_known')),
        sa.ForeignKeyConstraint(['instance_id'], ['instances.id'],
                                name=op.f('fk_migrations_instance_id_instances'), ondelete='CASCADE'),
        sa.ForeignKeyConstraint(['new_flavor_id'], ['flavors.id'],
                                name=op.f('fk_migrations_new_flavor_id_flavors')),
        sa.ForeignKeyConstraint(['old_flavor_id'], ['flavors.id'],
                                name=op.f('fk_migrations_old_flavor_id_flavors')),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_migrations'))
    )
    op.create_index(op.f('ix_migrations_instance_id_created_at'), 'migrations',
                    ['instance_id', 'created_at'], unique=False)
    op.create_index(op.f('ix_migrations_source_host_status'), 'migrations',
                    ['source_host', 'status'], unique=False)
    op.create_index(op.f('ix_migrations_dest_host_status'), 'migrations',
                    ['dest_host', 'status'], unique=False)


def downgrade() -> None:
    op.drop_index(op.f('ix_migrations_dest_host_status'), table_name='migrations')
    op.drop_index(op.f('ix_migrations_source_host_status'), table_name='migrations')
    op.drop_index(op.f('ix_migrations_instance_id_created_at'), table_name='migrations')
    op.drop_table('migrations')
    with op.batch_alter_table('instances') as batch:
        batch.drop_column('system_metadata')
        batch.drop_column('locked_by')
