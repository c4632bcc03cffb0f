"""LLMClient and HTTP error mapping, against httpx.MockTransport (the model is never patched)."""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest
from pydantic import SecretStr

from swarm.config import Settings
from swarm.domain.llm import CallContext
from swarm.exceptions import (
    ConfigError,
    LLMAuthError,
    LLMBadRequest,
    LLMConnectionError,
    LLMError,
    LLMQuotaExceeded,
    LLMRateLimited,
    LLMServerError,
    LLMTimeout,
)
from swarm.llm.client import LLMClient
from swarm.llm.errors import map_response_error, map_transport_errors
from swarm.llm.limiter import AdaptiveLimiter

KEY = "sk-test-SUPERSECRET0123456789"
BASE = "https://llm.test/v1"
MESSAGES = [{"role": "user", "content": "hi"}]
TOOL = {"type": "function", "function": {"name": "add", "parameters": {"type": "object"}}}

Handler = Callable[[httpx.Request], httpx.Response]


def settings(**overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "llm_base_url": BASE,
        "llm_api_key": SecretStr(KEY),
        "model": "kimi-k2.5",
        "llm_max_retries": 3,
        "llm_max_concurrency": 8,
    }
    values.update(overrides)
    return Settings(_env_file=None, **values)


def completion(message: dict[str, Any] | None = None, **extra: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "id": "cmpl-1",
        "model": "kimi-k2.5-0127",
        "choices": [
            {
                "index": 0,
                "message": message or {"role": "assistant", "content": "hello"},
                "finish_reason": "stop",
            }
        ],
        "usage": {"prompt_tokens": 11, "completion_tokens": 7, "total_tokens": 18},
    }
    body.update(extra)
    return body


class Recorder:
    """A scripted model endpoint: replies (or raises) in order and keeps every request."""

    def __init__(self, *replies: httpx.Response | Exception) -> None:
        self.replies = list(replies)
        self.requests: list[httpx.Request] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        reply = self.replies.pop(0) if len(self.replies) > 1 else self.replies[0]
        if isinstance(reply, Exception):
            raise reply
        return reply

    def body(self, i: int = -1) -> dict[str, Any]:
        return json.loads(self.requests[i].content)  # type: ignore[no-any-return]


class Harness:
    def __init__(self, handler: Handler, **overrides: Any) -> None:
        self.sleeps: list[float] = []
        self.limiter = AdaptiveLimiter(8)
        self.http = httpx.Client(transport=httpx.MockTransport(handler), base_url=BASE)
        self.client = LLMClient(
            settings(**overrides),
            http=self.http,
            sleep=self.sleeps.append,
            rand=lambda: 0.0,
            limiter=self.limiter,
        )


Make = Callable[..., Harness]


@pytest.fixture
def make() -> Iterator[Make]:
    made: list[Harness] = []

    def _make(handler: Handler, **overrides: Any) -> Harness:
        h = Harness(handler, **overrides)
        made.append(h)
        return h

    yield _make
    for h in made:
        h.client.close()
        h.http.close()


def ok(message: dict[str, Any] | None = None, **extra: Any) -> httpx.Response:
    return httpx.Response(200, json=completion(message, **extra))


# --- request shape ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("flavor", "thinking", "extra"),
    [
        ("moonshot", True, {"temperature": 1.0}),
        ("moonshot", False, {"temperature": 0.6, "thinking": {"type": "disabled"}}),
        ("vllm", True, {"temperature": 1.0}),
        ("vllm", False, {"temperature": 0.6, "chat_template_kwargs": {"thinking": False}}),
        ("openai", True, {}),
        ("openai", False, {}),
    ],
)
def test_request_body_per_flavor(make: Make, flavor: str, thinking: bool, extra: dict[str, Any]) -> None:
    rec = Recorder(ok())
    h = make(rec, llm_flavor=flavor, llm_thinking=thinking)
    h.client.complete(MESSAGES, [TOOL])
    assert rec.body() == {
        "model": "kimi-k2.5",
        "messages": MESSAGES,
        "tools": [TOOL],
        "stream": False,
        **extra,
    }


