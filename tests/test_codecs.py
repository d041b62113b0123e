"""Compressed and encrypted backups (issue 17), against real servers: COMPRESSION=gzip|zstd|none and ENCRYPT_TO (age)
on the way in, AGE_IDENTITY on the way back, for one-shot backups and for backups split over several invocations
(one gzip member / zstd frame / age stream per invocation: a "segment").

Every object restores into a database equal to the source (winning revisions, conflicts, attachments), reads with
the standard tools where they can (`gunzip -c`, `zstd -dc`, `age -d` of a one-stream object) and with `decrypt`
everywhere, verifies (its stored bytes without a key, its content with one), and refuses damage, a missing or
wrong identity before anything is written. AGE_IDENTITY is a secret: registered for the session's scan
(tests/test_secrets.py), and checked directly here.

The objects are decoded here independently of the product (gzip, zstandard, pyrage), so what the tests compare
with is never the product's own reading.
"""

from __future__ import annotations

import base64
import contextlib
import gzip
import hashlib
import json
import os
import random
import re
import shutil
import subprocess
import sys
import threading
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyrage
import pytest
import requests
import zstandard
from pyrage import x25519

from backup.keys import manifest_key
from tests.helpers import (
    OUTPUTS,
    SECRET_SOURCES,
    CapturedLog,
    cos_params,
    couch_params,
    db_exists,
    doc_url,
    keys_in,
    live_docs,
    load_docs,
    run_at_once,
    run_main,
    session_secrets,
)
from tests.test_secrets import assert_clean

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[1]
MIB = 1024 * 1024
SUFFIXES = {"gzip": ".gz", "zstd": ".zst", "none": ""}
CONTENT_TYPES = {"gzip": "application/gzip", "zstd": "application/zstd", "none": "text/plain; charset=utf-8"}
AGE_HEADER = b"age-encryption.org/v1\n"
MAGIC = {"gzip": b"\x1f\x8b", "zstd": b"\x28\xb5\x2f\xfd", "none": b""}
FILLER = 300  # plain documents of the source, beside the awkward ones
SOURCE_DOCS = FILLER + 5  # live documents: the filler, a design doc, two unicode ids, attachments, conflicts
CONFLICT_LEAVES = 2
TUNING = {"DOCS_PER_LINE": 50}
# A backup split by the deadline: 1 s of work per invocation (see _split_backup for how the split is made sure of).
SPLIT = {"TIME_BUDGET": 2, "SAFETY_MARGIN": 1, "PAGE_SIZE": 50, "PROGRESS_EVERY": 100}
MAX_INVOCATIONS = 30
SECRET_KEY = re.compile(r"AGE-SECRET-KEY-1[0-9A-Z]{10,}")  # key material, not the prefix named in a hint

# (codec, encrypted) with ids that hold no generated value (pytest-xdist workers must collect the same ids).
VARIANTS = [pytest.param(codec, encrypted, id=codec + ("+age" if encrypted else ""))
            for encrypted in (False, True) for codec in ("gzip", "zstd", "none")]
SPLIT_VARIANTS = [pytest.param(codec, encrypted, id=codec + ("+age" if encrypted else ""))
                  for codec, encrypted in (("gzip", False), ("zstd", False), ("gzip", True), ("zstd", True))]


# -- keys: made in a fixture, never at import time; every private one registered with the session's secret scan


@dataclass(frozen=True)
class Keys:
    identity: x25519.Identity
    secret: str  # the AGE-SECRET-KEY-1... line
    public: str  # its age1... recipient
    identity_text: str  # AGE_IDENTITY: an identity file's content, as age-keygen writes it (comments included)
    other_text: str  # another key's identity file: a wrong AGE_IDENTITY
    other_secret: str
    stranger_public: str  # a public key no backup is encrypted to


@pytest.fixture(scope="module")
def keys() -> Keys:
    mine, other, stranger = (x25519.Identity.generate() for _ in range(3))
    secret, public = str(mine), str(mine.to_public())
    text = f"# created: by tests/test_codecs.py\n# public key: {public}\n{secret}\n"
    other_text = f"# public key: {other.to_public()}\n{other}\n"
    SECRET_SOURCES.append(lambda: [text, secret, other_text, str(other), other_text + text])
    return Keys(mine, secret, public, text, other_text, str(other), str(stranger.to_public()))


# -- the source database: the awkward cases, loaded once


def _auth(couch: Any) -> Any:
    return tuple(couch.admin) if couch.admin else None


def _get(couch: Any, db: str, doc_id: str, **params: str) -> dict[str, Any]:
    r = requests.get(doc_url(couch, db, doc_id), params=params, headers={"Accept": "application/json"},
                     auth=_auth(couch), timeout=30)
    assert r.status_code == 200, (doc_id, params, r.text)
    return r.json()


def _inline(data: bytes, content_type: str) -> dict[str, Any]:
    return {"content_type": content_type, "data": base64.b64encode(data).decode()}


def _leaf(doc_id: str, gen: int, branch: str = "main", **body: Any) -> dict[str, Any]:
    """A leaf at `gen` with its whole history (generation 1 shared), as replication writes a conflict."""
    ids = [hashlib.md5(f"{doc_id}/{branch if g > 1 else 'main'}/{g}".encode()).hexdigest() for g in range(gen, 0, -1)]
    return {"_id": doc_id, "_rev": f"{gen}-{ids[0]}", "_revisions": {"start": gen, "ids": ids}, **body}


def _without_revpos(doc: dict[str, Any]) -> dict[str, Any]:
    """A doc as compared across a restore: its attachments' `revpos` left out (pouchdb-server rewrites it)."""
    stubs = {name: {k: v for k, v in stub.items() if k != "revpos"} for name, stub in (doc.get("_attachments") or {}).items()}
    return {**doc, "_attachments": stubs} if stubs else doc


def _snapshot(couch: Any, db: str) -> dict[str, Any]:
    """What a restore must give back: every live doc (winning revision and body), the conflicted doc's conflicts
    and the body of each conflicting leaf, and the bytes and content type of every attachment of a winner."""
    docs = [_without_revpos(doc) for doc in live_docs(couch, db)]
    winner = _get(couch, db, "conflicted", conflicts="true")
    conflicts = sorted(winner.get("_conflicts", []))
    files = {}
    for doc in docs:
        for name, stub in (doc.get("_attachments") or {}).items():
            r = requests.get(f"{doc_url(couch, db, doc['_id'])}/{requests.utils.quote(name, safe='')}",
                             auth=_auth(couch), timeout=30)
            assert r.status_code == 200, (doc["_id"], name, r.text)
            files[f"{doc['_id']}/{name}"] = (hashlib.sha256(r.content).hexdigest(), r.headers["Content-Type"],
                                             stub["content_type"])
    leaves = {rev: _without_revpos(_get(couch, db, "conflicted", rev=rev)) for rev in conflicts}
    return {"docs": docs, "conflicts": conflicts, "leaves": leaves, "files": files}


