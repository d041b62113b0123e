"""Backup chains (pure): what a restore applies, in which order, and what retention may delete."""

from __future__ import annotations

import dataclasses
import random
from datetime import UTC, datetime, timedelta

import pytest

from backup import chain as chains
from backup.catalog import Entry
from backup.chain import restore_chain, retention_plan
from backup.errors import FormatError
from backup.keys import BackupKey, backup_key
from backup.manifest import Manifest

NOW = datetime(2026, 3, 1, 0, 5, tzinfo=UTC)


def entry(days_ago: float, base: Entry | str | None = None, complete: bool = True, db: str = "orders",
          kind: str | None = None, size: int = 100) -> Entry:
    """A backup made `days_ago` days before NOW; incremental when it has a base. Its manifest records 100 bytes;
    `size` is the object's size as listed (another one: the object was truncated or replaced)."""
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
    return Entry(BackupKey(key, db, when), size, manifest)


def unreadable(days_ago: float) -> Entry:
    """A backup whose manifest exists but could not be read this time."""
    when = NOW - timedelta(days=days_ago)
    return Entry(BackupKey(backup_key("", "orders", when), "orders", when), 100, None, manifest_error="GET failed: 503")


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
    assert keys(plan) == [older.name.key]  # full: the newest restorable backup, the last way back


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


# -- retention never destroys the last way back (issue 12, point 4)


def lost_full_history(days: tuple[float, float, float, float, float] = (5, 4, 3, 2, 1)) -> tuple[Entry, ...]:
    """F1 (full), I1 (on F1), F2 (full), I2 (on F2), I3 (on I2), made `days` days ago. The listing a test gives
    leaves F2 out: its object is gone (deleted by hand, or by a lifecycle rule), so I2 and I3 cannot be restored."""
    f1 = entry(days[0])
    i1 = entry(days[1], f1)
    f2 = entry(days[2])
    i2 = entry(days[3], f2)
    i3 = entry(days[4], i2)
    return f1, i1, f2, i2, i3


def test_keep_last_one_keeps_the_last_restorable_chain_when_a_full_backup_is_lost() -> None:
    f1, i1, _, i2, i3 = lost_full_history()
    listing = newest_first(f1, i1, i2, i3)
    # I3 (newest complete) and I2 are a broken chain: nothing of it goes; I1 is the newest restorable, with F1.
    assert retention_plan(listing, 1, 0, NOW) == []
    older = entry(30)
    assert keys(retention_plan(newest_first(older, *listing), 1, 0, NOW)) == [older.name.key]


def test_keep_days_keeps_the_last_restorable_chain_when_a_full_backup_is_lost() -> None:
    f1, i1, _, i2, i3 = lost_full_history((40, 39, 5, 3, 1))  # the broken backups are young, the restorable old
    listing = newest_first(f1, i1, i2, i3)
    assert retention_plan(listing, 0, 7, NOW) == []
    f1, i1, _, i2, i3 = lost_full_history((44, 43, 42, 41, 40))  # all older than the days
    older = entry(60)
    assert keys(retention_plan(newest_first(older, f1, i1, i2, i3), 0, 7, NOW)) == [older.name.key]
    assert keys(retention_plan(newest_first(older, f1, i1, i2, i3), 1, 7, NOW)) == [older.name.key]


def test_a_backup_whose_object_size_differs_from_its_manifest_does_not_count_as_restorable() -> None:
    f1 = entry(4)
    i1 = entry(3, f1)
    f2 = entry(2, size=60)  # truncated after the backup: its chain cannot be restored
    i2 = entry(1, f2)
    # i2's chain is broken at f2: i1 (with f1) is the newest restorable; nothing goes from f2's chain either.
    assert retention_plan(newest_first(f1, i1, f2, i2), 1, 0, NOW) == []

    oldest = entry(10)
    full = entry(3)
    replaced = entry(1, size=100_000)  # the newest, replaced by another object of another size
    assert keys(retention_plan(newest_first(oldest, full, replaced), 1, 0, NOW)) == [oldest.name.key]


