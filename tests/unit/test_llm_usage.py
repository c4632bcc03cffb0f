"""The model client reads cached and reasoning tokens wherever the provider reports them."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from swarm.llm.client import parse_completion


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
