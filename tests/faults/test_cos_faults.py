"""Faults between the action and S3 (a FaultProxy in front of SeaweedFS): the multipart upload of a backup,
the manifest, and the streamed reads of restore and verify.

SeaweedFS checks SigV4 signatures, which sign the Host header: the proxy forwards Host as the client sent
it (its own host:port). Rewriting Host to the upstream's breaks every request (shown below).
"""

from __future__ import annotations

from typing import Any

import pytest
from ibm_botocore.exceptions import ClientError

from backup.keys import manifest_key
from devstack import Fault, FaultProxy
from tests.faults.outcomes import (
    ABORT_UPLOAD,
    ALL_DOCS,
    COMPLETE_UPLOAD,
    CREATE_UPLOAD,
    UPLOAD_PART,
    assert_backup_completed,
    assert_failed_cleanly,
    client_via,
    docs_of,
    get_object,
    timed,
    unique,
    via,
)
from tests.helpers import cos_params, couch_params, db_exists, incomplete_uploads, keys_in, live_docs, run_main

pytestmark = [pytest.mark.faults, pytest.mark.integration, pytest.mark.timeout(120)]

MANIFEST_PUT = r"^PUT /[^?]+\.manifest\.json$"


@pytest.fixture
def backup_params(couch, seaweed, bucket, bulky_db, s3_proxy) -> dict[str, Any]:
    """Back up bulky_db (two 5 MiB parts, gzip by default) through the S3 proxy into a fresh bucket."""
    params = {**couch_params(couch, bulky_db), **cos_params(seaweed, bucket), "PART_SIZE_MB": 5, "DOCS_PER_LINE": 300}
    return via(s3_proxy, params, "COS_ENDPOINT")


def _direct(params: dict[str, Any], seaweed) -> dict[str, Any]:
    return {**params, "COS_ENDPOINT": seaweed.endpoint}


def test_hmac_signatures_pass_the_proxy_only_with_the_host_header_kept(seaweed, bucket, s3_client):
    """SeaweedFS validates SigV4 over the Host header: a proxy must not rewrite it."""
    for preserve_host in (True, False):
        with FaultProxy(seaweed.endpoint, flavor="s3", preserve_host=preserve_host) as proxy:
            client = client_via(seaweed, proxy.url)
            if preserve_host:
                client.put_object(Bucket=bucket, Key="through-proxy", Body=b"signed")
            else:
                with pytest.raises(ClientError, match="SignatureDoesNotMatch"):
                    client.put_object(Bucket=bucket, Key="rewritten-host", Body=b"signed")
    assert keys_in(s3_client, bucket) == ["through-proxy"]


# ---------------------------------------------------------------------------------------- backup, transient


@pytest.mark.parametrize(("where", "fault", "skip"), [
    pytest.param(UPLOAD_PART, lambda: Fault.status(503, times=2), 1, id="part-2-503-SlowDown-x2"),
    pytest.param(UPLOAD_PART, lambda: Fault.status(500, times=2), 0, id="part-1-500-x2"),
    pytest.param(UPLOAD_PART, lambda: Fault.cut_request(1_000_000), 1, id="part-2-upload-cut-at-1MB"),
    pytest.param(UPLOAD_PART, lambda: Fault.stall(3), 0, id="part-1-stalled-past-REQUEST_TIMEOUT"),
    pytest.param(CREATE_UPLOAD, lambda: Fault.refuse(), 0, id="create-upload-connection-dropped"),
    pytest.param(UPLOAD_PART, lambda: Fault.stall(3, where="response"), 1, id="part-2-stored-but-answer-late"),
    pytest.param(COMPLETE_UPLOAD, lambda: Fault.status(502, times=2), 0, id="complete-502-x2"),
    # SeaweedFS (like S3) answers a repeated CompleteMultipartUpload of a completed upload with success
    pytest.param(COMPLETE_UPLOAD, lambda: Fault.stall(3, where="response"), 0, id="complete-done-but-answer-late"),
    pytest.param(COMPLETE_UPLOAD, lambda: Fault.cut_mid_body(100), 0, id="complete-done-but-answer-cut"),
    pytest.param(MANIFEST_PUT, lambda: Fault.status(503, times=2), 0, id="manifest-503-x2"),
    pytest.param(r"^HEAD ", lambda: Fault.status(500, times=2), 0, id="bucket-check-500-x2"),
])
def test_a_transient_s3_fault_still_completes_the_backup(couch, bulky_db, seaweed, bucket, s3_client, s3_proxy,
                                                         backup_params, where, fault, skip):
    s3_proxy.add_rule(where, fault(), skip=skip)
    result, _, elapsed = timed({**backup_params, "REQUEST_TIMEOUT": 2})
    assert_backup_completed(result, couch, bulky_db, s3_client, bucket, _direct(backup_params, seaweed), restore=False)
    assert result["parts"] == 2 and s3_proxy.faults >= 1 and elapsed < 45


