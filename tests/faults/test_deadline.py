"""No hang: a backup facing a source or a sink too slow to finish stops before its deadline (TIME_BUDGET here,
`__OW_DEADLINE` on OpenWhisk), hands over a checkpoint, and the next invocation completes the same backup.
"""

from __future__ import annotations

from typing import Any

import pytest

from devstack import Fault
from tests.faults.outcomes import ALL_DOCS, UPLOAD_PART, assert_backup_completed, timed, via
from tests.helpers import cos_params, couch_params, incomplete_uploads

pytestmark = [pytest.mark.faults, pytest.mark.integration, pytest.mark.timeout(120)]


def test_a_slow_source_stops_before_the_deadline_and_the_next_invocation_completes(couch, small_db, seaweed, bucket,
                                                                                   s3_client, couch_proxy):
    params = {**couch_params(couch, small_db), **cos_params(seaweed, bucket), "PAGE_SIZE": 50, "DOCS_PER_LINE": 40}
    couch_proxy.add_rule(ALL_DOCS, Fault.slow(1_500, times=None))  # gzip pages, ~30 KB in all: ~20 s of reading
    first, _, elapsed = timed({**via(couch_proxy, params, "CLOUDANT_URL"), "TIME_BUDGET": 8, "SAFETY_MARGIN": 3})
    assert first.get("ok") is True and first["complete"] is False, first
    assert elapsed < 8, f"returned after {elapsed:.1f}s, past its 8 s deadline"
    assert len(incomplete_uploads(s3_client, bucket)) == 1  # kept open on purpose, for the next invocation

    couch_proxy.clear()
    second, _, _ = timed({**via(couch_proxy, params, "CLOUDANT_URL"), "TIME_BUDGET": 60})
    assert second.get("complete") is True and second["key"] == first["key"] and second["invocations"] == 2, second
    assert_backup_completed(second, couch, small_db, s3_client, bucket, params)


def test_a_stalled_upload_does_not_hold_the_action_past_its_deadline(couch, big_db, seaweed, bucket, s3_client,
                                                                     s3_proxy):
    params: dict[str, Any] = {**couch_params(couch, big_db), **cos_params(seaweed, bucket), "PART_SIZE_MB": 5,
                              "REQUEST_TIMEOUT": 3, "MAX_RETRIES": 0, "TIME_BUDGET": 3, "SAFETY_MARGIN": 1}
    s3_proxy.add_rule(UPLOAD_PART, Fault.stall(30, times=None))
    result, _, elapsed = timed(via(s3_proxy, params, "COS_ENDPOINT"))
    assert elapsed < 3, f"returned after {elapsed:.1f}s, past its 3 s deadline: {result}"
