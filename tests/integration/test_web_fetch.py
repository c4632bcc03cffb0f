"""web_fetch against real HTTP servers on 127.0.0.1."""

from __future__ import annotations

import contextlib
import json
import shutil
import socket
import ssl
import subprocess
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest

from swarm.config import Settings
from swarm.constants import MAX_TOOL_OUTPUT_CHARS
from swarm.tools.base import ToolContext
from swarm.tools.web_fetch import MAX_DOWNLOAD_BYTES, WebFetchTool

PAGE = b"""<!doctype html><html><head><title>Test  Page</title>
<style>body { color: red }</style><script>var secret = "SCRIPT-TEXT";</script></head>
<body><h1>Hello&nbsp;world</h1><p>First   paragraph
with <b>bold</b> text.</p><ul><li>one</li><li>two</li></ul>
<noscript>NOSCRIPT-TEXT</noscript></body></html>"""


class _Handler(BaseHTTPRequestHandler):
    server: _Server

    def log_message(self, format: str, *args: object) -> None:
        pass

    def _send(self, status: int, body: bytes, ctype: str, headers: dict[str, str] | None = None) -> None:
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self) -> None:
        self.server.hits.append(self.path)
        parts = urlsplit(self.path)
        query = parse_qs(parts.query)
        if parts.path == "/page":
            self._send(200, PAGE, "text/html; charset=utf-8")
        elif parts.path == "/latin1":
            self._send(200, "<p>caf\u00e9</p>".encode("latin-1"), "text/html; charset=iso-8859-1")
        elif parts.path == "/json":
            self._send(200, json.dumps({"answer": 42}).encode(), "application/json")
        elif parts.path == "/big":
            self._send(200, b"a" * (3 * 1024 * 1024), "text/plain")
        elif parts.path == "/bin":
            self._send(200, b"\x00\x01\x02" * 1000, "application/octet-stream")
        elif parts.path == "/host":
            self._send(200, self.headers.get("Host", "").encode(), "text/plain")
        elif parts.path == "/missing":
            self._send(404, b"<h1>Not here</h1>", "text/html")
        elif parts.path == "/redirect":
            self._send(302, b"", "text/plain", {"Location": query["to"][0]})
        elif parts.path == "/loop":
            self._send(302, b"", "text/plain", {"Location": "/loop"})
        elif parts.path == "/secret":
            self._send(200, b"TOP-SECRET", "text/plain")
        elif parts.path == "/slowloop":
            time.sleep(0.6)
            self._send(302, b"", "text/plain", {"Location": "/slowloop"})
        else:
            self._send(404, b"no such path", "text/plain")


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.hits: list[str] = []

    @property
    def port(self) -> int:
        return int(self.server_address[1])

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"


@contextlib.contextmanager
def _serve(tls: ssl.SSLContext | None = None) -> Iterator[_Server]:
    server = _Server()
    if tls is not None:
        server.socket = tls.wrap_socket(server.socket, server_side=True)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


@pytest.fixture
def server() -> Iterator[_Server]:
    with _serve() as s:
        yield s


@pytest.fixture
def other_server() -> Iterator[_Server]:
    with _serve() as s:
        yield s


def _fetch(tmp_path: Path, allow: list[str], args: dict[str, object]) -> tuple[str, bool]:
    settings = Settings(home=tmp_path, web_allow_hosts=allow)
    ctx = ToolContext(run_id="r", agent_id="a", step_id="s", workspace=tmp_path, settings=settings)
    result = WebFetchTool(settings).run(args, ctx)
    return result.content, result.is_error


def test_refuses_direct_loopback(tmp_path: Path, server: _Server) -> None:
    content, is_error = _fetch(tmp_path, [], {"url": server.url("/page")})
    assert is_error
    assert "non-public" in content
    assert server.hits == []


