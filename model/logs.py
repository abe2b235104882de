"""Logging, set up once per process: one line per event, structured.

``setup_logging()`` reads ``AUTHLENS_LOG_LEVEL`` (default ``INFO``) and ``AUTHLENS_LOG_FORMAT``
(``json``, the default, one JSON object per line; or ``text``, ``key=value`` pairs) unless given
explicitly. Extra fields go through ``logger.info("event", extra={"fields": {...}})`` or the
:func:`log_event` shortcut.
"""

from __future__ import annotations

import json
import logging
import os
import sys
from datetime import UTC, datetime
from typing import Any

LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
FORMATS = ("json", "text")

_configured = False


class _Formatter(logging.Formatter):
    def __init__(self, fmt: str) -> None:
        super().__init__()
        self.fmt = fmt

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "event": record.getMessage(),
        }
        fields = getattr(record, "fields", None)
        if isinstance(fields, dict):
            entry.update(fields)
        if record.exc_info:
            entry["exc"] = self.formatException(record.exc_info).replace("\n", " | ")
        if self.fmt == "json":
            return json.dumps(entry, default=str)
        return " ".join(
            f"{k}={json.dumps(v, default=str) if isinstance(v, str) and ' ' in v else v}"
            for k, v in entry.items()
        )


def setup_logging(level: str | None = None, fmt: str | None = None) -> None:
    """Configure the root logger once; later calls only change the level, if they name one.

    Raises:
        ValueError: an unknown level or format (the message lists the allowed ones).
    """
    global _configured
    if _configured and level is None:
        return  # keep what the command line (or the first call) chose
    level = (level or os.environ.get("AUTHLENS_LOG_LEVEL") or "INFO").upper()
    fmt = (fmt or os.environ.get("AUTHLENS_LOG_FORMAT") or "json").lower()
    if level not in LEVELS:
        raise ValueError(f"Unknown log level {level!r}. Allowed: {', '.join(LEVELS)}.")
    if fmt not in FORMATS:
        raise ValueError(f"Unknown log format {fmt!r}. Allowed: {', '.join(FORMATS)}.")
    root = logging.getLogger()
    root.setLevel(level)
    if _configured:
        return
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(_Formatter(fmt))
    root.handlers[:] = [handler]
    for noisy in ("uvicorn.access",):
        logging.getLogger(noisy).propagate = False
    _configured = True


def log_event(logger: logging.Logger, event: str, level: int = logging.INFO, **fields: Any) -> None:
    """Log one structured event: ``log_event(log, "bundle_loaded", sha256=...)``."""
    logger.log(level, event, extra={"fields": fields})
