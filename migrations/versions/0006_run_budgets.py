"""Spend budgets per run: USD and token caps, and the reservations of model calls in flight

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-02 08:30:00

``max_cost_pico`` (USD × 10¹²) and ``max_tokens`` are NULL — no cap — for existing runs;
``reserved_pico`` and ``reserved_tokens`` start at 0 (see ``swarm.domain.budget``).
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("runs", sa.Column("max_cost_pico", sa.BigInteger(), nullable=True))
    op.add_column("runs", sa.Column("max_tokens", sa.BigInteger(), nullable=True))
    op.add_column("runs", sa.Column("reserved_pico", sa.BigInteger(), nullable=False, server_default="0"))
    op.add_column("runs", sa.Column("reserved_tokens", sa.BigInteger(), nullable=False, server_default="0"))


def downgrade() -> None:
    with op.batch_alter_table("runs") as batch_op:
        for column in ("reserved_tokens", "reserved_pico", "max_tokens", "max_cost_pico"):
            batch_op.drop_column(column)