@dataclass
class Source:
    db: str
    snapshot: dict[str, Any]


@pytest.fixture(scope="module")
def source(couch: Any) -> Source:
    """A design doc, unicode ids, a doc with attachments (text and binary), a doc with conflicts (one leaf with an
    attachment), a deleted doc, and FILLER plain docs. Only read by the tests."""
    db = f"codecs-{uuid.uuid4().hex[:12]}"
    docs: list[dict[str, Any]] = [
        {"_id": "_design/app", "views": {"by_n": {"map": "function (doc) { if (doc.n) { emit(doc.n); } }"}}},
        {"_id": "café-ünïcødé", "name": "Zoë", "text": "日本語のテキスト \u2028 line sep \u2029 para sep"},
        {"_id": "日本", "emoji": "\U0001f600", "nested": {"a": [1, 2.5, None, True, {"b": "ß"}]}},
        {"_id": "with-attachments", "_attachments": {
            "hello.txt": _inline(b"hello, world", "text/plain"),
            "noise.bin": _inline(random.Random(17).randbytes(30_000), "application/octet-stream")}},
        {"_id": "to-delete", "n": -1},
    ]
    docs += [{"_id": f"doc-{i:04d}", "n": i, "text": f"alpha bravo charlie delta {i % 17}", "pad": "p" * 100}
             for i in range(FILLER)]
    answers = load_docs(couch, db, docs)
    assert all(a.get("ok") for a in answers), answers
    rev = next(a["rev"] for a in answers if a["id"] == "to-delete")
    deleted = load_docs(couch, db, [{"_id": "to-delete", "_rev": rev, "_deleted": True}])
    assert deleted[0].get("ok"), deleted
    leaves = [_leaf("conflicted", 2, v="main"),
              _leaf("conflicted", 2, "b", v="b", _attachments={"b.txt": _inline(b"on a conflicting leaf", "text/plain")}),
              _leaf("conflicted", 3, "c", v="c")]
    load_docs(couch, db, leaves, new_edits=False)
    snapshot = _snapshot(couch, db)
    assert len(snapshot["docs"]) == SOURCE_DOCS and len(snapshot["conflicts"]) == CONFLICT_LEAVES  # the premise
    assert len(snapshot["files"]) == 2
    return Source(db, snapshot)


# -- the backups: made once per module, as the tests first ask for them


@dataclass
class Made:
    """A complete backup: its result, manifest and stored bytes, and the bucket it is in."""

    codec: str
    encrypted: bool
    bucket: str
    result: dict[str, Any]
    manifest: dict[str, Any]
    body: bytes
    invocations: list[dict[str, Any]] = field(default_factory=list)  # a split backup's results, in order

    @property
    def key(self) -> str:
        return str(self.result["key"])


class Backups:
    """One-shot backups of the source in one bucket; each split backup in a bucket of its own (a split that fails
    midway leaves a checkpoint that a later backup of the database in that bucket would continue)."""

    def __init__(self, couch: Any, seaweed: Any, source: Source, keys: Keys) -> None:
        self.couch, self.seaweed, self.source, self.keys = couch, seaweed, source, keys
        self.s3 = seaweed.client()
        self.buckets: list[str] = []
        self.bucket = self.new_bucket()
        self._one_shots: dict[tuple[str, bool], Made] = {}
        self._splits: dict[tuple[str, bool], Made] = {}

    def new_bucket(self) -> str:
        name = f"t-{uuid.uuid4().hex[:16]}"
        self.s3.create_bucket(Bucket=name)
        self.buckets.append(name)
        return name

    def params(self, bucket: str, db: str | None = None) -> dict[str, Any]:
        return {**couch_params(self.couch, db or self.source.db), **cos_params(self.seaweed, bucket), **TUNING}

    def codec_params(self, codec: str, encrypted: bool) -> dict[str, Any]:
        return {"COMPRESSION": codec, **({"ENCRYPT_TO": self.keys.public} if encrypted else {})}

    def _made(self, codec: str, encrypted: bool, bucket: str, result: dict[str, Any],
              invocations: list[dict[str, Any]] | None = None) -> Made:
        manifest = json.loads(self.s3.get_object(Bucket=bucket, Key=manifest_key(result["key"]))["Body"].read())
        body = self.s3.get_object(Bucket=bucket, Key=result["key"])["Body"].read()
        return Made(codec, encrypted, bucket, result, manifest, body, invocations or [result])

    def one_shot(self, codec: str, encrypted: bool) -> Made:
        if (codec, encrypted) not in self._one_shots:
            result, _ = run_main({**self.params(self.bucket), **self.codec_params(codec, encrypted)})
            assert result.get("ok") is True and result["complete"] is True and result["invocations"] == 1, result
            self._one_shots[codec, encrypted] = self._made(codec, encrypted, self.bucket, result)
        return self._one_shots[codec, encrypted]

    def split(self, codec: str, encrypted: bool) -> Made:
        if (codec, encrypted) not in self._splits:
            bucket = self.new_bucket()
            # three segments (a middle one) for the encrypted ones, two for the others: 1 s per held invocation
            results = _split_backup({**self.params(bucket), **self.codec_params(codec, encrypted)},
                                    held=2 if encrypted else 1)
            self._splits[codec, encrypted] = self._made(codec, encrypted, bucket, results[-1], results)
        return self._splits[codec, encrypted]

    def identity(self, made: Made) -> dict[str, Any]:
        """AGE_IDENTITY for a restore of `made` (none for an unencrypted backup)."""
        return {"AGE_IDENTITY": self.keys.identity_text} if made.encrypted else {}


@pytest.fixture(scope="module")
def backups(couch: Any, seaweed: Any, source: Source, keys: Keys) -> Iterator[Backups]:
    made = Backups(couch, seaweed, source, keys)
    yield made
    for name in made.buckets:
        with contextlib.suppress(Exception):
            made.s3.delete_bucket(Bucket=name)  # SeaweedFS deletes non-empty buckets


def _stalling_log() -> CapturedLog:
    """A log whose first progress line (the backup's reader thread logs it when it starts its second page) holds
    the reader until the invocation has checkpointed: the invocation stops at its deadline having written the
    lines of its first page, never the whole database, however fast the machine."""
    checkpointed = threading.Event()
    stalled: list[bool] = []

    def stall(_: dict[str, Any]) -> None:
        if not stalled:
            stalled.append(True)
            checkpointed.wait(timeout=10)

    return CapturedLog(hooks={"progress": stall, "backup_checkpointed": lambda _: checkpointed.set()})


