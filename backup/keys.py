"""Object keys: pure, reversible functions, so a plain LIST can be parsed back into backups.

Key of a backup: `<prefix><db>_<ISO-8601 UTC time with microseconds>_backup.txt` (the seed's shape).
Its manifest (what `verify` checks against) sits beside it: `<backup key>.manifest.json`.
Microseconds make two backups of one database started in the same millisecond still distinct.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime

SUFFIX = "_backup.txt"
MANIFEST_SUFFIX = ".manifest.json"
CHECKPOINT_SUFFIX = ".checkpoint.json"
_TIME_FORMAT = "%Y-%m-%dT%H:%M:%S.%fZ"
# The database part also admits a leading "_": system databases (_users, _replicator) can be backed up.
_KEY = re.compile(r"^(?P<db>[a-z_][a-z0-9_$()+/-]*)_(?P<time>\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(?:\.\d{1,6})?Z)_backup\.txt$")


@dataclass(frozen=True)
class BackupKey:
    key: str
    db: str
    time: datetime


def format_time(when: datetime) -> str:
    return when.astimezone(UTC).strftime(_TIME_FORMAT)


def backup_key(prefix: str, db: str, when: datetime) -> str:
    return f"{prefix}{db}_{format_time(when)}{SUFFIX}"


def manifest_key(key: str) -> str:
    return key + MANIFEST_SUFFIX


def checkpoint_key(prefix: str, db: str) -> str:
    """Where an unfinished (checkpointed) backup of db keeps its state; never parses as a backup key."""
    return f"{prefix}{db}{CHECKPOINT_SUFFIX}"


def tail_key(prefix: str, db: str, invocation: int) -> str:
    """A new tail object per checkpoint: the previous pair stays valid until the new checkpoint lands."""
    return f"{prefix}{db}{CHECKPOINT_SUFFIX}.tail.{invocation}"


def parse_backup_key(key: str, prefix: str = "") -> BackupKey | None:
    """The database and time a key stands for, or None when the key is not a backup under prefix."""
    if not key.startswith(prefix):
        return None
    match = _KEY.match(key[len(prefix):])
    if match is None:
        return None
    stamp = match.group("time")
    fmt = _TIME_FORMAT if "." in stamp else "%Y-%m-%dT%H:%M:%SZ"
    try:
        when = datetime.strptime(stamp, fmt).replace(tzinfo=UTC)
    except ValueError:  # shaped like a backup key but an impossible date: not one of ours
        return None
    return BackupKey(key=key, db=match.group("db"), time=when)
