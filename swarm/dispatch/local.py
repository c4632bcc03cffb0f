"""The embedded dispatcher: thread pools in this process. No services needed."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor

from swarm.constants import QUEUE_LLM
from swarm.dispatch.base import queue_for
from swarm.engine.executor import Later, StepExecutor
from swarm.store.types import StepRef

log = logging.getLogger(__name__)


class LocalDispatcher:
    """LLM steps on a wide I/O pool, tool steps on a narrower one (they spawn processes)."""

    def __init__(self, executor: StepExecutor, *, llm_threads: int, tool_threads: int) -> None:
        self.executor = executor
        self._pools = {
            QUEUE_LLM: ThreadPoolExecutor(llm_threads, thread_name_prefix="swarm-llm"),
            "tool": ThreadPoolExecutor(tool_threads, thread_name_prefix="swarm-tool"),
        }
        self._closed = threading.Event()

    def dispatch(self, refs: Sequence[StepRef]) -> None:
        if self._closed.is_set():
            return
        for ref in refs:
            pool = self._pools[QUEUE_LLM] if queue_for(ref) == QUEUE_LLM else self._pools["tool"]
            try:
                pool.submit(self._run, ref)
            except RuntimeError:  # shutting down: the step stays ready in the database
                return

    def _run(self, ref: StepRef) -> None:
        if self._closed.is_set():
            return
        # An LLM step returns this thread once its model call is on the model loop; the call's
        # commit comes back to this pool (``_later``).
        self._finish(ref.step_id, ref.run_id, lambda: self.executor.execute(ref.step_id, later=self._later(ref)))

    def _later(self, ref: StepRef) -> Later:
        def later(rest: Callable[[], list[StepRef]]) -> None:
            # Raises when shutting down: the executor then stops renewing the step's lease.
            self._pools[QUEUE_LLM].submit(self._finish, ref.step_id, ref.run_id, rest)

        return later

    def _finish(self, step_id: str, run_id: str, work: Callable[[], list[StepRef]]) -> None:
        if self._closed.is_set():
            return
        try:
            new = work()
        except Exception:
            # The step keeps its lease; when it expires the sweeper dispatches it again.
            log.exception("step %s failed unexpectedly", step_id, extra={"run_id": run_id})
            return
        self.dispatch(new)

    def close(self, wait: bool = False) -> None:
        self._closed.set()
        for pool in self._pools.values():
            pool.shutdown(wait=wait, cancel_futures=True)
