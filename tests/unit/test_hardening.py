"""swarm.hardening: which variables are secrets, that a hardened process keeps none in its
environment (``os.environ``, what children inherit, ``/proc/<pid>/environ``), and that a process of
the same user cannot read its memory or environment once it is not dumpable."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from swarm.hardening import is_secret
from tests.procfs import NOBODY, needs_root, read_as

SECRETS = {
    "SWARM_LLM_API_KEY": "sk-llm-3b9f0c1e",
    "SWARM_DATABASE_URL": "postgresql://swarm:db-pw-77a1@db:5432/swarm",
    "SWARM_BROKER_URL": "redis://:broker-pw-5d2e@redis:6379/0",
    "SWARM_API_KEY": "swk_abcd1234_client-key-9c4b",
    "PGPASSWORD": "pg-pw-0e6f",
    "FLOWER_BASIC_AUTH": "admin:flower-pw-41c8",
    "SOME_CACHE_URL": "redis://user:cache-pw-2f90@cache:6379/1",
}
PLAIN = {
    "SWARM_MODEL": "kimi-k2.5",
    "SWARM_LLM_BASE_URL": "https://api.example.test/v1",
    "PATH": os.defpath,
    "SWARM_HOME": "/srv/swarm",
}


@pytest.mark.parametrize(
    ("name", "value", "secret"),
    [
        *((k, v, True) for k, v in SECRETS.items()),
        *((k, v, False) for k, v in PLAIN.items()),
        ("SWARM_DATABASE_URL", "", True),  # by name, whatever its value
        ("GITHUB_TOKEN", "x", True),
        ("AWS_SECRET_ACCESS_KEY", "x", True),
        ("PWD", "/home/swarm", False),
        ("PUBLIC_URL", "https://user@example.test/", False),  # a user name is not a password
    ],
)
def test_what_is_a_secret(name: str, value: str, secret: bool) -> None:
    assert is_secret(name, value) is secret


_HARDEN = r"""
import json, os, subprocess, sys
from pathlib import Path
from swarm import hardening
before = hardening.is_dumpable()
removed = hardening.harden()
child = subprocess.run([sys.executable, "-c", "import os, json; print(json.dumps(dict(os.environ)))"],
                       capture_output=True, text=True, check=True).stdout
print(json.dumps({"before": before, "after": hardening.is_dumpable(), "removed": removed,
                  "environ": dict(os.environ), "child": json.loads(child),
                  "proc": Path("/proc/self/environ").read_bytes().decode("latin-1"),
                  "again": hardening.harden()}))
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="prctl and /proc are Linux's")
def test_harden_drops_secrets_everywhere_a_process_shows_its_environment() -> None:
    out = subprocess.run(
        [sys.executable, "-c", _HARDEN],
        env={**SECRETS, **PLAIN},
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    r = json.loads(out.stdout)
    assert r["before"] is True and r["after"] is False
    assert sorted(r["removed"]) == sorted(SECRETS) and r["again"] == []
    for where in ("environ", "child"):
        assert not set(SECRETS) & set(r[where]), where
        assert {k: r[where][k] for k in PLAIN} == PLAIN, where  # everything else is kept
    # /proc/<pid>/environ shows the block the process was started with, whatever os.environ says:
    # the secrets are wiped from it too.
    for name, value in SECRETS.items():
        assert value not in r["proc"] and f"{name}=" not in r["proc"], name
    assert "SWARM_MODEL=kimi-k2.5" in r["proc"]


_TARGET = r"""
import ctypes, json, os, sys
from swarm import hardening
os.setgroups([])
os.setresgid(65534, 65534, 65534)
os.setresuid(65534, 65534, 65534)
ctypes.CDLL(None).prctl(4, 1, 0, 0, 0)  # dumpable again, as after an exec as that user
if sys.argv[1] == "harden":
    hardening.harden()
print(json.dumps({"uid": os.getuid(), "dumpable": hardening.is_dumpable()}), flush=True)
sys.stdin.read()
"""


@needs_root()
@pytest.mark.parametrize("harden", [False, True])
def test_a_hardened_process_is_unreadable_to_its_own_user(harden: bool) -> None:
    target = subprocess.Popen(
        [sys.executable, "-c", _TARGET, "harden" if harden else "plain"],
        env={**SECRETS, **PLAIN},
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert target.stdout is not None
        state = json.loads(target.stdout.readline())
        assert state == {"uid": NOBODY, "dumpable": not harden}
        seen = read_as(target.pid, "uid")  # another process of uid 65534
        if harden:
            assert seen == {"environ": "denied", "mem": "denied"}
        else:  # the control: the same reader reads an ordinary process of its user
            assert SECRETS["SWARM_LLM_API_KEY"] in seen["environ"] and seen["mem"] == "opened"
    finally:
        target.kill()
        target.wait(timeout=10)
