"""API keys that expire and say when they were last used; idempotent run submission

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-02 08:10:00

``api_keys.expires_at`` (NULL: never) and ``api_keys.last_used_at`` (NULL: not yet);
``runs.idempotency_key`` with a unique index on ``(tenant, idempotency_key)``: a submission that
repeats a key returns the run the first one created. Runs without a key (every existing one) are
NULL there, which neither database counts as a duplicate. Nullable columns and a new index: no
table is rewritten on upgrade; SQLite's downgrade recreates the tables (batch mode).
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("api_keys", sa.Column("expires_at", sa.Float(), nullable=True))
    op.add_column("api_keys", sa.Column("last_used_at", sa.Float(), nullable=True))
    op.add_column("runs", sa.Column("idempotency_key", sa.String(length=255), nullable=True))
    op.create_index("ux_runs_tenant_idempotency_key", "runs", ["tenant", "idempotency_key"], unique=True)


def downgrade() -> None:
    op.drop_index("ux_runs_tenant_idempotency_key", table_name="runs")
    with op.batch_alter_table("runs") as batch_op:
        batch_op.drop_column("idempotency_key")
    with op.batch_alter_table("api_keys") as batch_op:
        batch_op.drop_column("last_used_at")
        batch_op.drop_column("expires_at")
