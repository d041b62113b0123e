"""The checkpoint's lease is exclusive: of two invocations continuing one checkpointed backup at once, exactly one
writes. The lease is taken with a conditional write (`If-Match` on the checkpoint's ETag; a fresh backup creates its
checkpoint with `If-None-Match: *`), which SeaweedFS honours; the loser fails without touching the winner's upload,
checkpoint or tail.

The race is made certain with a FaultProxy: one invocation's lease PUT is held in the proxy until the other has
taken the lease and started (a slow PUT, as a COS 503 SlowDown retry makes one); then it is let through.
"""

from __future__ import annotations

import re
import threading
from typing import Any

import pytest

from backup.config import host_of
from backup.keys import checkpoint_key
from devstack import Fault
from tests.faults.outcomes import (
    ABORT_UPLOAD,
    COMPLETE_UPLOAD,
    UPLOAD_PART,
    assert_backup_completed,
    via,
)
from tests.helpers import CapturedLog, cos_params, couch_params, keys_in, run_at_once, run_main

pytestmark = [pytest.mark.faults, pytest.mark.integration, pytest.mark.timeout(150)]

CHECKPOINT_PUT = r"^PUT /[^?]+\.checkpoint\.[^/?]+\.json$"


def _seen(proxy: Any, pattern: str) -> list[str]:
    regex = re.compile(pattern)
    return [f"{method} {path}" for _, method, path, _ in proxy.events if regex.search(f"{method} {path}")]


@pytest.fixture
def params(couch, seaweed, bucket, big_db) -> dict[str, Any]:
    return {**couch_params(couch, big_db), **cos_params(seaweed, bucket), "PART_SIZE_MB": 5, "PAGE_SIZE": 500}


def test_two_invocations_continuing_one_backup_at_once_one_writes_and_the_loser_touches_nothing(
        couch, big_db, seaweed, bucket, s3_client, s3_proxy, params):
    stopped, _ = run_at_once(params)  # a checkpointed backup, its lease free: both invocations below continue it
    assert stopped.get("complete") is False, stopped
    cp_key = checkpoint_key("", big_db, host_of(couch.url))

    arrived, winner_started = threading.Event(), threading.Event()

    def hold(_method: str, _path: str) -> None:
        arrived.set()
        winner_started.wait(timeout=60)  # the other invocation takes the lease meanwhile

    s3_proxy.add_rule(CHECKPOINT_PUT, Fault.call(hold))
    loser_log = CapturedLog()
    loser: dict[str, Any] = {}
    thread = threading.Thread(target=lambda: loser.update(run_main(via(s3_proxy, params, "COS_ENDPOINT"), loser_log)[0]),
                              daemon=True)
    thread.start()
    try:
        assert arrived.wait(timeout=60), "the first invocation never tried to take the lease"
        winner, winner_log = run_main(params, CapturedLog(hooks={"backup_resumed": lambda _: winner_started.set()}))
    finally:
        winner_started.set()
        thread.join(timeout=120)
    assert not thread.is_alive()

    # the winner continued the checkpointed backup to the end, exactly
    assert winner.get("complete") is True and winner["key"] == stopped["key"] and winner["invocations"] == 2, winner
    assert_backup_completed(winner, couch, big_db, s3_client, bucket, params, restore=False)
    assert cp_key not in keys_in(s3_client, bucket)
    # the loser (every one of its requests went through the proxy) wrote nothing and removed nothing
    assert loser.get("kind") == "cos", loser
    assert "another invocation" in loser["error"] and "not writing the same upload twice" in loser["error"], loser
    assert not loser_log.events("backup_resumed") and not loser_log.events("part_uploaded")
    assert not loser_log.events("upload_aborted") and not loser_log.events("abort_failed")
    assert _seen(s3_proxy, UPLOAD_PART) == [] and _seen(s3_proxy, COMPLETE_UPLOAD) == []
    assert _seen(s3_proxy, ABORT_UPLOAD) == [] and _seen(s3_proxy, r"^DELETE ") == []
    assert len(_seen(s3_proxy, CHECKPOINT_PUT)) == 1  # its one attempt at the lease, refused


@pytest.mark.parametrize("resumed", [pytest.param(True, id="taking-the-lease"),
                                     pytest.param(False, id="creating-the-checkpoint")])
