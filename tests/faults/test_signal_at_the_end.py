"""A signal that comes after the upload is complete, while the finished backup drops its checkpoint (a clean-up
that holds signals until it ends), must not leave a completed object without its manifest: that object would
count as incomplete forever, and no clean-up (leftover uploads are multipart uploads) would ever remove it."""

from __future__ import annotations

import os
import signal
from typing import Any

import pytest

from devstack import Fault
from tests.faults.outcomes import via
from tests.helpers import cos_params, couch_params, incomplete_uploads, is_backup_object, keys_in, run_main

pytestmark = [pytest.mark.faults, pytest.mark.integration]


def test_a_signal_while_the_finished_backup_drops_its_checkpoint_leaves_no_object_without_its_manifest(
        couch, seaweed, bucket, s3_client, s3_proxy, small_db):
    def terminate(_method: str, _path: str) -> None:
        os.kill(os.getpid(), signal.SIGTERM)  # handled in the main thread, where main() runs here

    # TIME_BUDGET: a run with a deadline keeps a checkpoint from its start, deleted once the upload is complete.
    s3_proxy.add_rule(r"^DELETE /[^?]+\.checkpoint\.[^/?]+\.json$", Fault.call(terminate))
    params: dict[str, Any] = {**couch_params(couch, small_db), **cos_params(seaweed, bucket), "TIME_BUDGET": 3600}
    result, _ = run_main(via(s3_proxy, params, "COS_ENDPOINT"))
    assert result.get("kind") == "interrupted", result
    assert [k for k in keys_in(s3_client, bucket) if is_backup_object(k)] == []  # no object without manifest
    assert incomplete_uploads(s3_client, bucket) == []
