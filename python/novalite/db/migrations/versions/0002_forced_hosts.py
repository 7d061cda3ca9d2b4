"""An admin's forced host and node ("zone:host[:node]") on each instance.

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-04 19:30:00
"""

from __future__ import annotations

from typing import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = '0002'
down_revision: str | None = '0001'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column('instances', sa.Column('forced_host', sa.String(length=255), nullable=True))
    op.add_column('instances', sa.Column('forced_node', sa.String(length=255), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('instances') as batch:
        batch.drop_column('forced_node')
        batch.drop_column('forced_host')
