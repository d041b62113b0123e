"""Planning a backup (pure): when an incremental run makes a full backup instead, and why."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from backup.catalog import Entry
from backup.keys import BackupKey, backup_key
from backup.manifest import Manifest
from backup.plan import plan_backup, seq_number

NOW = datetime(2026, 3, 1, 0, 5, tzinfo=UTC)
INFO = {"instance_start_time": "1796597502", "update_seq": "40-g1AAAA", "doc_count": 10}


def entry(days_ago: float, base: Entry | None = None, **fields: Any) -> Entry:
    when = NOW - timedelta(days=days_ago)
    key = backup_key("", "orders", when)
    manifest = Manifest(
        key=key, database="orders", docs=1, lines=2, bytes=100, sha256="0" * 64, parts=[], started=key, finished=key,
        update_seq="30-g1AAAA", seq="30-g1AAAA", kind="incremental" if base else "full",
        base=base.name.key if base else None, host="acct.cloudant.com", instance="1796597502",
    )
    return Entry(BackupKey(key, "orders", when), 100, dataclasses.replace(manifest, **fields))


def newest_first(*entries: Entry) -> list[Entry]:
    return sorted(entries, key=lambda e: e.name.time, reverse=True)


def test_full_mode_is_always_full() -> None:
    assert plan_backup("full", [entry(1)], INFO, 6).kind == "full"
    assert plan_backup("full", [entry(1)], INFO, 6).full_because is None


def test_an_incremental_follows_the_newest_complete_backup() -> None:
    full = entry(2)
    incr = entry(1, full)
    plan = plan_backup("incremental", newest_first(full, incr), INFO, 6)
    assert plan.kind == "incremental" and plan.base == incr and plan.full_because is None


def test_without_a_complete_backup_it_is_full_and_says_so() -> None:
    unfinished = Entry(BackupKey("k", "orders", NOW), 5, None)
    plan = plan_backup("incremental", [unfinished], INFO, 6)
    assert plan.kind == "full" and "no complete backup" in (plan.full_because or "")


@pytest.mark.parametrize(("info", "words"), [
    ({**INFO, "instance_start_time": "1796597503"}, "re-created"),
    ({**INFO, "update_seq": "3-g1AAAA"}, "update_seq (3) is below"),
    ({**INFO, "update_seq": 3}, "update_seq (3) is below"),
], ids=["other-instance", "seq-went-back", "integer-seq-went-back"])
def test_a_database_that_is_not_the_one_backed_up_gets_a_full_backup(info: dict[str, Any], words: str) -> None:
    plan = plan_backup("incremental", [entry(1)], info, 6)
    assert plan.kind == "full" and words in (plan.full_because or ""), plan


def test_a_base_from_an_earlier_version_without_an_instance_gets_a_full_backup() -> None:
    plan = plan_backup("incremental", [entry(1, instance=None)], INFO, 6)
    assert plan.kind == "full" and "earlier version" in (plan.full_because or "")


def test_an_unreadable_newest_manifest_gets_a_full_backup() -> None:
    unreadable = Entry(BackupKey("k", "orders", NOW), 100, None, manifest_error="503 SlowDown")
    plan = plan_backup("incremental", [unreadable, entry(1)], INFO, 6)
    assert plan.kind == "full" and "could not be read" in (plan.full_because or "")


def test_a_broken_chain_is_not_extended() -> None:
    full = entry(3)
    incr = entry(2, full)
    plan = plan_backup("incremental", [incr], INFO, 6)  # its full backup is gone
    assert plan.kind == "full" and full.name.key in (plan.full_because or ""), plan
    truncated = dataclasses.replace(full, size=50)
    plan = plan_backup("incremental", newest_first(truncated, incr), INFO, 6)
    assert plan.kind == "full", plan


def test_full_every_bounds_the_incrementals_of_a_chain() -> None:
    chain = [entry(10)]
    for days in range(9, 6, -1):
        chain.append(entry(days, chain[-1]))
    entries = newest_first(*chain)  # a full backup and 3 incrementals
    assert plan_backup("incremental", entries, INFO, 4).kind == "incremental"
    plan = plan_backup("incremental", entries, INFO, 3)
    assert plan.kind == "full" and "FULL_EVERY=3" in (plan.full_because or "")
    assert plan_backup("incremental", entries, INFO, 0).kind == "incremental"  # 0: never


@pytest.mark.parametrize(("seq", "number"), [(7, 7), ("29-g1AAAAJj", 29), ("0-g1", 0), ("opaque", None),
                                             (None, None), (True, None), (["1", "x"], None)])
def test_seq_number_reads_only_the_leading_number(seq: Any, number: int | None) -> None:
    assert seq_number(seq) == number
