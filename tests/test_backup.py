"""Backup against real servers: pouchdb-server (CouchDB), SeaweedFS (S3), moto + a local IAM endpoint."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import ibm_boto3
import pytest
from ibm_botocore.client import Config as BotoConfig

from backup import rows
from devstack import PouchServer
from tests.helpers import (
    OUTPUTS,
    CapturedLog,
    cos_params,
    couch_params,
    incomplete_uploads,
    keys_in,
    live_docs,
    load_docs,
    object_body,
    object_lines,
    run_main,
    sample_docs,
)

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[1]


def _docs_in_object(lines: list) -> list[dict]:
    return [doc for line in lines[1:] for doc in line]


@pytest.fixture
def params(couch, seaweed, db_name, bucket):
    return {**couch_params(couch, db_name), **cos_params(seaweed, bucket)}


def test_backup_of_a_multipart_object_matches_the_database_line_by_line(couch, db_name, bucket, s3_client, params):
    load_docs(couch, db_name, sample_docs(filler=4000, filler_bytes=2000))  # ~9 MB: at least two parts
    # Uncompressed: the sample docs gzip to one part (tests/test_codecs.py has compressed multipart objects).
    result, log = run_main({**params, "PART_SIZE_MB": 5, "DOCS_PER_LINE": 300, "PAGE_SIZE": 700,
                            "COMPRESSION": "none"})

    assert result["ok"] is True, result
    assert result["parts"] >= 2 and result["docs"] == 4005 and result["bytes"] > 5 * 1024 * 1024
    assert set(result) >= {"ok", "bucket", "key", "docs", "bytes", "seconds"}
    assert result["key"].startswith(f"{db_name}_") and result["key"].endswith("Z_backup.txt")  # none: no codec ending
    lines = object_lines(s3_client, bucket, result["key"])
    meta = lines[0]
    assert meta["name"] and meta["version"] and meta["mode"] == "shallow" and meta["database"] == db_name
    assert "update_seq" in meta and "started" in meta
    assert all(isinstance(line, list) and 0 < len(line) <= 300 for line in lines[1:])
    assert _docs_in_object(lines) == live_docs(couch, db_name)  # same ids, revs and bodies, same order
    assert [e["part"] for e in log.events("part_uploaded")] == list(range(1, result["parts"] + 1))
    assert incomplete_uploads(s3_client, bucket) == []


def test_backup_object_is_ascii_only_json(couch, db_name, bucket, s3_client, params):
    load_docs(couch, db_name, sample_docs(filler=5))
    result, _ = run_main(params)
    assert result["key"].endswith("Z_backup.txt.gz"), result  # gzip by default: its plain text is what couchrestore reads
    body = object_body(s3_client, bucket, result["key"])
    assert max(body) < 0x80  # couchrestore 2.11 mangles raw multi-byte UTF-8 across its read chunks
    docs = {d["_id"]: d for d in _docs_in_object(object_lines(s3_client, bucket, result["key"]))}
    assert docs["café-ünïcødé"]["text"] == "日本語のテキスト \u2028 line sep \u2029 para sep"
    assert len(docs["big-doc"]["blob"]) == 500_000 and "_design/by_name" in docs


@pytest.mark.parametrize("page_buffer", [None, 4096], ids=["pages-spliced", "pages-streamed"])
def test_backup_keeps_every_document_exactly_whichever_decoder_reads_it(couch, db_name, bucket, s3_client, params,
                                                                        monkeypatch, page_buffer):
    """Pages are read whole and spliced (msgspec), or decoded row by row when bigger than PAGE_BUFFER, or (a
    page msgspec refuses: an escaped lone surrogate) by the slower decoder: the object is the same data."""
    from backup import cloudant

    if page_buffer is not None:
        monkeypatch.setattr(cloudant, "PAGE_BUFFER", page_buffer)
    spliced: list[int | None] = []  # per page held whole: the rows msgspec took (None: it refused the page)

    def page_docs(body):
        docs = rows.page_docs(body)
        spliced.append(None if docs is None else len(docs))
        return docs

    monkeypatch.setattr(cloudant, "page_docs", page_docs)
    docs = sample_docs(filler=300) + [
        {"_id": "numbers", "i": -9007199254740991, "f": 0.1, "e": 1e-7, "z": 0, "neg": -2.5e300},
        {"_id": "surrogate", "v": "\ud800 lone, then a pair \U0001f600"},
    ]
    load_docs(couch, db_name, docs)
    result, _ = run_main({**params, "PAGE_SIZE": 100, "DOCS_PER_LINE": 37})

    assert result["ok"] is True and result["docs"] == len(docs), result
    body = object_body(s3_client, bucket, result["key"])
    assert max(body) < 0x80
    assert _docs_in_object(object_lines(s3_client, bucket, result["key"])) == live_docs(couch, db_name)
    # (The last request, for ids sorting after U+10FFFF, answers an empty page: 0 rows.)
    if page_buffer is None:
        assert any(spliced) and None in spliced  # both decoders ran: the surrogate's page fell back
    else:
        assert not any(spliced)  # pages above the buffer streamed; the small last one (surrogate) fell back


def test_pages_follow_the_database_size_then_the_documents_read(couch, db_name):
    """The first page is sized from the database's own average (`sizes.external`, when reported), later pages
    from the documents read; every document comes once, in id order, whatever the page sizes."""
    from backup import cloudant
    from backup.config import CloudantConfig
    from backup.redaction import Secret

    docs = [{"_id": f"d{i:04d}", "pad": "x" * 200} for i in range(1200)]
    load_docs(couch, db_name, docs)
    auth = {"auth": "basic", "username": couch.admin[0], "password": Secret(couch.admin[1])} if couch.admin else {"auth": "none"}
    client = cloudant.make_client(CloudantConfig(couch.url, **auth), 30, 0)
    whole = 10**9  # one batch per page: the batches show the page sizes

    def sizes(hint):
        return [len(p) for p in cloudant.iter_pages(client, db_name, 500, 8 << 20, batch=whole, hint=hint)]

    assert sizes(None) == [500, 500, 200]  # no hint: FIRST_PAGE rows, capped by max_rows
    assert sizes((1000, 1000 * (80 << 10))) == [102, 500, 500, 98]  # ~80 KB docs reported: ~8 MiB of them first
    pages = list(cloudant.iter_pages(client, db_name, 500, 8 << 20, batch=whole, hint=(1000, 1000 * (80 << 10))))
    assert [doc_id for page in pages for doc_id, _ in page] == [d["_id"] for d in docs]


def test_empty_database_gives_a_metadata_only_backup(couch, db_name, bucket, s3_client, params):
    load_docs(couch, db_name, [])
    result, _ = run_main(params)
    assert result["ok"] and result["docs"] == 0 and result["parts"] == 1
    lines = object_lines(s3_client, bucket, result["key"])
    assert len(lines) == 1 and lines[0]["mode"] == "shallow"


def test_backup_without_auth_from_an_open_couchdb(couch_open, db_name, bucket, s3_client, seaweed):
    load_docs(couch_open, db_name, sample_docs(filler=20))
    result, _ = run_main({**couch_params(couch_open, db_name), **cos_params(seaweed, bucket)})
    assert result["ok"], result
    assert _docs_in_object(object_lines(s3_client, bucket, result["key"])) == live_docs(couch_open, db_name)


def test_backup_with_iam_on_both_sides(couch, db_name, moto, iam):
    """CLOUDANT_IAM_KEY and COS_API_KEY both fetch tokens from the local IAM endpoint; moto accepts oauth."""
    load_docs(couch, db_name, sample_docs(filler=20))
    bucket = f"iam-{db_name.replace('_', '-')[:40]}"
    s3 = ibm_boto3.client("s3", endpoint_url=moto.endpoint, aws_access_key_id="x", aws_secret_access_key="y",
                          config=BotoConfig(signature_version="s3v4"))
    s3.create_bucket(Bucket=bucket)
    before = len(iam.issued_tokens)
    result, log = run_main({
        "CLOUDANT_URL": couch.url, "CLOUDANT_DB": db_name, "CLOUDANT_IAM_KEY": "cloudant-iam-key-for-tests",
        "COS_ENDPOINT": moto.endpoint, "COS_BUCKET": bucket, "COS_API_KEY": "cos-iam-key-for-tests",
        "COS_SERVICE_INSTANCE_ID": "crn:v1:test:public:cloud-object-storage:global:a/1::", "IAM_TOKEN_URL": iam.url,
    })
    assert result["ok"], result
    assert len(iam.issued_tokens) >= before + 2  # one token for Cloudant, one for COS
    assert _docs_in_object(object_lines(s3, bucket, result["key"])) == live_docs(couch, db_name)
    for token in iam.issued_tokens:
        assert token not in log.text and token not in json.dumps(result)


def test_a_source_failure_mid_upload_leaves_no_object_and_no_incomplete_upload(tmp_path, db_name, bucket, s3_client, seaweed):
    with PouchServer(tmp_path / "dying-couch") as couch:
        couch.start()
        # ~34 MB: more than the pipe (16 MiB) + one part can hold, so the reader is still reading when
        # the first part is in COS and the database server dies: a real fault, not a mock.
        load_docs(couch, db_name, sample_docs(filler=16000, filler_bytes=2000))
        log = CapturedLog(hooks={"part_uploaded": lambda fields: couch.kill() if fields["part"] == 1 else None})
        # Uncompressed: part 1 must be in COS while the reader still reads (the sample docs gzip to one part).
        result, _ = run_main({**couch_params(couch, db_name), **cos_params(seaweed, bucket), "PART_SIZE_MB": 5,
                              "PAGE_SIZE": 200, "MAX_RETRIES": "0", "COMPRESSION": "none"}, log)
    assert "error" in result and result["kind"] == "cloudant", result
    assert f"reading documents of '{db_name}'" in result["error"] and "connection failed" in result["error"]
    assert log.events("part_uploaded") and log.events("upload_aborted")
    assert keys_in(s3_client, bucket) == []
    assert incomplete_uploads(s3_client, bucket) == []


def test_a_cos_failure_mid_upload_leaves_no_object_and_no_incomplete_upload(couch, db_name, bucket, s3_client, params):
    load_docs(couch, db_name, sample_docs(filler=6000, filler_bytes=2000))

    def abort_behind_its_back(fields):
        if fields["part"] == 1:
            for upload in incomplete_uploads(s3_client, bucket):
                s3_client.abort_multipart_upload(Bucket=bucket, Key=upload["Key"], UploadId=upload["UploadId"])

    log = CapturedLog(hooks={"part_uploaded": abort_behind_its_back})
    result, _ = run_main({**params, "PART_SIZE_MB": 5, "MAX_RETRIES": 0}, log)
    assert result.get("kind") == "cos", result
    assert "uploading part 2" in result["error"] or "completing upload" in result["error"]
    assert keys_in(s3_client, bucket) == []
    assert incomplete_uploads(s3_client, bucket) == []


def test_a_missing_database_fails_before_any_upload(couch, bucket, s3_client, params):
    result, _ = run_main({**params, "CLOUDANT_DB": "no-such-db"})
    assert result["kind"] == "cloudant" and "'no-such-db'" in result["error"] and "404" in result["error"]
    assert keys_in(s3_client, bucket) == [] and incomplete_uploads(s3_client, bucket) == []


def test_a_missing_bucket_fails_before_reading_the_database(couch, db_name, params):
    load_docs(couch, db_name, sample_docs(filler=1))
    result, _ = run_main({**params, "COS_BUCKET": "no-such-bucket-here"})
    assert result["kind"] == "cos" and "cos://no-such-bucket-here/" in result["error"]
    assert "bucket does not exist" in result["error"] or "404" in result["error"]


def test_wrong_cloudant_password_is_a_clear_401(couch, db_name, params):
    load_docs(couch, db_name, sample_docs(filler=1))
    result, log = run_main({**params, "CLOUDANT_PASSWORD": "definitely-wrong-password"})
    assert result["kind"] == "cloudant" and "401" in result["error"]
    assert "definitely-wrong-password" not in result["error"] + log.text


def test_invalid_parameters_fail_before_any_network_call(bucket, s3_client):
    # Ports nothing listens on: a network call would fail differently (and slowly).
    result, _ = run_main({"CLOUDANT_URL": "ftp://127.0.0.1:9", "CLOUDANT_DB": "Bad Name", "COS_ENDPOINT": "127.0.0.1:9",
                          "COS_BUCKET": bucket, "PAGE_SIZE": "lots"})
    assert result["kind"] == "config"
    for fragment in ("CLOUDANT_URL must use https:// or http://", "CLOUDANT_DB 'Bad Name' is not a valid database name",
                     "COS credentials are missing", "PAGE_SIZE must be an integer"):
        assert fragment in result["error"]


def test_two_backups_of_one_database_never_overwrite_each_other(couch, db_name, bucket, s3_client, params):
    load_docs(couch, db_name, sample_docs(filler=3))
    first, _ = run_main(params)
    second, _ = run_main(params)
    assert first["key"] != second["key"]
    assert sorted(keys_in(s3_client, bucket)) == sorted(
        [first["key"], second["key"], first["key"] + ".manifest.json", second["key"] + ".manifest.json"])


def test_key_prefix_puts_backups_under_it(couch, db_name, bucket, s3_client, params):
    load_docs(couch, db_name, sample_docs(filler=1))
    result, _ = run_main({**params, "COS_PREFIX": "nightly/"})
    assert result["key"].startswith(f"nightly/{db_name}_")


def test_progress_is_logged_every_n_docs_as_json_lines(couch, db_name, params):
    load_docs(couch, db_name, sample_docs(filler=250))
    result, log = run_main({**params, "PROGRESS_EVERY": 100, "PAGE_SIZE": 50})
    assert result["ok"]
    assert [e["docs"] for e in log.events("progress")][:2] == [100, 200]
    assert all(json.loads(line) for line in log.text.splitlines())


def test_cli_backup_reads_environment_and_prints_json(couch, db_name, bucket, params):
    load_docs(couch, db_name, sample_docs(filler=10))
    env = {**os.environ, **params, "CLOUDANT_DB": "overridden-below"}
    proc = subprocess.run([sys.executable, "-m", "backup", "backup", "--db", db_name], env=env, cwd=ROOT,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout)
    assert result["ok"] and result["docs"] == 15 and result["database"] == db_name
    assert all(json.loads(line)["event"] for line in proc.stderr.splitlines())  # logs on stderr, JSON
    OUTPUTS.extend([proc.stdout, proc.stderr])


def test_cli_exits_non_zero_with_a_clear_message(couch, params):
    env = {**os.environ, **params, "CLOUDANT_DB": "no-such-db"}
    proc = subprocess.run([sys.executable, "-m", "backup", "backup"], env=env, cwd=ROOT, capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 3
    assert "'no-such-db'" in json.loads(proc.stdout)["error"]
    OUTPUTS.extend([proc.stdout, proc.stderr])


