"""Faults between the action and CouchDB (a FaultProxy in front of pouchdb-server), during backup and restore.

Transient faults (429s, a short 5xx burst, one cut or dropped connection, one stall, a slow stream) must
end *completed*; persistent ones *failed cleanly*, within a bound, and the same invocation succeeds once
the fault is gone.
"""

from __future__ import annotations

from typing import Any

import pytest

from devstack import Fault
from tests.faults.outcomes import (
    ALL_DOCS,
    BULK_DOCS,
    assert_backup_completed,
    assert_failed_cleanly,
    docs_of,
    timed,
    unique,
    via,
)
from tests.helpers import cos_params, couch_params, incomplete_uploads, keys_in, live_docs, load_docs

pytestmark = [pytest.mark.faults, pytest.mark.integration, pytest.mark.timeout(120)]

# Small pages (several requests per backup) and small batches (several `_bulk_docs` per restore).
TUNING = {"PAGE_SIZE": 50, "DOCS_PER_LINE": 40}
RESTORE_TUNING = {"RESTORE_BATCH_SIZE": 50, "RESTORE_PARALLELISM": 2}


@pytest.fixture
def backup_params(couch, seaweed, bucket, small_db, couch_proxy) -> dict[str, Any]:
    """Back up small_db through the proxy into a fresh bucket."""
    return via(couch_proxy, {**couch_params(couch, small_db), **cos_params(seaweed, bucket), **TUNING}, "CLOUDANT_URL")


def _times_of(proxy, pattern: str = "_all_docs") -> list[tuple[float, str]]:
    return [(t, what) for t, _, path, what in proxy.events if pattern in path]


# ---------------------------------------------------------------------------------------- backup, transient


def test_429s_with_retry_after_are_waited_out_and_the_backup_completes(couch, small_db, seaweed, bucket, s3_client,
                                                                       couch_proxy, backup_params):
    rule = couch_proxy.add_rule(ALL_DOCS, Fault.status(429, retry_after=1, times=2), skip=1)
    result, _, elapsed = timed(backup_params)
    assert_backup_completed(result, couch, small_db, s3_client, bucket, {**backup_params, "CLOUDANT_URL": couch.url})
    assert rule.hits == 2 and elapsed >= 0.95  # (pages are fetched concurrently: the 429s may hit two of them)


def test_a_burst_of_500_502_503_is_retried_and_the_backup_completes(couch, small_db, bucket, s3_client, couch_proxy,
                                                                     backup_params):
    for code in (500, 502, 503):
        couch_proxy.add_rule(ALL_DOCS, Fault.status(code), skip=1)  # the 2nd, 3rd and 4th `_all_docs` requests
    result, _, _ = timed(backup_params)
    assert_backup_completed(result, couch, small_db, s3_client, bucket, {**backup_params, "CLOUDANT_URL": couch.url})
    assert couch_proxy.faults == 3


@pytest.mark.parametrize("fault", [
    pytest.param(lambda: Fault.cut_mid_body(8000), id="page-cut-mid-body"),
    pytest.param(lambda: Fault.refuse(), id="connection-dropped-before-answer"),
    pytest.param(lambda: Fault.stall(8), id="page-stalled-past-REQUEST_TIMEOUT"),
    # pages of this database are ~25 KB: 20 KB/s makes the read take seconds
    pytest.param(lambda: Fault.slow(20_000, times=None), id="every-page-slowed-to-20KB/s"),
])
def test_one_network_fault_on_a_page_still_completes_the_backup(couch, small_db, bucket, s3_client, couch_proxy,
                                                                backup_params, fault):
    couch_proxy.add_rule(ALL_DOCS, fault(), skip=1)
    result, _, elapsed = timed({**backup_params, "REQUEST_TIMEOUT": 2})
    assert_backup_completed(result, couch, small_db, s3_client, bucket, {**backup_params, "CLOUDANT_URL": couch.url})
    assert couch_proxy.faults >= 1 and elapsed < 30


def test_a_bulk_get_cut_mid_body_keeps_what_arrived_and_asks_again_for_the_rest(couch, seaweed, bucket, s3_client,
                                                                                couch_proxy):
    """An incremental streams each `_bulk_get` answer: after a cut, the documents already read are kept and
    only the rest is asked for again, so every changed document is written exactly once."""
    db = unique("inc")
    load_docs(couch, db, [{"_id": f"old-{i:03d}"} for i in range(10)])
    params = via(couch_proxy, {**couch_params(couch, db), **cos_params(seaweed, bucket)}, "CLOUDANT_URL")
    full, _, _ = timed(params)  # through the proxy too: backups chain only with one server's (one URL's)
    assert full.get("ok"), full
    new_ids = [f"new-{i:03d}" for i in range(200)]
    load_docs(couch, db, [{"_id": i, "pad": "p" * 2000} for i in new_ids])  # one ~420 KB `_bulk_get` answer
    rule = couch_proxy.add_rule(r"^POST /[^/]+/_bulk_get", Fault.cut_mid_body(100_000))
    result, _, _ = timed({**params, "BACKUP_MODE": "incremental"})
    assert result.get("ok") and result["kind"] == "incremental" and result["docs"] == 200, result
    assert rule.hits == 1
    bulk_gets = [what for _, _, path, what in couch_proxy.events if "/_bulk_get" in path]
    assert len(bulk_gets) == 2 and bulk_gets[0].startswith("cut"), bulk_gets
    written = [d["_id"] for d in docs_of(s3_client, bucket, result["key"])]
    assert len(written) == 200 and sorted(written) == new_ids  # in feed order, each once


