"""Structured logs: one JSON object per line (OpenWhisk keeps stdout lines as activation logs).

Every field passes through `redact_all`, so a field can never carry a secret out: free text (errors, details) is
masked, while identifiers, kinds, hashes, times and counts stay exact (a short password cannot punch holes in them).
"""

from __future__ import annotations

import json
import sys
import threading
import time
from collections.abc import Callable
from typing import Any, TextIO

from backup.redaction import redact_all


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
        record.update(redact_all(fields))  # anything not JSON has become its redacted text
        line = json.dumps(record, default=str, ensure_ascii=False)
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


def percent(done: int, total: int | None) -> float | None:
    """`done` of `total` in percent, rounded down to one decimal (100 only when done), at most 100; None when
    the total is unknown."""
    if not isinstance(total, int) or isinstance(total, bool) or total <= 0:
        return None
    return min(100.0, (1000 * done // total) / 10)
