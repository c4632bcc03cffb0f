"""No secret reachable from tool code: what servers and workers do to themselves at start.

Tool code runs on the same machines as swarm's servers and workers, and without the sandbox (or
after escaping it) as the same user. Once a process has read its settings it no longer needs its
secrets in its environment, so :func:`harden` (called once by each entry point: ``swarm serve``,
``swarm worker``, ``swarm run``/``demo``/``resume`` and every Celery worker and beat process):

* removes secrets from ``os.environ``, so no child inherits them by accident: the settings that
  are secrets (``SWARM_LLM_API_KEY``, ``SWARM_DATABASE_URL``, ``SWARM_BROKER_URL``,
  ``SWARM_API_KEY``), any variable named like one (``*PASSWORD*``, ``*SECRET*``, ``*TOKEN*``,
  ``*API_KEY*``, ...) and any whose value is a URL with a password in it;
* overwrites them in the process's initial environment block, which ``/proc/<pid>/environ``
  shows whatever ``os.environ`` says;
* makes the process not dumpable (``prctl(PR_SET_DUMPABLE, 0)``): ``/proc/<pid>/mem``,
  ``environ``, ``maps`` and ptrace are then refused to every process without ``CAP_SYS_PTRACE``,
  the same user's included, and no core dump is written. Forked children (Celery's pool
  processes) inherit this; an ``exec`` resets it, which is why the entry points only exec children
  with a minimal environment (tool code) or children that harden themselves (``celery``).

The values live on only in the process's :class:`~swarm.config.Settings` object. A child that
needs them (``swarm worker``'s ``celery`` processes) is started before the parent hardens, with
the environment it was given. Root (``CAP_SYS_PTRACE``) still sees everything: never run workers as
root (the Docker image runs as ``swarm``).
"""

from __future__ import annotations

import contextlib
import ctypes
import logging
import os
import re
import sys
from pathlib import Path

from swarm import provider_profiles

log = logging.getLogger(__name__)

#: Settings that are secrets (a database or broker URL carries its password).
SECRET_SETTINGS = frozenset({"SWARM_LLM_API_KEY", "SWARM_DATABASE_URL", "SWARM_BROKER_URL", "SWARM_API_KEY"})
#: A variable whose name contains one of these is taken for a secret (PGPASSWORD, AWS_SECRET_ACCESS_KEY,
#: REDIS_PASSWORD, GITHUB_TOKEN, FLOWER_BASIC_AUTH, OPENAI_API_KEY, ...).
SECRET_NAME_PARTS = (
    "PASSWORD",
    "PASSWD",
    "SECRET",
    "TOKEN",
    "API_KEY",
    "APIKEY",
    "ACCESS_KEY",
    "PRIVATE_KEY",
    "CREDENTIAL",
    "BASIC_AUTH",
)
#: scheme://user:password@host — a URL that carries a password, whatever its variable is called.
_URL_WITH_PASSWORD = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*://[^/@\s:]*:[^/@\s]+@")

_PR_GET_DUMPABLE = 3
_PR_SET_DUMPABLE = 4


def is_secret(name: str, value: str) -> bool:
    upper = name.upper()
    return (
        upper in SECRET_SETTINGS
        or name in provider_profiles.key_variables()  # SWARM_PROVIDERS' ${VAR} keys, read at start
        or any(part in upper for part in SECRET_NAME_PARTS)
        or bool(_URL_WITH_PASSWORD.search(value))
    )


def scrub_environment() -> list[str]:
    """Remove secret variables from ``os.environ`` (and so from what children inherit) and wipe
    them from the initial environment block; returns their names (never their values)."""
    names = sorted(k for k, v in os.environ.items() if is_secret(k, v))
    for name in names:
        del os.environ[name]  # unsetenv(3) too
    _wipe_initial_environment(set(names))
    return names


def _wipe_initial_environment(names: set[str]) -> None:
    """Zero the ``NAME=value`` strings of *names* in the block the kernel placed the environment in
    at exec (what ``/proc/<pid>/environ`` reads). They are no longer referenced: ``unsetenv`` removed
    them from ``environ``. Linux only; anything unexpected leaves the block alone."""
    if not names or not sys.platform.startswith("linux"):
        return
    with contextlib.suppress(OSError, ValueError, IndexError):
        fields = Path("/proc/self/stat").read_text().rsplit(")", 1)[1].split()
        start, end = int(fields[47]), int(fields[48])  # env_start, env_end: fields 50 and 51
        block = Path("/proc/self/environ").read_bytes()
        if not 0 < start < end or len(block) != end - start or ctypes.string_at(start, len(block)) != block:
            return
        offset = 0
        for entry in block.split(b"\0"):
            name = entry.split(b"=", 1)[0].decode("utf-8", "surrogateescape")
            if name in names and os.environ.get(name) is None:
                ctypes.memset(start + offset, 0, len(entry))
            offset += len(entry) + 1


def _libc() -> ctypes.CDLL:
    return ctypes.CDLL(None, use_errno=True)


def set_not_dumpable() -> bool:
    """``prctl(PR_SET_DUMPABLE, 0)``; False where that is not possible (not Linux)."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        return int(_libc().prctl(_PR_SET_DUMPABLE, 0, 0, 0, 0)) == 0
    except (OSError, AttributeError):
        return False


def is_dumpable() -> bool | None:
    """This process's dumpable flag, or None where it cannot be read."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        return int(_libc().prctl(_PR_GET_DUMPABLE, 0, 0, 0, 0)) != 0
    except (OSError, AttributeError):
        return None


def harden() -> list[str]:
    """Call once the process holds its settings: drop secrets from the environment and make the
    process not dumpable. Idempotent; returns the names of the variables removed."""
    removed = scrub_environment()
    if not set_not_dumpable():
        log.warning("could not mark this process not dumpable: processes of the same user may read its memory")
    if removed:
        log.debug("removed from this process's environment: %s", ", ".join(removed))
    return removed
