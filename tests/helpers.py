"""Shared test helpers: parameters for the local stack, a capturing log, and readers of real state."""

from __future__ import annotations

import base64
import gzip
import http.server
import io
import json
import os
import random
import re
import threading
import time
import uuid
from collections.abc import Callable, Iterable
from typing import Any
from urllib.parse import parse_qs, urlsplit

import requests
import zstandard

from backup.log import Log

# Every output (log line, result, error) produced through `run_main` lands here; test_secrets scans it.
OUTPUTS: list[str] = []
# Where the session's secrets come from (fixtures register the stack's passwords, keys and issued tokens).
SECRET_SOURCES: list[Callable[[], Iterable[str]]] = []


def session_secrets() -> set[str]:
    return {value for source in SECRET_SOURCES for value in source() if value}


class CapturedLog(Log):
    """A Log that keeps its lines, and can run a hook when an event is logged (fault injection)."""

    def __init__(self, hooks: dict[str, Callable[[dict[str, Any]], None]] | None = None) -> None:
        self.buffer = io.StringIO()
        super().__init__(stream=self.buffer)
        self.hooks = hooks or {}

    def _write(self, level: str, event: str, fields: dict[str, Any]) -> None:
        super()._write(level, event, fields)
        if event in self.hooks:
            self.hooks[event](fields)

    @property
    def text(self) -> str:
        return self.buffer.getvalue()

    def events(self, name: str | None = None) -> list[dict[str, Any]]:
        records = [json.loads(line) for line in self.text.splitlines() if line.strip()]
        return [r for r in records if name is None or r["event"] == name]


def run_main(args: dict[str, Any], log: CapturedLog | None = None) -> tuple[dict[str, Any], CapturedLog]:
    """Call the action's main(args) as OpenWhisk would; record everything it printed or returned."""
    from backup.action import main

    log = log or CapturedLog()
    result = main(args, log=log)
    json.dumps(result)  # the runtime must be able to serialise it
    OUTPUTS.append(log.text)
    OUTPUTS.append(json.dumps(result))
    return result, log


def run_at_once(args: dict[str, Any], log: CapturedLog | None = None) -> tuple[dict[str, Any], CapturedLog]:
    """run_main in an activation whose deadline has come (`__OW_DEADLINE` = now): it stops at once and
    checkpoints what little it did, cheaply. (SAFETY_MARGIN >= TIME_BUDGET is refused as bad input.)"""
    before = os.environ.get("__OW_DEADLINE")
    os.environ["__OW_DEADLINE"] = str(int(time.time() * 1000))
    try:
        return run_main(args, log)
    finally:
        if before is None:
            os.environ.pop("__OW_DEADLINE", None)
        else:
            os.environ["__OW_DEADLINE"] = before


def couch_params(couch: Any, db: str) -> dict[str, str]:
    params = {"CLOUDANT_URL": couch.url, "CLOUDANT_DB": db}
    if couch.admin:
        params.update(CLOUDANT_USERNAME=couch.admin[0], CLOUDANT_PASSWORD=couch.admin[1])
    return params


def cos_params(seaweed: Any, bucket: str) -> dict[str, str]:
    return {
        "COS_ENDPOINT": seaweed.endpoint, "COS_BUCKET": bucket,
        "COS_ACCESS_KEY_ID": seaweed.access_key, "COS_SECRET_ACCESS_KEY": seaweed.secret_key,
    }


def _auth(couch: Any) -> Any:
    return tuple(couch.admin) if couch.admin else None


def doc_url(couch: Any, db: str, doc_id: str) -> str:
    """The URL of one document (a design document's `_design/` kept unquoted, as CouchDB routes it)."""
    design = doc_id.startswith("_design/")
    name = requests.utils.quote(doc_id.removeprefix("_design/") if design else doc_id, safe="")
    return f"{couch.url}/{requests.utils.quote(db, safe='')}/{'_design/' if design else ''}{name}"


def _quoted(db: str) -> str:
    """A database name in a URL path: its '/' (CouchDB allows them) as %2F."""
    return requests.utils.quote(db, safe="")


