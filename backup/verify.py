"""Verify: prove a backup is whole and well-formed without touching any database.

Streams the object once: checks the metadata line and every line's JSON, counts docs, and compares
doc count, byte size, line count and sha256 with the manifest written at backup time. An incremental
restores only with its chain, so verifying one verifies every member of its chain the same way.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from typing import Any

from backup import cos
from backup.catalog import chain_for, latest_key
from backup.config import Config
from backup.encryption import Identities
from backup.errors import CosError, FormatError
from backup.format import LineDecoder, split_lines
from backup.keys import manifest_key
from backup.log import Log
from backup.manifest import Manifest, PartHasher
from backup.stages import plain_bytes, require, segments_of


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
    for k, m in chain:  # a wrong AGE_IDENTITY: said before anything is read
        if m.recipients is not None and config.identities is not None:
            require(config.identities, m.recipients, f"verifying {cos.where(bucket, k)}: the backup")
    checked = [_verify_object(s3, bucket, k, m, config.identities) for k, m in chain]
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


def _verify_object(s3: Any, bucket: str, key: str, manifest: Manifest, identities: Identities | None) -> dict[str, Any]:
    """Stream one object against its manifest; its facts, or FormatError naming what differs. Its stored bytes are
    always checked against the parts; its content (lines, documents, plain size) too unless it is encrypted and
    AGE_IDENTITY is not given."""
    where = cos.where(bucket, key)
    hasher = PartHasher([p["size"] for p in manifest.parts])
    source = cos.iter_chunks(s3, bucket, key)
    stored = hasher.through(source)
    readable = manifest.recipients is None or identities is not None
    content: tuple[int, int, int, bool] | None = None
    try:
        if readable:
            segments = segments_of(manifest.segments)
            plain = plain_bytes(stored, manifest.compression, segments, 0, manifest.recipients, identities,
                                where) if manifest.transformed else stored
            content = _content(plain, where)
    except FormatError as exc:
        for _ in hasher.through(source):  # the rest of the stored bytes: a damaged part says more than its effect
            pass
        if mismatches := hasher.mismatches(manifest):
            raise FormatError(f"verifying {where}: corrupted or truncated: " + "; ".join(mismatches)) from None
        raise FormatError(f"verifying {where}: {exc}") from None
    for _ in stored:  # encrypted, without AGE_IDENTITY: the stored bytes only
        pass
    problems = hasher.mismatches(manifest)
    facts: dict[str, Any] = {"key": key, "database": manifest.database, "kind": manifest.kind, "bytes": hasher.size,
                             "sha256": manifest.sha256, "compression": manifest.compression,
                             "encrypted": manifest.recipients is not None, "content_checked": content is not None}
    if content is not None:
        docs, lines, size, ended_with_newline = content
        if not ended_with_newline:
            problems.append("the last line is cut short (no final newline): the object is truncated")
        if lines != manifest.lines:
            problems.append(f"it has {lines} lines, the backup wrote {manifest.lines}")
        if docs != manifest.docs:
            problems.append(f"it holds {docs} documents, the backup wrote {manifest.docs}")
        if size != manifest.plain_size:
            problems.append(f"its plain text is {size} bytes, the backup wrote {manifest.plain_size}")
        facts.update(docs=docs, lines=lines, plain_bytes=size)
    else:
        facts.update(docs=manifest.docs, lines=manifest.lines, plain_bytes=manifest.plain_size)
    if problems:
        raise FormatError(f"verifying {where}: corrupted or truncated: " + "; ".join(problems))
    return facts


def _content(plain: Iterable[bytes], where: str) -> tuple[int, int, int, bool]:
    """(documents, lines, plain bytes, whether the last line ended with a newline) of a backup's plain text; every
    line's JSON checked, line 1 a metadata line."""
    decoder = LineDecoder()
    docs = lines = size = 0
    ended_with_newline = True
    for raw, ended_with_newline in split_lines(plain):
        lines += 1
        size += len(raw) + int(ended_with_newline)
        try:
            line = decoder.decode(raw)
        except FormatError as exc:
            if not ended_with_newline:  # a broken *last* line without its newline: the object was cut
                raise FormatError(f"the object is truncated: line {lines} is cut short") from None
            raise FormatError(str(exc)) from None
        if lines == 1 and decoder.metadata is None:
            raise FormatError("line 1 is not a backup metadata line: this is not a backup file")
        if line is not None:
            docs += len(line.docs)
    return docs, lines, size, ended_with_newline
