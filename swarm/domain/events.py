"""The events a run records, one name each: the store writes them, the API streams them, the CLI's
live view and the dashboard read them. The values are the wire format (``"type"`` in the events
table, in SSE and in exports), so they never change once released."""

from __future__ import annotations

from enum import StrEnum


class EventType(StrEnum):
    RUN_CREATED = "run_created"
    RUN_RESUMED = "run_resumed"
    #: The first event of a fork after the history it carries (data: from_run, at_step).
    RUN_FORKED = "run_forked"
    RUN_DONE = "run_done"
    SUBAGENT_DEFINED = "subagent_defined"
    AGENT_STARTED = "agent_started"
    AGENT_DONE = "agent_done"
    LLM_DONE = "llm_done"
    TOOL_DONE = "tool_done"
    STEP_FAILED = "step_failed"
    #: A tool call waits for a human decision (``domain.approvals``); then it was decided.
    APPROVAL_REQUESTED = "approval_requested"
    APPROVAL_DECIDED = "approval_decided"
