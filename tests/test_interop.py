"""Interoperability with IBM's @cloudant/couchbackup 2.11.12, both ways, with the real CLI tools.

couchbackup's full mode and couchrestore need CouchDB 3 behaviours pouchdb-server lacks, so they talk
to it through devstack's CouchCompatProxy (see /work/shared/reference/test-stack.md).
"""

from __future__ import annotations

import subprocess
from datetime import UTC, datetime
from pathlib import Path

import pytest
import requests

from backup.keys import backup_key
from tests.helpers import live_docs, load_docs, run_main, sample_docs

pytestmark = pytest.mark.integration
BIN = Path(__file__).resolve().parents[1] / "node_modules" / ".bin"


def _url_with_credentials(url: str, admin) -> str:
    return url.replace("://", f"://{admin[0]}:{admin[1]}@")


def _source(couch, db):
    load_docs(couch, db, sample_docs(filler=1200, filler_bytes=100))
    auth = tuple(couch.admin)
    for doc_id in ("doc-000003", "日本"):
        for _ in range(2):
            doc = requests.get(f"{couch.url}/{db}/{requests.utils.quote(doc_id, safe='')}", auth=auth, timeout=30).json()
            doc["edited"] = doc.get("edited", 0) + 1
            requests.put(f"{couch.url}/{db}/{requests.utils.quote(doc_id, safe='')}", json=doc, auth=auth,
                         timeout=30).raise_for_status()


def _couchbackup(proxy_url, db, mode, out: Path) -> None:
    with out.open("wb") as f:
        proc = subprocess.run([str(BIN / "couchbackup"), "--url", proxy_url, "--db", db, "--mode", mode],
                              stdout=f, stderr=subprocess.PIPE, timeout=180)
    assert proc.returncode == 0, proc.stderr.decode()[-2000:]


@pytest.mark.parametrize(("attachments", "codec"), [(True, "gzip"), (False, "gzip"), (True, "none")],
                         ids=["attachments", "no-attachments", "attachments-uncompressed"])
def test_couchrestore_restores_our_backup_exactly(attachments, codec, couch, compat_proxy, db_name, bucket, s3_client,
                                                  seaweed, tmp_path):
    """A backup made with ATTACHMENTS (the default) says so in its metadata line: couchrestore wants --attachments
    for it (and refuses that option for a file made without). Our object is gzip by default: a user pipes it
    through gunzip (`gunzip -c obj | couchrestore`); an uncompressed one goes to couchrestore as it is."""
    _source(couch, db_name)
    params = {"CLOUDANT_URL": couch.url, "CLOUDANT_DB": db_name, "CLOUDANT_USERNAME": couch.admin[0],
              "CLOUDANT_PASSWORD": couch.admin[1], "COS_ENDPOINT": seaweed.endpoint, "COS_BUCKET": bucket,
              "COS_ACCESS_KEY_ID": seaweed.access_key, "COS_SECRET_ACCESS_KEY": seaweed.secret_key}
    backup, _ = run_main({**params, "DOCS_PER_LINE": 100, "ATTACHMENTS": attachments,
                          **({} if codec == "gzip" else {"COMPRESSION": codec})})
    assert backup["ok"] and backup["key"].endswith({"gzip": "Z_backup.txt.gz", "none": "Z_backup.txt"}[codec]), backup
    path = tmp_path / "ours.txt"
    s3_client.download_file(bucket, backup["key"], str(path))

    target = f"{db_name}-by-couchrestore"
    load_docs(couch, target, [])  # couchrestore never creates the target
    restore = [str(BIN / "couchrestore"), "--url", _url_with_credentials(compat_proxy.url, couch.admin),
               "--db", target, *(["--attachments"] if attachments else [])]
    if codec == "gzip":
        with subprocess.Popen(["gunzip", "-c", str(path)], stdout=subprocess.PIPE) as gunzip:
            proc = subprocess.run(restore, stdin=gunzip.stdout, capture_output=True, timeout=180)
        assert gunzip.returncode == 0
    else:
        with path.open("rb") as f:
            proc = subprocess.run(restore, stdin=f, capture_output=True, timeout=180)
    assert proc.returncode == 0, proc.stderr.decode()[-2000:]
    assert live_docs(couch, target) == live_docs(couch, db_name)


@pytest.mark.parametrize("mode", ["shallow", "full"])
def test_our_restore_reads_couchbackup_files(mode, couch, compat_proxy, db_name, bucket, s3_client, seaweed, tmp_path):
    _source(couch, db_name)
    path = tmp_path / f"couchbackup-{mode}.txt"
    _couchbackup(_url_with_credentials(compat_proxy.url, couch.admin), db_name, mode, path)
    key = backup_key("", db_name, datetime.now(UTC))
    s3_client.upload_file(str(path), bucket, key)

    target = f"{db_name}-from-{mode}"
    result, _ = run_main({
        "OPERATION": "restore", "COS_KEY": key, "CLOUDANT_URL": couch.url, "CLOUDANT_DB": target,
        "CLOUDANT_USERNAME": couch.admin[0], "CLOUDANT_PASSWORD": couch.admin[1], "CREATE_TARGET": True,
        "COS_ENDPOINT": seaweed.endpoint, "COS_BUCKET": bucket, "COS_ACCESS_KEY_ID": seaweed.access_key,
        "COS_SECRET_ACCESS_KEY": seaweed.secret_key,
    })
    assert result["ok"], result
    assert live_docs(couch, target) == live_docs(couch, db_name)


def test_our_restore_reads_old_files_without_metadata_with_markers_and_blank_lines(
        couch, compat_proxy, db_name, bucket, s3_client, seaweed, tmp_path):
    _source(couch, db_name)
    path = tmp_path / "old.txt"
    _couchbackup(_url_with_credentials(compat_proxy.url, couch.admin), db_name, "shallow", path)
    lines = path.read_bytes().split(b"\n")
    assert b'"name":"@cloudant/couchbackup"' in lines[0]
    # pre-2.10 shape: no metadata line; plus what a resumed run and editors leave behind
    old = [lines[1], b"", b'{"marker":"@cloudant/couchbackup:resume"}', *lines[2:], b"", b""]
    key = backup_key("", db_name, datetime.now(UTC))
    s3_client.put_object(Bucket=bucket, Key=key, Body=b"\n".join(old))
    target = f"{db_name}-old"
    result, _ = run_main({
        "OPERATION": "restore", "COS_KEY": key, "CLOUDANT_URL": couch.url, "CLOUDANT_DB": target,
        "CLOUDANT_USERNAME": couch.admin[0], "CLOUDANT_PASSWORD": couch.admin[1], "CREATE_TARGET": True,
        "COS_ENDPOINT": seaweed.endpoint, "COS_BUCKET": bucket, "COS_ACCESS_KEY_ID": seaweed.access_key,
        "COS_SECRET_ACCESS_KEY": seaweed.secret_key,
    })
    assert result["ok"], result
    assert live_docs(couch, target) == live_docs(couch, db_name)
