"""What backups the bucket holds: parse keys from a LIST, join each with its manifest.

The one place that decides which objects belong to a database: a key says which database it is of, but keys
of earlier versions are ambiguous (`team/app_...` is database `team/app`, or `app` under the prefix `team/`),
and two accounts may back up databases of one name into one bucket. So a backup with a manifest belongs to
a database only when the manifest records that database, and to a server only when it records that host
(manifests of earlier versions record no host: they belong to any).
"""

from __future__ import annotations

import dataclasses
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from backup import cos
from backup.errors import CosError, FormatError
from backup.keys import BackupKey, listing_prefixes, manifest_key, parse_backup_key, prefix_of
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


    @property
    def host(self) -> str | None:
        return self.manifest.host if self.manifest is not None else None


def find_backups(s3: Any, bucket: str, prefix: str, db: str | None = None, host: str | None = None) -> list[Entry]:
    """Backups under prefix (of one database when given; made from `host` when given), newest first. Keys that
    do not parse are skipped, and so are backups whose manifest says they are of another database or server."""
    objects: dict[str, int] = {}
    manifests: set[str] = set()
    for listed in listing_prefixes(prefix, db):
        for obj in cos.list_objects(s3, bucket, listed):
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
        entries = [e for e in pool.map(entry, found) if _belongs(e, db, host)]
    entries.sort(key=lambda e: e.name.time, reverse=True)
    return entries


def _belongs(entry: Entry, db: str | None, host: str | None) -> bool:
    """False when the manifest says the backup is another database's (a key of an earlier version that reads
    as this one's) or another server's. Without a readable manifest nothing says whose it is: it stays, and
    is never trusted (not complete) or deleted."""
    manifest = entry.manifest
    if manifest is None:
        return True
    if db is not None and manifest.database != db:
        return False
    return host is None or manifest.host is None or manifest.host == host


def by_database(entries: list[Entry]) -> dict[str, list[Entry]]:
    """The entries of a whole-prefix listing (find_backups without db) by the database each is a backup of, in
    their order: the one its key names, unless its manifest records another (an earlier version's key that reads
    as this database's), which is then left out, as find_backups(db=...) leaves it out."""
    groups: dict[str, list[Entry]] = {}
    for entry in entries:
        if _belongs(entry, entry.name.db, None):
            groups.setdefault(entry.name.db, []).append(entry)
    return groups


def of_source(entries: list[Entry], host: str | None) -> list[Entry]:
    """The entries that may be backups made from `host` (all of them when host is None)."""
    return [e for e in entries if host is None or e.host is None or e.host == host]


def source_hosts(entries: list[Entry]) -> list[str]:
    """The servers the complete backups among entries were made from (as their manifests record them)."""
    return sorted({e.host for e in entries if e.host is not None})


def _read_manifest(s3: Any, bucket: str, key: str) -> tuple[Manifest | None, str | None, str | None]:
    """(manifest without its parts, None, None), (None, why it could not be read, None) or (None, None, why it
    cannot be used)."""
    try:
        return dataclasses.replace(Manifest.from_json(cos.get_json(s3, bucket, key)), parts=[]), None, None
    except CosError as exc:
        return None, str(exc), None
    except (ValueError, TypeError) as exc:
        return None, None, f"{cos.where(bucket, key)} is not a manifest this version can use: {exc}"


def latest_key(s3: Any, bucket: str, prefix: str, db: str, host: str | None) -> str:
    """The newest backup of db made from `host` that has a manifest (was completed by this tool). A newer one
    whose manifest could not be read stops the search: silently restoring older data would be worse than
    failing. Without a host, the backups must all come from one server."""
    everyone = find_backups(s3, bucket, prefix, db)
    hosts = source_hosts(everyone)
    mine = of_source(everyone, host)
    if host is None and len(hosts) > 1:
        raise CosError(f"the backups of '{db}' in {cos.where(bucket, prefix)} come from several servers "
                       f"({', '.join(hosts)}): set SOURCE_URL (or CLOUDANT_URL) to the one to take the latest of")
    if host is not None and not any(e.manifest for e in mine) and hosts:
        raise CosError(f"no complete backup of '{db}' from {host} in {cos.where(bucket, prefix)}, but there are "
                       f"backups of it from {', '.join(hosts)}: set SOURCE_URL to the server they were made from "
                       "(restoring into another server is fine: SOURCE_URL names where the backup came from)")
    for entry in mine:
        if entry.manifest_error:
            raise CosError(f"the newest backup of '{db}', {entry.name.key}, has a manifest that could not be read "
                           f"({entry.manifest_error}); not falling back to an older one: retry, or give COS_KEY")
        if entry.manifest is not None:
            return entry.name.key
    raise CosError(f"no complete backup of '{db}' found in {cos.where(bucket, prefix)}")


def read_manifest(s3: Any, bucket: str, key: str) -> Manifest | None:
    """The whole manifest of `key`, parts included (the catalog's entries leave them out), or None when the
    object has none (another tool's file, such as couchbackup's). FormatError when it cannot be used."""
    if not cos.exists(s3, bucket, manifest_key(key)):
        return None
    try:
        return Manifest.from_json(cos.get_json(s3, bucket, manifest_key(key)))
    except (ValueError, TypeError) as exc:
        raise FormatError(f"{cos.where(bucket, key)}: its manifest is unreadable: {exc}") from None


def chain_for(s3: Any, bucket: str, key: str) -> list[tuple[str, Manifest | None]]:
    """The objects that restore `key`, oldest first, each with its whole manifest: the chain of an
    incremental, or just the key (a full backup, or a foreign file without a manifest).

    The chain is looked for among the backups of the database and server the key's own manifest records,
    under the prefix the key was written with, so another database's look-alike keys never join it.
    """
    from backup.chain import restore_chain  # chain imports Entry from here

    try:
        manifest = read_manifest(s3, bucket, key)
    except CosError as exc:
        raise FormatError(f"{cos.where(bucket, key)}: its manifest could not be read, so it can be neither checked "
                          f"nor, for an incremental, chained: {exc}") from None
    if manifest is None or manifest.kind != "incremental":
        return [(key, manifest)]
    prefix = prefix_of(key, manifest.database)
    if prefix is None:
        raise FormatError(f"{cos.where(bucket, key)}: its manifest says it is a backup of '{manifest.database}', "
                          "which its key does not name: it cannot be chained")
    entries = find_backups(s3, bucket, prefix, manifest.database, manifest.host)
    chain: list[tuple[str, Manifest | None]] = []
    for member in restore_chain(entries, key):
        whole = manifest if member.name.key == key else read_manifest(s3, bucket, member.name.key)
        if whole is None:  # deleted since the listing
            raise FormatError(f"the chain of {cos.where(bucket, key)} needs {member.name.key}, whose manifest is gone")
        chain.append((member.name.key, whole))
    return chain
