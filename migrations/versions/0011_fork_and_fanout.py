"""fork and fan-out: runs.forked_from_run_id / forked_at_step_id, agents.item, steps.pending_children

Revision ID: 0011
Revises: 0009
Create Date: 2026-12-02 12:50:00

* ``runs.forked_from_run_id`` (indexed: an origin lists its forks) and ``runs.forked_at_step_id``:
  NULL for every run that is not a fork (all runs before this revision).
* ``agents.item``: a subagent's place in the ``assign_tasks`` call that launched it; NULL for
  ``assign_task`` subagents and orchestrators (all agents before this revision).
* ``steps.pending_children``: an ``assign_tasks`` step's subagents still to report; NULL otherwise.
* ``agents.parent_step_id`` loses its UNIQUE constraint (one ``assign_tasks`` step launches many
  subagents) and keeps a plain index. A launch is still made once: its step's fence guards it.

Adding nullable columns is a plain ``ALTER TABLE ... ADD COLUMN``; the constraint change and the
downgrade recreate the table on SQLite (batch mode). The downgrade fails (changing nothing) if an
``assign_tasks`` step launched several subagents: the UNIQUE constraint could not hold.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0011"
down_revision: str | None = "0010"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("runs", sa.Column("forked_from_run_id", sa.String(length=32), nullable=True))
    op.add_column("runs", sa.Column("forked_at_step_id", sa.String(length=32), nullable=True))
    op.create_index(op.f("ix_runs_forked_from_run_id"), "runs", ["forked_from_run_id"], unique=False)
    op.add_column("steps", sa.Column("pending_children", sa.Integer(), nullable=True))
    with op.batch_alter_table("agents") as batch_op:
        batch_op.add_column(sa.Column("item", sa.Integer(), nullable=True))
        batch_op.drop_constraint(batch_op.f("uq_agents_parent_step_id"), type_="unique")
        batch_op.create_index(batch_op.f("ix_agents_parent_step_id"), ["parent_step_id"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("agents") as batch_op:
        batch_op.drop_index(batch_op.f("ix_agents_parent_step_id"))
        batch_op.create_unique_constraint(batch_op.f("uq_agents_parent_step_id"), ["parent_step_id"])
        batch_op.drop_column("item")
    with op.batch_alter_table("steps") as batch_op:
        batch_op.drop_column("pending_children")
    op.drop_index(op.f("ix_runs_forked_from_run_id"), table_name="runs")
    with op.batch_alter_table("runs") as batch_op:
        batch_op.drop_column("forked_at_step_id")
        batch_op.drop_column("forked_from_run_id")
