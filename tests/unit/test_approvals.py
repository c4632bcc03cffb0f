"""The pure decisions of approvals: which calls wait, how patterns and timeouts are read, what the
model is told. Anything unreadable is refused (fail closed), never read as 'no approval needed'."""

from __future__ import annotations

import pytest

from swarm.config import Settings
from swarm.domain import approvals
from swarm.domain.approvals import Decision
from swarm.exceptions import InputError, NotFound


def test_names_and_patterns_select_the_calls_that_wait():
    patterns = approvals.parse_patterns("python, mcp__github__*")
    assert patterns == ("python", "mcp__github__*")
    assert approvals.needs_approval("python", patterns)
    assert approvals.needs_approval("mcp__github__create_issue", patterns)
    assert not approvals.needs_approval("mcp__slack__post", patterns)
    assert not approvals.needs_approval("python3", patterns)  # a name matches only itself
    assert not approvals.needs_approval("Python", patterns)  # case matters, as tool names' does
    assert not approvals.needs_approval("python", None) and not approvals.needs_approval("python", [])
    assert approvals.needs_approval("assign_task", ["*"])


def test_a_run_adds_to_the_deployment_list_and_cannot_remove_from_it():
    assert approvals.merge(("python",), ("web_fetch", "python")) == ("python", "web_fetch")
    assert approvals.merge(("python",), ()) == ("python",)


@pytest.mark.parametrize("bad", ["python;rm", "a b", "x" * 129, "tool/name", "é"])
def test_unreadable_patterns_are_refused_saying_what_to_write(bad):
    with pytest.raises(InputError, match="not a tool name or pattern"):
        approvals.parse_patterns(["python", bad])


def test_lists_come_as_text_or_lists_without_blanks_or_repeats():
    assert approvals.parse_patterns(None) == ()
    assert approvals.parse_patterns(" , ") == ()
    assert approvals.parse_patterns(["python,echo", "echo"]) == ("python", "echo")


def test_timeouts_read_seconds_and_durations():
    assert approvals.parse_timeout(None) is None and approvals.parse_timeout("") is None
    assert approvals.parse_timeout("30m") == 1800.0
    assert approvals.parse_timeout("90") == 90.0
    assert approvals.parse_timeout(2.5) == 2.5
    for bad in ("0", "-5", "soon", 0):
        with pytest.raises(InputError):
            approvals.parse_timeout(bad)


def test_settings_refuse_bad_approval_settings_at_start(tmp_path):
    ok = Settings(_env_file=None, home=tmp_path, approve_tools=" python , mcp__x__* ", approval_timeout="2h")  # type: ignore[call-arg]
    assert (ok.approve_tools, ok.approval_timeout) == ("python,mcp__x__*", "2h")
    with pytest.raises(ValueError, match="SWARM_APPROVE_TOOLS"):
        Settings(_env_file=None, home=tmp_path, approve_tools="python;ls")  # type: ignore[call-arg]
    with pytest.raises(ValueError, match="SWARM_APPROVAL_TIMEOUT"):
        Settings(_env_file=None, home=tmp_path, approval_timeout="later")  # type: ignore[call-arg]


def test_decisions_and_reasons():
    assert approvals.decision_of("approve") == Decision.APPROVED
    assert approvals.decision_of("Reject") == Decision.REJECTED
    with pytest.raises(InputError):
        approvals.decision_of("maybe")
    with pytest.raises(InputError, match="needs a reason"):
        approvals.check_reason(Decision.REJECTED, "  ")
    assert approvals.check_reason(Decision.APPROVED, "") is None
    text = approvals.rejection_text("python", "no network")
    assert text.startswith("Error:") and "python" in text and "no network" in text


def test_step_ids_typed_short_must_name_one_request():
    assert approvals.step_prefix(" AB12 ") == "ab12"
    with pytest.raises(InputError):
        approvals.step_prefix("not-hex")
    assert approvals.pick_step("ab", [("r1", "ab12")]) == ("r1", "ab12")
    with pytest.raises(NotFound, match="swarm approvals"):
        approvals.pick_step("ab", [])
    with pytest.raises(InputError, match="more than one"):
        approvals.pick_step("ab", [("r1", "ab12"), ("r2", "ab34")])


def test_the_live_view_counts_calls_awaiting_a_decision():
    from rich.console import Console

    from swarm.cli.live import LiveRun
    from swarm.store.types import RunSummary

    summary = RunSummary(
        id="r" * 32, status="running", reason=None, task="t", model="m", subagents=0, llm_calls=1, tool_calls=0,
        critical_steps=1, total_steps=1, wall_seconds=1.0, tokens_in=0, tokens_out=0, result=None,
        created_at=0.0, finished_at=None, max_subagents=1, max_tool_calls=1,
    )  # fmt: skip
    live = LiveRun(summary)
    event = {"run_id": summary.id, "agent_id": "a", "ts": 0.0}
    live.apply({**event, "id": 1, "type": "approval_requested", "step_id": "s1" * 16, "data": {"tool": "python"}})
    console = Console(width=200, record=True)
    console.print(live.render())
    assert "1 awaiting (e.g. python): swarm approve s1s1s1s1s1s1" in console.export_text()
    live.apply({**event, "id": 2, "type": "approval_decided", "step_id": "s1" * 16, "data": {}})
    assert live.awaiting == {}
