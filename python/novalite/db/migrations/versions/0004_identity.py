"""Keystone's identity subset: projects, users (password hashes), role
assignments, and revoked tokens.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-04 20:00:00
"""

from __future__ import annotations

from typing import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = '0004'
down_revision: str | None = '0003'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table('projects',
        sa.Column('id', sa.String(length=64), nullable=False),
        sa.Column('name', sa.String(length=64), nullable=False),
        sa.Column('domain_id', sa.String(length=64), nullable=False),
        sa.Column('description', sa.Text(), nullable=False),
        sa.Column('enabled', sa.Boolean(), nullable=False),
        sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_projects')),
        sa.UniqueConstraint('domain_id', 'name', name=op.f('uq_projects_domain_id_name'))
    )
    op.create_table('users',
        sa.Column('id', sa.String(length=64), nullable=False),
        sa.Column('name', sa.String(length=255), nullable=False),
        sa.Column('domain_id', sa.String(length=64), nullable=False),
        sa.Column('password_hash', sa.String(length=255), nullable=True),
        sa.Column('default_project_id', sa.String(length=64), nullable=True),
        sa.Column('enabled', sa.Boolean(), nullable=False),
        sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(['default_project_id'], ['projects.id'],
                                name=op.f('fk_users_default_project_id_projects'),
                                ondelete='SET NULL'),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_users')),
        sa.UniqueConstraint('domain_id', 'name', name=op.f('uq_users_domain_id_name'))
    )
    op.create_table('role_assignments',
        sa.Column('user_id', sa.String(length=64), nullable=False),
        sa.Column('project_id', sa.String(length=64), nullable=False),
        sa.Column('role', sa.String(length=64), nullable=False),
        sa.ForeignKeyConstraint(['project_id'], ['projects.id'],
                                name=op.f('fk_role_assignments_project_id_projects'),
                                ondelete='CASCADE'),
        sa.ForeignKeyConstraint(['user_id'], ['users.id'],
                                name=op.f('fk_role_assignments_user_id_users'),
                                ondelete='CASCADE'),
        sa.PrimaryKeyConstraint('user_id', 'project_id', 'role',
                                name=op.f('pk_role_assignments'))
    )
    op.create_index(op.f('ix_role_assignments_project_id'), 'role_assignments',
                    ['project_id'], unique=False)
    op.create_table('revoked_tokens',
        sa.Column('token_id', sa.String(length=64), nullable=False),
        sa.Column('expires_at', sa.DateTime(timezone=True), nullable=False),
        sa.Column('revoked_at', sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint('token_id', name=op.f('pk_revoked_tokens'))
    )
    op.create_index(op.f('ix_revoked_tokens_revoked_at'), 'revoked_tokens', ['revoked_at'],
                    unique=False)


def downgrade() -> None:
    op.drop_index(op.f('ix_revoked_tokens_revoked_at'), table_name='revoked_tokens')
    op.drop_table('revoked_tokens')
    op.drop_index(op.f('ix_role_assignments_project_id'), table_name='role_assignments')
    op.drop_table('role_assignments')
    op.drop_table('users')
    op.drop_table('projects')
