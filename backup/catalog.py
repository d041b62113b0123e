"""What backups the bucket holds: parse keys from a LIST, join each with its manifest."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from backup import cos
from backup.errors import CosError
from backup.keys import BackupKey, manifest_key, parse_backup_key
from backup.manifest import Manifest


@dataclass(frozen=True)
class Entry:
    name: BackupKey
    size: int
    manifest: Manifest | None  # None: no manifest (another tool's object, or a backup being written); its
    # `parts` list is left out (thousands of entries per backup, and a bucket holds many backups): read the
    # manifest again where the parts matter (restore, verify)
    manifest_error: str | None = None  # the manifest exists but could not be read (this time)


def find_backups(s3: Any, bucket: str, prefix: str, db: str | None = None) -> list[Entry]:
    """Backups under prefix (of one database when given), newest first. Keys that do not parse are skipped."""
    objects: dict[str, int] = {}
    manifests: set[str] = set()
    for obj in cos.list_objects(s3, bucket, prefix + (f"{db}_" if db else "")):
        objects[obj["Key"]] = obj["Size"]
        if obj["Key"].endswith(".manifest.json"):
            manifests.add(obj["Key"])
    entries = []
    for key, size in objects.items():
        name = parse_backup_key(key, prefix)
        if name is None or (db is not None and name.db != db):
            continue
        manifest, error = None, None
        if manifest_key(key) in manifests:
            try:
                manifest = dataclasses.replace(Manifest.from_json(cos.get_json(s3, bucket, manifest_key(key))), parts=[])
            except CosError as exc:
                error = str(exc)
            except (ValueError, TypeError) as exc:
                error = f"{cos.where(bucket, manifest_key(key))} is not a readable manifest: {exc}"
        entries.append(Entry(name, size, manifest, error))
    entries.sort(key=lambda e: e.name.time, reverse=True)
    return entries


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
