"""Retention: after a successful backup, delete older backups of that database (KEEP_LAST / KEEP_DAYS),
never one that the newest complete chain needs. The plan is pure (chain.retention_plan); this is the I/O.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from backup import cos
from backup.catalog import find_backups
from backup.chain import retention_plan
from backup.config import Config
from backup.errors import CosError
from backup.keys import manifest_key
from backup.log import Log


def apply_retention(config: Config, s3: Any, log: Log) -> dict[str, list[str]]:
    """Delete what the plan allows; returns the result's fields: `deleted_old_backups` (none when retention is
    off), and `retention_skipped` with the manifests that could not be read, when that stopped it."""
    keep_last, keep_days = config.tune("KEEP_LAST"), config.tune("KEEP_DAYS")
    if not (keep_last or keep_days) or config.db is None:
        return {}
    host = config.cloudant.host if config.cloudant is not None else None
    entries = find_backups(s3, config.cos.bucket, config.cos.prefix, config.db, host)  # this server's only
    unreadable = [e.name.key for e in entries if e.manifest_error]
    if unreadable:
        # A chain through an unreadable manifest looks broken, and its base would look deletable: wait.
        log.warning("retention_skipped", database=config.db, unreadable_manifests=unreadable,
                    detail="some manifests could not be read; nothing is deleted this time")
        return {"deleted_old_backups": [], "retention_skipped": unreadable}
    deleted = []
    for entry in retention_plan(entries, keep_last, keep_days, datetime.now(UTC)):
        try:
            # The manifest goes last: a half-deleted backup still shows as incomplete, never as complete.
            cos.delete(s3, config.cos.bucket, entry.name.key)
            cos.delete(s3, config.cos.bucket, manifest_key(entry.name.key))
            deleted.append(entry.name.key)
        except CosError as exc:
            log.warning("retention_delete_failed", key=entry.name.key, error=str(exc))
    if deleted:
        log.info("retention", database=config.db, deleted=deleted)
    return {"deleted_old_backups": deleted}
