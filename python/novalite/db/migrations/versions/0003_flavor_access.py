"""The projects given access to private flavors (Nova's flavor_projects).

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-05 10:00:00
"""

from __future__ import annotations

from typing import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = '0003'
down_revision: str | None = '0002'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table('flavor_projects',
        sa.Column('flavor_id', sa.String(length=36), nullable=False),
        sa.Column('project_id', sa.String(length=255), nullable=False),
        sa.ForeignKeyConstraint(['flavor_id'], ['flavors.id'], name=op.f('fk_flavor_projects_flavor_id_flavors'), ondelete='CASCADE'),
        sa.PrimaryKeyConstraint('flavor_id', 'project_id', name=op.f('pk_flavor_projects'))
    )
    op.create_index(op.f('ix_flavor_projects_project_id'), 'flavor_projects', ['project_id'], unique=False)


def downgrade() -> None:
    op.drop_index(op.f('ix_flavor_projects_project_id'), table_name='flavor_projects')
    op.drop_table('flavor_projects')
