"""approvals: human decisions on tool calls (awaiting_approval steps, runs.approve_tools)

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-02 13:00:00

A new table, two nullable run columns (runs before the upgrade need no approvals), and the step
status ``awaiting_approval``: steps.status widens to 24 characters and its CHECK lists the new
value. The downgrade refuses to run while a step awaits approval (it would have no status to go
back to); decide or cancel those first.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

from swarm.exceptions import ConfigError

revision: str = "0010"
down_revision: str | None = "0009"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_BEFORE = ("ready", "running", "waiting", "succeeded", "failed", "cancelled")
_AFTER = ("ready", "running", "waiting", "awaiting_approval", "succeeded", "failed", "cancelled")


def _listed(values: tuple[str, ...]) -> str:
    return "status IN (" + ", ".join(f"'{v}'" for v in values) + ")"


def upgrade() -> None:
    json_type = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")
    with op.batch_alter_table("runs") as batch_op:
        batch_op.add_column(sa.Column("approve_tools", json_type, nullable=True))
        batch_op.add_column(sa.Column("approval_timeout", sa.Float(), nullable=True))
    with op.batch_alter_table("steps") as batch_op:
        batch_op.drop_constraint(op.f("ck_steps_status"), type_="check")
        batch_op.alter_column("status", type_=sa.String(length=24), existing_type=sa.String(length=16))
        batch_op.create_check_constraint(op.f("ck_steps_status"), _listed(_AFTER))
    op.create_table(
        "approvals",
        sa.Column("step_id", sa.String(length=32), nullable=False),
        sa.Column("run_id", sa.String(length=32), nullable=False),
        sa.Column("agent_id", sa.String(length=32), nullable=False),
        sa.Column("tool", sa.String(length=128), nullable=False),
        sa.Column("arguments", sa.Text(), nullable=True),
        sa.Column("requested_at", sa.Float(), nullable=False),
        sa.Column("expires_at", sa.Float(), nullable=True),
        sa.Column("decision", sa.String(length=16), nullable=True),
        sa.Column("note", sa.Text(), nullable=True),
        sa.Column("decided_at", sa.Float(), nullable=True),
        sa.Column("decided_by", sa.String(length=128), nullable=True),
        sa.CheckConstraint("decision IN ('approved', 'rejected')", name=op.f("ck_approvals_decision")),
        sa.ForeignKeyConstraint(["run_id"], ["runs.id"], name=op.f("fk_approvals_run_id_runs"), ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("step_id", name=op.f("pk_approvals")),
    )
    op.create_index(op.f("ix_approvals_run_id"), "approvals", ["run_id"], unique=False)


def downgrade() -> None:
    waiting = op.get_bind().execute(sa.text("SELECT count(*) FROM steps WHERE status = 'awaiting_approval'")).scalar()
    if waiting:
        raise ConfigError(
            f"cannot downgrade: {waiting} step(s) await approval. Approve, reject or cancel them "
            "(swarm approvals), then downgrade again."
        )
    op.drop_index(op.f("ix_approvals_run_id"), table_name="approvals")
    op.drop_table("approvals")
    with op.batch_alter_table("steps") as batch_op:
        batch_op.drop_constraint(op.f("ck_steps_status"), type_="check")
        batch_op.alter_column("status", type_=sa.String(length=16), existing_type=sa.String(length=24))
        batch_op.create_check_constraint(op.f("ck_steps_status"), _listed(_BEFORE))
    with op.batch_alter_table("runs") as batch_op:
        batch_op.drop_column("approval_timeout")
        batch_op.drop_column("approve_tools")
