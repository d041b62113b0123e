"""What makes a backup restorable, against real servers: one database, one catalog (keys and sources never
mixed up), a re-created database is a new one, incrementals only extend chains that restore, periodic full
backups, and a full backup that read fewer documents than the database holds is never reported ok."""

from __future__ import annotations

import json
import uuid
from typing import Any

import pytest
import requests

from backup.config import host_of
from backup.keys import manifest_key
from tests.helpers import (
    CapturedLog,
    cos_params,
    couch_params,
    incomplete_uploads,
    keys_in,
    live_docs,
    load_docs,
    object_lines,
    run_at_once,
    run_main,
)

pytestmark = pytest.mark.integration
INCREMENTAL = {"BACKUP_MODE": "incremental"}


def _auth(couch: Any) -> Any:
    return tuple(couch.admin) if couch.admin else None


def _db_url(couch: Any, db: str) -> str:
    return f"{couch.url}/{requests.utils.quote(db, safe='')}"


def _backup(params: dict[str, Any], **extra: Any) -> dict[str, Any]:
    result, _ = run_main({**params, **extra})
    assert result.get("ok") and result.get("complete"), result
    return result


def _restore(params: dict[str, Any], target: str, **extra: Any) -> dict[str, Any]:
    result, _ = run_main({**params, "OPERATION": "restore", "CLOUDANT_DB": target, "CREATE_TARGET": True, **extra})
    return result


def _ids(couch: Any, db: str) -> list[str]:
    return [d["_id"] for d in live_docs(couch, db)]


def _recreate(couch: Any, db: str, docs: list[dict[str, Any]]) -> None:
    requests.delete(_db_url(couch, db), auth=_auth(couch), timeout=30).raise_for_status()
    load_docs(couch, db, docs)


# -- 1. one database, one catalog


def test_a_slashed_database_and_a_prefixed_one_never_share_backups(couch, seaweed, bucket, s3_client):
    """`team/app` without a prefix and `app` under `team/` made the same keys: latest, retention and the
    incremental base took the other database's backups."""
    folder, name = f"t-{uuid.uuid4().hex[:10]}", f"app-{uuid.uuid4().hex[:10]}"
    slashed = {**couch_params(couch, f"{folder}/{name}"), **cos_params(seaweed, bucket)}
    prefixed = {**couch_params(couch, name), **cos_params(seaweed, bucket), "COS_PREFIX": f"{folder}/"}
    load_docs(couch, name, [{"_id": "of-app"}])
    load_docs(couch, f"{folder}/{name}", [{"_id": "of-team-app"}])
    mine = _backup(prefixed)
    theirs = _backup(slashed)  # newer
    assert "%2F" in theirs["key"] and not theirs["key"].startswith(f"{folder}/"), theirs

    restored = _restore(prefixed, f"{name}-r", COS_KEY="latest", SOURCE_DB=name)
    assert restored.get("ok") and restored["key"] == mine["key"], restored
    assert _ids(couch, f"{name}-r") == ["of-app"]
    listed, _ = run_main({**prefixed, "OPERATION": "list"})
    assert [b["key"] for b in listed["backups"]] == [mine["key"]], listed

    load_docs(couch, name, [{"_id": "more"}])
    incremental = _backup(prefixed, **INCREMENTAL, KEEP_LAST=1)
    assert incremental["kind"] == "incremental" and incremental["base"] == mine["key"], incremental
    assert set(keys_in(s3_client, bucket)) >= {theirs["key"], manifest_key(theirs["key"])}  # retention kept it


def test_a_backup_key_of_an_earlier_version_with_a_slash_still_restores(couch, seaweed, bucket, s3_client):
    folder, name = f"t-{uuid.uuid4().hex[:10]}", f"app-{uuid.uuid4().hex[:10]}"
    params = {**couch_params(couch, f"{folder}/{name}"), **cos_params(seaweed, bucket)}
    load_docs(couch, f"{folder}/{name}", [{"_id": "a"}, {"_id": "b"}])
    made = _backup(params)
    legacy = made["key"].replace("%2F", "/")  # how earlier versions spelled the key
    for key in (made["key"], manifest_key(made["key"])):
        body = s3_client.get_object(Bucket=bucket, Key=key)["Body"].read()
        if key.endswith(".manifest.json"):
            body = json.dumps({**json.loads(body), "key": legacy}).encode()
        s3_client.put_object(Bucket=bucket, Key=key.replace("%2F", "/"), Body=body)
        s3_client.delete_object(Bucket=bucket, Key=key)
    restored = _restore(params, f"{name}-r", COS_KEY="latest", SOURCE_DB=f"{folder}/{name}")
    assert restored.get("ok") and restored["key"] == legacy, restored
    assert _ids(couch, f"{name}-r") == ["a", "b"]


