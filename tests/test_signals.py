"""SIGTERM (what `timeout`, systemd, `docker stop`, Kubernetes and Code Engine send before they kill) and SIGINT
(Ctrl-C) stop a backup exactly like an error: the multipart upload is aborted, the checkpoint the run owns is
deleted, and the CLI (or the Code Engine job) prints one JSON result line and exits 128 + the signal's number.

Each test starts `python -m backup backup` (or `python -m backup.job`) as a subprocess on a database read through a
fault proxy that holds one `_all_docs` page for a long time, so the run is certainly still going when the signal
comes; the signal is sent once the upload, a part of it and the checkpoint are in the bucket (states, not sleeps).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from backup.config import host_of
from backup.keys import checkpoint_key
from devstack import Fault, FaultProxy
from tests.helpers import OUTPUTS, cos_params, couch_params, incomplete_uploads, incompressible_docs, keys_in, load_docs

pytestmark = [pytest.mark.integration, pytest.mark.timeout(180)]
ROOT = Path(__file__).resolve().parents[1]
ALL_DOCS = r"^POST /[^/]+/_all_docs"
# 6005 docs of ~2 KB (~12 MB) in pages of 100, their pads hardly compressible: the first 5 MiB part (of gzip, the
# default) is cut after ~35 pages; page 50 is held.
FILLER = 6000
HELD_PAGE = 50


@pytest.fixture(scope="module")
def signal_db(couch: Any) -> str:
    name = f"sig-{os.urandom(6).hex()}"
    load_docs(couch, name, incompressible_docs(filler=FILLER, filler_bytes=2000))
    return name


@pytest.fixture
def held_couch(couch: Any) -> Iterator[FaultProxy]:
    """pouchdb-server behind a proxy that holds the HELD_PAGE-th `_all_docs` request for 90 s."""
    with FaultProxy(couch.url, upstream_timeout=120) as proxy:
        proxy.add_rule(ALL_DOCS, Fault.stall(90), skip=HELD_PAGE - 1)
        yield proxy


def _env(params: dict[str, Any]) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("__OW_")}
    env.update({k: str(v) for k, v in params.items()})
    return env


def _wait_for(what: str, ready: Callable[[], bool], proc: subprocess.Popen[str], timeout: float = 60) -> None:
    until = time.monotonic() + timeout
    while not ready():
        assert proc.poll() is None, f"the backup ended before {what}"
        assert time.monotonic() < until, f"no {what} after {timeout} s"
        time.sleep(0.1)


def _interrupt_mid_backup(command: list[str], params: dict[str, Any], s3: Any, bucket: str, cp_key: str,
                          signum: int) -> tuple[int, str, str]:
    """Start the backup, wait until its upload has a part and its checkpoint is stored, send `signum`; returns
    (exit code, stdout, stderr)."""
    proc = subprocess.Popen(command, env=_env(params), cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)
    try:
        def a_part_is_uploaded() -> bool:
            uploads = incomplete_uploads(s3, bucket)
            return len(uploads) == 1 and bool(s3.list_parts(Bucket=bucket, Key=uploads[0]["Key"],
                                                            UploadId=uploads[0]["UploadId"]).get("Parts"))

        _wait_for("a part of the upload", a_part_is_uploaded, proc)
        _wait_for("the checkpoint", lambda: cp_key in keys_in(s3, bucket), proc)
        proc.send_signal(signum)
        out, err = proc.communicate(timeout=90)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    OUTPUTS.extend([out, err])
    return proc.returncode, out, err


def _params(couch: Any, held_couch: FaultProxy, seaweed: Any, bucket: str, db: str) -> dict[str, Any]:
    # A deadline far away: the checkpoint is stored at once (the run owns it) and never reached.
    return {**couch_params(couch, db), **cos_params(seaweed, bucket), "CLOUDANT_URL": held_couch.url,
            "PAGE_SIZE": 100, "PART_SIZE_MB": 5, "TIME_BUDGET": 150, "SAFETY_MARGIN": 10}


def _assert_stopped_cleanly(code: int, out: str, err: str, expected_code: int, name: str, s3: Any,
                            bucket: str) -> None:
    assert code == expected_code, (code, out, err[-3000:])
    lines = out.splitlines()
    assert len(lines) == 1, out
    result = json.loads(lines[0])
    assert result["kind"] == "interrupted", result
    assert result["error"].startswith(f"interrupted by {name}"), result
    assert "ok" not in result
    assert "Traceback" not in err and "KeyboardInterrupt" not in err
    events = [json.loads(line)["event"] for line in err.splitlines() if line.startswith("{")]
    assert "upload_aborted" in events
    assert incomplete_uploads(s3, bucket) == [], "the interrupted run left its multipart upload behind"
    assert keys_in(s3, bucket) == [], "an object, manifest, checkpoint or tail was left behind"


@pytest.mark.parametrize(("signum", "name", "expected_code"), [
    pytest.param(signal.SIGTERM, "SIGTERM", 143, id="SIGTERM"),
    pytest.param(signal.SIGINT, "SIGINT", 130, id="SIGINT-ctrl-c"),
])
def test_a_signal_mid_backup_aborts_the_upload_drops_the_checkpoint_and_the_cli_prints_one_json_line(
        couch, held_couch, seaweed, bucket, s3_client, signal_db, signum, name, expected_code):
    params = _params(couch, held_couch, seaweed, bucket, signal_db)
    cp_key = checkpoint_key("", signal_db, host_of(held_couch.url))  # the server as the run sees it
    code, out, err = _interrupt_mid_backup([sys.executable, "-m", "backup", "backup"], params, s3_client, bucket,
                                           cp_key, signum)
    _assert_stopped_cleanly(code, out, err, expected_code, name, s3_client, bucket)


def test_sigterm_stops_a_code_engine_job_run_the_same_way(couch, held_couch, seaweed, bucket, s3_client, signal_db):
    params = _params(couch, held_couch, seaweed, bucket, signal_db)
    cp_key = checkpoint_key("", signal_db, host_of(held_couch.url))  # the server as the run sees it
    code, out, err = _interrupt_mid_backup([sys.executable, "-m", "backup.job"], params, s3_client, bucket, cp_key,
                                           signal.SIGTERM)
    _assert_stopped_cleanly(code, out, err, 143, "SIGTERM", s3_client, bucket)
