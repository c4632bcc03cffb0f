"""runs.mcp_config: a run's own MCP servers (swarm run --mcp, the REST field 'mcp')

Revision ID: 0013
Revises: 0009
Create Date: 2026-12-02 13:00:00

A new nullable column: existing runs have no MCP config of their own (NULL), and see the
deployment's SWARM_MCP_CONFIG as before. The stored JSON holds no secrets, only ${NAME} references.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0013"
down_revision: str | None = "0012"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("runs") as batch:
        batch.add_column(sa.Column("mcp_config", sa.Text(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("runs") as batch:
        batch.drop_column("mcp_config")