def load_docs(couch: Any, db: str, docs: list[dict[str, Any]], new_edits: bool = True) -> list[dict[str, Any]]:
    """Write docs (creating db if needed); returns the per-doc responses."""
    db = _quoted(db)
    requests.put(f"{couch.url}/{db}", auth=_auth(couch), timeout=30)
    out = []
    for i in range(0, len(docs), 1000):
        body: dict[str, Any] = {"docs": docs[i:i + 1000]}
        if not new_edits:
            body["new_edits"] = False
        r = requests.post(f"{couch.url}/{db}/_bulk_docs", json=body, auth=_auth(couch), timeout=120)
        r.raise_for_status()
        out.extend(r.json())
    return out


def live_docs(couch: Any, db: str) -> list[dict[str, Any]]:
    """Every live doc (winning revision) in id order, read straight from the server."""
    r = requests.get(
        f"{couch.url}/{_quoted(db)}/_all_docs",
        params={"include_docs": "true", "end_key": json.dumps("\U0010ffff")}, auth=_auth(couch), timeout=120,
    )
    r.raise_for_status()
    return [row["doc"] for row in r.json()["rows"]]


def db_exists(couch: Any, db: str) -> bool:
    r = requests.get(f"{couch.url}/{_quoted(db)}", auth=_auth(couch), timeout=30)
    if r.status_code == 404:
        return False
    r.raise_for_status()
    return True


def object_body(s3: Any, bucket: str, key: str) -> bytes:
    """The plain text of an unencrypted backup object (gzip and zstd decompressed, by the standard libraries, not the
    product's reader): the couchbackup file."""
    body = s3.get_object(Bucket=bucket, Key=key)["Body"].read()
    if body[:2] == b"\x1f\x8b":
        return gzip.decompress(body)
    if body[:4] == b"\x28\xb5\x2f\xfd":
        return _unzstd(body)
    return body


def _unzstd(body: bytes) -> bytes:
    with zstandard.ZstdDecompressor().stream_reader(io.BytesIO(body), read_across_frames=True) as reader:
        return reader.read()


def object_lines(s3: Any, bucket: str, key: str) -> list[Any]:
    body = object_body(s3, bucket, key)
    assert body.endswith(b"\n")
    return [json.loads(line) for line in body.split(b"\n")[:-1]]


BACKUP_OBJECT = re.compile(r"_backup\.txt(\.gz|\.zst)?(\.age)?$")
"""How a backup object's key ends, whatever its codec (plain, gzip, zstd) and whether it is encrypted."""


def is_backup_object(key: str) -> bool:
    """A backup object's key (not its manifest, checkpoint or tail)."""
    return BACKUP_OBJECT.search(key) is not None


def plain_key(key: str, tag: str = "") -> str:
    """A backup key like `key` (same database, same time) with `tag` before `_backup.txt` and no codec ending:
    where a test puts an object it made of plain text."""
    return BACKUP_OBJECT.sub(f"{tag}_backup.txt", key)


def keys_in(s3: Any, bucket: str) -> list[str]:
    return [o["Key"] for o in s3.list_objects_v2(Bucket=bucket).get("Contents", [])]


def incomplete_uploads(s3: Any, bucket: str) -> list[dict[str, Any]]:
    return s3.list_multipart_uploads(Bucket=bucket).get("Uploads", [])


def sample_docs(filler: int = 50, filler_bytes: int = 200) -> list[dict[str, Any]]:
    """The awkward cases: design docs, non-ASCII ids and bodies, a ~500 KB doc, ids with odd characters."""
    docs: list[dict[str, Any]] = [
        {"_id": "_design/by_name", "views": {"v": {"map": "function (doc) { emit(doc.name); }"}}},
        {"_id": "café-ünïcødé", "name": "Zoë", "text": "日本語のテキスト \u2028 line sep \u2029 para sep"},
        {"_id": "日本", "emoji": "\U0001f600", "nested": {"a": [1, 2.5, None, True, {"b": "ß"}]}},
        {"_id": "big-doc", "blob": "x" * 500_000},
        {"_id": "odd id with spaces & / + ?", "v": 1},
    ]
    docs += [{"_id": f"doc-{i:06d}", "n": i, "pad": "p" * filler_bytes} for i in range(filler)]
    return docs


