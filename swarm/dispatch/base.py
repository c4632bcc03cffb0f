"""The dispatcher interface. Dispatching is only ever done AFTER the commit that made the steps
ready; losing a dispatch is harmless because the sweeper re-publishes ready steps nobody started."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from swarm.constants import ORCHESTRATION_TOOLS, QUEUE_LLM, QUEUE_TOOL
from swarm.domain.status import StepKind
from swarm.store.types import StepRef


class Dispatcher(Protocol):
    def dispatch(self, refs: Sequence[StepRef]) -> None: ...


def queue_for(ref: StepRef) -> str:
    """LLM calls and the orchestration tools (database-only) are I/O bound; real tools need processes."""
    if ref.kind == StepKind.LLM or ref.tool_name in ORCHESTRATION_TOOLS:
        return QUEUE_LLM
    return QUEUE_TOOL
