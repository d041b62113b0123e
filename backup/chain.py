"""Backup chains (pure): which backups a restore needs, whether they are all there, and which ones retention
may delete.

A full backup starts a chain; each incremental names its `base`, the backup it follows. Restoring
an incremental means restoring its whole chain, oldest first. A backup is *restorable* when its chain
resolves and every member is whole: listed, with a manifest whose size is the object's.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from backup.catalog import Entry
from backup.errors import FormatError


@dataclass(frozen=True)
class _Listing:
    """A database's entries by key: those with a manifest, and why the others' manifests could not be read."""

    complete: dict[str, Entry]
    unreadable: dict[str, str]

    @classmethod
    def of(cls, entries: Sequence[Entry]) -> _Listing:
        return cls({e.name.key: e for e in entries if e.manifest is not None},
                   {e.name.key: e.manifest_error for e in entries if e.manifest_error})

    def resolve(self, key: str) -> tuple[list[Entry], str | None]:
        """`key` and its ancestors, newest first, as far as the base links resolve; with why they stop before a
        full backup (None: the chain is all there, though its objects may not be whole)."""
        current = self.complete.get(key)
        if current is None:
            return [], f"{key} has no manifest: it is not a complete backup made by this tool"
        chain = [current]
        while current.manifest is not None and current.manifest.kind == "incremental":
            base = current.manifest.base or ""
            previous = self.complete.get(base)
            if previous is None and base in self.unreadable:
                return chain, (f"incremental backup {current.name.key} follows {base}, whose manifest could not be "
                               f"read: {self.unreadable[base]}")
            if previous is None:
                return chain, (f"incremental backup {current.name.key} follows {base}, which is missing or incomplete "
                               "(pruned?): this chain cannot be restored; restore an older full backup, or take a new "
                               "full backup")
            if previous in chain:
                return chain, f"backup chain of {key} loops at {base}"
            chain.append(previous)
            current = previous
        return chain, None

    def problem(self, key: str) -> str | None:
        """Why `key` cannot be restored, or None (see chain_problem)."""
        chain, broken = self.resolve(key)
        if broken is not None:
            return broken
        for member in reversed(chain):  # oldest first, as a restore would meet them
            if (damage := _damage(member)) is not None:
                return f"{key} {damage}" if member is chain[0] else f"{key} needs {member.name.key}, which {damage}"
        return None


def _damage(entry: Entry) -> str | None:
    """What is wrong with a listed backup's object as far as the listing shows, or None: it is whole."""
    if entry.manifest is not None and entry.size != entry.manifest.bytes:
        return (f"is {entry.size} bytes, but its manifest recorded {entry.manifest.bytes}: "
                "the object was truncated or replaced since the backup")
    return None


def restore_chain(entries: Sequence[Entry], key: str) -> list[Entry]:
    """The backups to apply, oldest first, to restore `key` (a full backup, or an incremental's chain).
    FormatError when the chain does not resolve; the objects' sizes are not checked here (chain_problem)."""
    chain, broken = _Listing.of(entries).resolve(key)
    if broken is not None:
        raise FormatError(broken)
    return list(reversed(chain))


def chain_problem(entries: Sequence[Entry], key: str) -> str | None:
    """None when `key` is restorable from `entries` (the listing of its database): its chain resolves
    (restore_chain) and every member is whole, listed with a manifest whose `bytes` is the object's size.
    Else a short reason naming the member at fault: missing, incomplete, unreadable manifest, size differs."""
    own = next((e for e in entries if e.name.key == key), None)
    if own is None:
        return f"{key} is missing: no such object"
    if own.manifest_error:
        return f"the manifest of {key} could not be read: {own.manifest_error}"
    if own.manifest is None:
        return f"{key} is incomplete: {own.manifest_invalid or 'it has no manifest (unfinished, or not made by this tool)'}"
    return _Listing.of(entries).problem(key)


def retention_plan(entries: Sequence[Entry], keep_last: int, keep_days: int, now: datetime) -> list[Entry]:
    """Complete backups of one database that retention may delete, newest first.

    Kept: the newest `keep_last` backups, those younger than `keep_days`, the newest complete one and the
    newest restorable one (the last way back), each with every backup its chain needs. A broken backup (its
    chain does not resolve, or a member is not whole) is never deleted, nor anything its chain reaches: nothing
    is taken from a broken chain. Backups without a manifest are never touched, and while any manifest cannot
    be read nothing is deleted (a chain through it would look broken there, and its start deletable).
    """
    complete = sorted((e for e in entries if e.manifest is not None), key=lambda e: e.name.time, reverse=True)
    if not complete or not (keep_last or keep_days) or any(e.manifest_error for e in entries):
        return []
    listing = _Listing.of(entries)
    broken = [e for e in complete if listing.problem(e.name.key) is not None]
    broken_keys = {e.name.key for e in broken}
    restorable = [e for e in complete if e.name.key not in broken_keys]
    kept = [*_wanted(complete, keep_last, keep_days, now), *restorable[:1], *broken]
    keep = {member.name.key for entry in kept for member in listing.resolve(entry.name.key)[0]}
    return [e for e in complete if e.name.key not in keep]


def _wanted(complete: list[Entry], keep_last: int, keep_days: int, now: datetime) -> list[Entry]:
    """What the settings keep among the complete backups (newest first): the newest one always, the newest
    `keep_last`, and those younger than `keep_days`."""
    young = [e for e in complete if keep_days and e.name.time >= now - timedelta(days=keep_days)]
    return [*complete[:max(keep_last, 1)], *young]
