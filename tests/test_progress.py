"""Progress you can watch (issue 13, point 3): progress lines of restore (documents written of the chain's total)
and of backup (documents read of the database's doc_count), and one log line for every retry of a request to
Cloudant or COS (what is retried, the attempt, the wait), against real servers and a fault proxy."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any
from urllib.parse import quote, urlsplit

import pytest
import requests

from backup import cloudant
from backup.config import CloudantConfig
from devstack import Fault, FaultProxy
from tests.helpers import CapturedLog, cos_params, couch_params, live_docs, load_docs, run_main, sample_docs

pytestmark = [pytest.mark.integration, pytest.mark.timeout(180)]

ALL_DOCS = r"^POST /[^/]+/_all_docs"
UPLOAD_PART = r"^PUT /[^?]+\?(?=.*partNumber=)(?=.*uploadId=)"


@pytest.fixture
def params(couch, seaweed, db_name, bucket) -> dict[str, Any]:
    return {**couch_params(couch, db_name), **cos_params(seaweed, bucket)}


@pytest.fixture
def couch_proxy(couch) -> Iterator[FaultProxy]:
    with FaultProxy(couch.url, upstream_timeout=60) as proxy:
        yield proxy


@pytest.fixture
def s3_proxy(seaweed) -> Iterator[FaultProxy]:
    with FaultProxy(seaweed.endpoint, flavor="s3", upstream_timeout=60) as proxy:
        yield proxy


def _progress(log: CapturedLog, operation: str) -> list[dict[str, Any]]:
    lines = log.events("progress")
    assert all(line.get("operation") in ("backup", "restore") for line in lines), lines
    return [line for line in lines if line["operation"] == operation]


def _floor_percent(done: int, total: int) -> float:
    return min(100.0, (1000 * done // total) / 10)


def _doc_count(couch: Any, db: str) -> int:
    r = requests.get(f"{couch.url}/{db}", auth=tuple(couch.admin) if couch.admin else None, timeout=30)
    r.raise_for_status()
    return int(r.json()["doc_count"])


def _retries(log: CapturedLog, service: str) -> list[dict[str, Any]]:
    return [line for line in log.events("retry") if line.get("service") == service]


# ---------------------------------------------------------------------------------------- restore progress


def test_restore_logs_progress_of_written_documents_up_to_the_manifest_total(couch, db_name, params):
    load_docs(couch, db_name, sample_docs(filler=245))  # 250 docs, a design doc among them (written last)
    backup, _ = run_main(params)
    assert backup["ok"] and backup["docs"] == 250, backup
    target = f"{db_name}-copy"
    in_target: list[tuple[int, int]] = []  # (docs the line says, docs the target holds when it is logged)
    log = CapturedLog(hooks={"progress": lambda f: in_target.append((f["docs"], _doc_count(couch, target)))
                             if f.get("operation") == "restore" else None})
    restored, log = run_main({**params, "OPERATION": "restore", "COS_KEY": backup["key"], "CLOUDANT_DB": target,
                              "CREATE_TARGET": True, "PROGRESS_EVERY": 50, "RESTORE_BATCH_SIZE": 20,
                              "RESTORE_PARALLELISM": 2}, log)
    assert restored["ok"] and restored["docs"] == 250, restored

    lines = _progress(log, "restore")
    docs = [line["docs"] for line in lines]
    assert len(lines) >= 5 and docs == sorted(set(docs)), lines
    steps = [d // 50 for d in docs[:-1]]  # one line per 50 written (the batches end where they end), and at the end
    assert steps[0] >= 1 and steps == sorted(set(steps)), docs
    assert all(line["total"] == 250 and line["percent"] == _floor_percent(line["docs"], 250) for line in lines), lines
    assert lines[-1]["docs"] == 250 and lines[-1]["percent"] == 100.0
    assert all(line["percent"] < 100 for line in lines[:-1])
    assert all(line["database"] == target for line in lines)
    # written, not read: when a line is logged, the target already holds at least that many documents
    assert len(in_target) == len(lines) and all(held >= said for said, held in in_target), in_target
    assert live_docs(couch, target) == live_docs(couch, db_name)


def test_restore_progress_of_a_chain_counts_against_the_sum_of_its_manifests(couch, db_name, params):
    load_docs(couch, db_name, [{"_id": f"doc-{i:04d}", "n": i} for i in range(100)])
    full, _ = run_main(params)
    load_docs(couch, db_name, [{"_id": f"new-{i:04d}", "n": i} for i in range(30)])
    incremental, _ = run_main({**params, "BACKUP_MODE": "incremental"})
    assert full["docs"] == 100 and incremental["kind"] == "incremental" and incremental["docs"] == 30, incremental

    restored, log = run_main({**params, "OPERATION": "restore", "COS_KEY": "latest", "SOURCE_DB": db_name,
                              "CLOUDANT_DB": f"{db_name}-copy", "CREATE_TARGET": True, "PROGRESS_EVERY": 40,
                              "RESTORE_BATCH_SIZE": 20})
    assert restored["ok"] and len(restored["chain"]) == 2, restored
    lines = _progress(log, "restore")
    assert lines and all(line["total"] == 130 for line in lines), lines
    assert [line["docs"] for line in lines][-1] == 130 and lines[-1]["percent"] == 100.0, lines


def test_restore_of_a_file_without_a_manifest_logs_progress_with_no_total(couch, db_name, bucket, s3_client, params):
    docs = [{"_id": f"doc-{i:04d}", "_rev": "1-0123456789abcdef0123456789abcdef", "n": i} for i in range(120)]
    body = b"".join(json.dumps(docs[i:i + 30]).encode() + b"\n" for i in range(0, 120, 30))  # couchbackup's lines
    s3_client.put_object(Bucket=bucket, Key="from-couchbackup.txt", Body=body)
    restored, log = run_main({**params, "OPERATION": "restore", "COS_KEY": "from-couchbackup.txt",
                              "CLOUDANT_DB": db_name, "CREATE_TARGET": True, "PROGRESS_EVERY": 50,
                              "RESTORE_BATCH_SIZE": 25, "RESTORE_PARALLELISM": 1})
    assert restored["ok"] and restored["docs"] == 120, restored
    lines = _progress(log, "restore")
    assert [line["docs"] for line in lines] == [50, 100], lines
    assert all(line["total"] is None and line["percent"] is None for line in lines), lines


# ---------------------------------------------------------------------------------------- backup progress


def test_backup_progress_lines_carry_the_doc_count_as_total_and_a_percent(couch, db_name, params):
    load_docs(couch, db_name, [{"_id": f"doc-{i:04d}", "n": i} for i in range(250)])
    result, log = run_main({**params, "PROGRESS_EVERY": 50, "PAGE_SIZE": 50})
    assert result["ok"] and result["docs"] == 250, result
    lines = _progress(log, "backup")
    assert [line["docs"] for line in lines] == [50, 100, 150, 200, 250], lines
    assert [line["percent"] for line in lines] == [20.0, 40.0, 60.0, 80.0, 100.0]
    assert all(line["total"] == 250 and line["database"] == db_name for line in lines)


def test_backup_progress_percent_stays_at_most_100_when_the_database_grows_meanwhile(couch, db_name, params):
    load_docs(couch, db_name, [{"_id": f"doc-{i:04d}", "n": i} for i in range(200)])
    grown: list[int] = []

    def grow(fields: dict[str, Any]) -> None:
        if not grown:  # after the first page: documents sorting after every other one are still to be read
            grown.append(fields["docs"])
            load_docs(couch, db_name, [{"_id": f"zz-{i:04d}"} for i in range(100)])

    result, log = run_main({**params, "PROGRESS_EVERY": 50, "PAGE_SIZE": 50}, CapturedLog(hooks={"progress": grow}))
    assert result["ok"] and result["docs"] == 300 and result["doc_count"] == 200, result
    lines = _progress(log, "backup")
    assert lines[-1]["docs"] == 300 and all(line["total"] == 200 for line in lines), lines
    assert [line["percent"] for line in lines if line["docs"] >= 200] == [100.0] * 3
    assert all(line["percent"] <= 100 for line in lines)


def test_incremental_backup_progress_has_no_total(couch, db_name, params):
    load_docs(couch, db_name, [{"_id": f"doc-{i:04d}"} for i in range(10)])
    run_main(params)
    load_docs(couch, db_name, [{"_id": f"new-{i:04d}"} for i in range(60)])
    result, log = run_main({**params, "BACKUP_MODE": "incremental", "PROGRESS_EVERY": 20})
    assert result["ok"] and result["kind"] == "incremental" and result["docs"] == 60, result
    lines = _progress(log, "backup")
    assert lines and all(line["total"] is None and line["percent"] is None for line in lines), lines


# ---------------------------------------------------------------------------------------- Cloudant retries


def test_the_cloudant_client_keeps_the_sdk_retry_policy_and_logs_through_it(couch):
    """The logging Retry is the SDK's (ibm_cloud_sdk_core BaseService.enable_retries): same statuses, methods (POST
    too), Retry-After, backoff and cap; mounted for http and https, and kept when TLS verification is switched."""
    plain = cloudant.make_client(CloudantConfig(couch.url, "none"), 10, 3)
    logged = cloudant.make_client(CloudantConfig(couch.url, "none"), 10, 3, CapturedLog())
    sdk, ours = plain.retry_config, logged.retry_config
    assert type(sdk).__name__ == "Retry" and isinstance(ours, cloudant.LoggedRetry) and ours.on_retry is not None
    for name in ("total", "status_forcelist", "allowed_methods", "backoff_factor", "backoff_max",
                 "respect_retry_after_header", "backoff_jitter", "raise_on_status", "retry_after_max"):
        assert getattr(ours, name) == getattr(sdk, name), name
    assert "POST" in ours.allowed_methods and 429 in ours.status_forcelist
    for scheme in ("http://", "https://"):
        assert logged.http_client.get_adapter(scheme + "x").max_retries is ours
    logged.set_disable_ssl_verification(True)
    assert logged.http_client.get_adapter("https://x").max_retries is ours
    assert ours.new(total=1).on_retry is ours.on_retry  # each attempt's copy keeps the callback


# (fault on the 2nd and later `_all_docs` requests, how many, the status or error logged, the waits by attempt)
CLOUDANT_FAULTS = [
    pytest.param(lambda: Fault.status(429, retry_after=1, times=2), 2, {"status": 429}, {2: 1.0, 3: 1.0},
                 id="429-retry-after-1-twice"),
    # Retry-After 0 is no wait asked: urllib3's backoff (0 before the first retry, then 2 s, 4 s... up to 30 s)
    pytest.param(lambda: Fault.status(429, retry_after=0, times=1), 1, {"status": 429}, {2: 0.0},
                 id="429-retry-after-0"),
    pytest.param(lambda: Fault.status(503, times=2), 2, {"status": 503}, {2: 0.0, 3: 2.0}, id="503-twice"),
    pytest.param(lambda: Fault.refuse(), 1, {"error": "ProtocolError("}, {2: 0.0}, id="connection-dropped"),
    pytest.param(lambda: Fault.stall(8), 1, {"error": "ReadTimeoutError"}, {2: 0.0}, id="timeout"),
]


@pytest.mark.parametrize(("fault", "hits", "why", "waits"), CLOUDANT_FAULTS)
def test_each_cloudant_retry_logs_what_is_retried_its_attempt_and_its_wait(couch, db_name, params, couch_proxy,
                                                                           fault, hits, why, waits):
    load_docs(couch, db_name, [{"_id": f"doc-{i:04d}", "pad": "p" * 100} for i in range(200)])
    user, password = couch.admin
    proxy = urlsplit(couch_proxy.url)
    args = {**params, "PAGE_SIZE": 50, "REQUEST_TIMEOUT": 2,
            "CLOUDANT_URL": f"{proxy.scheme}://{user}:{password}@{proxy.netloc}"}  # credentials in the URL
    del args["CLOUDANT_USERNAME"], args["CLOUDANT_PASSWORD"]
    rule = couch_proxy.add_rule(ALL_DOCS, fault(), skip=1)
    result, log = run_main(args)
    assert result.get("ok") and result["docs"] == 200, result
    assert rule.hits == hits

    retries = _retries(log, "cloudant")
    assert len(retries) == hits, retries
    for line in retries:
        assert line["level"] == "warning" and line["request"] == f"POST /{db_name}/_all_docs", line
        assert line.get("status") == why.get("status") and str(line.get("error")).startswith(why.get("error", "None"))
        assert ("status" in line) != ("error" in line), line
        assert line["wait"] == waits[line["attempt"]], line
    assert sorted(line["attempt"] for line in retries) == sorted(waits), retries  # 2 = the first retry
    text = "\n".join(json.dumps(line) for line in retries)
    assert password not in text and user not in text and proxy.netloc not in text and "127.0.0.1" not in text


def test_restore_logs_its_cloudant_retries_too(couch, db_name, params, couch_proxy):
    load_docs(couch, db_name, [{"_id": f"doc-{i:04d}"} for i in range(60)])
    backup, _ = run_main(params)
    target = f"{db_name}-copy"
    couch_proxy.add_rule(r"^POST /[^/]+/_bulk_docs", Fault.status(429, retry_after=1), skip=1)
    restored, log = run_main({**params, "CLOUDANT_URL": couch_proxy.url, "OPERATION": "restore",
                              "COS_KEY": backup["key"], "CLOUDANT_DB": target, "CREATE_TARGET": True,
                              "RESTORE_BATCH_SIZE": 20})
    assert restored.get("ok") and restored["docs"] == 60, restored
    assert [(r["request"], r["status"], r["attempt"], r["wait"]) for r in _retries(log, "cloudant")] == [
        (f"POST /{target}/_bulk_docs", 429, 2, 1.0)]


# ---------------------------------------------------------------------------------------- COS retries


COS_FAULTS = [
    pytest.param(lambda: Fault.status(503), {"status": 503, "error": "SlowDown"}, None, id="503-SlowDown"),
    pytest.param(lambda: Fault.status(500), {"status": 500, "error": "InternalError"}, None, id="500"),
    # botocore's standard retries skip this 429 (its code is not on their throttling list): _retry_too_many_requests
    pytest.param(lambda: Fault.status(429, retry_after=1), {"status": 429, "error": "TooManyRequests"}, 1.0, id="429"),
    pytest.param(lambda: Fault.refuse(), {"error": "Connection"}, None, id="connection-dropped"),
]


@pytest.mark.parametrize(("fault", "why", "wait"), COS_FAULTS)
def test_each_cos_retry_logs_what_is_retried_its_attempt_and_its_wait(couch, db_name, seaweed, bucket, s3_proxy,
                                                                      params, fault, why, wait):
    load_docs(couch, db_name, [{"_id": f"doc-{i:04d}"} for i in range(20)])
    rule = s3_proxy.add_rule(UPLOAD_PART, fault())  # the backup's one part
    result, log = run_main({**params, "COS_ENDPOINT": s3_proxy.url, "REQUEST_TIMEOUT": 5})
    assert result.get("ok") and result["docs"] == 20, result
    assert rule.hits == 1

    [line] = _retries(log, "cos")
    assert line["level"] == "warning" and line["attempt"] == 2, line
    assert line["request"] == f"PUT /{bucket}/{quote(result['key'], safe='/~')}", line  # no host, no query
    assert line.get("status") == why.get("status") and why["error"] in line["error"], line
    assert isinstance(line["wait"], float) and 0 <= line["wait"] <= 20 and (wait is None or line["wait"] == wait)
    assert seaweed.secret_key not in log.text and urlsplit(s3_proxy.url).netloc not in json.dumps(line)


def test_verify_logs_its_cos_retries_too(couch, db_name, seaweed, bucket, s3_proxy, params):
    load_docs(couch, db_name, [{"_id": f"doc-{i:04d}"} for i in range(20)])
    backup, _ = run_main(params)
    s3_proxy.add_rule(r"^GET /[^?]+_backup\.txt\.gz$", Fault.status(503))  # gzip, the default
    verified, log = run_main({**params, "COS_ENDPOINT": s3_proxy.url, "OPERATION": "verify", "COS_KEY": backup["key"]})
    assert verified.get("ok"), verified
    [line] = _retries(log, "cos")
    assert line["request"] == f"GET /{bucket}/{quote(backup['key'], safe='/~')}" and line["status"] == 503, line
