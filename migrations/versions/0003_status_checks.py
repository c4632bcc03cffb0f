"""CHECK constraints on the status columns (and steps.kind)

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-01 18:45:00

The values are written out here rather than read from ``swarm.domain.status``: a migration is
history and must keep producing the schema it produced when it was written. The models build the
same constraints from the enums, and tests/integration/test_migrations.py checks that a migrated
database holds exactly the enums' values, so a change to an enum without a migration fails there.

A row holding a value outside these lists (none is expected: ``queued`` was declared but never
written) stops the upgrade with a message naming the table, the value and the number of rows,
before anything is changed. Such a row was written by something that is not this swarm, and
rewriting it to a guessed status would hide that; the operator decides what it should be.

On SQLite adding a CHECK recreates the table (copy, DROP, rename). ``swarm.store.migrate`` runs
migrations with foreign keys off, so dropping ``runs`` does not cascade into its children.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from swarm.exceptions import ConfigError

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_DONE = ("succeeded", "failed", "cancelled")
#: (table, column) -> the values allowed at this revision.
CHECKS: dict[tuple[str, str], tuple[str, ...]] = {
    ("runs", "status"): ("running", *_DONE),
    ("agents", "status"): ("running", *_DONE),
    ("steps", "status"): ("ready", "running", "waiting", *_DONE),
    ("steps", "kind"): ("llm", "tool"),
}


def _listed(values: tuple[str, ...]) -> str:
    return ", ".join(f"'{v}'" for v in values)


def _refuse_unknown_values() -> None:
    conn = op.get_bind()
    found = []
    for (table, column), values in CHECKS.items():
        rows = conn.execute(
            sa.text(
                f"SELECT {column}, count(*) FROM {table} WHERE {column} NOT IN ({_listed(values)}) "
                f"GROUP BY {column} ORDER BY {column}"
            )
        ).all()
        found += [f"{table}.{column} = {value!r} in {n} row(s)" for value, n in rows]
    if found:
        raise ConfigError(
            "cannot add the status CHECK constraints: "
            + "; ".join(found)
            + ". Set these rows to a known value (or delete their runs), then upgrade again."
        )


def upgrade() -> None:
    _refuse_unknown_values()
    for table in ("runs", "agents", "steps"):
        with op.batch_alter_table(table) as batch_op:
            for (t, column), values in CHECKS.items():
                if t == table:
                    batch_op.create_check_constraint(op.f(f"ck_{table}_{column}"), f"{column} IN ({_listed(values)})")


def downgrade() -> None:
    for table in ("steps", "agents", "runs"):
        with op.batch_alter_table(table) as batch_op:
            for t, column in reversed(CHECKS):
                if t == table:
                    batch_op.drop_constraint(op.f(f"ck_{table}_{column}"), type_="check")
