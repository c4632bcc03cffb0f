"""tenant_spend: a tenant's model spend per UTC day, for SWARM_TENANT_MAX_USD_PER_DAY

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-02 08:40:00

A new table: nothing existing changes. Days before the upgrade count as nothing spent.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0009"
down_revision: str | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "tenant_spend",
        sa.Column("tenant", sa.String(length=64), nullable=False),
        sa.Column("day", sa.String(length=10), nullable=False),
        sa.Column("spent_pico", sa.BigInteger(), nullable=False),
        sa.Column("reserved_pico", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("tenant", "day"),
    )


def downgrade() -> None:
    op.drop_table("tenant_spend")