def test_fetches_html_as_text_when_allow_listed(tmp_path: Path, server: _Server) -> None:
    content, is_error = _fetch(tmp_path, [f"127.0.0.1:{server.port}"], {"url": server.url("/page")})
    assert not is_error, content
    assert content.startswith(f"URL: {server.url('/page')}\nStatus: 200 OK\n")
    assert "Title: Test Page" in content
    assert "Hello\xa0world" in content or "Hello world" in content
    assert "First paragraph with bold text." in content
    assert "\n- one\n- two" in content
    for hidden in ("SCRIPT-TEXT", "NOSCRIPT-TEXT", "color: red", "<p>", "<h1>"):
        assert hidden not in content


def test_charset_from_header(tmp_path: Path, server: _Server) -> None:
    content, _ = _fetch(tmp_path, ["127.0.0.1/32"], {"url": server.url("/latin1")})
    assert content.endswith("caf\u00e9")


def test_json_is_returned_as_is(tmp_path: Path, server: _Server) -> None:
    content, is_error = _fetch(tmp_path, ["127.0.0.1/32"], {"url": server.url("/json")})
    assert not is_error
    assert content.endswith('{"answer": 42}')


def test_binary_is_described_not_returned(tmp_path: Path, server: _Server) -> None:
    content, is_error = _fetch(tmp_path, ["127.0.0.1/32"], {"url": server.url("/bin")})
    assert not is_error
    assert "binary content (application/octet-stream, 3000 bytes) not shown" in content
    assert "\x00" not in content


def test_connects_to_vetted_ip_with_host_header(tmp_path: Path, server: _Server) -> None:
    content, is_error = _fetch(tmp_path, [f"localhost:{server.port}"], {"url": f"http://localhost:{server.port}/host"})
    assert not is_error, content
    assert content.endswith(f"\n\nlocalhost:{server.port}")


def test_download_cap(tmp_path: Path, server: _Server) -> None:
    content, is_error = _fetch(tmp_path, ["127.0.0.1/32"], {"url": server.url("/big")})
    assert not is_error
    assert f"download stopped at {MAX_DOWNLOAD_BYTES} bytes" in content
    assert "[truncated: showing the first" in content
    assert len(content) <= MAX_TOOL_OUTPUT_CHARS


def test_max_chars(tmp_path: Path, server: _Server) -> None:
    content, _ = _fetch(tmp_path, ["127.0.0.1/32"], {"url": server.url("/big"), "max_chars": 100})
    body = content.split("\n\n")[1]
    assert body == "a" * 100
    assert "[truncated: showing the first 100 of" in content


@pytest.mark.parametrize(
    "args", [{}, {"url": ""}, {"url": 3}, {"url": "http://x/", "max_chars": "10"}, {"url": "http://x/", "max_chars": 0}]
)
def test_bad_arguments(tmp_path: Path, args: dict[str, object]) -> None:
    content, is_error = _fetch(tmp_path, [], args)
    assert is_error
    assert "argument '" in content


def test_follows_allowed_redirects(tmp_path: Path, server: _Server) -> None:
    start = server.url("/redirect?to=/json")
    content, is_error = _fetch(tmp_path, [f"127.0.0.1:{server.port}"], {"url": start})
    assert not is_error, content
    assert f"URL: {server.url('/json')}" in content
    assert f"Redirected from: {start}" in content
    assert server.hits == ["/redirect?to=/json", "/json"]


def test_refuses_redirect_to_metadata_address(tmp_path: Path, server: _Server) -> None:
    target = "http://169.254.169.254/latest/meta-data/"
    content, is_error = _fetch(tmp_path, [f"127.0.0.1:{server.port}"], {"url": server.url(f"/redirect?to={target}")})
    assert is_error
    assert "169.254.169.254" in content
    assert "non-public" in content
    assert "redirected there from" in content


def test_refuses_redirect_to_other_loopback_port(tmp_path: Path, server: _Server, other_server: _Server) -> None:
    target = other_server.url("/secret")
    content, is_error = _fetch(tmp_path, [f"127.0.0.1:{server.port}"], {"url": server.url(f"/redirect?to={target}")})
    assert is_error
    assert "non-public" in content
    assert "TOP-SECRET" not in content
    assert other_server.hits == []


