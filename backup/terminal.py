"""A log for a person at a terminal: progress events draw a bar (tqdm) on stderr; warnings and errors print as
short lines above it; other events are left out (--json, or a stderr that is not a terminal, keeps JSON lines)."""

from __future__ import annotations

import threading
from typing import Any, TextIO

from tqdm import tqdm

from backup.log import Log
from backup.redaction import redact_all

# Fields that say what happened; the rest of a warning's fields are details (a retry's URL, a traceback).
_SAID = ("database", "key", "detail", "error", "warning", "status")


class TerminalLog(Log):
    def __init__(self, stream: TextIO, quiet: bool = False) -> None:
        super().__init__(stream=stream, quiet=quiet)
        self._out = stream
        self._bar: tqdm[Any] | None = None
        self._what: tuple[Any, ...] = ()
        self._bar_lock = threading.Lock()

    def _write(self, level: str, event: str, fields: dict[str, Any]) -> None:
        if event == "progress":
            if not self._quiet:
                self._progress(fields)
        elif level != "info" and event not in ("failed", "crashed"):  # the result's error line says it
            said = redact_all({k: fields[k] for k in _SAID if k in fields})
            text = f"{level}: {event.replace('_', ' ')}" + "".join(f"; {k}: {v}" for k, v in said.items())
            with self._bar_lock:
                tqdm.write(text, file=self._out)  # above the bar, which is drawn again below it

    def _progress(self, fields: dict[str, Any]) -> None:
        done, total = fields.get("docs"), fields.get("total")
        what = (fields.get("operation"), fields.get("database"), total)
        with self._bar_lock:
            if self._bar is None or what != self._what:  # a new bar per database (a fan-out backs up several)
                self._close_bar()
                self._what = what
                self._bar = tqdm(total=total if isinstance(total, int) and total > 0 else None, unit=" docs",
                                 unit_scale=True, file=self._out, dynamic_ncols=True, leave=True,
                                 desc=f"{what[0]} {what[1] or ''}".strip())
            if isinstance(done, int) and done >= self._bar.n:
                self._bar.update(done - self._bar.n)

    def _close_bar(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None

    def close(self) -> None:
        """The run ended: the bar stays on screen as it last was, and the result prints below it."""
        with self._bar_lock:
            self._close_bar()
