"""Restore drills against the real servers (issue 16, point 3): the newest backup of a database, its whole chain,
restored into a scratch database, every document compared with the backup, a sample with the live source, and the
scratch database deleted whatever the outcome; the source is never written. A damaged backup, a backup that does
not hold what the source wrote, or a restore that does not hold what the backup holds, fails the drill."""

from __future__ import annotations

import base64
import hashlib
import json
import os
import random
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import requests

from backup.keys import manifest_key, restore_checkpoint_key
from tests.helpers import (
    OUTPUTS,
    CapturedLog,
    cos_params,
    couch_params,
    db_exists,
    keys_in,
    live_docs,
    load_docs,
    run_at_once,
    run_main,
)

pytestmark = pytest.mark.integration
INCREMENTAL = {"BACKUP_MODE": "incremental"}
PLAIN = 60  # plain documents of the source
ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def params(couch, seaweed, db_name, bucket) -> dict[str, Any]:
    return {**couch_params(couch, db_name), **cos_params(seaweed, bucket), "DOCS_PER_LINE": 25}


def _auth(couch: Any) -> Any:
    return tuple(couch.admin)


def _url(couch: Any, db: str, doc_id: str = "") -> str:
    design = doc_id.startswith("_design/")
    name = requests.utils.quote(doc_id.removeprefix("_design/") if design else doc_id, safe="")
    return f"{couch.url}/{requests.utils.quote(db, safe='')}" + (f"/{'_design/' if design else ''}{name}" if doc_id else "")


def _all_dbs(couch: Any) -> set[str]:
    return set(requests.get(f"{couch.url}/_all_dbs", auth=_auth(couch), timeout=30).json())


def _info(couch: Any, db: str) -> dict[str, Any]:
    return requests.get(_url(couch, db), auth=_auth(couch), timeout=30).json()


def _state(couch: Any, db: str) -> tuple[Any, list[dict[str, Any]]]:
    """What the source is: its update sequence (moves on any write) and its documents."""
    return _info(couch, db)["update_seq"], live_docs(couch, db)


def _source(couch: Any, db: str) -> None:
    """Plain documents, non-ASCII ones, and a design document."""
    docs: list[dict[str, Any]] = [{"_id": f"doc-{i:03d}", "n": i, "nested": {"list": [i, 2.5, None, True]}}
                                  for i in range(PLAIN)]
    docs += [{"_id": "café-ünï", "text": "日本語 \u2028 \U0001f600"},
             {"_id": "_design/app", "views": {"v": {"map": "function (doc) { emit(doc.n); }"}}}]
    load_docs(couch, db, docs)


def _change(couch: Any, db: str, updates: dict[str, dict[str, Any]] = {}, deletes: tuple[str, ...] = (),  # noqa: B006
            new: tuple[dict[str, Any], ...] = ()) -> None:
    """Edit documents as a client does (new revisions), delete some, add some."""
    current = {doc["_id"]: doc for doc in live_docs(couch, db)}
    docs = [{**current[doc_id], **fields} for doc_id, fields in updates.items()]
    docs += [{"_id": doc_id, "_rev": current[doc_id]["_rev"], "_deleted": True} for doc_id in deletes]
    answers = load_docs(couch, db, [*docs, *new])
    assert all(a.get("ok") for a in answers), answers


def _drill(params: dict[str, Any], log: CapturedLog | None = None, **extra: Any) -> dict[str, Any]:
    result, _ = run_main({**params, "OPERATION": "drill", **extra}, log)
    return result


def _assert_cleaned(couch: Any, dbs_before: set[str], result: dict[str, Any]) -> None:
    """The scratch database is gone, and the drill made no other."""
    assert result["scratch_deleted"] is True, result
    assert not db_exists(couch, result["drill_db"]) and _all_dbs(couch) == dbs_before


