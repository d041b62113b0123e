"""Restore: stream a backup object from COS into a database with `_bulk_docs` and `new_edits: false`.

    COS object --> lines (streamed) --> LineDecoder --> batches --> N `_bulk_docs` in flight --> Cloudant

`_id`, `_rev` (and `_revisions` when the file has them) are kept exactly. Memory holds one line plus
the batches in flight. Any per-document error in a response fails the restore, and the message
says the target now holds a partial restore: it is never reported as a success.

Design documents are written after every other document of the chain (a validate_doc_update function would
reject older documents). After each incremental, the docs whose history was stemmed get their stale target
leaves closed (backup.leaves), so every doc has the source's winner, deleted state and conflicts.
"""

from __future__ import annotations

import functools
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import msgspec

from backup import cloudant, cos
from backup.catalog import chain_for, latest_key
from backup.clients import make_clients
from backup.config import Config
from backup.errors import BackupError, CloudantError, CosError, DatabaseNotEmptyError, FormatError
from backup.format import SKIPPED_KEPT, LineDecoder, bulk_docs_json, split_lines
from backup.leaves import stale_leaves, tombstone
from backup.log import Log
from backup.manifest import Manifest, PartHasher
from backup.writer import BatchWriter, HeldDesignDocs, Target, is_design

# A `_bulk_docs` request ends at RESTORE_BATCH_SIZE documents or at about this many bytes of them: Cloudant
# refuses request bodies above ~11 MB (413), which 500 large documents would exceed.
BATCH_BYTES = 4 * 1024 * 1024
# Docs of stemmed history gathered before their target leaves are read (one `_all_docs` of this many keys): bounds
# the leaf sets held, and how often the batches in flight are waited for.
STALE_CHECK_IDS = 1000
TOMBSTONES_PER_REQUEST = 500
# Design documents are written last, held meanwhile as JSON up to this many bytes (design docs are seldom more
# than a few MB in all). The cap keeps a 256 MB action within its memory beside the batches in flight; past it,
# they are read again from COS at the end instead (one more pass over the chain), never held.
DESIGN_DOCS_HELD_BYTES = 64 * 1024 * 1024


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
    # The body is written here, not by the SDK (json.dumps): msgspec writes the members LineDecoder kept raw
    # (nested too deep to decode) verbatim, and is faster. It cannot write a lone surrogate (an escaped \ud800
    # in the file) as UTF-8: then json.dumps's escapes.
    try:
        body = msgspec.json.encode({"docs": docs, "new_edits": False})
    except (UnicodeEncodeError, TypeError, OverflowError):
        body = bulk_docs_json(docs)
    result = cloudant.call(what, where, lambda: client.post_bulk_docs(db=db, bulk_docs=body).get_result())
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


def _close_stale(client: Any, db: str, leaf_sets: dict[str, frozenset[str]]) -> int:
    """Give every live leaf of these docs (all written) that the source did not have a deleted child, so the
    winner, deleted state and conflicts are the source's (see backup.leaves). Returns how many."""
    live = cloudant.live_leaves(client, db, list(leaf_sets))
    tombstones = [tombstone(doc_id, rev) for doc_id, revs in live.items() for rev in stale_leaves(leaf_sets[doc_id], revs)]
    for start in range(0, len(tombstones), TOMBSTONES_PER_REQUEST):
        cloudant.write_revisions(client, db, tombstones[start:start + TOMBSTONES_PER_REQUEST],
                                 f"closing {len(tombstones)} stale leaves of restored documents in '{db}'")
    return len(tombstones)


def _apply(target: Target, s3: Any, bucket: str, key: str, manifest: Manifest | None, member: int,
           designs: HeldDesignDocs, design_only: bool = False) -> None:
    """Stream one object into the database: lines -> batches -> `_bulk_docs` (parallelism in flight).

    Design documents are set aside in `designs`, to be written after every other document of the chain; with
    `design_only` (they were too many to hold), only they are written. With a manifest, the bytes are checked
    against it on the way (size, per-part sha256, doc count): a truncated or altered object fails the restore
    instead of restoring silently less.
    """
    decoder = LineDecoder()
    hasher = PartHasher([p["size"] for p in manifest.parts]) if manifest is not None else None
    docs_seen = 0
    writer: BatchWriter | None = None
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
            # An incremental holds every leaf of each changed doc: the only kind whose stale leaves can be known.
            incremental = bool(decoder.metadata and decoder.metadata.get("backup") == "incremental")
            writer = writer or BatchWriter(target, STALE_CHECK_IDS if incremental else 0)
            per_doc = len(raw) // len(line.docs)  # a doc's share of its line, for the batch's size
            for doc in line.docs:
                if design_only:
                    if is_design(doc):
                        _drop_attachment_stubs(doc)  # counted in the first pass
                        writer.add(doc, per_doc, line.number)
                    continue
                if _drop_attachment_stubs(doc):
                    target.totals["attachments_dropped"] += 1
                if is_design(doc):
                    designs.hold(member, incremental, line.number, doc)
                else:
                    writer.add(doc, per_doc, line.number)
        if decoder.number == 0:
            raise FormatError(f"restoring {cos.where(bucket, key)}: the object is empty")
        if decoder.metadata is None and docs_seen == 0 and decoder.skipped_count:
            raise FormatError(f"restoring {cos.where(bucket, key)}: none of its {decoder.number} lines is a backup line: "
                              "this is not a backup file")
        if writer is not None:
            writer.flush()
        if hasher is not None and manifest is not None:
            problems = hasher.mismatches(manifest)
            if docs_seen != manifest.docs:
                problems.append(f"it holds {docs_seen} documents, the backup wrote {manifest.docs}")
            if problems:
                raise FormatError(f"restoring {cos.where(bucket, key)}: the object does not match its manifest "
                                  f"(truncated or altered): {'; '.join(problems)}")
        if writer is not None:
            writer.finish()  # only now is the object's last leaf set known whole
    finally:
        if writer is not None:
            writer.cancel()
    if not design_only:
        target.totals["skipped_lines"] += decoder.skipped[: SKIPPED_KEPT - len(target.totals["skipped_lines"])]
        target.totals["skipped_line_count"] += decoder.skipped_count


