"""Bad input that needs real servers (pure parameter checks are in tests/unit/test_config.py), table-driven:
each case names the exact error kind and a fragment of the message. None may crash (kind "internal"), none
may leave partial state: no object, no incomplete upload, and a restore says whether it wrote anything.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import ibm_boto3
import pytest
from ibm_botocore.client import Config as BotoConfig

from backup.keys import backup_key, manifest_key
from backup.manifest import combined_sha256
from devstack import Fault, FaultProxy
from tests.faults.outcomes import unique
from tests.helpers import (
    SECRET_SOURCES,
    cos_params,
    couch_params,
    db_exists,
    incomplete_uploads,
    keys_in,
    live_docs,
    load_docs,
    run_main,
)

pytestmark = [pytest.mark.faults, pytest.mark.integration, pytest.mark.timeout(120)]

# Wrong credentials used below: they must not appear in any output either (the session-wide scan).
WRONG = {"password": "wr0ng-pw-" + os.urandom(4).hex(), "key_id": "NOSUCHKEYID" + os.urandom(3).hex().upper(),
         "secret": "wr0ng-secret-" + os.urandom(6).hex(), "iam": "refused-iam-key-" + os.urandom(4).hex(),
         "bob": "bob-pw-" + os.urandom(6).hex()}
SECRET_SOURCES.append(lambda: WRONG.values())
CRN = "crn:v1:test:public:cloud-object-storage:global:a/1::"


@dataclass
class Stack:
    """What a case needs to build its parameters (servers are fetched lazily)."""

    request: pytest.FixtureRequest
    db: str
    bucket: str

    def __getattr__(self, name: str) -> Any:
        if name.startswith("_"):
            raise AttributeError(name)
        return self.request.getfixturevalue(name)

    def params(self) -> dict[str, Any]:
        return {**couch_params(self.couch, self.db), **cos_params(self.seaweed, self.bucket)}


@pytest.fixture(scope="module")
def source_db(couch) -> str:
    name = unique("bad-src")
    load_docs(couch, name, [{"_id": f"doc-{i:03d}", "n": i} for i in range(12)])
    return name


@pytest.fixture(scope="module")
def secured_db(couch) -> str:
    """A database whose _security lists another member; 'bob' is a real user who is not one.
    pouchdb-server crashes on anonymous _bulk_docs into such a db: tests only read from it."""
    name = unique("secured")
    load_docs(couch, name, [{"_id": "secret-doc"}])
    auth = tuple(couch.admin)
    couch.http.put(f"{couch.url}/{name}/_security", json={"members": {"names": ["someone-else"], "roles": []}},
                   auth=auth, timeout=30).raise_for_status()
    user = {"name": "bob", "password": WRONG["bob"], "roles": [], "type": "user"}
    answer = couch.http.put(f"{couch.url}/_users/org.couchdb.user:bob", json=user, auth=auth, timeout=30)
    assert answer.status_code in (201, 409), answer.text
    return name


@pytest.fixture
def moto_bucket(moto) -> str:
    name = unique("iam")
    ibm_boto3.client("s3", endpoint_url=moto.endpoint, aws_access_key_id="x", aws_secret_access_key="y",
                     config=BotoConfig(signature_version="s3v4")).create_bucket(Bucket=name)
    return name


def _forbidden_proxy(s: Stack) -> str:
    """Cloudant's answer when an IAM key lacks the database's role (pouchdb-server has no 403 for reads)."""
    proxy = FaultProxy(s.couch.url).start()
    s.request.addfinalizer(proxy.stop)
    proxy.add_rule(None, Fault.status(403, times=None, body=b'{"error":"forbidden","reason":"_reader access is required '
                                                             b'for this request"}'))
    return proxy.url


def _iam_cloudant(s: Stack) -> dict[str, Any]:
    params = s.params()
    del params["CLOUDANT_USERNAME"], params["CLOUDANT_PASSWORD"]
    return {**params, "CLOUDANT_IAM_KEY": WRONG["iam"], "IAM_TOKEN_URL": s.iam.url}


def _iam_cos(s: Stack) -> dict[str, Any]:
    return {**couch_params(s.couch, s.db), "COS_ENDPOINT": s.moto.endpoint, "COS_BUCKET": s.moto_bucket,
            "COS_API_KEY": WRONG["iam"], "COS_SERVICE_INSTANCE_ID": CRN, "IAM_TOKEN_URL": s.iam.url}


def _non_empty_target(s: Stack) -> dict[str, Any]:
    backup, _ = run_main(s.params())
    target = unique("busy")
    load_docs(s.couch, target, [{"_id": "already-here"}])
    return {**s.params(), "OPERATION": "restore", "COS_KEY": backup["key"], "CLOUDANT_DB": target}


def _secured(s: Stack, who: tuple[str, str] | None) -> dict[str, Any]:
    params = {**s.params(), "CLOUDANT_DB": s.secured_db}
    del params["CLOUDANT_USERNAME"], params["CLOUDANT_PASSWORD"]
    if who:
        params.update(CLOUDANT_USERNAME=who[0], CLOUDANT_PASSWORD=who[1])
    return params


# (id, parameters built from the stack, kind, fragments)
CASES = [
    ("database-missing-404", lambda s: {**s.params(), "CLOUDANT_DB": "no-such-db-here"}, "cloudant",
     ["reading database 'no-such-db-here'", "not found (404)", "CLOUDANT_DB"]),
    ("wrong-password-401", lambda s: {**s.params(), "CLOUDANT_PASSWORD": WRONG["password"]}, "cloudant",
     ["401", "CLOUDANT_USERNAME/CLOUDANT_PASSWORD"]),
    ("unknown-user-401", lambda s: {**s.params(), "CLOUDANT_USERNAME": "nobody"}, "cloudant", ["401"]),
    # pouchdb-server answers a non-member 401 where CouchDB 3 says 403: both must be clear
    ("not-a-member-of-secured-db", lambda s: _secured(s, ("bob", WRONG["bob"])), "cloudant",
     ["reading database", "401"]),
    ("anonymous-on-secured-db", lambda s: _secured(s, None), "cloudant", ["reading database", "401"]),
    ("forbidden-403", lambda s: {**s.params(), "CLOUDANT_URL": _forbidden_proxy(s)}, "cloudant",
     ["permission denied (403 forbidden)"]),
    ("bucket-missing", lambda s: {**s.params(), "COS_BUCKET": "no-such-bucket-here"}, "cos",
     ["checking bucket cos://no-such-bucket-here/", "not found (404)", "COS_BUCKET"]),
    ("hmac-key-id-wrong", lambda s: {**s.params(), "COS_ACCESS_KEY_ID": WRONG["key_id"]}, "cos", ["COS_ACCESS_KEY_ID"]),
    ("hmac-secret-wrong", lambda s: {**s.params(), "COS_SECRET_ACCESS_KEY": WRONG["secret"]}, "cos",
     ["COS_SECRET_ACCESS_KEY"]),
    ("cloudant-iam-key-refused", _iam_cloudant, "cloudant", ["IAM token endpoint refused CLOUDANT_IAM_KEY"]),
    ("cos-iam-key-refused", _iam_cos, "cos", ["checking bucket", "/identity/token", "Provided API key could not be found"]),
    pytest.param("cos-iam-key-refused-names-COS_API_KEY", _iam_cos, "cos", ["COS_API_KEY"]),
    ("restore-into-non-empty-db", _non_empty_target, "target_not_empty",
     ["is not empty", "ALLOW_NON_EMPTY_TARGET"]),
    ("unknown-operation", lambda s: {**s.params(), "OPERATION": "backpu"}, "config",
     ["OPERATION must be one of backup, restore, list, verify", "'backpu'"]),
]


def _case(case: Any) -> Any:
    if type(case) is tuple:  # a plain row (a pytest.param is a tuple subclass)
        return pytest.param(*case[1:], id=case[0])
    return pytest.param(*case.values[1:], id=case.values[0], marks=case.marks)


@pytest.mark.parametrize(("build", "kind", "fragments"), [_case(case) for case in CASES])
def test_bad_input_with_servers_fails_clearly_and_leaves_nothing(request, source_db, bucket, s3_client, build, kind,
                                                                 fragments):
    stack = Stack(request, source_db, bucket)
    params = build(stack)
    before = keys_in(s3_client, bucket)
    result, log = run_main(params)
    assert "error" in result and result.get("kind") == kind, result
    for fragment in fragments:
        assert fragment in result["error"], (fragment, result["error"])
    assert not log.events("crashed") and "Traceback" not in log.text
    assert keys_in(s3_client, bucket) == before and incomplete_uploads(s3_client, bucket) == []
    if params.get("OPERATION") == "restore":
        assert [d["_id"] for d in live_docs(stack.couch, params["CLOUDANT_DB"])] == ["already-here"]


# ---------------------------------------------------------------------------------------- bad backup objects


@pytest.fixture(scope="module")
def good_backup(couch, seaweed, module_bucket, source_db) -> tuple[str, bytes, dict[str, Any]]:
    """A backup of 12 docs in 3-doc lines (5 lines): key, bytes, manifest. Uncompressed: the bad objects are made
    from it in plain text (lines cut, replaced) and keep its manifest."""
    result, _ = run_main({**couch_params(couch, source_db), **cos_params(seaweed, module_bucket), "DOCS_PER_LINE": 3,
                          "COMPRESSION": "none"})
    assert result.get("ok") is True, result
    s3 = seaweed.client()
    body = s3.get_object(Bucket=module_bucket, Key=result["key"])["Body"].read()
    manifest = json.loads(s3.get_object(Bucket=module_bucket, Key=manifest_key(result["key"]))["Body"].read())
    assert body.count(b"\n") == 5
    return result["key"], body, manifest


def _lines(body: bytes) -> list[bytes]:
    return body.split(b"\n")[:-1]


def _join(lines: list[bytes]) -> bytes:
    return b"".join(line + b"\n" for line in lines)


def _replace(body: bytes, number: int, line: bytes) -> bytes:
    lines = _lines(body)
    lines[number - 1] = line
    return _join(lines)


# (id, new bytes from the good ones, keep the manifest, restore: kind + fragment | None (=bug), verify: kind + fragment)
# (id, how the good backup is spoiled, manifest kept, restore's error, verify's error). With its manifest kept, an
# object of another size is refused before the restore writes anything (or creates the target).
SIZE_REFUSED = ("format", "truncated or replaced since the backup; nothing was written")
OBJECTS = [
    ("empty", lambda b: b"", True, SIZE_REFUSED, ("format", "size is 0 bytes")),
    ("not-ours-random-text", lambda b: b"Lorem ipsum dolor\nsit amet \x00\xff\xfe\n" + os.urandom(64), False,
     ("format", "this is not a backup file"), ("format", "it has no manifest")),
    ("truncated-mid-line", lambda b: b[: len(b) - 25], True, SIZE_REFUSED,
     ("format", "truncated: line 5 is cut short")),
    ("truncated-at-a-line-end", lambda b: _join(_lines(b)[:-1]), True, SIZE_REFUSED,
     ("format", "it holds 9 documents, the backup wrote 12")),
    ("broken-line", lambda b: _replace(b, 3, _lines(b)[2][:-9] + b"garbage"), True, SIZE_REFUSED,
     ("format", "Error on line 3 of backup file - cannot parse as JSON")),
    ("non-array-line", lambda b: _replace(b, 4, b'{"docs": "not an array"}'), True, SIZE_REFUSED,
     ("format", "Error on line 4 of backup file - not an array of documents")),
]
BUG_RESTORE: dict[str, str] = {}  # case id -> reason, for a known bug (strict xfail)


def _bad_object(s3, bucket: str, case_id: str, make, keep_manifest: bool, good, seaweed) -> str:
    key, body, manifest = good
    when = datetime(2020, 1, 1, tzinfo=UTC) + timedelta(seconds=[c[0] for c in OBJECTS].index(case_id))
    bad_key = backup_key("", unique("bad"), when)
    data = make(body)
    # SeaweedFS quirk: after an empty PutObject (botocore sends Expect: 100-continue with Content-Length: 0)
    # the next request on that keep-alive connection waits 60 s; a throwaway client keeps s3's pool clean.
    (seaweed.client() if not data else s3).put_object(Bucket=bucket, Key=bad_key, Body=data)
    if keep_manifest:
        s3.put_object(Bucket=bucket, Key=manifest_key(bad_key), Body=json.dumps({**manifest, "key": bad_key}).encode())
    return bad_key


def _restore_param(case: tuple) -> Any:
    marks = [pytest.mark.xfail(reason=BUG_RESTORE[case[0]], strict=True)] if case[0] in BUG_RESTORE else []
    return pytest.param(case, id=case[0], marks=marks)


@pytest.mark.parametrize("case", [_restore_param(case) for case in OBJECTS])
def test_restore_of_a_bad_object_fails_clearly_and_says_what_was_written(couch, seaweed, module_bucket, s3_client,
                                                                         good_backup, case):
    case_id, make, keep_manifest, expected, _ = case
    key = _bad_object(s3_client, module_bucket, case_id, make, keep_manifest, good_backup, seaweed)
    target = unique("target")
    before = keys_in(s3_client, module_bucket)
    result, log = run_main({**couch_params(couch, target), **cos_params(seaweed, module_bucket), "OPERATION": "restore",
                            "COS_KEY": key, "CREATE_TARGET": True, "RESTORE_BATCH_SIZE": 3, "RESTORE_PARALLELISM": 1})
    kind, fragment = expected or ("format", "not a backup")
    assert "error" in result and result.get("kind") == kind, result
    assert fragment in result["error"] and not log.events("crashed")
    if "nothing was written" in result["error"]:  # refused before the target was even created
        assert not db_exists(couch, target)
    elif "holds no documents" in result["error"]:  # and, created by this run, deleted again
        assert "is deleted again" in result["error"] and not db_exists(couch, target)
    else:  # exactly what it holds
        assert f"now holds {len(live_docs(couch, target))} documents" in result["error"], result
    assert keys_in(s3_client, module_bucket) == before and incomplete_uploads(s3_client, module_bucket) == []


@pytest.mark.parametrize("case", [pytest.param(case, id=case[0]) for case in OBJECTS])
def test_verify_of_a_bad_object_fails_clearly(seaweed, module_bucket, s3_client, good_backup, case):
    case_id, make, keep_manifest, _, (kind, fragment) = case
    key = _bad_object(s3_client, module_bucket, case_id, make, keep_manifest, good_backup, seaweed)
    result, log = run_main({**cos_params(seaweed, module_bucket), "OPERATION": "verify", "COS_KEY": key})
    assert "error" in result and result.get("kind") == kind, result
    assert not log.events("crashed")
    if keep_manifest and case_id != "empty":
        # Its stored bytes differ from the manifest's parts: verify names that first. Then the same object with a
        # manifest whose parts do match it (resealed): only its content (lines, JSON, documents) can tell.
        assert "corrupted or truncated: size is" in result["error"], result["error"]
        key = _resealed(s3_client, module_bucket, key, good_backup[2])
        result, log = run_main({**cos_params(seaweed, module_bucket), "OPERATION": "verify", "COS_KEY": key})
        assert "error" in result and result.get("kind") == kind, result
        assert not log.events("crashed")
    assert fragment in result["error"], (fragment, result["error"])


def _resealed(s3, bucket: str, key: str, manifest: dict[str, Any]) -> str:
    """A copy of the object at `key` under another key, with a manifest whose parts (one) match its bytes."""
    data = s3.get_object(Bucket=bucket, Key=key)["Body"].read()
    copy = key.replace("_backup.txt", "-resealed_backup.txt")
    s3.put_object(Bucket=bucket, Key=copy, Body=data)
    digest = hashlib.sha256(data).hexdigest()
    sealed = {**manifest, "key": copy, "bytes": len(data), "parts": [{"size": len(data), "sha256": digest}],
              "sha256": combined_sha256([digest])}
    s3.put_object(Bucket=bucket, Key=manifest_key(copy), Body=json.dumps(sealed).encode())
    return copy


def test_the_good_object_itself_restores_and_verifies(couch, seaweed, module_bucket, good_backup):
    """Control for the table above: the untouched object is fine."""
    key = good_backup[0]
    verified, _ = run_main({**cos_params(seaweed, module_bucket), "OPERATION": "verify", "COS_KEY": key})
    assert verified.get("ok") is True and verified["docs"] == 12, verified
    target = unique("target")
    restored, _ = run_main({**couch_params(couch, target), **cos_params(seaweed, module_bucket), "OPERATION": "restore",
                            "COS_KEY": key, "CREATE_TARGET": True})
    assert restored.get("ok") is True and len(live_docs(couch, target)) == 12, restored
