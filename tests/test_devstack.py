"""Smoke tests of the local test stack itself: every server, the IAM emulator with both IBM SDKs, and the
CouchDB-compatibility proxy with the real couchbackup/couchrestore CLIs."""

from __future__ import annotations

import base64
import gzip
import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import ibm_boto3
import jwt
import pytest
import requests
from ibm_botocore.client import Config as BotoConfig
from ibm_botocore.exceptions import ClientError

from devstack import (
    REPO_ROOT,
    CouchCompatProxy,
    IamTokenServer,
    LocalStack,
    MotoS3,
    PouchServer,
    SeaweedS3,
    free_port,
)

pytestmark = pytest.mark.integration

NODE_BIN = REPO_ROOT / "node_modules" / ".bin"


def _session(auth: tuple[str, str] | None = None) -> requests.Session:
    http = requests.Session()
    http.trust_env = False
    http.auth = auth
    return http


def _refused(url: str) -> bool:
    try:
        _session().get(url, timeout=2)
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
    def client_with(access_key: str, secret_key: str) -> Any:
        return ibm_boto3.client("s3", endpoint_url=seaweed.endpoint, aws_access_key_id=access_key,
                                aws_secret_access_key=secret_key, region_name="us-east-1")

    with pytest.raises(ClientError, match="SignatureDoesNotMatch"):  # signatures are checked
        client_with(seaweed.access_key, "not-the-secret").get_object(Bucket=bucket, Key="dir/k.txt")
    with pytest.raises(ClientError, match="InvalidAccessKeyId"):
        client_with("NOSUCHKEY", "x").list_objects_v2(Bucket=bucket)
    with pytest.raises(ClientError, match="403"):  # HEAD has no body, so no error code: like S3
        client_with(seaweed.access_key, "not-the-secret").head_bucket(Bucket=bucket)
    assert len(seaweed.secret_key) >= 30 and _session().get(seaweed.endpoint, timeout=5).status_code == 403


def test_local_stack_runs_beside_the_session_servers_and_survives_kills(seaweed: SeaweedS3, couch: PouchServer,
                                                                        bucket: str) -> None:
    with LocalStack() as stack:
        workdir = stack.workdir
        assert stack.couch.admin[0] == "admin" and len(stack.couch.admin[1]) >= 16
        ports = set(stack.s3.ports.values()) | set(stack.s3.grpc_ports.values())
        assert not ports & (set(seaweed.ports.values()) | set(seaweed.grpc_ports.values()))
        assert stack.couch.port != couch.port
        s3 = stack.s3.client()
        s3.create_bucket(Bucket="survivor")
        s3.put_object(Bucket="survivor", Key="k", Body=b"v")
        stack.couch.create_db("survivor")
        stack.couch.bulk_docs("survivor", [{"_id": "a"}])
        stack.s3.kill()
        stack.couch.kill()
        assert _refused(stack.s3.endpoint) and _refused(stack.couch.url)
        stack.s3.restart()
        stack.couch.restart()
        assert s3.get_object(Bucket="survivor", Key="k")["Body"].read() == b"v"
        assert [r["id"] for r in stack.couch.all_docs("survivor")] == ["a"]
        grpc_sockets = [Path(f"/tmp/seaweedfs-{kind}-grpc-{port}.sock") for kind, port in stack.s3.grpc_ports.items()]
        assert all(p.exists() for p in grpc_sockets)
    assert not stack.s3.running and not stack.couch.running and not workdir.exists()
    assert _refused(stack.s3.endpoint) and _refused(stack.couch.url)
    assert not any(p.exists() for p in grpc_sockets)  # weed leaves these behind on SIGKILL; stop() removes them
    assert seaweed.client().head_bucket(Bucket=bucket)  # the session instance was never disturbed


_FORGETFUL_SCRIPT = """
import json, os, signal, sys
sys.path.insert(0, sys.argv[3])
from pathlib import Path
from devstack import CouchCompatProxy, MotoS3, PouchServer
work = Path(sys.argv[1])
couch = PouchServer(work / "couch", admin=("admin", "pw")).start()
moto = MotoS3(work / "moto").start()
CouchCompatProxy(couch).start()
print(json.dumps([couch.pid, moto.pid]), flush=True)
if sys.argv[2] == "sigkill":
    os.kill(os.getpid(), signal.SIGKILL)  # no atexit: PR_SET_PDEATHSIG must take them down
"""


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state != "Z"  # a zombie is dead (PID 1 in a container may not reap it)


@pytest.mark.parametrize("ending", ["exit", "sigkill"])
def test_servers_die_with_a_python_process_that_forgot_them(tmp_path: Path, ending: str) -> None:
    proc = subprocess.run([sys.executable, "-c", _FORGETFUL_SCRIPT, str(tmp_path), ending, str(REPO_ROOT)],
                          capture_output=True, text=True, timeout=60, check=False)
    pids = json.loads(proc.stdout)
    assert proc.stderr == "" or ending == "sigkill"  # nothing from the servers reaches the terminal
    deadline = time.monotonic() + 10
    while any(_alive(pid) for pid in pids) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not [pid for pid in pids if _alive(pid)]
    assert (tmp_path / "couch" / "pouchdb-server.out").exists() and (tmp_path / "moto" / "moto.log").exists()


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


