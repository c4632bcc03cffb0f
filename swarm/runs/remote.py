"""Runs on a swarm server, over its REST API (the CLI with SWARM_API_URL or ``--api``).

HTTP errors become swarm's own exceptions, so the CLI reports them exactly as it reports local
ones: 404 → NotFound, 409 → StateError, 422 → InputError, 401/403 → ConfigError (fix the key),
connection failures and 5xx → :class:`ServerUnavailable`.
"""

from __future__ import annotations

import base64
import hashlib
import json
import time
import urllib.parse
from collections import Counter
from collections.abc import Iterator
from types import TracebackType
from typing import Any

import httpx

from swarm.config import Settings
from swarm.domain import files, run_ids
from swarm.domain.approvals import Decision
from swarm.domain.status import RunStatus
from swarm.exceptions import ConfigError, InputError, NotFound, QuotaExceeded, StateError, SwarmError
from swarm.retry import RetryPolicy
from swarm.runs.base import Cancelled, Progress, RunRequest, resolve, resolve_step
from swarm.store.retention import Deleted
from swarm.store.types import ApprovalInfo, ArtifactInfo, RunSummary

#: Reconnecting a dropped event stream (Last-Event-ID makes it lossless): 20 retries in a row at most.
SSE_RECONNECT = RetryPolicy(attempts=21, base=0.2, cap=2.0, jitter=0.5)


class ServerUnavailable(SwarmError):
    """The swarm server cannot be reached or failed. Is SWARM_API_URL right, and is `swarm serve` running?"""