def test_refuses_redirect_to_file_scheme(tmp_path: Path, server: _Server) -> None:
    content, is_error = _fetch(tmp_path, ["127.0.0.1/32"], {"url": server.url("/redirect?to=file:///etc/passwd")})
    assert is_error
    assert "only http:// and https://" in content


def test_too_many_redirects(tmp_path: Path, server: _Server) -> None:
    content, is_error = _fetch(tmp_path, ["127.0.0.1/32"], {"url": server.url("/loop")})
    assert is_error
    assert "too many redirects" in content
    assert len(server.hits) == 6


def test_http_error_status_is_an_error_with_body(tmp_path: Path, server: _Server) -> None:
    content, is_error = _fetch(tmp_path, ["127.0.0.1/32"], {"url": server.url("/missing")})
    assert is_error
    assert "Status: 404 Not Found" in content
    assert "Not here" in content


def test_connection_refused(tmp_path: Path) -> None:
    s = _Server()
    port = s.port
    s.server_close()
    content, is_error = _fetch(tmp_path, ["127.0.0.1/32"], {"url": f"http://127.0.0.1:{port}/"})
    assert is_error
    assert "could not connect" in content


@pytest.fixture
def cert(tmp_path: Path) -> tuple[Path, Path]:
    """A self-signed certificate valid for the name ``localhost`` only (not 127.0.0.1)."""
    if shutil.which("openssl") is None:
        pytest.skip("needs the openssl command")
    key, crt = tmp_path / "key.pem", tmp_path / "cert.pem"
    subprocess.run(
        [
            "openssl",
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "1",
            "-subj",
            "/CN=localhost",
            "-addext",
            "subjectAltName=DNS:localhost",
            "-keyout",
            str(key),
            "-out",
            str(crt),
        ],
        check=True,
        capture_output=True,
    )
    return key, crt


def test_https_uses_sni_and_verifies_the_host_name(tmp_path: Path, cert: tuple[Path, Path]) -> None:
    key, crt = cert
    server_ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_ctx.load_cert_chain(crt, key)
    sni: list[str | None] = []

    def remember_sni(sock: ssl.SSLObject, name: str | None, ctx: ssl.SSLContext) -> None:
        sni.append(name)

    server_ctx.sni_callback = remember_sni
    client_ctx = ssl.create_default_context(cafile=str(crt))
    with _serve(server_ctx) as server:
        settings = Settings(home=tmp_path, web_allow_hosts=["localhost", "127.0.0.1"])
        ctx = ToolContext(run_id="r", agent_id="a", step_id="s", workspace=tmp_path, settings=settings)
        tool = WebFetchTool(settings, transport=httpx.HTTPTransport(verify=client_ctx))
        ok = tool.run({"url": f"https://localhost:{server.port}/host"}, ctx)
        assert not ok.is_error, ok.content
        assert ok.content.endswith(f"localhost:{server.port}")
        assert "localhost" in sni
        # The certificate does not cover the address itself, so verification really happened.
        bad = tool.run({"url": f"https://127.0.0.1:{server.port}/host"}, ctx)
        assert bad.is_error
        assert "CERTIFICATE_VERIFY_FAILED" in bad.content, bad.content


# --------------------------------------------------------------------------- one deadline per call

SLOW_HEADERS = (
    b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nX-Filler: " + b"z" * 200 + b"\r\nContent-Length: 2\r\n\r\nok"
)


