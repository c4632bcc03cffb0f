"""artifacts.step_id: the step that last wrote a run file; messages.images: images for the model

Revision ID: 0014
Revises: 0009
Create Date: 2026-12-02 13:00:00

Two nullable columns: nothing existing changes. Files saved before the upgrade have no known
writer (``swarm files`` shows none), and earlier tool results carry no images.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0014"
down_revision: str | None = "0013"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

JSON = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")


def upgrade() -> None:
    op.add_column("artifacts", sa.Column("step_id", sa.String(length=32), nullable=True))
    op.add_column("messages", sa.Column("images", JSON, nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("messages") as batch_op:
        batch_op.drop_column("images")
    with op.batch_alter_table("artifacts") as batch_op:
        batch_op.drop_column("step_id")
