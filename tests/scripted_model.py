"""A model endpoint that answers with crafted chat.completion bodies, over real HTTP.

The simulated model (swarm.sim) only says sensible things; these tests need a model that sends
what a broken or hostile one might: NULs, 500-character ids, absurd token counts, arguments
nested 10,000 deep. ``reply(request_body)`` returns ``(message, usage)`` for each request.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

Reply = Callable[[dict[str, Any]], tuple[dict[str, Any], dict[str, Any]]]


class ScriptedModel:
    def __init__(self, reply: Reply) -> None:
        self.reply = reply
        self.requests: list[dict[str, Any]] = []
        self._lock = threading.Lock()
        model = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                with model._lock:
                    model.requests.append(body)
                message, usage = model.reply(body)
                finish = "tool_calls" if message.get("tool_calls") else "stop"
                data = json.dumps(
                    {
                        "id": "cmpl-scripted",
                        "object": "chat.completion",
                        "model": body["model"],
                        "choices": [{"index": 0, "message": {"role": "assistant", **message}, "finish_reason": finish}],
                        "usage": usage,
                    }
                ).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}/v1"

    def start(self) -> None:
        threading.Thread(target=self._server.serve_forever, daemon=True).start()

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()


@contextmanager
def scripted_model(reply: Reply) -> Iterator[ScriptedModel]:
    model = ScriptedModel(reply)
    model.start()
    try:
        yield model
    finally:
        model.stop()


USAGE = {"prompt_tokens": 10, "completion_tokens": 5, "total_tokens": 15}


def call(call_id: str, name: str, arguments: str) -> dict[str, Any]:
    return {"id": call_id, "type": "function", "function": {"name": name, "arguments": arguments}}


def tools_then_final(
    first: dict[str, Any],
    final: dict[str, Any],
    *,
    first_usage: dict[str, Any] = USAGE,
    final_usage: dict[str, Any] = USAGE,
) -> Reply:
    """Answer the task with ``first`` (tool calls), and anything after tool results with ``final``."""

    def reply(body: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
        if body["messages"][-1]["role"] == "tool":
            return final, final_usage
        return first, first_usage

    return reply
