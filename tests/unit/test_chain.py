"""Backup chains (pure): what a restore applies, in which order, and what retention may delete."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta

import pytest

from backup.catalog import Entry
from backup.chain import restore_chain, retention_plan
from backup.errors import FormatError
from backup.keys import BackupKey, backup_key
from backup.manifest import Manifest

NOW = datetime(2026, 3, 1, 0, 5, tzinfo=UTC)


def entry(days_ago: float, base: Entry | str | None = None, complete: bool = True, db: str = "orders",
          kind: str | None = None) -> Entry:
    """A backup made `days_ago` days before NOW; incremental when it has a base."""
    when = NOW - timedelta(days=days_ago)
    key = backup_key("", db, when)
    base_key = base.name.key if isinstance(base, Entry) else base
    manifest = None
    if complete:
        manifest = Manifest(
            key=key, database=db, docs=1, lines=2, bytes=100, sha256="0" * 64, parts=[{"size": 100, "sha256": "0" * 64}],
            started=key, finished=key, update_seq=1, seq=1, kind=kind or ("incremental" if base_key else "full"),
            base=base_key,
        )
    return Entry(BackupKey(key, db, when), 100, manifest)


def keys(entries: list[Entry]) -> list[str]:
    return [e.name.key for e in entries]


def newest_first(*entries: Entry) -> list[Entry]:
    return sorted(entries, key=lambda e: e.name.time, reverse=True)


# -- restore_chain


def test_a_full_backup_is_its_own_chain() -> None:
    full = entry(3)
    assert restore_chain([full], full.name.key) == [full]


def test_an_incremental_restores_its_whole_chain_oldest_first() -> None:
    full = entry(3)
    i1 = entry(2, full)
    i2 = entry(1, i1)
    for given in (newest_first(full, i1, i2), [full, i1, i2], [i1, full, i2]):
        assert restore_chain(given, i2.name.key) == [full, i1, i2]


def test_a_chain_stops_at_the_key_asked_for() -> None:
    full = entry(3)
    i1 = entry(2, full)
    i2 = entry(1, i1)
    assert restore_chain(newest_first(full, i1, i2), i1.name.key) == [full, i1]
    assert restore_chain(newest_first(full, i1, i2), full.name.key) == [full]


def test_only_the_backups_a_chain_names_are_in_it() -> None:
    old_full = entry(10)
    old_incr = entry(9, old_full)
    full = entry(3)
    other_incr_of_full = entry(2.5, full)
    i1 = entry(2, full)
    i2 = entry(1, i1)
    everything = newest_first(old_full, old_incr, full, other_incr_of_full, i1, i2)
    assert restore_chain(everything, i2.name.key) == [full, i1, i2]
    assert restore_chain(everything, old_incr.name.key) == [old_full, old_incr]


def test_a_missing_base_is_refused_naming_it() -> None:
    full = entry(3)
    i1 = entry(2, full)
    i2 = entry(1, i1)
    with pytest.raises(FormatError) as err:
        restore_chain([i1, i2], i2.name.key)  # the full was pruned
    message = str(err.value)
    assert full.name.key in message and i1.name.key in message and "missing" in message and "pruned" in message


def test_a_base_without_a_manifest_counts_as_missing() -> None:
    full = entry(3, complete=False)
    i1 = entry(2, full)
    with pytest.raises(FormatError, match="missing or incomplete"):
        restore_chain([full, i1], i1.name.key)


def test_an_incremental_without_a_base_name_is_refused() -> None:
    broken = entry(1, kind="incremental")
    assert broken.manifest is not None and broken.manifest.base is None
    with pytest.raises(FormatError, match="missing or incomplete"):
        restore_chain([broken], broken.name.key)


def test_a_key_without_a_manifest_is_not_a_complete_backup() -> None:
    partial = entry(1, complete=False)
    with pytest.raises(FormatError, match="no manifest"):
        restore_chain([partial], partial.name.key)
    with pytest.raises(FormatError, match="no manifest"):
        restore_chain([entry(2)], "orders_2020-01-01T00:00:00.000000Z_backup.txt")


@pytest.mark.parametrize("length", [1, 2, 3])
def test_a_loop_is_refused_not_followed_forever(length: int) -> None:
    times = [1 + i for i in range(length)]
    names = [backup_key("", "orders", NOW - timedelta(days=t)) for t in times]
    loop = [entry(t, names[(i + 1) % length]) for i, t in enumerate(times)]  # each follows the next, the last the first
    with pytest.raises(FormatError, match="loops"):
        restore_chain(loop, loop[0].name.key)


def test_a_loop_behind_a_valid_start_is_refused() -> None:
    a_key = backup_key("", "orders", NOW - timedelta(days=3))
    b = entry(2, a_key)
    a = entry(3, b)
    head = entry(1, b)
    with pytest.raises(FormatError, match="loops"):
        restore_chain([a, b, head], head.name.key)


# -- retention_plan


def test_no_retention_settings_delete_nothing() -> None:
    entries = newest_first(*(entry(d) for d in (1, 2, 3, 40)))
    assert retention_plan(entries, 0, 0, NOW) == []
    assert retention_plan([], 1, 1, NOW) == []


def test_keep_last_deletes_the_older_full_backups_newest_first() -> None:
    fulls = newest_first(*(entry(d) for d in (1, 2, 3, 4, 5)))
    assert keys(retention_plan(fulls, 2, 0, NOW)) == keys(fulls[2:])
    assert retention_plan(fulls, 5, 0, NOW) == []
    assert retention_plan(fulls, 50, 0, NOW) == []


def test_keep_last_one_keeps_the_newest_chain_whole() -> None:
    full = entry(3)
    i1 = entry(2, full)
    i2 = entry(1, i1)
    assert retention_plan(newest_first(full, i1, i2), 1, 0, NOW) == []


def test_a_newer_full_backup_frees_the_older_chain() -> None:
    full = entry(4)
    i1 = entry(3, full)
    i2 = entry(2, i1)
    new_full = entry(1)
    assert keys(retention_plan(newest_first(full, i1, i2, new_full), 1, 0, NOW)) == keys([i2, i1, full])
    assert retention_plan(newest_first(full, i1, i2, new_full), 2, 0, NOW) == []  # i2 kept, so its chain


def test_keep_last_counts_backups_but_keeps_the_bases_they_need() -> None:
    full = entry(10)
    incrs = [entry(9, full)]
    for d in (8, 7, 6):
        incrs.append(entry(d, incrs[-1]))
    other_full = entry(20)
    assert keys(retention_plan(newest_first(other_full, full, *incrs), 1, 0, NOW)) == [other_full.name.key]


def test_keep_days_deletes_only_what_is_older_and_unneeded() -> None:
    fresh = [entry(d) for d in (0.5, 2, 6.9)]
    old = [entry(d) for d in (7.1, 30, 400)]
    plan = retention_plan(newest_first(*fresh, *old), 0, 7, NOW)
    assert keys(plan) == keys(newest_first(*old))


def test_keep_days_keeps_an_old_base_of_a_young_incremental() -> None:
    old_full = entry(40)
    old_incr = entry(20, old_full)
    young = entry(2, old_incr)
    older_full = entry(60)
    plan = retention_plan(newest_first(older_full, old_full, old_incr, young), 0, 7, NOW)
    assert keys(plan) == [older_full.name.key]


def test_the_newest_chain_is_kept_even_when_all_backups_are_older_than_keep_days() -> None:
    full = entry(50)
    i1 = entry(45, full)
    older = entry(60)
    assert keys(retention_plan(newest_first(full, i1, older), 0, 7, NOW)) == [older.name.key]
    assert keys(retention_plan(newest_first(full, older), 0, 7, NOW)) == [older.name.key]


def test_keep_last_and_keep_days_together_keep_either() -> None:
    """Both set: a backup is kept when it is among the newest N *or* younger than the days (union)."""
    backups = newest_first(*(entry(d) for d in (1, 2, 3, 10, 20)))
    assert keys(retention_plan(backups, 1, 7, NOW)) == keys(backups[3:])  # 3 younger than a week
    assert keys(retention_plan(backups, 4, 7, NOW)) == keys(backups[4:])  # 4 newest
    assert keys(retention_plan(backups, 1, 15, NOW)) == keys(backups[4:])


def test_entries_without_manifests_are_never_deleted() -> None:
    partial_old = entry(400, complete=False)
    partial_new = entry(0.1, complete=False)  # e.g. a backup being written right now
    fulls = [entry(d) for d in (1, 2, 3)]
    plan = retention_plan(newest_first(partial_new, partial_old, *fulls), 1, 0, NOW)
    assert keys(plan) == keys(newest_first(*fulls)[1:])
    assert all(e.manifest is not None for e in plan)
    assert retention_plan([partial_old, partial_new], 1, 1, NOW) == []


def test_an_incomplete_newest_backup_does_not_count_as_the_newest() -> None:
    partial_new = entry(0.1, complete=False)
    full = entry(1)
    older = entry(2)
    assert keys(retention_plan(newest_first(partial_new, full, older), 1, 0, NOW)) == [older.name.key]


def test_a_broken_chain_is_kept_as_it_is_never_made_worse() -> None:
    pruned_base = backup_key("", "orders", NOW - timedelta(days=30))
    broken = entry(1, pruned_base)  # newest, but its base is gone
    full = entry(2)
    older = entry(3)
    plan = retention_plan(newest_first(broken, full, older), 1, 0, NOW)
    assert broken not in plan
    assert keys(plan) == keys([full, older])


def test_the_plan_does_not_depend_on_the_input_order() -> None:
    full = entry(6)
    i1 = entry(5, full)
    new_full = entry(4)
    i2 = entry(3, new_full)
    i3 = entry(2, i2)
    old = [entry(d) for d in (30, 31, 32)]
    everything = [full, i1, new_full, i2, i3, *old]
    expected = keys(retention_plan(newest_first(*everything), 2, 0, NOW))
    rng = random.Random(7)
    for _ in range(20):
        shuffled = everything[:]
        rng.shuffle(shuffled)
        assert keys(retention_plan(shuffled, 2, 0, NOW)) == expected
    assert expected == keys(newest_first(i1, full, *old))


def test_retention_never_deletes_anything_a_kept_backup_needs() -> None:
    """Property over random histories: every kept complete backup still restores after the plan is applied."""
    rng = random.Random(42)
    for _ in range(200):
        entries: list[Entry] = []
        for day in sorted(rng.sample(range(1, 60), rng.randint(1, 12)), reverse=True):
            complete = rng.random() > 0.1
            bases = [e for e in entries if e.manifest is not None]
            if bases and rng.random() < 0.6:
                entries.append(entry(day, rng.choice(bases[-3:]), complete=complete))
            else:
                entries.append(entry(day, complete=complete))
        keep_last, keep_days = rng.randint(0, 4), rng.choice([0, 0, 7, 30])
        deleted = retention_plan(newest_first(*entries), keep_last, keep_days, NOW)
        remaining = [e for e in entries if e not in deleted]
        assert all(e.manifest is not None for e in deleted)
        complete = newest_first(*(e for e in entries if e.manifest is not None))
        if complete:
            assert complete[0] not in deleted
        for kept in remaining:
            if kept.manifest is None:
                continue
            try:
                restore_chain(entries, kept.name.key)
            except FormatError:
                continue  # already broken before retention
            assert restore_chain(remaining, kept.name.key)  # still whole
