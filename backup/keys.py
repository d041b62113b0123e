"""Object keys: pure, reversible functions, so a plain LIST can be parsed back into backups.

Key of a backup: `<prefix><db>_<ISO-8601 UTC time with microseconds>_backup.txt` (the seed's shape), then `.gz` or
`.zst` when compressed and `.age` when encrypted (`..._backup.txt.gz.age`: what a person must run on it, in order).
Its manifest (what `verify` checks against) sits beside it: `<backup key>.manifest.json`.
Microseconds make two backups of one database started in the same millisecond still distinct.

Database names may hold `/`, so in new keys it is written `%2F` (a name cannot hold `%`): database `team/app`
without a prefix and database `app` under the prefix `team/` must never share keys. Keys written by earlier
versions (a raw `/`) still parse; the catalog tells such look-alikes apart by the database their manifest records.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime

SUFFIX = "_backup.txt"
CODEC_SUFFIXES = {"gzip": ".gz", "zstd": ".zst", "none": ""}
AGE_SUFFIX = ".age"
_ENDING = r"_backup\.txt(?:\.gz|\.zst)?(?:\.age)?"
MANIFEST_SUFFIX = ".manifest.json"
_TIME_FORMAT = "%Y-%m-%dT%H:%M:%S.%fZ"
SLASH = "%2F"
_TIME_AND_SUFFIX = r"_\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(?:\.\d{1,6})?Z" + _ENDING
# The database part also admits a leading "_": system databases (_users, _replicator) can be backed up.
_KEY = re.compile(r"^(?P<db>[a-z_](?:[a-z0-9_$()+/-]|%2F)*)_(?P<time>\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(?:\.\d{1,6})?Z)" + _ENDING + "$")


@dataclass(frozen=True)
class BackupKey:
    key: str
    db: str
    time: datetime


def format_time(when: datetime) -> str:
    return when.astimezone(UTC).strftime(_TIME_FORMAT)


def encode_db(db: str) -> str:
    """The database as it appears in a key: `/` written `%2F`, so the database part never reads as a folder."""
    return db.replace("/", SLASH)


def backup_key(prefix: str, db: str, when: datetime, codec: str = "none", encrypted: bool = False) -> str:
    return f"{prefix}{encode_db(db)}_{format_time(when)}{SUFFIX}{CODEC_SUFFIXES[codec]}{AGE_SUFFIX if encrypted else ''}"


def listing_prefixes(prefix: str, db: str | None) -> list[str]:
    """What to LIST to find db's backups: its keys, and those of earlier versions (a raw `/` in the name)."""
    if db is None:
        return [prefix]
    found = [f"{prefix}{encode_db(db)}_"]
    if "/" in db:
        found.append(f"{prefix}{db}_")
    return found


def prefix_of(key: str, db: str) -> str | None:
    """The prefix under which `key` is a backup of `db` (new or earlier-version spelling), or None."""
    for spelling in dict.fromkeys((encode_db(db), db)):
        match = re.search(re.escape(spelling) + _TIME_AND_SUFFIX + "$", key)
        if match is not None:
            prefix = key[:match.start()]
            parsed = parse_backup_key(key, prefix)
            if parsed is not None and parsed.db == db:
                return prefix
    return None


def manifest_key(key: str) -> str:
    return key + MANIFEST_SUFFIX


def checkpoint_key(prefix: str, db: str, host: str) -> str:
    """Where an unfinished (checkpointed) backup of db from the server `host` keeps its state; never parses as a
    backup key. The host is part of it: two accounts backing up a database of one name into one bucket and
    prefix must never continue each other's upload."""
    return f"{prefix}{encode_db(db)}.checkpoint.{host}.json"


def restore_checkpoint_key(prefix: str, db: str, host: str) -> str:
    """Where a restore into database `db` of server `host` that spans invocations keeps its position."""
    return f"{prefix}{encode_db(db)}.restore.{host}.json"


def tail_key(prefix: str, db: str, host: str, invocation: int) -> str:
    """A new tail object per checkpoint: the previous pair stays valid until the new checkpoint lands."""
    return f"{checkpoint_key(prefix, db, host)}.tail.{invocation}"


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
    return BackupKey(key=key, db=match.group("db").replace(SLASH, "/"), time=when)
