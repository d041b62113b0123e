"""Leftovers of killed runs: a backup killed with SIGKILL (or by a platform's hard limit) before it could abort leaves
an incomplete multipart upload, billed until someone aborts it. Each backup of a database aborts those of its
database at its start (the result lists them in `aborted_uploads`).

An upload is a leftover when all of these hold (the decision is pure: `leftover_uploads` and `is_idle`):

* its key is a backup key of this database under this COS_PREFIX, in this version's spelling (a `/` in the name
  written `%2F`). An earlier version's raw `/` spelling is never taken: `team/app_<time>_backup.txt` is just as well
  database `app` under the prefix `team/`, whose checkpoints this run does not read;
* no checkpoint of this database refers to it: neither this server's nor another server's (a database of the same
  name on another account, backed up into the same bucket and prefix; `<prefix><db>.checkpoint.<host>.json`);
* it was started more than MIN_AGE (an hour) ago, and no part of it was uploaded within MIN_AGE: a backup without a
  deadline may run for hours without a checkpoint, but it uploads a part every few seconds.

The cost is one listing of the database's incomplete uploads per backup; the checkpoints and parts are read only
when an old upload is found. A failure here never fails the backup (a warning; the next run tries again).
"""

from __future__ import annotations

import json
from collections.abc import Collection, Iterable, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

from backup import cos
from backup.checkpoint import Checkpoint
from backup.errors import CosError
from backup.keys import encode_db, parse_backup_key
from backup.log import Log

MIN_AGE = timedelta(hours=1)


def _key_prefix(prefix: str, db: str) -> str:
    return f"{prefix}{encode_db(db)}_"


def leftover_uploads(uploads: Iterable[Mapping[str, Any]], db: str, prefix: str, referenced: Collection[str],
                     now: datetime, min_age: timedelta | None = None) -> list[Mapping[str, Any]]:
    """The uploads (as S3 lists them: Key, UploadId, Initiated) that are leftovers of this database's backups under
    prefix, unless one of their parts is recent (see `is_idle`). `referenced`: the upload ids checkpoints name."""
    min_age = MIN_AGE if min_age is None else min_age
    found = []
    for upload in uploads:
        key, upload_id, initiated = upload.get("Key"), upload.get("UploadId"), upload.get("Initiated")
        if not isinstance(key, str) or not upload_id or upload_id in referenced or not isinstance(initiated, datetime):
            continue
        if not key.startswith(_key_prefix(prefix, db)):
            continue
        parsed = parse_backup_key(key, prefix)
        if parsed is None or parsed.db != db:
            continue
        if now - initiated >= min_age:
            found.append(upload)
    return found


def is_idle(parts: Iterable[Mapping[str, Any]], now: datetime, min_age: timedelta | None = None) -> bool:
    """True when no part was uploaded within min_age (no parts at all: idle). A part of unknown time: not idle."""
    min_age = MIN_AGE if min_age is None else min_age
    for part in parts:
        modified = part.get("LastModified")
        if not isinstance(modified, datetime) or now - modified < min_age:
            return False
    return True


def _referenced(s3: Any, bucket: str, prefix: str, db: str) -> set[str] | None:
    """The upload ids every checkpoint of this database (any server) names; None when one cannot be read."""
    ids: set[str] = set()
    for item in cos.list_objects(s3, bucket, f"{prefix}{encode_db(db)}.checkpoint."):
        key = item["Key"]
        if not key.endswith(".json") or key.endswith(f"{encode_db(db)}.checkpoint.json"):
            continue  # a tail, or an earlier version's checkpoint (never continued now: its upload is a leftover)
        got = cos.read_versioned(s3, bucket, key)
        if got is None:
            continue  # deleted meanwhile
        try:
            ids.add(Checkpoint.from_json(json.loads(got[0])).upload_id)
        except (ValueError, TypeError, KeyError):
            return None
    return ids


def abort_leftovers(s3: Any, bucket: str, prefix: str, db: str, log: Log, now: datetime | None = None) -> list[str]:
    """Abort this database's leftover uploads; returns their keys. Never fails the backup: a warning instead."""
    try:
        return _abort_leftovers(s3, bucket, prefix, db, log, now or datetime.now(UTC))
    except CosError as exc:
        log.warning("leftover_cleanup_failed", database=db, error=str(exc),
                    detail="incomplete uploads of killed runs were not looked for; the next backup tries again")
        return []


def _abort_leftovers(s3: Any, bucket: str, prefix: str, db: str, log: Log, now: datetime) -> list[str]:
    uploads = cos.list_uploads(s3, bucket, _key_prefix(prefix, db))
    if not leftover_uploads(uploads, db, prefix, (), now, MIN_AGE):
        return []  # the usual case: one listing
    referenced = _referenced(s3, bucket, prefix, db)
    if referenced is None:
        log.warning("leftover_cleanup_skipped", database=db,
                    detail="a checkpoint of this database could not be read: what it refers to is not known")
        return []
    aborted = []
    for upload in leftover_uploads(uploads, db, prefix, referenced, now, MIN_AGE):
        key, upload_id = upload["Key"], upload["UploadId"]
        if not is_idle(cos.list_parts(s3, bucket, key, upload_id), now, MIN_AGE):
            continue
        if cos.abort_upload(s3, bucket, key, upload_id, log):
            log.warning("leftover_upload_aborted", database=db, key=key, initiated=str(upload.get("Initiated")),
                        detail="an incomplete upload of a killed run: no checkpoint refers to it")
            aborted.append(key)
    return aborted