def test_a_full_backup_drills_equal_and_leaves_nothing_behind(couch, db_name, bucket, s3_client, params):
    _source(couch, db_name)
    made, _ = run_main(params)
    assert made["ok"], made
    before, dbs_before, keys_before = _state(couch, db_name), _all_dbs(couch), sorted(keys_in(s3_client, bucket))
    log = CapturedLog()
    result = _drill(params, log)
    assert result["ok"] and result["equal"] and "error" not in result, result
    assert result["key"] == made["key"] and "chain" not in result, result
    assert result["docs"] == result["live_docs"] == result["restored_docs"] == PLAIN + 2, result
    assert result["differences"] == [] and result["difference_count"] == 0, result
    assert result["sample"] == {"checked": PLAIN + 2, "unchanged_equal": PLAIN + 2, "changed_since_backup": 0}
    assert result["drill_db"].startswith(f"{db_name}-drill-") and result["drill_db"] not in dbs_before, result
    _assert_cleaned(couch, dbs_before, result)
    assert _state(couch, db_name) == before  # nothing written to the source
    assert sorted(keys_in(s3_client, bucket)) == keys_before  # no checkpoint, nothing else left in the bucket
    started, finished = log.events("drill_started"), log.events("drill_finished")
    assert len(started) == len(finished) == 1 and finished[0]["equal"] is True, log.text
    assert log.events("restore_finished")[0]["database"] == result["drill_db"]  # the restore itself restored it


def test_an_incremental_chain_drills_equal(couch, db_name, params):
    _source(couch, db_name)
    full, _ = run_main({**params, **INCREMENTAL})
    _change(couch, db_name, {"doc-001": {"n": "changed"}, "_design/app": {"language": "javascript"}},
            deletes=("doc-002", "doc-003"), new=({"_id": "new-1", "n": -1},))
    first, _ = run_main({**params, **INCREMENTAL})
    _change(couch, db_name, {"doc-001": {"n": "changed again"}, "new-1": {"n": -2}}, deletes=("doc-004",),
            new=({"_id": "doc-002", "reborn": True}, {"_id": "new-2"}))
    second, _ = run_main({**params, **INCREMENTAL})
    assert (full["kind"], first["kind"], second["kind"]) == ("full", "incremental", "incremental")
    dbs_before = _all_dbs(couch)
    result = _drill(params)
    assert result["ok"] and result["equal"], result
    assert result["key"] == second["key"] and result["chain"] == [full["key"], first["key"], second["key"]], result
    live = len(live_docs(couch, db_name))
    assert result["live_docs"] == result["restored_docs"] == live == PLAIN + 2 - 2 + 2, result
    assert result["docs"] == live + 2, result  # and the two deletions (doc-003, doc-004), compared as deleted
    _assert_cleaned(couch, dbs_before, result)


def _hash(doc_id: str, branch: str, gen: int) -> str:
    return hashlib.md5(f"{doc_id}/{branch}/{gen}".encode()).hexdigest()


def _leaf(doc_id: str, gen: int, branch: str = "main", **body: Any) -> dict[str, Any]:
    """A leaf at `gen` with its whole history (generation 1 shared), as replication writes a conflict."""
    ids = [_hash(doc_id, branch if g > 1 else "main", g) for g in range(gen, 0, -1)]
    return {"_id": doc_id, "_rev": f"{gen}-{ids[0]}", "_revisions": {"start": gen, "ids": ids}, **body}


def _inline(data: bytes, content_type: str) -> dict[str, Any]:
    return {"content_type": content_type, "data": base64.b64encode(data).decode()}


def _attach(couch: Any, db: str, doc_id: str, name: str, data: bytes, content_type: str) -> None:
    rev = requests.get(_url(couch, db, doc_id), auth=_auth(couch), timeout=30).json()["_rev"]
    r = requests.put(f"{_url(couch, db, doc_id)}/{requests.utils.quote(name, safe='')}", params={"rev": rev}, data=data,
                     headers={"Content-Type": content_type}, auth=_auth(couch), timeout=60)
    assert r.status_code == 201, r.text