def test_a_lease_write_whose_answer_was_lost_is_still_ours(couch, big_db, seaweed, bucket, s3_client, s3_proxy, params,
                                                          resumed):
    """The conditional PUT lands, its answer is lost, and the SDK's retry gets 412 (the ETag moved: it was us). The
    checkpoint then holds exactly what this invocation wrote, so the lease is its own and the backup goes on."""
    if resumed:
        stopped, _ = run_at_once(params)
        assert stopped.get("complete") is False, stopped
    s3_proxy.add_rule(CHECKPOINT_PUT, Fault.stall(4, where="response"))
    args = {**via(s3_proxy, params, "COS_ENDPOINT"), "REQUEST_TIMEOUT": 2, "TIME_BUDGET": 100, "SAFETY_MARGIN": 10}
    result, log = run_main(args)
    assert len(_seen(s3_proxy, CHECKPOINT_PUT)) >= 2  # the retry
    assert result.get("complete") is True, result
    assert bool(log.events("backup_resumed")) == resumed
    assert_backup_completed(result, couch, big_db, s3_client, bucket, params, restore=False)
    assert checkpoint_key("", big_db, host_of(couch.url)) not in keys_in(s3_client, bucket)


def test_where_the_store_ignores_conditional_writes_a_loser_still_never_aborts_or_deletes_the_winners(
        couch, big_db, seaweed, bucket, s3_client, s3_proxy, params, monkeypatch):
    """The fallback: a store that ignores If-Match/If-None-Match (simulated: the headers are not sent). The held lease
    write lands after the other invocation read its own back, so both believe they hold the lease (the window
    checkpoint.py documents) and both upload parts. The checkpoint names the one whose write landed last: only it
    may complete; the other fails, never aborting the upload or deleting the checkpoint; the backup is exact."""
    monkeypatch.setattr("backup.cos._add_condition_headers", lambda **_: None, raising=False)
    stopped, _ = run_at_once(params)
    assert stopped.get("complete") is False, stopped

    arrived, early_started = threading.Event(), threading.Event()

    def hold(_method: str, _path: str) -> None:
        arrived.set()
        early_started.wait(timeout=60)

    s3_proxy.add_rule(CHECKPOINT_PUT, Fault.call(hold))
    late_log = CapturedLog()
    late: dict[str, Any] = {}
    thread = threading.Thread(target=lambda: late.update(run_main(via(s3_proxy, params, "COS_ENDPOINT"), late_log)[0]),
                              daemon=True)
    thread.start()
    try:
        assert arrived.wait(timeout=60)
        early, early_log = run_main(params, CapturedLog(hooks={"backup_resumed": lambda _: early_started.set()}))
    finally:
        early_started.set()
        thread.join(timeout=120)
    assert not thread.is_alive()

    assert early_log.events("backup_resumed") and late_log.events("backup_resumed")  # both got past the lease
    done = [r for r in (early, late) if r.get("complete") is True]
    failed = [r for r in (early, late) if "error" in r]
    assert len(done) == 1 and len(failed) == 1, (early, late)
    assert late is done[0], (early, late)  # the checkpoint named it: its write landed last
    assert failed[0]["kind"] == "cos", failed
    assert not early_log.events("upload_aborted") and not early_log.events("abort_failed")
    assert_backup_completed(done[0], couch, big_db, s3_client, bucket, params, restore=False)
    assert done[0]["key"] == stopped["key"]
    assert checkpoint_key("", big_db, host_of(couch.url)) not in keys_in(s3_client, bucket)


def test_a_store_that_refuses_conditional_writes_gets_plain_ones_and_the_backup_goes_on(couch, big_db, seaweed,
                                                                                        bucket, s3_client, s3_proxy,
                                                                                        params):
    """501 NotImplemented to the lease write (a store without conditional PUTs that says so): written again without
    the headers, with a warning naming the fallback, and the backup continues to the end."""
    stopped, _ = run_at_once(params)
    assert stopped.get("complete") is False, stopped
    s3_proxy.add_rule(CHECKPOINT_PUT, Fault.status(501, times=1))
    result, log = run_main(via(s3_proxy, params, "COS_ENDPOINT"))
    assert result.get("complete") is True and result["key"] == stopped["key"], result
    [warning] = log.events("conditional_write_unsupported")
    assert warning["level"] == "warning" and "lease" in warning["detail"]
    assert len(_seen(s3_proxy, CHECKPOINT_PUT)) == 2
    assert_backup_completed(result, couch, big_db, s3_client, bucket, params, restore=False)
