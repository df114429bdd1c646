"""Structured logs: one JSON object per line.

Every line has ``time`` (RFC 3339 UTC, milliseconds), ``level``, ``logger`` and ``message``; a
``trace_id`` / ``escalation_id`` given with ``extra={...}`` or bound for a block with
:func:`log_context` is added, so one grep over the logs follows an escalation across the API, the
ladder and the SIP legs. Other ``extra`` keys are kept as fields too.
"""

from __future__ import annotations

import json
import logging
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from datetime import UTC, datetime
from typing import IO, Any

__all__ = ["JsonFormatter", "log_context", "setup_logging"]

_trace_id: ContextVar[str | None] = ContextVar("ifescalate_trace_id", default=None)
_escalation_id: ContextVar[str | None] = ContextVar("ifescalate_escalation_id", default=None)

# Attributes every LogRecord has; anything else on a record came from ``extra``.
_STANDARD = frozenset(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {
    "message",
    "asctime",
    "taskName",
}


@contextmanager
def log_context(*, trace_id: str | None = None, escalation_id: str | None = None) -> Iterator[None]:
    """Binds ids for every log line written in this block (and the tasks it starts)."""
    tokens = []
    if trace_id is not None:
        tokens.append((_trace_id, _trace_id.set(trace_id)))
    if escalation_id is not None:
        tokens.append((_escalation_id, _escalation_id.set(escalation_id)))
    try:
        yield
    finally:
        for var, token in reversed(tokens):
            var.reset(token)


def _json_safe(value: object) -> Any:
    if value is None or isinstance(value, str | int | float | bool):
        return value
    if isinstance(value, list | tuple):
        return [_json_safe(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _json_safe(v) for k, v in value.items()}
    return str(value)


class JsonFormatter(logging.Formatter):
    """Formats a record as one line of JSON (no newlines inside: JSON escapes them)."""

    def format(self, record: logging.LogRecord) -> str:
        stamp = datetime.fromtimestamp(record.created, tz=UTC)
        out: dict[str, Any] = {
            "time": stamp.strftime("%Y-%m-%dT%H:%M:%S.") + f"{stamp.microsecond // 1000:03d}Z",
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        for key, var in (("trace_id", _trace_id), ("escalation_id", _escalation_id)):
            value = getattr(record, key, None) or var.get()
            if value is not None:
                out[key] = value
        for key, value in vars(record).items():
            if key not in _STANDARD and key not in out:
                out[key] = _json_safe(value)
        if record.exc_info:
            out["exc"] = self.formatException(record.exc_info)
        return json.dumps(out, ensure_ascii=False, separators=(",", ":"))


_HANDLER_NAME = "ifescalate"


def setup_logging(
    level: int | str = "INFO", json: bool = True, *, stream: IO[str] | None = None
) -> logging.Handler:
    """Configures the root logger: one handler to ``stream`` (stderr), JSON or plain text.

    Calling it again replaces the handler it installed before instead of adding a second one.
    """
    root = logging.getLogger()
    for handler in list(root.handlers):
        if handler.get_name() == _HANDLER_NAME:
            root.removeHandler(handler)
    handler = logging.StreamHandler(stream if stream is not None else sys.stderr)
    handler.set_name(_HANDLER_NAME)
    if json:
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root.addHandler(handler)
    root.setLevel(level.upper() if isinstance(level, str) else level)
    return handler
