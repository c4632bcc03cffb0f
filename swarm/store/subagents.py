"""The orchestration tools' commits: define a subagent type (create_subagent), launch an instance
of one (assign_task) or one per item (assign_tasks). A launched subagent's result reaches its
parent in ``outcomes.finish_agent``."""

from __future__ import annotations

import time
from collections.abc import Sequence

from sqlalchemy import insert, select, update

from swarm.domain import prompts
from swarm.domain.events import EventType
from swarm.domain.status import AgentStatus, StepKind, StepStatus
from swarm.store import outcomes, writes
from swarm.store import statements as sql
from swarm.store.session import Session, new_id
from swarm.store.tables import AGENTS, DEFS, RUNS
from swarm.store.types import Claim, StepRef


class Subagents:
    def __init__(self, session: Session) -> None:
        self.session = session

    def create(self, claim: Claim, name: str, system_prompt: str) -> list[StepRef]:
        """``create_subagent``: record the subagent type; the result goes straight to the model."""
        with self.session.tx() as conn:
            taken = conn.execute(select(DEFS.c.id).where(DEFS.c.run_id == claim.run_id, DEFS.c.name == name)).first()
            if taken:
                return outcomes.deliver(
                    conn, claim.step_id, prompts.AGENT_EXISTS.format(name=name), True, StepStatus.RUNNING, claim.fence
                )
            conn.execute(
                insert(DEFS).values(
                    run_id=claim.run_id,
                    name=name,
                    system_prompt=system_prompt,
                    created_by=claim.agent_id,
                    created_at=time.time(),
                )
            )
            writes.event(conn, claim.run_id, EventType.SUBAGENT_DEFINED, claim.agent_id, claim.step_id, {"name": name})
            return outcomes.deliver(
                conn, claim.step_id, prompts.AGENT_CREATED.format(name=name), False, StepStatus.RUNNING, claim.fence
            )

    def launch(self, claim: Claim, agent_name: str, prompt: str) -> list[StepRef]:
        """``assign_task``: start a subagent instance. The step then waits without holding a worker;
        the subagent's final message becomes its result."""
        return self.launch_many(claim, agent_name, [prompt], fanout=False)

    def launch_many(
        self, claim: Claim, agent_name: str, prompts_: Sequence[str], *, fanout: bool = True
    ) -> list[StepRef]:
        """``assign_tasks`` (``fanout``): start one subagent instance per prompt, in one transaction.
        The step waits for all of them (``pending_children``); the last one's end delivers every
        answer, in item order (``outcomes.finish_agent``)."""
        with self.session.tx() as conn:
            run = conn.execute(
                select(RUNS.c.max_depth, RUNS.c.max_steps_per_agent).where(RUNS.c.id == claim.run_id)
            ).one()
            parent = conn.execute(select(AGENTS.c.depth).where(AGENTS.c.id == claim.agent_id)).one()
            adef = conn.execute(select(DEFS).where(DEFS.c.run_id == claim.run_id, DEFS.c.name == agent_name)).first()
            refusal = None
            if parent.depth + 1 > run.max_depth:
                refusal = prompts.DEPTH_LIMIT.format(max_depth=run.max_depth)
            elif adef is None:
                names = [n for (n,) in conn.execute(select(DEFS.c.name).where(DEFS.c.run_id == claim.run_id))]
                refusal = prompts.UNKNOWN_AGENT.format(name=agent_name, available=", ".join(names) or "(none yet)")
            if refusal is not None or adef is None:
                # The launches were granted budget when the turn was committed; nothing launched, so give it back.
                writes.lock_run(conn, claim.run_id)
                conn.execute(
                    update(RUNS).where(RUNS.c.id == claim.run_id).values(subagents=RUNS.c.subagents - len(prompts_))
                )
                return outcomes.deliver(conn, claim.step_id, refusal or "", True, StepStatus.RUNNING, claim.fence)
            children = [new_id() for _ in prompts_]
            if fanout:
                outcomes.close_step(conn, claim, StepStatus.WAITING, pending_children=len(children))
            else:
                outcomes.close_step(conn, claim, StepStatus.WAITING, child_agent_id=children[0])
            now = time.time()
            system = prompts.subagent_system(adef.system_prompt, run.max_steps_per_agent)
            conn.execute(
                insert(AGENTS),
                [
                    dict(
                        id=child_id,
                        run_id=claim.run_id,
                        parent_id=claim.agent_id,
                        parent_step_id=claim.step_id,
                        parent_turn=claim.turn,
                        item=i if fanout else None,
                        name=adef.name,
                        depth=parent.depth + 1,
                        status=AgentStatus.RUNNING,
                        steps=0,
                        next_seq=2,
                        pending_tools=0,
                        tokens_in=0,
                        tokens_out=0,
                        created_at=now,
                    )
                    for i, child_id in enumerate(children)
                ],
            )
            # One statement per table for the whole fan-out (up to 128 subagents), not four per subagent.
            base = {"run_id": claim.run_id, "reasoning_content": None, "tool_calls": None, "tool_call_id": None}
            conn.execute(
                sql.INSERT_MESSAGE,
                [
                    {**base, "agent_id": child, "seq": seq, "role": role, "content": text, "created_at": now}
                    for child, prompt in zip(children, prompts_, strict=True)
                    for seq, role, text in ((0, "system", system), (1, "user", prompt))
                ],
            )
            data = {"name": adef.name, "parent_id": claim.agent_id}
            conn.execute(
                sql.INSERT_EVENT,
                [
                    {
                        "run_id": claim.run_id,
                        "ts": now,
                        "type": EventType.AGENT_STARTED.value,
                        "agent_id": child,
                        "step_id": claim.step_id,
                        "data": data,
                    }
                    for child in children
                ],
            )
            steps = [new_id() for _ in children]
            conn.execute(
                sql.INSERT_READY_STEP,
                [
                    {
                        "id": step,
                        "run_id": claim.run_id,
                        "agent_id": child,
                        "kind": StepKind.LLM,
                        "turn": 0,
                        "idx": 0,
                        "attempt": 0,
                        "fence": 0,
                    }
                    for step, child in zip(steps, children, strict=True)
                ],
            )
            return [
                StepRef(step, claim.run_id, child, StepKind.LLM) for step, child in zip(steps, children, strict=True)
            ]