def test_the_newest_restorable_chain_is_kept_whole_when_the_newest_backup_is_broken() -> None:
    oldest = entry(20)
    f1 = entry(10)
    i1 = entry(9, f1)
    i2 = entry(8, i1)
    broken = entry(1, backup_key("", "orders", NOW - timedelta(days=5)))  # its base is gone
    listing = newest_first(oldest, f1, i1, i2, broken)
    assert keys(retention_plan(listing, 1, 0, NOW)) == [oldest.name.key]
    assert keys(retention_plan(listing, 0, 7, NOW)) == [oldest.name.key]
    assert keys(retention_plan(listing, 2, 0, NOW)) == [oldest.name.key]  # i2: newest restorable, and 2nd newest


def test_nothing_is_deleted_from_a_broken_chain() -> None:
    f1 = entry(10)
    i1 = entry(9, f1, size=7)  # damaged: f1 restores alone, but i1 and i2 do not, and f1 is part of their chain
    i2 = entry(8, i1)
    j1 = entry(7, backup_key("", "orders", NOW - timedelta(days=7.5)))  # its base is gone
    j2 = entry(6, j1)
    f2 = entry(2)
    i3 = entry(1, f2)
    listing = newest_first(f1, i1, i2, j1, j2, f2, i3)
    assert retention_plan(listing, 1, 0, NOW) == []
    assert retention_plan(listing, 0, 1, NOW) == []
    older = entry(30)
    assert keys(retention_plan(newest_first(older, *listing), 1, 0, NOW)) == [older.name.key]


def test_an_old_restorable_chain_may_go_once_a_newer_one_exists_but_the_broken_one_stays() -> None:
    f1, i1, _, i2, i3 = lost_full_history((7, 6, 5, 4, 3))
    f3 = entry(1)  # a new full backup: restorable, newer than the broken chain
    listing = newest_first(f1, i1, i2, i3, f3)
    assert keys(retention_plan(listing, 1, 0, NOW)) == keys([i1, f1])
    assert keys(retention_plan(listing, 0, 2, NOW)) == keys([i1, f1])


def test_an_unreadable_manifest_deletes_nothing() -> None:
    """A chain through a manifest that could not be read looks broken there, and its start deletable: wait."""
    full = entry(4)
    i1 = entry(3, full)
    i2 = unreadable(2)
    i3 = entry(1, i2.name.key)
    assert retention_plan(newest_first(full, i1, i2, i3), 1, 0, NOW) == []
    assert retention_plan(newest_first(unreadable(40), entry(2), entry(1)), 1, 0, NOW) == []


# -- chain_problem


def test_chain_problem_is_none_for_every_restorable_backup() -> None:
    full = entry(4)
    i1 = entry(3, full)
    i2 = entry(2, i1)
    other = entry(1)
    listing = newest_first(full, i1, i2, other, entry(0.5, complete=False))
    for backup in (full, i1, i2, other):
        assert chains.chain_problem(listing, backup.name.key) is None


def test_chain_problem_names_the_member_that_breaks_the_chain() -> None:
    full = entry(4)
    i1 = entry(3, full)
    i2 = entry(2, i1)
    head = i2.name.key

    lost = chains.chain_problem([i1, i2], head)
    assert lost is not None and full.name.key in lost and "missing" in lost
    truncated = chains.chain_problem([full, dataclasses.replace(i1, size=40), i2], head)
    assert truncated is not None and i1.name.key in truncated and "40 bytes" in truncated and "100" in truncated
    unread = dataclasses.replace(i1, manifest=None, manifest_error="GET failed: 503")
    problem = chains.chain_problem([full, unread, i2], head)
    assert problem is not None and i1.name.key in problem and "could not be read" in problem and "503" in problem
    no_manifest = dataclasses.replace(i1, manifest=None)
    problem = chains.chain_problem([full, no_manifest, i2], head)
    assert problem is not None and i1.name.key in problem and "incomplete" in problem
    b_key = backup_key("", "orders", NOW - timedelta(days=5))
    a = entry(6, b_key)
    b = entry(5, a)  # a follows b, b follows a
    problem = chains.chain_problem([a, b], b.name.key)
    assert problem is not None and "loops" in problem