def test_s3_429_with_retry_after_is_retried_and_the_backup_completes(couch, bulky_db, seaweed, bucket, s3_client,
                                                                     s3_proxy, backup_params):
    s3_proxy.add_rule(UPLOAD_PART, Fault.status(429, retry_after=1, times=2), skip=1)
    result, _, _ = timed(backup_params)
    assert_backup_completed(result, couch, bulky_db, s3_client, bucket, _direct(backup_params, seaweed), restore=False)


# ---------------------------------------------------------------------------------------- backup, persistent


@pytest.mark.parametrize(("where", "fault", "fragments"), [
    pytest.param(UPLOAD_PART, lambda: Fault.status(503, times=None), ("uploading part 1", "SlowDown"), id="part-503"),
    pytest.param(UPLOAD_PART, lambda: Fault.stall(30, times=None), ("uploading part 1", "Read timeout"),
                 id="part-stalled"),
    pytest.param(UPLOAD_PART, lambda: Fault.cut_request(100_000, times=None), ("uploading part 1", "Connection"),
                 id="part-upload-cut"),
    pytest.param(COMPLETE_UPLOAD, lambda: Fault.status(500, times=None), ("completing upload", "InternalError"),
                 id="complete-500"),
    pytest.param(MANIFEST_PUT, lambda: Fault.status(503, times=None), ("writing cos://", ".manifest.json", "SlowDown"),
                 id="manifest-503"),
    pytest.param(r".", lambda: Fault.refuse(times=None), ("checking bucket", "Connection"), id="s3-unreachable"),
])
def test_a_persistent_s3_fault_fails_cleanly_and_a_retry_succeeds(couch, bulky_db, seaweed, bucket, s3_client, s3_proxy,
                                                                  backup_params, where, fault, fragments):
    args = {**backup_params, "MAX_RETRIES": 0, "REQUEST_TIMEOUT": 2}
    s3_proxy.add_rule(where, fault())
    result, _, elapsed = timed(args)
    assert_failed_cleanly(result, "cos", fragments, s3_client, bucket, bulky_db, elapsed, within=40)

    s3_proxy.clear()
    retried, _, _ = timed(args)
    assert_backup_completed(retried, couch, bulky_db, s3_client, bucket, _direct(args, seaweed), restore=False)


@pytest.mark.parametrize("retries", [0, 1])
def test_max_retries_is_the_number_of_retries_of_one_request(bulky_db, bucket, s3_client, s3_proxy, backup_params,
                                                              retries):
    rule = s3_proxy.add_rule(UPLOAD_PART, Fault.status(503, times=None))
    result, _, _ = timed({**backup_params, "MAX_RETRIES": retries})
    assert result.get("kind") == "cos", result
    assert rule.hits == retries + 1


