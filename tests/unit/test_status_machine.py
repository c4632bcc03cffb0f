import pytest
from sqlalchemy.dialects import postgresql

from swarm.domain import status
from swarm.domain.status import RunStatus, StepStatus, check_run_move, check_step_move
from swarm.exceptions import InvalidTransition
from swarm.store import statements as sql
from swarm.store.models import AGENTS, RUNS, STEPS
from swarm.store.statements import guard


def test_succeeded_run_is_final():
    with pytest.raises(InvalidTransition, match="succeeded run cannot become running"):
        check_run_move(RunStatus.SUCCEEDED, RunStatus.RUNNING)


@pytest.mark.parametrize("status", [RunStatus.FAILED, RunStatus.CANCELLED])
def test_failed_and_cancelled_runs_can_resume(status):
    check_run_move(status, RunStatus.RUNNING)


def test_waiting_step_cannot_go_back_to_ready():
    # An assign_task whose subagent exists must never be re-run (it would launch a second subagent).
    with pytest.raises(InvalidTransition):
        check_step_move(StepStatus.WAITING, StepStatus.READY)


def test_succeeded_step_is_final():
    with pytest.raises(InvalidTransition):
        check_step_move(StepStatus.SUCCEEDED, StepStatus.RUNNING)


# ------------------------------------------------------- the machine is the declaration

MACHINES = [
    (status.RunStatus, status.RUN_TRANSITIONS, status.RUN_MOVES),
    (status.AgentStatus, status.AGENT_TRANSITIONS, status.AGENT_MOVES),
    (status.StepStatus, status.STEP_TRANSITIONS, status.STEP_MOVES),
]


@pytest.mark.parametrize(("statuses", "transitions", "table"), MACHINES)
def test_every_named_transition_is_a_move_the_table_allows(statuses, transitions, table):
    for t in transitions:
        assert t.sources, f"{t.name} has no source status"
        for source in t.sources:
            assert t.target in table[source], f"{t.name}: {source} → {t.target}"


@pytest.mark.parametrize(("statuses", "transitions", "table"), MACHINES)
def test_the_table_is_exactly_the_union_of_the_transitions(statuses, transitions, table):
    union = {(s, t.target) for t in transitions for s in t.sources}
    assert {(s, target) for s, targets in table.items() for target in targets} == union
    assert set(table) == set(statuses)


def test_every_transition_constant_is_in_its_machine():
    declared = {name for name, value in vars(status).items() if isinstance(value, status.Transition)}
    listed = {t for _, transitions, _ in MACHINES for t in transitions}
    assert {getattr(status, name) for name in declared} == listed
    for name in declared:
        assert name.split("_")[0] == getattr(status, name).subject.upper(), name


def test_transition_names_are_unique_within_a_machine():
    for _, transitions, _ in MACHINES:
        names = [t.name for t in transitions]
        assert len(names) == len(set(names))


def test_terminal_states_have_no_way_out_but_resume():
    assert status.RUN_MOVES[RunStatus.SUCCEEDED] == frozenset()
    assert status.STEP_MOVES[StepStatus.SUCCEEDED] == frozenset()
    assert status.AGENT_MOVES[status.AgentStatus.SUCCEEDED] == frozenset()
    assert status.STEP_MOVES[StepStatus.FAILED] == {StepStatus.READY, StepStatus.WAITING, StepStatus.AWAITING_APPROVAL}


def test_a_call_awaiting_approval_moves_only_by_a_decision_or_its_run():
    # approve → ready; reject / expire → succeeded (with its tool error); cancel → cancelled.
    assert status.STEP_MOVES[StepStatus.AWAITING_APPROVAL] == {
        StepStatus.READY,
        StepStatus.SUCCEEDED,
        StepStatus.CANCELLED,
    }
    assert status.STEP_APPROVE.sources == {StepStatus.AWAITING_APPROVAL}
    # No worker can take it: neither claimed, nor expired, nor re-published by the sweeper.
    for move in (status.STEP_CLAIM, status.STEP_TAKE_OVER, status.STEP_EXPIRE, status.STEP_REPUBLISH):
        assert not move.allows(StepStatus.AWAITING_APPROVAL), move.name
    # Resume puts an undecided call back to waiting for its decision, never straight to ready.
    assert status.STEP_REAWAIT.sources == {StepStatus.FAILED, StepStatus.CANCELLED}
    assert status.STEP_REAWAIT.target == StepStatus.AWAITING_APPROVAL


def test_a_refused_move_says_what_from_where_and_what_is_allowed():
    with pytest.raises(InvalidTransition) as caught:
        status.RUN_RESUME.check(RunStatus.SUCCEEDED, "run r1")
    assert str(caught.value) == (
        "cannot resume run r1: it is succeeded, and resume moves a run only from cancelled or failed to running"
    )
    status.RUN_RESUME.check(RunStatus.CANCELLED)  # allowed: no error


def _sql(clause) -> str:
    return str(clause.compile(dialect=postgresql.dialect(), compile_kwargs={"literal_binds": True}))


def test_guards_render_the_sources_of_their_transition():
    assert _sql(guard(STEPS.c.status, status.STEP_CLAIM)) == "steps.status = 'ready'"
    assert _sql(guard(RUNS.c.status, status.RUN_CANCEL)) == "runs.status = 'running'"
    assert _sql(guard(STEPS.c.status, status.STEP_CANCEL)) == (
        "steps.status IN ('awaiting_approval', 'ready', 'running', 'waiting')"
    )
    assert _sql(guard(AGENTS.c.status, status.AGENT_REOPEN)) == "agents.status IN ('cancelled', 'failed')"


def test_the_claim_statement_is_guarded_by_claim_and_take_over():
    # The same SQL the hand-written guard rendered: one equality per source, no IN list.
    compiled = sql.CLAIM.whereclause.compile(dialect=postgresql.dialect())
    assert (
        "(steps.status = %(status_2)s::VARCHAR OR steps.status = %(status_3)s::VARCHAR AND steps.lease_until <"
        in str(compiled)
    )
    assert (compiled.params["status_2"], compiled.params["status_3"]) == ("ready", "running")
