"""Process-level faults: the CouchDB server (pouchdb-server) killed, and restarted on the same port and
data, during a backup and during a restore; the S3 server (SeaweedFS) killed during an upload.

These use their own servers (module scope), so killing them never disturbs the session's.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import requests

from devstack import PouchServer, SeaweedS3
from tests.faults.outcomes import assert_backup_completed, assert_failed_cleanly, docs_of, timed, unique
from tests.helpers import (
    CapturedLog,
    cos_params,
    couch_params,
    incomplete_uploads,
    keys_in,
    live_docs,
    load_docs,
    sample_docs,
)

pytestmark = [pytest.mark.faults, pytest.mark.integration, pytest.mark.timeout(150)]


@pytest.fixture(scope="module")
def own_couch(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PouchServer]:
    from tests.helpers import SECRET_SOURCES

    with PouchServer(tmp_path_factory.mktemp("killable-couch"), admin=("admin", unique("pw"))) as server:
        SECRET_SOURCES.append(lambda: [server.admin[1]])
        yield server


@pytest.fixture(scope="module")
def own_seaweed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SeaweedS3]:
    from tests.helpers import SECRET_SOURCES

    with SeaweedS3(tmp_path_factory.mktemp("killable-seaweed")) as server:
        SECRET_SOURCES.append(lambda: [server.secret_key])
        yield server


@pytest.fixture
def alive(own_couch: PouchServer, own_seaweed: SeaweedS3) -> Iterator[None]:
    """Whatever a test did, both servers run again afterwards."""
    yield
    own_couch.start()
    own_seaweed.start()


@pytest.fixture(scope="module")
def source_db(own_couch: PouchServer) -> str:
    """~1.5 MB, 3005 docs: many pages with PAGE_SIZE=100."""
    name = unique("src")
    load_docs(own_couch, name, sample_docs(filler=3000, filler_bytes=300))
    return name


class Later:
    """Runs fn on its own thread after `delay` seconds; `join()` re-raises nothing but waits."""

    def __init__(self, fn: Callable[[], Any], delay: float = 0.0) -> None:
        self.error: BaseException | None = None

        def run() -> None:
            time.sleep(delay)
            try:
                fn()
            except BaseException as exc:  # noqa: BLE001 - reported by the test via .error
                self.error = exc

        self.thread = threading.Thread(target=run, daemon=True)
        self.thread.start()

    def join(self) -> None:
        self.thread.join(timeout=90)
        assert self.error is None, self.error


# ---------------------------------------------------------------------------------------- CouchDB killed


def test_couchdb_killed_and_restarted_mid_backup_the_backup_completes(own_couch, source_db, seaweed, bucket, s3_client,
                                                                       alive):
    restarts: list[Later] = []

    def crash(fields: dict[str, Any]) -> None:
        if fields["docs"] >= 1000 and not restarts:
            own_couch.kill()  # between two pages: the next `_all_docs` meets a dead server
            restarts.append(Later(own_couch.start, delay=1.0))

    params = {**couch_params(own_couch, source_db), **cos_params(seaweed, bucket), "PAGE_SIZE": 100,
              "PROGRESS_EVERY": 500}
    result, log, elapsed = timed(params, CapturedLog(hooks={"progress": crash}))
    assert restarts, "the server was never killed"
    restarts[0].join()
    assert_backup_completed(result, own_couch, source_db, s3_client, bucket, params)
    assert elapsed < 40


def test_couchdb_killed_for_good_mid_backup_fails_cleanly_and_a_retry_succeeds(own_couch, source_db, seaweed, bucket,
                                                                               s3_client, alive):
    params = {**couch_params(own_couch, source_db), **cos_params(seaweed, bucket), "PAGE_SIZE": 100,
              "PROGRESS_EVERY": 500, "MAX_RETRIES": 2}
    hooks = {"progress": lambda fields: own_couch.kill() if fields["docs"] >= 1000 else None}
    result, log, elapsed = timed(params, CapturedLog(hooks=hooks))
    assert_failed_cleanly(result, "cloudant", ("reading document", f" of '{source_db}' at ", "connection failed"), s3_client,
                          bucket, source_db, elapsed, within=30)
    assert log.events("upload_aborted")

    own_couch.start()
    retried, _, _ = timed(params)
    assert_backup_completed(retried, own_couch, source_db, s3_client, bucket, params)


@pytest.fixture(scope="module")
def source_backup(own_couch: PouchServer, source_db: str, seaweed: Any, module_bucket: str) -> dict[str, Any]:
    from tests.helpers import run_main

    result, _ = run_main({**couch_params(own_couch, source_db), **cos_params(seaweed, module_bucket),
                          "DOCS_PER_LINE": 100})
    assert result.get("ok") is True, result
    return result


def _doc_count(couch: PouchServer, db: str) -> int:
    try:
        answer = couch.http.get(f"{couch.url}/{db}", timeout=2)
        return int(answer.json().get("doc_count", 0)) if answer.status_code == 200 else 0
    except (requests.RequestException, ValueError):
        return 0


class KillWhenWritten:
    """Watches a restore target; once it holds `at` docs, kills the server (and restarts it after `down` s)."""

    def __init__(self, couch: PouchServer, db: str, at: int, down: float | None) -> None:
        self.couch, self.db, self.at, self.down = couch, db, at, down
        self.killed_at: int | None = None
        self.watcher: Later | None = None

    def __call__(self, fields: dict[str, Any]) -> None:  # the "restore_started" hook
        self.watcher = Later(self._watch)

    def _watch(self) -> None:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            count = _doc_count(self.couch, self.db)
            if count >= self.at:
                self.couch.kill()
                self.killed_at = count
                if self.down is not None:
                    time.sleep(self.down)
                    self.couch.start()
                return
            time.sleep(0.005)


def test_couchdb_killed_and_restarted_mid_restore_the_restore_completes(own_couch, seaweed, module_bucket, s3_client,
                                                                         source_backup, alive):
    target = unique("restored")
    killer = KillWhenWritten(own_couch, target, at=300, down=1.0)
    params = {**couch_params(own_couch, target), **cos_params(seaweed, module_bucket), "OPERATION": "restore",
              "COS_KEY": source_backup["key"], "CREATE_TARGET": True, "RESTORE_BATCH_SIZE": 50,
              "RESTORE_PARALLELISM": 2}
    result, _, elapsed = timed(params, CapturedLog(hooks={"restore_started": killer}))
    assert killer.watcher is not None
    killer.watcher.join()
    expected = docs_of(s3_client, module_bucket, source_backup["key"])
    assert killer.killed_at is not None and killer.killed_at < len(expected), "the kill did not land mid-restore"
    assert result.get("ok") is True, result
    assert result["docs"] == len(expected) and live_docs(own_couch, target) == expected
    assert elapsed < 40


def test_couchdb_killed_for_good_mid_restore_fails_cleanly_and_says_partial(own_couch, seaweed, module_bucket,
                                                                            s3_client, source_backup, alive):
    target = unique("restored")
    killer = KillWhenWritten(own_couch, target, at=300, down=None)
    params = {**couch_params(own_couch, target), **cos_params(seaweed, module_bucket), "OPERATION": "restore",
              "COS_KEY": source_backup["key"], "CREATE_TARGET": True, "RESTORE_BATCH_SIZE": 50,
              "RESTORE_PARALLELISM": 2, "MAX_RETRIES": 2}
    result, _, elapsed = timed(params, CapturedLog(hooks={"restore_started": killer}))
    assert killer.watcher is not None
    killer.watcher.join()
    assert killer.killed_at is not None
    fragments = (f"into '{target}'", "connection failed", "may hold a partial restore (its document count could not be read")
    assert_failed_cleanly(result, "cloudant", fragments, s3_client, module_bucket, target, elapsed, within=30)

    own_couch.start()
    expected = docs_of(s3_client, module_bucket, source_backup["key"])
    assert 300 <= len(live_docs(own_couch, target)) < len(expected)  # the partial restore the error warned of
    own_couch.delete_db(target)
    retried, _, _ = timed(params)
    assert retried.get("ok") is True, retried
    assert live_docs(own_couch, target) == expected


# ---------------------------------------------------------------------------------------- S3 killed


@pytest.fixture
def own_bucket(own_seaweed: SeaweedS3) -> str:
    name = unique("kb")
    own_seaweed.client().create_bucket(Bucket=name)
    return name


def test_s3_killed_and_restarted_mid_upload_the_backup_completes(couch, bulky_db, own_seaweed, own_bucket, alive):
    restarts: list[Later] = []

    def crash(fields: dict[str, Any]) -> None:
        if fields["part"] == 1 and not restarts:
            own_seaweed.kill()  # part 1 is in; part 2 meets a dead server
            restarts.append(Later(own_seaweed.start))

    # MAX_RETRIES 10: botocore's jittered backoff (up to 20 s a step) comfortably outlasts a ~3-5 s restart.
    params = {**couch_params(couch, bulky_db), **cos_params(own_seaweed, own_bucket), "PART_SIZE_MB": 5,
              "MAX_RETRIES": 10}
    result, log, elapsed = timed(params, CapturedLog(hooks={"part_uploaded": crash}))
    assert restarts, "the server was never killed"
    restarts[0].join()
    s3 = own_seaweed.client()
    assert_backup_completed(result, couch, bulky_db, s3, own_bucket, params)
    assert result["parts"] == 2 and elapsed < 90


def test_s3_killed_for_good_mid_upload_fails_and_names_the_upload_it_could_not_abort(couch, bulky_db, own_seaweed,
                                                                                     own_bucket, alive):
    """No program can abort an upload on a dead server: the error is clear, the leftover upload is logged by id
    (an AbortIncompleteMultipartUpload lifecycle rule removes it), no object appears, and a retry succeeds."""
    params = {**couch_params(couch, bulky_db), **cos_params(own_seaweed, own_bucket), "PART_SIZE_MB": 5,
              "MAX_RETRIES": 0, "REQUEST_TIMEOUT": 5}
    hooks = {"part_uploaded": lambda fields: own_seaweed.kill() if fields["part"] == 1 else None}
    result, log, elapsed = timed(params, CapturedLog(hooks=hooks))
    assert result.get("kind") == "cos" and "uploading part 2" in result["error"], result
    assert "Could not connect" in result["error"] and "Traceback" not in result["error"]
    assert elapsed < 30
    [abort_failed] = log.events("abort_failed")
    assert "AbortIncompleteMultipartUpload" in abort_failed["hint"]

    own_seaweed.start()
    s3 = own_seaweed.client()
    assert keys_in(s3, own_bucket) == []  # no object at the final key
    [leftover] = incomplete_uploads(s3, own_bucket)
    assert leftover["UploadId"] == abort_failed["upload_id"]
    s3.abort_multipart_upload(Bucket=own_bucket, Key=leftover["Key"], UploadId=leftover["UploadId"])  # the operator
    retried, _, _ = timed(params)
    assert_backup_completed(retried, couch, bulky_db, s3, own_bucket, params, restore=False)

