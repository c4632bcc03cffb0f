"""Names and defaults shared across processes. Change with care: workers on other machines read them too."""

from __future__ import annotations

#: The orchestrator's own tools, with Kimi K2.5's exact names and parameters.
CREATE_SUBAGENT = "create_subagent"
ASSIGN_TASK = "assign_task"
#: Template fan-out, in the manner of Kimi Code's AgentSwarm: one subagent per item of one call.
#: Not one of Kimi K2.5's tools, so offered only with SWARM_TOOL_ASSIGN_TASKS=true.
ASSIGN_TASKS = "assign_tasks"
#: The most items (subagents) one assign_tasks call may launch.
MAX_FANOUT_ITEMS = 128
#: The placeholder assign_tasks substitutes with each item.
FANOUT_PLACEHOLDER = "{{item}}"
ORCHESTRATION_TOOLS = frozenset({CREATE_SUBAGENT, ASSIGN_TASK, ASSIGN_TASKS})
#: The tools whose calls launch subagents (and wait for them).
LAUNCH_TOOLS = frozenset({ASSIGN_TASK, ASSIGN_TASKS})

#: Celery queues. LLM calls are I/O bound (thread pool), tools need process isolation (prefork).
#: (The sweeper is no task: it is a thread in every worker process, one elected at a time.)
QUEUE_LLM = "swarm.llm"
QUEUE_TOOL = "swarm.tool"

#: How long a claimed step may run without renewing its lease before another worker may take it.
#: Recovery after a kill -9 is at most LEASE_SECONDS + SWEEP_INTERVAL_SECONDS.
LEASE_SECONDS = 10.0
#: How often a worker renews the leases of the steps it is running (well under LEASE_SECONDS).
HEARTBEAT_SECONDS = 3.0
#: How often the sweeper looks for expired leases and never-started ready steps.
SWEEP_INTERVAL_SECONDS = 2.0
#: A ready step not started after this long is re-published (lost publish, Redis flushed).
REPUBLISH_AFTER_SECONDS = 5.0
#: The cluster-wide role of the sweeper (a row of ``cluster_leases``). Its holder renews it every
#: sweep interval for SWEEPER_LEASE_INTERVALS intervals: a dead holder's role passes to another
#: worker process at most (SWEEPER_LEASE_INTERVALS + 1) sweep intervals later (≤ 8 s by default).
SWEEPER_ROLE = "sweeper"
SWEEPER_LEASE_INTERVALS = 3
#: With SWARM_RETENTION_DAYS set, how often the sweeper deletes the runs that ended longer ago than
#: that (also once when it starts), and how many runs one pass deletes before the next sweep: a
#: backlog goes a few runs per sweep interval, never holding the sweeper up for long.
RETENTION_INTERVAL_SECONDS = 3600.0
RETENTION_RUNS_PER_PASS = 20

#: How many times a step may be claimed before it is declared dead: a claim that ends in no commit
#: crashed its worker, so this is also how many crashes a step may cause (SWARM_STEP_MAX_CRASHES).
MAX_STEP_ATTEMPTS = 3

#: Limits applied when a run does not set its own.
DEFAULT_MAX_SUBAGENTS = 100
DEFAULT_MAX_TOOL_CALLS = 1500
DEFAULT_MAX_STEPS_PER_AGENT = 100
DEFAULT_MAX_ORCHESTRATOR_STEPS = 100
DEFAULT_MAX_WALL_SECONDS = 6 * 3600.0
DEFAULT_MAX_DEPTH = 1
#: Loop guard: how many times one agent may run an identical tool call (SWARM_MAX_REPEATS).
DEFAULT_MAX_REPEATS = 3
#: Output tokens a model call of a run with a spend budget may produce (SWARM_LLM_MAX_TOKENS): sent
#: as ``max_tokens`` and reserved as the call's worst case.
DEFAULT_LLM_MAX_TOKENS = 32_768
#: Warn the model once fewer than this fraction of a budget remains.
BUDGET_WARNING_FRACTION = 0.1

#: Caps on what a tool may hand back to the model.
MAX_TOOL_OUTPUT_CHARS = 20_000

#: Per-run workspace quotas (SWARM_WORKSPACE_MAX_BYTES, _MAX_FILES, _MAX_FILE_BYTES): a file a tool
#: call writes beyond them is not saved, and the call's result tells the model so.
WORKSPACE_MAX_BYTES = 256 * 1024 * 1024
WORKSPACE_MAX_FILES = 1000
WORKSPACE_MAX_FILE_BYTES = 10 * 1024 * 1024
#: A worker's local cache of run files by sha256 (SWARM_WORKSPACE_CACHE_BYTES).
WORKSPACE_CACHE_BYTES = 1024 * 1024 * 1024

#: A tool name or an fnmatch pattern of one (SWARM_APPROVE_TOOLS, --approve, approve_tools):
#: letters, digits, ``_ - .`` and the wildcards ``* ? [ ] !``. Settings and domain.approvals check it.
TOOL_PATTERN = r"[A-Za-z0-9_.\-*?\[\]!]{1,128}"
#: An age or duration as users write it: a positive number with an optional unit (30d, 12h, 90m, 3600s).
AGE_PATTERN = r"(\d+(?:\.\d+)?)([smhdw]?)"

#: Kimi (Moonshot) rate-limit tiers by cumulative recharge: (concurrency, RPM, TPM), the presets of
#: SWARM_PROVIDER_TIER. platform.moonshot.ai/docs/pricing/limits, late 2026 (docs/providers.md).
PROVIDER_TIERS: dict[str, tuple[int, int, int]] = {
    "kimi-tier0": (1, 3, 500_000),
    "kimi-tier1": (50, 200, 2_000_000),
    "kimi-tier2": (100, 500, 3_000_000),
    "kimi-tier3": (200, 5_000, 3_000_000),
    "kimi-tier4": (400, 5_000, 4_000_000),
    "kimi-tier5": (1_000, 10_000, 5_000_000),
}

#: /metrics histogram buckets (seconds) of step latency and queue wait: LLM calls take 0.5-60 s,
#: tool calls milliseconds to minutes, queue waits should be ~0. The totals table keeps a count
#: per bucket (``store/step_stats.py``): changing them needs a migration that recounts.
METRIC_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0)