def test_two_servers_with_a_database_of_one_name_never_see_each_others_backups(couch, couch_open, seaweed, bucket,
                                                                               db_name, s3_client):
    ours = {**couch_params(couch, db_name), **cos_params(seaweed, bucket)}
    other = {**couch_params(couch_open, db_name), **cos_params(seaweed, bucket)}
    load_docs(couch, db_name, [{"_id": "ours"}])
    load_docs(couch_open, db_name, [{"_id": "theirs-1"}, {"_id": "theirs-2"}])

    # An unfinished backup of ours is never continued by the other server's run.
    stopped, _ = run_at_once(ours)
    assert stopped["complete"] is False, stopped
    their_full = _backup(other)
    assert their_full["key"] != stopped["key"] and their_full["docs"] == 2, their_full
    our_full = _backup(ours)
    assert our_full["key"] == stopped["key"] and our_full["docs"] == 1, our_full
    their_newer = _backup(other, KEEP_LAST=1)  # the newest backup of that name: the other server's

    assert {our_full["key"], manifest_key(our_full["key"])} <= set(keys_in(s3_client, bucket))  # not pruned
    restored = _restore(ours, f"{db_name}-r", COS_KEY="latest", SOURCE_DB=db_name)
    assert restored.get("ok") and restored["key"] == our_full["key"], restored
    assert _ids(couch, f"{db_name}-r") == ["ours"]
    load_docs(couch, db_name, [{"_id": "ours-2"}])
    incremental = _backup(ours, **INCREMENTAL)
    assert incremental["base"] == our_full["key"], incremental

    # Disaster recovery into another server: SOURCE_URL says whose backups `latest` means.
    target = f"{db_name}-dr"
    moved = _restore(other, target, COS_KEY="latest", SOURCE_DB=db_name, SOURCE_URL=couch.url)
    assert moved.get("ok") and moved["key"] == incremental["key"], moved
    assert _ids(couch_open, target) == ["ours", "ours-2"]
    assert their_newer["key"] not in moved.get("chain", [])


def test_latest_from_a_server_without_backups_names_the_servers_that_have_some(couch, couch_open, seaweed, bucket,
                                                                               db_name):
    load_docs(couch, db_name, [{"_id": "a"}])
    _backup({**couch_params(couch, db_name), **cos_params(seaweed, bucket)})
    target = f"{db_name}-elsewhere"
    refused = _restore({**couch_params(couch_open, db_name), **cos_params(seaweed, bucket)}, target,
                       COS_KEY="latest", SOURCE_DB=db_name)
    assert refused.get("kind") == "cos" and host_of(couch.url) in refused["error"], refused
    assert "SOURCE_URL" in refused["error"] and host_of(couch_open.url) in refused["error"]
    assert requests.get(_db_url(couch_open, target), timeout=30).status_code == 404  # nothing was created


# -- 2. a database deleted and re-created is a new database


def test_an_incremental_after_the_database_was_re_created_is_a_full_backup(couch, seaweed, bucket, db_name):
    params = {**couch_params(couch, db_name), **cos_params(seaweed, bucket)}
    load_docs(couch, db_name, [{"_id": f"old-{i}"} for i in range(10)])
    first = _backup(params, **INCREMENTAL)
    _recreate(couch, db_name, [{"_id": "new-1"}, {"_id": "new-2"}])
    second = _backup(params, **INCREMENTAL)
    assert second["kind"] == "full" and "base" not in second, second
    assert "re-created" in second["full_because"], second
    assert second["key"] != first["key"]
    restored = _restore(params, f"{db_name}-r", COS_KEY="latest", SOURCE_DB=db_name)
    assert restored.get("ok"), restored
    assert _ids(couch, f"{db_name}-r") == ["new-1", "new-2"]


# -- 3. an incremental only extends a chain that restores