def test_a_bulk_get_answering_fewer_revisions_than_asked_fails_the_incremental(couch, seaweed, bucket, s3_client,
                                                                                couch_proxy):
    """A whole but short `_bulk_get` answer would skip changes silently: the incremental fails instead."""
    db = unique("inc")
    load_docs(couch, db, [{"_id": f"old-{i:03d}"} for i in range(10)])
    params = via(couch_proxy, {**couch_params(couch, db), **cos_params(seaweed, bucket)}, "CLOUDANT_URL")
    full, _, _ = timed(params)  # through the proxy too: backups chain only with one server's (one URL's)
    assert full.get("ok"), full
    before = sorted(keys_in(s3_client, bucket))
    load_docs(couch, db, [{"_id": f"new-{i:03d}"} for i in range(20)])
    couch_proxy.add_rule(r"^POST /[^/]+/_bulk_get", Fault.status(200, body=b'{"results":[]}'))
    result, _, _ = timed({**params, "BACKUP_MODE": "incremental"})
    assert result.get("kind") == "cloudant" and "answered 0 of the 20 revisions" in result["error"], result
    assert sorted(keys_in(s3_client, bucket)) == before and incomplete_uploads(s3_client, bucket) == []


# ---------------------------------------------------------------------------------------- backup, persistent

PERSISTENT = [
    pytest.param(lambda: Fault.status(503, times=None), ("still failing after all retries", "503"), id="503-forever"),
    pytest.param(lambda: Fault.status(429, retry_after=1, times=None), ("429",), id="429-forever"),
    pytest.param(lambda: Fault.stall(30, times=None), ("connection failed", "timed out"), id="stall-forever"),
    # cut after the first byte: no row ever arrives whole, so no reader can make progress
    pytest.param(lambda: Fault.cut_mid_body(1, times=None), ("connection failed", "IncompleteRead"),
                 id="cut-forever"),
    pytest.param(lambda: Fault.refuse(times=None), ("connection failed", "Connection aborted"), id="refused-forever"),
]


@pytest.mark.parametrize(("fault", "fragments"), PERSISTENT)
def test_a_persistent_fault_mid_backup_fails_cleanly_and_a_retry_succeeds(couch, small_db, bucket, s3_client,
                                                                          couch_proxy, backup_params, fault, fragments):
    args = {**backup_params, "MAX_RETRIES": 1, "REQUEST_TIMEOUT": 2}
    couch_proxy.add_rule(ALL_DOCS, fault(), skip=1)  # the first page is read and queued, then the source fails
    result, log, elapsed = timed(args)
    # "reading documents of 'db'" or "reading document ids of 'db'": whichever `_all_docs` request met it
    assert_failed_cleanly(result, "cloudant", ("reading document", f" of '{small_db}' at ", *fragments), s3_client,
                          bucket, small_db, elapsed, within=30)
    assert log.events("upload_aborted")

    couch_proxy.clear()
    retried, _, _ = timed(args)
    assert_backup_completed(retried, couch, small_db, s3_client, bucket, {**args, "CLOUDANT_URL": couch.url})


def test_an_unreachable_couchdb_fails_before_any_upload_starts(small_db, bucket, s3_client, couch_proxy, backup_params):
    couch_proxy.add_rule(None, Fault.refuse(times=None))
    result, log, elapsed = timed({**backup_params, "MAX_RETRIES": 1})
    assert_failed_cleanly(result, "cloudant", (f"reading database '{small_db}'", "connection failed"), s3_client, bucket,
                          small_db, elapsed, within=15)
    assert not log.events("backup_started")


# ---------------------------------------------------------------------------------------- restore


@pytest.fixture
def restore_params(couch, seaweed, module_bucket, small_backup, couch_proxy) -> dict[str, Any]:
    """Restore small_backup through the proxy into a new target."""
    params = {**couch_params(couch, unique("target")), **cos_params(seaweed, module_bucket), **RESTORE_TUNING,
              "OPERATION": "restore", "COS_KEY": small_backup["key"], "CREATE_TARGET": True}
    return via(couch_proxy, params, "CLOUDANT_URL")


