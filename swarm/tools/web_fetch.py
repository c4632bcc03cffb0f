"""The ``web_fetch`` tool: GET one public URL and return it as text."""

from __future__ import annotations

import queue
import ssl
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import httpcore
import httpx
from pydantic import Field

from swarm.config import Settings
from swarm.constants import MAX_TOOL_OUTPUT_CHARS
from swarm.exceptions import ToolError
from swarm.tools.arguments import Arguments, ArgumentsTool, NonBlank, WholeNumber
from swarm.tools.base import ToolContext, ToolResult
from swarm.tools.netguard import resolve_checked, split_url
from swarm.tools.page_text import charset_of, decode, html_to_text, kind_of

MAX_DOWNLOAD_BYTES = 2 * 1024 * 1024
MAX_REDIRECTS = 5
#: The default of SWARM_WEB_FETCH_TIMEOUT: one call's whole time (lookup, connect, headers, body, redirects).
TIMEOUT_SECONDS = 20.0
USER_AGENT = "swarm-web-fetch/0.1"
DEFAULT_MAX_CHARS = 20_000

_REDIRECT_CODES = {301, 302, 303, 307, 308}


class _Borrowed(httpx.BaseTransport):
    """Lends an injected transport to a per-call client without letting the client close it."""

    def __init__(self, inner: httpx.BaseTransport) -> None:
        self._inner = inner

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        return self._inner.handle_request(request)


@dataclass(frozen=True, kw_only=True)
class _Page:
    url: httpx.URL
    status: int
    reason: str
    content_type: str
    body: bytes
    truncated: bool
    kind: str
    length: str | None
    redirects: int


class _OutOfTime(Exception):
    """The call's deadline passed (while ``stage``)."""

    def __init__(self, stage: str) -> None:
        super().__init__(stage)
        self.stage = stage


class _Deadline:
    """One call's deadline, applied to every network operation: each socket connect, read and write
    waits at most for the time left, so a server that trickles its headers or body a byte at a time
    (each read returning before a per-read timeout would fire) cannot hold a call past it."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self.at = time.monotonic() + seconds

    def left(self) -> float:
        return self.at - time.monotonic()

    @property
    def expired(self) -> bool:
        return self.left() <= 0

    def clip(self, timeout: float | None, error: type[Exception]) -> float:
        left = self.left()
        if left <= 0:
            raise error(f"the {self.seconds:g} s deadline of the call passed")
        return left if timeout is None else min(timeout, left)


class _DeadlineStream(httpcore.NetworkStream):
    def __init__(self, inner: httpcore.NetworkStream, deadline: _Deadline) -> None:
        self._inner, self._deadline = inner, deadline

    def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        return self._inner.read(max_bytes, self._deadline.clip(timeout, httpcore.ReadTimeout))

    def write(self, buffer: bytes, timeout: float | None = None) -> None:
        self._inner.write(buffer, self._deadline.clip(timeout, httpcore.WriteTimeout))

    def close(self) -> None:
        self._inner.close()

    def start_tls(
        self, ssl_context: ssl.SSLContext, server_hostname: str | None = None, timeout: float | None = None
    ) -> httpcore.NetworkStream:
        # CPython bounds the whole handshake by the socket's timeout, not each read of it.
        inner = self._inner.start_tls(
            ssl_context, server_hostname, self._deadline.clip(timeout, httpcore.ConnectTimeout)
        )
        return _DeadlineStream(inner, self._deadline)

    def get_extra_info(self, info: str) -> Any:
        return self._inner.get_extra_info(info)


class _DeadlineBackend(httpcore.NetworkBackend):
    def __init__(self, deadline: _Deadline) -> None:
        self._inner, self._deadline = httpcore.SyncBackend(), deadline

    def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[httpcore.SOCKET_OPTION] | None = None,
    ) -> httpcore.NetworkStream:
        timeout = self._deadline.clip(timeout, httpcore.ConnectTimeout)
        return _DeadlineStream(
            self._inner.connect_tcp(host, port, timeout, local_address, socket_options), self._deadline
        )

    def sleep(self, seconds: float) -> None:
        time.sleep(min(seconds, max(0.0, self._deadline.left())))


def _deadline_transport(ssl_context: ssl.SSLContext, deadline: _Deadline) -> httpx.HTTPTransport:
    """httpx's own transport over a connection pool whose sockets obey ``deadline``."""
    transport = httpx.HTTPTransport(verify=ssl_context, trust_env=False)
    assert hasattr(transport, "_pool"), "httpx.HTTPTransport changed: web_fetch cannot bound its calls"
    transport._pool = httpcore.ConnectionPool(ssl_context=ssl_context, network_backend=_DeadlineBackend(deadline))
    return transport


