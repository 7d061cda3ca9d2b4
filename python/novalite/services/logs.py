"""Structured logs: one line per record, JSON or ``key=value`` text (settings'
``log_format``), each with the request id of the call it was written under.

A record's structured fields come from ``extra={"fields": {...}}``; the RPC log of
the interceptors uses it for method, code, duration, request id and project.
"""

from __future__ import annotations

import json
import logging
import sys
from datetime import datetime, timezone
from typing import Any, TextIO

from novalite.services.context import current_call
from novalite.settings import Settings

# Attributes every LogRecord has; anything else came in through ``extra``.
_STANDARD = frozenset(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {"message", "asctime"}


def _timestamp(record: logging.LogRecord) -> str:
    moment = datetime.fromtimestamp(record.created, timezone.utc)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def _fields(record: logging.LogRecord) -> dict[str, Any]:
    out: dict[str, Any] = {}
    given = getattr(record, "fields", None)
    if isinstance(given, dict):
        out.update(given)
    for key, value in vars(record).items():
        if key not in _STANDARD and key != "fields" and not key.startswith("_"):
            out.setdefault(key, value)
    return out


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "ts": _timestamp(record),
            "level": record.levelname,
            "logger": record.name,
            "msg": record.getMessage(),
        }
        line.update(_fields(record))
        if record.exc_info:
            line["traceback"] = self.formatException(record.exc_info)
        return json.dumps(line, default=str, ensure_ascii=False)


class TextFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        parts = [_timestamp(record), f"{record.levelname:<7}", record.name, record.getMessage()]
        parts.extend(f"{k}={_text(v)}" for k, v in _fields(record).items())
        line = " ".join(parts)
        if record.exc_info:
            line += "\n" + self.formatException(record.exc_info)
        return line


def _text(value: object) -> str:
    text = str(value)
    if not text or any(c in text for c in ' "=\n'):
        return json.dumps(text, ensure_ascii=False)
    return text


class RequestContextFilter(logging.Filter):
    """Adds the current call's request id (and project) to records that lack one."""

    def filter(self, record: logging.LogRecord) -> bool:
        call = current_call()
        if call is not None and not hasattr(record, "request_id"):
            fields = getattr(record, "fields", None)
            if not (isinstance(fields, dict) and "request_id" in fields):
                record.request_id = call.request_id
        return True


class _NovaliteHandler(logging.StreamHandler[TextIO]):
    """Marks the handler configure_logging installed, so a second call replaces it."""


def configure_logging(settings: Settings, stream: TextIO | None = None) -> logging.Handler:
    """Send every log record to ``stream`` (stderr) in the settings' format and level.
    Calling it again replaces the handler it installed; other handlers stay."""
    root = logging.getLogger()
    for handler in list(root.handlers):
        if isinstance(handler, _NovaliteHandler):
            root.removeHandler(handler)
    handler = _NovaliteHandler(stream or sys.stderr)
    handler.setFormatter(JsonFormatter() if settings.log_format == "json" else TextFormatter())
    handler.addFilter(RequestContextFilter())
    root.addHandler(handler)
    root.setLevel(settings.log_level)
    return handler
