"""backup.human: results as short text for a terminal. The result dicts below have the fields the operations return
(backup/listing.py, backup.py, fanout.py, restore.py, verify.py; drill and status as backup/human.py reads them)."""

from __future__ import annotations

from typing import Any

import pytest

from backup.human import only_error, render, size, table

KEY = "orders_20240501T020000Z_full.jsonl.gz"
INCREMENTAL = "orders_20240502T020000Z_incremental.jsonl.gz"


@pytest.mark.parametrize("n, text", [
    (0, "0 B"), (512, "512 B"), (1023, "1023 B"), (1024, "1.0 KiB"), (1536, "1.5 KiB"),
    (20 * 1024**2, "20.0 MiB"), (3 * 1024**3 + 1024**3 // 2, "3.5 GiB"), (1024**4, "1.0 TiB"),
    (2048 * 1024**4, "2048.0 TiB"),  # no unit past TiB
    (None, "-"), (True, "-"), ("12", "-"), (1.5, "-"),  # not a byte count
])
def test_size_in_binary_units(n: Any, text: str) -> None:
    assert size(n) == text


@pytest.mark.parametrize("n, text", [(1024**2 - 1, "1.0 MiB"), (1024**3 - 1, "1.0 GiB"), (1024**2 - 52, "1023.9 KiB")])
def test_size_just_under_a_unit_rounds_up_into_it_not_to_1024(n: int, text: str) -> None:
    assert size(n) == text  # "1024.0 KiB" is a size no one writes


def test_table_pads_each_column_to_its_widest_cell_numbers_right_text_left() -> None:
    text = table(("NAME", "DOCS", "SIZE", "COMPLETE"),
                 [("a", "1,000", "1.5 KiB", True), ("bbbbbb", "5", "512 B", False), ("c", None, None, None)])
    assert text.splitlines() == [
        "NAME     DOCS     SIZE  COMPLETE",
        "a       1,000  1.5 KiB  yes",
        "bbbbbb      5    512 B  no",
        "c           -        -  -",
    ]


def test_table_of_headers_only() -> None:
    assert table(("TIME", "DATABASE"), []) == "TIME  DATABASE"


def listed(database: str, time: str, kind: str | None, docs: int | None, size_bytes: int) -> dict[str, Any]:
    complete = kind is not None
    return {"key": f"{database}_{time.replace('-', '').replace(':', '')}_{kind or 'full'}.jsonl.gz",
            "database": database, "time": time, "bytes": size_bytes, "docs": docs, "complete": complete,
            "kind": kind, "base": None, "host": "acct.cloudant.example.com"}


LIST = {"ok": True, "operation": "list", "bucket": "orders-backups", "count": 3, "backups": [
    listed("orders", "2024-05-02T02:00:00Z", "incremental", 12, 2048),
    listed("orders", "2024-05-01T02:00:00Z", "full", 1234567, 20 * 1024**2),
    listed("customers", "2024-04-30T02:00:00Z", None, None, 100),  # no manifest: incomplete
]}


def test_list_is_a_table_with_one_row_per_backup_and_the_count() -> None:
    lines = render(LIST, "list").splitlines()
    assert lines[0].split() == ["TIME", "DATABASE", "KIND", "DOCS", "SIZE", "COMPLETE"]
    assert [line.split() for line in lines[1:4]] == [
        ["2024-05-02T02:00:00Z", "orders", "incremental", "12", "2.0", "KiB", "yes"],
        ["2024-05-01T02:00:00Z", "orders", "full", "1,234,567", "20.0", "MiB", "yes"],
        ["2024-04-30T02:00:00Z", "customers", "-", "-", "100", "B", "no"],
    ]
    assert lines[4:] == ["3 backups in orders-backups"]
    header, rows = lines[0], lines[1:4]
    docs_end = header.index("DOCS") + len("DOCS")
    assert [row[:docs_end].rsplit(" ", 1)[1] for row in rows] == ["12", "1,234,567", "-"]  # right-aligned
    assert {row.index("yes" if row.endswith("yes") else "no") for row in rows} == {header.index("COMPLETE")}


def test_a_truncated_list_says_how_to_see_more_and_an_empty_one_says_so() -> None:
    truncated = {**LIST, "count": 500, "backups": LIST["backups"][:1], "truncated": True}
    lines = render(truncated, "list").splitlines()
    assert len(lines) == 4 and lines[2].startswith("(showing 1 of 500: ") and "LIST_LIMIT" in lines[2], lines
    assert lines[3] == "500 backups in orders-backups"
    assert render({"ok": True, "operation": "list", "bucket": "b", "count": 0, "backups": []}, "list") == \
        "no backups\n0 backups in b"


def status_of(database: str, age: float | None, stale: bool, reason: str | None = None) -> dict[str, Any]:
    """A row as backup/freshness.py assesses it (no complete backup: no facts at all)."""
    facts = {"newest": KEY, "time": "2024-05-01T02:00:00Z", "age_hours": age, "kind": "full", "chain": 1,
             "docs": 1200, "bytes": 4096, "chain_bytes": 4096, "host": "acct.cloudant.example.com"}
    return {"database": database, **(facts if age is not None else {"newest": None}), "stale": stale,
            **({"reason": reason} if reason else {})}


def test_status_with_a_stale_database_shows_why_and_the_verdict() -> None:
    result = {"ok": False, "operation": "status", "bucket": "b", "max_age_hours": 24, "count": 3,
              "databases": [status_of("customers", 3.5, False),
                            status_of("orders", 30.2, True, "newest complete backup is 30.2 hours old (MAX_AGE_HOURS 24)"),
                            status_of("users", None, True, "no complete backup")],
              "stale": ["orders", "users"],
              "error": "2 of 3 databases have no complete backup in the last 24 hours: orders, users"}
    lines = render(result, "status").splitlines()
    assert lines[0].split() == ["DATABASE", "NEWEST", "AGE", "(H)", "KIND", "CHAIN", "DOCS", "SIZE", "STATUS"]
    assert lines[1].split() == ["customers", "2024-05-01T02:00:00Z", "3.5", "full", "1", "1,200", "4.0", "KiB", "ok"]
    assert lines[2].startswith("orders ") and \
        lines[2].endswith("STALE: newest complete backup is 30.2 hours old (MAX_AGE_HOURS 24)"), lines
    assert lines[3].split() == ["users", "-", "-", "-", "-", "-", "-", "STALE:", "no", "complete", "backup"]
    assert lines[4] == "2 of 3 stale (newest complete backup at most 24 hours old)"
    assert lines[5] == "error: 2 of 3 databases have no complete backup in the last 24 hours: orders, users"
    assert len(lines) == 6


def test_status_all_fresh() -> None:
    result = {"ok": True, "operation": "status", "bucket": "b", "max_age_hours": 26, "count": 2, "stale": [],
              "databases": [status_of("a", 1.0, False), status_of("b", 2.0, False)]}
    assert render(result, "status").splitlines()[-1] == "all 2 fresh (newest complete backup at most 26 hours old)"


def test_a_truncated_status_counts_every_database_not_only_the_rows_shown() -> None:
    """LIST_LIMIT rows at most (stale ones first, backup/freshness.py): `count` is how many databases there are."""
    rows = [status_of("stale-db", None, True, "no complete backup"),
            *(status_of(f"db-{i}", 1.0, False) for i in range(2))]
    result = {"ok": False, "operation": "status", "bucket": "b", "max_age_hours": 24, "count": 500,
              "databases": rows, "stale": ["stale-db"], "truncated": True,
              "error": "1 of 500 databases has no complete backup in the last 24 hours: stale-db"}
    text = render(result, "status")
    assert "1 of 500 stale (newest complete backup at most 24 hours old)" in text.splitlines(), text


BACKUP = {"ok": True, "complete": True, "operation": "backup", "database": "orders", "bucket": "b", "key": KEY,
          "kind": "full", "docs": 1234, "bytes": 1536, "parts": 1, "invocations": 1, "seconds": 0.42,
          "sha256": "ab" * 32, "attachments": True, "security_saved": True}


def test_a_backup_says_what_it_saved_and_its_key() -> None:
    assert render(BACKUP, "backup") == f"backed up orders: 1,234 docs, 1.5 KiB in 0.42 s (full, complete)\n  {KEY}"


def test_a_checkpointed_backup_says_to_run_it_again() -> None:
    result = {**BACKUP, "complete": False, "kind": "incremental", "key": INCREMENTAL, "detail": "stopped before..."}
    assert render(result, "backup").splitlines()[0].endswith("(incremental, checkpointed: run it again to go on)")


def test_a_fan_out_backup_is_one_row_per_database_and_its_error() -> None:
    result = {"ok": False, "operation": "backup", "fanout": "sequential", "count": 4, "seconds": 3.1,
              "failed": ["b"], "error": "1 of 4 database backups failed: b",
              "databases": [
                  {"database": "a", "key": KEY, "complete": True, "docs": 10, "bytes": 2048, "kind": "full"},
                  {"database": "b", "error": "reading 'b': 401 unauthorized", "kind": "cloudant"},
                  {"database": "c", "key": KEY, "complete": False, "docs": 5, "bytes": 100, "kind": "full"},
                  {"database": "d", "activation_id": "4f3c2b1a"},  # the openwhisk fan-out's hand-over
              ]}
    lines = render(result, "backup").splitlines()
    assert lines[0].split() == ["DATABASE", "KIND", "DOCS", "SIZE", "OUTCOME"]
    assert lines[1].split() == ["a", "full", "10", "2.0", "KiB", "done"]
    assert lines[2].split()[:2] == ["b", "-"] and lines[2].endswith("reading 'b': 401 unauthorized"), lines
    assert lines[3].split() == ["c", "full", "5", "100", "B", "continues"]
    assert lines[4].split() == ["d", "-", "-", "-", "4f3c2b1a"]
    assert lines[5:] == ["error: 1 of 4 database backups failed: b"]


RESTORE = {"ok": True, "complete": True, "operation": "restore", "database": "orders-copy", "bucket": "b",
           "key": KEY, "docs": 1234, "written": 1250, "batches": 3, "invocations": 1, "seconds": 2.5,
           "docs_per_second": 500.0}


def test_a_complete_restore_says_what_the_target_holds() -> None:
    assert render(RESTORE, "restore") == \
        f"restored {KEY} into orders-copy: it holds 1,234 docs (1,250 written in 2.5 s)"


def test_a_checkpointed_restore_says_to_run_it_again_with_the_same_parameters() -> None:
    result = {"ok": True, "complete": False, "operation": "restore", "database": "orders-copy", "bucket": "b",
              "key": KEY, "written": 5000, "invocations": 1, "seconds": 280.0, "detail": "stopped before..."}
    assert render(result, "restore") == \
        "restore into orders-copy checkpointed after 5,000 docs: run it again with the same parameters to go on"


def test_verify_of_one_backup_and_of_a_chain() -> None:
    result = {"ok": True, "operation": "verify", "bucket": "b", "key": KEY, "database": "orders", "kind": "full",
              "docs": 1234, "lines": 1236, "bytes": 3 * 1024**2, "sha256": "cd" * 32, "seconds": 0.3}
    assert render(result, "verify") == f"verified {KEY}: whole, 1,234 docs, 3.0 MiB, sha256 {'cd' * 32}"
    chained = {**result, "key": INCREMENTAL, "kind": "incremental", "chain": [KEY, "x", INCREMENTAL]}
    assert render(chained, "verify").startswith(f"verified {INCREMENTAL} (and the 2 backups of its chain before it): ")


DRILL = {"ok": True, "operation": "drill", "database": "orders", "key": KEY, "drill_db": "orders-drill-1",
         "docs": 1234, "equal": True, "differences": [], "seconds": 4.2, "scratch_deleted": True,
         "sample": {"checked": 50, "unchanged_equal": 48, "changed_since_backup": 2}}


def test_a_drill_that_found_the_backup_equal() -> None:
    assert render(DRILL, "drill").splitlines() == [
        f"drill of orders: EQUAL -- 1,234 docs of {KEY} restored into orders-drill-1 and compared in 4.2 s",
        "  source sample: 50 checked, 48 unchanged and equal, 2 changed since the backup",
    ]


def test_a_drill_that_differs_lists_the_differences_the_scratch_left_and_the_error() -> None:
    result = {**DRILL, "ok": False, "equal": False, "scratch_deleted": False, "sample": {"checked": 0},
              "differences": [{"id": "doc-1", "differs": "rev", "backup": "2-b", "restored": "1-a"},
                              {"id": "doc-7", "differs": "missing"}],
              "error": "the restored database differs from the backup: 2 differences"}
    assert render(result, "drill").splitlines() == [
        f"drill of orders: NOT EQUAL -- 1,234 docs of {KEY} restored into orders-drill-1 and compared in 4.2 s",
        "  differs: doc-1: rev (backup 2-b, restored 1-a)",
        "  differs: doc-7: missing",
        "  the scratch database orders-drill-1 could not be deleted: delete it by hand",
        "error: the restored database differs from the backup: 2 differences",
    ]


def test_an_error_only_result_is_the_error_alone() -> None:
    result = {"error": "invalid parameters: COS_BUCKET is missing", "kind": "config"}
    assert only_error(result)
    assert render(result, "list") == "error: invalid parameters: COS_BUCKET is missing"
    assert render({**result, "warnings": ["CLOUDANT_BD looks like a typo"]}, "backup") == \
        "warning: CLOUDANT_BD looks like a typo\nerror: invalid parameters: COS_BUCKET is missing"
    assert not only_error(BACKUP) and not only_error({"ok": False, "operation": "status", "error": "stale"})


def test_warnings_are_shown_after_the_result() -> None:
    result = {**BACKUP, "warnings": ["no Cloudant credentials: connecting anonymously", "PAGESIZE looks like a typo"]}
    lines = render(result, "backup").splitlines()
    assert lines[:2] == render(BACKUP, "backup").splitlines()
    assert lines[2:] == ["warning: no Cloudant credentials: connecting anonymously",
                         "warning: PAGESIZE looks like a typo"]


def test_the_results_operation_chooses_the_rendering_and_an_unknown_one_falls_back_to_its_fields() -> None:
    assert render(LIST, "backup") == render(LIST, "list")
    assert render({"ok": True, "operation": "future", "n": 3, "warnings": ["w"]}, "future") == \
        "ok: True\noperation: future\nn: 3\nwarning: w"


def test_a_compressed_encrypted_backup_says_how_it_is_stored() -> None:
    text = render({"ok": True, "complete": True, "operation": "backup", "database": "db", "docs": 3, "bytes": 2048,
                   "plain_bytes": 10 * 1024 * 1024, "compression": "gzip", "encrypted": True, "seconds": 1.5,
                   "key": "db_t_backup.txt.gz.age"}, "backup")
    assert "2.0 KiB (gzip of 10.0 MiB, encrypted) in 1.5 s" in text
    plain = render({"ok": True, "complete": True, "operation": "backup", "database": "db", "docs": 3, "bytes": 2048,
                    "plain_bytes": 2048, "compression": "none", "encrypted": False, "seconds": 1.5, "key": "k"},
                   "backup")
    assert "2.0 KiB in 1.5 s" in plain


def test_verify_without_the_identity_says_only_the_stored_bytes_were_checked() -> None:
    text = render({"ok": True, "operation": "verify", "key": "k", "docs": 3, "bytes": 10, "sha256": "ab",
                   "compression": "zstd", "plain_bytes": 100, "encrypted": True, "content_checked": False}, "verify")
    assert "zstd of 100 B, encrypted" in text and "set AGE_IDENTITY to check its content too" in text


def test_decrypt_names_the_file_it_wrote() -> None:
    assert render({"ok": True, "operation": "decrypt", "key": "k.gz.age", "output": "plain.txt", "plain_bytes": 2048},
                  "decrypt") == "wrote plain.txt: the plain backup of k.gz.age, 2.0 KiB"