def _resolve(host: str, port: int, allow: tuple[str, ...], deadline: _Deadline) -> list[str]:
    """:func:`resolve_checked` within the deadline. The system resolver cannot be interrupted: a
    lookup still running at the deadline is left to finish on its (daemon) thread, unused."""
    answer: queue.Queue[tuple[list[str] | None, Exception | None]] = queue.Queue(maxsize=1)

    def lookup() -> None:
        try:
            answer.put((resolve_checked(host, port, allow), None))
        except Exception as exc:
            answer.put((None, exc))

    threading.Thread(target=lookup, name="web-fetch-dns", daemon=True).start()
    try:
        addrs, error = answer.get(timeout=max(0.0, deadline.left()))
    except queue.Empty:
        raise _OutOfTime(f"looking up {host}") from None
    if error is not None:
        raise error
    assert addrs is not None
    return addrs


def _read_body(resp: httpx.Response, deadline: _Deadline) -> tuple[bytes, bool]:
    buf = bytearray()
    try:
        for chunk in resp.iter_bytes():
            buf += chunk
            if len(buf) > MAX_DOWNLOAD_BYTES:
                del buf[MAX_DOWNLOAD_BYTES:]
                return bytes(buf), True
            if deadline.expired:
                return bytes(buf), True
    except httpx.TimeoutException:
        if not deadline.expired:
            raise
        return bytes(buf), True  # what arrived in time is shown, marked as cut
    return bytes(buf), False


class WebFetchArgs(Arguments):
    url: NonBlank = Field(description="Absolute http:// or https:// URL.")
    max_chars: WholeNumber = Field(
        DEFAULT_MAX_CHARS, ge=1, description=f"Most characters of text to return (default {DEFAULT_MAX_CHARS})."
    )

    problems = {
        "url": "argument 'url' is required and must be a non-empty string (an absolute http:// or https:// URL)",
        "max_chars": "argument 'max_chars' must be a positive integer",
    }


