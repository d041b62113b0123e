"""No hang: a backup facing a source or a sink too slow to finish stops before its deadline (TIME_BUDGET here,
`__OW_DEADLINE` on OpenWhisk), hands over a checkpoint, and the next invocation completes the same backup.
"""

from __future__ import annotations

import json
import time
from typing import Any

import pytest
from pyrage import x25519

from backup import cos
from backup.config import MIB, host_of
from backup.deadline import Deadline
from backup.keys import checkpoint_key, manifest_key
from devstack import Fault
from tests.faults.outcomes import ALL_DOCS, UPLOAD_PART, assert_backup_completed, client_via, timed, unique, via
from tests.helpers import (
    CapturedLog,
    cos_params,
    couch_params,
    incomplete_uploads,
    incompressible_docs,
    keys_in,
    live_docs,
    load_docs,
    object_lines,
    run_main,
)

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


@pytest.mark.parametrize("stall", [
    pytest.param(0.5, id="part-lands-during-the-checkpoint-wait"),
    pytest.param(3.0, id="part-given-up-lands-after-the-next-invocation-sent-its-own"),
])
def test_a_last_part_sent_as_the_deadline_comes_goes_back_into_the_tail(seaweed, bucket, s3_client, s3_proxy, stall):
    """complete() sends a short last part and the deadline comes while it is in flight. It must not be kept
    as a part: the next invocation may read more after it, and a part under 5 MiB followed by another fails
    the whole upload (EntityTooSmall). Its number stays used: when the request was given up and lands later
    (a warm container keeps its thread), it must not replace the part the next invocation sent: on S3 and COS
    the completion would then fail on the ETag. SeaweedFS keeps every upload of a part number and completes by
    ETag anyway, so the numbering itself is what this test checks."""
    now = [0.0]
    deadline = Deadline(100.0, 4.0, lambda: now[0])  # stop reading at 96
    s3_proxy.add_rule(UPLOAD_PART, Fault.stall(stall))
    first_lines, more = b'{"first": "lines"}\n', b"[" + b"x" * (6 * MIB) + b"]\n"
    with cos.MultipartUpload(client_via(seaweed, s3_proxy.url), bucket, "db.jsonl", 5 * MIB, CapturedLog(),
                             deadline=deadline) as first:
        first.write(first_lines, mark="id-1", docs=1)
        now[0] = 96.5  # 3.5 s left: the checkpoint waits up to 1.5 s for a part in flight
        with pytest.raises(cos.PartStalled):
            first.complete()
        tail = first.take_buffer()
    assert tail == first_lines and first.parts == [] and (first.docs, first.lines, first.mark) == (1, 1, "id-1")
    assert first.next_part == 2

    # The next invocation: the tail, then what it reads after it; one part of 6 MiB, not 19 B + 6 MiB.
    with cos.MultipartUpload(s3_client, bucket, "db.jsonl", 5 * MIB, CapturedLog(), upload_id=first.upload_id,
                             parts=first.parts, next_part=first.next_part) as second:
        second.write(tail, mark="id-1", docs=1)
        second.write(more, mark="id-2", docs=1)
        _wait_for_part(s3_client, bucket, "db.jsonl", first.upload_id, 1, len(first_lines))  # the first one's, landed
        second.complete()
    assert [p["PartNumber"] for p in second.parts] == [2]
    assert s3_client.get_object(Bucket=bucket, Key="db.jsonl")["Body"].read() == first_lines + more
    assert incomplete_uploads(s3_client, bucket) == []


def test_a_part_stalled_at_the_deadline_goes_back_into_the_tail_with_the_lines_after_it(seaweed, bucket, s3_client,
                                                                                          s3_proxy):
    """A full part is in flight when the deadline comes and does not land in time. Its bytes go into the tail,
    before the lines written after it, and the totals stay at the last line written: a compressed or encrypted
    stream cannot be re-read from the end of the last part that landed (that is the middle of a gzip member or an
    age stream), so no line may be given up to be read again. The part's number stays used."""
    now = [0.0]
    deadline = Deadline(100.0, 4.0, lambda: now[0])
    s3_proxy.add_rule(UPLOAD_PART, Fault.stall(3.0))
    big, small = b"[" + b"x" * (6 * MIB) + b"]\n", b'["after"]\n'
    with cos.MultipartUpload(client_via(seaweed, s3_proxy.url), bucket, "stalled.jsonl", 5 * MIB, CapturedLog(),
                             deadline=deadline) as first:
        first.write(big, mark="id-1", docs=1)  # a whole part: sent, and stalled
        first.write(small, mark="id-2", docs=1)
        now[0] = 96.5
        tail = first.take_buffer()
    assert tail == big + small and first.parts == [] and (first.docs, first.lines, first.mark) == (2, 2, "id-2")
    assert first.next_part == 2

    with cos.MultipartUpload(s3_client, bucket, "stalled.jsonl", 5 * MIB, CapturedLog(), upload_id=first.upload_id,
                             parts=first.parts, next_part=first.next_part) as second:
        second.write(tail, mark="id-2", docs=2, lines=2)
        _wait_for_part(s3_client, bucket, "stalled.jsonl", first.upload_id, 1, len(big))  # the given-up one, landed
        second.complete()
    assert [p["PartNumber"] for p in second.parts] == [2]
    assert s3_client.get_object(Bucket=bucket, Key="stalled.jsonl")["Body"].read() == big + small
    assert incomplete_uploads(s3_client, bucket) == []


