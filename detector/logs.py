"""Logging for `serve` and `worker`: logfmt-like text lines, or one JSON object per line
(`DETECTOR_LOG_FORMAT=json`) with the record's structured fields (`extra=`) as keys of their own."""

from __future__ import annotations

import json
import logging
import sys
from datetime import UTC, datetime
from typing import Any

from detector.times import iso_utc

_STANDARD = set(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {"message", "asctime", "taskName"}


class JsonFormatter(logging.Formatter):
    """`{"ts", "level", "logger", "msg", ...extra fields, "exc"}` on one line."""

    def format(self, record: logging.LogRecord) -> str:
        data: dict[str, Any] = {
            "ts": iso_utc(datetime.fromtimestamp(record.created, UTC)),
            "level": record.levelname,
            "logger": record.name,
            "msg": record.getMessage(),
        }
        for key, value in vars(record).items():
            if key not in _STANDARD and not key.startswith("_"):
                data[key] = value
        if record.exc_info:
            data["exc"] = self.formatException(record.exc_info)
        return json.dumps(data, default=str)


def configure_logging(log_format: str = "text", level: str = "INFO") -> None:
    """Log to stderr in `log_format` (`text` or `json`) from `level` up; replaces earlier handlers."""
    handler = logging.StreamHandler(sys.stderr)
    if log_format == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter('ts=%(asctime)s level=%(levelname)s logger=%(name)s msg="%(message)s"'))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
