"""The status machine, executed: a move it does not allow raises InvalidTransition and changes
nothing (SQLite and PostgreSQL)."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import select

from swarm.domain.llm import LLMResponse
from swarm.domain.turns import plan_turn
from swarm.exceptions import InvalidTransition, StateError
from swarm.runtime import run_spec
from swarm.store.models import AGENTS, EVENTS, MESSAGES, RUNS, STEPS
from swarm.store.store import StateStore
from tests.conftest import make_settings


def _succeeded_run(store: StateStore, tmp_path: Any, db_url: str) -> str:
    s = make_settings(tmp_path, db_url, "http://unused.invalid/v1")
    run_id, (ref,) = store.create_run(run_spec(s, "t"))
    claim = store.claim(ref.step_id, "w", lease=30)
    assert claim is not None
    response = LLMResponse("the answer", None, (), "stop", 1, 1, "m")
    assert store.commit_llm(claim, response, plan_turn(response, set(), last_step=False)) == []
    assert store.run_status(run_id) == "succeeded"
    return run_id


def _rows(store: StateStore, run_id: str) -> dict[str, list[tuple[Any, ...]]]:
    with store.read() as conn:
        return {
            t.name: [
                tuple(r)
                for r in conn.execute(select(t).where(t.c.run_id == run_id).order_by(*t.primary_key.columns)).all()
            ]
            for t in (AGENTS, STEPS, EVENTS, MESSAGES)
        } | {"runs": [tuple(r) for r in conn.execute(select(RUNS).where(RUNS.c.id == run_id)).all()]}


def test_resuming_a_succeeded_run_raises_invalid_transition_and_changes_nothing(tmp_path, store, db_url):
    run_id = _succeeded_run(store, tmp_path, db_url)
    before = _rows(store, run_id)
    with pytest.raises(InvalidTransition) as caught:
        store.resume_run(run_id)
    assert isinstance(caught.value, StateError)  # the API answers 409, the CLI exits 3, as before
    message = str(caught.value)
    assert "already succeeded" in message and "from cancelled or failed to running" in message
    assert _rows(store, run_id) == before


def test_cancelling_a_finished_run_is_a_no_op(tmp_path, store, db_url):
    run_id = _succeeded_run(store, tmp_path, db_url)
    before = _rows(store, run_id)
    assert store.cancel_run(run_id) is False
    assert _rows(store, run_id) == before


def test_resume_after_cancel_is_an_allowed_move(tmp_path, store, db_url):
    s = make_settings(tmp_path, db_url, "http://unused.invalid/v1")
    run_id, (ref,) = store.create_run(run_spec(s, "t"))
    assert store.cancel_run(run_id) is True
    assert store.run_status(run_id) == "cancelled"
    (again,) = store.resume_run(run_id)
    assert again.step_id == ref.step_id and store.run_status(run_id) == "running"