def test_conflicts_and_attachments_drill_equal(couch, db_name, params):
    leaves = [_leaf("two-live", 2, v="main"), _leaf("two-live", 2, "b", v="b"),
              _leaf("three-live", 3, v="main"), _leaf("three-live", 2, "b", v="b"), _leaf("three-live", 3, "c", v="c"),
              _leaf("deleted-highest", 2, v="live"), _leaf("deleted-highest", 3, "gone", _deleted=True),
              _leaf("with-files", 2, v="main", _attachments={"a.txt": _inline(b"main branch", "text/plain")}),
              _leaf("with-files", 2, "b", v="b", _attachments={"b.bin": _inline(random.Random(1).randbytes(50_000),
                                                                                 "application/octet-stream")})]
    load_docs(couch, db_name, leaves, new_edits=False)
    load_docs(couch, db_name, [{"_id": "plain", "v": 1}, {"_id": "files", "v": 1}])
    _attach(couch, db_name, "files", "hello.txt", b"hello", "text/plain")
    _attach(couch, db_name, "files", "image.png", random.Random(2).randbytes(2_000_000), "image/png")  # read as bytes
    full, _ = run_main({**params, **INCREMENTAL})
    assert full["ok"] and full["conflict_leaves"] == 4, full
    dbs_before = _all_dbs(couch)
    result = _drill(params, DRILL_DB=f"{db_name}-full")
    assert result["ok"] and result["equal"] and result["docs"] == 6, result
    _assert_cleaned(couch, dbs_before, result)

    # An incremental: a new conflict, an attachment replaced, one added to a conflicting leaf.
    load_docs(couch, db_name, [_leaf("plain", 2, "x", v="x"), _leaf("plain", 2, "y", v="y")], new_edits=False)
    _attach(couch, db_name, "files", "hello.txt", b"hello again", "text/plain")
    _attach(couch, db_name, "two-live", "late.txt", b"added later", "text/plain")
    incremental, _ = run_main({**params, **INCREMENTAL})
    assert incremental["kind"] == "incremental", incremental
    result = _drill(params, DRILL_DB=f"{db_name}-chain")
    assert result["ok"] and result["equal"] and len(result["chain"]) == 2, result
    _assert_cleaned(couch, dbs_before, result)

    # A backup without attachments holds their stubs: its restore has none, and that is what it holds.
    stubs, _ = run_main({**params, "ATTACHMENTS": "false"})
    result = _drill(params, DRILL_DB=f"{db_name}-stubs", COS_KEY=stubs["key"])
    assert result["ok"] and result["equal"] and result["key"] == stubs["key"], result
    # documents written without their attachments: "files", and the leaves of "two-live" and "with-files" with some
    assert result["attachments_dropped"] == 4, result
    assert result["sample"]["unchanged_equal"] == result["sample"]["checked"] == 6, result  # stubs = the source's
    _assert_cleaned(couch, dbs_before, result)