def test_an_abort_that_fails_too_is_logged_with_the_upload_id(bulky_db, seaweed, bucket, s3_client, s3_proxy,
                                                              backup_params):
    """The part fails and so does the abort: the leftover upload is named so it can be cleaned up."""
    s3_proxy.add_rule(UPLOAD_PART, Fault.status(503, times=None))
    s3_proxy.add_rule(ABORT_UPLOAD, Fault.status(503, times=None))
    result, log, _ = timed({**backup_params, "MAX_RETRIES": 0})
    assert result.get("kind") == "cos" and "uploading part 1" in result["error"], result
    [failed] = log.events("abort_failed")
    [upload] = incomplete_uploads(s3_client, bucket)
    assert failed["upload_id"] == upload["UploadId"] and "AbortIncompleteMultipartUpload" in failed["hint"]
    s3_client.abort_multipart_upload(Bucket=bucket, Key=upload["Key"], UploadId=upload["UploadId"])


NO_SUCH_UPLOAD = (b'<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>NoSuchUpload</Code>'
                  b"<Message>The specified multipart upload does not exist.</Message></Error>")


def test_a_completion_whose_answer_is_lost_is_confirmed_not_failed(couch, bulky_db, seaweed, bucket, s3_client,
                                                                   s3_proxy, backup_params):
    """The completion lands but its answer never comes; the SDK's retry gets NoSuchUpload, as S3 and COS answer
    (SeaweedFS would complete twice). The object is there and is our parts: the backup is done, with its manifest,
    not reported failed with an object left behind that has none."""
    s3_proxy.add_rule(COMPLETE_UPLOAD, Fault.stall(4, where="response"))
    s3_proxy.add_rule(COMPLETE_UPLOAD, Fault.status(404, body=NO_SUCH_UPLOAD, times=None), skip=1)
    result, log, _ = timed({**backup_params, "REQUEST_TIMEOUT": 2, "MAX_RETRIES": 2})
    assert result.get("complete") is True and log.events("completion_confirmed"), result
    assert_backup_completed(result, couch, bulky_db, s3_client, bucket, _direct(backup_params, seaweed), restore=False)


LIST_OBJECTS = r"^GET /[^/?]+\?(?=.*list-type=2)"
TAIL_PUT = r"^PUT /[^?]+\.checkpoint\.[^/?]+\.json\.tail\.\d+$"


def test_a_retention_failure_after_the_backup_keeps_the_backup_and_says_so(couch, bulky_db, seaweed, bucket, s3_client,
                                                                           s3_proxy, backup_params):
    """The object and its manifest are written when retention's listing fails: the backup is reported done
    (a retry would make a second one), with the retention error beside it."""
    s3_proxy.add_rule(LIST_OBJECTS, Fault.status(503, times=None))
    result, log, _ = timed({**backup_params, "MAX_RETRIES": 0, "KEEP_LAST": 1})
    assert result.get("complete") is True and "listing" in result["retention_error"], result
    assert "deleted_old_backups" not in result and log.events("retention_failed")
    assert_backup_completed(result, couch, bulky_db, s3_client, bucket, _direct(backup_params, seaweed), restore=False)


def test_a_tail_that_cannot_be_written_at_the_deadline_fails_cleanly(couch, small_db, seaweed, bucket, s3_client,
                                                                     couch_proxy, s3_proxy):
    """The second invocation cannot store its tail: a COS error naming it, and neither tail, the checkpoint nor
    the upload is left behind (the next run starts afresh)."""
    couch_proxy.add_rule(ALL_DOCS, Fault.slow(1_500, times=None))  # a few pages per invocation
    params = {**couch_params(couch, small_db), **cos_params(seaweed, bucket), "PAGE_SIZE": 50, "DOCS_PER_LINE": 40,
              "TIME_BUDGET": 4, "SAFETY_MARGIN": 2, "MAX_RETRIES": 0}
    params = via(couch_proxy, params, "CLOUDANT_URL")
    first, _ = run_main(params)
    assert first.get("complete") is False and any(".tail." in k for k in keys_in(s3_client, bucket)), first
    s3_proxy.add_rule(TAIL_PUT, Fault.status(503, times=None))
    second, _, _ = timed(via(s3_proxy, params, "COS_ENDPOINT"))
    assert_failed_cleanly(second, "cos", (".json.tail.2",), s3_client, bucket, small_db)


# ---------------------------------------------------------------------------------------- restore and verify


