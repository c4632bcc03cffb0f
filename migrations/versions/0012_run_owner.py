"""runs.owner, runs.owner_until: which process looks after a run, so a dead one shows;
metric_totals: /metrics' step figures of finished runs, so a scrape does not scan every step

Revision ID: 0012
Revises: 0009
Create Date: 2026-12-02 13:00:00

Two nullable columns: runs from before the upgrade have no owner and are judged as cluster runs
(``domain/liveness.py``). SQLite's downgrade recreates the table (batch mode). ``metric_totals``
is filled from the steps of every finished run (one scan, at upgrade time).
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0012"
down_revision: str | None = "0011"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("runs", sa.Column("owner", sa.String(length=128), nullable=True))
    op.add_column("runs", sa.Column("owner_until", sa.Float(), nullable=True))
    op.create_table(
        "metric_totals",
        sa.Column("name", sa.String(length=64), nullable=False),
        sa.Column("value", sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint("name"),
    )
    _count_finished_runs()


def _count_finished_runs() -> None:
    # The same figures the store adds when a run ends (store/step_stats.py), of every run that
    # already has; the steps table is as this revision knows it.
    from swarm.store.models import RUNS, STEPS
    from swarm.store.step_stats import aggregate

    conn = op.get_bind()
    finished = sa.select(RUNS.c.id).where(RUNS.c.status != "running").scalar_subquery()
    figures = aggregate(conn, STEPS.c.run_id.in_(finished))
    if figures:
        table = sa.table("metric_totals", sa.column("name", sa.String), sa.column("value", sa.Float))
        op.bulk_insert(table, [{"name": k, "value": v} for k, v in sorted(figures.items())])


def downgrade() -> None:
    op.drop_table("metric_totals")
    with op.batch_alter_table("runs") as batch_op:
        batch_op.drop_column("owner_until")
        batch_op.drop_column("owner")