class RemoteRuns:
    """The :class:`~swarm.runs.base.Runs` service of a swarm server. ``scope`` arguments are ignored:
    the server shows what its API key's tenant may see."""

    mode = "remote"

    def __init__(
        self, base_url: str, api_key: str, *, timeout: float = 30.0, transport: httpx.BaseTransport | None = None
    ) -> None:
        if not base_url:
            raise ConfigError("no server URL: set SWARM_API_URL or pass --api")
        if not api_key:
            raise ConfigError("no API key: set SWARM_API_KEY (create one on the server with `swarm keys create`)")
        self.base_url = self.where = base_url.rstrip("/")
        self._http = httpx.Client(
            base_url=self.base_url,
            timeout=timeout,
            transport=transport,
            headers={"Authorization": f"Bearer {api_key}", "User-Agent": "swarm-cli"},
        )

    @classmethod
    def from_settings(cls, settings: Settings, url: str | None = None) -> RemoteRuns | None:
        """A client when a server is configured (``url`` from --api, else SWARM_API_URL), else None."""
        base = url or settings.api_url
        if not base:
            return None
        return cls(base, settings.api_key.get_secret_value())

    # ------------------------------------------------------------------ runs

    def submit(self, request: RunRequest) -> str:
        body: dict[str, Any] = {
            "task": request.task,
            "limits": request.limits(),
            "attachments": [
                {"name": a.name, "mime": a.mime, "data": base64.b64encode(a.data).decode()} for a in request.attachments
            ],
        }
        if request.model:
            body["model"] = request.model
        if request.approve_tools:
            body["approve_tools"] = list(request.approve_tools)
        if request.mcp is not None:
            body["mcp"] = _mcp_body(request.mcp)
        if request.provider:
            body["provider"] = request.provider
        for name in ("provider_concurrency", "provider_rpm", "provider_tpm"):
            if getattr(request, name) is not None:
                body[name] = getattr(request, name)
        headers = {"Idempotency-Key": request.idempotency_key} if request.idempotency_key else None
        return str(self._json("POST", "/v1/runs", json=body, headers=headers)["id"])

    def resume(
        self,
        run_id: str,
        *,
        scope: str | None = None,
        max_usd: float | None = None,
        max_tokens: int | None = None,
    ) -> int:
        caps = {k: v for k, v in (("max_usd", max_usd), ("max_tokens", max_tokens)) if v is not None}
        return int(self._json("POST", f"/v1/runs/{run_id}/resume", json=caps or None)["dispatched"])

    def fork(self, run_id: str, at: str, *, message: str | None = None, scope: str | None = None) -> str:
        body = {"at_step": at, **({"message": message} if message is not None else {})}
        return str(self._json("POST", f"/v1/runs/{run_id}/fork", json=body)["id"])

    def cancel(self, run_id: str, *, scope: str | None = None) -> Cancelled:
        out = self._json("POST", f"/v1/runs/{run_id}/cancel")
        return Cancelled(run_id, RunStatus(out["status"]), bool(out["changed"]))

    def list_runs(
        self,
        *,
        status: str | None = None,
        limit: int = 50,
        offset: int = 0,
        scope: str | None = None,
        id_prefix: str | None = None,
    ) -> list[RunSummary]:
        params: dict[str, Any] = {"limit": min(limit, 500), "offset": offset}
        if status:
            params["status"] = status
        if id_prefix:
            params["id_prefix"] = id_prefix
        return [RunSummary.model_validate(r) for r in self._json("GET", "/v1/runs", params=params)["runs"]]

    def resolve(self, run_id: str, *, scope: str | None = None) -> str:
        return resolve(self, run_id, scope)

    def summary(self, run_id: str, *, scope: str | None = None) -> RunSummary:
        return RunSummary.model_validate(self._json("GET", f"/v1/runs/{run_id}"))

    def agents(self, run_id: str, *, scope: str | None = None) -> list[dict[str, Any]]:
        return list(self._json("GET", f"/v1/runs/{run_id}/agents")["agents"])

    def timeline(self, run_id: str, *, scope: str | None = None) -> dict[str, Any]:
        return dict(self._json("GET", f"/v1/runs/{run_id}/timeline"))

    def delete(self, run_id: str, *, scope: str | None = None) -> Deleted:
        out = self._json("DELETE", f"/v1/runs/{run_id}")
        return Deleted(
            runs=list(out["runs"]),
            rows=dict(out["rows"]),
            file_bytes=int(out["file_bytes"]),
            data_bytes=int(out.get("data_bytes", 0)),
        )

    def approvals(
        self,
        run_id: str | None = None,
        *,
        pending: bool = False,
        scope: str | None = None,
        step_prefix: str | None = None,
    ) -> list[ApprovalInfo]:
        params: dict[str, Any] = {"pending": "true"} if pending else {}
        if step_prefix:
            params["step_prefix"] = step_prefix
        path = "/v1/approvals" if run_id is None else f"/v1/runs/{run_id}/approvals"
        return [ApprovalInfo.model_validate(a) for a in self._json("GET", path, params=params)["approvals"]]

    def decide(
        self,
        step_id: str,
        decision: Decision,
        note: str | None = None,
        *,
        run_id: str | None = None,
        scope: str | None = None,
        by: str = "",
    ) -> ApprovalInfo:
        if run_id is None or not run_ids.is_whole(step_id):
            found_run, step_id = resolve_step(self, step_id)
            run_id = run_id or found_run
        word = "approve" if decision == Decision.APPROVED else "reject"
        body = {"decision": word, "note": note}
        return ApprovalInfo.model_validate(self._json("POST", f"/v1/runs/{run_id}/approvals/{step_id}", json=body))

    def files(self, run_id: str, *, scope: str | None = None) -> list[ArtifactInfo]:
        return [_file_info(f) for f in self._json("GET", f"/v1/runs/{run_id}/files")["files"]]

    def read_file(self, run_id: str, path: str, *, scope: str | None = None) -> tuple[ArtifactInfo, bytes]:
        # Checked here too: an encoded '..' must never reach the server as a path to follow.
        quoted = urllib.parse.quote(files.check_path(path), safe="/")
        try:
            resp = self._http.get(f"/v1/runs/{run_id}/files/{quoted}")
        except httpx.HTTPError as exc:
            raise ServerUnavailable(f"cannot reach the swarm server at {self.base_url}: {exc}") from exc
        _raise_for(resp)
        h = resp.headers
        if h.get("x-swarm-sha256") and hashlib.sha256(resp.content).hexdigest() != h["x-swarm-sha256"]:
            raise ServerUnavailable(f"file {path!r} of run {run_id} arrived damaged (sha256 differs); try again")
        info = ArtifactInfo(
            path,
            h.get("x-swarm-sha256", ""),
            len(resp.content),
            float(h.get("x-swarm-updated-at") or 0),
            h.get("x-swarm-step-id") or None,
        )
        return info, resp.content

    def info(self) -> dict[str, Any]:
        return dict(self._json("GET", "/v1/info"))

    def export(self, run_id: str, *, scope: str | None = None) -> Iterator[str]:
        with self._stream("GET", f"/v1/runs/{run_id}/export") as resp:
            for line in resp.iter_lines():
                if line:
                    yield line + "\n"

    def check(self) -> str | None:
        return None

    def provider(self) -> list[dict[str, Any]]:
        return list(self._json("GET", "/v1/provider"))

    # ---------------------------------------------------------------- events

    def events(self, run_id: str, *, after: int = 0, scope: str | None = None) -> Iterator[dict[str, Any]]:
        """The run's events (Server-Sent Events), reconnecting with Last-Event-ID when the
        connection drops: no event is missed or repeated. Ends when the run is finished."""
        last, failures, since = after, 0, time.monotonic()
        while True:
            headers = {"Last-Event-ID": str(last)} if last else {}
            try:
                with self._stream(
                    "GET",
                    f"/v1/runs/{run_id}/events",
                    headers=headers,
                    params={"follow": "true"},
                    timeout=httpx.Timeout(30.0, read=60.0),
                ) as resp:
                    for kind, event in sse_messages(resp.iter_lines()):
                        if kind == "end":
                            return  # the run is over and every event was sent
                        failures, since = 0, time.monotonic()
                        last = max(last, int(event["id"]))
                        yield event
            except ServerUnavailable:
                pass
            # Failed, or closed without `end` (server restarting, a slow reader cut off): resume
            # after the last event we have.
            failures += 1
            delay = SSE_RECONNECT.backoff(failures)
            if SSE_RECONNECT.exhausted(failures, time.monotonic() - since, delay):
                raise ServerUnavailable(f"the event stream of run {run_id} keeps failing")
            time.sleep(delay)

    def wait(self, run_id: str, on_progress: Progress | None = None, *, min_interval: float = 0.5) -> RunSummary:
        """Follow the event stream until the run ends; refresh the summary as events arrive."""
        shown = 0.0
        for _ in self.events(run_id):
            if on_progress and time.monotonic() - shown >= min_interval:
                self._show(run_id, on_progress)
                shown = time.monotonic()
        return self._show(run_id, on_progress) if on_progress else self.summary(run_id)

    def _show(self, run_id: str, on_progress: Progress) -> RunSummary:
        summary = self.summary(run_id)
        on_progress(summary, dict(Counter(a["status"] for a in self.agents(run_id))))
        return summary

    # ------------------------------------------------------------------ http

    def _json(self, method: str, path: str, **kw: Any) -> Any:
        try:
            resp = self._http.request(method, path, **kw)
        except httpx.HTTPError as exc:
            raise ServerUnavailable(f"cannot reach the swarm server at {self.base_url}: {exc}") from exc
        _raise_for(resp)
        return resp.json()

    def _stream(self, method: str, path: str, **kw: Any) -> _Stream:
        return _Stream(self._http, method, path, kw)

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> RemoteRuns:
        return self

    def __exit__(self, et: type[BaseException] | None, ev: BaseException | None, tb: TracebackType | None) -> None:
        self.close()


