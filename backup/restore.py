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
import os
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import msgspec

from backup import attachments, cloudant, cos, openwhisk
from backup.catalog import chain_for, latest_key
from backup.clients import make_clients
from backup.config import Config
from backup.deadline import Deadline
from backup.encryption import Identities
from backup.errors import BackupError, CloudantError, CosError, DatabaseNotEmptyError, FormatError
from backup.format import SKIPPED_KEPT, LineDecoder, bulk_docs_json, edit_runs
from backup.leaves import stale_leaves, tombstone
from backup.log import Log
from backup.manifest import Manifest
from backup.plan import instance_of
from backup.reading import object_lines
from backup.resume import Position, RestorePoint, RestorePoints
from backup.stages import require
from backup.writer import BatchWriter, HeldDesignDocs, Target, chain_total, is_design

# A `_bulk_docs` request ends at RESTORE_BATCH_SIZE documents or at about this many bytes of them: Cloudant
# refuses request bodies above ~11 MB (413), which 500 large documents would exceed.
BATCH_BYTES = 4 * 1024 * 1024
# A document whose inline attachments (base64) weigh this much is written alone with `PUT /db/doc` as
# multipart/related, its attachments as bytes: Cloudant refuses request bodies above ~11 MB, which a 10 MB attachment
# (its cap) passes in base64, and a server decodes bytes faster than base64.
MULTIPART_BYTES = BATCH_BYTES
# Docs of stemmed history gathered before their target leaves are read (one `_all_docs` of this many keys): bounds
# the leaf sets held, and how often the batches in flight are waited for.
STALE_CHECK_IDS = 1000
TOMBSTONES_PER_REQUEST = 500
# Design documents are written last, held meanwhile as JSON up to this many bytes (design docs are seldom more
# than a few MB in all). The cap keeps a 256 MB action within its memory beside the batches in flight; past it,
# they are read again from COS at the end instead (one more pass over the chain), never held.
DESIGN_DOCS_HELD_BYTES = 64 * 1024 * 1024


def _prepare_target(client: Any, db: str, create: bool, allow_non_empty: bool, partitioned: bool | None,
                    log: Log) -> bool:
    """Preflight: the target exists (or is created when asked, partitioned like the backup's database) and is empty
    (unless told otherwise); a partitioned backup needs a partitioned target. True when this run created it.

    A create whose answer was lost is sent again by the SDK, and the retry gets 412 (the first one made the
    database): an empty database there counts as created by this run, so the restore goes on (and a failure before
    its first batch deletes it again, as it does a database it created)."""
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
        try:
            cloudant.call(f"creating database '{db}'", where,
                          lambda: client.put_database(db=db, partitioned=bool(partitioned) or None).get_result())
        except CloudantError as exc:
            if exc.status != 412:
                raise
            info = cloudant.database_info(client, db)  # it exists now: made by our own first request, or by another
            if _used(info):
                if allow_non_empty:
                    return False  # someone else's database, written to: not ours to delete
                raise DatabaseNotEmptyError(
                    f"restoring into '{db}': the target database was created meanwhile by someone else and holds "
                    f"{info.get('doc_count')} documents; restore into a new, empty database") from None
            log.info("target_created", database=db,
                     detail="the create's answer was lost and its retry found the database, empty: taken as ours")
            return True
        log.info("target_created", database=db, partitioned=bool(partitioned))
        return True
    if partitioned and not cloudant.is_partitioned(info):
        raise CloudantError(
            f"restoring into '{db}': the backup is of a partitioned database, and '{db}' is not partitioned (a "
            "database cannot become partitioned once created); restore into a new database with CREATE_TARGET=true, "
            "which creates it partitioned")
    if partitioned is False and cloudant.is_partitioned(info):
        raise CloudantError(
            f"restoring into '{db}': '{db}' is partitioned and the backup is of a database that is not: its document "
            "ids need not be `partition:id`, which a partitioned database refuses; restore into a new database")
    if _used(info) and not allow_non_empty:
        raise DatabaseNotEmptyError(
            f"restoring into '{db}': the target database is not empty ({info.get('doc_count')} documents); "
            "restore into a new, empty database, or set ALLOW_NON_EMPTY_TARGET=true to write into it anyway"
        )
    return False


