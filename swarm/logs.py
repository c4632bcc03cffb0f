"""How every swarm process writes its log: text lines by default, JSON lines with
``SWARM_LOG_FORMAT=json``, and in both the ids of the run, agent and step a line is about.

A log call names what it is about with ``extra={"run_id": ..., "agent_id": ..., "step_id": ...}``;
code that runs a step binds the ids for everything logged meanwhile (by itself, the model client or
Celery) with ``with logs.bound(run_id=..., step_id=...):``. :class:`IdsFilter`, on every handler
set up here, copies the bound ids onto each record that does not name its own.

Who sets it up: the CLI (:func:`configure`), the API under uvicorn (:func:`uvicorn_log_config`) and
the Celery workers (:func:`adopt` on the handlers Celery made). This module knows nothing of
swarm's settings: callers pass ``settings.log_format``.
"""

from __future__ import annotations

import copy
import logging
import sys
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar, Token
from typing import Any, Literal, TextIO

from pythonjsonlogger.core import RESERVED_ATTRS
from pythonjsonlogger.json import JsonFormatter

LogFormat = Literal["text", "json"]

#: The record attributes that say what a line is about, in the order text lines show them.
ID_FIELDS = ("run_id", "agent_id", "step_id")

#: A text line (CLI, API): the ids, if any, follow the message in brackets.
TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"

#: A JSON line's fixed fields after ``time`` (ISO 8601, UTC), and the names they have in it; every
#: ``extra=`` field follows.
JSON_FIELDS = {"levelname": "level", "name": "logger", "message": "message"}

_ids: ContextVar[Mapping[str, str]] = ContextVar("swarm_log_ids", default={})  # noqa: B039 (never mutated)


# ------------------------------------------------------------------ ids


def bind(**ids: str | None) -> Token[Mapping[str, str]]:
    """Add ``ids`` (the empty ones left out) to those of this thread's (or task's) log lines until
    :func:`unbind` is given the returned token. Prefer :func:`bound` where one block spans the work."""
    return _ids.set({**_ids.get(), **{key: value for key, value in ids.items() if value}})


def unbind(token: Token[Mapping[str, str]]) -> None:
    _ids.reset(token)


@contextmanager
def bound(**ids: str | None) -> Iterator[None]:
    """Every line logged in this block carries ``ids``, unless it names its own."""
    token = bind(**ids)
    try:
        yield
    finally:
        unbind(token)


def current_ids() -> Mapping[str, str]:
    return _ids.get()


class IdsFilter(logging.Filter):
    """Copies the bound ids onto a record that does not carry them itself (``extra=`` wins)."""

    def filter(self, record: logging.LogRecord) -> bool:
        for key, value in _ids.get().items():
            if not getattr(record, key, None):
                setattr(record, key, value)
        return True


# ------------------------------------------------------------ formatters


class TextFormatter(logging.Formatter):
    """``fmt``, then the ids the record carries: ``... message [run_id=… step_id=…]``."""

    def formatMessage(self, record: logging.LogRecord) -> str:
        line = super().formatMessage(record)
        ids = " ".join(f"{key}={value}" for key in ID_FIELDS if (value := getattr(record, key, None)))
        return f"{line} [{ids}]" if ids else line


def json_formatter() -> JsonFormatter:
    """One JSON object a line: time, level, logger, message, then every ``extra=`` field."""
    return JsonFormatter(
        list(JSON_FIELDS),
        rename_fields={key: name for key, name in JSON_FIELDS.items() if key != name},
        timestamp="time",
        # uvicorn repeats each message with terminal colours in `color_message`.
        reserved_attrs=[*RESERVED_ATTRS, "color_message"],
    )


def formatter(log_format: LogFormat, text_format: str = TEXT_FORMAT) -> logging.Formatter:
    if log_format == "json":
        return json_formatter()
    if log_format == "text":
        return TextFormatter(text_format)
    raise ValueError(f"unknown log format {log_format!r} (text or json)")


def _dress(handler: logging.Handler, log_format: LogFormat, text_format: str = TEXT_FORMAT) -> logging.Handler:
    handler.setFormatter(formatter(log_format, text_format))
    if not any(isinstance(f, IdsFilter) for f in handler.filters):
        handler.addFilter(IdsFilter())
    return handler


# ---------------------------------------------------------------- set-up


def configure(log_format: LogFormat = "text", level: int = logging.WARNING, stream: TextIO | None = None) -> None:
    """The root logger of a swarm command: one handler on stderr in ``log_format``. Like
    :func:`logging.basicConfig`, it leaves a root logger that already has handlers alone (an
    embedding application's, or a test's)."""
    root = logging.getLogger()
    if root.handlers:
        return
    root.addHandler(_dress(logging.StreamHandler(stream or sys.stderr), log_format))
    root.setLevel(level)
    _capture_warnings(log_format)


def adopt(logger: logging.Logger, log_format: LogFormat, text_format: str = TEXT_FORMAT) -> None:
    """Re-dress the handlers another library set up on ``logger`` (Celery's, in a worker): swarm's
    formatter (``text_format`` is the library's own line format, for text) and the ids filter."""
    for handler in logger.handlers:
        _dress(handler, log_format, text_format)
    _capture_warnings(log_format)


def _capture_warnings(log_format: LogFormat) -> None:
    # Python's warnings go straight to stderr; in a JSON log they must be log records too.
    if log_format == "json":
        logging.captureWarnings(True)


def uvicorn_log_config(log_format: LogFormat) -> dict[str, Any]:
    """uvicorn's ``log_config``: its own lines as uvicorn writes them (text), or as JSON lines."""
    from uvicorn.config import LOGGING_CONFIG  # only processes that serve HTTP load uvicorn

    config = copy.deepcopy(LOGGING_CONFIG)
    if log_format == "json":
        config["formatters"] = {name: {"()": json_formatter} for name in config["formatters"]}
        config["filters"] = {"ids": {"()": IdsFilter}}
        for handler in config["handlers"].values():
            handler["filters"] = ["ids"]
    return config