def test_an_incremental_whose_base_chain_is_broken_is_a_full_backup(couch, seaweed, bucket, db_name, s3_client):
    params = {**couch_params(couch, db_name), **cos_params(seaweed, bucket)}
    load_docs(couch, db_name, [{"_id": "a"}])
    full = _backup(params, **INCREMENTAL)
    load_docs(couch, db_name, [{"_id": "b"}])
    incremental = _backup(params, **INCREMENTAL)
    assert incremental["kind"] == "incremental", incremental
    s3_client.delete_object(Bucket=bucket, Key=full["key"])  # a lifecycle rule, or a hand
    load_docs(couch, db_name, [{"_id": "c"}])
    again = _backup(params, **INCREMENTAL)
    assert again["kind"] == "full" and full["key"] in again["full_because"], again
    assert _restore(params, f"{db_name}-r", COS_KEY="latest", SOURCE_DB=db_name).get("ok")
    assert _ids(couch, f"{db_name}-r") == ["a", "b", "c"]


def test_an_incremental_after_a_truncated_base_is_a_full_backup(couch, seaweed, bucket, db_name, s3_client):
    params = {**couch_params(couch, db_name), **cos_params(seaweed, bucket)}
    load_docs(couch, db_name, [{"_id": "a"}, {"_id": "b"}])
    full = _backup(params, **INCREMENTAL)
    body = s3_client.get_object(Bucket=bucket, Key=full["key"])["Body"].read()
    s3_client.put_object(Bucket=bucket, Key=full["key"], Body=body[: len(body) // 2])
    again = _backup(params, **INCREMENTAL)
    assert again["kind"] == "full" and "truncated" in again["full_because"], again


def test_verify_of_an_incremental_checks_its_whole_chain(couch, seaweed, bucket, db_name, s3_client):
    params = {**couch_params(couch, db_name), **cos_params(seaweed, bucket)}
    load_docs(couch, db_name, [{"_id": "a"}])
    full = _backup(params, **INCREMENTAL)
    load_docs(couch, db_name, [{"_id": "b"}])
    incremental = _backup(params, **INCREMENTAL)
    checked, _ = run_main({**params, "OPERATION": "verify", "COS_KEY": "latest"})
    assert checked.get("ok") and checked["chain"] == [full["key"], incremental["key"]], checked

    body = bytearray(s3_client.get_object(Bucket=bucket, Key=full["key"])["Body"].read())
    body[-3] ^= 0x01  # one flipped bit in the base, same size
    s3_client.put_object(Bucket=bucket, Key=full["key"], Body=bytes(body))
    for key in ("latest", incremental["key"]):
        damaged, _ = run_main({**params, "OPERATION": "verify", "COS_KEY": key})
        assert damaged.get("kind") == "format" and full["key"] in damaged["error"], damaged
    s3_client.delete_object(Bucket=bucket, Key=full["key"])
    missing, _ = run_main({**params, "OPERATION": "verify", "COS_KEY": incremental["key"]})
    assert missing.get("kind") == "format" and full["key"] in missing["error"], missing


# -- 5. periodic full backups


def test_full_every_starts_a_new_chain_after_n_incrementals(couch, seaweed, bucket, db_name):
    params = {**couch_params(couch, db_name), **cos_params(seaweed, bucket), **INCREMENTAL, "FULL_EVERY": 2}
    kinds = []
    for i in range(5):
        load_docs(couch, db_name, [{"_id": f"doc-{i}"}])
        made = _backup(params)
        kinds.append(made["kind"])
        if i == 3:
            assert "FULL_EVERY=2" in made["full_because"], made
    assert kinds == ["full", "incremental", "incremental", "full", "incremental"]
    assert _restore(params, f"{db_name}-r", COS_KEY="latest", SOURCE_DB=db_name).get("chain")
    assert _ids(couch, f"{db_name}-r") == _ids(couch, db_name)


# -- 7. nothing missing unnoticed


def test_a_server_that_loses_rows_when_paging_is_read_whole(couch, seaweed, bucket, db_name):
    """pouchdb-server answers no rows for a page starting at an id whose first character is in U+E000-U+FFFF:
    with small pages, backups silently held fewer documents than the database and said ok."""
    docs = [{"_id": f"doc-{i:04d}"} for i in range(40)] + [{"_id": f"\ue000-{i}"} for i in range(4)]
    docs += [{"_id": "\uffef-last"}, {"_id": "\uf8ff"}]
    load_docs(couch, db_name, docs)
    params = {**couch_params(couch, db_name), **cos_params(seaweed, bucket), "PAGE_SIZE": 3}
    result, log = run_main(params)
    assert result.get("ok") and result["docs"] == len(docs), result
    assert result["doc_count"] == len(docs)
    assert result["read_whole"] is True and log.events("paged_read_lost_documents")
    assert _restore(params, f"{db_name}-r", COS_KEY=result["key"]).get("ok")
    assert _ids(couch, f"{db_name}-r") == _ids(couch, db_name)


def test_a_backup_that_cannot_read_every_document_fails_and_stores_nothing(couch, seaweed, bucket, db_name,
                                                                          s3_client):
    """Ids that sort after U+10FFFF (pouchdb-server never lists them): the count check fails the backup."""
    load_docs(couch, db_name, [{"_id": "a"}, {"_id": "\U0010ffff"}, {"_id": "\U0010ffffx"}])
    result, _ = run_main({**couch_params(couch, db_name), **cos_params(seaweed, bucket)})
    assert result.get("kind") == "cloudant", result
    assert "2 documents were read but the database holds 3" in result["error"], result
    assert keys_in(s3_client, bucket) == [] and incomplete_uploads(s3_client, bucket) == []


def test_a_database_that_changed_during_the_backup_reports_both_counts(couch, seaweed, bucket, db_name):
    load_docs(couch, db_name, [{"_id": f"d{i}"} for i in range(20)])
    current = requests.get(f"{_db_url(couch, db_name)}/d19", auth=_auth(couch), timeout=30).json()

    def delete_one(_: dict[str, Any]) -> None:
        load_docs(couch, db_name, [{"_id": "d19", "_rev": current["_rev"], "_deleted": True}])

    result, _ = run_main({**couch_params(couch, db_name), **cos_params(seaweed, bucket)},
                         CapturedLog(hooks={"backup_started": delete_one}))
    assert result.get("ok") and result["docs"] == 19 and result["doc_count"] == 20, result
    assert result["database_changed"] is True


def test_ids_that_sort_after_u10ffff_are_backed_up_in_couchdbs_raw_order(seaweed, bucket, s3_client):
    """CouchDB orders ids by their UTF-8 bytes: `end_key="\\U0010ffff"` left out ids such as "\\U0010ffffx"
    (measured on CouchDB 3.5: 2 of 4 such documents were backed up)."""
    from tests.fakes.raw_order_couch import RawOrderCouch

    ids = ["a", "\U0010ffff", "\U0010ffff\U0010ffff", "\U0010ffffx", "\U0010ffff" * 4, "\U0010ffffz"]
    couch = RawOrderCouch("raw", [{"_id": i, "n": n} for n, i in enumerate(ids)])
    try:
        for page_size in (2, 100):
            result, _ = run_main({"CLOUDANT_URL": couch.url, "CLOUDANT_DB": "raw", **cos_params(seaweed, bucket),
                                  "PAGE_SIZE": page_size})
            assert result.get("ok") and result["docs"] == len(ids), result
            lines = object_lines(s3_client, bucket, result["key"])
            assert sorted(d["_id"] for line in lines[1:] for d in line) == sorted(ids)
        assert any("end_key" not in q and q.get("start_key") == "\U0010ffff" for q in couch.requests), couch.requests
    finally:
        couch.close()


def test_a_database_that_changed_while_pages_lost_rows_reports_the_missing_documents(couch, compat_proxy, seaweed,
                                                                                      bucket, db_name):
    """With the database changing, the update_seq check cannot tell; doc_count minus the documents deleted
    meanwhile still bounds what must have been read (the compat proxy reports doc_del_count, as CouchDB does)."""
    docs = [{"_id": f"doc-{i:03d}"} for i in range(20)] + [{"_id": f"\ue000-{i}"} for i in range(4)]
    load_docs(couch, db_name, docs)

    first = next(d for d in live_docs(couch, db_name) if d["_id"] == "doc-000")

    def update_one(_: dict[str, Any]) -> None:  # the database changes, its counts do not
        load_docs(couch, db_name, [{**first, "edited": True}])

    params = {**couch_params(couch, db_name), **cos_params(seaweed, bucket), "CLOUDANT_URL": compat_proxy.url,
              "PAGE_SIZE": 3}
    result, log = run_main(params, CapturedLog(hooks={"backup_started": update_one}))
    assert result.get("ok") and result["database_changed"] is True, result
    assert result.get("docs_missing") == result["doc_count"] - result["docs"] > 0, result
    assert log.events("documents_may_be_missing")