def _used(info: dict[str, Any]) -> int:
    """Documents and deletions a database holds (pouchdb-server reports no doc_del_count)."""
    return (info.get("doc_count") or 0) + (info.get("doc_del_count") or 0)


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
    """One batch: a request per run of docs with `_rev` (new_edits false) or without (new edits, see edit_runs).
    Every run is sent, as one request writes every doc it can; any rejected doc then fails the batch."""
    where = f"{client.service_url}/{db}"
    what = f"restoring batch {number} (lines {lines[0]}-{lines[1]}) into '{db}'"
    if (len(docs) == 1 and docs[0].get("_rev") and not is_design(docs[0])  # the SDK refuses a `_design/` id here
            and attachments.data_bytes(docs[0]) >= MULTIPART_BYTES):
        _put_multipart(client, db, docs[0], what, where)
        return 1
    failed = [r for new_edits, run in edit_runs(docs) for r in _post_bulk_docs(client, db, run, new_edits, what, where)]
    if failed:
        sample = "; ".join(f"{r.get('id')!r}: {r.get('error')} {r.get('reason', '')}".strip() for r in failed[:3])
        raise CloudantError(f"{what}: {len(failed)} of {len(docs)} documents were rejected ({sample})")
    return len(docs)


def _put_multipart(client: Any, db: str, doc: dict[str, Any], what: str, where: str) -> None:
    """A document with large attachments, in a request of its own, its attachments as bytes (see
    `attachments.multipart`); its `_rev` kept (new_edits false)."""
    boundary = f"cloudant-cos-backup-{uuid.uuid4().hex}"
    body = attachments.multipart(doc, boundary)
    # Never gzipped (CLOUDANT_GZIP): CouchDB reads a multipart body from the socket as it comes, not inflated.
    cloudant.call(what, where, lambda: client.put_document(
        db=db, doc_id=doc["_id"], document=body, content_type=f"multipart/related; boundary={boundary}",
        new_edits=False, headers={"content-encoding": "identity"}).get_result())