@pytest.mark.parametrize("codec", ["none", "gzip"])
def test_a_damaged_backup_fails_the_drill_and_its_scratch_database_is_deleted(couch, db_name, bucket, s3_client, params,
                                                                              codec):
    _source(couch, db_name)
    key = run_main({**params, "COMPRESSION": codec})[0]["key"]
    body = bytearray(s3_client.get_object(Bucket=bucket, Key=key)["Body"].read())
    if codec == "none":  # the damage made in plain text
        body[body.index(b'"doc-030"') + 2] ^= 0x04  # one bit: "doc-030" becomes "dkc-030", the JSON stays valid
    else:
        body[len(body) // 2] ^= 0x04  # one bit of the compressed bytes
    s3_client.put_object(Bucket=bucket, Key=key, Body=bytes(body))
    before, dbs_before = _state(couch, db_name), _all_dbs(couch)
    result = _drill(params, DRILL_DB=f"{db_name}-scratch")
    assert result["ok"] is False and result["equal"] is False and result["kind"] == "format", result
    assert result["error"].startswith("drill failed: the restore failed: ") and "sha256" in result["error"], result
    _assert_cleaned(couch, dbs_before, result)
    assert _state(couch, db_name) == before


def _forge(s3: Any, bucket: str, key: str, old: bytes, new: bytes) -> None:
    """Replace bytes of a one-part uncompressed backup and make its manifest match: whole and well-formed, but not
    what the source wrote."""
    body = s3.get_object(Bucket=bucket, Key=key)["Body"].read()
    forged = body.replace(old, new, 1)
    manifest = json.loads(s3.get_object(Bucket=bucket, Key=manifest_key(key))["Body"].read())
    assert forged != body and len(manifest["parts"]) == 1
    sha = hashlib.sha256(forged).hexdigest()
    assert manifest["compression"] == "none"
    manifest.update(bytes=len(forged), sha256=hashlib.sha256(sha.encode()).hexdigest(),
                    parts=[{"size": len(forged), "sha256": sha}], plain_bytes=len(forged))
    s3.put_object(Bucket=bucket, Key=key, Body=forged)
    s3.put_object(Bucket=bucket, Key=manifest_key(key), Body=json.dumps(manifest).encode())


def test_a_backup_that_does_not_hold_what_the_source_wrote_fails_the_drill(couch, db_name, bucket, s3_client, params):
    """The restore holds what the backup holds (equal), but the sample sees the source's document at the same
    revision with another body."""
    _source(couch, db_name)
    key = run_main({**params, "COMPRESSION": "none"})[0]["key"]  # forged in plain text, in place
    _forge(s3_client, bucket, key, b'"_id":"doc-007"', b'"forged":true,"_id":"doc-007"')
    verified, _ = run_main({**params, "OPERATION": "verify", "COS_KEY": key})
    assert verified["ok"], verified  # whole, as far as its manifest can tell
    result = _drill(params, DRILL_SAMPLE=1000)
    assert result["ok"] is False and result["equal"] is True and "kind" not in result, result
    assert result["differences"] == [{"id": "doc-007", "differs": "source", "rev": result["differences"][0]["rev"]}]
    assert result["sample"] == {"checked": PLAIN + 2, "unchanged_equal": PLAIN + 1, "changed_since_backup": 0}
    assert "differ from the live source" in result["error"] and "'doc-007'" in result["error"], result


def test_a_restore_that_does_not_hold_what_the_backup_holds_fails_the_drill(couch, db_name, params):
    """Written into the scratch database once the restore is done: an edit, a deletion, an extra document."""
    _source(couch, db_name)
    assert run_main(params)[0]["ok"]
    scratch = f"{db_name}-scratch"

    def tamper(_fields: dict[str, Any]) -> None:
        _change(couch, scratch, {"doc-005": {"n": "edited"}}, deletes=("doc-009",), new=({"_id": "extra"},))

    dbs_before = _all_dbs(couch)
    result = _drill(params, CapturedLog(hooks={"restore_finished": tamper}), DRILL_DB=scratch)
    assert result["ok"] is False and result["equal"] is False and "kind" not in result, result
    assert {(d.get("id"), d["differs"]) for d in result["differences"]} == {("doc-005", "rev"), ("doc-009", "missing")}
    assert result["difference_count"] == 2, result  # the count matches: the deletion and the extra one cancel out
    assert result["error"].startswith("drill failed: 2 documents differ from the backup (first: "), result
    _assert_cleaned(couch, dbs_before, result)


def test_an_extra_document_in_the_restore_fails_the_count(couch, db_name, params):
    _source(couch, db_name)
    assert run_main(params)[0]["ok"]
    scratch = f"{db_name}-scratch"
    log = CapturedLog(hooks={"restore_finished": lambda _: load_docs(couch, scratch, [{"_id": "extra"}])})
    result = _drill(params, log, DRILL_DB=scratch)
    assert result["ok"] is False and result["differences"] == [
        {"differs": "count", "backup": PLAIN + 2, "restored": PLAIN + 3}], result
    assert f"holds {PLAIN + 3} documents, the backup {PLAIN + 2}" in result["error"], result
    assert result["scratch_deleted"] and not db_exists(couch, scratch)


def test_source_documents_changed_since_the_backup_are_counted_not_failed(couch, db_name, params):
    _source(couch, db_name)
    assert run_main(params)[0]["ok"]
    _change(couch, db_name, {"doc-010": {"n": "later"}, "doc-011": {"n": "later"}}, deletes=("doc-012",),
            new=({"_id": "after-the-backup"},))
    before = _state(couch, db_name)
    result = _drill(params, DRILL_SAMPLE=1000)
    assert result["ok"] and result["equal"], result
    assert result["sample"] == {"checked": PLAIN + 2, "unchanged_equal": PLAIN - 1, "changed_since_backup": 3}, result
    assert _state(couch, db_name) == before
    off = _drill(params, DRILL_SAMPLE=0)
    assert off["ok"] and off["sample"] == {"checked": 0, "unchanged_equal": 0, "changed_since_backup": 0}, off


def test_a_drill_db_that_exists_is_refused_and_left_alone(couch, db_name, params):
    _source(couch, db_name)
    assert run_main(params)[0]["ok"]
    mine = f"{db_name}-mine"
    load_docs(couch, mine, [{"_id": "keep-me"}])
    for name in (mine, f"{db_name}-empty"):
        requests.put(_url(couch, name), auth=_auth(couch), timeout=30)
        result = _drill(params, DRILL_DB=name)
        assert result["kind"] == "config" and f"'{name}' exists" in result["error"], result
    assert [d["_id"] for d in live_docs(couch, mine)] == ["keep-me"] and db_exists(couch, f"{db_name}-empty")
    same = _drill(params, DRILL_DB=db_name)
    assert same["kind"] == "config" and "DRILL_DB must not be CLOUDANT_DB" in same["error"], same
    assert len(live_docs(couch, db_name)) == PLAIN + 2


def test_a_drill_whose_restore_runs_out_of_time_fails_and_cleans_up(couch, db_name, bucket, s3_client, params):
    _source(couch, db_name)
    assert run_main(params)[0]["ok"]
    keys_before, dbs_before = sorted(keys_in(s3_client, bucket)), _all_dbs(couch)
    scratch = f"{db_name}-scratch"
    log = CapturedLog()
    result, _ = run_at_once({**params, "OPERATION": "drill", "DRILL_DB": scratch}, log)
    assert result["ok"] is False and "kind" not in result, result
    assert "the restore did not finish in this invocation's time: run the drill where it has more time" in result["error"]
    assert log.events("restore_checkpointed"), log.text  # the restore did stop and checkpoint...
    assert restore_checkpoint_key("", scratch, couch.url.split("://")[1]) not in keys_in(s3_client, bucket)
    assert sorted(keys_in(s3_client, bucket)) == keys_before  # ...and its checkpoint is gone again
    _assert_cleaned(couch, dbs_before, result)


def test_no_backup_of_the_database_is_an_error_before_anything_is_made(couch, db_name, params):
    _source(couch, db_name)
    dbs_before = _all_dbs(couch)
    result = _drill(params)
    assert result["kind"] == "cos" and "no complete backup" in result["error"], result
    assert _all_dbs(couch) == dbs_before


def test_the_command_exits_0_for_a_good_drill_and_1_for_a_damaged_backup(couch, db_name, bucket, s3_client, params):
    _source(couch, db_name)
    key = run_main(params)[0]["key"]
    env = {**{k: v for k, v in os.environ.items() if not k.startswith(("CLOUDANT_", "COS_"))},
           **{k: str(v) for k, v in params.items()}}

    def drill() -> tuple[int, dict[str, Any]]:
        run = subprocess.run([sys.executable, "-m", "backup", "drill", "--db", db_name, "--json", "--quiet"], env=env,
                             cwd=ROOT, capture_output=True, text=True, timeout=120)
        OUTPUTS.extend([run.stdout, run.stderr])
        return run.returncode, json.loads(run.stdout)

    code, result = drill()
    assert code == 0 and result["equal"], result
    s3_client.put_object(Bucket=bucket, Key=key, Body=s3_client.get_object(Bucket=bucket, Key=key)["Body"].read()[:-10])
    code, result = drill()
    assert code == 1 and result["ok"] is False and "drill failed" in result["error"], result
    assert not db_exists(couch, result["drill_db"])