def _split_backup(params: dict[str, Any], held: int = 2, done_before: int = 0) -> list[dict[str, Any]]:
    """Invoke with TIME_BUDGET/SAFETY_MARGIN until the backup is complete (as test_checkpoint does). The first `held`
    invocations that write data are held at their second page (so the database is split over at least `held` + 1
    invocations, each one a segment); the later ones run free within their 1 s. Returns every result.
    `done_before`: invocations of this backup that already checkpointed."""
    results: list[dict[str, Any]] = []
    stalled, docs = 0, 0
    for number in range(MAX_INVOCATIONS):
        stall = stalled < held and number < held + 4  # (a page that fills no line writes nothing: stop holding)
        result, _ = run_main({**params, **SPLIT}, _stalling_log() if stall else CapturedLog())
        assert result.get("ok") is True, result
        results.append(result)
        if result["complete"]:
            assert result["invocations"] == done_before + len(results), results
            return results
        assert "stopped before the deadline" in result["detail"], result
        if result["docs"] > docs:
            stalled, docs = stalled + 1, result["docs"]
    raise AssertionError(f"not complete after {MAX_INVOCATIONS} invocations: {results[-3:]}")


# -- decoding, independently of the product


def _unzstd(data: bytes) -> bytes:
    out = []
    while data:
        frame = zstandard.ZstdDecompressor().decompressobj()
        out.append(frame.decompress(data))
        assert frame.eof, "a zstd frame is cut short"
        data = frame.unused_data
    return b"".join(out)


def _plain(made: Made, identity: x25519.Identity | None = None) -> bytes:
    """The plain couchbackup text of a backup: each segment's age stream decrypted on its own, then decompressed."""
    body, manifest = made.body, made.manifest
    if manifest.get("encryption"):
        assert identity is not None
        starts = [s["stored"] for s in manifest["segments"]]
        ends = [*starts[1:], len(body)]
        body = b"".join(pyrage.decrypt(body[a:b], [identity]) for a, b in zip(starts, ends, strict=True))
    codec = manifest.get("compression", "none")
    if codec == "gzip":
        return gzip.decompress(body)
    if codec == "zstd":
        return _unzstd(body)
    return body


def _couchbackup_file(plain: bytes) -> tuple[dict[str, Any], list[bytes]]:
    """Line 1 a metadata line, then one JSON array of documents per line, ASCII only; (metadata, document lines)."""
    assert plain.endswith(b"\n") and plain.isascii()
    lines = plain.split(b"\n")[:-1]
    meta = json.loads(lines[0])
    assert meta["name"] == "cloudant-cos-backup" and meta["mode"] == "shallow", meta
    for line in lines[1:]:
        docs = json.loads(line)
        assert isinstance(docs, list) and docs and all(isinstance(d, dict) and "_id" in d for d in docs), line[:200]
    return meta, lines[1:]


def _doc_lines(plain: bytes) -> list[bytes]:
    return _couchbackup_file(plain)[1]


def _documents(plain: bytes) -> list[list[dict[str, Any]]]:
    """The document lines of a backup, as compared between two backups of one database: the same lines holding the
    same entries; a conflicted document's leaves in any order (the order pouchdb-server answers them varies, see
    backup/refetch.py)."""
    return [sorted(json.loads(line), key=lambda doc: (doc["_id"], doc["_rev"])) for line in _doc_lines(plain)]


def _entries(plain: bytes) -> int:
    return sum(len(json.loads(line)) for line in _doc_lines(plain))


# -- running the operations


def _restore(backups: Backups, made: Made, target: str, **extra: Any) -> tuple[dict[str, Any], CapturedLog]:
    return run_main({**backups.params(made.bucket, target), "OPERATION": "restore", "COS_KEY": made.key, **extra})


def _verify(backups: Backups, made: Made, **extra: Any) -> dict[str, Any]:
    result, _ = run_main({**backups.params(made.bucket), "OPERATION": "verify", "COS_KEY": made.key, **extra})
    return result