def _post_bulk_docs(client: Any, db: str, docs: list[dict[str, Any]], new_edits: bool, what: str,
                    where: str) -> list[dict[str, Any]]:
    """One `_bulk_docs` request; the per-doc errors of its answer (new edits answer {ok, id, rev} for the others)."""
    # The body is written here, not by the SDK (json.dumps): msgspec writes the members LineDecoder kept raw
    # (nested too deep to decode) verbatim, and is faster. It cannot write a lone surrogate (an escaped \ud800
    # in the file) as UTF-8: then json.dumps's escapes.
    try:
        body = msgspec.json.encode({"docs": docs, "new_edits": new_edits})
    except (UnicodeEncodeError, TypeError, OverflowError):
        body = bulk_docs_json(docs, new_edits)
    result = cloudant.call(what, where, lambda: client.post_bulk_docs(db=db, bulk_docs=body).get_result())
    return [r for r in (result or []) if isinstance(r, dict) and r.get("error")]


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
           designs: HeldDesignDocs, position: Position, deadline: Deadline, design_only: bool = False,
           identities: Identities | None = None) -> bool:
    """Stream one object, from `position` on, into the database: lines -> batches -> `_bulk_docs` (several in
    flight). True when it stopped for the deadline (between two lines, everything before written; `position`
    says where to go on; at least one line is read first, so every invocation gets on), False at its end.

    Design documents are set aside in `designs`, to be written after every other document of the chain; with
    `design_only` (they were too many to hold), only they are written. With a manifest, every byte is verified
    (its part's sha256) before it is used, and the documents read are counted against it at the end.
    """
    decoder = LineDecoder()
    decoder.number, decoder.metadata = position.line, position.metadata
    where = cos.where(bucket, key)
    writer: BatchWriter | None = None

    def writer_for_object() -> BatchWriter:
        # An incremental holds every leaf of each changed doc: the only kind whose stale leaves can be known.
        incremental = bool(decoder.metadata and decoder.metadata.get("backup") == "incremental")
        return BatchWriter(target, STALE_CHECK_IDS if incremental else 0, position.run)

    try:
        for raw, offset in object_lines(s3, bucket, key, manifest, position, identities):
            line = decoder.decode(raw)
            if line is not None and line.metadata and line.metadata.get("backup") == "incremental" and manifest is None:
                raise FormatError(f"restoring {where}: an incremental backup whose manifest is missing: the backups it "
                                  "follows cannot be known, so it cannot be restored on its own; restore a full backup, "
                                  "or a later incremental whose chain is whole")
            if line is not None and line.docs:
                position.docs_seen += len(line.docs)
                writer = writer or writer_for_object()
                _add_docs(target, writer, designs, line.docs, len(raw), line.number, member, design_only)
            position.offset, position.line, position.metadata = offset, decoder.number, decoder.metadata
            if deadline.reached():
                position.run = writer.pause() if writer is not None else position.run
                position.skipped += decoder.skipped_count
                return True
        if decoder.number == 0:
            raise FormatError(f"restoring {where}: the object is empty")
        if decoder.metadata is None and position.docs_seen == 0 and position.skipped + decoder.skipped_count:
            raise FormatError(f"restoring {where}: none of its {decoder.number} lines is a backup line: "
                              "this is not a backup file")
        if manifest is not None and position.docs_seen != manifest.docs:
            raise FormatError(f"restoring {where}: it holds {position.docs_seen} documents, its manifest says "
                              f"{manifest.docs}: the manifest does not describe this object")
        writer = writer or (writer_for_object() if position.run else None)
        if writer is not None:
            writer.flush()
            writer.finish()  # only now is the object's last leaf set known whole
        return False
    finally:
        if writer is not None:
            writer.cancel()
        if not design_only:
            totals = target.totals
            totals["skipped_lines"] += decoder.skipped[: SKIPPED_KEPT - len(totals["skipped_lines"])]
            totals["skipped_line_count"] += decoder.skipped_count


def _add_docs(target: Target, writer: BatchWriter, designs: HeldDesignDocs, docs: list[dict[str, Any]],
              line_bytes: int, number: int, member: int, design_only: bool) -> None:
    """One line's documents to the writer, design documents to `designs` (or, in the design pass, only them)."""
    per_doc = line_bytes // len(docs)  # a doc's share of its line, for the batch's size
    incremental = writer.leaf_sets is not None
    for doc in docs:
        # A stub (a backup without attachments) cannot be written (412 missing_stub): such a document is restored
        # without it, and counted in the first pass.
        dropped = attachments.to_server(doc)
        size = max(per_doc, attachments.data_bytes(doc))  # a document with attachments weighs them
        if design_only:
            if is_design(doc):
                writer.add(doc, size, number)
            continue
        target.totals["attachments_dropped"] += dropped
        if is_design(doc):
            designs.hold(member, incremental, number, doc)
        else:
            writer.add(doc, size, number)


def _run_chain(target: Target, s3: Any, bucket: str, chain: list[tuple[str, Manifest | None]], point: RestorePoint,
               designs: HeldDesignDocs, deadline: Deadline, log: Log, identities: Identities | None = None) -> bool:
    """Every member's documents, then the design documents, from where `point` says. True: stopped for the
    deadline (point says where to go on)."""
    if point.phase == "docs":
        for member in range(point.member, len(chain)):
            point.member = member
            object_key, manifest = chain[member]
            if _apply(target, s3, bucket, object_key, manifest, member, designs, point.position, deadline,
                      identities=identities):
                return True
            log.info("restore_applied", database=point.database, key=object_key, written=target.totals["docs"])
            point.position = Position()
        point.phase, point.member = "design", 0
    if not designs.overflowed:
        # A validate_doc_update function written earlier would reject older documents (CouchDB runs it for
        # `new_edits: false` writes too): design documents go last, in chain order.
        written = designs.write(target, STALE_CHECK_IDS)
        if written:
            log.info("design_docs_restored", docs=written)
        return False
    log.info("design_docs_read_again", objects=len(chain) - point.member,
             detail=f"more than {designs.cap} bytes of design documents: reading them again to write them last")
    for member in range(point.member, len(chain)):
        point.member = member
        object_key, manifest = chain[member]
        if _apply(target, s3, bucket, object_key, manifest, member, designs, point.position, deadline, True,
                  identities):
            return True
        point.position = Position()
    return False