def test_tools_omitted_when_empty_and_model_override(make: Make) -> None:
    rec = Recorder(ok())
    make(rec).client.complete(MESSAGES, [], model="kimi-k2-instruct")
    body = rec.body()
    assert "tools" not in body
    assert body["model"] == "kimi-k2-instruct"


def test_posts_to_chat_completions_under_base_url_with_headers(make: Make) -> None:
    rec = Recorder(ok())
    ctx = CallContext(run_id="r1", agent_id="a1", step_id="s1")
    make(rec).client.complete(MESSAGES, [], ctx)
    req = rec.requests[0]
    assert req.method == "POST"
    assert str(req.url) == "https://llm.test/v1/chat/completions"
    assert req.headers["authorization"] == f"Bearer {KEY}"
    assert req.headers["x-swarm-run-id"] == "r1"
    assert req.headers["x-swarm-agent-id"] == "a1"
    assert req.headers["x-swarm-step-id"] == "s1"


def test_no_auth_header_without_key_and_no_empty_ctx_headers(make: Make) -> None:
    rec = Recorder(ok())
    make(rec, llm_api_key=SecretStr("")).client.complete(MESSAGES, [], CallContext(run_id="r1"))
    headers = rec.requests[0].headers
    assert "authorization" not in headers
    assert headers["x-swarm-run-id"] == "r1"
    assert "x-swarm-agent-id" not in headers
    assert "x-swarm-step-id" not in headers


# --- response parsing ---------------------------------------------------------------------


def test_parses_content_usage_model_and_raw(make: Make) -> None:
    message = {"role": "assistant", "content": "hello", "reasoning_content": "let me think"}
    resp = make(Recorder(ok(message))).client.complete(MESSAGES, [])
    assert resp.content == "hello"
    assert resp.reasoning_content == "let me think"
    assert resp.tool_calls == ()
    assert resp.finish_reason == "stop"
    assert (resp.tokens_in, resp.tokens_out) == (11, 7)
    assert resp.model == "kimi-k2.5-0127"
    assert resp.latency_seconds >= 0
    assert resp.raw == message


def test_accepts_vllm_reasoning_field(make: Make) -> None:
    message = {"role": "assistant", "content": None, "reasoning": "hmm"}
    resp = make(Recorder(ok(message))).client.complete(MESSAGES, [])
    assert resp.reasoning_content == "hmm"
    assert resp.content is None


def test_tool_calls_parsed_dict_arguments_dumped_and_missing_id_synthesised(make: Make) -> None:
    message = {
        "role": "assistant",
        "content": "",
        "tool_calls": [
            {
                "id": "functions.add:0",
                "type": "function",
                "function": {"name": "add", "arguments": '{"a": 1}'},
            },
            {"type": "function", "function": {"name": "search", "arguments": {"q": "héllo"}}},
            {"type": "function", "function": {"name": "now"}},
        ],
    }
    resp = make(Recorder(ok(message))).client.complete(MESSAGES, [TOOL])
    first, second, third = resp.tool_calls
    assert (first.id, first.name, first.arguments) == ("functions.add:0", "add", '{"a": 1}')
    assert second.id == "functions.search:1"
    assert isinstance(second.arguments, str)
    assert json.loads(second.arguments) == {"q": "héllo"}
    assert (third.id, third.arguments) == ("functions.now:2", "{}")


def test_missing_usage_and_model_fall_back(make: Make) -> None:
    body = completion()
    del body["usage"], body["model"]
    resp = make(Recorder(httpx.Response(200, json=body))).client.complete(MESSAGES, [])
    assert (resp.tokens_in, resp.tokens_out) == (0, 0)
    assert resp.model == "kimi-k2.5"


def test_content_parts_are_joined(make: Make) -> None:
    message = {"role": "assistant", "content": [{"type": "text", "text": "a"}, {"text": "b"}]}
    assert make(Recorder(ok(message))).client.complete(MESSAGES, []).content == "ab"


