"""Which running runs are shown as interrupted (domain/liveness.py): a pure decision."""

from __future__ import annotations

import pytest

from swarm.domain.liveness import INTERRUPTED, hint, run_state


@pytest.mark.parametrize(
    ("status", "owner_alive", "cluster_alive", "steps_alive", "expected"),
    [
        ("succeeded", False, False, False, "succeeded"),  # only running runs can be interrupted
        ("cancelled", None, False, False, "cancelled"),
        ("running", True, False, False, "running"),  # its process renews the owner lease
        ("running", False, True, True, INTERRUPTED),  # its process died: no sweeper adopts it
        ("running", None, True, False, "running"),  # a cluster run: the elected sweeper is alive
        ("running", None, False, True, "running"),  # no sweeper right now, but a worker holds a step
        ("running", None, False, False, INTERRUPTED),  # no worker at all
    ],
)
def test_run_state(status, owner_alive, cluster_alive, steps_alive, expected):
    assert run_state(status, owner_alive=owner_alive, cluster_alive=cluster_alive, steps_alive=steps_alive) == expected


def test_hint_says_what_to_do():
    assert hint("running", "r1", owned=True) is None
    assert "swarm resume r1" in (hint(INTERRUPTED, "r1", owned=True) or "")
    assert "swarm worker" in (hint(INTERRUPTED, "r1", owned=False) or "")
