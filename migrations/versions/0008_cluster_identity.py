"""cluster identity and cluster leases (the elected sweeper)

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-02 08:00:00

``cluster_identity`` holds one row: the deployment's id, written by the first process that needs
it (not here, so that databases cloned from one migrated template, as the tests do, still get an
id each). ``cluster_leases`` holds one row per cluster-wide role; the ``sweeper`` row is created
here, free (no holder, expired), and the first worker to renew it becomes the sweeper.

"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "cluster_identity",
        sa.Column("singleton", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("cluster_id", sa.String(length=32), nullable=False),
        sa.Column("created_at", sa.Float(), nullable=False),
        sa.CheckConstraint("singleton = 1", name=op.f("ck_cluster_identity_singleton")),
        sa.PrimaryKeyConstraint("singleton", name=op.f("pk_cluster_identity")),
    )
    leases = op.create_table(
        "cluster_leases",
        sa.Column("name", sa.String(length=32), nullable=False),
        sa.Column("holder", sa.String(length=128), nullable=True),
        sa.Column("acquired_at", sa.Float(), nullable=True),
        sa.Column("expires_at", sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint("name", name=op.f("pk_cluster_leases")),
    )
    op.bulk_insert(leases, [{"name": "sweeper", "holder": None, "acquired_at": None, "expires_at": 0.0}])


def downgrade() -> None:
    op.drop_table("cluster_leases")
    op.drop_table("cluster_identity")
