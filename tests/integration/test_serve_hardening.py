"""`swarm serve`, started as a real process with secrets in its environment, keeps none of them
where another process could read them: its /proc/<pid>/environ no longer shows them, and a process
of the same user without CAP_SYS_PTRACE cannot open its memory. (The Celery side is
tests/acceptance/test_cluster_hardening.py.)"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from tests.procfs import needs_root, read_as, without_ptrace_cap

LLM_KEY, CLIENT_KEY, OTHER = "sk-llm-secret-6c1d2a", "swk_0badc0de_client-secret-51f7", "other-secret-93e0"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@needs_root()
@pytest.mark.timeout(120)
def test_swarm_serve_drops_its_secrets_and_is_not_dumpable(tmp_path: Path) -> None:
    port = _free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SWARM_", "CELERY_"))}
    db = f"sqlite:///{tmp_path / 'swarm.db'}"
    env |= {
        "SWARM_HOME": str(tmp_path),
        "SWARM_DATABASE_URL": db,
        "SWARM_LLM_API_KEY": LLM_KEY,
        "SWARM_API_KEY": CLIENT_KEY,
        "ADMIN_PASSWORD": OTHER,
        "SWARM_MODEL": "kimi-k2.5-hardening-test",
    }
    log = (tmp_path / "serve.log").open("wb")
    # Both without CAP_SYS_PTRACE, like the reader: then only the dumpable flag protects them.
    server = subprocess.Popen(
        [sys.executable, "-m", "swarm", "serve", "--port", str(port), "--log-level", "warning"],
        env=env,
        cwd=tmp_path,
        stdin=subprocess.DEVNULL,
        stdout=log,
        stderr=subprocess.STDOUT,
        preexec_fn=without_ptrace_cap,  # noqa: PLW1509
    )
    control = subprocess.Popen(
        [sys.executable, "-c", "import sys; sys.stdin.read()"],
        env=env,
        stdin=subprocess.PIPE,
        preexec_fn=without_ptrace_cap,  # noqa: PLW1509
    )
    try:
        deadline = time.monotonic() + 60
        while True:
            assert server.poll() is None, (tmp_path / "serve.log").read_text()
            try:
                if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, "swarm serve did not start"
            time.sleep(0.2)
        # Root still reads it (CAP_SYS_PTRACE): the secrets are gone from it, the rest is there.
        environ = Path(f"/proc/{server.pid}/environ").read_text(errors="replace")
        for value in (LLM_KEY, CLIENT_KEY, OTHER, db):
            assert value not in environ
        assert "SWARM_MODEL=kimi-k2.5-hardening-test" in environ
        # The same user without CAP_SYS_PTRACE (tool code running as the server's user) cannot open
        # its memory, and its environ has nothing secret left; the same reader does read an ordinary
        # process of that user.
        seen = read_as(server.pid, "ptrace")
        assert seen["mem"] == "denied"
        assert not any(v in seen["environ"] for v in (LLM_KEY, CLIENT_KEY, OTHER, db))
        seen = read_as(control.pid, "ptrace")
        assert LLM_KEY in seen["environ"] and seen["mem"] == "opened"
        # And the server still works with the settings it read before dropping them.
        assert httpx.get(f"http://127.0.0.1:{port}/v1/runs", timeout=5).status_code == 401
    finally:
        for p in (server, control):
            p.kill()
            p.wait(timeout=10)
        log.close()
