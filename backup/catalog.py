"""What backups the bucket holds: parse keys from a LIST, join each with its manifest."""

from __future__ import annotations

import dataclasses
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from backup import cos
from backup.errors import CosError
from backup.keys import BackupKey, manifest_key, parse_backup_key
from backup.manifest import Manifest

# Manifests are read a few at a time: one GET each, and a bucket may hold thousands of backups.
MANIFEST_READS = 8


@dataclass(frozen=True)
class Entry:
    name: BackupKey
    size: int
    manifest: Manifest | None  # None: no manifest (another tool's object, or a backup being written); its
    # `parts` list is left out (thousands of entries per backup, and a bucket holds many backups): read the
    # manifest again where the parts matter (restore, verify)
    manifest_error: str | None = None  # the manifest exists but could not be read (this time): never guess then
    manifest_invalid: str | None = None  # it was read but is not one this version can use (an early format):
    # the backup counts as incomplete, as one without a manifest


def find_backups(s3: Any, bucket: str, prefix: str, db: str | None = None) -> list[Entry]:
    """Backups under prefix (of one database when given), newest first. Keys that do not parse are skipped."""
    objects: dict[str, int] = {}
    manifests: set[str] = set()
    for obj in cos.list_objects(s3, bucket, prefix + (f"{db}_" if db else "")):
        objects[obj["Key"]] = obj["Size"]
        if obj["Key"].endswith(".manifest.json"):
            manifests.add(obj["Key"])
    found = [(name, size) for key, size in objects.items()
             if (name := parse_backup_key(key, prefix)) is not None and (db is None or name.db == db)]

    def entry(item: tuple[BackupKey, int]) -> Entry:
        name, size = item
        if manifest_key(name.key) not in manifests:
            return Entry(name, size, None)
        return Entry(name, size, *_read_manifest(s3, bucket, manifest_key(name.key)))

    with ThreadPoolExecutor(max_workers=MANIFEST_READS, thread_name_prefix="manifest") as pool:
        entries = list(pool.map(entry, found))
    entries.sort(key=lambda e: e.name.time, reverse=True)
    return entries


def _read_manifest(s3: Any, bucket: str, key: str) -> tuple[Manifest | None, str | None, str | None]:
    """(manifest without its parts, None, None), (None, why it could not be read, None) or (None, None, why it
    cannot be used)."""
    try:
        return dataclasses.replace(Manifest.from_json(cos.get_json(s3, bucket, key)), parts=[]), None, None
    except CosError as exc:
        return None, str(exc), None
    except (ValueError, TypeError) as exc:
        return None, None, f"{cos.where(bucket, key)} is not a manifest this version can use: {exc}"


def latest_key(s3: Any, bucket: str, prefix: str, db: str) -> str:
    """The newest backup of db that has a manifest (was completed by this tool). A newer one whose manifest
    could not be read stops the search: silently restoring older data would be worse than failing."""
    for entry in find_backups(s3, bucket, prefix, db):
        if entry.manifest_error:
            raise CosError(f"the newest backup of '{db}', {entry.name.key}, has a manifest that could not be read "
                           f"({entry.manifest_error}); not falling back to an older one: retry, or give COS_KEY")
        if entry.manifest is not None:
            return entry.name.key
    raise CosError(f"no complete backup of '{db}' found in {cos.where(bucket, prefix)}")
