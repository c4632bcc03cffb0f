"""runs.owner, runs.owner_until: which process looks after a run, so a dead one shows

Revision ID: 0012
Revises: 0009
Create Date: 2026-12-02 13:00:00

Two nullable columns: runs from before the upgrade have no owner and are judged as cluster runs
(``domain/liveness.py``). SQLite's downgrade recreates the table (batch mode).
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0012"
down_revision: str | None = "0009"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("runs", sa.Column("owner", sa.String(length=128), nullable=True))
    op.add_column("runs", sa.Column("owner_until", sa.Float(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("runs") as batch_op:
        batch_op.drop_column("owner_until")
        batch_op.drop_column("owner")