class _Trickler:
    """A server on 127.0.0.1 that answers every request with ``head`` at once, then ``slow`` one
    byte per ``interval`` seconds: each read returns quickly, so no per-read timeout ever fires."""

    def __init__(self, head: bytes, slow: bytes, interval: float, tls: ssl.SSLContext | None = None) -> None:
        self.head, self.slow, self.interval, self.tls = head, slow, interval, tls
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.sock.settimeout(0.1)
        self.port = self.sock.getsockname()[1]
        self.stop = threading.Event()
        self.sent: list[int] = []
        self.thread = threading.Thread(target=self._accept, daemon=True)

    def __enter__(self) -> _Trickler:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self.thread.join(timeout=5)
        self.sock.close()

    def _accept(self) -> None:
        while not self.stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except TimeoutError:
                continue
            threading.Thread(target=self._answer, args=(conn,), daemon=True).start()

    def _answer(self, conn: socket.socket) -> None:
        try:
            conn.settimeout(None)
            if self.tls is not None:
                conn = self.tls.wrap_socket(conn, server_side=True)
            request = b""
            while b"\r\n\r\n" not in request:
                chunk = conn.recv(4096)
                if not chunk:
                    return
                request += chunk
            conn.sendall(self.head)
            for i in range(len(self.slow)):
                if self.stop.wait(self.interval):
                    return
                conn.sendall(self.slow[i : i + 1])
                self.sent.append(i)
        except OSError:
            return  # the client gave up: what the tests want
        finally:
            conn.close()


def _timed_fetch(tmp_path: Path, url: str, **tool_args: object) -> tuple[str, bool, float]:
    settings = Settings(home=tmp_path, web_allow_hosts=["127.0.0.1/32", "localhost"], web_fetch_timeout=2.0)
    ctx = ToolContext(run_id="r", agent_id="a", step_id="s", workspace=tmp_path, settings=settings)
    t0 = time.monotonic()
    result = WebFetchTool(settings, **tool_args).run({"url": url}, ctx)  # type: ignore[arg-type]
    return result.content, result.is_error, time.monotonic() - t0


def test_headers_trickled_a_byte_a_second_cannot_hold_a_call_past_its_deadline(tmp_path: Path) -> None:
    with _Trickler(b"", SLOW_HEADERS, interval=1.0) as slow:  # would take over 4 minutes
        content, is_error, took = _timed_fetch(tmp_path, f"http://127.0.0.1:{slow.port}/")
    assert is_error
    assert "did not answer within 2 s" in content
    assert took < 3.5, took
    assert 0 < len(slow.sent) < 10


def test_a_body_trickled_past_the_deadline_is_cut_and_shown_as_far_as_it_came(tmp_path: Path) -> None:
    head = b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 1000\r\n\r\n"
    with _Trickler(head, b"abcdefghij" * 100, interval=0.1) as slow:
        content, is_error, took = _timed_fetch(tmp_path, f"http://127.0.0.1:{slow.port}/")
    assert not is_error, content
    assert "Status: 200 OK" in content and "\n\nabcdefghij" in content
    assert "[download stopped at" in content and "or 2 s)" in content
    assert took < 3.5, took


def test_redirects_share_the_one_deadline(tmp_path: Path, server: _Server) -> None:
    """Each hop answers within any per-request timeout (0.6 s), but together they may not pass the
    call's 2 s: it stops during the fourth hop, long before the redirect limit (six hops, 3.6 s)."""
    content, is_error, took = _timed_fetch(tmp_path, server.url("/slowloop"))
    assert is_error
    assert "did not answer within 2 s" in content
    assert took < 3.0, took
    assert 3 <= len(server.hits) <= 4


def test_tls_headers_trickled_cannot_hold_a_call_past_its_deadline(tmp_path: Path, cert: tuple[Path, Path]) -> None:
    key, crt = cert
    server_ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_ctx.load_cert_chain(crt, key)
    client_ctx = ssl.create_default_context(cafile=str(crt))
    with _Trickler(b"", SLOW_HEADERS, interval=1.0, tls=server_ctx) as slow:
        content, is_error, took = _timed_fetch(tmp_path, f"https://localhost:{slow.port}/", ssl_context=client_ctx)
    assert is_error
    assert "did not answer within 2 s" in content
    assert took < 3.5, took
    assert slow.sent  # the handshake succeeded: it was the trickle that was cut
