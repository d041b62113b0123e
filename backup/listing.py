"""List: the backups in the bucket, newest first, with size, time and doc count."""

from __future__ import annotations

from typing import Any

from backup import cos
from backup.catalog import find_backups
from backup.config import Config
from backup.keys import format_time
from backup.log import Log


def run_list(config: Config, log: Log) -> dict[str, Any]:
    s3 = cos.make_client(config.cos, config.tune("REQUEST_TIMEOUT"), config.tune("MAX_RETRIES"), log)
    entries = find_backups(s3, config.cos.bucket, config.cos.prefix, config.db)
    limit = config.tune("LIST_LIMIT")
    backups = [
        {
            "key": e.name.key, "database": e.name.db, "time": format_time(e.name.time), "bytes": e.size,
            "docs": e.manifest.docs if e.manifest else None, "complete": e.manifest is not None,
            "kind": e.manifest.kind if e.manifest else None, "base": e.manifest.base if e.manifest else None,
            "host": e.host,  # the server it was made from (None: unknown, or made by an earlier version)
            **({"compression": e.manifest.compression, "encrypted": e.manifest.recipients is not None,
                "plain_bytes": e.manifest.plain_size} if e.manifest else {}),
            **({"manifest_error": e.manifest_error} if e.manifest_error else {}),
            **({"manifest_invalid": e.manifest_invalid} if e.manifest_invalid else {}),
        }
        for e in entries[:limit]
    ]
    result = {"ok": True, "operation": "list", "bucket": config.cos.bucket, "count": len(entries), "backups": backups}
    if len(entries) > limit:
        result["truncated"] = True  # an action's result must stay under 1 MB: --db or LIST_LIMIT to see more
    return result
