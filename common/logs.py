"""One JSON object per log line, with the context that ties a line to a request or a task."""

from __future__ import annotations

import json
import logging
import sys
import time
from contextvars import ContextVar
from typing import Any

CONTEXT: ContextVar[dict[str, str] | None] = ContextVar("h4_log_context", default=None)


def bind(**fields: str | None) -> None:
    """Add fields (operationID, taskId, user) to every line logged from here on in this context."""
    CONTEXT.set({**(CONTEXT.get() or {}), **{k: v for k, v in fields.items() if v}})


def clear() -> None:
    CONTEXT.set({})


class JsonFormatter(logging.Formatter):
    def __init__(self, component: str) -> None:
        super().__init__()
        self.component = component

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname,
            "component": self.component,
            "logger": record.name,
            "msg": record.getMessage(),
            **(CONTEXT.get() or {}),
        }
        if record.exc_info:
            line["exc"] = self.formatException(record.exc_info)
        return json.dumps(line, ensure_ascii=False)


_CHATTY_LIBRARIES = ("botocore", "boto3", "s3transfer", "urllib3")


def configure_logging(component: str, level: str = "INFO") -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter(component))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    # Their DEBUG lines are every HTTP request to the object store, with headers and retries:
    # too many to read, and signed requests have no place in the logs.
    for chatty in _CHATTY_LIBRARIES:
        logging.getLogger(chatty).setLevel(max(logging.INFO, logging.getLevelName(level)))
    logging.captureWarnings(True)  # warnings become JSON lines too, not bare stderr text
