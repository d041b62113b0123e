"""Smoke tests of the local test stack itself: every server, the IAM emulator with both IBM SDKs, and the
CouchDB-compatibility proxy with the real couchbackup/couchrestore CLIs."""

from __future__ import annotations

import base64
import gzip
import json
import os
import socket
import subprocess
from pathlib import Path
from typing import Any

import ibm_boto3
import jwt
import pytest
import requests
from ibm_botocore.client import Config as BotoConfig
from ibm_botocore.exceptions import ClientError

from devstack import REPO_ROOT, CouchCompatProxy, IamTokenServer, MotoS3, PouchServer, SeaweedS3, free_port

pytestmark = pytest.mark.integration

NODE_BIN = REPO_ROOT / "node_modules" / ".bin"


def _session(auth: tuple[str, str] | None = None) -> requests.Session:
    http = requests.Session()
    http.trust_env = False
    http.auth = auth
    return http


def _refused(url: str) -> bool:
    try:
        requests.get(url, timeout=2)
    except requests.ConnectionError:
        return True
    return False


# ------------------------------------------------------------------------------------------------ ports


def test_free_port_hands_out_distinct_bindable_ports() -> None:
    ports = [free_port() for _ in range(20)]
    assert len(set(ports)) == 20
    for port in ports[:3]:
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", port))


# ------------------------------------------------------------------------------------------- pouchdb


def test_pouch_server_with_admin_loads_and_reads_docs(couch: PouchServer, db_name: str) -> None:
    assert couch.url == f"http://127.0.0.1:{couch.port}" and couch.admin and couch.admin[0] == "admin"
    couch.create_db(db_name)
    docs = [{"_id": f"doc-{i:05d}", "n": i} for i in range(2500)] + [{"_id": "ÿ-past-u00ff"}, {"_id": "日本"}]
    assert len(couch.bulk_docs(db_name, iter(docs))) == 2502  # generators work, 3 chunks of <= 1000
    # new_edits=False keeps the given revision
    couch.bulk_docs(db_name, [{"_id": "replica", "_rev": "3-abc", "v": 1}], new_edits=False)
    rows = couch.all_docs(db_name)
    assert {r["id"] for r in rows} == {d["_id"] for d in docs} | {"replica"}
    assert next(r["doc"] for r in rows if r["id"] == "replica") == {"_id": "replica", "_rev": "3-abc", "v": 1}
    with pytest.raises(RuntimeError, match="conflict"):
        couch.bulk_docs(db_name, [{"_id": "doc-00001"}])
    assert couch.bulk_docs(db_name, [{"_id": "doc-00001"}], check=False)[0]["error"] == "conflict"
    # Basic auth is really checked
    bad = _session((couch.admin[0], "wrong-password")).get(f"{couch.url}/_all_dbs", timeout=10)
    assert bad.status_code == 401
    couch.delete_db(db_name)
    couch.delete_db(db_name)  # missing_ok
    assert couch.http.get(f"{couch.url}/{db_name}", timeout=10).status_code == 404


def test_pouch_server_kill_and_restart_keep_port_and_data(tmp_path: Path) -> None:
    with PouchServer(tmp_path / "couch", admin=("admin", "s3cret")) as server:
        port, pid = server.port, server.pid
        server.create_db("keep")
        server.bulk_docs("keep", [{"_id": "a", "v": 1}])
        server.kill()
        assert not server.running and _refused(server.url)
        server.restart()
        assert server.port == port and server.pid != pid
        assert [r["doc"]["v"] for r in server.all_docs("keep")] == [1]
    assert not server.running and _refused(server.url)
    assert (tmp_path / "couch" / "log.txt").exists()  # pouchdb-server's request log, in its workdir


def test_pouch_server_in_memory_forgets_on_restart(tmp_path: Path) -> None:
    with PouchServer(tmp_path / "mem", in_memory=True) as server:
        server.create_db("gone")
        server.restart()
        assert server.http.get(f"{server.url}/gone", timeout=10).status_code == 404


def test_a_server_that_cannot_start_fails_clearly_with_its_log(tmp_path: Path) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        server = PouchServer(tmp_path / "clash", port=busy.getsockname()[1])
        with pytest.raises(RuntimeError, match="exited with code") as err:
            server.start()
    message = str(err.value)
    assert "pouchdb-server.out" in message and "-p " in message and not server.running
    assert "stopTailingLog" in message or "EADDRINUSE" in message  # pouchdb-server 4.2.0's own crash on a busy port


