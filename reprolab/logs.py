"""Structured logging: one JSON object per line on stderr, each carrying the run id."""

from __future__ import annotations

import json
import logging
import os
import sys
import time
import uuid

RUN_ID = os.environ.get("REPROLAB_RUN_ID") or uuid.uuid4().hex[:12]

_STANDARD_ATTRS = set(logging.makeLogRecord({}).__dict__) | {"message", "asctime"}


class JsonLinesFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "run_id": RUN_ID,
            "msg": record.getMessage(),
        }
        # Fields passed with `extra={...}` become top-level keys.
        entry.update({k: v for k, v in record.__dict__.items() if k not in _STANDARD_ATTRS})
        if record.exc_info:
            entry["exc"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str, ensure_ascii=False)


def configure(level: str | None = None) -> None:
    """Install the JSON-lines handler on the root logger (idempotent)."""
    root = logging.getLogger()
    level = level or os.environ.get("REPROLAB_LOG_LEVEL", "INFO")
    root.setLevel(level.upper())
    if not any(isinstance(h.formatter, JsonLinesFormatter) for h in root.handlers):
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(JsonLinesFormatter())
        root.addHandler(handler)
    for noisy in ("botocore", "boto3", "urllib3", "s3transfer", "httpx", "filelock", "PIL"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
