"""swarm.logs: text or JSON lines, and the run/agent/step ids of what each line is about."""

from __future__ import annotations

import io
import json
import logging
import threading
from collections.abc import Iterator

import pytest
from pydantic import ValidationError

from swarm import logs
from swarm.config import Settings


@pytest.fixture
def logger() -> Iterator[tuple[logging.Logger, io.StringIO, logging.Handler]]:
    """A logger of its own with one handler dressed as swarm dresses Celery's (text for now)."""
    out = io.StringIO()
    handler = logging.StreamHandler(out)
    log = logging.getLogger(f"swarm.test_logs.{threading.get_ident()}")
    log.handlers, log.propagate, log.level = [handler], False, logging.INFO
    logs.adopt(log, "text", "%(levelname)s %(message)s")
    yield log, out, handler
    log.handlers = []
    logging.captureWarnings(False)  # JSON logging turns it on


def _lines(out: io.StringIO) -> list[str]:
    return out.getvalue().splitlines()


def test_text_lines_keep_their_format_and_show_the_ids(logger) -> None:
    log, out, _ = logger
    log.info("plain")
    log.info("step %s done", "s1", extra={"run_id": "r1", "step_id": "s1"})
    assert _lines(out) == ["INFO plain", "INFO step s1 done [run_id=r1 step_id=s1]"]


def test_a_traceback_follows_the_line_with_its_ids(logger) -> None:
    log, out, _ = logger
    try:
        int("boom")
    except ValueError:
        log.exception("tool crashed", extra={"run_id": "r1"})
    first, *rest = _lines(out)
    assert first == "ERROR tool crashed [run_id=r1]"
    assert rest[0] == "Traceback (most recent call last):" and rest[-1].startswith("ValueError: invalid literal")


def test_json_lines_carry_the_fields_and_the_ids(logger) -> None:
    log, out, handler = logger
    logs.adopt(log, "json")
    log.warning("step %s: database unavailable", "s1", extra={"run_id": "r1", "agent_id": "a1", "step_id": "s1"})
    (line,) = _lines(out)
    record = json.loads(line)
    assert record == {
        "level": "WARNING",
        "logger": log.name,
        "message": "step s1: database unavailable",
        "run_id": "r1",
        "agent_id": "a1",
        "step_id": "s1",
        "time": record["time"],
    }
    assert record["time"].endswith("+00:00")  # ISO 8601, UTC
    assert sum(isinstance(f, logs.IdsFilter) for f in handler.filters) == 1  # dressed twice, filtered once


def test_bound_ids_reach_every_line_until_the_block_ends(logger) -> None:
    log, out, _ = logger
    logs.adopt(log, "json")
    with logs.bound(run_id="r1", agent_id="a1", step_id=None):
        log.info("inside")
        with logs.bound(step_id="s2"):
            log.info("nested", extra={"run_id": "own"})  # a line's own ids win
        assert logs.current_ids() == {"run_id": "r1", "agent_id": "a1"}
    log.info("after")
    inside, nested, after = (json.loads(line) for line in _lines(out))
    assert (inside["run_id"], inside["agent_id"], "step_id" in inside) == ("r1", "a1", False)
    assert (nested["run_id"], nested["agent_id"], nested["step_id"]) == ("own", "a1", "s2")
    assert not {"run_id", "agent_id", "step_id"} & set(after)


def test_ids_bound_in_one_thread_stay_there(logger) -> None:
    log, out, _ = logger
    with logs.bound(run_id="r1"):
        worker = threading.Thread(target=log.info, args=("other thread",))
        worker.start()
        worker.join()
    assert _lines(out) == ["INFO other thread"]


def test_configure_sets_up_the_root_logger_once(monkeypatch: pytest.MonkeyPatch) -> None:
    root = logging.getLogger()
    monkeypatch.setattr(root, "handlers", [])
    monkeypatch.setattr(root, "level", logging.NOTSET)
    out = io.StringIO()
    logs.configure("json", logging.INFO, out)
    logs.configure("text", logging.DEBUG, io.StringIO())  # like basicConfig: a configured root stays as it is
    assert len(root.handlers) == 1 and root.level == logging.INFO
    logging.getLogger("swarm.test_logs").info("hello", extra={"step_id": "s1"})
    assert json.loads(out.getvalue())["step_id"] == "s1"
    logging.captureWarnings(False)


def test_uvicorn_lines_follow_the_format() -> None:
    from uvicorn.config import LOGGING_CONFIG

    assert logs.uvicorn_log_config("text") == LOGGING_CONFIG  # uvicorn's own, unchanged
    config = logs.uvicorn_log_config("json")
    assert config["loggers"] == LOGGING_CONFIG["loggers"]
    formatter = config["formatters"]["default"]["()"]()
    record = logging.LogRecord("uvicorn.error", logging.INFO, __file__, 1, "Started server process [%d]", (7,), None)
    record.color_message = "\x1b[32mStarted\x1b[0m"
    assert json.loads(formatter.format(record))["message"] == "Started server process [7]"
    assert "color_message" not in formatter.format(record)
    assert all(handler["filters"] == ["ids"] for handler in config["handlers"].values())


def test_the_setting_is_text_or_json(tmp_path) -> None:
    assert Settings(_env_file=None, home=tmp_path).log_format == "text"  # type: ignore[call-arg]
    assert Settings(_env_file=None, home=tmp_path, log_format="json").log_format == "json"  # type: ignore[call-arg]
    with pytest.raises(ValidationError, match="log_format"):
        Settings(_env_file=None, home=tmp_path, log_format="xml")  # type: ignore[call-arg]
    with pytest.raises(ValueError, match="unknown log format"):
        logs.formatter("xml")  # type: ignore[arg-type]


def test_a_celery_task_binds_its_step_ids_from_prerun_to_postrun(logger) -> None:
    from workers import celery_app

    log, out, _ = logger
    celery_app._on_task_prerun(task_id="t1", kwargs={"step_id": "s1", "run_id": "r1", "agent_id": "a1", "kind": "llm"})
    log.info("Task swarm.step[t1] succeeded")  # what Celery logs before task_postrun
    celery_app._on_task_postrun(task_id="t1")
    celery_app._on_task_postrun(task_id="t1")  # a second postrun (never sent) would change nothing
    log.info("idle")
    assert _lines(out) == ["INFO Task swarm.step[t1] succeeded [run_id=r1 agent_id=a1 step_id=s1]", "INFO idle"]
