"""Guests a user can use: images' checksums, key pairs, networks and their fixed
IPs, and what each server's guest is given (key, user data, config drive, NICs).

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-04 20:00:00
"""

from __future__ import annotations

from typing import Sequence

import sqlalchemy as sa
from alembic import op


revision: str = '0005'
down_revision: str | None = '0004'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

LIVE = sa.text("deleted_at IS NULL")


def upgrade() -> None:
    op.add_column('images', sa.Column('checksum', sa.String(length=32), nullable=True))
    with op.batch_alter_table('instances') as batch:
        batch.add_column(sa.Column('key_name', sa.String(length=255), nullable=True))
        batch.add_column(sa.Column('key_data', sa.Text(), nullable=True))
        batch.add_column(sa.Column('user_data', sa.Text(), nullable=True))
        batch.add_column(sa.Column('config_drive', sa.Boolean(), nullable=True))
        batch.add_column(sa.Column('requested_networks', sa.JSON(), nullable=True))
        batch.add_column(sa.Column('network_info', sa.JSON(), nullable=True))
    op.create_table(
        'key_pairs',
        sa.Column('id', sa.Integer(), autoincrement=True, nullable=False),
        sa.Column('user_id', sa.String(length=255), nullable=False),
        sa.Column('name', sa.String(length=255), nullable=False),
        sa.Column('fingerprint', sa.String(length=255), nullable=False),
        sa.Column('public_key', sa.Text(), nullable=False),
        sa.Column('type', sa.String(length=32), nullable=False),
        sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
        sa.Column('deleted_at', sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_key_pairs')),
    )
    op.create_index('uq_key_pairs_user_id_name_live', 'key_pairs', ['user_id', 'name'],
                    unique=True, sqlite_where=LIVE, postgresql_where=LIVE)
    op.create_table(
        'networks',
        sa.Column('id', sa.String(length=36), nullable=False),
        sa.Column('name', sa.String(length=255), nullable=False),
        sa.Column('cidr', sa.String(length=64), nullable=False),
        sa.Column('gateway', sa.String(length=64), nullable=False),
        sa.Column('bridge', sa.String(length=15), nullable=False),
        sa.Column('dhcp_server', sa.String(length=64), nullable=False),
        sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_networks')),
        sa.UniqueConstraint('name', name=op.f('uq_networks_name')),
    )
    op.create_table(
        'fixed_ips',
        sa.Column('network_id', sa.String(length=36), nullable=False),
        sa.Column('address', sa.String(length=64), nullable=False),
        sa.Column('instance_id', sa.String(length=36), nullable=False),
        sa.Column('mac', sa.String(length=17), nullable=False),
        sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(['instance_id'], ['instances.id'],
                                name=op.f('fk_fixed_ips_instance_id_instances'), ondelete='CASCADE'),
        sa.ForeignKeyConstraint(['network_id'], ['networks.id'],
                                name=op.f('fk_fixed_ips_network_id_networks'), ondelete='CASCADE'),
        sa.PrimaryKeyConstraint('network_id', 'address', name=op.f('pk_fixed_ips')),
        sa.UniqueConstraint('network_id', 'mac', name=op.f('uq_fixed_ips_network_id_mac')),
    )
    op.create_index(op.f('ix_fixed_ips_instance_id'), 'fixed_ips', ['instance_id'])


def downgrade() -> None:
    op.drop_index(op.f('ix_fixed_ips_instance_id'), table_name='fixed_ips')
    op.drop_table('fixed_ips')
    op.drop_table('networks')
    op.drop_index('uq_key_pairs_user_id_name_live', table_name='key_pairs')
    op.drop_table('key_pairs')
    with op.batch_alter_table('instances') as batch:
        for column in ('network_info', 'requested_networks', 'config_drive', 'user_data',
                       'key_data', 'key_name'):
            batch.drop_column(column)
    with op.batch_alter_table('images') as batch:
        batch.drop_column('checksum')
