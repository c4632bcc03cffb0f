"""Words swarm says to models. Kept together so they can be reviewed (and tuned) in one place.

Every sentence a model reads from swarm is here: system prompts, nudges, the tool errors the
planner and the store write as tool results, and the reasons an agent or run ends with (a
subagent's reason reaches its parent model as a tool error).
"""

from __future__ import annotations

ORCHESTRATOR_SYSTEM = """\
You are the orchestrator of an agent swarm. Decompose the user's task yourself:
- create specialised subagents with create_subagent(name, system_prompt), each reusable;
- launch them with assign_task(agent, prompt). Several assign_task calls in the same turn run in
  parallel, so put independent work in one turn. Each subagent works alone with its own tools and
  returns a single final message; give it everything it needs in the prompt.
- use your direct tools for small things yourself.
When the work is done, reply with the final answer and no tool calls.
Budgets for this run: at most {max_subagents} subagents, {max_tool_calls} tool calls, {max_steps} of your own steps."""

SUBAGENT_SUFFIX = """

You are a subagent in a swarm. Work on your task with your tools, then reply with one final
message (no tool calls) holding your complete result: it is all the orchestrator will see.
You may take at most {max_steps} steps."""

LAST_STEP_NOTE = (
    "[swarm: this is your last allowed step. Do not call tools: reply now with your "
    "final answer based on what you have.]"
)

EMPTY_REPLY_NUDGE = "[swarm: your last reply was empty. Continue the task with a tool call, or give your final answer.]"

UNKNOWN_TOOL = "Unknown tool {name!r}. Available tools: {available}."
BAD_JSON = (
    "The arguments of your {name} call are not valid JSON ({error}). Send the call again "
    "with a JSON object as arguments."
)
NOT_AN_OBJECT = "The arguments of your {name} call must be a JSON object, got {kind}."
ARGUMENTS_TOO_LARGE = (
    "The arguments of your {name} call are too large ({size} characters; the limit is {limit}). "
    "Send smaller arguments, e.g. build large data in several calls."
)
ARGUMENTS_TOO_DEEP = (
    "The arguments of your {name} call are nested too deeply (the limit is {limit} levels). Send flatter arguments."
)
TOOL_CRASHED = (
    "The {name} tool call crashed the worker running it {times} times in a row (the process "
    "died), so it is not retried. Do not repeat it; try another approach."
)
TOOL_RESULT_REFUSED = (
    "The result of your {name} call could not be stored ({error}), so it is lost. Do not "
    "repeat the call as it was; try another approach."
)
UNKNOWN_AGENT = (
    "No subagent named {name!r} exists in this run. Create it first with "
    "create_subagent(name, system_prompt), or use one of: {available}."
)
AGENT_EXISTS = (
    "A subagent named {name!r} already exists in this run; reuse it with "
    "assign_task(agent={name!r}, prompt=...) or pick another name."
)
DEPTH_LIMIT = "Subagents may not launch subagents here (max depth {max_depth}). Do the work yourself."
TOOL_UNAVAILABLE = "Tool {name!r} is not available on this worker."
TOOL_FAILED = "The {name} tool crashed: {error}"
OVER_BUDGET = (
    "Refused: this run's limit of {limit} {what} is reached. Do not retry this call; "
    "finish the task with the results you have."
)
REPEATED_CALL = (
    "Refused: you already ran this exact {name} call (same arguments) {limit} times, so it was not "
    "run again; use the results you have. Change the arguments, try another approach, or give your "
    "final answer."
)
SPAWN_CAP = (
    "Not launched: at most {cap} subagents may be launched in one turn, and this turn's earlier "
    "assign_task calls used them. Nothing was run for this call: assign it again in a later turn."
)
FANOUT_SPAWN_CAP = (
    "Not launched: at most {cap} subagents may be launched in one turn; this assign_tasks call has "
    "{count} items and this turn had launched {used}. Nothing was run: call it with at most {left} items."
)
FANOUT_OVER_BUDGET = (
    "Refused: this assign_tasks call would launch {count} subagents but this run has {left} of its "
    "{limit} left. Nothing was run: use fewer items, or finish with the results you have."
)
BUDGET_NOTE = "[swarm: {left} of {limit} {what} left in this run; plan to finish.]"
AGENT_CREATED = "Created subagent {name!r}. Launch it with assign_task(agent={name!r}, prompt=...)."
SUBAGENT_FAILED = "Subagent {name!r} failed: {reason}"
FANOUT_NO_ITEMS = "assign_tasks needs 'items': a non-empty list of strings, one per subagent."
FANOUT_BAD_ITEM = "assign_tasks 'items' must all be strings (or numbers); item {index} is {kind}."
FANOUT_TOO_MANY = "assign_tasks takes at most {limit} items per call; got {count}. Split them over several calls."
FANOUT_NO_PLACEHOLDER = (
    "assign_tasks 'prompt_template' must contain {placeholder}, which is replaced by each item in turn."
)
FANOUT_DUPLICATES = (
    "assign_tasks prompts must be distinct, but items {first} and {second} give the same prompt. "
    "Remove the duplicates and call again."
)
FANOUT_HEADER = "assign_tasks: {count} subagents, {ok} answered, {failed} failed. Their answers, in item order:"
FANOUT_ITEM = "=== item {index}/{count}: {item} ({outcome}) ==="
TOOL_NOT_RUN = "The {name} tool call could not be run: {reason}."

#: Why a run past its max wall time failed.
TIME_LIMIT = "time limit: the run exceeded its max wall time"
#: Why an agent that wanted more tools on its last allowed step failed.
STEP_LIMIT = "step limit: used all {steps} allowed steps without a final answer"
#: Told the model, as a note on its tool results, once 90 % of the run's spend budget is used.
BUDGET_WRAP_UP = (
    "[swarm: {percent} % of this run's spending budget is used. Wrap up now: launch no new work, "
    "and give your final answer with what you have.]"
)
#: Why a run whose next model call does not fit its budget failed (it starts with "budget").
BUDGET_EXHAUSTED = (
    "budget: the run spent {spent} of its {cap} cap and its next model call could cost up to {worst}; "
    "no new model call was started. Continue it with `swarm resume RUN_ID {what} <higher cap>`."
)
TENANT_BUDGET_EXHAUSTED = (
    "budget: tenant {tenant!r} spent {spent} of its {cap} daily cap (SWARM_TENANT_MAX_USD_PER_DAY, UTC day "
    "{day}) and this run's next model call could cost up to {worst}; no new model call was started. "
    "Resume the run on another day or once the cap is raised."
)
BUDGET_NO_PRICE = (
    "budget: model {model!r} has no price, so a USD budget cannot be kept; add it to the SWARM_PRICES "
    "file (or run without --max-usd)."
)
#: Why a ready step that nobody could claim any more was given up.
ATTEMPTS_USED = "step used up its {times} attempts without finishing; not retried"


def subagent_system(system_prompt: str, max_steps: int) -> str:
    return system_prompt + SUBAGENT_SUFFIX.format(max_steps=max_steps)


def crashed_reason(times: int) -> str:
    """Why a step that crashed its worker ``times`` times (a poison step) is not run again."""
    return f"step crashed its worker {times} times; not retried"