def _cli(params: dict[str, Any], *argv: str) -> tuple[int, dict[str, Any], subprocess.CompletedProcess[str]]:
    """`python -m backup <argv> --json` with `params` as its environment (and nothing of ours from the caller's)."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("__OW_", "CLOUDANT_", "COS_", "AGE_", "ENCRYPT_", "COMPRESSION"))}
    env.update({k: str(v) for k, v in params.items()})
    proc = subprocess.run([sys.executable, "-m", "backup", *argv, "--json"], env=env, cwd=ROOT, capture_output=True,
                          text=True, timeout=120)
    OUTPUTS.extend([proc.stdout, proc.stderr])
    lines = proc.stdout.strip().splitlines()
    assert lines, (proc.returncode, proc.stderr[-2000:])
    return proc.returncode, json.loads(lines[-1]), proc


def _decrypt(backups: Backups, made: Made, output: Path, identity: str | None = None
             ) -> tuple[int, dict[str, Any], subprocess.CompletedProcess[str]]:
    params = {**cos_params(backups.seaweed, made.bucket), **({"AGE_IDENTITY": identity} if identity else {})}
    return _cli(params, "decrypt", "--key", made.key, "--output", str(output))


def _tool(name: str) -> str:
    found = shutil.which(name)
    if found is None:
        pytest.skip(f"no {name} binary")
    return found


def _keyfile(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "key.txt"
    path.write_text(text)
    path.chmod(0o600)
    return path


def _names_part(error: str, part: int) -> bool:
    """verify says `part(s) 2`, restore `part 2 of 2`."""
    return re.search(rf"\bpart(?:\(s\))? {part}\b", error) is not None


def _doc_count(couch: Any, db: str) -> int:
    r = requests.get(f"{couch.url}/{requests.utils.quote(db, safe='')}", auth=_auth(couch), timeout=30)
    r.raise_for_status()
    return int(r.json()["doc_count"])


def _all_dbs(couch: Any) -> set[str]:
    return set(requests.get(f"{couch.url}/_all_dbs", auth=_auth(couch), timeout=30).json())


def _target() -> str:
    return f"t-{uuid.uuid4().hex[:16]}"


def _copy(s3: Any, made: Made, bucket: str, body: bytes, manifest: dict[str, Any] | None = None) -> Made:
    """The backup with another body (or manifest) at the same key in another bucket: its own key and manifest kept."""
    manifest = manifest if manifest is not None else made.manifest
    s3.put_object(Bucket=bucket, Key=made.key, Body=body)
    s3.put_object(Bucket=bucket, Key=manifest_key(made.key), Body=json.dumps(manifest).encode())
    return Made(made.codec, made.encrypted, bucket, made.result, manifest, body)


# -- 1. one-shot round trips


@pytest.mark.parametrize(("codec", "encrypted"), VARIANTS)
def test_a_one_shot_backup_round_trips(couch, backups, source, keys, codec, encrypted):
    made = backups.one_shot(codec, encrypted)
    result, manifest = made.result, made.manifest
    assert made.key.endswith("_backup.txt" + SUFFIXES[codec] + (".age" if encrypted else "")), made.key
    assert result["compression"] == manifest["compression"] == codec, (result, manifest)
    assert result["encrypted"] is encrypted, result
    assert result["docs"] == manifest["docs"] == SOURCE_DOCS + CONFLICT_LEAVES, result
    assert result["conflict_leaves"] == CONFLICT_LEAVES, result
    assert result["bytes"] == manifest["bytes"] == len(made.body) == sum(p["size"] for p in manifest["parts"])
    assert "compression_level" in manifest
    assert manifest["encryption"] == ({"format": "age", "recipients": [keys.public]} if encrypted else None)
    # plain text (none, unencrypted) records no segment: its stored bytes are the text, which every reader takes as
    # one segment from byte 0
    plain_text = codec == "none" and not encrypted
    assert manifest["segments"] == ([] if plain_text else [{"stored": 0, "plain": 0}]), manifest["segments"]
    assert keys.secret not in json.dumps(manifest) and "AGE-SECRET-KEY" not in json.dumps(manifest).upper()

    plain = _plain(made, keys.identity)
    assert result["plain_bytes"] == manifest["plain_bytes"] == len(plain), (result, manifest)
    meta, lines = _couchbackup_file(plain)
    assert meta["database"] == source.db and meta["attachments"] is True and meta["conflicts"] is True, meta
    assert _entries(plain) == manifest["docs"] and len(lines) + 1 == manifest["lines"], manifest
    # every codec holds the same documents as the plain one (line 1 differs only by the start time)
    assert _documents(plain) == _documents(backups.one_shot("none", False).body)
    if codec != "none":
        assert len(made.body) < manifest["plain_bytes"], (len(made.body), manifest["plain_bytes"])
    elif not encrypted:
        assert made.body == plain and manifest["plain_bytes"] == manifest["bytes"]
    else:
        assert len(made.body) > len(plain)  # age's header and tags, nothing compressed
    assert made.body.startswith(AGE_HEADER if encrypted else MAGIC[codec])

    head = backups.s3.head_object(Bucket=made.bucket, Key=made.key)
    assert head["ContentType"] == ("application/octet-stream" if encrypted else CONTENT_TYPES[codec]), head
    assert not head.get("ContentEncoding"), head  # else S3 clients would inflate it on download

    target = _target()
    restored, _ = _restore(backups, made, target, CREATE_TARGET=True, RESTORE_BATCH_SIZE=40, **backups.identity(made))
    assert restored.get("ok") is True and restored["docs"] == SOURCE_DOCS, restored
    assert _snapshot(couch, target) == source.snapshot


def test_list_and_latest_see_the_backups_of_every_codec(backups, source):
    made = [backups.one_shot(codec, encrypted) for codec in ("gzip", "zstd", "none") for encrypted in (False, True)]
    listed, _ = run_main({**backups.params(backups.bucket), "OPERATION": "list", "CLOUDANT_DB": source.db})
    assert listed.get("count") == len(made), listed
    entries = {entry["key"]: entry for entry in listed["backups"]}
    assert set(entries) == {m.key for m in made}, listed
    assert all(entry["complete"] and entry["docs"] == SOURCE_DOCS + CONFLICT_LEAVES for entry in entries.values())
    newest = max(made, key=lambda m: m.key)  # keys of one database sort by their time
    verified, _ = run_main({**backups.params(backups.bucket), "OPERATION": "verify", "COS_KEY": "latest",
                            "CLOUDANT_DB": source.db})
    assert verified.get("ok") is True and verified["key"] == newest.key, verified


def test_gzip_is_the_default_and_a_level_is_recorded(backups, source, bucket):
    params = backups.params(bucket)
    default, _ = run_main(params)
    assert default.get("ok") and default["key"].endswith("_backup.txt.gz") and default["compression"] == "gzip", default
    best, _ = run_main({**params, "COMPRESSION": "gzip", "COMPRESSION_LEVEL": 9})
    assert best.get("ok") and best["key"].endswith("_backup.txt.gz"), best
    manifest = json.loads(backups.s3.get_object(Bucket=bucket, Key=manifest_key(best["key"]))["Body"].read())
    assert manifest["compression"] == "gzip" and manifest["compression_level"] == 9, manifest
    body = backups.s3.get_object(Bucket=bucket, Key=best["key"])["Body"].read()
    assert _documents(gzip.decompress(body)) == _documents(backups.one_shot("none", False).body)
    assert best["bytes"] <= default["bytes"] and best["plain_bytes"] == default["plain_bytes"], (best, default)


# -- 2. backups split over several invocations


@pytest.mark.parametrize(("codec", "encrypted"), SPLIT_VARIANTS)
def test_a_backup_split_over_invocations_round_trips(couch, backups, source, keys, codec, encrypted):
    made = backups.split(codec, encrypted)
    manifest, results = made.manifest, made.invocations
    print(f"\n{codec}{'+age' if encrypted else ''}: {len(results)} invocations, docs after each: "
          f"{[r['docs'] for r in results]}, segments {manifest['segments']}")
    assert made.key.endswith("_backup.txt" + SUFFIXES[codec] + (".age" if encrypted else "")), made.key
    assert {r["key"] for r in results} == {made.key}
    assert manifest["invocations"] == len(results) >= (3 if encrypted else 2), results
    segments = manifest["segments"]
    assert len(segments) > 1 and len(segments) <= len(results), segments
    assert segments[0] == {"stored": 0, "plain": 0}
    # each segment begins where an invocation began: at the stored bytes the one before it had checkpointed
    assert {s["stored"] for s in segments} <= {0} | {r["bytes"] for r in results[:-1]}, (segments, results)
    for segment in segments:
        start = made.body[segment["stored"]:]
        assert start.startswith(AGE_HEADER if encrypted else MAGIC[codec]), (segment, start[:30])
    assert manifest["encryption"] == ({"format": "age", "recipients": [keys.public]} if encrypted else None)

    plain = _plain(made, keys.identity)
    assert manifest["plain_bytes"] == made.result["plain_bytes"] == len(plain), manifest
    # the same documents, in the same lines, as a one-shot plain backup of the unchanged database
    one_shot = backups.one_shot("none", False)
    assert _documents(plain) == _documents(one_shot.body)
    meta, expected = json.loads(plain.split(b"\n")[0]), json.loads(one_shot.body.split(b"\n")[0])
    assert meta.pop("started") != expected.pop("started") and meta == expected
    assert [plain[s["plain"]:].split(b"\n")[0][:1] for s in segments[1:]] == [b"["] * (len(segments) - 1)  # line starts
    if codec != "none":
        assert len(made.body) < len(plain)

    verified = _verify(backups, made, **backups.identity(made))
    assert verified.get("ok") is True and verified["content_checked"] is True, verified
    assert verified["plain_bytes"] == len(plain) and verified["docs"] == manifest["docs"], verified
    target = _target()
    restored, _ = _restore(backups, made, target, CREATE_TARGET=True, **backups.identity(made))
    assert restored.get("ok") is True and restored["docs"] == SOURCE_DOCS, restored
    assert _snapshot(couch, target) == source.snapshot


def test_a_continued_backup_keeps_the_codec_and_recipients_it_began_with(couch, backups, source, keys):
    """The invocations after the first are given other COMPRESSION and ENCRYPT_TO: one object must never mix
    codecs or keys, so they go on with the checkpoint's (age streams to the first recipients, zstd frames)."""
    bucket = backups.new_bucket()
    first = {**backups.params(bucket), "COMPRESSION": "zstd", "ENCRYPT_TO": keys.public}
    stopped, _ = run_main({**first, **SPLIT}, _stalling_log())
    assert stopped.get("ok") is True and stopped["complete"] is False and stopped["docs"] > 0, stopped
    later = {**backups.params(bucket), "COMPRESSION": "gzip", "ENCRYPT_TO": keys.stranger_public}
    results = [stopped, *_split_backup(later, held=0, done_before=1)]
    made = backups._made("zstd", True, bucket, results[-1], results)
    assert made.key == stopped["key"] and made.key.endswith("_backup.txt.zst.age"), made.key
    assert made.manifest["compression"] == "zstd", made.manifest
    assert made.manifest["encryption"] == {"format": "age", "recipients": [keys.public]}, made.manifest
    assert len(made.manifest["segments"]) >= 2 and all(
        made.body[s["stored"]:].startswith(AGE_HEADER) for s in made.manifest["segments"]), made.manifest["segments"]
    assert _documents(_plain(made, keys.identity)) == _documents(backups.one_shot("none", False).body)
    target = _target()
    restored, _ = _restore(backups, made, target, CREATE_TARGET=True, AGE_IDENTITY=keys.identity_text)
    assert restored.get("ok") is True and _snapshot(couch, target) == source.snapshot, restored