def _check_sizes(s3: Any, bucket: str, chain: list[tuple[str, Manifest | None]], resumed: bool) -> None:
    """Before anything is written: every object of the chain has the size its manifest recorded (one HEAD each),
    so a truncated or extended object is refused with the target untouched."""
    for object_key, manifest in chain:
        if manifest is None:
            continue
        size = cos.size(s3, bucket, object_key)
        if size != manifest.bytes:
            found = "missing" if size is None else f"{size} bytes"
            raise FormatError(f"restoring {cos.where(bucket, object_key)}: it is {found}, but its manifest recorded "
                              f"{manifest.bytes} bytes: truncated or replaced since the backup"
                              + ("" if resumed else "; nothing was written"))


def check_identities(bucket: str, chain: list[tuple[str, Manifest | None]], identities: Identities | None) -> None:
    """Before anything is written: AGE_IDENTITY opens every encrypted backup of the chain (no I/O)."""
    for object_key, manifest in chain:
        if manifest is not None and manifest.recipients is not None:
            require(identities, manifest.recipients, f"restoring {cos.where(bucket, object_key)}: the backup")


def _begin(config: Config, client: Any, s3: Any, points: RestorePoints, point: RestorePoint | None,
           log: Log) -> tuple[RestorePoint, list[tuple[str, Manifest | None]]]:
    """A new restore (resolve the key and chain, check the objects, prepare the target) or the one checkpointed."""
    assert config.db is not None and config.key is not None and config.cloudant is not None
    db, bucket = config.db, config.cos.bucket
    key = point.key if point is not None else config.key
    if key == "latest":
        assert config.source_db is not None
        key = latest_key(s3, bucket, config.cos.prefix, config.source_db, config.source_host)
    if not cos.exists(s3, bucket, key):
        raise CosError(f"restoring {cos.where(bucket, key)}: no such object; see `cloudant-cos-backup list` (or `python -m backup list`)")
    try:
        chain = chain_for(s3, bucket, key)
    except FormatError as exc:
        raise FormatError(f"restoring {exc}") from None
    if point is not None and [k for k, _ in chain] != point.chain:
        raise FormatError(f"restoring {cos.where(bucket, key)}: its chain is not the one this checkpointed restore "
                          f"began with ({', '.join(point.chain)})")
    _check_sizes(s3, bucket, chain, resumed=point is not None)
    check_identities(bucket, chain, config.identities)
    if point is not None:
        _check_same_target(client, point)
        log.info("restore_resumed", database=db, key=key, member=point.member, line=point.position.line,
                 invocation=point.invocations + 1)
        return point, chain
    latest = chain[-1][1]  # the backup restored: its database's properties and permissions are the target's
    created = _prepare_target(client, db, config.create_target, config.allow_non_empty,
                              None if latest is None else latest.partitioned, log)
    point = RestorePoint(database=db, host=config.cloudant.host, requested=config.key,
                         source_db=config.source_db, key=key, chain=[k for k, _ in chain], created=created,
                         started=time.time(), totals=_fresh_totals(),
                         target_instance=instance_of(cloudant.database_info(client, db)))
    log.info("restore_started", database=db, bucket=bucket, key=key, chain=point.chain)
    return point, chain