def _wait_for_part(s3: Any, bucket: str, key: str, upload_id: str, number: int, size: int, timeout: float = 20) -> None:
    give_up = time.monotonic() + timeout
    while (number, size) not in [(p["PartNumber"], p["Size"])
                                 for p in s3.list_parts(Bucket=bucket, Key=key, UploadId=upload_id).get("Parts", [])]:
        assert time.monotonic() < give_up, f"part {number} of {size} bytes never landed"
        time.sleep(0.1)


def test_a_failure_while_a_part_is_stalled_returns_before_the_deadline_and_leaves_no_upload(couch, big_db, seaweed,
                                                                                            bucket, s3_client,
                                                                                            couch_proxy, s3_proxy):
    """Part 1 is stalled when the source fails: the abort waits for it only until the deadline is near, then
    aborts; when the part lands later, the upload is aborted again (no billed leftover)."""
    stall = 10.0
    s3_proxy.add_rule(UPLOAD_PART, Fault.stall(stall))
    couch_proxy.add_rule(ALL_DOCS, Fault.status(500, times=None), skip=6)  # pages 1-6 (~3,000 docs, part 1) pass
    params = {**couch_params(couch, big_db), **cos_params(seaweed, bucket), "PART_SIZE_MB": 5, "PAGE_SIZE": 500,
              "MAX_RETRIES": 0, "TIME_BUDGET": 6, "SAFETY_MARGIN": 2}
    params = via(s3_proxy, via(couch_proxy, params, "CLOUDANT_URL"), "COS_ENDPOINT")
    started = time.monotonic()
    result, _, elapsed = timed(params)
    assert result.get("kind") == "cloudant" and elapsed < 6, (elapsed, result)
    time.sleep(max(0.0, started + stall + 3 - time.monotonic()))  # the stalled part has landed by now
    assert incomplete_uploads(s3_client, bucket) == []
    assert [k for k in keys_in(s3_client, bucket) if k.startswith(big_db)] == []


@pytest.fixture(scope="module")
def three_part_db(couch: Any) -> str:
    """~16 MB of documents that hardly compress: three parts of 5 MiB with gzip (and with zstd)."""
    name = unique("three")
    load_docs(couch, name, incompressible_docs(filler=8000, filler_bytes=2000))
    return name


@pytest.mark.parametrize("stages", ["gzip", "zstd+age"])
def test_a_compressed_backup_whose_part_stalls_at_the_deadline_continues_into_a_whole_object(
        couch, three_part_db, seaweed, bucket, s3_client, s3_proxy, stages):
    """Part 1 lands, part 2 stalls past the deadline while more lines are written: the checkpoint keeps part 2's
    bytes in its tail. Going on from the end of part 1 instead (reading its lines again) would append a new gzip
    member (a new age stream) to one cut in the middle: an object that looks complete and does not decode."""
    identity = x25519.Identity.generate()
    codec, _, age = stages.partition("+")
    params: dict[str, Any] = {**couch_params(couch, three_part_db), **cos_params(seaweed, bucket), "COMPRESSION": codec,
                              **({"ENCRYPT_TO": str(identity.to_public())} if age else {})}
    s3_proxy.add_rule(UPLOAD_PART, Fault.stall(8), skip=1)
    first, _, _ = timed({**via(s3_proxy, params, "COS_ENDPOINT"), "TIME_BUDGET": 5, "SAFETY_MARGIN": 2,
                         "REQUEST_TIMEOUT": 30, "MAX_RETRIES": 0})
    assert first.get("ok") is True and first["complete"] is False and first["parts"] == 1, first
    checkpoint = json.loads(s3_client.get_object(Bucket=bucket, Key=checkpoint_key("", three_part_db,
                                                                                    host_of(couch.url)))["Body"].read())
    s3_proxy.clear()

    reading = {**params, "AGE_IDENTITY": str(identity)} if age else params
    for _ in range(5):
        final, _ = run_main(params)
        if final.get("complete"):
            break
    assert final.get("ok") is True and final["complete"] is True and final["invocations"] >= 2, final
    manifest = json.loads(s3_client.get_object(Bucket=bucket, Key=manifest_key(final["key"]))["Body"].read())
    # One segment when the first invocation had read every line (all of them in its tail), two when it had not.
    assert manifest["invocations"] == final["invocations"] and 1 <= len(manifest["segments"]) <= 2, manifest
    verified, _ = run_main({**reading, "OPERATION": "verify", "COS_KEY": final["key"]})
    assert verified.get("ok") is True and verified["content_checked"] is True, verified
    if not age:
        assert [d for line in object_lines(s3_client, bucket, final["key"])[1:] for d in line] == \
            live_docs(couch, three_part_db)
    target = f"{three_part_db}-{codec}-restored"
    restored, _ = run_main({**reading, "OPERATION": "restore", "COS_KEY": final["key"], "CLOUDANT_DB": target,
                            "CREATE_TARGET": True})
    assert restored.get("ok") is True and live_docs(couch, target) == live_docs(couch, three_part_db), restored
    assert incomplete_uploads(s3_client, bucket) == []
    assert checkpoint["next_part"] == 3 and (checkpoint["tail"] or {}).get("size", 0) > 5 * MIB, checkpoint  # part 2's