def test_a_restore_split_by_the_deadline_begins_each_invocation_inside_a_segment(couch, backups, source, keys):
    """Each invocation's deadline has come: it writes a line and stops, and the next one reads on from that line,
    which lies inside one of the object's age streams (decrypted from that stream's start)."""
    made = backups.split("zstd", True)
    target = _target()
    args = {**backups.params(made.bucket, target), "OPERATION": "restore", "COS_KEY": made.key, "CREATE_TARGET": True,
            "AGE_IDENTITY": keys.identity_text}
    results = []
    for _ in range(40):
        result, _ = run_at_once(args)
        assert result.get("ok") is True, result
        results.append(result)
        if result["complete"]:
            break
    assert results[-1]["complete"] and results[-1]["invocations"] == len(results) >= len(made.manifest["segments"])
    assert results[-1]["docs"] == SOURCE_DOCS, results[-1]
    assert _snapshot(couch, target) == source.snapshot


# -- 3. the standard tools, and `decrypt`


@pytest.mark.parametrize("kind", ["gzip", "zstd", "gzip+age"])
def test_the_standard_tools_read_a_one_shot_object_as_decrypt_does(backups, keys, tmp_path, kind):
    codec, encrypted = kind.split("+")[0], kind.endswith("+age")
    made = backups.one_shot(codec, encrypted)
    stored = tmp_path / made.key.replace(":", "-")
    stored.write_bytes(made.body)
    if kind == "gzip":
        plain = subprocess.run([_tool("gunzip"), "-c", str(stored)], capture_output=True, check=True).stdout
    elif kind == "zstd":
        plain = subprocess.run([_tool("zstd"), "-dc", str(stored)], capture_output=True, check=True).stdout
    else:
        gunzip, age = _tool("gunzip"), _tool("age")
        opened = subprocess.run([age, "-d", "-i", str(_keyfile(tmp_path, keys.identity_text)), str(stored)],
                                capture_output=True, check=True).stdout
        plain = subprocess.run([gunzip, "-c"], input=opened, capture_output=True, check=True).stdout
    assert plain == _plain(made, keys.identity)
    assert _documents(plain) == _documents(backups.one_shot("none", False).body)

    output = tmp_path / "plain.txt"
    code, result, proc = _decrypt(backups, made, output, keys.identity_text if encrypted else None)
    assert code == 0 and result.get("ok") is True and result["operation"] == "decrypt", (result, proc.stderr[-2000:])
    assert result["key"] == made.key and result["output"] == str(output), result
    assert result["plain_bytes"] == len(plain) and result["bytes"] == len(made.body), result
    assert output.read_bytes() == plain
    assert {p.name for p in tmp_path.iterdir()} - {"key.txt"} == {stored.name, output.name}  # no temp file left
    assert "AGE-SECRET-KEY" not in proc.stdout + proc.stderr


@pytest.mark.parametrize("codec", ["gzip", "zstd"])
def test_the_standard_tools_read_a_multi_segment_object(backups, tmp_path, codec):
    made = backups.split(codec, False)
    assert len(made.manifest["segments"]) > 1
    stored = tmp_path / "object"
    stored.write_bytes(made.body)
    command = [_tool("gunzip"), "-c"] if codec == "gzip" else [_tool("zstd"), "-dc"]
    plain = subprocess.run([*command, str(stored)], capture_output=True, check=True).stdout
    assert plain == _plain(made) and len(plain) == made.manifest["plain_bytes"]
    assert _documents(plain) == _documents(backups.one_shot("none", False).body)


