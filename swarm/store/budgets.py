"""Spend budgets on the run row: reserve a model call's worst case, give it back, read the counters.
The decisions are ``swarm.domain.budget``'s; the settlement is part of the turn's commit
(``statements.COUNT_TURN``)."""

from __future__ import annotations

from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from swarm.domain import budget
from swarm.store import statements as sql
from swarm.store.session import Session
from swarm.store.tables import TENANT_SPEND


class Budgets:
    def __init__(self, session: Session) -> None:
        self.session = session

    def reserve(self, run_id: str, worst: budget.Worst) -> bool:
        """Reserve ``worst`` if it fits every cap of the (running) run: one conditional UPDATE."""
        with self.session.single() as conn:
            return bool(
                conn.execute(sql.RESERVE, {"b_id": run_id, "b_rpico": worst.pico or 0, "b_rtok": worst.tokens}).rowcount
            )

    def release(self, run_id: str, pico: int, tokens: int) -> None:
        """Give back a reservation whose call will not be committed."""
        with self.session.single() as conn:
            conn.execute(sql.RELEASE, {"b_id": run_id, "b_rpico": pico, "b_rtok": tokens})

    def state(self, run_id: str) -> budget.State:
        with self.session.read() as conn:
            r = conn.execute(sql.BUDGET_STATE, {"b_id": run_id}).one()
        return budget.State(
            r.cost_pico, r.reserved_pico, r.max_cost_pico, int(r.used_tokens), r.reserved_tokens, r.max_tokens
        )

    # ------------------------------------------------------- a tenant's daily cap

    def reserve_tenant(self, tenant: str, day: str, pico: int, cap_pico: int) -> bool:
        """Reserve ``pico`` on the tenant's day if it fits under ``cap_pico``: one conditional UPDATE
        (after making sure the day's row exists)."""
        with self.session.tx() as conn:
            upsert = pg_insert if self.session.dialect == "postgresql" else sqlite_insert
            conn.execute(
                upsert(TENANT_SPEND)
                .values(tenant=tenant, day=day, spent_pico=0, reserved_pico=0)
                .on_conflict_do_nothing(index_elements=[TENANT_SPEND.c.tenant, TENANT_SPEND.c.day])
            )
            return bool(
                conn.execute(sql.RESERVE_TENANT, {"b_t": tenant, "b_d": day, "b_p": pico, "b_cap": cap_pico}).rowcount
            )

    def settle_tenant(self, tenant: str, day: str, reserved_pico: int, cost_pico: int) -> None:
        """A committed call: its reservation off the tenant's day, its cost on."""
        with self.session.single() as conn:
            conn.execute(sql.SETTLE_TENANT, {"b_t": tenant, "b_d": day, "b_p": reserved_pico, "b_cost": cost_pico})

    def release_tenant(self, tenant: str, day: str, reserved_pico: int) -> None:
        """A call that will not commit gives its reservation back."""
        self.settle_tenant(tenant, day, reserved_pico, 0)

    def tenant_spend(self, tenant: str, day: str) -> tuple[int, int]:
        """(spent, reserved) picodollars of the tenant on ``day``."""
        with self.session.read() as conn:
            row = conn.execute(sql.TENANT_STATE, {"b_t": tenant, "b_d": day}).first()
        return (int(row.spent_pico), int(row.reserved_pico)) if row else (0, 0)