def incompressible_docs(filler: int = 50, filler_bytes: int = 2000) -> list[dict[str, Any]]:
    """sample_docs' awkward cases, then `filler` docs whose pads are base64 of (seeded) random bytes: they hardly
    compress (gzip keeps ~3/4 of them), so a backup with the default codec still spans several parts."""
    docs = sample_docs(filler=0)
    raw = (filler_bytes * 3 + 3) // 4
    docs += [{"_id": f"doc-{i:06d}", "n": i,
              "pad": base64.b64encode(random.Random(i).randbytes(raw)).decode("ascii")[:filler_bytes]}
             for i in range(filler)]
    return docs


API_KEY = "23bc46b1-71f6-4ed5-8c54-816aa4f8c502:not-a-real-openwhisk-key"  # the fake OpenWhisk's action key
# __OW_API_KEY is a secret like the others: the session's scan looks for it (whole, and each half) in every output.
SECRET_SOURCES.append(lambda: [API_KEY, *API_KEY.split(":")])
# OpenWhisk's answer to an invocation naming a parameter the action has bound under `final` (Messages.scala).
PARAMETERS_NOT_ALLOWED = "Request defines parameters that are not allowed (e.g., reserved properties)."


class FakeOpenWhisk:
    """The OpenWhisk REST API's non-blocking action invoke, recording every call (on 127.0.0.1), and the action's
    record (GET, `?code=false`): its bound parameters (`bound`) and its `final` annotation. Under `final` an
    invocation that names a bound parameter (one with a value) is refused with 400, as OpenWhisk's controller does
    (Actions.scala: incoming parameters may not override final parameters)."""

    def __init__(self, status: int = 202) -> None:
        self.calls: list[dict[str, Any]] = []
        self.reads: list[dict[str, Any]] = []  # GETs of the action's record
        self.status = status
        self.answer: bytes | None = None  # replaces the JSON answer (a proxy's HTML page, say)
        self.bound: dict[str, Any] = {}  # the action's bound parameters (opts.json)
        self.final = False  # the action's `final` annotation
        self.record_status = 200  # the answer to a GET of the action's record
        fake = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def _answer(self, status: int, answer: bytes) -> None:
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(answer)))
                self.end_headers()
                self.wfile.write(answer)

            def do_GET(self) -> None:  # noqa: N802 - http.server's naming
                split = urlsplit(self.path)
                fake.reads.append({"path": split.path, "query": parse_qs(split.query),
                                   "authorization": self.headers.get("Authorization")})
                if fake.record_status != 200:
                    self._answer(fake.record_status, b'{"error": "The server is currently unavailable."}')
                    return
                name = split.path.rsplit("/", 1)[-1]
                record = {"namespace": "NS/PKG", "name": name, "version": "0.0.1", "publish": False,
                          "parameters": [{"key": k, "value": v} for k, v in fake.bound.items()],
                          "annotations": [{"key": "provide-api-key", "value": True}]
                          + ([{"key": "final", "value": True}] if fake.final else []),
                          "limits": {"timeout": 300000, "memory": 512}}
                self._answer(200, json.dumps(record).encode())

            def do_POST(self) -> None:  # noqa: N802 - http.server's naming
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                OUTPUTS.append(body.decode())  # a payload leaves the activation: the session's secret scan reads it
                split = urlsplit(self.path)
                payload = json.loads(body)
                if fake.final and {k for k, v in fake.bound.items() if v is not None} & set(payload):
                    self._answer(400, json.dumps({"error": PARAMETERS_NOT_ALLOWED, "code": "4a5b"}).encode())
                    return
                activation = uuid.uuid4().hex
                fake.calls.append({"path": split.path, "query": parse_qs(split.query), "body": payload,
                                   "authorization": self.headers.get("Authorization"), "activation_id": activation})
                answer = fake.answer or json.dumps(
                    {"activationId": activation} if fake.status < 300 else {"error": "boom"}).encode()
                self._answer(fake.status, answer)

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
