"""The action boundary: `main(args)` validates, dispatches on OPERATION and maps every outcome to a
small JSON-serialisable dict. Errors become `{"error": ...}` (an OpenWhisk application error), never a
bare traceback, and every text that leaves passes through `redact`.
"""

from __future__ import annotations

import importlib
import traceback
from collections.abc import Callable, Mapping
from typing import Any, cast

from backup import interrupt, notify
from backup.config import Config, load_config
from backup.errors import BackupError
from backup.log import Log
from backup.memory import return_large_buffers
from backup.openwhisk import register_api_key
from backup.redaction import IDENTIFIERS, redact, redact_all

# Each operation's module, imported only when it runs (start-up time is part of every invocation).
OPERATIONS = {"backup": "backup.backup:run_backup", "restore": "backup.restore:run_restore",
              "list": "backup.listing:run_list", "verify": "backup.verify:run_verify",
              "drill": "backup.drill:run_drill", "status": "backup.status:run_status",
              "decrypt": "backup.decrypt:run_decrypt"}
# Operations of the command line only: they write a local file, which an action could not give back.
LOCAL_ONLY = ("decrypt",)


def _operation(name: str) -> Callable[[Config, Log], dict[str, Any]]:
    module, _, function = OPERATIONS[name].partition(":")
    return cast(Callable[[Config, Log], dict[str, Any]], getattr(importlib.import_module(module), function))


def run(args: Mapping[str, Any], log: Log) -> dict[str, Any]:
    """Run one operation; raise BackupError on any failure (the CLI maps it to an exit code). In the main thread
    (the CLI, a Code Engine job, the OpenWhisk runtime's launcher) SIGTERM and SIGINT stop it like an error
    (Interrupted: see backup.interrupt); the previous handlers are back when it returns."""
    register_api_key()  # the activation's own key (__OW_API_KEY, for self-invocation): masked like any secret
    config = load_config(args)
    for warning in config.warnings:  # typos, an anonymous connection: said first, and again in the result
        log.warning("config_warning", warning=warning)
    return_large_buffers()
    with interrupt.interruptible():
        return with_warnings(_operation(config.operation)(config, log), config)


def with_warnings(result: dict[str, Any], config: Config) -> dict[str, Any]:
    """The result, with the configuration's warnings in `warnings` (none: no such field)."""
    if config.warnings:
        result["warnings"] = [*result.get("warnings", []), *config.warnings]
    return result


def answer(args: Mapping[str, Any], log: Log) -> tuple[dict[str, Any], BackupError | None]:
    """Run one operation and map every outcome to a redacted result (and the typed error, if one ended it); then
    notify (NOTIFY_URL), which never changes the outcome."""
    failure: BackupError | None = None
    try:
        result = redact_all(run(args, log), IDENTIFIERS)  # a result holds error texts too (a fan-out's failures)
    except BackupError as exc:
        failure, message = exc, redact(str(exc))
        log.error("failed", kind=exc.kind, error=message)
        result = {"error": message, "kind": exc.kind}
    except Exception as exc:  # noqa: BLE001 - the boundary: an unexpected bug still gets a clear, redacted message
        message = redact(f"unexpected {type(exc).__name__}: {exc}")
        log.error("crashed", error=message, traceback=redact(traceback.format_exc()))
        result = {"error": message, "kind": "internal"}
    notify.after_run(args, result, log)
    return result, failure


def main(args: Mapping[str, Any], log: Log | None = None) -> dict[str, Any]:
    """The OpenWhisk action (and the Code Engine job's) entry point."""
    operation = args.get("OPERATION") if isinstance(args, Mapping) else None
    if isinstance(operation, str) and operation.strip().lower() in LOCAL_ONLY:
        return {"error": f"OPERATION {operation.strip().lower()} writes a local file: run it with the command line "
                         "(`cloudant-cos-backup decrypt --key KEY --output FILE`)", "kind": "config"}
    return answer(args, log or Log())[0]
