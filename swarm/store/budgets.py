"""Spend budgets on the run row: reserve a model call's worst case, give it back, read the counters.
The decisions are ``swarm.domain.budget``'s; the settlement is part of the turn's commit
(``statements.COUNT_TURN``)."""

from __future__ import annotations

from swarm.domain import budget
from swarm.store import statements as sql
from swarm.store.session import Session


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
