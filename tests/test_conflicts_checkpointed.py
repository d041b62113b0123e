"""A full backup with conflicts and attachments, split by the deadline into several invocations (issue 15, points
1-2): each document's leaves stay in one line (a line's resume mark is its last id, so a leaf after the mark
would be lost), and the counts (`conflict_leaves`) carried through tails and parts add up to the object's."""

from __future__ import annotations

import base64
import hashlib
import random
from typing import Any

import pytest

from tests.helpers import cos_params, couch_params, load_docs, object_lines, run_main

pytestmark = pytest.mark.integration
SHORT = {"TIME_BUDGET": 2, "SAFETY_MARGIN": 1, "PAGE_SIZE": 20, "PART_SIZE_MB": 5, "DOCS_PER_LINE": 7}
DOCS = 1500


def _rev(doc_id: str, branch: str) -> str:
    return "2-" + hashlib.md5(f"{doc_id}/{branch}".encode()).hexdigest()


def _source() -> list[dict[str, Any]]:
    """Every 5th document in conflict (two or three live leaves), every 10th with a 60 KB attachment (so the object
    fills several 5 MiB parts, and the counts go through parts as well as tails)."""
    docs = []
    for i in range(DOCS):
        doc_id = f"doc-{i:05d}"
        branches = ["a", "b", "c"][: 1 + (i % 5 == 0) + (i % 15 == 0)]
        for branch in branches:
            doc: dict[str, Any] = {"_id": doc_id, "_rev": _rev(doc_id, branch), "branch": branch, "i": i,
                                   "_revisions": {"start": 2, "ids": [_rev(doc_id, branch)[2:], "0" * 32]}}
            if i % 10 == 0:
                data = random.Random(i * 7 + len(branch)).randbytes(60_000)
                doc["_attachments"] = {"a.bin": {"content_type": "application/octet-stream",
                                                 "data": base64.b64encode(data).decode()}}
            docs.append(doc)
    return docs


def test_a_checkpointed_backup_keeps_each_documents_leaves_together_and_counts_them_once(couch, seaweed, bucket, db_name,
                                                                                         s3_client):
    source = _source()
    load_docs(couch, db_name, source, new_edits=False)
    params = {**couch_params(couch, db_name), **cos_params(seaweed, bucket), **SHORT}
    results = []
    for _ in range(60):
        result, _ = run_main(params)
        assert result.get("ok"), result
        results.append(result)
        if result["complete"]:
            break
    final = results[-1]
    assert final["complete"] and len(results) >= 2, [r.get("docs") for r in results]
    lines = object_lines(s3_client, bucket, final["key"])[1:]
    held = [(d["_id"], d["_rev"]) for line in lines for d in line]
    assert sorted(held) == sorted((d["_id"], d["_rev"]) for d in source)  # every leaf, once
    assert final["docs"] == len(source) and final["conflict_leaves"] == len(source) - DOCS
    line_of = {}
    for number, line in enumerate(lines):
        for d in line:
            assert line_of.setdefault(d["_id"], number) == number, f"{d['_id']} split between lines"
    with_data = [d for line in lines for d in line if "_attachments" in d]
    assert with_data and all(set(a) >= {"data", "contentType"} for d in with_data for a in d["_attachments"].values())
    assert final["parts"] >= 2
