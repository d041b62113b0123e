"""Concurrency and load: backups of one database at once (threads and processes), several databases in
parallel processes (`python -m backup backup`), and backups and restores while the source keeps changing.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
import requests

from devstack import REPO_ROOT
from tests.faults.outcomes import assert_backup_completed, backup_keys, docs_of, unique
from tests.helpers import (
    OUTPUTS,
    CapturedLog,
    cos_params,
    couch_params,
    incomplete_uploads,
    live_docs,
    load_docs,
    run_main,
    sample_docs,
)

pytestmark = [pytest.mark.faults, pytest.mark.integration, pytest.mark.timeout(150)]


def test_two_backups_of_one_database_at_once_in_threads_give_two_good_objects(couch, small_db, seaweed, bucket,
                                                                               s3_client):
    params = {**couch_params(couch, small_db), **cos_params(seaweed, bucket), "PAGE_SIZE": 50}
    start = threading.Barrier(2)

    def one() -> dict[str, Any]:
        log = CapturedLog()
        start.wait(timeout=30)
        return run_main(params, log)[0]

    with ThreadPoolExecutor(2) as pool:
        results = list(pool.map(lambda _: one(), range(2)))
    assert results[0].get("key") != results[1].get("key"), results
    for result in results:
        assert_backup_completed(result, couch, small_db, s3_client, bucket, params, restore=False)
    assert sorted(backup_keys(s3_client, bucket)) == sorted(r["key"] for r in results)


def _cli_backup(params: dict[str, Any], db: str, *options: str) -> subprocess.Popen:
    env = {**os.environ, **{k: str(v) for k, v in params.items()}, "CLOUDANT_DB": db}
    return subprocess.Popen([sys.executable, "-m", "backup", "--quiet", *options, "backup"], env=env, cwd=REPO_ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def test_parallel_cli_backups_of_several_databases_all_complete_with_distinct_objects(couch, small_db, seaweed, bucket,
                                                                                       s3_client):
    others = [unique("par") for _ in range(2)]
    for i, name in enumerate(others):
        load_docs(couch, name, sample_docs(filler=200 + 100 * i, filler_bytes=500))
    params = {**couch_params(couch, small_db), **cos_params(seaweed, bucket)}
    del params["CLOUDANT_DB"]
    # four processes at once: the same database twice, and two more databases
    dbs = [small_db, small_db, *others]
    procs = [_cli_backup(params, db, "--param", "PAGE_SIZE=100") for db in dbs]
    results = []
    for proc in procs:
        out, err = proc.communicate(timeout=120)
        OUTPUTS.extend([out, err])
        assert proc.returncode == 0, err
        results.append(json.loads(out))
    assert len({r["key"] for r in results}) == 4
    for db, result in zip(dbs, results, strict=True):
        assert result["database"] == db
        assert_backup_completed(result, couch, db, s3_client, bucket, {**params, "CLOUDANT_DB": db}, restore=db != small_db)
    assert incomplete_uploads(s3_client, bucket) == []


class Writer:
    """Keeps writing to a database on its own thread: new docs, and new revisions of 'hot' ones."""

    def __init__(self, couch: Any, db: str, hot: list[str]) -> None:
        self.couch, self.db, self.hot = couch, db, hot
        self.stop = threading.Event()
        self.writes = 0
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> Writer:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self.thread.join(timeout=30)
        assert self.error is None, self.error

    def _run(self) -> None:
        http = requests.Session()
        http.auth = tuple(self.couch.admin)
        url = f"{self.couch.url}/{self.db}"
        n = 0
        try:
            while not self.stop.is_set():
                docs: list[dict[str, Any]] = [{"_id": f"new-{n:05d}-{i}", "n": n} for i in range(5)]
                hot = self.hot[n % len(self.hot)]
                current = http.get(f"{url}/{hot}", timeout=10).json()
                docs.append({**current, "edits": current.get("edits", 0) + 1})
                http.post(f"{url}/_bulk_docs", json={"docs": docs}, timeout=10).raise_for_status()
                self.writes += 1
                n += 1
        except BaseException as exc:  # noqa: BLE001 - reported by __exit__
            self.error = exc


@pytest.fixture
def busy_db(couch) -> Iterator[str]:
    name = unique("busy")
    docs = [{"_id": f"base-{i:05d}", "pad": "b" * 300} for i in range(2500)]
    docs += [{"_id": f"hot-{i:02d}", "edits": 0} for i in range(10)]
    load_docs(couch, name, docs)
    yield name


def test_a_backup_taken_while_writes_continue_verifies_and_restores_equal_to_itself(couch, busy_db, seaweed, bucket,
                                                                                     s3_client):
    params = {**couch_params(couch, busy_db), **cos_params(seaweed, bucket), "PAGE_SIZE": 50, "DOCS_PER_LINE": 50}
    before = {d["_id"]: d for d in live_docs(couch, busy_db) if d["_id"].startswith("base-")}
    with Writer(couch, busy_db, [f"hot-{i:02d}" for i in range(10)]) as writer:
        result, _ = run_main(params)
    assert writer.writes > 5, "the writer barely ran during the backup"
    docs = docs_of(s3_client, bucket, result["key"])
    # the object verifies and restores equal to itself (not to the database, which moved on)
    assert_backup_completed(result, couch, busy_db, s3_client, bucket, params, expected=docs)
    ids = [d["_id"] for d in docs]
    assert ids == sorted(ids) and len(set(ids)) == len(ids)  # no doc twice, in id order
    assert {d["_id"]: d for d in docs if d["_id"].startswith("base-")} == before  # nothing untouched was missed
    assert {f"hot-{i:02d}" for i in range(10)} <= set(ids)  # every changed doc is there, once


def test_a_restore_while_the_source_keeps_changing_finishes_with_what_it_read(couch, busy_db, seaweed, bucket,
                                                                              s3_client):
    params = {**couch_params(couch, busy_db), **cos_params(seaweed, bucket)}
    backup, _ = run_main(params)
    assert backup.get("ok") is True, backup
    expected = docs_of(s3_client, bucket, backup["key"])
    target = unique("copy")
    with Writer(couch, busy_db, [f"hot-{i:02d}" for i in range(10)]) as writer:
        restored, _ = run_main({**params, "OPERATION": "restore", "COS_KEY": backup["key"], "CLOUDANT_DB": target,
                                "CREATE_TARGET": True, "RESTORE_BATCH_SIZE": 100})
    assert writer.writes > 5, "the writer barely ran during the restore"
    assert restored.get("ok") is True and restored["docs"] == len(expected), restored
    assert live_docs(couch, target) == expected
    assert live_docs(couch, busy_db) != expected  # the source did move on meanwhile
