"""Object keys: format and parse are inverse, and anything else in the bucket parses to None."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta, timezone

import pytest

from backup.keys import backup_key, manifest_key, parse_backup_key, prefix_of

WHEN = datetime(2024, 2, 29, 23, 59, 58, 123456, tzinfo=UTC)


@pytest.mark.parametrize("db", ["orders", "a/b/c", "a$b", "a(b)", "a+b", "a-b", "a_b", "a_b_c", "x1_2",
                                "db_2024-01-01_backup"],
                         ids=["plain", "slash", "dollar", "parens", "plus", "dash", "underscore", "underscores",
                              "digits", "looks-like-a-key"])
@pytest.mark.parametrize("prefix", ["", "backups/", "team/prod-"], ids=["no-prefix", "folder", "nested"])
def test_format_then_parse_round_trips(db: str, prefix: str) -> None:
    key = backup_key(prefix, db, WHEN)
    parsed = parse_backup_key(key, prefix)
    assert parsed is not None
    assert parsed.key == key
    assert parsed.db == db
    assert parsed.time == WHEN


def test_key_shape_is_db_utc_time_with_microseconds() -> None:
    assert backup_key("p/", "orders", WHEN) == "p/orders_2024-02-29T23:59:58.123456Z_backup.txt"


def test_time_in_another_zone_is_written_as_utc() -> None:
    cet = timezone(timedelta(hours=1))
    local = datetime(2024, 3, 1, 0, 59, 58, 123456, tzinfo=cet)
    key = backup_key("", "orders", local)
    assert "2024-02-29T23:59:58.123456Z" in key
    parsed = parse_backup_key(key)
    assert parsed is not None and parsed.time == local


def test_parsed_time_is_timezone_aware_utc() -> None:
    parsed = parse_backup_key(backup_key("", "orders", WHEN))
    assert parsed is not None
    assert parsed.time.tzinfo is not None
    assert parsed.time.utcoffset() == timedelta(0)


def test_key_without_fraction_still_parses() -> None:
    parsed = parse_backup_key("orders_2024-02-29T23:59:58Z_backup.txt")
    assert parsed is not None
    assert parsed.time == WHEN.replace(microsecond=0)


def test_key_under_another_prefix_gives_none() -> None:
    key = backup_key("backups/", "orders", WHEN)
    assert parse_backup_key(key, "archive/") is None
    assert parse_backup_key("Backups/orders_2024-02-29T23:59:58.123456Z_backup.txt", "backups/") is None


def test_prefix_is_stripped_before_reading_the_db_name() -> None:
    parsed = parse_backup_key(backup_key("backups/", "orders", WHEN), "backups/")
    assert parsed is not None and parsed.db == "orders"


@pytest.mark.parametrize("key", [
    manifest_key(backup_key("", "orders", WHEN)),
    "orders_2024-02-29T23:59:58.123456Z_backup.txt.bz2",
    "orders_2024-02-29T23:59:58.123456Z_backup.txt.age.gz",
    "README.md",
    "",
    "orders_backup.txt",
    "orders_2024-02-29_backup.txt",
    "orders_2024-02-29T23:59:58.123456_backup.txt",
    "orders_2024-02-29T23:59:58.1234567Z_backup.txt",
    "Orders_2024-02-29T23:59:58.123456Z_backup.txt",
    "1orders_2024-02-29T23:59:58.123456Z_backup.txt",
    "_2024-02-29T23:59:58.123456Z_backup.txt",
    "orders_2024-02-29T23:59:58.123456Z_backup.json",
    "folder/",
], ids=["manifest", "other-codec", "encrypted-then-compressed", "readme", "empty", "no-time", "date-only", "no-z", "seven-digit-fraction",
        "uppercase-db", "digit-db", "no-db", "other-suffix", "folder-marker"])
def test_keys_that_are_not_backups_give_none(key: str) -> None:
    assert parse_backup_key(key) is None


@pytest.mark.parametrize("key", ["orders_2024-13-01T00:00:00.000000Z_backup.txt",
                                 "orders_2023-02-29T00:00:00.000000Z_backup.txt",
                                 "orders_2024-01-01T25:00:00.000000Z_backup.txt"],
                         ids=["month-13", "feb-29-non-leap", "hour-25"])
def test_key_with_impossible_time_gives_none(key: str) -> None:
    assert parse_backup_key(key) is None


def test_manifest_key_sits_beside_the_backup() -> None:
    key = backup_key("backups/", "orders", WHEN)
    assert manifest_key(key) == key + ".manifest.json"


def test_keys_of_one_database_sort_by_time() -> None:
    rng = random.Random(20240229)
    start = datetime(1999, 12, 31, tzinfo=UTC)
    times = [start + timedelta(microseconds=rng.randrange(0, 10**17)) for _ in range(300)]
    times += [WHEN, WHEN + timedelta(microseconds=1), WHEN + timedelta(microseconds=10), WHEN + timedelta(seconds=1)]
    keys = [backup_key("backups/", "orders", t) for t in times]
    parsed = [parse_backup_key(k, "backups/") for k in sorted(keys)]
    assert all(p is not None for p in parsed)
    assert [p.time for p in parsed if p is not None] == sorted(times)


def test_one_microsecond_apart_gives_distinct_keys_and_times() -> None:
    later = WHEN + timedelta(microseconds=1)
    first, second = backup_key("", "orders", WHEN), backup_key("", "orders", later)
    assert first != second
    a, b = parse_backup_key(first), parse_backup_key(second)
    assert a is not None and b is not None
    assert b.time - a.time == timedelta(microseconds=1)


@pytest.mark.parametrize(("codec", "encrypted", "ending"), [
    ("none", False, "_backup.txt"), ("gzip", False, "_backup.txt.gz"), ("zstd", False, "_backup.txt.zst"),
    ("none", True, "_backup.txt.age"), ("gzip", True, "_backup.txt.gz.age"), ("zstd", True, "_backup.txt.zst.age"),
])
def test_a_compressed_or_encrypted_backup_says_so_in_its_key_and_parses_back(codec: str, encrypted: bool,
                                                                             ending: str) -> None:
    key = backup_key("nightly/", "team/orders", WHEN, codec, encrypted)
    assert key.endswith("Z" + ending)
    parsed = parse_backup_key(key, "nightly/")
    assert parsed is not None and (parsed.db, parsed.time) == ("team/orders", WHEN)
    assert prefix_of(key, "team/orders") == "nightly/"
