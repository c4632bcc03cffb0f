"""Request bodies over real HTTP: capped before they are read, and large ones decoded off the event loop."""

from __future__ import annotations

import base64
import json
import socket
import threading

import pytest

import swarm.api.limits as limits
from swarm.api.testing import live_api
from tests.conftest import make_settings

CAP = 256 * 1024


@pytest.fixture
def api(tmp_path, sqlite_url, sim):
    with live_api(make_settings(tmp_path, sqlite_url, sim.url, api_max_body_bytes=CAP)) as a:
        yield a


def _connect(api) -> socket.socket:
    host, port = api.url.removeprefix("http://").split(":")
    return socket.create_connection((host, int(port)), timeout=10)


def _response(sock: socket.socket) -> tuple[int, dict]:
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        assert chunk, f"connection closed without an answer: {data!r}"
        data += chunk
    head, _, rest = data.partition(b"\r\n\r\n")
    status = int(head.split()[1])
    headers = dict(line.lower().split(b":", 1) for line in head.split(b"\r\n")[1:])
    length = int(headers[b"content-length"])
    while len(rest) < length:
        rest += sock.recv(65536)
    return status, json.loads(rest[:length])


def _head(key: str, extra: str) -> bytes:
    return (
        f"POST /v1/runs HTTP/1.1\r\nHost: test\r\nAuthorization: Bearer {key}\r\n"
        f"Content-Type: application/json\r\n{extra}\r\n"
    ).encode()


def test_a_content_length_over_the_cap_is_answered_413_before_the_body_is_read(api):
    with _connect(api) as sock:
        sock.sendall(_head(api.key(), "Content-Length: 1073741824\r\n"))  # 1 GiB announced, none sent
        status, body = _response(sock)
    assert status == 413
    assert body["error"] == "too_large" and "SWARM_API_MAX_BODY_BYTES" in body["message"]


def test_a_chunked_body_is_cut_off_at_the_cap(api):
    """The body never ends: a server that read it whole would wait forever; this one answers 413
    once the cap is passed."""
    chunk = b"x" * 16384
    with _connect(api) as sock:
        sock.sendall(_head(api.key(), "Transfer-Encoding: chunked\r\n"))
        sock.sendall(b'4\r\n{"a"\r\n')
        # Four bytes past the cap, then nothing more (no final chunk): a byte the server never reads
        # would make its close a reset, which can discard the answer before it is read.
        for _ in range(CAP // len(chunk)):
            sock.sendall(f"{len(chunk):x}\r\n".encode() + chunk + b"\r\n")
        status, body = _response(sock)
    assert status == 413 and body["error"] == "too_large"


def test_a_body_under_the_cap_is_accepted(api):
    data = base64.b64encode(b"y" * 100_000).decode()
    with api.client(api.key()) as c:
        resp = c.post(
            "/v1/runs",
            json={"task": "t #sim agents=1 tools=1 tool=echo", "attachments": [{"name": "y.txt", "data": data}]},
        )
    assert resp.status_code == 202, resp.text
    assert api.store.artifacts(resp.json()["id"])["y.txt"][1] == b"y" * 100_000


def test_a_large_body_is_parsed_and_validated_off_the_event_loop(api, monkeypatch):
    threads: list[str] = []
    decode = limits._decode

    def recording(body, adapter):
        threads.append(threading.current_thread().name)
        return decode(body, adapter)

    monkeypatch.setattr(limits, "_decode", recording)
    data = base64.b64encode(b"z" * 150_000).decode()
    key = api.key()
    with api.client(key) as c:
        ok = c.post(
            "/v1/runs",
            json={"task": "t #sim agents=1 tools=1 tool=echo", "attachments": [{"name": "z.bin", "data": data}]},
        )
        bad = c.post("/v1/runs", json={"task": "t", "attachments": [{"name": "z.bin", "data": data[:-3] + "*=="}]})
        small_bad = c.post("/v1/runs", json={"task": "t", "attachments": [{"name": "z.bin", "data": "*==="}]})
        broken = c.post(
            "/v1/runs", content=b'{"task": "' + b"t" * 100_000 + b'"', headers={"Content-Type": "application/json"}
        )
    assert ok.status_code == 202, ok.text
    assert api.store.artifacts(ok.json()["id"])["z.bin"][1] == b"z" * 150_000
    # Three large bodies went through the thread (the small one did not), none on the loop's thread.
    # (The server's event loop runs on the thread "swarm-api-<port>".)
    assert len(threads) == 3 and not any(t.startswith("swarm-api") for t in threads), threads
    # Errors read as FastAPI's own for a small body: a 422 naming the field.
    assert bad.status_code == small_bad.status_code == 422
    assert (
        [f["field"] for f in bad.json()["fields"]]
        == [f["field"] for f in small_bad.json()["fields"]]
        == ["body.attachments.0.data"]
    )
    assert broken.status_code == 422 and broken.json()["fields"][0]["message"] == "JSON decode error"
