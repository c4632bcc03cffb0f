"""The ``web_fetch`` tool: GET one public URL and return it as text."""

from __future__ import annotations

import codecs
import re
import time
from dataclasses import dataclass
from html.parser import HTMLParser
from typing import Any

import httpx

from swarm.config import Settings
from swarm.constants import MAX_TOOL_OUTPUT_CHARS
from swarm.exceptions import ToolError
from swarm.tools.base import ToolContext, ToolResult
from swarm.tools.netguard import resolve_checked, split_url

MAX_DOWNLOAD_BYTES = 2 * 1024 * 1024
MAX_REDIRECTS = 5
TIMEOUT_SECONDS = 20.0
USER_AGENT = "swarm-web-fetch/0.1"
DEFAULT_MAX_CHARS = 20_000

_REDIRECT_CODES = {301, 302, 303, 307, 308}
_HTML_TYPES = {"text/html", "application/xhtml+xml"}
_TEXT_TYPES = {"application/json", "application/xml", "application/javascript",
               "application/x-javascript", "application/ecmascript", "application/x-ndjson",
               "application/yaml", "application/x-yaml", "application/toml", "application/csv"}
_SPACES = re.compile(r"[ \t\r\n\f]+")
_META_CHARSET = re.compile(rb"""<meta[^>]+charset\s*=\s*["']?\s*([A-Za-z0-9_.:-]+)""", re.I)

_SKIP_TAGS = {"script", "style", "noscript", "template", "svg", "iframe", "object"}
_BLOCK_TAGS = {"p", "div", "br", "li", "ul", "ol", "dl", "dt", "dd", "tr", "table", "section",
               "article", "header", "footer", "nav", "aside", "main", "blockquote", "pre", "hr",
               "h1", "h2", "h3", "h4", "h5", "h6", "form", "figure", "figcaption", "details",
               "summary", "address", "fieldset", "caption", "body", "html"}