def test_chain_problem_of_the_backup_itself() -> None:
    full = entry(2)
    assert "missing" in (chains.chain_problem([entry(1)], full.name.key) or "")
    problem = chains.chain_problem([dataclasses.replace(full, manifest=None)], full.name.key)
    assert problem is not None and full.name.key in problem and "incomplete" in problem
    invalid = dataclasses.replace(full, manifest=None, manifest_invalid="orders.manifest.json is not a manifest this version can use")
    problem = chains.chain_problem([invalid], full.name.key)
    assert problem is not None and "incomplete" in problem and "this version can use" in problem
    unread = dataclasses.replace(full, manifest=None, manifest_error="GET failed: 503")
    problem = chains.chain_problem([unread], full.name.key)
    assert problem is not None and full.name.key in problem and "could not be read" in problem and "503" in problem
    problem = chains.chain_problem([dataclasses.replace(full, size=0)], full.name.key)
    assert problem is not None and full.name.key in problem and "0 bytes" in problem and "100" in problem


# -- property: the last way back survives any history


def whole_chain(entries: list[Entry], key: str) -> list[Entry] | None:
    """Oracle: the chain of key when it restores and every member's object has its manifest's size, else None."""
    try:
        members = restore_chain(entries, key)
    except FormatError:
        return None
    return members if all(m.manifest is not None and m.size == m.manifest.bytes for m in members) else None


def as_far_as_it_resolves(entries: list[Entry], backup: Entry) -> list[Entry]:
    """Oracle: backup and the ancestors its base links reach among entries that have a manifest."""
    by_key = {e.name.key: e for e in entries if e.manifest is not None}
    found = [backup]
    while found[-1].manifest is not None and (base := by_key.get(found[-1].manifest.base or "")) and base not in found:
        found.append(base)
    return found


def random_history(rng: random.Random) -> list[Entry]:
    """Fulls and incrementals, some unfinished, some truncated; then some objects lost from the listing."""
    made: list[Entry] = []
    for day in sorted(rng.sample(range(1, 60), rng.randint(1, 12)), reverse=True):
        complete = rng.random() > 0.1
        size = 100 if rng.random() > 0.08 else rng.choice([0, 60, 150])
        bases = [e for e in made if e.manifest is not None]
        if bases and rng.random() < 0.6:
            made.append(entry(day, rng.choice(bases[-3:]), complete=complete, size=size))
        else:
            made.append(entry(day, complete=complete, size=size))
    return [e for e in made if rng.random() > 0.1]


def test_retention_never_destroys_the_last_way_back() -> None:
    rng = random.Random(12)
    for _ in range(500):
        entries = random_history(rng)
        keep_last, keep_days = rng.randint(0, 4), rng.choice([0, 0, 7, 30])
        deleted = retention_plan(newest_first(*entries), keep_last, keep_days, NOW)
        remaining = [e for e in entries if e not in deleted]
        complete = newest_first(*(e for e in entries if e.manifest is not None))
        restorable = [e for e in complete if whole_chain(entries, e.name.key) is not None]
        assert all(e.manifest is not None for e in deleted)
        assert keys(deleted) == keys(newest_first(*deleted))
        if not (keep_last or keep_days):
            assert deleted == []
            continue
        if complete:
            assert complete[0] not in deleted
        if restorable:
            assert whole_chain(remaining, restorable[0].name.key) is not None  # the newest restorable, still
        for kept in complete[:keep_last]:
            assert kept not in deleted
        for broken in (e for e in complete if e not in restorable):
            assert not set(keys(as_far_as_it_resolves(entries, broken))) & set(keys(deleted))
        for kept in remaining:
            if kept in restorable:
                assert whole_chain(remaining, kept.name.key) is not None


def test_chain_problem_is_none_exactly_when_the_chain_restores_and_every_member_is_whole() -> None:
    rng = random.Random(4)
    for _ in range(300):
        entries = random_history(rng)
        for backup in entries:
            problem = chains.chain_problem(entries, backup.name.key)
            assert (problem is None) == (whole_chain(entries, backup.name.key) is not None), problem
            assert problem is None or isinstance(problem, str) and problem
