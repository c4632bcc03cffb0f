"""The model client reads cached and reasoning tokens wherever the provider reports them, and sends
the prompt-cache key where the provider honours it."""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest

from swarm.config import Settings
from swarm.domain.llm import CallContext, cache_key
from swarm.llm.client import LLMClient, parse_completion
from swarm.llm.limiter import AdaptiveLimiter


def reply(usage: dict[str, Any]) -> httpx.Response:
    body = {"model": "kimi-k2.5", "choices": [{"message": {"role": "assistant", "content": "hi"}}], "usage": usage}
    return httpx.Response(200, json=body)


@pytest.mark.parametrize(
    ("usage", "cached"),
    [
        ({"prompt_tokens": 900, "completion_tokens": 5, "cached_tokens": 768}, 768),  # Moonshot
        ({"prompt_tokens": 900, "completion_tokens": 5, "prompt_tokens_details": {"cached_tokens": 512}}, 512),
        ({"prompt_tokens": 900, "completion_tokens": 5}, 0),
        ({"prompt_tokens": 900, "completion_tokens": 5, "prompt_tokens_details": None, "cached_tokens": "x"}, 0),
    ],
)
def test_cached_input_tokens_are_read_from_either_field(usage, cached):
    resp = parse_completion(reply(usage), 0.1, default_model="m")
    assert (resp.tokens_in, resp.tokens_cached, resp.tokens_out) == (900, cached, 5)


def test_reasoning_tokens_are_read_where_reported():
    usage = {"prompt_tokens": 10, "completion_tokens": 50, "completion_tokens_details": {"reasoning_tokens": 40}}
    assert parse_completion(reply(usage), 0.1, default_model="m").tokens_reasoning == 40


@pytest.mark.parametrize(("flavor", "sent"), [("moonshot", True), ("openai", True), ("vllm", False)])
def test_the_prompt_cache_key_is_sent_to_flavours_that_honour_it(flavor, sent):
    seen: list[dict[str, Any]] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(json.loads(request.content))
        return reply({"prompt_tokens": 1, "completion_tokens": 1})

    s = Settings(_env_file=None, llm_base_url="http://model.test/v1", llm_flavor=flavor)  # type: ignore[call-arg]
    with httpx.Client(base_url=s.llm_base_url, transport=httpx.MockTransport(handler)) as http:
        client = LLMClient(s, http=http, limiter=AdaptiveLimiter(4))
        key = cache_key("run-1", "worker")
        client.complete([{"role": "user", "content": "hi"}], [], CallContext("run-1", "a", "s", key))
    assert seen[0].get("prompt_cache_key") == (key if sent else None)


def test_the_cache_key_depends_on_the_run_and_the_agent_definition_only():
    assert cache_key("r", "worker") == cache_key("r", "worker") != cache_key("r", "orchestrator")
    assert cache_key("r", "worker") != cache_key("r2", "worker")
    assert len(cache_key("r" * 32, "w" * 128)) <= 64
