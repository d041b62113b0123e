"""Structured logs: one JSON object per line (OpenWhisk keeps stdout lines as activation logs).

Every line passes through `redact`, so a field can never carry a secret out.
"""

from __future__ import annotations

import json
import sys
import threading
import time
from collections.abc import Callable
from typing import Any, TextIO

from backup.redaction import redact, redact_all


class Log:
    """Writes `{"ts": ..., "level": ..., "event": ..., **fields}` lines to a stream (stdout by default)."""

    def __init__(self, stream: TextIO | None = None, quiet: bool = False) -> None:
        self._stream = stream
        self._quiet = quiet
        self._lock = threading.Lock()

    def _write(self, level: str, event: str, fields: dict[str, Any]) -> None:
        if self._quiet and level == "info":
            return
        record = {"ts": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "level": level, "event": event}
        record.update(redact_all(fields))
        line = redact(json.dumps(record, default=str, ensure_ascii=False))
        stream = self._stream or sys.stdout  # resolved late: the launcher may swap stdout
        with self._lock:
            stream.write(line + "\n")
            stream.flush()

    def info(self, event: str, **fields: Any) -> None:
        self._write("info", event, fields)

    def warning(self, event: str, **fields: Any) -> None:
        self._write("warning", event, fields)

    def error(self, event: str, **fields: Any) -> None:
        self._write("error", event, fields)


ProgressCallback = Callable[[int, int], None]