def _check_same_target(client: Any, point: RestorePoint) -> None:
    """A continued restore writes into the database the first invocation wrote into, not one re-created (empty)
    since under its name: that would end 'complete' holding only the rest."""
    info = cloudant.database_info(client, point.database)  # 404: a CloudantError naming it
    if instance_of(info) != point.target_instance:
        raise CloudantError(f"restoring into '{point.database}': the database was deleted and re-created since this "
                            "restore's checkpoint (its instance_start_time changed): it does not hold what was written")


def _fresh_totals() -> dict[str, Any]:
    return {"docs": 0, "batches": 0, "skipped_lines": [], "skipped_line_count": 0, "attachments_dropped": 0,
            "stale_leaves_closed": 0}


def run_restore(config: Config, log: Log) -> dict[str, Any]:
    assert config.cloudant is not None and config.db is not None and config.key is not None
    started = time.monotonic()
    db, bucket = config.db, config.cos.bucket
    deadline = Deadline.from_environment(os.environ, config.tune("TIME_BUDGET") or None,
                                         config.tune("SAFETY_MARGIN") or None)
    client, s3 = make_clients(config, log)
    points = RestorePoints(s3, bucket, config.cos.prefix, db, config.cloudant.host, log)
    checkpointed = points.load()
    if checkpointed is not None and not checkpointed.continues(config.key, config.source_db):
        raise CosError(f"restoring into '{db}': another restore into it, of {checkpointed.key}, is checkpointed in "
                       f"{cos.where(bucket, points.key)}; finish it (run it again with its parameters), or delete "
                       "that checkpoint and the database to start over")
    designs = HeldDesignDocs(DESIGN_DOCS_HELD_BYTES)
    try:
        point, chain = _begin(config, client, s3, points, checkpointed, log)
        designs.overflowed = point.designs_overflowed
        designs.load(points.load_designs(point))
    except BackupError as exc:
        if checkpointed is None:
            raise
        raise _failed(exc, client, db, checkpointed, points, log) from None  # it says what the target holds
    parallelism = config.tune("RESTORE_PARALLELISM")
    failure: BackupError | None = None
    stopped = False
    with ThreadPoolExecutor(max_workers=parallelism, thread_name_prefix="restore") as pool:
        target = Target(pool, functools.partial(_write_batch, client, db), functools.partial(_close_stale, client, db),
                        config.tune("RESTORE_BATCH_SIZE"), BATCH_BYTES, parallelism, point.totals,
                        log=log, progress_every=config.tune("PROGRESS_EVERY"),
                        total=chain_total(m for _, m in chain), database=db)
        try:
            stopped = _run_chain(target, s3, bucket, chain, point, designs, deadline, log, config.identities)
        except BackupError as exc:
            failure = exc
    # The pool is shut down: every write sent has ended, so the target's count below is exact.
    if failure is not None:
        raise _failed(failure, client, db, point, points, log)
    if stopped:
        return _checkpoint(config, points, point, designs, log, started)
    return _finished(config, client, points, point, chain[-1][1], log, started)


def _failed(exc: BackupError, client: Any, db: str, point: RestorePoint, points: RestorePoints,
            log: Log) -> BackupError:
    """The restore's error, saying exactly what the target now holds (read after every write ended). A target
    this restore created that holds nothing is deleted again."""
    try:
        info = cloudant.database_info(client, db)
    except BackupError as unreadable:
        state = f"may hold a partial restore (its document count could not be read: {unreadable})"
    else:
        held, deleted = info.get("doc_count") or 0, info.get("doc_del_count") or 0
        if not held and not deleted:
            if point.created and _drop_created(client, db, log):
                state = "holds no documents, and is deleted again (this restore had created it)"
                points.delete(point)
            else:
                state = "holds no documents"
        else:
            state = f"now holds {held} documents" + (f" and {deleted} deleted ones" if deleted else "")
            state += ": delete it before restoring again" if not point.invocations else (
                f"; its checkpoint is kept: run the restore again with the same parameters to go on from the last "
                f"checkpoint, or delete {points.key} and the database to start over")
    told = type(exc).__new__(type(exc))  # same type and fields (status, part...), the fuller message
    told.__dict__.update(exc.__dict__)
    told.args = (f"{exc} -- the restore stopped; '{db}' {state}",)
    return told