@pytest.mark.parametrize(
    "reply",
    [
        httpx.Response(200, text="<html>bad gateway</html>"),
        httpx.Response(200, text='{"choices": [{"message": '),
        httpx.Response(200, json={"object": "chat.completion"}),
        httpx.Response(200, json={"choices": []}),
        httpx.Response(200, json={"choices": [{"finish_reason": "stop"}]}),
        httpx.Response(200, json=[1, 2]),
        httpx.Response(200, json=completion({"tool_calls": [{"function": {}}]})),
    ],
    ids=["html", "truncated", "no-choices", "empty-choices", "no-message", "list", "nameless-tool"],
)
def test_unusable_2xx_is_retryable_server_error(make: Make, reply: httpx.Response) -> None:
    rec = Recorder(reply)
    h = make(rec, llm_max_retries=2)
    with pytest.raises(LLMServerError) as info:
        h.client.complete(MESSAGES, [])
    assert len(rec.requests) == 3
    assert "HTTP 200" in str(info.value)


def test_unusable_body_then_success(make: Make) -> None:
    rec = Recorder(httpx.Response(200, text="oops"), ok())
    h = make(rec)
    assert h.client.complete(MESSAGES, []).content == "hello"
    assert len(rec.requests) == 2


# --- retries ------------------------------------------------------------------------------


def test_429_with_retry_after_is_retried_and_delay_honoured(make: Make) -> None:
    rec = Recorder(
        httpx.Response(429, headers={"Retry-After": "3"}, json={"error": {"message": "slow"}}),
        ok(),
    )
    h = make(rec)
    assert h.client.complete(MESSAGES, []).content == "hello"
    assert len(rec.requests) == 2
    assert h.sleeps == [3.0]


def test_429_retry_after_honoured_above_backoff_cap(make: Make) -> None:
    rec = Recorder(httpx.Response(429, headers={"Retry-After": "45"}), ok())
    h = make(rec)
    h.client.complete(MESSAGES, [])
    assert h.sleeps == [45.0]


def test_5xx_retried_then_success(make: Make) -> None:
    rec = Recorder(httpx.Response(502, text="bad gateway"), httpx.Response(503), ok())
    h = make(rec)
    assert h.client.complete(MESSAGES, []).content == "hello"
    assert len(rec.requests) == 3
    assert len(h.sleeps) == 2


def test_backoff_uses_injected_rand(make: Make) -> None:
    rec = Recorder(httpx.Response(500), httpx.Response(500), ok())
    h = make(rec)
    h.client._rand = lambda: 0.5
    h.client.complete(MESSAGES, [])
    assert h.sleeps == [0.25, 0.5]


def test_connection_error_retried_then_gives_up(make: Make) -> None:
    rec = Recorder(httpx.ConnectError("[Errno 111] Connection refused"))
    h = make(rec, llm_max_retries=3)
    with pytest.raises(LLMConnectionError) as info:
        h.client.complete(MESSAGES, [])
    assert len(rec.requests) == 4
    assert len(h.sleeps) == 3
    assert isinstance(info.value.__cause__, httpx.ConnectError)
    assert "SWARM_LLM_BASE_URL" in str(info.value)
    assert any("gave up after 3 retries" in note for note in info.value.__notes__)


def test_timeout_retried_as_llm_timeout(make: Make) -> None:
    rec = Recorder(httpx.ReadTimeout("timed out"), ok())
    h = make(rec)
    assert h.client.complete(MESSAGES, []).content == "hello"
    assert len(h.sleeps) == 1


def test_timeout_gives_up_as_llm_timeout(make: Make) -> None:
    h = make(Recorder(httpx.ReadTimeout("timed out")), llm_max_retries=1)
    with pytest.raises(LLMTimeout, match="SWARM_LLM_TIMEOUT"):
        h.client.complete(MESSAGES, [])


