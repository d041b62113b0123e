"""Backup chains (pure): which backups a restore needs, and which ones retention may delete.

A full backup starts a chain; each incremental names its `base`, the backup it follows. Restoring
an incremental means restoring its whole chain, oldest first.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta

from backup.catalog import Entry
from backup.errors import FormatError


def restore_chain(entries: Sequence[Entry], key: str) -> list[Entry]:
    """The backups to apply, oldest first, to restore `key` (a full backup, or an incremental's chain)."""
    by_key = {e.name.key: e for e in entries if e.manifest is not None}
    current = by_key.get(key)
    if current is None:
        raise FormatError(f"{key} has no manifest: it is not a complete backup made by this tool")
    chain = [current]
    while current.manifest is not None and current.manifest.kind == "incremental":
        base = current.manifest.base or ""
        previous = by_key.get(base)
        unreadable = next((e.manifest_error for e in entries if e.name.key == base and e.manifest_error), None)
        if previous is None and unreadable:
            raise FormatError(f"incremental backup {current.name.key} follows {base}, whose manifest could not be "
                              f"read: {unreadable}")
        if previous is None:
            raise FormatError(
                f"incremental backup {current.name.key} follows {base}, which is missing or incomplete (pruned?): "
                "this chain cannot be restored; restore an older full backup, or take a new full backup"
            )
        if previous in chain:
            raise FormatError(f"backup chain of {key} loops at {base}")
        chain.append(previous)
        current = previous
    return list(reversed(chain))


def retention_plan(entries: Sequence[Entry], keep_last: int, keep_days: int, now: datetime) -> list[Entry]:
    """Complete backups of one database that retention may delete (newest first given).

    Kept: the newest `keep_last` backups and those younger than `keep_days`, each with every backup its
    chain needs, and always the newest complete chain. Backups without a manifest are never touched.
    """
    complete = sorted((e for e in entries if e.manifest is not None), key=lambda e: e.name.time, reverse=True)
    if not complete or not (keep_last or keep_days):
        return []
    wanted = [complete[0]]
    if keep_last:
        wanted += complete[:keep_last]
    if keep_days:
        wanted += [e for e in complete if e.name.time >= now - timedelta(days=keep_days)]
    keep: set[str] = set()
    for entry in wanted:
        try:
            keep.update(e.name.key for e in restore_chain(complete, entry.name.key))
        except FormatError:
            keep.add(entry.name.key)  # a broken chain is kept as is, never made worse
    return [e for e in complete if e.name.key not in keep]
