"""Verify: prove a backup is whole and well-formed without touching any database.

Streams the object once: checks the metadata line and every line's JSON, counts docs, and compares
doc count, byte size, line count and sha256 with the manifest written at backup time. An incremental
restores only with its chain, so verifying one verifies every member of its chain the same way.
"""

from __future__ import annotations

import time
from typing import Any

from backup import cos
from backup.catalog import chain_for, latest_key
from backup.config import Config
from backup.errors import CosError, FormatError
from backup.format import LineDecoder, split_lines
from backup.keys import manifest_key
from backup.log import Log
from backup.manifest import Manifest, PartHasher


def run_verify(config: Config, log: Log) -> dict[str, Any]:
    started = time.monotonic()
    bucket = config.cos.bucket
    s3 = cos.make_client(config.cos, config.tune("REQUEST_TIMEOUT"), config.tune("MAX_RETRIES"), log)
    key = config.key or ""
    if key == "latest":
        key = latest_key(s3, bucket, config.cos.prefix, config.source_db or config.db or "", config.source_host)
    manifest = _manifest(s3, bucket, key)
    chain: list[tuple[str, Manifest]] = [(key, manifest)]
    if manifest.kind == "incremental":
        try:
            chain = [(k, m) for k, m in chain_for(s3, bucket, key) if m is not None]
        except FormatError as exc:
            raise FormatError(f"verifying {exc}") from None
    checked = [_verify_object(s3, bucket, k, m) for k, m in chain]
    result = {"ok": True, "operation": "verify", "bucket": bucket, **checked[-1],
              "seconds": round(time.monotonic() - started, 3)}
    if len(chain) > 1:
        result["chain"] = [k for k, _ in chain]  # each one verified, oldest first
    log.info("verified", **result)
    return result


def _manifest(s3: Any, bucket: str, key: str) -> Manifest:
    where = cos.where(bucket, key)
    try:
        manifest = Manifest.from_json(cos.get_json(s3, bucket, manifest_key(key)))
    except CosError:
        if not cos.exists(s3, bucket, key):
            raise CosError(f"verifying {where}: no such object") from None
        if cos.exists(s3, bucket, manifest_key(key)):
            raise  # there, but it could not be read (now): that error stands, it says nothing of the backup
        raise FormatError(f"verifying {where}: it has no manifest, so it was not completed by this tool") from None
    except (ValueError, TypeError) as exc:
        raise FormatError(f"verifying {where}: its manifest is unreadable: {exc}") from None
    if manifest.key.rpartition("/")[2] != key.rpartition("/")[2]:
        raise FormatError(f"verifying {where}: its manifest is the one of {manifest.key}, another backup")
    return manifest


def _verify_object(s3: Any, bucket: str, key: str, manifest: Manifest) -> dict[str, Any]:
    """Stream one object against its manifest; its facts, or FormatError naming what differs."""
    where = cos.where(bucket, key)
    hasher = PartHasher([p["size"] for p in manifest.parts])
    decoder = LineDecoder()
    docs = lines = 0
    ended_with_newline = True
    for raw, ended_with_newline in split_lines(hasher.through(cos.iter_chunks(s3, bucket, key))):
        lines += 1
        try:
            line = decoder.decode(raw)
        except FormatError as exc:
            if not ended_with_newline:  # a broken *last* line without its newline: the object was cut
                raise FormatError(f"verifying {where}: the object is truncated: line {lines} is cut short") from None
            raise FormatError(f"verifying {where}: {exc}") from None
        if lines == 1 and decoder.metadata is None:
            raise FormatError(f"verifying {where}: line 1 is not a backup metadata line: this is not a backup file")
        if line is not None:
            docs += len(line.docs)

    problems = []
    if not ended_with_newline:
        problems.append("the last line is cut short (no final newline): the object is truncated")
    if lines != manifest.lines:
        problems.append(f"it has {lines} lines, the backup wrote {manifest.lines}")
    if docs != manifest.docs:
        problems.append(f"it holds {docs} documents, the backup wrote {manifest.docs}")
    problems.extend(hasher.mismatches(manifest))
    if problems:
        raise FormatError(f"verifying {where}: corrupted or truncated: " + "; ".join(problems))
    return {"key": key, "database": manifest.database, "kind": manifest.kind, "docs": docs, "lines": lines,
            "bytes": hasher.size, "sha256": manifest.sha256}
