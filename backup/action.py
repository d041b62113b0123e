"""The action boundary: `main(args)` validates, dispatches on OPERATION and maps every outcome to a
small JSON-serialisable dict. Errors become `{"error": ...}` (an OpenWhisk application error), never a
bare traceback, and every text that leaves passes through `redact`.
"""

from __future__ import annotations

import traceback
from collections.abc import Callable, Mapping
from typing import Any

from backup.config import Config, load_config
from backup.errors import BackupError
from backup.log import Log
from backup.memory import return_large_buffers
from backup.redaction import IDENTIFIERS, redact, redact_all


def _operations() -> dict[str, Callable[[Config, Log], dict[str, Any]]]:
    from backup.backup import run_backup
    from backup.listing import run_list
    from backup.restore import run_restore
    from backup.verify import run_verify

    return {"backup": run_backup, "restore": run_restore, "list": run_list, "verify": run_verify}


def run(args: Mapping[str, Any], log: Log) -> dict[str, Any]:
    """Run one operation; raise BackupError on any failure (the CLI maps it to an exit code)."""
    config = load_config(args)
    return_large_buffers()
    return _operations()[config.operation](config, log)


def main(args: Mapping[str, Any], log: Log | None = None) -> dict[str, Any]:
    log = log or Log()
    try:
        return redact_all(run(args, log), IDENTIFIERS)  # a result holds error texts too (a fan-out's failures)
    except BackupError as exc:
        message = redact(str(exc))
        log.error("failed", kind=exc.kind, error=message)
        return {"error": message, "kind": exc.kind}
    except Exception as exc:  # noqa: BLE001 - the boundary: an unexpected bug still gets a clear, redacted message
        message = redact(f"unexpected {type(exc).__name__}: {exc}")
        log.error("crashed", error=message, traceback=redact(traceback.format_exc()))
        return {"error": message, "kind": "internal"}
