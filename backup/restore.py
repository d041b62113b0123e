"""Restore: stream a backup object from COS into a database with `_bulk_docs` and `new_edits: false`.

    COS object --> lines (streamed) --> LineDecoder --> batches --> N `_bulk_docs` in flight --> Cloudant

`_id`, `_rev` (and `_revisions` when the file has them) are kept exactly. Memory holds one line plus
the batches in flight. Any per-document error in a response fails the restore, and the message
says the target now holds a partial restore: it is never reported as a success.
"""

from __future__ import annotations

import time
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

from backup import cloudant, cos
from backup.catalog import find_backups, latest_key
from backup.chain import restore_chain
from backup.clients import make_clients
from backup.config import Config
from backup.errors import BackupError, CloudantError, CosError, DatabaseNotEmptyError, FormatError
from backup.format import SKIPPED_KEPT, LineDecoder, split_lines
from backup.keys import manifest_key, parse_backup_key
from backup.log import Log
from backup.manifest import Manifest, PartHasher

# A `_bulk_docs` request ends at RESTORE_BATCH_SIZE documents or at about this many bytes of them: Cloudant
# refuses request bodies above ~11 MB (413), which 500 large documents would exceed.
BATCH_BYTES = 4 * 1024 * 1024


def _prepare_target(client: Any, db: str, create: bool, allow_non_empty: bool, log: Log) -> bool:
    """Preflight: the target exists (or is created when asked) and is empty (unless told otherwise).
    True when this run created it."""
    where = f"{client.service_url}/{db}"
    try:
        info = cloudant.database_info(client, db)
    except CloudantError as exc:
        if exc.status != 404:
            raise
        if not create:
            raise CloudantError(
                f"restoring into '{db}': the target database does not exist; create it or set CREATE_TARGET=true"
            ) from None
        cloudant.call(f"creating database '{db}'", where, lambda: client.put_database(db=db).get_result())
        log.info("target_created", database=db)
        return True
    used = (info.get("doc_count") or 0) + (info.get("doc_del_count") or 0)
    if used and not allow_non_empty:
        raise DatabaseNotEmptyError(
            f"restoring into '{db}': the target database is not empty ({info.get('doc_count')} documents); "
            "restore into a new, empty database, or set ALLOW_NON_EMPTY_TARGET=true to write into it anyway"
        )
    return False


def _drop_created(client: Any, db: str, log: Log) -> bool:
    """Delete the target this run created when nothing was written to it (a failure before the first batch)."""
    try:
        cloudant.call(f"deleting database '{db}'", f"{client.service_url}/{db}",
                      lambda: client.delete_database(db=db).get_result())
    except BackupError as exc:
        log.warning("target_not_deleted", database=db, error=str(exc))
        return False
    log.info("target_deleted", database=db)
    return True


def _write_batch(client: Any, db: str, docs: list[dict[str, Any]], number: int, lines: tuple[int, int]) -> int:
    where = f"{client.service_url}/{db}"
    what = f"restoring batch {number} (lines {lines[0]}-{lines[1]}) into '{db}'"
    result = cloudant.call(
        what, where, lambda: client.post_bulk_docs(db=db, bulk_docs={"docs": docs, "new_edits": False}).get_result()
    )
    failed = [r for r in (result or []) if isinstance(r, dict) and r.get("error")]
    if failed:
        sample = "; ".join(f"{r.get('id')!r}: {r.get('error')} {r.get('reason', '')}".strip() for r in failed[:3])
        raise CloudantError(f"{what}: {len(failed)} of {len(docs)} documents were rejected ({sample})")
    return len(docs)


def _drop_attachment_stubs(doc: dict[str, Any]) -> bool:
    """Backups hold attachment stubs, never the attachments (as couchbackup's do without --attachments); a stub
    fails the write (412 missing_stub), so such a document is restored without them. True when it had some."""
    attachments = doc.get("_attachments")
    if isinstance(attachments, dict) and attachments and all(
            isinstance(a, dict) and a.get("stub") for a in attachments.values()):
        del doc["_attachments"]
        return True
    return False


def _chain_for(s3: Any, bucket: str, prefix: str, key: str) -> list[tuple[str, Manifest | None]]:
    """The objects to apply in order, each with its manifest: the chain of an incremental, or just the key
    (a full backup, or a foreign file such as couchbackup's, which has no manifest)."""
    name = parse_backup_key(key, prefix)
    if name is None:
        return [(key, None)]
    entries = find_backups(s3, bucket, prefix, name.db)
    unreadable = next((e.manifest_error for e in entries if e.name.key == key and e.manifest_error), None)
    if unreadable:
        raise FormatError(f"restoring {cos.where(bucket, key)}: its manifest could not be read, so it can be neither "
                          f"checked nor, for an incremental, chained: {unreadable}")
    if not any(e.name.key == key and e.manifest is not None for e in entries):
        return [(key, None)]
    return [(e.name.key, _manifest(s3, bucket, e.name.key)) for e in restore_chain(entries, key)]


def _manifest(s3: Any, bucket: str, key: str) -> Manifest:
    """The whole manifest, parts included (the catalog keeps them out), to check the object against."""
    try:
        return Manifest.from_json(cos.get_json(s3, bucket, manifest_key(key)))
    except (ValueError, TypeError) as exc:
        raise FormatError(f"restoring {cos.where(bucket, key)}: its manifest is unreadable: {exc}") from None