# ---------------------------------------------------------------------------------------------- S3


def test_seaweed_is_real_s3_with_hmac(seaweed: SeaweedS3, s3_client: Any, bucket: str) -> None:
    s3_client.put_object(Bucket=bucket, Key="dir/k.txt", Body=b"hello world")
    assert s3_client.get_object(Bucket=bucket, Key="dir/k.txt", Range="bytes=-5")["Body"].read() == b"world"
    assert [o["Key"] for o in s3_client.list_objects_v2(Bucket=bucket)["Contents"]] == ["dir/k.txt"]
    with pytest.raises(ClientError, match="NoSuchBucket"):  # no auto-created buckets, like S3
        s3_client.put_object(Bucket=f"{bucket}-missing", Key="k", Body=b"x")
    forged = seaweed.client(config=BotoConfig(signature_version="s3v4", retries={"max_attempts": 1}))
    forged._request_signer._credentials.secret_key = "not-the-secret"  # noqa: SLF001
    with pytest.raises(ClientError, match="SignatureDoesNotMatch|AccessDenied|InvalidAccessKeyId"):
        forged.get_object(Bucket=bucket, Key="dir/k.txt")
    assert len(seaweed.secret_key) >= 30 and _session().get(seaweed.endpoint, timeout=5).status_code == 403


def test_two_seaweeds_run_side_by_side_and_survive_kill(tmp_path: Path, seaweed: SeaweedS3, bucket: str) -> None:
    with SeaweedS3(tmp_path / "second") as other:
        all_ports = set(other.ports.values()) | set(other.grpc_ports.values())
        assert not all_ports & (set(seaweed.ports.values()) | set(seaweed.grpc_ports.values()))
        s3 = other.client()
        s3.create_bucket(Bucket="survivor")
        s3.put_object(Bucket="survivor", Key="k", Body=b"v")
        other.kill()
        assert not other.running and _refused(other.endpoint)
        other.restart()
        assert s3.get_object(Bucket="survivor", Key="k")["Body"].read() == b"v"
        grpc_sockets = [Path(f"/tmp/seaweedfs-{kind}-grpc-{port}.sock") for kind, port in other.grpc_ports.items()]
    assert not other.running and _refused(other.endpoint)
    assert not any(p.exists() for p in grpc_sockets)  # weed leaves these behind on SIGKILL; stop() removes them
    assert seaweed.client().head_bucket(Bucket=bucket)  # the session instance was never disturbed


def test_moto_accepts_anything_and_resets(moto: MotoS3) -> None:
    s3 = ibm_boto3.client("s3", endpoint_url=moto.endpoint, aws_access_key_id="x", aws_secret_access_key="y",
                          region_name="us-east-1", config=BotoConfig(signature_version="s3v4"))
    s3.create_bucket(Bucket="moto-smoke")
    s3.put_object(Bucket="moto-smoke", Key="k", Body=b"v")
    assert s3.get_object(Bucket="moto-smoke", Key="k")["Body"].read() == b"v"
    moto.reset()
    assert s3.list_buckets()["Buckets"] == []


# --------------------------------------------------------------------------------------------- IAM


def test_iam_token_endpoint_answers_like_ibm_iam(iam: IamTokenServer) -> None:
    http = _session()
    grant = "urn:ibm:params:oauth:grant-type:apikey"
    ok = http.post(iam.url, data={"grant_type": grant, "apikey": "cos-iam-key-for-tests"}, timeout=5)
    assert ok.status_code == 200, ok.text
    body = ok.json()
    assert body["token_type"] == "Bearer" and body["expires_in"] == 3600 and body["refresh_token"] == "not-used"
    claims = jwt.decode(body["access_token"], options={"verify_signature": False})
    assert claims["exp"] - claims["iat"] == 3600 and claims["sub"] and body["expiration"] == claims["exp"]
    header = json.loads(base64.urlsafe_b64decode(body["access_token"].split(".")[0] + "=="))
    assert header["typ"] == "JWT"
    assert body["access_token"] in iam.issued_tokens
    assert "cos-iam-key-for-tests" not in body["access_token"] + base64.urlsafe_b64decode(
        body["access_token"].split(".")[1] + "==").decode()

    before = iam.request_count
    bad = http.post(iam.url, data={"grant_type": grant, "apikey": "no-such-key"}, timeout=5)
    assert bad.status_code == 400
    assert bad.json()["errorCode"] == "BXNIM0415E"
    assert bad.json()["errorMessage"] == "Provided API key could not be found."
    assert iam.request_count == before + 1
    assert http.post(iam.base_url + "/elsewhere", data={}, timeout=5).status_code == 404