def _write_design_docs(target: Target, s3: Any, bucket: str, chain: list[tuple[str, Manifest | None]],
                       designs: HeldDesignDocs, log: Log) -> None:
    """The design documents, after every other document of the chain, in chain order: a validate_doc_update
    function written earlier would reject older documents (CouchDB runs it for `new_edits: false` writes too)."""
    if not designs.overflowed:
        written = designs.write(target, STALE_CHECK_IDS)
        if written:
            log.info("design_docs_restored", docs=written)
        return
    log.info("design_docs_read_again", objects=len(chain),
             detail=f"more than {designs.cap} bytes of design documents: reading them again to write them last")
    for member, (object_key, manifest) in enumerate(chain):
        _apply(target, s3, bucket, object_key, manifest, member, designs, design_only=True)


def run_restore(config: Config, log: Log) -> dict[str, Any]:
    assert config.cloudant is not None and config.db is not None and config.key is not None
    started = time.monotonic()
    db, bucket, prefix = config.db, config.cos.bucket, config.cos.prefix
    batch_size, parallelism = config.tune("RESTORE_BATCH_SIZE"), config.tune("RESTORE_PARALLELISM")
    client, s3 = make_clients(config)
    key = config.key
    if key == "latest":
        assert config.source_db is not None
        key = latest_key(s3, bucket, prefix, config.source_db, config.source_host)
    if not cos.exists(s3, bucket, key):
        raise CosError(f"restoring {cos.where(bucket, key)}: no such object; see `python -m backup list`")
    try:
        chain = chain_for(s3, bucket, key)
    except FormatError as exc:
        raise FormatError(f"restoring {exc}") from None
    created = _prepare_target(client, db, config.create_target, config.allow_non_empty, log)
    log.info("restore_started", database=db, bucket=bucket, key=key, chain=[k for k, _ in chain])

    totals: dict[str, Any] = {"docs": 0, "batches": 0, "skipped_lines": [], "skipped_line_count": 0,
                              "attachments_dropped": 0, "stale_leaves_closed": 0}
    designs = HeldDesignDocs(DESIGN_DOCS_HELD_BYTES)
    with ThreadPoolExecutor(max_workers=parallelism, thread_name_prefix="restore") as pool:
        target = Target(pool, functools.partial(_write_batch, client, db), functools.partial(_close_stale, client, db),
                        batch_size, BATCH_BYTES, parallelism, totals)
        applied = 0
        try:
            for object_key, manifest in chain:
                _apply(target, s3, bucket, object_key, manifest, applied, designs)
                applied += 1
                log.info("restore_applied", database=db, key=object_key, docs=totals["docs"])
            _write_design_docs(target, s3, bucket, chain, designs, log)
        except BackupError as exc:
            if totals["batches"] or applied:
                state = "may now hold a partial restore: delete it before retrying"
            elif created and _drop_created(client, db, log):
                state = "was not written to, and is deleted again (this run had created it)"
            else:
                state = "was not written to"
            raise type(exc)(f"{exc} -- the restore stopped; '{db}' {state}") from None
    seconds = round(time.monotonic() - started, 3)
    result: dict[str, Any] = {
        "ok": True, "operation": "restore", "database": db, "bucket": bucket, "key": key, "docs": totals["docs"],
        "batches": totals["batches"], "seconds": seconds,
        "docs_per_second": round(totals["docs"] / seconds, 1) if seconds else None,
    }
    if len(chain) > 1:
        result["chain"] = [k for k, _ in chain]
    if totals["stale_leaves_closed"]:
        result["stale_leaves_closed"] = totals["stale_leaves_closed"]
    if totals["skipped_line_count"]:
        result["skipped_lines"] = totals["skipped_lines"]  # the first SKIPPED_KEPT
        result["skipped_line_count"] = totals["skipped_line_count"]
    if totals["attachments_dropped"]:
        result["attachments_dropped"] = totals["attachments_dropped"]
        log.warning("attachments_not_restored", database=db, docs=totals["attachments_dropped"],
                    detail="backups do not hold attachments: these documents were restored without theirs")
    log.info("restore_finished", **result)
    return result