def _apply(client: Any, s3: Any, bucket: str, key: str, manifest: Manifest | None, db: str, batch_size: int,
           pool: ThreadPoolExecutor, parallelism: int, totals: dict[str, Any]) -> None:
    """Stream one object into the database: lines -> batches -> `_bulk_docs` (parallelism in flight).

    With a manifest, the bytes are checked against it on the way (size, per-part sha256, doc count): a
    truncated or altered object fails the restore instead of restoring silently less.
    """
    decoder = LineDecoder()
    hasher = PartHasher([p["size"] for p in manifest.parts]) if manifest is not None else None
    docs_seen = 0
    in_flight: deque[Future[int]] = deque()
    batch: list[dict[str, Any]] = []
    batch_bytes = 0  # the batch's share of the lines it came from
    first_line = 0

    def drain(limit: int) -> None:
        while len(in_flight) > limit:
            totals["docs"] += in_flight.popleft().result()

    def submit() -> None:
        nonlocal batch, batch_bytes
        totals["batches"] += 1
        where = (first_line, decoder.number)
        in_flight.append(pool.submit(_write_batch, client, db, batch, totals["batches"], where))
        batch, batch_bytes = [], 0
        drain(parallelism)

    try:
        chunks = cos.iter_chunks(s3, bucket, key)
        for raw, _ in split_lines(hasher.through(chunks) if hasher is not None else chunks):
            line = decoder.decode(raw)
            if line is not None and line.metadata and line.metadata.get("backup") == "incremental" and manifest is None:
                raise FormatError(f"restoring {cos.where(bucket, key)}: an incremental backup whose manifest is "
                                  "missing: the backups it follows cannot be known, so it cannot be restored on its "
                                  "own; restore a full backup, or a later incremental whose chain is whole")
            if line is None or not line.docs:
                continue
            docs_seen += len(line.docs)
            per_doc = len(raw) // len(line.docs)
            for doc in line.docs:
                if _drop_attachment_stubs(doc):
                    totals["attachments_dropped"] += 1
                if not batch:
                    first_line = line.number
                batch.append(doc)
                batch_bytes += per_doc
                if len(batch) >= batch_size or batch_bytes >= BATCH_BYTES:
                    submit()
        if decoder.number == 0:
            raise FormatError(f"restoring {cos.where(bucket, key)}: the object is empty")
        if decoder.metadata is None and docs_seen == 0 and decoder.skipped_count:
            raise FormatError(f"restoring {cos.where(bucket, key)}: none of its {decoder.number} lines is a backup line: "
                              "this is not a backup file")
        if batch:
            submit()
        drain(0)
        if hasher is not None and manifest is not None:
            problems = hasher.mismatches(manifest)
            if docs_seen != manifest.docs:
                problems.append(f"it holds {docs_seen} documents, the backup wrote {manifest.docs}")
            if problems:
                raise FormatError(f"restoring {cos.where(bucket, key)}: the object does not match its manifest "
                                  f"(truncated or altered): {'; '.join(problems)}")
    finally:
        for future in in_flight:
            future.cancel()
    totals["skipped_lines"] += decoder.skipped[: SKIPPED_KEPT - len(totals["skipped_lines"])]
    totals["skipped_line_count"] += decoder.skipped_count


def run_restore(config: Config, log: Log) -> dict[str, Any]:
    assert config.cloudant is not None and config.db is not None and config.key is not None
    started = time.monotonic()
    db, bucket, prefix = config.db, config.cos.bucket, config.cos.prefix
    batch_size, parallelism = config.tune("RESTORE_BATCH_SIZE"), config.tune("RESTORE_PARALLELISM")
    client, s3 = make_clients(config)
    key = config.key
    if key == "latest":
        assert config.source_db is not None
        key = latest_key(s3, bucket, prefix, config.source_db)
    if not cos.exists(s3, bucket, key):
        raise CosError(f"restoring {cos.where(bucket, key)}: no such object; see `python -m backup list`")
    chain = _chain_for(s3, bucket, prefix, key)
    created = _prepare_target(client, db, config.create_target, config.allow_non_empty, log)
    log.info("restore_started", database=db, bucket=bucket, key=key, chain=[k for k, _ in chain])

    totals: dict[str, Any] = {"docs": 0, "batches": 0, "skipped_lines": [], "skipped_line_count": 0,
                              "attachments_dropped": 0}
    with ThreadPoolExecutor(max_workers=parallelism, thread_name_prefix="restore") as pool:
        for applied, (object_key, manifest) in enumerate(chain):
            try:
                _apply(client, s3, bucket, object_key, manifest, db, batch_size, pool, parallelism, totals)
            except BackupError as exc:
                if totals["batches"] or applied:
                    state = "may now hold a partial restore: delete it before retrying"
                elif created and _drop_created(client, db, log):
                    state = "was not written to, and is deleted again (this run had created it)"
                else:
                    state = "was not written to"
                raise type(exc)(f"{exc} -- the restore stopped; '{db}' {state}") from None
            log.info("restore_applied", database=db, key=object_key, docs=totals["docs"])
    seconds = round(time.monotonic() - started, 3)
    result: dict[str, Any] = {
        "ok": True, "operation": "restore", "database": db, "bucket": bucket, "key": key, "docs": totals["docs"],
        "batches": totals["batches"], "seconds": seconds,
        "docs_per_second": round(totals["docs"] / seconds, 1) if seconds else None,
    }
    if len(chain) > 1:
        result["chain"] = [k for k, _ in chain]
    if totals["skipped_line_count"]:
        result["skipped_lines"] = totals["skipped_lines"]  # the first SKIPPED_KEPT
        result["skipped_line_count"] = totals["skipped_line_count"]
    if totals["attachments_dropped"]:
        result["attachments_dropped"] = totals["attachments_dropped"]
        log.warning("attachments_not_restored", database=db, docs=totals["attachments_dropped"],
                    detail="backups do not hold attachments: these documents were restored without theirs")
    log.info("restore_finished", **result)
    return result