def test_age_cannot_read_a_multi_segment_object_but_decrypt_can(backups, keys, tmp_path):
    made = backups.split("gzip", True)
    assert len(made.manifest["segments"]) > 1
    stored = tmp_path / "object"
    stored.write_bytes(made.body)
    keyfile = _keyfile(tmp_path, keys.identity_text)
    if shutil.which("age") is not None:
        refused = subprocess.run(["age", "-d", "-i", str(keyfile), str(stored)], capture_output=True)
        assert refused.returncode != 0, "age read several concatenated streams: the README's caveat is wrong"
    output = tmp_path / "plain.txt"
    code, result, proc = _decrypt(backups, made, output, keys.identity_text)
    assert code == 0 and result.get("ok") is True, (result, proc.stderr[-2000:])
    assert output.read_bytes() == _plain(made, keys.identity)
    assert result["plain_bytes"] == made.manifest["plain_bytes"] == output.stat().st_size, result
    assert _documents(output.read_bytes()) == _documents(backups.one_shot("none", False).body)
    assert "AGE-SECRET-KEY" not in proc.stdout + proc.stderr


def test_decrypt_with_a_wrong_or_missing_identity_writes_no_file(backups, keys, tmp_path):
    made = backups.one_shot("zstd", True)
    for identity in (None, keys.other_text):
        output = tmp_path / "plain.txt"
        code, result, proc = _decrypt(backups, made, output, identity)
        assert code == 2 and result.get("kind") == "config" and "AGE_IDENTITY" in result["error"], result
        assert list(tmp_path.iterdir()) == [], list(tmp_path.iterdir())  # nothing, not even a temp file
        assert "AGE-SECRET-KEY" not in proc.stdout + proc.stderr


def test_decrypt_that_cannot_write_its_file_says_so_plainly(backups, keys):
    """A file that cannot be written (here: a folder nothing can be created in, even by root) is the user's to
    fix: an error naming OUTPUT and why, exit code 1, not an 'unexpected' crash."""
    made = backups.one_shot("gzip", True)
    code, result, _ = _decrypt(backups, made, Path("/proc/plain.txt"), keys.identity_text)
    assert code == 1 and result.get("kind") == "error", result
    assert "writing OUTPUT /proc/plain.txt" in result["error"] and "unexpected" not in result["error"], result


def test_the_action_refuses_decrypt(backups, keys, tmp_path):
    made = backups.one_shot("gzip", True)
    output = tmp_path / "never-written.txt"
    result, _ = run_main({**backups.params(made.bucket), "OPERATION": "decrypt", "COS_KEY": made.key,
                          "OUTPUT": str(output), "AGE_IDENTITY": keys.identity_text})
    assert result.get("ok") is not True and result.get("kind") == "config" and "decrypt" in result["error"], result
    assert list(tmp_path.iterdir()) == []


# -- 4. verify


@pytest.mark.parametrize(("codec", "encrypted"), VARIANTS)
def test_verify_checks_every_codec(backups, keys, codec, encrypted):
    made = backups.one_shot(codec, encrypted)
    stored_only = _verify(backups, made)
    assert stored_only.get("ok") is True, stored_only
    assert stored_only["compression"] == codec and stored_only["encrypted"] is encrypted, stored_only
    assert stored_only["content_checked"] is (not encrypted), stored_only
    assert stored_only["bytes"] == len(made.body) and stored_only["sha256"] == made.manifest["sha256"], stored_only
    assert stored_only["plain_bytes"] == made.manifest["plain_bytes"], stored_only
    if encrypted:
        checked = _verify(backups, made, AGE_IDENTITY=keys.identity_text)
        assert checked.get("ok") is True and checked["content_checked"] is True, checked
        assert checked["docs"] == made.manifest["docs"] and checked["plain_bytes"] == made.manifest["plain_bytes"]


@pytest.mark.parametrize("field_", ["docs", "plain_bytes"])
def test_verify_with_the_identity_checks_the_content_not_only_the_stored_bytes(backups, keys, bucket, field_):
    """A manifest whose parts match the object but whose count of the plain content does not: only a verify that
    decrypts (AGE_IDENTITY given) can tell; one without it says it did not check the content."""
    made = backups.one_shot("gzip", True)
    forged = _copy(backups.s3, made, bucket, made.body, {**made.manifest, field_: made.manifest[field_] + 1})
    stored_only = _verify(backups, forged)
    assert stored_only.get("ok") is True and stored_only["content_checked"] is False, stored_only
    checked = _verify(backups, forged, AGE_IDENTITY=keys.identity_text)
    assert checked.get("kind") == "format", checked
    assert str(made.manifest[field_]) in checked["error"] and str(made.manifest[field_] + 1) in checked["error"], checked


