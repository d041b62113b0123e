"""The two outcomes every fault scenario must end in, and small readers of real state.

* ``assert_backup_completed`` / restore checks in the tests: the object verifies, equals the database and
  restores equal (or the restored database equals the backup);
* ``assert_failed_cleanly``: a clear error of the expected kind naming the cause, within a time bound,
  no object at the final key and no incomplete multipart upload left behind.
"""

from __future__ import annotations

import re
import time
import uuid
from typing import Any
from urllib.parse import quote

from tests.helpers import (
    cos_params,
    couch_params,
    incomplete_uploads,
    is_backup_object,
    keys_in,
    live_docs,
    object_lines,
    run_main,
)

# Regexes over "METHOD path?query" for the requests the product makes.
ALL_DOCS = r"^POST /[^/]+/_all_docs"
BULK_DOCS = r"^POST /[^/]+/_bulk_docs"
UPLOAD_PART = r"^PUT /[^?]+\?(?=.*partNumber=)(?=.*uploadId=)"
COMPLETE_UPLOAD = r"^POST /[^?]+\?uploadId="
CREATE_UPLOAD = r"^POST /[^?]+\?uploads"
ABORT_UPLOAD = r"^DELETE /[^?]+\?uploadId="


def client_via(seaweed: Any, url: str) -> Any:
    """An S3 client for `seaweed` whose requests go to `url` (a proxy), one attempt per call."""
    import ibm_boto3
    from ibm_botocore.client import Config

    return ibm_boto3.client("s3", endpoint_url=url, aws_access_key_id=seaweed.access_key,
                            aws_secret_access_key=seaweed.secret_key, region_name="us-east-1",
                            config=Config(signature_version="s3v4", retries={"max_attempts": 1}))


def via(proxy: Any, params: dict[str, Any], name: str) -> dict[str, Any]:
    """params with CLOUDANT_URL (or COS_ENDPOINT) pointed at the proxy."""
    return {**params, name: proxy.url}


def get_object(bucket: str, key: str) -> str:
    """Regex for the GET of one object (restore and verify stream it)."""
    return rf"^GET /{re.escape(bucket)}/{re.escape(quote(key, safe='/~'))}(\?|$)"


def unique(prefix: str = "f") -> str:
    return f"{prefix}-{uuid.uuid4().hex[:14]}"


def timed(args: dict[str, Any], log: Any = None) -> tuple[dict[str, Any], Any, float]:
    started = time.monotonic()
    result, log = run_main(args, log)
    return result, log, time.monotonic() - started


def docs_of(s3: Any, bucket: str, key: str) -> list[dict[str, Any]]:
    return [doc for line in object_lines(s3, bucket, key)[1:] for doc in line]


def backup_keys(s3: Any, bucket: str, db: str | None = None) -> list[str]:
    return [k for k in keys_in(s3, bucket) if is_backup_object(k) and (db is None or k.startswith(f"{db}_"))]


def assert_backup_completed(result: dict[str, Any], couch: Any, db: str, s3: Any, bucket: str,
                            params: dict[str, Any], expected: list[dict[str, Any]] | None = None,
                            restore: bool = True) -> list[dict[str, Any]]:
    """Completed: ok, verify passes against the manifest, the object equals the database (or
    ``expected``), it restores equal, no incomplete upload remains. Returns the object's docs."""
    assert result.get("ok") is True, result
    verified, _ = run_main({**params, "OPERATION": "verify", "COS_KEY": result["key"]})
    assert verified.get("ok") is True, verified
    assert verified["docs"] == result["docs"] and verified["sha256"] == result["sha256"]
    docs = docs_of(s3, bucket, result["key"])
    assert docs == (expected if expected is not None else live_docs(couch, db))
    assert len({d["_id"] for d in docs}) == len(docs), "a document is in the backup twice"
    assert incomplete_uploads(s3, bucket) == []
    if restore:
        target = unique("copy")
        restored, _ = run_main({**params, "OPERATION": "restore", "COS_KEY": result["key"], "CLOUDANT_DB": target,
                                "CREATE_TARGET": True})
        assert restored.get("ok") is True, restored
        assert live_docs(couch, target) == docs
    return docs


def assert_failed_cleanly(result: dict[str, Any], kind: str, fragments: tuple[str, ...] | list[str], s3: Any,
                          bucket: str, db: str | None = None, elapsed: float | None = None,
                          within: float | None = None) -> None:
    """Failed cleanly: an error of ``kind`` naming the cause, no object at the final key (no object of db
    at all: no backup, manifest or checkpoint), no incomplete multipart upload, and it ended within ``within`` s."""
    assert "error" in result and result.get("kind") == kind, result
    assert result["kind"] != "internal"
    assert "ok" not in result
    for fragment in fragments:
        assert fragment in result["error"], (fragment, result["error"])
    assert "Traceback" not in result["error"]
    assert backup_keys(s3, bucket, db) == [], "an object was left at the final key"
    if db is not None:  # nor a manifest, checkpoint or tail of this database
        assert [k for k in keys_in(s3, bucket) if k.startswith(db)] == []
    assert incomplete_uploads(s3, bucket) == [], "an incomplete multipart upload was left behind"
    if within is not None:
        assert elapsed is not None and elapsed < within, f"took {elapsed:.1f}s, bound {within}s"


def backup_of(couch: Any, db: str, seaweed: Any, bucket: str, **extra: Any) -> dict[str, Any]:
    """A plain, direct backup (the object later restores and verifies in the scenarios)."""
    result, _ = run_main({**couch_params(couch, db), **cos_params(seaweed, bucket), **extra})
    assert result.get("ok") is True, result
    return result