def _checkpoint(config: Config, points: RestorePoints, point: RestorePoint, designs: HeldDesignDocs, log: Log,
                started: float) -> dict[str, Any]:
    """Deadline: store where the restore is, hand over to the next invocation."""
    point.invocations += 1
    point.designs_overflowed = designs.overflowed
    points.save(point, b"" if designs.overflowed else designs.dump())
    result: dict[str, Any] = {
        "ok": True, "complete": False, "operation": "restore", "database": point.database,
        "bucket": config.cos.bucket, "key": point.key, "written": point.totals["docs"],
        "invocations": point.invocations, "seconds": round(time.monotonic() - started, 3),
        "detail": "stopped before the deadline; the next invocation with the same parameters continues this restore",
    }
    if config.continue_async:
        result["continued_by"] = openwhisk.continue_backup(
            config, log, {"OPERATION": "restore", "COS_KEY": point.key, "CLOUDANT_DB": point.database})
    log.info("restore_checkpointed", **result)
    return result


def _restore_security(config: Config, client: Any, point: RestorePoint, manifest: Manifest | None,
                      log: Log) -> bool:
    """Give the target the backup's `_security` (after every document is in): by default only a target this restore
    created, with RESTORE_SECURITY true any, with false none. True when it was written."""
    wanted = config.restore_security if config.restore_security is not None else point.created
    if not wanted:
        return False
    if manifest is None or manifest.security is None or not (manifest.security or config.restore_security):
        if config.restore_security:
            log.warning("security_not_restored", database=point.database,
                        detail="the backup holds no permissions (none set, not readable when it was made, or an "
                               "earlier version's backup)")
        return False
    try:
        cloudant.put_security(client, point.database, manifest.security)
    except CloudantError as exc:
        raise CloudantError(f"{exc} -- every document is restored into '{point.database}', but not its permissions: "
                            f"PUT the `security` object of {point.key}.manifest.json to /{point.database}/_security",
                            status=exc.status) from None
    log.info("security_restored", database=point.database)
    return True


def _finished(config: Config, client: Any, points: RestorePoints, point: RestorePoint, manifest: Manifest | None,
              log: Log, started: float) -> dict[str, Any]:
    totals = point.totals
    # Read before the permissions are set: the restoring credentials may not be among the restored members.
    held = cloudant.database_info(client, point.database).get("doc_count")
    security_restored = _restore_security(config, client, point, manifest, log)
    if point.invocations:
        points.delete(point)
    seconds = round(time.monotonic() - started, 3)
    result: dict[str, Any] = {
        "ok": True, "complete": True, "operation": "restore", "database": point.database, "bucket": config.cos.bucket,
        "key": point.key,
        "docs": held,  # what the target holds now
        "written": totals["docs"],  # document revisions written (a chain writes a changed document again)
        "batches": totals["batches"], "invocations": point.invocations + 1, "seconds": seconds,
    }
    if not point.invocations:
        result["docs_per_second"] = round(totals["docs"] / seconds, 1) if seconds else None
    if security_restored:
        result["security_restored"] = True
    if len(point.chain) > 1:
        result["chain"] = point.chain
    if totals["stale_leaves_closed"]:
        result["stale_leaves_closed"] = totals["stale_leaves_closed"]
    if totals["skipped_line_count"]:
        result["skipped_lines"] = totals["skipped_lines"]  # the first SKIPPED_KEPT
        result["skipped_line_count"] = totals["skipped_line_count"]
    if totals["attachments_dropped"]:
        result["attachments_dropped"] = totals["attachments_dropped"]
        log.warning("attachments_not_restored", database=point.database, docs=totals["attachments_dropped"],
                    detail="the backup holds only their attachments' stubs (made with ATTACHMENTS=false, by couchbackup "
                           "without --attachments, or by an earlier version): restored without them")
    log.info("restore_finished", **result)
    return result
