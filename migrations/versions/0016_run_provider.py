"""runs.provider and the run's own provider limits (swarm run --provider, --provider-concurrency ...)

Revision ID: 0016
Revises: 0014
Create Date: 2026-12-02 14:00:00

New nullable columns: existing runs have no provider of their own (NULL: the SWARM_LLM_* one)
and no limits of their own (NULL: the account's), as before. The column holds a SWARM_PROVIDERS
name, never a key.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0016"
down_revision: str | None = "0014"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("runs") as batch:
        batch.add_column(sa.Column("provider", sa.String(64), nullable=True))
        batch.add_column(sa.Column("provider_concurrency", sa.Integer(), nullable=True))
        batch.add_column(sa.Column("provider_rpm", sa.Integer(), nullable=True))
        batch.add_column(sa.Column("provider_tpm", sa.BigInteger(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("runs") as batch:
        for name in ("provider_tpm", "provider_rpm", "provider_concurrency", "provider"):
            batch.drop_column(name)
