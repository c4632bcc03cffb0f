"""web_search and the SearXNG provider."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
import pytest

from swarm.config import Settings
from swarm.exceptions import ToolError
from swarm.tools.base import ToolContext
from swarm.tools.web_search import (
    NOT_CONFIGURED,
    SearchHit,
    SearxngProvider,
    WebSearchTool,
)

RESULTS = {
    "query": "kimi",
    "results": [
        {"title": "Kimi K2.5", "url": "https://example.com/k2", "content": "An  open\nmodel."},
        {"title": "No URL", "content": "skipped"},
        {"title": "", "url": "https://example.com/untitled", "content": ""},
        {"title": "Third", "url": "https://example.com/3", "content": "x"},
    ],
}


def _ctx(tmp_path: Path, settings: Settings) -> ToolContext:
    return ToolContext(run_id="r", agent_id="a", step_id="s", workspace=tmp_path, settings=settings)


def _provider(handler: httpx.MockTransport | None = None) -> SearxngProvider:
    seen: list[httpx.Request] = []

    def respond(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, json=RESULTS)

    provider = SearxngProvider("http://searx.test/search", transport=handler or httpx.MockTransport(respond))
    provider.seen = seen  # type: ignore[attr-defined]
    return provider


def test_not_configured(tmp_path: Path) -> None:
    settings = Settings(home=tmp_path, web_search_url="")
    r = WebSearchTool(settings).run({"query": "anything"}, _ctx(tmp_path, settings))
    assert r.is_error
    assert r.content == NOT_CONFIGURED
    assert "SWARM_WEB_SEARCH_URL" in r.content


def test_configured_url_builds_searxng_provider(tmp_path: Path) -> None:
    tool = WebSearchTool(Settings(home=tmp_path, web_search_url="http://127.0.0.1:8888/search"))
    assert isinstance(tool.provider, SearxngProvider)
    assert tool.provider.url == "http://127.0.0.1:8888/search"


def test_searxng_provider_parses_results() -> None:
    provider = _provider()
    hits = provider.search("kimi k2", 5)
    assert hits == [
        SearchHit("Kimi K2.5", "https://example.com/k2", "An  open\nmodel."),
        SearchHit("", "https://example.com/untitled", ""),
        SearchHit("Third", "https://example.com/3", "x"),
    ]
    (request,) = provider.seen  # type: ignore[attr-defined]
    assert request.method == "GET"
    assert request.url.path == "/search"
    assert request.url.params["q"] == "kimi k2"
    assert request.url.params["format"] == "json"


def test_searxng_provider_respects_max_results() -> None:
    assert [h.title for h in _provider().search("kimi", 1)] == ["Kimi K2.5"]


@pytest.mark.parametrize(
    ("response", "message"),
    [
        (httpx.Response(403, text="Forbidden"), "enable the 'json' format"),
        (httpx.Response(502, text="bad gateway"), "HTTP 502"),
        (httpx.Response(200, text="<html>not json</html>"), "did not return SearXNG JSON"),
        (httpx.Response(200, json=["not", "an", "object"]), "did not return SearXNG JSON"),
    ],
)
def test_searxng_provider_errors(response: httpx.Response, message: str) -> None:
    provider = _provider(httpx.MockTransport(lambda request: response))
    with pytest.raises(ToolError, match=message):
        provider.search("q", 5)


def test_searxng_provider_unreachable() -> None:
    def fail(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("connection refused", request=request)

    with pytest.raises(ToolError, match="could not be reached"):
        _provider(httpx.MockTransport(fail)).search("q", 5)


def test_tool_formats_hits(tmp_path: Path) -> None:
    settings = Settings(home=tmp_path)
    r = WebSearchTool(settings, provider=_provider()).run(
        {"query": " kimi ", "max_results": 2}, _ctx(tmp_path, settings)
    )
    assert not r.is_error
    assert r.content == (
        "1. Kimi K2.5\n   https://example.com/k2\n   An open model.\n2. (no title)\n   https://example.com/untitled"
    )


def test_tool_reports_no_results(tmp_path: Path) -> None:
    class Empty:
        def search(self, query: str, max_results: int) -> list[SearchHit]:
            return []

    settings = Settings(home=tmp_path)
    r = WebSearchTool(settings, provider=Empty()).run({"query": "zzz"}, _ctx(tmp_path, settings))
    assert not r.is_error
    assert "No results" in r.content


def test_tool_turns_provider_errors_into_tool_errors(tmp_path: Path) -> None:
    class Broken:
        def search(self, query: str, max_results: int) -> list[SearchHit]:
            raise RuntimeError("backend exploded")

    settings = Settings(home=tmp_path)
    r = WebSearchTool(settings, provider=Broken()).run({"query": "q"}, _ctx(tmp_path, settings))
    assert r.is_error
    assert "backend exploded" in r.content

    failing = _provider(httpx.MockTransport(lambda request: httpx.Response(403)))
    r = WebSearchTool(settings, provider=failing).run({"query": "q"}, _ctx(tmp_path, settings))
    assert r.is_error
    assert r.content.startswith("web_search failed:")


@pytest.mark.parametrize(
    "args",
    [
        {},
        {"query": ""},
        {"query": 1},
        {"query": "q", "max_results": "3"},
        {"query": "q", "max_results": 0},
        {"query": "q", "max_results": True},
    ],
)
def test_tool_validates_arguments(tmp_path: Path, args: dict[str, object]) -> None:
    settings = Settings(home=tmp_path)
    r = WebSearchTool(settings, provider=_provider()).run(args, _ctx(tmp_path, settings))
    assert r.is_error
    assert "argument '" in r.content


def test_operator_url_on_loopback_is_trusted(tmp_path: Path) -> None:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: object) -> None:
            pass

        def do_GET(self) -> None:
            body = json.dumps(RESULTS).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        settings = Settings(home=tmp_path, web_search_url=f"http://127.0.0.1:{server.server_address[1]}/search")
        r = WebSearchTool(settings).run({"query": "kimi"}, _ctx(tmp_path, settings))
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)
    assert not r.is_error, r.content
    assert "https://example.com/k2" in r.content