@pytest.mark.parametrize("which_url", ["url", "base_url"])
def test_iam_works_with_the_cloudant_sdk(iam: IamTokenServer, couch_open: PouchServer, db_name: str,
                                         which_url: str) -> None:
    from ibm_cloud_sdk_core.authenticators import IAMAuthenticator
    from ibmcloudant.cloudant_v1 import CloudantV1

    before = len(iam.issued_tokens)
    # The SDK strips a trailing /identity/token and appends it again: both forms post to /identity/token.
    service = CloudantV1(authenticator=IAMAuthenticator("cloudant-iam-key-for-tests", url=getattr(iam, which_url)))
    service.set_service_url(couch_open.url)  # pouchdb-server ignores the bearer token
    service.put_database(db=db_name)
    service.post_document(db=db_name, document={"_id": "a", "v": 1})
    assert service.get_document(db=db_name, doc_id="a").get_result()["v"] == 1
    assert len(iam.issued_tokens) == before + 1  # one token, cached for the following requests


def test_iam_works_with_ibm_boto3_oauth_against_moto(iam: IamTokenServer, moto: MotoS3) -> None:
    grants_before = len(iam.grants)
    s3 = ibm_boto3.client(
        "s3",
        ibm_api_key_id="cos-iam-key-for-tests",
        ibm_service_instance_id="crn:v1:bluemix:public:cloud-object-storage:global:a/1::",
        ibm_auth_endpoint=iam.url,  # posted to exactly as given: pass the full token URL
        config=BotoConfig(signature_version="oauth"),
        endpoint_url=moto.endpoint,
        region_name="us-east-1",
    )
    s3.create_bucket(Bucket="iam-smoke")
    s3.put_object(Bucket="iam-smoke", Key="k", Body=b"v")
    assert s3.get_object(Bucket="iam-smoke", Key="k")["Body"].read() == b"v"
    assert iam.grants[grants_before:] == ["urn:ibm:params:oauth:grant-type:apikey"]


# ------------------------------------------------------------------------------------ compat proxy


def test_proxy_adds_couchdb3_fields_and_passes_the_rest_through(compat_proxy: CouchCompatProxy,
                                                                couch: PouchServer, db_name: str) -> None:
    couch.create_db(db_name)
    couch.bulk_docs(db_name, [{"_id": i} for i in ("a", "b", "c")])
    http, base = _session(couch.admin), f"{compat_proxy.url}/{db_name}"

    assert "doc_del_count" not in couch.http.get(f"{couch.url}/{db_name}", timeout=10).json()  # the quirk
    info = http.get(base, timeout=10).json()
    assert info["doc_del_count"] == 0 and info["doc_count"] == 3 and info["db_name"] == db_name

    # pending: 0 only at the end of the feed (couchbackup's ChangesFollower stops at the first 0)
    first = http.get(f"{base}/_changes", params={"limit": 2}, timeout=10).json()
    assert len(first["results"]) == 2 and first["pending"] >= 1
    rest = http.post(f"{base}/_changes", params={"limit": 2, "since": first["last_seq"]}, json={}, timeout=10).json()
    assert len(rest["results"]) == 1 and rest["pending"] == 0
    assert http.get(f"{base}/_changes", timeout=10).json()["pending"] == 0

    # the empty _bulk_get probe, plain and gzipped, is answered by the proxy (pouchdb-server would hang)
    assert http.post(f"{base}/_bulk_get", json={"docs": []}, timeout=10).json() == {"results": []}
    zipped = http.post(f"{base}/_bulk_get", data=gzip.compress(b'{"docs": []}'), timeout=10,
                       headers={"Content-Type": "application/json", "Content-Encoding": "gzip"})
    assert zipped.json() == {"results": []}
    real = http.post(f"{base}/_bulk_get", json={"docs": [{"id": "a"}]}, timeout=10).json()
    assert real["results"][0]["docs"][0]["ok"]["_id"] == "a"

    # pass-through: gzipped request bodies, status codes, auth failures, HEAD
    zipped_doc = http.post(f"{base}/_bulk_docs", data=gzip.compress(b'{"docs": [{"_id": "z"}]}'), timeout=10,
                           headers={"Content-Type": "application/json", "Content-Encoding": "gzip"})
    assert zipped_doc.status_code == 201 and zipped_doc.json()[0]["id"] == "z"
    assert http.get(f"{base}/no-such-doc", timeout=10).status_code == 404
    assert _session((couch.admin[0], "wrong")).get(f"{compat_proxy.url}/_all_dbs", timeout=10).status_code == 401
    head = http.head(f"{base}/a", timeout=10)
    assert head.status_code == 200 and head.content == b"" and int(head.headers["Content-Length"]) > 0
    notes = [note for _, path, _, note in compat_proxy.request_log if db_name in path]
    assert "answered empty _bulk_get" in notes and "added doc_del_count" in notes