def test_zero_retries_means_one_request(make: Make) -> None:
    rec = Recorder(httpx.Response(503))
    h = make(rec, llm_max_retries=0)
    with pytest.raises(LLMServerError):
        h.client.complete(MESSAGES, [])
    assert len(rec.requests) == 1
    assert h.sleeps == []


def test_401_is_fatal_at_once(make: Make) -> None:
    rec = Recorder(
        httpx.Response(
            401,
            json={"error": {"message": "Invalid Authentication", "type": "invalid_authentication"}},
        )
    )
    h = make(rec)
    with pytest.raises(LLMAuthError) as info:
        h.client.complete(MESSAGES, [])
    assert len(rec.requests) == 1
    assert h.sleeps == []
    assert "SWARM_LLM_API_KEY" in str(info.value)
    assert "Invalid Authentication" in str(info.value)
    assert info.value.status_code == 401


def test_moonshot_quota_429_is_fatal_at_once(make: Make) -> None:
    body = {
        "error": {
            "type": "exceeded_current_quota_error",
            "message": "Your account org-x<ak-y> is suspended, please check your plan and billing details",
        }
    }
    rec = Recorder(httpx.Response(429, json=body))
    h = make(rec)
    with pytest.raises(LLMQuotaExceeded) as info:
        h.client.complete(MESSAGES, [])
    assert len(rec.requests) == 1
    assert h.sleeps == []
    assert "suspended" in str(info.value)
    assert h.limiter.limit == 8  # not a rate limit: nobody else needs to slow down


@pytest.mark.parametrize("status", [400, 404, 413, 422])
def test_bad_request_is_fatal_at_once(make: Make, status: int) -> None:
    rec = Recorder(httpx.Response(status, json={"error": {"message": "nope"}}))
    h = make(rec)
    with pytest.raises(LLMBadRequest):
        h.client.complete(MESSAGES, [])
    assert len(rec.requests) == 1


# --- limiter integration ------------------------------------------------------------------


def test_rate_limit_halves_shared_limiter_and_success_grows_it(make: Make) -> None:
    rec = Recorder(httpx.Response(429), httpx.Response(429), ok())
    h = make(rec)
    h.client.complete(MESSAGES, [])
    # 8 -> 4 -> 2 on the two 429s (each from a fresh slot), then +1 on success.
    assert h.limiter.limit == 3
    for _ in range(10):
        rec.replies = [ok()]
        h.client.complete(MESSAGES, [])
    assert h.limiter.limit == 8
    assert h.limiter.in_flight == 0


def test_concurrent_calls_stay_within_limiter(make: Make) -> None:
    lock = threading.Lock()
    current = peak = 0

    def handler(request: httpx.Request) -> httpx.Response:
        nonlocal current, peak
        with lock:
            current += 1
            peak = max(peak, current)
        time.sleep(0.002)
        with lock:
            current -= 1
        return ok()

    h = make(handler)
    h.client._limiter = AdaptiveLimiter(3)
    errors: list[BaseException] = []

    def worker() -> None:
        try:
            for _ in range(5):
                h.client.complete(MESSAGES, [])
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=worker) for _ in range(12)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    assert errors == []
    assert 1 <= peak <= 3


# --- secrets ------------------------------------------------------------------------------

LEAKY_REPLIES: list[httpx.Response | Exception] = [
    httpx.Response(401, json={"error": {"message": f"Incorrect API key provided: {KEY}"}}),
    httpx.Response(403, text=f"forbidden for Authorization: Bearer {KEY}"),
    httpx.Response(429, json={"error": {"message": f"slow down {KEY}"}}),
    httpx.Response(429, json={"error": {"type": "insufficient_quota", "message": KEY}}),
    httpx.Response(500, text=f"upstream said Bearer {KEY}"),
    httpx.Response(200, text=f"<html>{KEY}</html>"),
    httpx.ConnectError("connection refused"),
]


