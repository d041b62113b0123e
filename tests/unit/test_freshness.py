"""Freshness (pure): each database's newest restorable backup, its age, and whether it is stale."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from backup.catalog import Entry, by_database
from backup.freshness import assess, summary
from backup.keys import BackupKey, backup_key
from backup.manifest import Manifest

NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
MAX = 26


def entry(hours_ago: float, base: Entry | None = None, complete: bool = True, db: str = "orders", size: int = 100,
          manifest_db: str | None = None, **extra: str) -> Entry:
    """A backup made `hours_ago` hours before NOW, incremental when it has a base; its manifest records 100 bytes
    (`size` is the object's as listed)."""
    when = NOW - timedelta(hours=hours_ago)
    key = backup_key("", db, when)
    manifest = Manifest(key=key, database=manifest_db or db, docs=7, lines=2, bytes=100, sha256="0" * 64,
                        parts=[{"size": 100, "sha256": "0" * 64}], started=key, finished=key, update_seq=1, seq=1,
                        kind="incremental" if base else "full", base=base.name.key if base else None, host="h:5984")
    return Entry(BackupKey(key, db, when), size, manifest if complete else None, **extra)


def newest_first(*entries: Entry) -> list[Entry]:
    return sorted(entries, key=lambda e: e.name.time, reverse=True)


def test_a_recent_full_backup_is_fresh_with_its_facts() -> None:
    full = entry(2.04)
    row = assess("orders", [full], NOW, MAX)
    assert row == {"database": "orders", "newest": full.name.key, "time": "2026-03-01T09:57:36.000000Z",
                   "age_hours": 2.0, "kind": "full", "chain": 1, "docs": 7, "bytes": 100, "chain_bytes": 100,
                   "host": "h:5984", "stale": False}


def test_an_old_backup_is_stale_and_says_how_old() -> None:
    row = assess("orders", [entry(30.2), entry(54)], NOW, MAX)
    assert row["stale"] is True and row["age_hours"] == 30.2
    assert row["reason"] == "newest complete backup is 30.2 hours old (MAX_AGE_HOURS 26)"


def test_exactly_max_age_hours_old_is_still_fresh_a_microsecond_more_is_stale() -> None:
    assert assess("orders", [entry(MAX)], NOW, MAX)["stale"] is False
    older = entry(0, db="orders")
    older = Entry(BackupKey(older.name.key, "orders", NOW - timedelta(hours=MAX, microseconds=1)), 100, older.manifest)
    assert assess("orders", [older], NOW, MAX)["stale"] is True


def test_a_database_without_backups_is_stale() -> None:
    row = assess("gone", [], NOW, MAX)
    assert row == {"database": "gone", "newest": None, "stale": True, "reason": "no complete backup"}


def test_an_incomplete_newest_backup_leaves_the_older_complete_one_newest() -> None:
    complete = entry(5)
    row = assess("orders", newest_first(complete, entry(1, complete=False)), NOW, MAX)
    assert row["newest"] == complete.name.key and row["stale"] is False and "in_progress" not in row


def test_only_incomplete_backups_are_no_complete_backup_and_named() -> None:
    unfinished = entry(1, complete=False)
    row = assess("orders", [unfinished], NOW, MAX)
    assert row["stale"] is True and row["newest"] is None
    assert row["reason"] == ("no complete backup; 1 object without a usable manifest (unfinished, or not made by "
                             f"this tool), e.g. {unfinished.name.key}")


def test_an_incremental_chain_counts_its_members_and_bytes() -> None:
    full = entry(50)
    i1 = entry(26, full, size=100)
    i2 = entry(1, i1)
    row = assess("orders", newest_first(full, i1, i2), NOW, MAX)
    assert (row["newest"], row["kind"], row["chain"], row["chain_bytes"], row["stale"]) == (
        i2.name.key, "incremental", 3, 300, False)


def test_a_broken_chain_falls_back_to_the_older_restorable_backup_and_says_so() -> None:
    old_full = entry(60)
    full = entry(10, size=50)  # truncated: its manifest says 100 bytes
    incr = entry(1, full)
    row = assess("orders", newest_first(old_full, full, incr), NOW, MAX)
    assert row["newest"] == old_full.name.key and row["stale"] is True
    assert row["reason"].startswith("newest complete backup is 60.0 hours old (MAX_AGE_HOURS 26); the newest complete "
                                    f"backup cannot be restored: {incr.name.key} needs {full.name.key}, which is 50 "
                                    "bytes, but its manifest recorded 100"), row["reason"]
    assert row["broken"].startswith(f"{incr.name.key} needs {full.name.key}")


def test_a_fresh_restorable_backup_behind_a_broken_newer_one_is_fresh_and_names_the_broken_one() -> None:
    ok = entry(3)
    missing_base = entry(1, Entry(BackupKey("orders_gone_backup.txt", "orders", NOW), 1, None))
    row = assess("orders", newest_first(ok, missing_base), NOW, MAX)
    assert row["stale"] is False and row["newest"] == ok.name.key and "missing or incomplete" in row["broken"]


def test_no_backup_that_restores_is_stale_with_the_reason() -> None:
    full = entry(1, size=10)
    row = assess("orders", [full], NOW, MAX)
    assert row["newest"] is None and row["stale"] is True
    assert row["reason"].startswith("no restorable backup; the newest complete backup cannot be restored: "
                                    f"{full.name.key} is 10 bytes")


def test_an_unreadable_manifest_is_named_in_the_reason_never_silently_incomplete() -> None:
    unreadable = entry(1, complete=False, manifest_error="GET failed: 503 Slow Down")
    row = assess("orders", newest_first(entry(40), unreadable), NOW, MAX)
    assert row["stale"] is True
    assert row["reason"] == ("newest complete backup is 40.0 hours old (MAX_AGE_HOURS 26); the manifest of "
                             f"{unreadable.name.key} could not be read this time, so it could not be checked (retry): "
                             "GET failed: 503 Slow Down")
    assert "without a usable manifest" not in row["reason"]


def test_an_open_upload_after_the_newest_backup_is_in_progress() -> None:
    old = entry(30)
    running = BackupKey("k", "orders", NOW - timedelta(hours=2))
    row = assess("orders", [old], NOW, MAX, uploads=[running])
    assert row["in_progress"] is True and row["stale"] is True
    assert row["reason"].endswith("; a backup started at 2026-03-01T10:00:00.000000Z is in progress")


def test_uploads_before_the_newest_backup_or_too_old_to_be_continued_are_not_in_progress() -> None:
    before = BackupKey("k1", "orders", NOW - timedelta(hours=40))
    abandoned = BackupKey("k2", "orders", NOW - timedelta(hours=49))
    assert "in_progress" not in assess("orders", [entry(30)], NOW, MAX, uploads=[before])
    row = assess("orders", [], NOW, MAX, uploads=[abandoned], upload_max_age_hours=48)
    assert "in_progress" not in row and row["reason"] == "no complete backup"


def test_a_clock_slightly_ahead_gives_age_zero_not_minus_zero() -> None:
    row = assess("orders", [entry(-0.01)], NOW, MAX)
    assert str(row["age_hours"]) == "0.0" and row["stale"] is False


def test_summary_is_ok_only_without_stale_databases() -> None:
    rows = [assess("a", [entry(1, db="a")], NOW, MAX), assess("b", [entry(2, db="b")], NOW, MAX)]
    assert summary(rows, MAX, 1000) == {"ok": True, "max_age_hours": MAX, "count": 2, "databases": rows, "stale": []}


def test_summary_names_the_stale_databases_in_its_error() -> None:
    rows = [assess("a", [entry(1, db="a")], NOW, MAX), assess("b", [], NOW, MAX), assess("c", [entry(30, db="c")], NOW, MAX)]
    result = summary(rows, MAX, 1000)
    assert result["ok"] is False and result["stale"] == ["b", "c"]
    assert result["error"] == "2 of 3 databases have no complete backup in the last 26 hours: b, c"
    one = summary(rows[1:2], MAX, 1000)
    assert one["error"] == "1 of 1 database has no complete backup in the last 26 hours: b"


def test_summary_error_stays_short_with_many_stale_databases() -> None:
    rows = [assess(f"db{i:02}", [], NOW, MAX) for i in range(25)]
    error = summary(rows, MAX, 1000)["error"]
    assert error.endswith("db08, db09 and 15 more") and "db10" not in error


def test_summary_keeps_the_stale_rows_first_when_truncated_in_the_given_order() -> None:
    rows = [assess(name, [entry(1, db=name)] if name.startswith("f") else [], NOW, MAX)
            for name in ("f1", "s1", "f2", "s2", "f3")]
    result = summary(rows, MAX, 3)
    assert [r["database"] for r in result["databases"]] == ["f1", "s1", "s2"]
    assert result["truncated"] is True and result["count"] == 5 and result["stale"] == ["s1", "s2"]
    assert result["stale_count"] == 2 and summary(rows, MAX, 1)["stale"] == ["s1"]
    assert summary(rows, MAX, 1)["stale_count"] == 2 and "stale_count" not in summary(rows, MAX, 5)


def test_by_database_groups_a_whole_listing_and_leaves_look_alikes_out() -> None:
    a1, a2, b1 = entry(1, db="a"), entry(5, db="a"), entry(2, db="b")
    look_alike = entry(3, db="team/app", manifest_db="app")  # `team/app_...`: database app under prefix team/
    unfinished = entry(4, db="team/app", complete=False)  # nothing says whose: it stays (never trusted)
    groups = by_database(newest_first(a1, a2, b1, look_alike, unfinished))
    assert groups == {"a": [a1, a2], "b": [b1], "team/app": [unfinished]}