class _HTMLText(HTMLParser):
    """Collects the visible text of an HTML document, one block element per line."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []
        self.title: list[str] = []
        self._skip = 0
        self._in_title = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in _SKIP_TAGS:
            self._skip += 1
        elif tag == "title":
            self._in_title = True
        elif tag in _BLOCK_TAGS:
            self.parts.append("\n- " if tag == "li" else "\n")
        elif tag in ("td", "th"):
            self.parts.append(" ")

    def handle_endtag(self, tag: str) -> None:
        if tag in _SKIP_TAGS:
            self._skip = max(0, self._skip - 1)
        elif tag == "title":
            self._in_title = False
        elif tag in _BLOCK_TAGS:
            self.parts.append("\n")

    def handle_data(self, data: str) -> None:
        if self._skip:
            return
        # Source line breaks are just spaces in HTML; only block elements start new lines.
        (self.title if self._in_title else self.parts).append(_SPACES.sub(" ", data))


def _tidy(text: str) -> str:
    lines = (" ".join(line.split()) for line in text.split("\n"))
    return "\n".join(line for line in lines if line)


def html_to_text(html: str) -> tuple[str, str]:
    """``(title, text)`` of an HTML document: scripts, styles and tags removed, spaces collapsed."""
    parser = _HTMLText()
    try:
        parser.feed(html)
        parser.close()
    except Exception:
        # html.parser copes with almost anything; if it does not, crude stripping beats nothing.
        return "", _tidy(re.sub(r"<[^>]*>", " ", html))
    return _tidy("".join(parser.title)), _tidy("".join(parser.parts))


def _kind(mime: str, head: bytes) -> str:
    if mime in _HTML_TYPES:
        return "html"
    if mime.startswith("text/") or mime in _TEXT_TYPES or mime.endswith(("+json", "+xml")):
        return "text"
    if not mime and b"\x00" not in head[:1024]:
        start = head[:512].lstrip().lower()
        return "html" if start.startswith((b"<!doctype html", b"<html")) else "text"
    return "binary"


def _decode(body: bytes, charset: str | None, is_html: bool) -> str:
    if not charset and is_html:
        m = _META_CHARSET.search(body[:4096])
        charset = m.group(1).decode("ascii") if m else None
    try:
        codec = codecs.lookup(charset or "utf-8").name
    except LookupError:
        codec = "utf-8"
    if codec == "utf-8" and body.startswith(codecs.BOM_UTF8):
        codec = "utf-8-sig"
    return body.decode(codec, errors="replace")


class _Borrowed(httpx.BaseTransport):
    """Lends an injected transport to a per-call client without letting the client close it."""

    def __init__(self, inner: httpx.BaseTransport) -> None:
        self._inner = inner

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        return self._inner.handle_request(request)


@dataclass
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


def _read_body(resp: httpx.Response, deadline: float) -> tuple[bytes, bool]:
    buf = bytearray()
    for chunk in resp.iter_bytes():
        buf += chunk
        if len(buf) > MAX_DOWNLOAD_BYTES:
            del buf[MAX_DOWNLOAD_BYTES:]
            return bytes(buf), True
        if time.monotonic() > deadline:
            return bytes(buf), True
    return bytes(buf), False


class WebFetchTool:
    """GETs a public http(s) URL and returns its text, refusing private and local addresses."""

    name = "web_fetch"
    description = (
        "Fetch a web page or text document by URL (http/https GET) and return it as readable "
        "text: HTML is converted to plain text, JSON and text are returned as is, binary files "
        "are only described. Redirects are followed. Private, local and cloud-metadata "
        "addresses are refused. Long documents are cut to max_chars.")
    parameters: dict[str, Any] = {
        "type": "object",
        "properties": {
            "url": {"type": "string", "description": "Absolute http:// or https:// URL."},
            "max_chars": {"type": "integer", "minimum": 1,
                          "description": f"Most characters of text to return "
                                         f"(default {DEFAULT_MAX_CHARS})."},
        },
        "required": ["url"],
        "additionalProperties": False,
    }
    uses_workspace = False

    def __init__(self, settings: Settings, *, transport: httpx.BaseTransport | None = None) -> None:
        self._allow = tuple(settings.web_allow_hosts)
        self._transport = transport
        self._ssl = httpx.create_ssl_context()

    def _client(self) -> httpx.Client:
        # One client per call: connections are made to vetted IPs, and a pooled TLS
        # connection to an IP must never be reused for another host name's request.
        # trust_env=False: a proxy would resolve names itself, behind the guard's back.
        transport = (_Borrowed(self._transport) if self._transport is not None
                     else httpx.HTTPTransport(verify=self._ssl, trust_env=False))
        return httpx.Client(transport=transport, timeout=TIMEOUT_SECONDS,
                            follow_redirects=False, trust_env=False)

    def _send(self, client: httpx.Client, url: httpx.URL) -> httpx.Response:
        """Open a streaming GET of ``url`` after vetting every address its host resolves to.

        The connection goes to a vetted IP with the Host header and TLS SNI set to the name,
        so a DNS answer that changes after the check (DNS rebinding) is never used.
        """
        split_url(str(url))  # scheme and credential checks
        # Vet the host and port httpx will really use, in case the two URL parsers disagree.
        port = url.port or (443 if url.scheme == "https" else 80)
        host = url.raw_host.decode("ascii")  # IDNA-encoded: the name DNS and TLS really see
        last: Exception | None = None
        for ip in resolve_checked(host, port, self._allow):
            request = client.build_request(
                "GET", url.copy_with(host=ip),
                headers={"Host": url.netloc.decode("ascii"), "User-Agent": USER_AGENT,
                         "Accept": "text/html,application/xhtml+xml,text/*;q=0.9,*/*;q=0.5"},
                extensions={"sni_hostname": host} if url.scheme == "https" else {})
            try:
                return client.send(request, stream=True)
            except httpx.ConnectError as e:
                last = e
        raise ToolError(f"could not connect to {host}: {last}")

    def _fetch(self, raw_url: str) -> _Page:
        deadline = time.monotonic() + TIMEOUT_SECONDS
        try:
            url = httpx.URL(raw_url)
        except (httpx.InvalidURL, ValueError) as e:
            raise ToolError(f"argument 'url' is not a valid URL: {e}") from e
        with self._client() as client:
            for hop in range(MAX_REDIRECTS + 1):
                try:
                    resp = self._send(client, url)
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
                            raise ToolError(f"{url} redirected to an invalid URL "
                                            f"{location!r}") from e
                        continue
                    ctype = resp.headers.get("content-type", "")
                    mime = ctype.split(";")[0].strip().lower()
                    if _kind(mime, b"") == "binary":  # decided by the header alone: skip the body
                        body, truncated = b"", False
                    else:
                        body, truncated = _read_body(resp, deadline)
                    return _Page(url, resp.status_code, resp.reason_phrase, ctype, body,
                                 truncated, _kind(mime, body), resp.headers.get("content-length"),
                                 hop)
                finally:
                    resp.close()
        raise ToolError(f"too many redirects (more than {MAX_REDIRECTS}) starting at {raw_url}")

    def run(self, args: dict[str, Any], ctx: ToolContext) -> ToolResult:
        raw_url = args.get("url")
        if not isinstance(raw_url, str) or not raw_url.strip():
            return ToolResult("argument 'url' is required and must be a non-empty string "
                              "(an absolute http:// or https:// URL)", is_error=True)
        max_chars = args.get("max_chars", DEFAULT_MAX_CHARS)
        if isinstance(max_chars, float) and max_chars.is_integer():
            max_chars = int(max_chars)
        if isinstance(max_chars, bool) or not isinstance(max_chars, int) or max_chars < 1:
            return ToolResult("argument 'max_chars' must be a positive integer", is_error=True)
        try:
            page = self._fetch(raw_url.strip())
        except ToolError as e:
            return ToolResult(f"web_fetch failed: {e}", is_error=True)
        except httpx.TimeoutException:
            return ToolResult(f"web_fetch failed: {raw_url} did not answer within "
                              f"{TIMEOUT_SECONDS:g} s; try again later or another source",
                              is_error=True)
        except httpx.HTTPError as e:
            return ToolResult(f"web_fetch failed for {raw_url}: {type(e).__name__}: {e}",
                              is_error=True)
        return self._render(page, raw_url.strip(), max_chars)

    @staticmethod
    def _render(page: _Page, requested: str, max_chars: int) -> ToolResult:
        head = [f"URL: {page.url}", f"Status: {page.status} {page.reason}".rstrip()]
        if page.redirects:
            head.append(f"Redirected from: {requested}")
        head.append(f"Content-Type: {page.content_type or '(none)'}")
        notes = []
        if page.kind == "binary":
            size = f", {page.length} bytes" if page.length else ""
            text = (f"[binary content ({page.content_type or 'unknown type'}{size}) not shown: "
                    "web_fetch only returns HTML, text and JSON]")
        else:
            decoded = _decode(page.body, _charset(page.content_type), page.kind == "html")
            if page.kind == "html":
                title, text = html_to_text(decoded)
                if title:
                    head.append(f"Title: {title[:300]}")
            else:
                text = decoded
            if page.truncated:
                notes.append(f"[download stopped at {len(page.body)} bytes (limit "
                             f"{MAX_DOWNLOAD_BYTES} bytes or {TIMEOUT_SECONDS:g} s); the rest "
                             "of the document was not read]")
        header = "\n".join(head) + "\n\n"
        limit = min(max_chars, MAX_TOOL_OUTPUT_CHARS - len(header) - 300)
        if len(text) > limit:
            notes.append(f"[truncated: showing the first {limit} of {len(text)} chars]")
            text = text[:limit]
        content = header + text + ("\n\n" + "\n".join(notes) if notes else "")
        return ToolResult(content, is_error=page.status >= 400,
                          meta={"status": page.status, "url": str(page.url)})


def _charset(content_type: str | None) -> str | None:
    m = re.search(r"charset\s*=\s*[\"']?([\w.:-]+)", content_type or "", re.I)
    return m.group(1) if m else None