@pytest.mark.parametrize("reply", LEAKY_REPLIES)
def test_api_key_never_in_errors_or_logs(
    make: Make, caplog: pytest.LogCaptureFixture, reply: httpx.Response | Exception
) -> None:
    caplog.set_level(logging.DEBUG)
    h = make(Recorder(reply), llm_max_retries=2)
    with pytest.raises(LLMError) as info:
        h.client.complete(MESSAGES, [], CallContext(run_id="r1"))
    texts = [str(info.value), repr(info.value), *getattr(info.value, "__notes__", [])]
    texts += [r.getMessage() for r in caplog.records]
    for text in texts:
        assert KEY not in text
        assert "SUPERSECRET" not in text


def test_retry_is_logged_without_key(make: Make, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="swarm.llm.client")
    h = make(Recorder(httpx.Response(503), ok()))
    h.client.complete(MESSAGES, [], CallContext(run_id="r9"))
    [record] = [r for r in caplog.records if r.name == "swarm.llm.client"]
    line = record.getMessage()
    assert "LLMServerError" in line
    assert "503" in line
    assert "retry 1/3" in line
    assert "r9" in line
    assert KEY not in line


def test_repr_hides_key(make: Make) -> None:
    h = make(Recorder(ok()))
    text = repr(h.client)
    assert KEY not in text
    assert "api_key=set" in text
    assert "kimi-k2.5" in text


# --- construction and lifecycle -----------------------------------------------------------


def test_builds_one_http_client_per_thread_and_closes_them_all() -> None:
    client = LLMClient(settings(llm_timeout=42.0), limiter=AdaptiveLimiter(2))
    http = client._http()
    assert client._http() is http  # the same thread keeps its client (and its connection)
    assert str(http.base_url) == BASE + "/"
    assert http.timeout.read == 42.0
    assert http.timeout.connect == 10.0
    others: list[httpx.Client] = []
    worker = threading.Thread(target=lambda: others.append(client._http()))
    worker.start()
    worker.join()
    assert others[0] is not http
    with client as same:
        assert same is client
    assert http.is_closed and others[0].is_closed


def test_injected_http_client_is_left_open(make: Make) -> None:
    h = make(Recorder(ok()))
    h.client.close()
    assert not h.http.is_closed


def test_empty_base_url_without_http_is_config_error() -> None:
    with pytest.raises(ConfigError, match="SWARM_LLM_BASE_URL"):
        LLMClient(settings(llm_base_url=""))


# --- error mapping ------------------------------------------------------------------------


def response(status: int, body: Any = None, headers: dict[str, str] | None = None) -> httpx.Response:
    request = httpx.Request("POST", f"{BASE}/chat/completions", headers={"Authorization": f"Bearer {KEY}"})
    if isinstance(body, str):
        return httpx.Response(status, text=body, headers=headers, request=request)
    return httpx.Response(status, json=body or {}, headers=headers, request=request)


QUOTA = LLMQuotaExceeded
RATE = LLMRateLimited


@pytest.mark.parametrize(
    ("status", "body", "expected"),
    [
        (401, {}, LLMAuthError),
        (403, {}, LLMAuthError),
        (402, {"error": {"message": "Insufficient Balance"}}, QUOTA),
        (429, {"error": {"type": "exceeded_current_quota_error", "message": "x"}}, QUOTA),
        (429, {"error": {"type": "insufficient_quota", "code": "insufficient_quota"}}, QUOTA),
        (429, {"error": {"message": "Please check your plan and billing details."}}, QUOTA),
        (429, {"error": {"message": "Your account balance is too low"}}, QUOTA),
        (429, {"error": "insufficient funds"}, QUOTA),
        (429, {"error": {"type": "rate_limit_reached_error", "message": "max RPM: 3"}}, RATE),
        (429, {"error": {"type": "engine_overloaded_error"}}, RATE),
        (429, {"error": {"message": "insufficient capacity, try later"}}, RATE),
        (429, {"error": {"message": "busy at the load balancer"}}, RATE),
        (429, "Too Many Requests", RATE),
        (500, {}, LLMServerError),
        (502, "<html>Bad Gateway</html>", LLMServerError),
        (503, {}, LLMServerError),
        (504, {}, LLMServerError),
        (408, {}, LLMTimeout),
        (400, {"object": "error", "message": "too long", "type": "BadRequestError"}, LLMBadRequest),
        (404, {"detail": "Not Found"}, LLMBadRequest),
        (413, {}, LLMBadRequest),
        (422, {"detail": [{"loc": ["body"], "msg": "field required"}]}, LLMBadRequest),
        (418, {}, LLMBadRequest),
        (301, "", LLMBadRequest),
    ],
)
def test_status_mapping(status: int, body: Any, expected: type[LLMError]) -> None:
    error = map_response_error(response(status, body))
    assert type(error) is expected
    assert error.status_code == status
    assert KEY not in str(error)


