"""Gateway meta table: holds a value encrypted at setup to detect a foreign key file.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-22 08:02:54.269680
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "gateway_meta",
        sa.Column("name", sa.String(length=64), nullable=False),
        sa.Column("value", sa.LargeBinary(), nullable=False),
        sa.PrimaryKeyConstraint("name", name=op.f("pk_gateway_meta")),
    )


def downgrade() -> None:
    op.drop_table("gateway_meta")
