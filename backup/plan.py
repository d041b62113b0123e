"""Planning a backup (pure): full or incremental, and when an incremental run makes a full one, why.

An incremental continues the changes feed from the position its base recorded, so it is only as good as
that base: the base must be of this very database (not an earlier one of the same name, deleted and
re-created), and its chain must restore. Otherwise the run makes a full backup and says why
(`full_because`). A needless full backup costs a night's reads; a wrong incremental loses data.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from backup.catalog import Entry
from backup.chain import chain_problem, restore_chain


@dataclass(frozen=True)
class Plan:
    kind: str  # "full" | "incremental"
    base: Entry | None = None  # incremental: the backup it follows
    full_because: str | None = None  # incremental mode, full backup: why


def seq_number(seq: Any) -> int | None:
    """The leading number of an update_seq or changes sequence (an integer on pouchdb-server, "123-g1AAAA..."
    on CouchDB 3 and Cloudant, where it is the sum of the shards' sequences), or None. Only ever compared to
    notice a database that went back in time; the rest of a sequence is opaque."""
    if isinstance(seq, bool):
        return None
    if isinstance(seq, int):
        return seq
    if isinstance(seq, str):
        head = seq.split("-", 1)[0]
        return int(head) if head.isdigit() else None
    return None


def instance_of(info: dict[str, Any]) -> str | None:
    """The database's `instance_start_time` (CouchDB 3.4+: its shards' creation time, new when the database is
    re-created; "0" on older CouchDB; one value per process on pouchdb-server)."""
    value = info.get("instance_start_time")
    return None if value is None else str(value)


def plan_backup(mode: str, entries: Sequence[Entry], info: dict[str, Any], full_every: int) -> Plan:
    """Full or incremental. `entries`: this database's backups from this server, newest first; `info`: the
    database's GET /db answer now."""
    if mode != "incremental":
        return Plan("full")
    known = [e for e in entries if e.manifest is not None or e.manifest_error]  # not unfinished/foreign ones
    if not known:
        return Plan("full", full_because="there is no complete backup of the database yet")
    base = known[0]
    if base.manifest is None:
        return Plan("full", full_because=f"the manifest of the newest backup, {base.name.key}, could not be read")
    if (because := _other_instance(base, info)) is not None:
        return Plan("full", full_because=because)
    if (problem := chain_problem(entries, base.name.key)) is not None:
        return Plan("full", full_because=f"the newest backup's chain cannot be restored: {problem}")
    incrementals = len(restore_chain(entries, base.name.key)) - 1
    if full_every and incrementals >= full_every:
        return Plan("full", full_because=f"its chain already holds {incrementals} incremental backups "
                                         f"(FULL_EVERY={full_every})")
    return Plan("incremental", base=base)


def _other_instance(base: Entry, info: dict[str, Any]) -> str | None:
    """Why the database is not the one `base` was made of (deleted and re-created since), or None."""
    manifest = base.manifest
    assert manifest is not None
    if manifest.seq is None:
        return f"the newest backup, {base.name.key}, records no changes-feed position"
    if manifest.instance is None:
        return f"the newest backup, {base.name.key}, records no database instance (made by an earlier version)"
    now = instance_of(info)
    if now != manifest.instance:
        return (f"the database was deleted and re-created since the newest backup (instance_start_time {now}, "
                f"was {manifest.instance})")
    seq_now, seq_then = seq_number(info.get("update_seq")), seq_number(manifest.seq)
    if seq_now is not None and seq_then is not None and seq_now < seq_then:
        return (f"the database's update_seq ({seq_now}) is below the newest backup's ({seq_then}): it was "
                "re-created or restored since")
    return None