def test_proxy_reports_an_unreachable_upstream_as_502() -> None:
    with CouchCompatProxy(f"http://127.0.0.1:{free_port()}") as proxy:
        resp = _session().get(f"{proxy.url}/db", timeout=10)
    assert resp.status_code == 502 and resp.json()["error"] == "bad_gateway"


def _node_env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith(("COUCH_", "CLOUDANT_", "DEBUG"))}


def _couchbackup(url: str, db: str, mode: str, tmp_path: Path) -> Path:
    out = tmp_path / f"{db}-{mode}.txt"
    args = [str(NODE_BIN / "couchbackup"), "--url", url, "--db", db, "--mode", mode]
    if mode == "full":
        args += ["--log", str(tmp_path / f"{db}-{mode}.log")]
    with open(out, "wb") as fh:
        proc = subprocess.run(args, stdout=fh, stderr=subprocess.PIPE, env=_node_env(), timeout=60, check=False)
    assert proc.returncode == 0, proc.stderr.decode()[-3000:]
    return out


def _couchrestore(url: str, db: str, backup: Path) -> None:
    with open(backup, "rb") as fh:
        proc = subprocess.run([str(NODE_BIN / "couchrestore"), "--url", url, "--db", db], stdin=fh,
                              capture_output=True, env=_node_env(), timeout=60, check=False)
    assert proc.returncode == 0, proc.stderr.decode()[-3000:]


def test_couchbackup_and_couchrestore_round_trip_through_the_proxy(compat_proxy: CouchCompatProxy,
                                                                     couch: PouchServer, db_name: str,
                                                                     tmp_path: Path) -> None:
    couch.create_db(db_name)
    docs = [{"_id": f"doc-{i:04d}", "n": i, "tags": ["x", i % 7]} for i in range(600)]
    docs += [{"_id": "_design/d", "views": {"v": {"map": "function (doc) { emit(doc.n); }"}}},
             {"_id": "café", "text": "Zoë ß"}, {"_id": "to-delete"}]
    created = {r["id"]: r["rev"] for r in couch.bulk_docs(db_name, docs)}
    couch.bulk_docs(db_name, [{"_id": "doc-0001", "_rev": created["doc-0001"], "n": 1, "edited": True},
                              {"_id": "to-delete", "_rev": created["to-delete"], "_deleted": True}])
    source = couch.all_docs(db_name)
    assert len(source) == 602 and next(r for r in source if r["id"] == "doc-0001")["value"]["rev"].startswith("2-")
    url = compat_proxy.url_with_credentials(couch.admin)

    for mode in ("full", "shallow"):
        backup = _couchbackup(url, db_name, mode, tmp_path)
        target = f"{db_name}-{mode}"
        couch.create_db(target)
        _couchrestore(url, target, backup)
        restored = couch.all_docs(target)
        assert [r["doc"] for r in restored] == [r["doc"] for r in source], mode  # same _id, _rev and body
    history = couch.http.get(f"{couch.url}/{db_name}-full/doc-0001", params={"revs": "true"}, timeout=10).json()
    assert history["_revisions"]["start"] == 2 and len(history["_revisions"]["ids"]) == 2  # full mode keeps history
    notes = [note for _, path, _, note in compat_proxy.request_log if db_name in path]
    assert "answered empty _bulk_get" in notes and any(n.startswith("added pending=") for n in notes)
