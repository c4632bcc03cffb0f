"""Usage and cost per call, agent and run: cached and reasoning tokens, cost in picodollars

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-02 08:00:00

Runs and agents get ``tokens_cached`` (0 for what came before: it was not read) and ``cost_pico``
(USD × 10¹², see ``swarm.domain.pricing``). Rows written before this revision were never priced,
so their cost is NULL — unknown — rather than a made-up 0. Steps get ``tokens_cached``,
``tokens_reasoning`` and ``cost_pico``, NULL for tool steps and for calls made before.

Adding nullable columns, or NOT NULL ones with a constant default, is a metadata-only change on
PostgreSQL (no table rewrite); on SQLite it is a plain ADD COLUMN.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    for table in ("runs", "agents"):
        op.add_column(table, sa.Column("tokens_cached", sa.BigInteger(), nullable=False, server_default="0"))
        op.add_column(table, sa.Column("cost_pico", sa.BigInteger(), nullable=True))
    op.add_column("steps", sa.Column("tokens_cached", sa.Integer(), nullable=True))
    op.add_column("steps", sa.Column("tokens_reasoning", sa.Integer(), nullable=True))
    op.add_column("steps", sa.Column("cost_pico", sa.BigInteger(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("steps") as batch_op:
        for column in ("cost_pico", "tokens_reasoning", "tokens_cached"):
            batch_op.drop_column(column)
    for table in ("agents", "runs"):
        with op.batch_alter_table(table) as batch_op:
            batch_op.drop_column("cost_pico")
            batch_op.drop_column("tokens_cached")
