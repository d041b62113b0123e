"""Freshness (pure): from a database's backups and the time, its newest restorable backup and whether it is stale.

A database is fresh when its newest *restorable* backup (chain.chain_problem: its whole chain listed, each
member with a manifest matching its object's size) started at most MAX_AGE_HOURS before now. The age is the
key's time, when the backup started: documents written after it may be missing from it (a backup that spanned
invocations is as old as its start). Otherwise the database is stale, and the reason says why: no complete
backup, none that restores, or too old; a manifest that could not be read this time is named, never silently
taken for an incomplete backup.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

from backup.catalog import Entry
from backup.chain import chain_problem, restore_chain
from backup.keys import BackupKey, format_time

NAMES_IN_ERROR = 10  # an error names at most this many databases: it is a line, not a report


def assess(db: str, entries: Sequence[Entry], now: datetime, max_age_hours: int,
           uploads: Sequence[BackupKey] = (), upload_max_age_hours: int = 48) -> dict[str, Any]:
    """The status of one database from its catalog entries (newest first) and the open multipart uploads of
    its backups (`uploads`: a backup running or checkpointed; one older than `upload_max_age_hours` is
    abandoned by the next backup, so it is not in progress)."""
    newest = newest_restorable(entries)
    since = newest.name.time if newest is not None else None
    newer = [e for e in entries if since is None or e.name.time > since]
    running = in_progress(uploads, since, now, upload_max_age_hours)
    row: dict[str, Any] = {"database": db, **(_facts(newest, entries, now) if newest is not None else {"newest": None})}
    row["stale"] = newest is None or now - newest.name.time > timedelta(hours=max_age_hours)
    if row["stale"]:
        started = [f"a backup started at {format_time(running)} is in progress"] if running is not None else []
        row["reason"] = "; ".join([_verdict(newest, entries, now, max_age_hours), *_notes(newest, newer, entries),
                                   *started])
    if newest is not None and (broken := _complete(newer)) is not None:  # an older one restores, the newest not
        row["broken"] = chain_problem(entries, broken.name.key)
    if running is not None:
        row["in_progress"] = True
    return row


def in_progress(uploads: Sequence[BackupKey], since: datetime | None, now: datetime, max_age_hours: int) -> datetime | None:
    """When the newest backup still being written started, if it started after `since` and may still finish."""
    times = [u.time for u in uploads if (since is None or u.time > since) and now - u.time <= timedelta(hours=max_age_hours)]
    return max(times, default=None)


def _complete(entries: Sequence[Entry]) -> Entry | None:
    return next((e for e in entries if e.manifest is not None), None)


def newest_restorable(entries: Sequence[Entry]) -> Entry | None:
    """The newest entry with a manifest whose chain restores, or None."""
    return next((e for e in entries if e.manifest is not None and chain_problem(entries, e.name.key) is None), None)


def _facts(newest: Entry, entries: Sequence[Entry], now: datetime) -> dict[str, Any]:
    assert newest.manifest is not None
    chain = restore_chain(entries, newest.name.key)
    return {"newest": newest.name.key, "time": format_time(newest.name.time), "age_hours": _hours(now - newest.name.time),
            "kind": newest.manifest.kind, "chain": len(chain), "docs": newest.manifest.docs, "bytes": newest.size,
            "chain_bytes": sum(member.size for member in chain), "host": newest.host}


def _hours(age: timedelta) -> float:
    return round(age.total_seconds() / 3600, 1) + 0.0  # + 0.0: never -0.0 (a writer's clock slightly ahead)


def _verdict(newest: Entry | None, entries: Sequence[Entry], now: datetime, max_age_hours: int) -> str:
    if newest is not None:
        return f"newest complete backup is {_hours(now - newest.name.time)} hours old (MAX_AGE_HOURS {max_age_hours})"
    return "no restorable backup" if any(e.manifest is not None for e in entries) else "no complete backup"


def _notes(newest: Entry | None, newer: Sequence[Entry], entries: Sequence[Entry]) -> list[str]:
    """What the backups after the newest restorable one (all of them when there is none) are, when not usable."""
    notes = []
    if (broken := _complete(newer)) is not None:
        notes.append(f"the newest complete backup cannot be restored: {chain_problem(entries, broken.name.key)}")
    unreadable = [e for e in newer if e.manifest_error]
    if unreadable:
        more = f" (and {len(unreadable) - 1} more)" if len(unreadable) > 1 else ""
        notes.append(f"the manifest of {unreadable[0].name.key}{more} could not be read this time, so it could not be "
                     f"checked (retry): {unreadable[0].manifest_error}")
    incomplete = [e for e in newer if e.manifest is None and not e.manifest_error]
    if incomplete:
        what = f"{len(incomplete)}{'' if newest is None else ' newer'} object{'s' if len(incomplete) > 1 else ''}"
        notes.append(f"{what} without a usable manifest (unfinished, or not made by this tool), e.g. "
                     f"{incomplete[0].name.key}")
    return notes


def summary(rows: Sequence[dict[str, Any]], max_age_hours: int, limit: int) -> dict[str, Any]:
    """The result's verdict and rows: ok when no database is stale; at most `limit` rows (an action's result
    must stay under 1 MB), the stale ones kept first, in the order given."""
    stale = [row["database"] for row in rows if row["stale"]]
    shown = list(rows)
    if len(rows) > limit:
        kept = sorted(range(len(rows)), key=lambda i: not rows[i]["stale"])[:limit]  # stable: stale first
        shown = [rows[i] for i in sorted(kept)]
    result: dict[str, Any] = {"ok": not stale, "max_age_hours": max_age_hours, "count": len(rows),
                              "databases": shown, "stale": stale[:limit]}
    if len(rows) > limit:  # `count` and `stale_count` still count every database
        result.update(truncated=True, stale_count=len(stale))
    if stale:
        more = f" and {len(stale) - NAMES_IN_ERROR} more" if len(stale) > NAMES_IN_ERROR else ""
        verb = "has" if len(stale) == 1 else "have"
        result["error"] = (f"{len(stale)} of {len(rows)} database{'s' if len(rows) > 1 else ''} {verb} no complete "
                           f"backup in the last {max_age_hours} hours: {', '.join(stale[:NAMES_IN_ERROR])}{more}")
    return result
