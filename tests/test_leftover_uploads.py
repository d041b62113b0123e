"""A run killed with SIGKILL leaves an incomplete multipart upload (billed until aborted). The next backup of that
database aborts it, and says so in `aborted_uploads`, while every upload that a checkpoint refers to (its own, or
another server's for a database of the same name), another database's, or one under another prefix stays.

An upload counts as a leftover only once it was started more than an hour ago (and no part came within the hour);
the test lowers that age to nothing (backup.leftovers.MIN_AGE) instead of waiting an hour.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from backup.config import host_of
from backup.keys import backup_key, checkpoint_key
from devstack import Fault, FaultProxy
from tests.helpers import (
    OUTPUTS,
    cos_params,
    couch_params,
    incomplete_uploads,
    load_docs,
    run_at_once,
    run_main,
    sample_docs,
)

pytestmark = [pytest.mark.integration, pytest.mark.timeout(180)]
ROOT = Path(__file__).resolve().parents[1]


def _no_minimum_age(monkeypatch: pytest.MonkeyPatch) -> None:
    """From now on every upload is old enough to be a leftover (the product waits an hour)."""
    try:
        import backup.leftovers as leftovers
    except ImportError:  # a version without leftover cleaning: the test shows what it leaves
        return
    monkeypatch.setattr(leftovers, "MIN_AGE", timedelta(0))


def _kill_mid_backup(params: dict[str, Any], couch: Any, s3: Any, bucket: str) -> str:
    """A CLI backup whose `_all_docs` reads hang, SIGKILLed once its upload exists: returns the upload's key."""
    with FaultProxy(couch.url, upstream_timeout=60) as proxy:
        proxy.add_rule(r"^POST /[^/]+/_all_docs", Fault.stall(60, times=None))
        env = {k: v for k, v in os.environ.items() if not k.startswith("__OW_")}
        env.update({k: str(v) for k, v in {**params, "CLOUDANT_URL": proxy.url}.items()})
        proc = subprocess.Popen([sys.executable, "-m", "backup", "backup"], env=env, cwd=ROOT,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        try:
            until = time.monotonic() + 60
            while not incomplete_uploads(s3, bucket):
                assert proc.poll() is None and time.monotonic() < until, "the backup never started its upload"
                time.sleep(0.1)
            proc.send_signal(signal.SIGKILL)
            out, err = proc.communicate(timeout=30)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.communicate()
        OUTPUTS.extend([out, err])
    [upload] = incomplete_uploads(s3, bucket)
    return upload["Key"]


def test_the_next_backup_aborts_a_killed_runs_upload_and_nothing_a_checkpoint_or_another_database_owns(
        couch, seaweed, bucket, s3_client, db_name, monkeypatch):
    load_docs(couch, db_name, sample_docs(filler=300, filler_bytes=300))
    params = {**couch_params(couch, db_name), **cos_params(seaweed, bucket), "PAGE_SIZE": 100}
    killed_key = _kill_mid_backup(params, couch, s3_client, bucket)

    stopped, _ = run_at_once(params)  # this server's own checkpointed backup, continued below
    assert stopped.get("complete") is False, stopped
    mine = checkpoint_key("", db_name, host_of(couch.url))
    own_upload = json.loads(s3_client.get_object(Bucket=bucket, Key=mine)["Body"].read())["upload_id"]

    def upload_at(key: str) -> str:
        return s3_client.create_multipart_upload(Bucket=bucket, Key=key)["UploadId"]

    old = datetime.now(UTC) - timedelta(days=1)
    # another server's backup of a database of the same name, checkpointed: its next invocation continues it
    theirs = backup_key("", db_name, old)
    their_upload = upload_at(theirs)
    their_checkpoint = {**json.loads(s3_client.get_object(Bucket=bucket, Key=mine)["Body"].read()),
                        "key": theirs, "upload_id": their_upload, "host": "other.example.com:5984"}
    s3_client.put_object(Bucket=bucket, Key=checkpoint_key("", db_name, "other.example.com:5984"),
                         Body=json.dumps(their_checkpoint).encode())
    # a database whose name starts with this one's and an underscore, and this database under another prefix
    other_db = upload_at(backup_key("", f"{db_name}_x", old))
    other_prefix = upload_at(backup_key("nightly/", db_name, old))

    _no_minimum_age(monkeypatch)
    result, log = run_main(params)
    assert result.get("complete") is True and result["key"] == stopped["key"], result
    assert result.get("aborted_uploads") == [killed_key], result
    remaining = {u["UploadId"] for u in incomplete_uploads(s3_client, bucket)}
    assert remaining == {their_upload, other_db, other_prefix}
    assert own_upload not in remaining  # completed, not aborted: it is the backup's object now
    assert [e["key"] for e in log.events("upload_aborted")] == [killed_key]
    assert killed_key != stopped["key"]
