"""swarm.domain.sanitize: what models and tools send, made storable."""

from __future__ import annotations

import json

import pytest

from swarm.config import Settings
from swarm.domain import sanitize
from swarm.domain.llm import LLMResponse, ToolCall
from swarm.domain.turns import TurnKind
from swarm.engine.planner import plan_turn
from swarm.store.conversation import user_content
from swarm.store.models import ARTIFACTS, MESSAGES, STEPS
from swarm.store.types import Attachment


def test_limits_are_the_columns_sizes():
    assert sanitize.MAX_ID_CHARS == STEPS.c.tool_call_id.type.length == MESSAGES.c.tool_call_id.type.length
    assert STEPS.c.tool_name.type.length == sanitize.MAX_NAME_CHARS
    assert ARTIFACTS.c.path.type.length == 512


def test_nul_and_lone_surrogates_become_replacement_characters():
    assert sanitize.text("a\x00b\ud800c") == "a\ufffdb\ufffdc"
    assert sanitize.text("plain ü text") == "plain ü text"
    assert sanitize.optional_text(None) is None
    assert sanitize.json_value([{"type": "text", "text": "x\x00"}]) == [{"type": "text", "text": "x\ufffd"}]


def test_a_nul_in_json_arguments_becomes_an_escape_that_keeps_its_meaning():
    raw = sanitize.json_text('{"text": "a\x00b"}')
    assert "\x00" not in raw and json.loads(raw) == {"text": "a\x00b"}


def test_overlong_ids_get_a_stable_distinct_hash_id():
    a, b = "a" * 500, "a" * 499 + "b"
    assert sanitize.call_id(a, 0) == sanitize.call_id(a, 7)  # stable: the result finds its call
    assert sanitize.call_id(a, 0) != sanitize.call_id(b, 0)
    assert len(sanitize.call_id(a, 0)) <= sanitize.MAX_ID_CHARS
    assert sanitize.call_id("functions.echo:0", 0) == "functions.echo:0"
    assert sanitize.call_id("", 3) == "call_3"
    assert sanitize.call_id("id\x00", 0).startswith("call_")


def test_overlong_names_are_cut_and_never_match_a_real_tool():
    cut = sanitize.name("echo" * 100)
    assert len(cut) == sanitize.MAX_NAME_CHARS and cut.endswith("…")
    assert sanitize.name("echo") == "echo"


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (10**30, sanitize.MAX_TOKENS),
        (-5, 0),
        ("lots", 0),
        ("12", 12),
        ("9" * 5000, 0),
        (True, 0),
        (None, 0),
        (12.7, 12),
        (float("inf"), 0),
        (float("nan"), 0),
        (1e300, sanitize.MAX_TOKENS),
        ([1], 0),
        (42, 42),
    ],
)
def test_token_counts_are_clamped_to_the_columns_range(value, expected):
    assert sanitize.token_count(value) == expected


def test_a_response_is_made_storable_and_a_clean_one_is_left_alone():
    dirty = LLMResponse("hi\x00", "r\x00", (ToolCall("x" * 300, "n" * 300, '{"a": "\x00"}'),), "stop", 10**30, -1, "m")
    clean = sanitize.response(dirty)
    assert (clean.content, clean.reasoning_content, clean.tokens_in, clean.tokens_out) == (
        "hi\ufffd",
        "r\ufffd",
        sanitize.MAX_TOKENS,
        0,
    )
    (tc,) = clean.tool_calls
    assert len(tc.id) <= 128 and len(tc.name) <= 128 and json.loads(tc.arguments) == {"a": "\x00"}
    fine = LLMResponse("hi", None, (ToolCall("c1", "echo", "{}"),), "stop", 3, 4, "m")
    assert sanitize.response(fine) is fine


def test_arguments_over_the_depth_or_size_limit_are_refused_not_parsed():
    assert sanitize.load_arguments("[" * 10_000 + "]" * 10_000) == (None, "depth")
    deep = "[" * (sanitize.MAX_ARGUMENT_DEPTH + 1) + "]" * (sanitize.MAX_ARGUMENT_DEPTH + 1)
    assert sanitize.load_arguments(deep) == (None, "depth")
    ok = "[" * sanitize.MAX_ARGUMENT_DEPTH + "]" * sanitize.MAX_ARGUMENT_DEPTH
    assert sanitize.load_arguments(ok)[1] is None
    assert sanitize.load_arguments(" " * (sanitize.MAX_ARGUMENT_CHARS + 1)) == (None, "size")
    assert sanitize.load_arguments('{"a": [1, {"b": "[[[["}]}') == ({"a": [1, {"b": "[[[["}]}, None)
    assert sanitize.depth({"a": [1, {"b": []}]}) == 4 and sanitize.depth(5) == 0


def test_the_planner_turns_over_deep_and_huge_arguments_into_tool_errors():
    calls = (
        ToolCall("d", "echo", '{"text": ' + "[" * 5000 + "]" * 5000 + "}"),
        ToolCall("h", "echo", json.dumps({"text": "a" * sanitize.MAX_ARGUMENT_CHARS})),
        ToolCall("ok", "echo", '{"text": "fine"}'),
    )
    plan = plan_turn(LLMResponse(None, None, calls, None, 0, 0, "m"), {"echo"}, last_step=False)
    assert plan.kind == TurnKind.TOOLS
    deep, huge, ok = plan.calls
    assert "nested too deeply" in (deep.error or "") and "too large" in (huge.error or "")
    assert ok.error is None and ok.args == {"text": "fine"}


def test_binary_attachments_are_named_not_inlined():
    pdf = Attachment("report.pdf", b"%PDF-1.7\n\x00\xff\xfe binary", "application/pdf")
    latin1 = Attachment("old.txt", "caf\xe9".encode("latin-1"), "text/plain")
    text = Attachment("notes.txt", "naïve\n".encode(), "text/plain")
    _, pdf_part, latin1_part, text_part = user_content("task\x00", [pdf, latin1, text])
    assert pdf_part["text"] == (
        "Attached file report.pdf (application/pdf, 19 bytes) is binary, so it is not shown "
        "here; it is in the workspace as report.pdf, where the python tool can read it."
    )
    assert latin1_part["text"].startswith("Attached file old.txt (text/plain, 4 bytes) is binary")
    assert text_part["text"] == "Attached file notes.txt:\nnaïve\n"
    assert user_content("task\x00", []) == "task\ufffd"


def test_max_crashes_is_a_setting(monkeypatch):
    assert Settings(_env_file=None).step_max_crashes == 3  # type: ignore[call-arg]
    monkeypatch.setenv("SWARM_STEP_MAX_CRASHES", "5")
    assert Settings(_env_file=None).step_max_crashes == 5  # type: ignore[call-arg]