@pytest.mark.parametrize(("codec", "encrypted"), VARIANTS)
def test_a_damaged_byte_fails_verify_and_restore_naming_the_part(couch, backups, keys, bucket, codec, encrypted):
    made = backups.one_shot(codec, encrypted)
    assert len(made.manifest["parts"]) == 1
    body = bytearray(made.body)
    body[len(body) // 2] ^= 0x04
    damaged = _copy(backups.s3, made, bucket, bytes(body))  # the same size: only the parts' sha256 can tell
    identities = [{}, {"AGE_IDENTITY": keys.identity_text}] if encrypted else [{}]
    for identity in identities:
        failed = _verify(backups, damaged, **identity)
        assert failed.get("kind") == "format" and _names_part(failed["error"], 1), (identity.keys(), failed)
    target = _target()
    result, _ = _restore(backups, damaged, target, CREATE_TARGET=True, **backups.identity(made))
    assert result.get("kind") == "format" and _names_part(result["error"], 1), result
    assert not db_exists(couch, target), "the restore left the target it created (and wrote nothing into)"


def test_a_two_part_backup_split_over_invocations_and_its_damaged_second_part(couch, seaweed, keys, bucket, s3_client,
                                                                            tmp_path):
    """Two parts (base64 of random bytes hardly compresses), written by several invocations: a segment spans
    the part boundary. It verifies and restores whole; then a byte flipped in the middle of part 2 is named by
    verify (with and without the key), and the restore writes none of the documents after part 1."""
    db = f"codecs-bulky-{uuid.uuid4().hex[:8]}"
    docs: list[dict[str, Any]] = [{"_id": f"a-{i:03d}", "n": i} for i in range(150)]
    docs += [{"_id": f"blob-{i}"} for i in range(7)] + [{"_id": f"z-{i:03d}", "n": i} for i in range(50)]
    load_docs(couch, db, docs)
    for i in range(7):
        rev = _get(couch, db, f"blob-{i}")["_rev"]
        r = requests.put(f"{doc_url(couch, db, f'blob-{i}')}/data.bin", params={"rev": rev},
                         data=random.Random(i).randbytes(MIB), headers={"Content-Type": "application/octet-stream"},
                         auth=_auth(couch), timeout=60)
        assert r.status_code == 201, r.text
    params = {**couch_params(couch, db), **cos_params(seaweed, bucket), **TUNING}
    made = _split_backup({**params, "COMPRESSION": "zstd", "ENCRYPT_TO": keys.public}, held=1)[-1]
    assert made["parts"] == 2 and made["key"].endswith(".zst.age"), made
    manifest = json.loads(s3_client.get_object(Bucket=bucket, Key=manifest_key(made["key"]))["Body"].read())
    sizes = [p["size"] for p in manifest["parts"]]
    starts = [s["stored"] for s in manifest["segments"]]
    assert len(starts) >= 2 and any(a < sizes[0] < b for a, b in zip(starts, [*starts[1:], sum(sizes)], strict=True))
    whole, _ = run_main({**params, "OPERATION": "verify", "COS_KEY": made["key"], "AGE_IDENTITY": keys.identity_text})
    assert whole.get("ok") is True and whole["content_checked"] is True, whole
    copy = f"{db}-whole"
    restored, _ = run_main({**params, "OPERATION": "restore", "COS_KEY": made["key"], "CLOUDANT_DB": copy,
                            "CREATE_TARGET": True, "AGE_IDENTITY": keys.identity_text})
    assert restored.get("ok") is True and restored["docs"] == len(docs), restored
    # the stubs' digests are the MD5 of the bytes pouchdb-server holds: the same attachments
    assert [_without_revpos(d) for d in live_docs(couch, copy)] == [_without_revpos(d) for d in live_docs(couch, db)]

    body = bytearray(s3_client.get_object(Bucket=bucket, Key=made["key"])["Body"].read())
    body[sizes[0] + sizes[1] // 2] ^= 0x04
    s3_client.put_object(Bucket=bucket, Key=made["key"], Body=bytes(body))  # the manifest stays

    for identity in ({}, {"AGE_IDENTITY": keys.identity_text}):
        failed, _ = run_main({**params, "OPERATION": "verify", "COS_KEY": made["key"], **identity})
        assert failed.get("kind") == "format" and _names_part(failed["error"], 2), (identity.keys(), failed)
    target = f"{db}-restored"
    result, _ = run_main({**params, "OPERATION": "restore", "COS_KEY": made["key"], "CLOUDANT_DB": target,
                          "CREATE_TARGET": True, "RESTORE_BATCH_SIZE": 20, "AGE_IDENTITY": keys.identity_text})
    assert result.get("kind") == "format" and _names_part(result["error"], 2), result
    if db_exists(couch, target):
        held = live_docs(couch, target)
        assert f"now holds {len(held)} documents" in result["error"], result
        source = {d["_id"]: d for d in live_docs(couch, db)}
        assert all(_without_revpos(doc) == _without_revpos(source[doc["_id"]]) for doc in held)
        # blob-6 ends past 6.5 MiB of stored bytes, the z- docs after it: all in part 2
        assert not [d["_id"] for d in held if d["_id"] == "blob-6" or d["_id"].startswith("z-")], [d["_id"] for d in held]
    else:
        assert "deleted again" in result["error"], result

    output = tmp_path / "plain.txt"
    code, failed_decrypt, _ = _cli({**cos_params(seaweed, bucket), "AGE_IDENTITY": keys.identity_text}, "decrypt",
                                   "--key", made["key"], "--output", str(output))
    assert code == 5 and failed_decrypt.get("kind") == "format", failed_decrypt
    assert _names_part(failed_decrypt["error"], 2), failed_decrypt
    assert list(tmp_path.iterdir()) == []  # written only when whole


# -- 5. a missing or wrong identity: refused before anything is written


@pytest.mark.parametrize("case", ["missing", "another-key"])
def test_restore_without_the_right_identity_is_refused_before_anything_is_written(couch, backups, keys, case):
    made = backups.one_shot("gzip", True)
    identity = {} if case == "missing" else {"AGE_IDENTITY": keys.other_text}
    created = _target()
    result, log = _restore(backups, made, created, CREATE_TARGET=True, **identity)
    assert result.get("kind") == "config" and "AGE_IDENTITY" in result["error"], result
    if case == "another-key":
        assert "does not match any recipient" in result["error"], result
    assert not db_exists(couch, created), "the target was created"

    existing = _target()
    requests.put(f"{couch.url}/{existing}", auth=_auth(couch), timeout=30).raise_for_status()
    result, log = _restore(backups, made, existing, **identity)
    assert result.get("kind") == "config" and "AGE_IDENTITY" in result["error"], result
    assert _doc_count(couch, existing) == 0 and live_docs(couch, existing) == []
    assert not [k for k in keys_in(backups.s3, made.bucket) if ".restore." in k]  # no restore checkpoint either


def test_drill_needs_the_right_identity_and_leaves_no_scratch_database(couch, backups, keys):
    made = backups.one_shot("zstd", True)
    drill = {**backups.params(made.bucket), "OPERATION": "drill", "COS_KEY": made.key}
    before = _all_dbs(couch)
    for identity in ({}, {"AGE_IDENTITY": keys.other_text}):
        scratch = _target()
        result, _ = run_main({**drill, "DRILL_DB": scratch, **identity})
        assert result.get("ok") is not True and result.get("kind") == "config", result
        assert "AGE_IDENTITY" in result["error"], result
        assert not db_exists(couch, scratch) and _all_dbs(couch) == before
    scratch = _target()
    good, _ = run_main({**drill, "DRILL_DB": scratch, "AGE_IDENTITY": keys.identity_text})
    assert good.get("ok") is True and good["equal"] is True and good["docs"] == SOURCE_DOCS, good
    assert good["scratch_deleted"] is True and _all_dbs(couch) == before


# -- 6. AGE_IDENTITY is a secret


def test_the_identity_never_appears_in_a_result_or_log(backups, keys):
    made = backups.one_shot("gzip", True)
    # an identity file of two keys, the one that opens it second
    good, good_log = _restore(backups, made, _target(), CREATE_TARGET=True,
                              AGE_IDENTITY=keys.other_text + keys.identity_text)
    assert good.get("ok") is True, good
    wrong, wrong_log = _restore(backups, made, _target(), CREATE_TARGET=True, AGE_IDENTITY=keys.other_text)
    assert wrong.get("kind") == "config", wrong
    verified, verify_log = run_main({**backups.params(made.bucket), "OPERATION": "verify", "COS_KEY": made.key,
                                     "AGE_IDENTITY": keys.identity_text})
    assert verified.get("ok") is True, verified
    texts = [good_log.text, json.dumps(good), wrong_log.text, json.dumps(wrong), verify_log.text, json.dumps(verified)]
    for text in texts:
        assert "AGE-SECRET-KEY" not in text.upper()
    assert_clean(*texts, secrets={keys.identity_text, keys.secret, keys.other_text, keys.other_secret,
                                  keys.other_text + keys.identity_text})
    # and the session's scan looks for them in every output of the suite
    assert {keys.identity_text, keys.secret, keys.other_secret} <= session_secrets()


@pytest.mark.parametrize("case", ["public-key", "cut-short", "ssh-key"])
def test_a_malformed_identity_is_a_config_error_that_does_not_quote_it(couch, backups, keys, case):
    value = {"public-key": f"# the recipient, by mistake\n{keys.stranger_public}\n",
             "cut-short": keys.secret[:-3],
             "ssh-key": "-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXktdjEAAAAABG5vbmU=\n"}[case]
    made = backups.one_shot("gzip", True)
    target = _target()
    result, log = _restore(backups, made, target, CREATE_TARGET=True, AGE_IDENTITY=value)
    assert result.get("kind") == "config" and "AGE_IDENTITY" in result["error"], result
    for text in (log.text, json.dumps(result)):
        assert keys.stranger_public not in text and keys.secret[:-3] not in text and "b3BlbnNzaC1rZXkt" not in text
        assert SECRET_KEY.search(text.upper()) is None  # the message may name the prefix, as a hint: never a key
    assert not db_exists(couch, target)


def test_a_private_key_in_encrypt_to_is_refused_without_quoting_it(backups, keys, bucket):
    result, log = run_main({**backups.params(bucket), "ENCRYPT_TO": f"{keys.public},{keys.secret}"})
    assert result.get("kind") == "config" and "ENCRYPT_TO" in result["error"], result
    assert_clean(log.text, json.dumps(result), secrets={keys.secret})
    assert keys_in(backups.s3, bucket) == []


# -- 7. objects of earlier versions, and chains that mix them


def test_an_object_of_an_earlier_version_still_restores_and_verifies(couch, backups, source, bucket):
    """A plain `_backup.txt` whose manifest has none of the new fields (no compression, segments, encryption)."""
    made = backups.one_shot("none", False)
    new = ("compression", "compression_level", "plain_bytes", "segments", "encryption")
    old = _copy(backups.s3, made, bucket, made.body, {k: v for k, v in made.manifest.items() if k not in new})
    verified = _verify(backups, old)
    assert verified.get("ok") is True and verified["docs"] == made.manifest["docs"], verified
    assert verified["compression"] == "none" and verified["encrypted"] is False, verified
    target = _target()
    restored, _ = _restore(backups, old, target, CREATE_TARGET=True)
    assert restored.get("ok") is True and restored["docs"] == SOURCE_DOCS, restored
    assert _snapshot(couch, target) == source.snapshot


def test_a_chain_of_a_plain_full_and_an_encrypted_gzip_incremental(couch, seaweed, keys, bucket, s3_client):
    db = f"codecs-chain-{uuid.uuid4().hex[:8]}"
    load_docs(couch, db, [{"_id": f"doc-{i:03d}", "n": i} for i in range(60)]
              + [{"_id": "_design/app", "views": {"v": {"map": "function (doc) { emit(doc.n); }"}}},
                 {"_id": "ünï-çødé", "text": "日本語"}])
    params = {**couch_params(couch, db), **cos_params(seaweed, bucket), "BACKUP_MODE": "incremental",
              "DOCS_PER_LINE": 20}
    full, _ = run_main({**params, "COMPRESSION": "none"})
    assert full.get("ok") and full["kind"] == "full" and full["key"].endswith("_backup.txt"), full
    current = {d["_id"]: d for d in live_docs(couch, db)}
    answers = load_docs(couch, db, [{**current["doc-001"], "n": "changed"}, {**current["ünï-çødé"], "more": True},
                                    {"_id": "doc-002", "_rev": current["doc-002"]["_rev"], "_deleted": True},
                                    {"_id": "new-1", "n": -1}])
    assert all(a.get("ok") for a in answers), answers
    incremental, _ = run_main({**params, "COMPRESSION": "gzip", "ENCRYPT_TO": keys.public})
    assert incremental.get("ok") and incremental["kind"] == "incremental", incremental
    assert incremental["key"].endswith("_backup.txt.gz.age") and incremental["encrypted"] is True, incremental

    restore = {**params, "OPERATION": "restore", "COS_KEY": "latest", "SOURCE_DB": db, "CREATE_TARGET": True}
    refused_target = f"{db}-refused"
    refused, _ = run_main({**restore, "CLOUDANT_DB": refused_target})  # its full backup alone needs no key
    assert refused.get("kind") == "config" and "AGE_IDENTITY" in refused["error"], refused
    assert not db_exists(couch, refused_target), "the plain full backup was written before the key was asked for"

    target = f"{db}-restored"
    restored, _ = run_main({**restore, "CLOUDANT_DB": target, "AGE_IDENTITY": keys.identity_text})
    assert restored.get("ok") is True and restored["chain"] == [full["key"], incremental["key"]], restored
    assert live_docs(couch, target) == live_docs(couch, db)
    # doc-002 is gone from the target, and known there as deleted at the source's tombstone revision
    assert requests.get(doc_url(couch, target, "doc-002"), auth=_auth(couch), timeout=30).status_code == 404
    tombstone = {"rev": next(a["rev"] for a in answers if a["id"] == "doc-002")}
    for db_here in (db, target):
        deleted = requests.get(doc_url(couch, db_here, "doc-002"), params=tombstone, auth=_auth(couch), timeout=30)
        assert deleted.status_code == 200 and deleted.json().get("_deleted") is True, (db_here, deleted.text)

    stored_only, _ = run_main({**params, "OPERATION": "verify", "COS_KEY": incremental["key"]})
    assert stored_only.get("ok") is True and stored_only["content_checked"] is False, stored_only
    assert stored_only["chain"] == [full["key"], incremental["key"]], stored_only
    checked, _ = run_main({**params, "OPERATION": "verify", "COS_KEY": "latest", "CLOUDANT_DB": db,
                           "AGE_IDENTITY": keys.identity_text})
    assert checked.get("ok") is True and checked["content_checked"] is True, checked
    drilled, _ = run_main({**params, "OPERATION": "drill", "DRILL_DB": f"{db}-drill", "AGE_IDENTITY": keys.identity_text})
    assert drilled.get("ok") is True and drilled["equal"] is True, drilled
    assert drilled["chain"] == [full["key"], incremental["key"]] and not db_exists(couch, f"{db}-drill"), drilled