def _assert_restored(couch, s3, bucket, key, result, params) -> None:
    assert result.get("ok") is True, result
    expected = docs_of(s3, bucket, key)
    assert result["docs"] == len(expected)
    assert live_docs(couch, params["CLOUDANT_DB"]) == expected


@pytest.mark.parametrize("fault", [
    pytest.param(lambda: Fault.status(503, times=2), id="503-burst"),
    pytest.param(lambda: Fault.status(429, retry_after=1, times=2), id="429-retry-after"),
    pytest.param(lambda: Fault.stall(5, where="response"), id="response-stalled-after-the-write"),
    pytest.param(lambda: Fault.cut_mid_body(1), id="response-cut-after-the-write"),
    pytest.param(lambda: Fault.refuse(), id="connection-dropped-before-the-write"),
])
def test_a_transient_fault_on_bulk_docs_still_completes_the_restore(couch, module_bucket, small_backup, couch_proxy,
                                                                    s3_client, restore_params, fault):
    couch_proxy.add_rule(BULK_DOCS, fault(), skip=2)
    result, _, elapsed = timed({**restore_params, "REQUEST_TIMEOUT": 2})
    # The writes whose answer was lost are sent again: new_edits=false makes that harmless.
    _assert_restored(couch, s3_client, module_bucket, small_backup["key"], result, restore_params)
    assert couch_proxy.faults >= 1 and elapsed < 30


def test_429_retry_after_on_a_write_is_honoured_before_the_same_batch_is_sent_again(couch, module_bucket, small_backup,
                                                                                     couch_proxy, s3_client,
                                                                                     restore_params):
    couch_proxy.add_rule(BULK_DOCS, Fault.status(429, retry_after=1, times=2), skip=2)
    result, _, _ = timed({**restore_params, "RESTORE_PARALLELISM": 1})
    _assert_restored(couch, s3_client, module_bucket, small_backup["key"], result, restore_params)
    writes = _times_of(couch_proxy, "_bulk_docs")
    assert [what for _, what in writes[:5]] == ["pass", "pass", "status(429)", "status(429)", "pass"]
    assert writes[3][0] - writes[2][0] >= 0.95 and writes[4][0] - writes[3][0] >= 0.95  # Retry-After: 1, twice


def test_a_persistent_fault_mid_restore_fails_cleanly_and_says_partial(couch, module_bucket, small_backup, couch_proxy,
                                                                       s3_client, restore_params):
    args = {**restore_params, "MAX_RETRIES": 1, "RESTORE_PARALLELISM": 1}
    couch_proxy.add_rule(BULK_DOCS, Fault.status(500, times=None), skip=2)  # two batches land, then every write fails
    result, _, elapsed = timed(args)
    target = args["CLOUDANT_DB"]
    assert_failed_cleanly(result, "cloudant", ("restoring batch 3", "now holds 100 documents", "delete it before restoring again"),
                          s3_client, module_bucket, target, elapsed, within=20)
    assert len(live_docs(couch, target)) == 100  # what the error warns about: a partial restore

    couch_proxy.clear()
    again, _, _ = timed(args)  # the same invocation refuses the partial target instead of mixing into it
    assert again.get("kind") == "target_not_empty", again
    _delete_db(couch, target)  # what the first error told the user to do
    retried, _, _ = timed(args)
    _assert_restored(couch, s3_client, module_bucket, small_backup["key"], retried, args)


def _delete_db(couch, db: str) -> None:
    couch.delete_db(db)
    assert db not in couch.http.get(f"{couch.url}/_all_dbs", timeout=30).json()


def test_the_proxy_alone_is_transparent_to_backup_and_restore(couch, small_db, module_bucket, small_backup, s3_client,
                                                              bucket, couch_proxy, backup_params, restore_params):
    """Control: without rules the proxy changes nothing (gzip bodies, keep-alive, Basic auth)."""
    backed_up, _, _ = timed(backup_params)
    assert_backup_completed(backed_up, couch, small_db, s3_client, bucket, {**backup_params, "CLOUDANT_URL": couch.url},
                            restore=False)
    result, _, _ = timed(restore_params)
    assert couch_proxy.faults == 0 and couch_proxy.requests > 10
    _assert_restored(couch, s3_client, module_bucket, small_backup["key"], result, restore_params)


@pytest.mark.parametrize("retries", [0, 2])
def test_max_retries_is_the_number_of_retries_of_one_request(small_db, bucket, s3_client, couch_proxy, backup_params,
                                                              retries):
    rule = couch_proxy.add_rule(ALL_DOCS, Fault.status(503, times=None))
    result, _, _ = timed({**backup_params, "MAX_RETRIES": retries})
    assert result.get("kind") == "cloudant", result
    assert rule.hits == retries + 1