def test_proxy_lets_all_docs_reach_ids_past_u00ff(compat_proxy: CouchCompatProxy, couch: PouchServer,
                                                  db_name: str) -> None:
    ids = ["a", "zz", "ÿy", "日本", "\U0001f600"]
    couch.create_db(db_name)
    couch.bulk_docs(db_name, [{"_id": i} for i in ids])
    http, url = _session(couch.admin), f"{compat_proxy.url}/{db_name}/_all_docs"

    def listed(resp: requests.Response) -> list[str]:
        assert resp.status_code == 200, resp.text
        return [row["id"] for row in resp.json()["rows"]]

    assert listed(couch.http.get(f"{couch.url}/{db_name}/_all_docs", timeout=10)) == ["a", "zz"]  # the quirk
    assert listed(http.get(url, timeout=10)) == ids
    assert listed(http.get(url, params={"descending": "true"}, timeout=10)) == ids[::-1]
    # couchbackup's shallow paging: start_key + limit, no end_key
    assert listed(http.post(url, json={"limit": 2, "start_key": "zz\u0000"}, timeout=10)) == ["ÿy", "日本"]
    zipped = http.post(url, data=gzip.compress(json.dumps({"start_key": "b"}).encode()), timeout=10,
                       headers={"Content-Type": "application/json", "Content-Encoding": "gzip"})
    assert listed(zipped) == ids[1:]
    assert listed(http.post(url, json={"end_key": "zz"}, timeout=10)) == ["a", "zz"]  # explicit ranges are kept
    assert listed(http.post(url, json={"keys": ["日本"]}, timeout=10)) == ["日本"]


def test_proxy_reports_an_unreachable_upstream_as_502() -> None:
    with CouchCompatProxy(f"http://127.0.0.1:{free_port()}") as proxy:
        resp = _session().get(f"{proxy.url}/db", timeout=10)
    assert resp.status_code == 502 and resp.json()["error"] == "bad_gateway"


def _node_env(tmp_path: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("COUCH_", "CLOUDANT_", "DEBUG"))}
    return {**env, "TMPDIR": str(tmp_path)}  # couchbackup makes a temp dir per run


def _couchbackup(url: str, db: str, mode: str, tmp_path: Path) -> Path:
    out = tmp_path / f"{db}-{mode}.txt"
    args = [str(NODE_BIN / "couchbackup"), "--url", url, "--db", db, "--mode", mode]
    if mode == "full":
        args += ["--log", str(tmp_path / f"{db}-{mode}.log")]
    with open(out, "wb") as fh:
        proc = subprocess.run(args, stdout=fh, stderr=subprocess.PIPE, env=_node_env(tmp_path), timeout=60,
                              check=False)
    assert proc.returncode == 0, proc.stderr.decode()[-3000:]
    return out


def _couchrestore(url: str, db: str, backup: Path) -> None:
    with open(backup, "rb") as fh:
        proc = subprocess.run([str(NODE_BIN / "couchrestore"), "--url", url, "--db", db], stdin=fh,
                              capture_output=True, env=_node_env(backup.parent), timeout=60, check=False)
    assert proc.returncode == 0, proc.stderr.decode()[-3000:]


def test_couchbackup_and_couchrestore_round_trip_through_the_proxy(compat_proxy: CouchCompatProxy,
                                                                     couch: PouchServer, db_name: str,
                                                                     tmp_path: Path) -> None:
    couch.create_db(db_name)
    docs = [{"_id": f"doc-{i:04d}", "n": i, "tags": ["x", i % 7]} for i in range(600)]
    docs += [{"_id": "_design/d", "views": {"v": {"map": "function (doc) { emit(doc.n); }"}}},
             {"_id": "café", "text": "Zoë ß"}, {"_id": "日本", "text": "テキスト"}, {"_id": "to-delete"}]
    created = {r["id"]: r["rev"] for r in couch.bulk_docs(db_name, docs)}
    couch.bulk_docs(db_name, [{"_id": "doc-0001", "_rev": created["doc-0001"], "n": 1, "edited": True},
                              {"_id": "to-delete", "_rev": created["to-delete"], "_deleted": True}])
    source = couch.all_docs(db_name)
    assert len(source) == 603 and next(r for r in source if r["id"] == "doc-0001")["value"]["rev"].startswith("2-")
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
    notes = [note for _, path, _, note in compat_proxy.request_log if db_name in path or path == "/_session"]
    assert "answered empty _bulk_get" in notes and any(n.startswith("added pending=") for n in notes)
    assert "added name to _session" in notes  # couchbackup logs in with cookie auth


def test_couchbackup_full_mode_pages_past_10000_changes(compat_proxy: CouchCompatProxy, couch: PouchServer,
                                                        db_name: str, tmp_path: Path) -> None:
    """couchbackup's ChangesFollower asks for 10000 changes a page and stops at `pending == 0`."""
    couch.create_db(db_name)
    couch.bulk_docs(db_name, ({"_id": f"d{i:06d}", "n": i} for i in range(10_050)))
    backup = _couchbackup(compat_proxy.url_with_credentials(couch.admin), db_name, "full", tmp_path)
    lines = [json.loads(line) for line in backup.read_text().splitlines() if line.strip()]
    ids = [doc["_id"] for line in lines if isinstance(line, list) for doc in line]
    assert len(ids) == len(set(ids)) == 10_050
    pending = [note for _, path, _, note in compat_proxy.request_log if f"/{db_name}/_changes" in path]
    assert pending == ["added pending=1", "added pending=0"]
