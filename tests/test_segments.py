"""A big compressed object is cut into segments every SEGMENT_BYTES of plain text (a gzip member, a zstd frame
each), so that a restore continued in the next invocation reads the object again only
from the part holding its line's segment, not from the start: for a 50 GB backup restored over many invocations
that is the difference between reading it once and reading it again for each of them. An encrypted one is not:
each segment is an age stream, and `age -d` reads an object of one stream only. Real servers."""

from __future__ import annotations

import json
from typing import Any

import pytest
from pyrage import x25519

from backup import cos, reading, stages
from backup.catalog import read_manifest
from backup.encryption import AGE_MAGIC
from backup.keys import manifest_key
from backup.resume import Position
from backup.verified import part_at
from tests.helpers import (
    SECRET_SOURCES,
    cos_params,
    couch_params,
    incompressible_docs,
    live_docs,
    load_docs,
    run_main,
)

pytestmark = pytest.mark.integration
MIB = 1024 * 1024


@pytest.mark.parametrize("codec", ["gzip", "zstd"])
def test_a_continued_restore_reads_the_object_again_only_from_near_its_line(couch, db_name, seaweed, bucket, s3_client,
                                                                          monkeypatch, codec) -> None:
    monkeypatch.setattr(stages, "SEGMENT_BYTES", 1 * MIB)  # 64 MiB in production: ~16 MB of documents, then
    load_docs(couch, db_name, incompressible_docs(filler=8000, filler_bytes=2000))
    params: dict[str, Any] = {**couch_params(couch, db_name), **cos_params(seaweed, bucket), "COMPRESSION": codec}
    backup, _ = run_main(params)
    assert backup.get("ok") is True and backup["invocations"] == 1, backup
    stored = json.loads(s3_client.get_object(Bucket=bucket, Key=manifest_key(backup["key"]))["Body"].read())
    body = s3_client.get_object(Bucket=bucket, Key=backup["key"])["Body"].read()
    segments = stored["segments"]
    assert len(segments) >= 8 and len(stored["parts"]) >= 3, (len(segments), len(stored["parts"]))
    magic = {"gzip": b"\x1f\x8b", "zstd": b"\x28\xb5\x2f\xfd"}[codec]
    assert all(body[s["stored"]:].startswith(magic) for s in segments)  # each one a member / frame of its own

    manifest = read_manifest(s3_client, bucket, backup["key"])
    every = list(reading.object_lines(s3_client, bucket, backup["key"], manifest, Position()))
    late = every[len(every) * 9 // 10]  # a line near the end: where a continued restore could stand
    started: list[int] = []
    real = cos.iter_chunks

    def spied(s3: Any, bucket_: str, key: str, start: int = 0) -> Any:
        started.append(start)
        return real(s3, bucket_, key, start)

    monkeypatch.setattr(reading.cos, "iter_chunks", spied)
    rest = list(reading.object_lines(s3_client, bucket, backup["key"], manifest, Position(offset=late[1])))
    assert rest == every[len(every) * 9 // 10 + 1:]
    segment = max((s for s in segments if s["plain"] <= late[1]), key=lambda s: s["plain"])
    assert started == [part_at(stored["parts"], segment["stored"])[1]] and started[0] > 0, (started, segment)

    monkeypatch.setattr(reading.cos, "iter_chunks", real)
    restored, _ = run_main({**params, "OPERATION": "restore", "COS_KEY": backup["key"], "CLOUDANT_DB": f"{db_name}-r",
                            "CREATE_TARGET": True})
    assert restored.get("ok") is True and live_docs(couch, f"{db_name}-r") == live_docs(couch, db_name), restored
    verified, _ = run_main({**params, "OPERATION": "verify", "COS_KEY": backup["key"]})
    assert verified.get("ok") is True and verified["content_checked"] is True, verified


def test_an_encrypted_backup_of_one_invocation_stays_one_age_stream_however_big(couch, db_name, seaweed, bucket,
                                                                                s3_client, monkeypatch) -> None:
    monkeypatch.setattr(stages, "SEGMENT_BYTES", 1 * MIB)
    identity = x25519.Identity.generate()
    SECRET_SOURCES.append(lambda: [str(identity)])
    load_docs(couch, db_name, incompressible_docs(filler=2000, filler_bytes=2000))  # ~4 MB of plain text
    params = {**couch_params(couch, db_name), **cos_params(seaweed, bucket), "ENCRYPT_TO": str(identity.to_public())}
    backup, _ = run_main(params)
    assert backup.get("ok") is True and backup["invocations"] == 1 and backup["plain_bytes"] > 3 * MIB, backup
    stored = json.loads(s3_client.get_object(Bucket=bucket, Key=manifest_key(backup["key"]))["Body"].read())
    assert stored["segments"] == [{"stored": 0, "plain": 0}]  # so `age -d` reads it (tests/test_age_interop.py)
    assert s3_client.get_object(Bucket=bucket, Key=backup["key"])["Body"].read(len(AGE_MAGIC)) == AGE_MAGIC