def test_429_carries_retry_after_seconds_or_ms_or_text() -> None:
    assert map_response_error(response(429, {}, {"Retry-After": "12"})).retry_after == 12.0
    assert map_response_error(response(429, {}, {"retry-after-ms": "1500"})).retry_after == 1.5
    moonshot = {"error": {"message": "reached max concurrency, please try again after 2 seconds"}}
    assert map_response_error(response(429, moonshot)).retry_after == 2.0
    assert map_response_error(response(429, {})).retry_after is None


def test_503_carries_retry_after() -> None:
    assert map_response_error(response(503, {}, {"Retry-After": "5"})).retry_after == 5.0


def test_messages_include_provider_text_and_hints() -> None:
    err = map_response_error(response(404, {"error": {"message": "model not found"}}))
    assert "model not found" in str(err)
    assert "SWARM_LLM_BASE_URL" in str(err)
    assert "https://llm.test/v1/chat/completions" in str(err)
    assert "SWARM_LLM_FLAVOR" in str(map_response_error(response(422, {})))
    err = map_response_error(response(422, {"detail": [{"msg": "field required"}]}))
    assert "field required" in str(err)


def test_provider_text_is_truncated() -> None:
    err = map_response_error(response(400, {"error": {"message": "x" * 5000}}))
    assert 500 <= len(str(err)) < 1000
    assert str(err).endswith("...")


def test_response_without_request_still_maps() -> None:
    err = map_response_error(httpx.Response(500, text="boom"))
    assert isinstance(err, LLMServerError)
    assert "boom" in str(err)


@pytest.mark.parametrize(
    ("exc", "expected"),
    [
        (httpx.ConnectTimeout("t"), LLMTimeout),
        (httpx.ReadTimeout("t"), LLMTimeout),
        (httpx.PoolTimeout("t"), LLMTimeout),
        (httpx.ConnectError("refused"), LLMConnectionError),
        (httpx.RemoteProtocolError("server disconnected"), LLMConnectionError),
        (httpx.UnsupportedProtocol("no scheme"), LLMBadRequest),
        (httpx.DecodingError("bad gzip"), LLMServerError),
    ],
)
def test_transport_mapping(exc: Exception, expected: type[LLMError]) -> None:
    with pytest.raises(expected) as info, map_transport_errors():
        raise exc
    assert info.value.__cause__ is exc


def test_transport_mapping_leaves_other_errors_alone() -> None:
    with pytest.raises(KeyError), map_transport_errors():
        raise KeyError("x")


def test_abandoned_step_stops_retrying_instead_of_calling_the_model_again(make: Make) -> None:
    # The run is cancelled while the call waits out a 429: no further request may go out.
    from swarm.exceptions import FenceLost

    rec = Recorder(httpx.Response(429, headers={"Retry-After": "1"}), ok())
    h = make(rec)
    with pytest.raises(FenceLost):
        h.client.complete([{"role": "user", "content": "hi"}], [], still_wanted=lambda: False)
    assert len(rec.requests) == 1


def test_step_still_wanted_retries_normally(make: Make) -> None:
    rec = Recorder(httpx.Response(429, headers={"Retry-After": "1"}), ok())
    h = make(rec)
    h.client.complete([{"role": "user", "content": "hi"}], [], still_wanted=lambda: True)
    assert len(rec.requests) == 2
