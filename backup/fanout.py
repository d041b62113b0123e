"""Every database of an account: CLOUDANT_DB="*" (or "a,b,c").

On OpenWhisk the platform is the scale-out engine: one asynchronous activation per database, each a
normal single-database backup with its own deadline and checkpoints. Elsewhere (CLI, Code Engine job)
the databases are backed up one after the other. The result lists each database's outcome.
"""

from __future__ import annotations

import dataclasses
import time
import traceback
from typing import Any

from backup import cloudant, openwhisk
from backup.config import Config
from backup.errors import BackupError
from backup.log import Log
from backup.redaction import redact


def databases(config: Config, client: Any) -> list[str]:
    if config.dbs is not None:
        return list(config.dbs)
    names = cloudant.all_dbs(client)
    return [name for name in names if config.include_system_dbs or not name.startswith("_")]


def run_many(config: Config, log: Log) -> dict[str, Any]:
    from backup.backup import deadline_for, run_backup

    assert config.cloudant is not None
    started = time.monotonic()
    client = cloudant.make_client(config.cloudant, config.tune("REQUEST_TIMEOUT"), config.tune("MAX_RETRIES"), log)
    names = databases(config, client)
    outcomes: list[dict[str, Any]] = []
    if openwhisk.available():
        passed_on = openwhisk.passed_on(config.public_params, log)  # under final: without the bound parameters
        for name in names:
            try:
                activation = openwhisk.invoke_async({**passed_on, "CLOUDANT_DB": name})
                outcomes.append({"database": name, "activation_id": activation})
            except BackupError as exc:
                outcomes.append({"database": name, "error": str(exc)})
        mode = "openwhisk"
    else:
        deadline = deadline_for(config)  # TIME_BUDGET is for the whole run, not per database
        for name in names:
            if deadline.reached():
                outcomes.append({"database": name, "error": "not started: the time budget is used up", "kind": "deadline"})
                continue
            single = dataclasses.replace(config, db=name, many=False, dbs=None)
            try:
                result = run_backup(single, log, deadline=deadline)
                outcomes.append({key: result.get(key) for key in ("database", "key", "complete", "docs", "bytes", "kind")})
            except BackupError as exc:
                outcomes.append({"database": name, "error": str(exc), "kind": exc.kind})
            except Exception as exc:  # noqa: BLE001 - a bug in one database's backup must not stop the others
                message = redact(f"unexpected {type(exc).__name__}: {exc}")
                log.error("crashed", database=name, error=message, traceback=redact(traceback.format_exc()))
                outcomes.append({"database": name, "error": message, "kind": "internal"})
        mode = "sequential"
    failed = [o["database"] for o in outcomes if "error" in o]
    result = {
        "ok": not failed, "operation": "backup", "fanout": mode, "databases": outcomes, "count": len(outcomes),
        "failed": failed, "seconds": round(time.monotonic() - started, 3),
    }
    if failed:
        result["error"] = f"{len(failed)} of {len(outcomes)} database backups failed: {', '.join(failed[:10])}"
    log.info("fanout_finished", mode=mode, count=len(outcomes), failed=len(failed))
    return result
