"""Lost answers to requests that are not idempotent: the server did the work, the answer never came (a FaultProxy
holds the response past REQUEST_TIMEOUT), and the SDK sent the request again.

* `CreateMultipartUpload`: the retry creates a second upload. The backup goes on with the second; the first, which no
  one knows about, must be aborted (else it is an orphan, billed, behind a backup that reports success).
* A restore's `PUT /db` (CREATE_TARGET): the retry gets 412 (the database exists, made by the first request). An
  empty database there is the one this run created: the restore goes on, and counts it as created by this run.
"""

from __future__ import annotations

from typing import Any

import pytest

from devstack import Fault
from tests.faults.outcomes import (
    CREATE_UPLOAD,
    assert_backup_completed,
    docs_of,
    get_object,
    timed,
    unique,
    via,
)
from tests.helpers import cos_params, couch_params, db_exists, live_docs, run_main

pytestmark = [pytest.mark.faults, pytest.mark.integration, pytest.mark.timeout(120)]


def _requests(proxy: Any, pattern: str) -> int:
    import re

    regex = re.compile(pattern)
    return sum(1 for _, method, path, _ in proxy.events if regex.search(f"{method} {path}"))


@pytest.mark.parametrize("budget", [pytest.param({}, id="one-shot"),
                                    pytest.param({"TIME_BUDGET": 60, "SAFETY_MARGIN": 5}, id="with-a-checkpoint")])
def test_a_create_upload_whose_answer_was_lost_leaves_no_second_upload_behind(couch, big_db, seaweed, bucket,
                                                                              s3_client, s3_proxy, budget):
    params = {**couch_params(couch, big_db), **cos_params(seaweed, bucket), "PART_SIZE_MB": 5, **budget}
    s3_proxy.add_rule(CREATE_UPLOAD, Fault.stall(4, where="response"))
    result, log, _ = timed({**via(s3_proxy, params, "COS_ENDPOINT"), "REQUEST_TIMEOUT": 2})
    assert _requests(s3_proxy, CREATE_UPLOAD) == 2  # the first created an upload too: its answer came too late
    assert result.get("complete") is True, result
    # the object verifies, equals the database, and no incomplete upload is left (not the first one either)
    assert_backup_completed(result, couch, big_db, s3_client, bucket, params, restore=False)
    [duplicate] = log.events("duplicate_upload_aborted")
    assert duplicate["key"] == result["key"]


@pytest.fixture
def restore_params(couch, couch_proxy, seaweed, module_bucket, small_backup) -> dict[str, Any]:
    """Restore small_backup into a new database, creating it through the Cloudant proxy."""
    params = {**couch_params(couch, unique("target")), **cos_params(seaweed, module_bucket), "OPERATION": "restore",
              "COS_KEY": small_backup["key"], "CREATE_TARGET": True, "REQUEST_TIMEOUT": 2}
    return via(couch_proxy, params, "CLOUDANT_URL")


def test_a_restore_whose_create_database_answer_was_lost_restores_into_the_database_it_created(
        couch, couch_proxy, seaweed, module_bucket, small_backup, restore_params):
    target = restore_params["CLOUDANT_DB"]
    couch_proxy.add_rule(rf"^PUT /{target}$", Fault.stall(4, where="response"))
    result, log = run_main(restore_params)
    assert _requests(couch_proxy, rf"^PUT /{target}$") == 2  # the SDK's retry met the database the first made
    assert result.get("ok") is True, result
    expected = docs_of(seaweed.client(), module_bucket, small_backup["key"])
    assert result["docs"] == len(expected) and live_docs(couch, target) == expected
    [created] = log.events("target_created")
    assert created["database"] == target


def test_a_database_a_lost_create_answer_made_counts_as_created_by_the_restore(couch, couch_proxy, s3_proxy, seaweed,
                                                                            module_bucket, small_backup,
                                                                            restore_params):
    """...so a restore that then fails before writing anything deletes it again, as it does a database it created."""
    target = restore_params["CLOUDANT_DB"]
    couch_proxy.add_rule(rf"^PUT /{target}$", Fault.stall(4, where="response"))
    s3_proxy.add_rule(get_object(module_bucket, small_backup["key"]), Fault.status(503, times=None))
    result, _, _ = timed({**via(s3_proxy, restore_params, "COS_ENDPOINT"), "MAX_RETRIES": 1})
    assert result.get("kind") == "cos" and "SlowDown" in result["error"], result
    assert _requests(couch_proxy, rf"^PUT /{target}$") == 2
    assert not db_exists(couch, target), "the database the restore made was left behind"
