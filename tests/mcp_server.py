"""A real MCP server for the tests, built with the SDK's MCPServer (FastMCP in mcp 1.x).

``python tests/mcp_server.py stdio`` serves over stdio; ``python tests/mcp_server.py http PORT``
over streamable HTTP at ``http://127.0.0.1:PORT/mcp``.
"""

from __future__ import annotations

import base64
import os
import sys
import time

from mcp.server.mcpserver import MCPServer
from mcp.server.mcpserver.utilities.types import Image

#: A 1x1 PNG.
PNG = base64.b64decode(
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8BQDwAEhQGAhKmMIQAAAABJRU5ErkJggg=="
)

server = MCPServer("swarm-test")


@server.tool()
def shout(text: str) -> str:
    """Return the text in capitals."""
    return text.upper()


@server.tool()
def add(a: int, b: int) -> int:
    """Add two integers."""
    return a + b


@server.tool()
def whoami() -> str:
    """The server's process id."""
    return str(os.getpid())


@server.tool()
def environment() -> str:
    """The server's environment, one NAME=value a line."""
    return "\n".join(f"{k}={v}" for k, v in sorted(os.environ.items()))


@server.tool()
def hang(seconds: float) -> str:
    """Sleep, then answer."""
    time.sleep(seconds)
    return "woke up"


@server.tool()
def broken() -> str:
    """Always fails."""
    raise ValueError("this tool always fails")


@server.tool()
def die() -> str:
    """Crash the server process."""
    os._exit(1)


@server.tool()
def picture() -> Image:
    """A tiny PNG."""
    return Image(data=PNG, format="png")


if __name__ == "__main__":
    if sys.argv[1:2] == ["fail"]:
        print("mcp test server: refusing to start (as asked)", file=sys.stderr)
        sys.exit(3)
    if sys.argv[1:2] == ["http"]:
        server.run("streamable-http", host="127.0.0.1", port=int(sys.argv[2]))
    else:
        server.run("stdio")
