"""loop guards: runs.max_spawns_per_turn and steps.call_key

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-02 07:45:00

Two nullable columns, so existing rows need no value: a run without ``max_spawns_per_turn`` has no
cap beyond its subagent limit, and a tool step without ``call_key`` (every step written before
this revision) is not counted by the repeat guard. An agent that was mid-run across the upgrade
therefore starts its repeat count afresh; nothing else changes.

Adding a nullable column is a plain ``ALTER TABLE ... ADD COLUMN`` on both databases (no table
rewrite); dropping one on SQLite recreates the table (batch mode).

"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("runs", sa.Column("max_spawns_per_turn", sa.Integer(), nullable=True))
    op.add_column("steps", sa.Column("call_key", sa.String(length=64), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("steps") as batch_op:
        batch_op.drop_column("call_key")
    with op.batch_alter_table("runs") as batch_op:
        batch_op.drop_column("max_spawns_per_turn")
