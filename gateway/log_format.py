"""Every log line of the gateway is one JSON object.

A request can put anything in a path (`%0A` decodes to a newline), and plain-text formats copy it
into the line: a forged second line then reads like the gateway's own. As JSON each value is escaped
(a newline is `\\n` inside a string), so one record is one line, whatever it carries, and a SIEM
reads fields instead of parsing text. What may be logged is still decided where it is logged: never
tokens, query strings or document content (`access_log.py`).
"""

from __future__ import annotations

import logging
import logging.config
from datetime import UTC, datetime
from typing import Any

import orjson


class JsonLogFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        fields = getattr(record, "fields", None)
        if isinstance(fields, dict):
            line.update(fields)
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        return orjson.dumps(line, default=str).decode()


LOG_CONFIG: dict[str, Any] = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"json": {"()": "gateway.log_format.JsonLogFormatter"}},
    "handlers": {"default": {"class": "logging.StreamHandler", "formatter": "json", "stream": "ext://sys.stderr"}},
    # uvicorn's own loggers too (its access log is off: `access_log.py` replaces it).
    "loggers": {name: {"handlers": ["default"], "level": "INFO", "propagate": False}
                for name in ("uvicorn", "uvicorn.error", "uvicorn.access")},
    "root": {"handlers": ["default"], "level": "INFO"},
}


def configure_logging() -> None:
    """JSON lines on stderr for the gateway and uvicorn (the serving process and each worker)."""
    lean_records()
    logging.config.dictConfig(LOG_CONFIG)


def lean_records() -> None:
    """Records without what no line of ours shows: the caller's file and line (a walk up the stack for
    every record: a third of an access-log line's cost), thread and process names. The logging HOWTO's
    "Optimization" section names these switches."""
    logging._srcfile = None  # noqa: SLF001 - the documented switch for findCaller
    logging.logThreads = False
    logging.logProcesses = False
    logging.logMultiprocessing = False
