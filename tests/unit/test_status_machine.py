import pytest

from swarm.domain.status import RunStatus, StepStatus, check_run_move, check_step_move
from swarm.exceptions import InvalidTransition


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