class _Stream:
    """``httpx.Client.stream`` with errors translated (on open and while reading)."""

    def __init__(self, http: httpx.Client, method: str, path: str, kw: dict[str, Any]) -> None:
        self._cm = http.stream(method, path, **kw)

    def __enter__(self) -> _ReadingResponse:
        try:
            resp = self._cm.__enter__()
        except httpx.HTTPError as exc:
            raise ServerUnavailable(f"cannot reach the swarm server: {exc}") from exc
        if resp.status_code >= 400:
            resp.read()
            self._cm.__exit__(None, None, None)
            _raise_for(resp)
        return _ReadingResponse(resp)

    def __exit__(self, et: type[BaseException] | None, ev: BaseException | None, tb: TracebackType | None) -> None:
        self._cm.__exit__(et, ev, tb)


class _ReadingResponse:
    def __init__(self, resp: httpx.Response) -> None:
        self._resp = resp

    def iter_lines(self) -> Iterator[str]:
        try:
            yield from self._resp.iter_lines()
        except httpx.HTTPError as exc:
            raise ServerUnavailable(f"connection to the swarm server dropped: {exc}") from exc


def sse_messages(lines: Iterator[str]) -> Iterator[tuple[str, dict[str, Any]]]:
    """Server-Sent Events → (event type, JSON data) of each message with data."""
    data: list[str] = []
    kind = "message"
    for line in lines:
        if line == "":
            if data:
                yield kind, json.loads("\n".join(data))
            data, kind = [], "message"
        elif line.startswith(":"):
            continue
        else:
            name, _, value = line.partition(":")
            value = value.removeprefix(" ")
            if name == "data":
                data.append(value)
            elif name == "event":
                kind = value


def parse_sse(lines: Iterator[str]) -> Iterator[dict[str, Any]]:
    """The run events of an SSE stream (messages with an id), without the closing ``end``."""
    for kind, data in sse_messages(lines):
        if kind != "end" and "id" in data:
            yield data


def _file_info(f: dict[str, Any]) -> ArtifactInfo:
    return ArtifactInfo(str(f["path"]), str(f["sha256"]), int(f["size"]), float(f["updated_at"]), f.get("step_id"))


def _raise_for(resp: httpx.Response) -> None:
    if resp.status_code < 400:
        return
    try:
        message = str(resp.json().get("message") or resp.text)
    except (ValueError, AttributeError):
        message = resp.text[:500] or resp.reason_phrase
    code = resp.status_code
    if code == 404:
        raise NotFound(message)
    if code == 409:
        raise StateError(message)
    if code in (400, 413, 422):
        raise InputError(message)
    if code in (401, 403):
        raise ConfigError(f"the server refused the API key ({code}): {message}")
    if code == 429:
        raise QuotaExceeded(message, retry_after=float(resp.headers.get("Retry-After") or 1))
    raise ServerUnavailable(f"the swarm server answered {code}: {message}")


def _mcp_body(text: str) -> Any:
    """The run's MCP config as the REST field's JSON object (bad JSON is refused here, as locally)."""
    try:
        return json.loads(text)
    except ValueError as exc:
        raise InputError(f"the run's MCP config: not valid JSON ({exc})") from None
