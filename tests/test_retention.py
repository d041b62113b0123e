"""Retention against real servers: KEEP_LAST / KEEP_DAYS delete older backups (object + manifest) of that
database after a successful backup, never the newest complete chain, never another database's backups."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from backup.keys import backup_key, manifest_key
from tests.helpers import (
    CapturedLog,
    cos_params,
    couch_params,
    keys_in,
    live_docs,
    load_docs,
    run_at_once,
    run_main,
    sample_docs,
)

pytestmark = pytest.mark.integration


@pytest.fixture
def params(couch, seaweed, db_name, bucket):
    load_docs(couch, db_name, sample_docs(filler=3, filler_bytes=20))
    return {**couch_params(couch, db_name), **cos_params(seaweed, bucket)}


def _backup(params: dict[str, Any], **extra: Any) -> dict[str, Any]:
    result, _ = run_main({**params, **extra})
    assert result.get("ok") and result.get("complete"), result
    return result


def _with_manifests(*keys: str) -> list[str]:
    return sorted([*keys, *(manifest_key(k) for k in keys)])


def _of(s3: Any, bucket: str, db: str) -> list[str]:
    """The objects of db's backups (with their manifests), not another database's that shares the prefix."""
    return sorted(k for k in keys_in(s3, bucket) if k.startswith(f"{db}_2"))


def _craft_old_copy(s3: Any, bucket: str, key: str, db: str, days_ago: float, base: str | None = None) -> str:
    """A copy of a backup under a key whose time is `days_ago` days back (keys carry the time)."""
    manifest = json.loads(s3.get_object(Bucket=bucket, Key=manifest_key(key))["Body"].read())
    old = backup_key("", db, datetime.now(UTC) - timedelta(days=days_ago), manifest["compression"])  # same ending
    s3.put_object(Bucket=bucket, Key=old, Body=s3.get_object(Bucket=bucket, Key=key)["Body"].read())
    manifest["key"] = old
    if base is not None:
        manifest["base"] = base
    s3.put_object(Bucket=bucket, Key=manifest_key(old), Body=json.dumps(manifest).encode())
    return old


def test_keep_last_leaves_the_newest_n_and_touches_no_other_database(couch, db_name, bucket, s3_client, params):
    older = [_backup(params)["key"] for _ in range(4)]
    others = {}
    for other in (f"{db_name}-other", f"{db_name}_x"):  # "<db>_x" shares the listing prefix "<db>_"
        load_docs(couch, other, [{"_id": "o"}])
        others[other] = _backup({**params, "CLOUDANT_DB": other}, KEEP_LAST=1)["key"]
    plain = _backup(params)
    assert "deleted_old_backups" not in plain  # retention off by default
    older.append(plain["key"])

    # A checkpointed (unfinished) run deletes nothing: retention follows a successful backup only.
    stopped, _ = run_at_once({**params, "KEEP_LAST": 1})
    assert stopped["complete"] is False and "deleted_old_backups" not in stopped
    assert _of(s3_client, bucket, db_name) == _with_manifests(*older)

    newest = _backup(params, KEEP_LAST=2)  # continues the checkpointed backup, then prunes
    assert newest["key"] == stopped["key"]
    assert newest["deleted_old_backups"] == list(reversed(older[:-1]))  # newest first
    assert _of(s3_client, bucket, db_name) == _with_manifests(older[-1], newest["key"])
    for other, key in others.items():
        assert _of(s3_client, bucket, other) == _with_manifests(key)
    listed, _ = run_main({**params, "OPERATION": "list"})
    assert [b["key"] for b in listed["backups"]] == [newest["key"], older[-1]]

    again = _backup(params, KEEP_LAST=2)
    assert again["deleted_old_backups"] == [older[-1]]
    nothing = _backup(params, KEEP_LAST=5)
    assert nothing["deleted_old_backups"] == []


def test_keep_last_one_keeps_the_whole_newest_chain(couch, db_name, bucket, s3_client, params):
    full = _backup(params, KEEP_LAST=1)
    load_docs(couch, db_name, [{"_id": "monday"}])
    first = _backup(params, BACKUP_MODE="incremental", KEEP_LAST=1)
    load_docs(couch, db_name, [{"_id": "tuesday"}])
    second = _backup(params, BACKUP_MODE="incremental", KEEP_LAST=1)
    assert (first["base"], second["base"]) == (full["key"], first["key"])
    assert first["deleted_old_backups"] == second["deleted_old_backups"] == []
    chain = [full["key"], first["key"], second["key"]]
    assert _of(s3_client, bucket, db_name) == _with_manifests(*chain)

    restored, _ = run_main({**params, "OPERATION": "restore", "COS_KEY": "latest", "SOURCE_DB": db_name,
                            "CLOUDANT_DB": f"{db_name}-r", "CREATE_TARGET": True})
    assert restored["chain"] == chain and live_docs(couch, f"{db_name}-r") == live_docs(couch, db_name)

    # A new full backup starts a new chain: the old one may go now.
    new_full = _backup(params, KEEP_LAST=1)
    assert new_full["deleted_old_backups"] == list(reversed(chain))
    assert _of(s3_client, bucket, db_name) == _with_manifests(new_full["key"])


def test_backups_without_a_manifest_are_never_deleted(db_name, bucket, s3_client, params):
    first = _backup(params)
    unfinished_old = backup_key("", db_name, datetime.now(UTC) - timedelta(days=400))
    s3_client.put_object(Bucket=bucket, Key=unfinished_old, Body=b"not ours, or half-written\n")
    couchbackup_file = backup_key("", db_name, datetime.now(UTC) - timedelta(days=30))
    s3_client.put_object(Bucket=bucket, Key=couchbackup_file, Body=b'{"name":"couchbackup"}\n[]\n')
    newest = _backup(params, KEEP_LAST=1)
    assert newest["deleted_old_backups"] == [first["key"]]
    assert _of(s3_client, bucket, db_name) == sorted([unfinished_old, couchbackup_file, *_with_manifests(newest["key"])])


def test_keep_days_deletes_what_is_older_than_the_days(db_name, bucket, s3_client, params):
    made = _backup(params)
    old_30 = _craft_old_copy(s3_client, bucket, made["key"], db_name, 30)
    old_10 = _craft_old_copy(s3_client, bucket, made["key"], db_name, 10)
    recent_3 = _craft_old_copy(s3_client, bucket, made["key"], db_name, 3)
    verified, _ = run_main({**params, "OPERATION": "verify", "COS_KEY": old_10})
    assert verified["ok"], verified  # the crafted copies are real, verifiable backups

    newest = _backup(params, KEEP_DAYS=7)
    assert newest["deleted_old_backups"] == [old_10, old_30]
    assert _of(s3_client, bucket, db_name) == _with_manifests(recent_3, made["key"], newest["key"])

    union = _backup(params, KEEP_DAYS=7, KEEP_LAST=1)  # younger than 7 days: kept whatever KEEP_LAST says
    assert union["deleted_old_backups"] == []
    both = _backup(params, KEEP_DAYS=1, KEEP_LAST=2)
    assert both["deleted_old_backups"] == [recent_3]


def test_keep_days_keeps_the_old_base_a_young_incremental_needs(couch, db_name, bucket, s3_client, params):
    full = _backup(params)
    load_docs(couch, db_name, [{"_id": "changed"}])
    incremental = _backup(params, BACKUP_MODE="incremental")
    oldest_full = _craft_old_copy(s3_client, bucket, full["key"], db_name, 60)
    old_full = _craft_old_copy(s3_client, bucket, full["key"], db_name, 40)
    young_incr = _craft_old_copy(s3_client, bucket, incremental["key"], db_name, 3, base=old_full)

    newest = _backup(params, KEEP_DAYS=7)
    assert newest["deleted_old_backups"] == [oldest_full]
    assert old_full in _of(s3_client, bucket, db_name) and manifest_key(old_full) in _of(s3_client, bucket, db_name)

    restored, _ = run_main({**params, "OPERATION": "restore", "COS_KEY": young_incr, "CLOUDANT_DB": f"{db_name}-r",
                            "CREATE_TARGET": True})
    assert restored["ok"] and restored["chain"] == [old_full, young_incr], restored
    assert live_docs(couch, f"{db_name}-r") == live_docs(couch, db_name)


def test_an_unreadable_manifest_in_the_chain_stops_retention_instead_of_deleting_the_base(couch, db_name, bucket,
                                                                                        s3_client, params):
    chain = [_backup(params, KEEP_LAST=1)["key"]]
    for day in ("monday", "tuesday"):
        load_docs(couch, db_name, [{"_id": day}])
        chain.append(_backup(params, BACKUP_MODE="incremental", KEEP_LAST=1)["key"])
    good = s3_client.get_object(Bucket=bucket, Key=manifest_key(chain[1]))["Body"].read()
    load_docs(couch, db_name, [{"_id": "wednesday"}])
    # The next incremental starts while its chain restores (it would make a full backup otherwise) and is
    # checkpointed; then the middle manifest cannot be read (a failed GET looks the same): the chain seems broken
    # there, and the full backup at its start seemed deletable.
    stopped, _ = run_at_once({**params, "BACKUP_MODE": "incremental", "KEEP_LAST": 1})
    assert stopped["ok"] and stopped["complete"] is False, stopped
    s3_client.put_object(Bucket=bucket, Key=manifest_key(chain[1]), Body=b'{"truncated')
    log = CapturedLog()
    newest, _ = run_main({**params, "BACKUP_MODE": "incremental", "KEEP_LAST": 1}, log)
    assert newest["ok"] and newest["base"] == chain[2] and newest["deleted_old_backups"] == [], newest
    assert newest["retention_skipped"] == [chain[1]]  # in the result too, not only in the log
    chain.append(newest["key"])
    assert [e["unreadable_manifests"] for e in log.events("retention_skipped")] == [[chain[1]]]
    assert _of(s3_client, bucket, db_name) == _with_manifests(*chain)

    broken, _ = run_main({**params, "OPERATION": "restore", "COS_KEY": chain[-1], "CLOUDANT_DB": f"{db_name}-r",
                          "CREATE_TARGET": True})
    assert broken.get("kind") == "format" and "manifest could not be read" in broken["error"], broken
    own, _ = run_main({**params, "OPERATION": "restore", "COS_KEY": chain[1], "CLOUDANT_DB": f"{db_name}-r1",
                       "CREATE_TARGET": True})
    assert own.get("kind") == "format" and "its manifest could not be read" in own["error"], own

    s3_client.put_object(Bucket=bucket, Key=manifest_key(chain[1]), Body=good)  # readable again
    restored, _ = run_main({**params, "OPERATION": "restore", "COS_KEY": chain[-1], "CLOUDANT_DB": f"{db_name}-r2",
                            "CREATE_TARGET": True})
    assert restored["chain"] == chain, restored
    assert live_docs(couch, f"{db_name}-r2") == live_docs(couch, db_name)

    s3_client.delete_object(Bucket=bucket, Key=manifest_key(chain[1]))  # an incremental alone is only changes
    alone, _ = run_main({**params, "OPERATION": "restore", "COS_KEY": chain[1], "CLOUDANT_DB": f"{db_name}-r3",
                         "CREATE_TARGET": True})
    assert alone.get("kind") == "format" and "incremental backup whose manifest is missing" in alone["error"], alone


def test_a_manifest_of_an_early_format_counts_as_no_manifest_and_does_not_stop_retention(db_name, bucket, s3_client,
                                                                                           params):
    """The first versions wrote manifests without parts: such a backup is kept (incomplete for this version),
    and retention goes on with the others (an unreadable manifest would stop it)."""
    first = _backup(params)
    early = backup_key("", db_name, datetime.now(UTC) - timedelta(days=300))
    s3_client.put_object(Bucket=bucket, Key=early, Body=s3_client.get_object(Bucket=bucket, Key=first["key"])["Body"].read())
    early_manifest = {"format": "cloudant-cos-backup/manifest/1", "key": early, "database": db_name, "docs": 1,
                      "lines": 2, "bytes": 10, "sha256": "0" * 64, "started": "s", "finished": "f", "update_seq": 1}
    s3_client.put_object(Bucket=bucket, Key=manifest_key(early), Body=json.dumps(early_manifest).encode())
    log = CapturedLog()
    newest, _ = run_main({**params, "KEEP_LAST": 1}, log)
    assert newest["deleted_old_backups"] == [first["key"]] and not log.events("retention_skipped"), newest
    assert _of(s3_client, bucket, db_name) == sorted([*_with_manifests(newest["key"]), early, manifest_key(early)])
    listed, _ = run_main({**params, "OPERATION": "list"})
    entry = next(b for b in listed["backups"] if b["key"] == early)
    assert entry["complete"] is False and "not a manifest this version can use" in entry["manifest_invalid"]


def test_a_lost_full_backup_never_costs_the_last_restorable_chain(couch, db_name, bucket, s3_client, params):
    """Issue 12: F1, I1 on F1, F2, I2 on F2, I3 on I2; F2's object disappears (by hand, or a lifecycle rule)
    while I3 is being written. KEEP_LAST=1 after I3 used to keep I3 alone and delete F1, I1 and I2: every
    restorable backup, reported ok. Now the broken chain loses nothing and F1 + I1 stay, restorable."""
    f1 = _backup(params, BACKUP_MODE="full")["key"]
    load_docs(couch, db_name, [{"_id": "monday"}])
    i1 = _backup(params, BACKUP_MODE="incremental")
    assert i1["base"] == f1
    at_i1 = live_docs(couch, db_name)
    load_docs(couch, db_name, [{"_id": "tuesday"}])
    f2 = _backup(params, BACKUP_MODE="full")["key"]
    load_docs(couch, db_name, [{"_id": "wednesday"}])
    i2 = _backup(params, BACKUP_MODE="incremental")
    assert i2["base"] == f2
    load_docs(couch, db_name, [{"_id": "thursday"}])
    # I3 starts while F2 is whole (its base is chosen then), is checkpointed, and F2's object goes meanwhile.
    stopped, _ = run_at_once({**params, "BACKUP_MODE": "incremental", "KEEP_LAST": 1})
    assert stopped["ok"] and stopped["complete"] is False, stopped
    s3_client.delete_object(Bucket=bucket, Key=f2)

    i3 = _backup(params, BACKUP_MODE="incremental", KEEP_LAST=1)
    assert i3["key"] == stopped["key"] and i3["base"] == i2["key"]
    assert i3["deleted_old_backups"] == [], i3
    assert _of(s3_client, bucket, db_name) == sorted([*_with_manifests(f1, i1["key"], i2["key"], i3["key"]),
                                                      manifest_key(f2)])

    restored, _ = run_main({**params, "OPERATION": "restore", "COS_KEY": i1["key"], "CLOUDANT_DB": f"{db_name}-r",
                            "CREATE_TARGET": True})
    assert restored["ok"] and restored["chain"] == [f1, i1["key"]], restored
    assert live_docs(couch, f"{db_name}-r") == at_i1


def test_nothing_is_deleted_from_a_broken_chain(couch, db_name, bucket, s3_client, params):
    """A full backup whose object and manifest are gone (a lifecycle rule) leaves its incrementals a broken
    chain: a human may still mend it (put the full back from elsewhere), so retention keeps all of it."""
    f1 = _backup(params, BACKUP_MODE="full")["key"]
    chain = []
    for day in ("monday", "tuesday"):
        load_docs(couch, db_name, [{"_id": day}])
        chain.append(_backup(params, BACKUP_MODE="incremental")["key"])
    s3_client.delete_object(Bucket=bucket, Key=f1)
    s3_client.delete_object(Bucket=bucket, Key=manifest_key(f1))

    f2 = _backup(params, BACKUP_MODE="full", KEEP_LAST=1)
    assert f2["deleted_old_backups"] == [], f2
    assert _of(s3_client, bucket, db_name) == _with_manifests(*chain, f2["key"])
    f3 = _backup(params, BACKUP_MODE="full", KEEP_LAST=1)  # the chain stays broken; restorable f2 may go now
    assert f3["deleted_old_backups"] == [f2["key"]], f3
    assert _of(s3_client, bucket, db_name) == _with_manifests(*chain, f3["key"])
