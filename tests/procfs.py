"""What another process can read of a process through /proc (Linux): for the tests of
:mod:`swarm.hardening`. Tests run as root here, and root (CAP_SYS_PTRACE) reads everything, so the
reader gives something up first:

* its user: uid 65534, the target's user when the target dropped to it too;
* CAP_SYS_PTRACE: root reading root, like tool code running as the worker's own user. The kernel
  also refuses a reader whose capabilities are not a superset of the target's, so such a target
  must be started without CAP_SYS_PTRACE as well (``preexec_fn=without_ptrace_cap``); the
  dumpable flag then decides. (A root reader with CAP_DAC_OVERRIDE still opens ``environ``:
  that is why :mod:`swarm.hardening` also wipes the secrets from it.)
"""

from __future__ import annotations

import ctypes
import json
import os
import subprocess
import sys

import pytest

NOBODY = 65534
_PR_CAPBSET_DROP, _CAP_SYS_PTRACE = 24, 19

_READER = r"""
import ctypes, json, os, sys

pid, drop = int(sys.argv[1]), sys.argv[2]
if drop == "uid":
    os.setgroups([])
    os.setresgid(65534, 65534, 65534)
    os.setresuid(65534, 65534, 65534)
elif drop == "ptrace":
    # capset(2): this same root, without CAP_SYS_PTRACE (19) in its effective and permitted sets.
    class Header(ctypes.Structure):
        _fields_ = [("version", ctypes.c_uint32), ("pid", ctypes.c_int)]

    class Data(ctypes.Structure):
        _fields_ = [("effective", ctypes.c_uint32), ("permitted", ctypes.c_uint32),
                    ("inheritable", ctypes.c_uint32)]

    libc = ctypes.CDLL(None, use_errno=True)
    header, data = Header(0x20080522, 0), (Data * 2)()
    assert libc.capget(ctypes.byref(header), data) == 0, ctypes.get_errno()
    for d in data:
        d.effective &= ~(1 << 19)
        d.permitted &= ~(1 << 19)
    assert libc.capset(ctypes.byref(header), data) == 0, ctypes.get_errno()
out = {}
for name in ("environ", "mem"):
    try:
        with open(f"/proc/{pid}/{name}", "rb") as f:  # the permission check is at open
            out[name] = f.read().decode("latin-1") if name == "environ" else "opened"
    except PermissionError:
        out[name] = "denied"
print(json.dumps(out))
"""


def without_ptrace_cap() -> None:
    """A ``preexec_fn``: the program exec'd next runs without CAP_SYS_PTRACE."""
    if ctypes.CDLL(None, use_errno=True).prctl(_PR_CAPBSET_DROP, _CAP_SYS_PTRACE, 0, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "prctl(PR_CAPBSET_DROP, CAP_SYS_PTRACE)")


def needs_root() -> pytest.MarkDecorator:
    return pytest.mark.skipif(
        not sys.platform.startswith("linux") or os.geteuid() != 0,
        reason="reads /proc as another user: needs Linux and root",
    )


def read_as(pid: int, drop: str) -> dict[str, str]:
    """``{"environ": <its text> | "denied", "mem": "opened" | "denied"}`` for a reader that dropped
    to uid 65534 (``drop="uid"``) or lost CAP_SYS_PTRACE (``drop="ptrace"``)."""
    assert drop in ("uid", "ptrace")
    out = subprocess.run(
        [sys.executable, "-c", _READER, str(pid), drop], capture_output=True, text=True, timeout=60, check=True
    )
    result: dict[str, str] = json.loads(out.stdout)
    return result
