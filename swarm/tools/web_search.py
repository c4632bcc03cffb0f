"""The ``web_search`` tool and its search back-ends."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Any, Protocol

import httpx
from pydantic import Field

from swarm.config import Settings
from swarm.exceptions import ToolError
from swarm.tools.arguments import Arguments, ArgumentsTool, NonBlank, WholeNumber, at_most
from swarm.tools.base import ToolContext, ToolResult

DEFAULT_MAX_RESULTS = 5
MAX_RESULTS = 20
TIMEOUT_SECONDS = 20.0
_SNIPPET_CHARS = 500

NOT_CONFIGURED = (
    "web_search is not configured on this swarm: the operator must set SWARM_WEB_SEARCH_URL "
    "to a SearXNG-compatible JSON endpoint. Use web_fetch on a known URL or answer from what "
    "you know."
)


@dataclass(frozen=True)
class SearchHit:
    title: str
    url: str
    snippet: str


class SearchProvider(Protocol):
    def search(self, query: str, max_results: int) -> list[SearchHit]: ...


class SearxngProvider:
    """Queries a SearXNG instance's JSON API (``GET {url}?q=...&format=json``).

    The URL is operator configuration and trusted, so it is not run through the SSRF guard
    (a SearXNG container on loopback is the usual set-up).
    """

    def __init__(self, url: str, transport: httpx.BaseTransport | None = None) -> None:
        self.url = url
        self._client = httpx.Client(
            transport=transport,
            timeout=TIMEOUT_SECONDS,
            headers={"User-Agent": "swarm-web-search/0.1", "Accept": "application/json"},
        )

    def close(self) -> None:
        self._client.close()

    def search(self, query: str, max_results: int) -> list[SearchHit]:
        try:
            resp = self._client.get(self.url, params={"q": query, "format": "json"})
        except httpx.TimeoutException as e:
            raise ToolError(f"the search service did not answer within {TIMEOUT_SECONDS:g} s; try again later") from e
        except httpx.HTTPError as e:
            raise ToolError(f"the search service could not be reached: {e}") from e
        if resp.status_code == 403:
            # SearXNG's default settings.yml only enables the html format.
            raise ToolError(
                "the search service refused the JSON API (HTTP 403); the operator "
                "must enable the 'json' format under search.formats in SearXNG"
            )
        if resp.status_code != 200:
            raise ToolError(f"the search service answered HTTP {resp.status_code}")
        try:
            results = resp.json().get("results", [])
        except (ValueError, AttributeError) as e:
            raise ToolError("the search service did not return SearXNG JSON") from e
        hits = []
        for r in results if isinstance(results, list) else []:
            if not isinstance(r, dict) or not r.get("url"):
                continue
            hits.append(
                SearchHit(
                    title=str(r.get("title") or "").strip(),
                    url=str(r["url"]),
                    snippet=str(r.get("content") or "").strip(),
                )
            )
            if len(hits) >= max_results:
                break
        return hits


def format_hits(query: str, hits: list[SearchHit]) -> str:
    if not hits:
        return f"No results for {query!r}. Try other words."
    lines = []
    for i, h in enumerate(hits, 1):
        snippet = " ".join(h.snippet.split())
        if len(snippet) > _SNIPPET_CHARS:
            snippet = snippet[:_SNIPPET_CHARS] + "..."
        lines.append(f"{i}. {h.title or '(no title)'}\n   {h.url}" + (f"\n   {snippet}" if snippet else ""))
    return "\n".join(lines)


class WebSearchArgs(Arguments):
    query: NonBlank = Field(description="What to search for.")
    max_results: Annotated[WholeNumber, at_most(MAX_RESULTS)] = Field(
        DEFAULT_MAX_RESULTS,
        ge=1,
        json_schema_extra={"maximum": MAX_RESULTS},
        description=f"How many results (default {DEFAULT_MAX_RESULTS}).",
    )

    problems = {
        "query": "argument 'query' is required and must be a non-empty string",
        "max_results": f"argument 'max_results' must be an integer from 1 to {MAX_RESULTS}",
    }


class WebSearchTool(ArgumentsTool[WebSearchArgs]):
    """Searches the web through the configured :class:`SearchProvider`."""

    name = "web_search"
    description = (
        "Search the web. Returns a numbered list of results (title, URL, snippet); use "
        "web_fetch on a result's URL to read the page."
    )
    arguments = WebSearchArgs

    def __init__(self, settings: Settings, provider: SearchProvider | None = None) -> None:
        if provider is None and settings.web_search_url:
            provider = SearxngProvider(settings.web_search_url)
        self.provider = provider

    def run(self, args: dict[str, Any], ctx: ToolContext) -> ToolResult:
        if self.provider is None:  # said before any argument is looked at: no retry can help
            return ToolResult(NOT_CONFIGURED, is_error=True)
        return super().run(args, ctx)

    def call(self, args: WebSearchArgs, ctx: ToolContext) -> ToolResult:
        assert self.provider is not None  # run() answered for a missing one
        query, n = args.query, args.max_results
        try:
            hits = self.provider.search(query.strip(), n)
        except ToolError as e:
            return ToolResult(f"web_search failed: {e}", is_error=True)
        except Exception as e:
            # Third-party providers may raise anything; the model should still get an answer.
            return ToolResult(f"web_search failed: {type(e).__name__}: {e}", is_error=True)
        return ToolResult(format_hits(query.strip(), hits[:n]), meta={"results": len(hits)})
