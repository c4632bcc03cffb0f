"""HTTP and transport failures mapped onto swarm's :class:`~swarm.exceptions.LLMError` tree.

Every message says what to do next, carries the provider's own words (truncated), and is
scrubbed of the API key: these messages end up in run records, logs and UIs.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import httpx

from swarm.exceptions import (
    LLMAuthError,
    LLMBadRequest,
    LLMConnectionError,
    LLMError,
    LLMQuotaExceeded,
    LLMRateLimited,
    LLMServerError,
    LLMTimeout,
)
from swarm.llm.retry import parse_retry_after

MAX_DETAIL_CHARS = 500

# A 429 is fatal when it means "out of money", not "slow down": retrying a quota error only
# burns hours. "insufficient" alone is not enough ("insufficient capacity" is an overload).
_QUOTA_RE = re.compile(
    r"quota|billing|(?<![a-z])balance(?![a-z])|insufficient[\s_-]*(?:quota|balance|funds?|credits?)",
    re.IGNORECASE,
)
# Some providers (Moonshot, Gemini) put the wait in the message instead of Retry-After.
_WAIT_IN_TEXT_RE = re.compile(
    r"(?:try again|retry)\s+(?:after|in)\s+(\d+(?:\.\d+)?)\s*(?:s\b|secs?\b|seconds?\b)",
    re.IGNORECASE,
)
_BEARER_RE = re.compile(r"(?i)(bearer\s+)[^\s\"',;]+")
_KEYLIKE_RE = re.compile(r"\bsk-[A-Za-z0-9_\-]{8,}")


def redact(text: str, *secrets: str) -> str:
    """``text`` with the given secrets and anything that looks like a bearer token masked."""
    for secret in secrets:
        if secret:
            text = text.replace(secret, "***")
    text = _BEARER_RE.sub(r"\1***", text)
    return _KEYLIKE_RE.sub("sk-***", text)


def map_response_error(response: httpx.Response) -> LLMError:
    """The :class:`LLMError` for a non-2xx ``response`` (returned, not raised)."""
    status = response.status_code
    kind, message = _provider_error(response)
    detail = _truncate(redact(message, _bearer_token(response)))
    said = f" Provider said: {detail}" if detail else ""
    where = _safe_url(response)

    if status in (401, 403):
        return LLMAuthError(
            f"The model endpoint rejected the API key (HTTP {status}). Check SWARM_LLM_API_KEY "
            f"and that the key belongs to the provider at SWARM_LLM_BASE_URL ({where}).{said}",
            status_code=status,
        )
    if status == 402 or (status == 429 and _QUOTA_RE.search(f"{kind} {message}")):
        return LLMQuotaExceeded(
            f"The model account is out of quota or credit (HTTP {status}); retrying cannot help. "
            f"Top up the account or set SWARM_LLM_API_KEY to another key.{said}",
            status_code=status,
        )
    if status == 429:
        wait = _retry_after(response, message)
        return LLMRateLimited(
            f"The model endpoint is rate limiting us (HTTP 429); swarm backs off and retries. "
            f"If this persists, lower SWARM_LLM_MAX_CONCURRENCY.{said}",
            status_code=status,
            retry_after=wait,
        )
    if status >= 500:
        return LLMServerError(
            f"The model endpoint failed with HTTP {status} (a server-side problem; swarm "
            f"retries these). If it persists, check the provider's status or {where}.{said}",
            status_code=status,
            retry_after=_retry_after(response, ""),
        )
    if status == 408:
        return LLMTimeout(f"The model endpoint timed the request out (HTTP 408).{said}", status_code=status)
    return LLMBadRequest(_bad_request_hint(status, where) + said, status_code=status)


def _bad_request_hint(status: int, where: str) -> str:
    if status == 404:
        return (
            f"The model endpoint returned HTTP 404 for {where}. Check SWARM_LLM_BASE_URL "
            f"(it usually ends in /v1) and that SWARM_MODEL names a model it serves."
        )
    if status == 413:
        return (
            "The request is too large for the model endpoint (HTTP 413): the conversation "
            "has grown too long. Shorten tool outputs or the task."
        )
    if status == 422:
        return (
            "The model endpoint could not process the request body (HTTP 422). Check that "
            "SWARM_LLM_FLAVOR (moonshot, vllm or openai) matches the endpoint."
        )
    if 400 <= status < 500:
        return (
            f"The model endpoint rejected the request as invalid (HTTP {status}). The "
            f"conversation may exceed the context window, or SWARM_MODEL / SWARM_LLM_FLAVOR "
            f"may not match the endpoint."
        )
    return (
        f"The model endpoint answered with unexpected HTTP {status} at {where}. Check "
        f"SWARM_LLM_BASE_URL (a redirect often means http vs https or a missing /v1)."
    )


@contextmanager
def map_transport_errors() -> Iterator[None]:
    """Re-raise httpx transport failures inside the block as :class:`LLMError` subclasses."""
    try:
        yield
    except httpx.TimeoutException as exc:
        hint = (
            "Check SWARM_LLM_BASE_URL and the network."
            if isinstance(exc, httpx.ConnectTimeout)
            else "Raise SWARM_LLM_TIMEOUT if long answers are expected."
        )
        raise LLMTimeout(f"The model endpoint did not answer in time ({_describe(exc)}). {hint}") from exc
    except httpx.UnsupportedProtocol as exc:
        # A URL without http(s):// will never work; retrying it six times only delays the news.
        raise LLMBadRequest(
            f"Cannot call the model endpoint ({_describe(exc)}). SWARM_LLM_BASE_URL must "
            f"start with http:// or https://."
        ) from exc
    except httpx.TransportError as exc:
        raise LLMConnectionError(
            f"Could not reach the model endpoint ({_describe(exc)}). Check SWARM_LLM_BASE_URL and the network."
        ) from exc
    except httpx.DecodingError as exc:
        # A body that cannot be decompressed is a broken proxy, which usually passes.
        raise LLMServerError(f"The model endpoint sent an undecodable response ({_describe(exc)}).") from exc


def unusable_response(response: httpx.Response, what: str) -> LLMServerError:
    """The error for a 2xx ``response`` that is not a usable completion.

    Retryable on purpose: flaky proxies send HTML or truncated JSON with status 200, and a
    retry usually gets a real answer.
    """
    snippet = _truncate(redact(response.text[:200], _bearer_token(response)), 200)
    return LLMServerError(
        f"The model endpoint answered HTTP {response.status_code} with {what}; a proxy in "
        f"between may be misbehaving (swarm retries this). Body starts: {snippet!r}",
        status_code=response.status_code,
    )


def _describe(exc: Exception) -> str:
    text = str(exc).strip()
    name = type(exc).__name__
    return f"{name}: {_truncate(text, 300)}" if text else name


def _truncate(text: str, limit: int = MAX_DETAIL_CHARS) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _provider_error(response: httpx.Response) -> tuple[str, str]:
    """``(type and code, message)`` from the body, whatever shape the provider chose."""
    try:
        body_text = response.text
    except httpx.ResponseNotRead:
        return "", ""
    try:
        body: Any = json.loads(body_text)
    except ValueError:
        return "", body_text  # an HTML page from a proxy, or plain text
    if isinstance(body, list) and body:  # Gemini wraps errors in a list
        body = body[0]
    if not isinstance(body, dict):
        return "", body_text
    err = body.get("error", body)
    if isinstance(err, str):
        return "", err
    if not isinstance(err, dict):
        return "", body_text
    kind = " ".join(str(err[k]) for k in ("type", "code", "status") if err.get(k) is not None)
    message = err.get("message") or err.get("detail") or ""
    if not isinstance(message, str):
        message = json.dumps(message, ensure_ascii=False)
    return kind, message


def _bearer_token(response: httpx.Response) -> str:
    try:
        auth = str(response.request.headers.get("authorization", ""))
    except RuntimeError:  # a Response built by hand has no request
        return ""
    scheme, _, token = auth.partition(" ")
    return token.strip() if scheme.lower() == "bearer" else auth


def _safe_url(response: httpx.Response) -> str:
    """The request URL without credentials or query, fit for a message."""
    try:
        url = response.request.url
    except RuntimeError:
        return "SWARM_LLM_BASE_URL"
    port = f":{url.port}" if url.port else ""
    return f"{url.scheme}://{url.host}{port}{url.path}"


def _retry_after(response: httpx.Response, message: str) -> float | None:
    wait = parse_retry_after(response.headers.get("retry-after"), time.time())
    if wait is not None:
        return wait
    millis = parse_retry_after(response.headers.get("retry-after-ms"), 0.0)
    if millis is not None:
        return millis / 1000.0
    match = _WAIT_IN_TEXT_RE.search(message)
    return float(match.group(1)) if match else None