class WebFetchTool(ArgumentsTool[WebFetchArgs]):
    """GETs a public http(s) URL and returns its text, refusing private and local addresses."""

    name = "web_fetch"
    description = (
        "Fetch a web page or text document by URL (http/https GET) and return it as readable "
        "text: HTML is converted to plain text, JSON and text are returned as is, binary files "
        "are only described. Redirects are followed. Private, local and cloud-metadata "
        "addresses are refused. Long documents are cut to max_chars."
    )
    arguments = WebFetchArgs

    def __init__(
        self,
        settings: Settings,
        *,
        transport: httpx.BaseTransport | None = None,
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        self._allow = tuple(settings.web_allow_hosts)
        self._transport = transport  # for tests; its calls are bounded only between requests
        self._ssl = ssl_context or httpx.create_ssl_context()
        self.timeout = settings.web_fetch_timeout

    def _client(self, deadline: _Deadline) -> httpx.Client:
        # One client per call: connections are made to vetted IPs, and a pooled TLS
        # connection to an IP must never be reused for another host name's request.
        # trust_env=False: a proxy would resolve names itself, behind the guard's back.
        transport = (
            _Borrowed(self._transport) if self._transport is not None else _deadline_transport(self._ssl, deadline)
        )
        return httpx.Client(transport=transport, timeout=deadline.seconds, follow_redirects=False, trust_env=False)

    def _send(self, client: httpx.Client, url: httpx.URL, deadline: _Deadline) -> httpx.Response:
        """Open a streaming GET of ``url`` after vetting every address its host resolves to.

        The connection goes to a vetted IP with the Host header and TLS SNI set to the name,
        so a DNS answer that changes after the check (DNS rebinding) is never used.
        """
        split_url(str(url))  # scheme and credential checks
        # Vet the host and port httpx will really use, in case the two URL parsers disagree.
        port = url.port or (443 if url.scheme == "https" else 80)
        host = url.raw_host.decode("ascii")  # IDNA-encoded: the name DNS and TLS really see
        last: Exception | None = None
        for ip in _resolve(host, port, self._allow, deadline):
            if deadline.expired:
                raise _OutOfTime(f"connecting to {host}")
            request = client.build_request(
                "GET",
                url.copy_with(host=ip),
                headers={
                    "Host": url.netloc.decode("ascii"),
                    "User-Agent": USER_AGENT,
                    "Accept": "text/html,application/xhtml+xml,text/*;q=0.9,*/*;q=0.5",
                },
                extensions={"sni_hostname": host} if url.scheme == "https" else {},
            )
            try:
                return client.send(request, stream=True)
            except httpx.ConnectError as e:
                last = e
        raise ToolError(f"could not connect to {host}: {last}")

    def _fetch(self, raw_url: str, deadline: _Deadline) -> _Page:
        try:
            url = httpx.URL(raw_url)
        except (httpx.InvalidURL, ValueError) as e:
            raise ToolError(f"argument 'url' is not a valid URL: {e}") from e
        with self._client(deadline) as client:
            for hop in range(MAX_REDIRECTS + 1):
                if deadline.expired:
                    raise _OutOfTime(f"following redirects ({hop} so far)")
                try:
                    resp = self._send(client, url, deadline)
                except ToolError as e:
                    if hop:
                        raise ToolError(f"{e} (redirected there from {raw_url})") from e
                    raise
                try:
                    location = resp.headers.get("location")
                    if resp.status_code in _REDIRECT_CODES and location:
                        try:
                            url = url.join(location)
                        except (httpx.InvalidURL, ValueError) as e:
                            raise ToolError(f"{url} redirected to an invalid URL {location!r}") from e
                        continue
                    ctype = resp.headers.get("content-type", "")
                    mime = ctype.split(";")[0].strip().lower()
                    if kind_of(mime, b"") == "binary":  # decided by the header alone: skip the body
                        body, truncated = b"", False
                    else:
                        body, truncated = _read_body(resp, deadline)
                    return _Page(
                        url=url,
                        status=resp.status_code,
                        reason=resp.reason_phrase,
                        content_type=ctype,
                        body=body,
                        truncated=truncated,
                        kind=kind_of(mime, body),
                        length=resp.headers.get("content-length"),
                        redirects=hop,
                    )
                finally:
                    resp.close()
        raise ToolError(f"too many redirects (more than {MAX_REDIRECTS}) starting at {raw_url}")

    def call(self, args: WebFetchArgs, ctx: ToolContext) -> ToolResult:
        raw_url, max_chars = args.url, args.max_chars
        deadline = _Deadline(self.timeout)
        try:
            page = self._fetch(raw_url.strip(), deadline)
        except ToolError as e:
            return ToolResult(f"web_fetch failed: {e}", is_error=True)
        except (httpx.TimeoutException, _OutOfTime) as e:
            stage = f" (stopped while {e.stage})" if isinstance(e, _OutOfTime) else ""
            return ToolResult(
                f"web_fetch failed: {raw_url} did not answer within "
                f"{self.timeout:g} s{stage}; try again later or another source",
                is_error=True,
            )
        except httpx.HTTPError as e:
            return ToolResult(f"web_fetch failed for {raw_url}: {type(e).__name__}: {e}", is_error=True)
        return self._render(page, raw_url.strip(), max_chars, self.timeout)

    @staticmethod
    def _render(page: _Page, requested: str, max_chars: int, timeout: float = TIMEOUT_SECONDS) -> ToolResult:
        head = [f"URL: {page.url}", f"Status: {page.status} {page.reason}".rstrip()]
        if page.redirects:
            head.append(f"Redirected from: {requested}")
        head.append(f"Content-Type: {page.content_type or '(none)'}")
        notes = []
        if page.kind == "binary":
            size = f", {page.length} bytes" if page.length else ""
            text = (
                f"[binary content ({page.content_type or 'unknown type'}{size}) not shown: "
                "web_fetch only returns HTML, text and JSON]"
            )
        else:
            decoded = decode(page.body, charset_of(page.content_type), page.kind == "html")
            if page.kind == "html":
                title, text = html_to_text(decoded)
                if title:
                    head.append(f"Title: {title[:300]}")
            else:
                text = decoded
            if page.truncated:
                notes.append(
                    f"[download stopped at {len(page.body)} bytes (limit "
                    f"{MAX_DOWNLOAD_BYTES} bytes or {timeout:g} s); the rest "
                    "of the document was not read]"
                )
        header = "\n".join(head) + "\n\n"
        limit = min(max_chars, MAX_TOOL_OUTPUT_CHARS - len(header) - 300)
        if len(text) > limit:
            notes.append(f"[truncated: showing the first {limit} of {len(text)} chars]")
            text = text[:limit]
        content = header + text + ("\n\n" + "\n".join(notes) if notes else "")
        return ToolResult(content, is_error=page.status >= 400, meta={"status": page.status, "url": str(page.url)})
