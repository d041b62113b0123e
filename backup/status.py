"""Status: is every database's newest restorable backup recent enough (MAX_AGE_HOURS)? The I/O around
backup.freshness.

Which databases: CLOUDANT_DB="*" every database of the account (as a backup of "*" takes them), "a,b" or one
name those, unset every database that has backups under COS_PREFIX (then none can be missing). Named databases
are looked up one by one (find_backups reads every manifest it lists, so listing the whole prefix would read all
the other databases' manifests too); "*" and unset list the whole prefix once.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from backup import clients, cos, fanout
from backup.catalog import Entry, by_database, find_backups
from backup.config import Config
from backup.errors import CosError
from backup.freshness import assess, summary
from backup.keys import BackupKey, parse_backup_key
from backup.log import Log


def run_status(config: Config, log: Log, now: datetime | None = None) -> dict[str, Any]:
    """`now` is the one clock of the run (a test passes its own)."""
    now = now or datetime.now(UTC)
    names, backups, s3 = _catalog(config, log)
    uploads = _open_uploads(s3, config, log)
    max_age = config.tune("MAX_AGE_HOURS")
    rows = [assess(name, backups.get(name, []), now, max_age, uploads.get(name, []),
                   config.tune("CHECKPOINT_MAX_AGE_HOURS")) for name in names]
    result = summary(rows, max_age, config.tune("LIST_LIMIT"))
    log.info("status_checked", count=len(rows), stale=len(result["stale"]), max_age_hours=max_age)
    return {"ok": result.pop("ok"), "operation": "status", "bucket": config.cos.bucket, **result}


def _catalog(config: Config, log: Log) -> tuple[list[str], dict[str, list[Entry]], Any]:
    """(the databases to check, in order; their backups, newest first; the S3 client)."""
    bucket, prefix, host = config.cos.bucket, config.cos.prefix, config.source_host
    timeout, retries = config.tune("REQUEST_TIMEOUT"), config.tune("MAX_RETRIES")
    if config.many and config.dbs is None:  # "*": the account's databases, all backups listed once
        client, s3 = clients.make_clients(config, log)
        return fanout.databases(config, client), by_database(find_backups(s3, bucket, prefix, None, host)), s3
    s3 = cos.make_client(config.cos, timeout, retries, log)
    named = list(dict.fromkeys(config.dbs or ([config.db] if config.db is not None else [])))
    if named:
        return named, {name: find_backups(s3, bucket, prefix, name, host) for name in named}, s3
    backups = by_database(find_backups(s3, bucket, prefix, None, host))
    return sorted(backups), backups, s3


def _open_uploads(s3: Any, config: Config, log: Log) -> dict[str, list[BackupKey]]:
    """The backups being written (running, or checkpointed between invocations) by database: their multipart
    uploads are open. Only informative: when they cannot be listed, the status goes without them."""
    try:
        uploads = cos.list_uploads(s3, config.cos.bucket, config.cos.prefix)
    except CosError as exc:
        log.warning("uploads_unlisted", error=str(exc))
        return {}
    found: dict[str, list[BackupKey]] = {}
    for upload in uploads:
        if (name := parse_backup_key(upload.get("Key", ""), config.cos.prefix)) is not None:
            found.setdefault(name.db, []).append(name)
    return found