@pytest.fixture
def read_params(couch, seaweed, module_bucket, small_backup, s3_proxy) -> dict[str, Any]:
    """Restore/verify small_backup, reading it through the S3 proxy."""
    params = {**couch_params(couch, unique("target")), **cos_params(seaweed, module_bucket), "COS_KEY": small_backup["key"],
              "CREATE_TARGET": True, "REQUEST_TIMEOUT": 2}
    return via(s3_proxy, params, "COS_ENDPOINT")


def _assert_restored(couch, s3, bucket, key, result, params) -> None:
    assert result.get("ok") is True, result
    expected = docs_of(s3, bucket, key)
    assert result["docs"] == len(expected)
    assert live_docs(couch, params["CLOUDANT_DB"]) == expected


READ_FAULTS = [
    pytest.param(lambda: Fault.status(503, times=2), id="get-503-x2"),
    pytest.param(lambda: Fault.refuse(), id="get-connection-dropped"),
    pytest.param(lambda: Fault.stall(6), id="get-stalled-past-REQUEST_TIMEOUT"),
    pytest.param(lambda: Fault.slow(1_000_000), id="get-slowed-to-1MB/s"),
]
CUT_GET = pytest.param(
    lambda: Fault.cut_mid_body(200_000), id="get-cut-mid-body"
)


@pytest.mark.parametrize("fault", [*READ_FAULTS, CUT_GET])
def test_a_transient_fault_reading_the_object_still_completes_the_restore(couch, module_bucket, small_backup, s3_client,
                                                                          s3_proxy, read_params, fault):
    s3_proxy.add_rule(get_object(module_bucket, small_backup["key"]), fault())
    result, _, elapsed = timed({**read_params, "OPERATION": "restore"})
    _assert_restored(couch, s3_client, module_bucket, small_backup["key"], result, read_params)
    assert s3_proxy.faults >= 1 and elapsed < 30


@pytest.mark.parametrize("fault", [*READ_FAULTS, CUT_GET])
def test_a_transient_fault_reading_the_object_still_verifies(module_bucket, small_backup, s3_proxy, read_params, fault):
    s3_proxy.add_rule(get_object(module_bucket, small_backup["key"]), fault())
    result, _, elapsed = timed({**read_params, "OPERATION": "verify"})
    assert result.get("ok") is True, result
    assert result["sha256"] == small_backup["sha256"] and result["docs"] == small_backup["docs"]
    assert s3_proxy.faults >= 1 and elapsed < 30


def test_a_manifest_that_cannot_be_read_now_is_a_cos_error_not_a_missing_manifest(module_bucket, small_backup, s3_proxy,
                                                                                   read_params):
    s3_proxy.add_rule(get_object(module_bucket, manifest_key(small_backup["key"])), Fault.status(503, times=None))
    result, _, _ = timed({**read_params, "OPERATION": "verify", "MAX_RETRIES": 0})
    assert result.get("kind") == "cos" and "SlowDown" in result["error"], result  # not "was not completed"


def test_a_persistent_fault_reading_the_object_fails_the_restore_cleanly(couch, module_bucket, small_backup, s3_client,
                                                                         s3_proxy, read_params):
    args = {**read_params, "OPERATION": "restore", "MAX_RETRIES": 1}
    s3_proxy.add_rule(get_object(module_bucket, small_backup["key"]), Fault.status(503, times=None))
    result, _, elapsed = timed(args)
    fragments = (f"reading cos://{module_bucket}/{small_backup['key']}", "SlowDown",
                 f"'{args['CLOUDANT_DB']}' holds no documents, and is deleted again (this restore had created it)")
    assert_failed_cleanly(result, "cos", fragments, s3_client, module_bucket, args["CLOUDANT_DB"], elapsed, within=20)
    assert not db_exists(couch, args["CLOUDANT_DB"])  # nothing was written, and the empty target is gone

    s3_proxy.clear()
    retried, _, _ = timed(args)  # the target is still empty: the same invocation now succeeds
    _assert_restored(couch, s3_client, module_bucket, small_backup["key"], retried, args)
