"""What a fetched page says, as text: its kind (HTML, text or binary), its charset, and HTML reduced
to readable text. Pure functions over bytes; :mod:`swarm.tools.web_fetch` does the fetching."""

from __future__ import annotations

import codecs
import re
from html.parser import HTMLParser

_HTML_TYPES = {"text/html", "application/xhtml+xml"}
_TEXT_TYPES = {
    "application/json",
    "application/xml",
    "application/javascript",
    "application/x-javascript",
    "application/ecmascript",
    "application/x-ndjson",
    "application/yaml",
    "application/x-yaml",
    "application/toml",
    "application/csv",
}
_SPACES = re.compile(r"[ \t\r\n\f]+")
_META_CHARSET = re.compile(rb"""<meta[^>]+charset\s*=\s*["']?\s*([A-Za-z0-9_.:-]+)""", re.I)

_SKIP_TAGS = {"script", "style", "noscript", "template", "svg", "iframe", "object"}
_BLOCK_TAGS = {
    "p",
    "div",
    "br",
    "li",
    "ul",
    "ol",
    "dl",
    "dt",
    "dd",
    "tr",
    "table",
    "section",
    "article",
    "header",
    "footer",
    "nav",
    "aside",
    "main",
    "blockquote",
    "pre",
    "hr",
    "h1",
    "h2",
    "h3",
    "h4",
    "h5",
    "h6",
    "form",
    "figure",
    "figcaption",
    "details",
    "summary",
    "address",
    "fieldset",
    "caption",
    "body",
    "html",
}


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


def kind_of(mime: str, head: bytes) -> str:
    if mime in _HTML_TYPES:
        return "html"
    if mime.startswith("text/") or mime in _TEXT_TYPES or mime.endswith(("+json", "+xml")):
        return "text"
    if not mime and b"\x00" not in head[:1024]:
        start = head[:512].lstrip().lower()
        return "html" if start.startswith((b"<!doctype html", b"<html")) else "text"
    return "binary"


def decode(body: bytes, charset: str | None, is_html: bool) -> str:
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


def charset_of(content_type: str | None) -> str | None:
    m = re.search(r"charset\s*=\s*[\"']?([\w.:-]+)", content_type or "", re.I)
    return m.group(1) if m else None
