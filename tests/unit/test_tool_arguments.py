"""Tool arguments: what the model is shown (pinned byte for byte) and how what it sends is checked."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import pytest
from pydantic import Field

from swarm.config import Settings
from swarm.engine.orchestration import (
    ASSIGN_TASK_SCHEMA,
    CREATE_SUBAGENT_SCHEMA,
    ORCHESTRATION_SCHEMAS,
    AssignTaskArgs,
    CreateSubagentArgs,
    check_assign_task,
    check_create_subagent,
)
from swarm.tools.arguments import Arguments, ArgumentsTool, NonBlank, WholeNumber, at_most
from swarm.tools.base import ToolContext, ToolResult
from swarm.tools.builtin import default_registry

#: Kimi K2.5's orchestration tools as it was trained on them: its wire contract, never regenerated.
KIMI_SCHEMAS = (
    '[{"type": "function", "function": {"name": "create_subagent", "description": "Create a custom subagent '
    'with specific system prompt and name for reuse.", "parameters": {"type": "object", "properties": {"name": '
    '{"type": "string", "description": "Unique name of this agent configuration"}, "system_prompt": {"type": '
    '"string", "description": "System prompt defining the agent\'s role, capabilities, and boundaries"}}, '
    '"required": ["name", "system_prompt"]}}}, {"type": "function", "function": {"name": "assign_task", '
    '"description": "Launch a new instance of a created subagent on a task. Several assign_task calls in one '
    'turn run in parallel; each returns the subagent\'s single final message.", "parameters": {"type": '
    '"object", "properties": {"agent": {"type": "string", "description": "Which created agent to use"}, '
    '"prompt": {"type": "string", "description": "The task for the agent to perform"}}, "required": '
    '["agent", "prompt"]}}}]'
)

#: The built-in tools' parameters as the model has always seen them (generated from their models now).
BUILTIN_PARAMETERS = {
    "echo": '{"type": "object", "properties": {"text": {"type": "string", "description": "Text to return."}}, '
    '"required": ["text"], "additionalProperties": false}',
    "python": '{"type": "object", "properties": {"code": {"type": "string", "description": "Python 3 source to '
    'run."}}, "required": ["code"], "additionalProperties": false}',
    "web_fetch": '{"type": "object", "properties": {"url": {"type": "string", "description": "Absolute http:// '
    'or https:// URL."}, "max_chars": {"type": "integer", "minimum": 1, "description": "Most '
    'characters of text to return (default 20000)."}}, "required": ["url"], '
    '"additionalProperties": false}',
    "web_search": '{"type": "object", "properties": {"query": {"type": "string", "description": "What to search '
    'for."}, "max_results": {"type": "integer", "minimum": 1, "maximum": 20, "description": "How '
    'many results (default 5)."}}, "required": ["query"], "additionalProperties": false}',
}


def test_kimi_orchestration_schemas_are_sent_byte_for_byte():
    assert json.dumps(ORCHESTRATION_SCHEMAS) == KIMI_SCHEMAS


@pytest.mark.parametrize(
    ("schema", "model"), [(CREATE_SUBAGENT_SCHEMA, CreateSubagentArgs), (ASSIGN_TASK_SCHEMA, AssignTaskArgs)]
)
def test_kimi_argument_models_check_the_fields_the_literal_schemas_name(schema, model):
    params = schema["function"]["parameters"]
    assert list(model.model_fields) == list(params["properties"]) == params["required"]


def test_builtin_schemas_are_generated_unchanged(tmp_path: Path):
    registry = default_registry(Settings(_env_file=None, home=tmp_path))  # type: ignore[call-arg]
    sent = {s["function"]["name"]: json.dumps(s["function"]["parameters"]) for s in registry.schemas()}
    assert sent == BUILTIN_PARAMETERS
    assert not any(f'"{key}":' in s for s in sent.values() for key in ("title", "$defs", "default"))


@pytest.mark.parametrize(
    ("args", "error"),
    [
        ({"name": "ok name", "system_prompt": "be brief"}, None),
        (
            {"name": "a/b", "system_prompt": "x"},
            "create_subagent needs 'name': 1-64 letters, digits, spaces, '_', '-' or '.'. Got 'a/b'.",
        ),
        (
            {"system_prompt": "x"},
            "create_subagent needs 'name': 1-64 letters, digits, spaces, '_', '-' or '.'. Got None.",
        ),
        (
            {"name": 7, "system_prompt": "x"},
            "create_subagent needs 'name': 1-64 letters, digits, spaces, '_', '-' or '.'. Got 7.",
        ),
        ({"name": "w", "system_prompt": "  "}, "create_subagent needs a non-empty 'system_prompt' string."),
    ],
)
def test_create_subagent_messages(args, error):
    assert check_create_subagent(args) == error


@pytest.mark.parametrize(
    ("args", "error"),
    [
        ({"agent": "w", "prompt": "do it", "extra": 1}, None),
        ({"agent": " ", "prompt": "do it"}, None),  # agent names may be blank-looking: the store decides
        ({"agent": "", "prompt": "x"}, "assign_task needs 'agent': the name given to create_subagent."),
        ({"agent": "w", "prompt": 3}, "assign_task needs a non-empty 'prompt' string describing the task."),
    ],
)
def test_assign_task_messages(args, error):
    assert check_assign_task(args) == error


class _Args(Arguments):
    word: NonBlank = Field(description="A word.")
    count: Annotated[WholeNumber, at_most(10)] = Field(1, ge=1, description="How many.")

    problems = {"word": "argument 'word' needs a word, not {value!r}"}


class _Repeat(ArgumentsTool[_Args]):
    name = "repeat"
    description = "Repeat a word."
    arguments = _Args

    def call(self, args: _Args, ctx: ToolContext) -> ToolResult:
        return ToolResult(" ".join([args.word] * args.count))


@pytest.mark.parametrize(
    ("args", "content", "is_error"),
    [
        ({"word": "hi", "count": 2}, "hi hi", False),
        ({"word": "hi", "count": 2.0}, "hi hi", False),  # a whole float is an integer
        ({"word": "hi", "count": 99}, " ".join(["hi"] * 10), False),  # clamped, not refused
        ({"word": "hi", "unknown": True}, "hi", False),  # ignored, as the hand-written checks did
        ({"word": " "}, "argument 'word' needs a word, not ' '", True),
        ({"word": "hi", "count": True}, "argument 'count': Input should be a valid integer", True),
        ({"word": "hi", "count": "2"}, "argument 'count': Input should be a valid integer", True),
        ({"word": "hi", "count": 0}, "argument 'count': Input should be greater than or equal to 1", True),
    ],
)
def test_arguments_tool_validates_before_calling(tmp_path: Path, args, content, is_error):
    ctx = ToolContext(
        run_id="r", agent_id="a", step_id="s", workspace=tmp_path, settings=Settings(_env_file=None, home=tmp_path)
    )  # type: ignore[call-arg]
    assert _Repeat().run(args, ctx) == ToolResult(content, is_error=is_error)


def test_missing_argument_without_a_message_of_its_own():
    class Args(Arguments):
        path: str

    assert Args.parse({}) == "argument 'path' is required"
    assert Args.json_schema() == {
        "type": "object",
        "properties": {"path": {"type": "string"}},
        "required": ["path"],
        "additionalProperties": False,
    }
