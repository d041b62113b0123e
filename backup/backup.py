"""Backup: stream one database into one COS object, all or nothing, across invocations if need be.

    Cloudant (_all_docs pages, or _changes + _bulk_get for an incremental)
        --(reader thread)--> lines --> bounded Pipe --> MultipartUpload --> COS

The reader and the uploader run concurrently; memory is about one page + the pipe + one part.
On any failure the upload is aborted, so no object appears at the key. Near the deadline the backup
stops and stores a checkpoint instead (see checkpoint.py); the next invocation continues it. On
completion a manifest (docs, bytes, per-part sha256) is written beside the object; if that fails the
object is deleted again.
"""

from __future__ import annotations

import functools
import os
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from backup import cloudant, cos, interrupt, openwhisk
from backup.attachments import stub_bytes
from backup.catalog import find_backups
from backup.checkpoint import Checkpoint, CheckpointStore, LeaseLost
from backup.clients import make_clients
from backup.config import MIB, Config
from backup.deadline import Deadline
from backup.errors import BackupError, CloudantError, CosError, IncompleteReadError
from backup.format import loads, metadata_line, raw_docs_line
from backup.keys import backup_key, format_time, manifest_key
from backup.leftovers import abort_leftovers
from backup.log import Log, percent
from backup.manifest import Manifest, combined_sha256
from backup.pipe import Pipe, PipeCancelled
from backup.plan import instance_of, plan_backup
from backup.refetch import Refetch, entry
from backup.retention import apply_retention
from backup.rows import size_hint
from backup.stages import Segment, Stages, content_type

# Bytes the reader may run ahead of the uploader. Parts upload in the background while the next fills,
# so a small pipe keeps both busy; memory is about pipe + 2 parts + one page.
PIPE_BYTES = 1 * MIB
# Target size of one `_all_docs` page: the row limit shrinks as the average document grows, so a page
# is held whole (half the buffer leaves room for the row envelopes and uneven docs). At Cloudant's
# 5 global queries/s that still allows ~40 MB/s, more than an action's link carries.
PAGE_BYTES = cloudant.PAGE_BUFFER // 2
# A line ends at DOCS_PER_LINE documents or at this many bytes, whichever comes first: 500 documents
# near Cloudant's 1 MB limit would otherwise make one 500 MB line (held whole here and by any restore).
LINE_BYTES = 4 * MIB
# Changes per `_changes` page (and per streamed `_bulk_get`) in an incremental backup.
CHANGES_PAGE = 500


@dataclass
class Line:
    """One line for the object, with where reading resumes after it, how many entries (documents, and in a full
    backup the conflicting leaves of some) it holds, and its other counts (see LINE_COUNTS)."""

    data: bytes
    mark: Any
    docs: int
    counts: dict[str, int] = field(default_factory=dict)


# Counts a backup adds up line by line (and keeps across invocations, as the upload keeps them per part):
# conflicting leaves beyond the winners (full backups), documents whose attachments were left out (ATTACHMENTS false).
LINE_COUNTS = ("leaves", "attachments_skipped")


class _Reader:
    """Reads the database into the pipe on its own thread; stops early when the deadline comes."""

    def __init__(self, client: Any, db: str, pipe: Pipe, config: Config, cp: Checkpoint, deadline: Deadline,
                 first_line: bytes | None, log: Log, hint: tuple[int, int] | None = None) -> None:
        self.client, self.db, self.pipe, self.log, self.cp = client, db, pipe, log, cp
        self.hint = hint
        self.deadline = deadline
        self.max_rows = config.tune("PAGE_SIZE")
        self.per_line = config.tune("DOCS_PER_LINE")
        self.progress_every = config.tune("PROGRESS_EVERY")
        self.first_line = first_line
        self.read = 0  # docs read from the database (this invocation)
        # Docs the backup already holds from earlier invocations, and all it will (the database's doc_count when
        # it started; unknown for an incremental, whose changes are not counted beforehand): for progress lines.
        self.before = cp.tail["docs"] if cp.tail else (cp.parts[-1]["docs"] if cp.parts else 0)
        self.total = cp.doc_count if cp.kind == "full" and isinstance(cp.doc_count, int) else None
        self._next_progress = self.progress_every
        self.final_seq: Any = cp.seq
        self.stopped = False  # True: ended by the deadline, not by the end of the data
        self.thread = threading.Thread(target=self._run, name=f"reader-{db}", daemon=True)

    def _run(self) -> None:
        try:
            if self.first_line is not None:
                self.pipe.write(Line(self.first_line, None, 0), len(self.first_line))
            lines = self._incremental() if self.cp.kind == "incremental" else self._full()
            for line in lines:
                self.pipe.write(line, len(line.data))
            self.pipe.close()
        except PipeCancelled:
            pass  # the uploader stopped (failure or deadline) and reports why
        except BaseException as exc:  # noqa: BLE001 - handed to the uploader, which raises it
            self.pipe.close(error=exc)

    def _page_read(self, docs: int) -> None:
        """Count docs read; every PROGRESS_EVERY of them, log the backup's docs so far of its total."""
        self.read += docs
        if self.read >= self._next_progress:
            done = self.before + self.read
            self.log.info("progress", operation="backup", database=self.db, docs=done, total=self.total,
                          percent=percent(done, self.total))
            while self._next_progress <= self.read:
                self._next_progress += self.progress_every

    def _time_is_up(self) -> bool:
        if self.deadline.reached():
            self.stopped = True
        return self.stopped

    def _full(self) -> Iterator[Line]:
        """Winning revisions of live docs in id order, each with its conflicting leaves and, with ATTACHMENTS, its
        attachments (see refetch.py); a line's mark is its last id (exact resume), so a document's entries are
        never split between two lines."""
        refetch = Refetch(lambda items, attachments: cloudant.iter_bulk_get(
            self.client, self.db, items, attachments=attachments, latest=True), self.cp.attachments,
            functools.partial(cloudant.attachment, self.client, self.db))
        line: list[bytes] = []
        last_id, size, counts = "", 0, dict.fromkeys(LINE_COUNTS, 0)
        for page in cloudant.iter_pages(self.client, self.db, self.max_rows, PAGE_BYTES, after=self.cp.resume_mark(),
                                        batch=self.per_line, hint=self.hint, whole=self.cp.read_whole):
            self._page_read(len(page))
            for doc_id, entries, skipped in refetch.page(page):
                line += entries
                last_id, size = doc_id, size + sum(map(len, entries))
                counts["leaves"] += len(entries) - 1
                counts["attachments_skipped"] += skipped
                if len(line) >= self.per_line or size >= LINE_BYTES:
                    yield Line(raw_docs_line(line), last_id, len(line), counts)
                    line, size, counts = [], 0, dict.fromkeys(LINE_COUNTS, 0)
            if self._time_is_up():
                return
        if line:
            yield Line(raw_docs_line(line), last_id, len(line), counts)

    def _incremental(self) -> Iterator[Line]:
        """Changed docs (tombstones included) with `_revisions`, so a restore extends each doc's history.

        Every leaf revision the feed lists for a changed doc is read, not only the winner: a conflict
        resolved by deleting the winning leaf must bring that tombstone, or the restore's winner is wrong.
        A doc without conflicts is one revision; a conflicted one is several (each leaf once per change).

        A line's mark is a feed position from which re-reading repeats nothing *after* the line: the
        page's own start when the line ends mid-page. Re-reading a change is harmless (same revision).
        """
        pending: list[bytes] = []
        size, skipped = 0, 0
        start = self.cp.resume_mark() if self.cp.resume_mark() is not None else self.cp.since
        for results, page_since, last_seq in cloudant.iter_changes(self.client, self.db, start, CHANGES_PAGE):
            wanted = [{"id": r["id"], "rev": leaf["rev"]} for r in results for leaf in r.get("changes") or []
                      if leaf.get("rev")]
            read = 0
            for doc in cloudant.iter_bulk_get(self.client, self.db, wanted, attachments=self.cp.attachments):
                read += 1
                raw, skip = self._changed(doc)
                pending.append(raw)
                size, skipped = size + len(raw), skipped + skip
                if len(pending) >= self.per_line or size >= LINE_BYTES:
                    mark = last_seq if read == len(wanted) else page_since
                    yield Line(raw_docs_line(pending), mark, len(pending), {"attachments_skipped": skipped})
                    pending, size, skipped = [], 0, 0
            self._page_read(read)
            self.final_seq = last_seq
            if self._time_is_up():
                return  # docs still pending are re-read next time, from the last line's mark
        if pending:
            yield Line(raw_docs_line(pending), self.final_seq, len(pending), {"attachments_skipped": skipped})

    def _changed(self, doc: dict[str, Any] | bytes) -> tuple[bytes, bool]:
        """A changed document in the backup format (its attachments as couchbackup writes them); and whether its
        attachments were left out (stubs, without ATTACHMENTS). Bytes: too deep to decode, spliced as read."""
        if isinstance(doc, bytes):
            if b'"_attachments"' not in doc:
                return doc, False
            decoded = loads(doc)  # its top-level members: `_attachments` is one
            if not isinstance(decoded, dict):
                return doc, False
            doc = decoded
        return entry(doc), not self.cp.attachments and stub_bytes(doc) is not None


def _owner() -> str:
    return os.environ.get("__OW_ACTIVATION_ID") or f"pid{os.getpid()}-{uuid.uuid4().hex[:8]}"


def _start_plan(config: Config, s3: Any, info: dict[str, Any], log: Log, started: datetime,
                read_whole: bool) -> Checkpoint:
    """A new backup: full, or incremental after the newest complete backup of this database (see plan.py)."""
    db = config.db
    assert db is not None and config.cloudant is not None
    host = config.cloudant.host
    entries = find_backups(s3, config.cos.bucket, config.cos.prefix, db, host) if config.mode == "incremental" else []
    plan = plan_backup(config.mode, entries, info, config.tune("FULL_EVERY"))
    if plan.full_because:
        log.info("full_backup_instead", database=db, because=plan.full_because)
    base = plan.base.name.key if plan.base is not None else None
    since = plan.base.manifest.seq if plan.base is not None and plan.base.manifest is not None else None
    key = backup_key(config.cos.prefix, db, started, config.compression, bool(config.recipients))
    if cos.exists(s3, config.cos.bucket, key):
        raise CosError(f"backing up '{db}': {cos.where(config.cos.bucket, key)} already exists; refusing to overwrite it")
    return Checkpoint(
        database=db, key=key, upload_id="", kind=plan.kind, started=format_time(started), created=time.time(),
        update_seq=info.get("update_seq"), seq=info.get("update_seq") if plan.kind == "full" else since,
        base=base, since=since, doc_count=info.get("doc_count"), doc_del_count=info.get("doc_del_count"),
        host=host, instance=instance_of(info),
        full_because=plan.full_because, read_whole=read_whole, attachments=config.attachments,
        compression=config.compression, compression_level=config.compression_level, recipients=list(config.recipients),
    )


def deadline_for(config: Config) -> Deadline:
    return Deadline.from_environment(os.environ, config.tune("TIME_BUDGET") or None, config.tune("SAFETY_MARGIN") or None)


def run_backup(config: Config, log: Log, now: datetime | None = None, deadline: Deadline | None = None) -> dict[str, Any]:
    if config.many:
        from backup.fanout import run_many

        return run_many(config, log)
    assert config.cloudant is not None and config.db is not None
    started_at = time.monotonic()
    deadline = deadline or deadline_for(config)  # a fan-out passes one deadline for all its databases
    client, s3 = make_clients(config, log)
    try:
        return _backup(config, log, client, s3, now, deadline, started_at, read_whole=False)
    except IncompleteReadError as exc:
        if exc.read_whole:
            raise
        # Some servers return no rows for a page starting at certain ids (pouchdb-server: a first character in
        # U+E000-U+FFFF). The upload was aborted: start again, reading the database in one streamed request.
        log.warning("paged_read_lost_documents", database=config.db, error=str(exc),
                    detail="backing the database up again, read in one request")
    # Outside the except block: a signal during the second backup must stop it (backup.interrupt holds signals
    # while an exception is being handled).
    return _backup(config, log, client, s3, now, deadline, started_at, read_whole=True)


def _backup(config: Config, log: Log, client: Any, s3: Any, now: datetime | None, deadline: Deadline,
            started_at: float, read_whole: bool) -> dict[str, Any]:
    assert config.cloudant is not None and config.db is not None
    db, bucket = config.db, config.cos.bucket
    info = cloudant.database_info(client, db)
    cos.check_bucket(s3, bucket)
    store = CheckpointStore(s3, bucket, config.cos.prefix, db, config.cloudant.host, log)
    cp = store.load()
    owner = _owner()
    if cp is not None and cp.leased_by_other(owner, time.time()):
        raise CosError(f"backing up '{db}': another invocation ({cp.lease_owner}) is writing this backup until "
                       f"{format_time(datetime.fromtimestamp(cp.lease_until, UTC))}; not starting a second writer")
    if cp is not None and time.time() - cp.created > config.tune("CHECKPOINT_MAX_AGE_HOURS") * 3600:
        store.abandon(cp)
        cp = None
    if cp is not None and cp.instance != instance_of(info):
        store.abandon(cp)  # the database was re-created since this backup started: its reads are of another one
        cp = None
    resumed = cp is not None
    # Incomplete uploads of this database's killed runs (no checkpoint refers to them): before ours exists.
    leftovers = abort_leftovers(s3, bucket, config.cos.prefix, db, log)
    if cp is not None:
        store.acquire(cp, owner, deadline.at or time.time() + 3600)  # LeaseLost: another invocation got it first
        log.info("backup_resumed", database=db, key=cp.key, parts=len(cp.parts), invocation=cp.invocations + 1,
                 docs=cp.tail["docs"] if cp.tail else (cp.parts[-1]["docs"] if cp.parts else 0))
    else:
        cp = _start_plan(config, s3, info, log, now or datetime.now(UTC), read_whole)
        log.info("backup_started", database=db, bucket=bucket, key=cp.key, kind=cp.kind, base=cp.base,
                 doc_count=cp.doc_count, update_seq=cp.update_seq)
    # The metadata line comes from the plan alone, so a continued backup writes the same bytes.
    first_line = None if (cp.parts or cp.tail) else metadata_line(
        attachments=cp.attachments, conflicts=True, database=db, started=cp.started, update_seq=cp.update_seq,
        doc_count=cp.doc_count, backup=cp.kind, base=cp.base, since=cp.since)

    pipe = Pipe(PIPE_BYTES)
    reader = _Reader(client, db, pipe, config, cp, deadline, first_line, log, size_hint(info))
    upload = cos.MultipartUpload(s3, bucket, cp.key, config.tune("PART_SIZE_MB") * MIB, log,
                                 metadata={"database": db, "tool": "cloudant-cos-backup"},
                                 upload_id=cp.upload_id or None, parts=cp.parts, next_part=cp.next_part,
                                 deadline=deadline, content_type=content_type(cp.compression, bool(cp.recipients)))
    stages: Stages | None = None
    stopped = False
    read_check = ReadCheck()
    tracked = resumed  # a checkpoint in the bucket refers to this upload
    if tracked:  # after a failure, abort it only while that checkpoint is still ours
        upload.guard = functools.partial(store.may_abort, cp)
    try:
        with upload:
            cp.upload_id = upload.upload_id or ""
            if not resumed and deadline.at is not None:
                # Recorded at once, leased until the deadline: a process killed before its first checkpoint
                # leaves an upload that a later run continues (or abandons), never an untracked billed one.
                # Only where there is no checkpoint (If-None-Match): else another backup started meanwhile.
                cp.lease_owner, cp.lease_until = owner, deadline.at
                store.create(cp)
                tracked = True
                upload.guard = functools.partial(store.may_abort, cp)
            tail = store.load_tail(cp) if resumed else b""
            if tail and cp.tail:
                counts = {name: n - upload.counts.get(name, 0) for name, n in (cp.tail.get("counts") or {}).items()}
                upload.write(tail, cp.tail["mark"], cp.tail["docs"] - upload.docs, cp.tail["lines"] - upload.lines,
                             counts)
            # The tail is stored bytes (a whole segment): what this invocation writes begins a segment of its own.
            stages = Stages(cp.compression, cp.compression_level, cp.recipients, offset=upload.written)
            reader.thread.start()
            try:
                while True:
                    interrupt.check()  # a signal held or swallowed meanwhile stops the backup here
                    if deadline.reached():
                        stopped = True
                        break
                    try:
                        line = pipe.get(timeout=0.25)
                    except TimeoutError:
                        continue
                    if line is None:
                        stopped = reader.stopped
                        break
                    _write_line(upload, stages, cp, line)
                if not stopped:
                    upload.write(stages.end_segment(), upload.mark, 0, lines=0)  # the gzip trailer, age's last chunk
                    read_check = _check_all_read(client, cp, upload.docs - upload.counts.get("leaves", 0))
                    # Before the completion: from then on a failure (a signal) must not come between object and manifest.
                    facts = _database_facts(client, db, info, log)
                    if tracked:
                        store.confirm(cp)  # LeaseLost: another invocation took this backup over meanwhile
                    upload.complete()
            except cos.PartStalled:
                stopped = True  # a part upload outlived the deadline: checkpoint without it
            pipe.cancel()
            if stopped:
                return _with_leftovers(_checkpoint(config, store, cp, upload, stages, log, started_at), leftovers)
    except BaseException:
        pipe.cancel()
        if stages is not None:
            stages.close()
        # Aborted already when the failure left `with upload` (this covers one raised by its own exit, a signal's);
        # the guard keeps an upload another invocation took over.
        upload.abort()
        if upload.completed:  # a signal right after the completion: an object without its manifest must not stay
            _delete_unverifiable(s3, bucket, cp.key, log)
        if tracked:
            store.delete(cp)  # the checkpoint points at nothing now (deleted only while it is still ours)
        raise
    finally:
        if reader.thread.ident is not None:
            # After a clean end the reader has already finished; after a failure or the deadline it may be
            # inside a request: it is a daemon thread whose next write raises, so do not wait for it.
            with interrupt.deferred():  # a signal here would leave a completed object without its manifest
                reader.thread.join(timeout=2.0)

    return _with_leftovers(_finish(config, s3, store if tracked else None, cp, upload, reader, log, started_at,
                                   read_check, facts), leftovers)


@dataclass(frozen=True)
class DatabaseFacts:
    """What a backup keeps of the database beside its documents, for a restore to give the target."""

    partitioned: bool
    security: dict[str, Any] | None  # its `_security` object; None when it could not be read
    security_error: str | None = None


def _database_facts(client: Any, db: str, info: dict[str, Any], log: Log) -> DatabaseFacts:
    """The database's properties and permissions. Credentials that may not read `_security` (a reader's API key)
    do not fail the backup: it says so instead."""
    try:
        security = cloudant.security(client, db)
    except CloudantError as exc:
        log.warning("security_not_saved", database=db, error=str(exc),
                    detail="the backup holds the documents but not the database's permissions")
        return DatabaseFacts(cloudant.is_partitioned(info), None, str(exc))
    return DatabaseFacts(cloudant.is_partitioned(info), security)


def _with_leftovers(result: dict[str, Any], aborted: list[str]) -> dict[str, Any]:
    """The result, with the leftover uploads of killed runs this backup aborted (see leftovers.py)."""
    if aborted:
        result["aborted_uploads"] = aborted
    return result


@dataclass(frozen=True)
class ReadCheck:
    """How the documents a full backup read compare with what the database held (see `_check_all_read`)."""

    changed: bool = False  # the database's update_seq moved during the backup
    missing: int = 0  # at least this many documents were not read (known only with doc_del_count)


def _check_all_read(client: Any, cp: Checkpoint, docs: int) -> ReadCheck:
    """A full backup holds every document the database held, unless it changed meanwhile: fewer documents from
    a database whose update_seq did not move means the reading lost some (IncompleteReadError: the upload is
    aborted, nothing is stored).

    When it moved (it may on a cluster without any write: each shard copy has its own sequence), deletions are
    the only way to hold fewer: fewer than doc_count minus the documents deleted meanwhile (doc_del_count grew by
    that much) are reported as `missing` (the backup is kept: a lagging shard copy could also explain it)."""
    if cp.kind != "full":
        return ReadCheck()
    after = cloudant.database_info(client, cp.database)
    changed = after.get("update_seq") != cp.update_seq
    if not changed and isinstance(cp.doc_count, int) and docs < cp.doc_count:
        raise IncompleteReadError(
            f"backing up '{cp.database}': {docs} documents were read but the database holds {cp.doc_count} and did "
            "not change during the backup: the server's _all_docs pages left some out; nothing was stored",
            read_whole=cp.read_whole)
    deleted_after = after.get("doc_del_count")
    if not (changed and isinstance(cp.doc_count, int) and isinstance(cp.doc_del_count, int)
            and isinstance(deleted_after, int)):
        return ReadCheck(changed)
    return ReadCheck(changed, max(0, cp.doc_count - max(0, deleted_after - cp.doc_del_count) - docs))


def _write_line(upload: cos.MultipartUpload, stages: Stages, cp: Checkpoint, line: Line) -> None:
    """One line through the stages into the upload. The first line of an invocation, and the first after
    SEGMENT_BYTES of plain text, begins a segment, recorded with where it starts in the object and in the plain text
    (a reader of the object can begin there)."""
    if not _transformed(cp):  # plain text is one segment: the stored bytes themselves
        upload.write(line.data, line.mark, line.docs, counts={**line.counts, "plain_bytes": len(line.data)})
        return
    if not stages.open and line.data:
        cp.segments.append(Segment(upload.written, upload.counts.get("plain_bytes", 0)).to_json())
    upload.write(stages.write(line.data), line.mark, line.docs, counts={**line.counts, "plain_bytes": len(line.data)})
    if stages.segment_full:
        upload.write(stages.end_segment(), upload.mark, 0, lines=0)


def _checkpoint(config: Config, store: CheckpointStore, cp: Checkpoint, upload: cos.MultipartUpload, stages: Stages,
                log: Log, started_at: float) -> dict[str, Any]:
    """Deadline: keep the upload open, store parts + tail + resume point, hand over to the next invocation."""
    existing, _ = store.read()
    if existing is not None and existing.upload_id != cp.upload_id:
        upload.abort()
        raise CosError(f"backing up '{cp.database}': another backup of it was checkpointed meanwhile "
                       f"({existing.key}); this one is dropped so the two never mix")
    previous_tail = (cp.tail or {}).get("key")
    tail = upload.take_buffer() + stages.end_segment()  # what the parts lack, its segment ended: stored bytes
    cp.parts, cp.next_part = upload.parts, upload.next_part
    cp.tail = {"mark": upload.mark, "docs": upload.docs, "lines": upload.lines, "counts": dict(upload.counts)} if tail else None
    cp.lease_owner, cp.lease_until = None, 0.0
    cp.invocations += 1
    try:
        store.save(cp, tail, previous_tail)
    except LeaseLost:
        raise  # another invocation holds the checkpoint now: the tails it names are its own
    except BaseException:
        # The upload is aborted next (the caller's cleanup): neither tail may outlive it.
        store.delete_tails(previous_tail, (cp.tail or {}).get("key"))
        raise
    result: dict[str, Any] = {
        "ok": True, "complete": False, "operation": "backup", "database": cp.database, "bucket": config.cos.bucket,
        "key": cp.key, "kind": cp.kind, "docs": upload.docs, "bytes": upload.uploaded_bytes + len(tail), "parts": len(upload.parts),
        "invocations": cp.invocations, "seconds": round(time.monotonic() - started_at, 3),
        "detail": "stopped before the deadline; the next invocation with the same parameters continues this backup",
    }
    if config.continue_async:
        result["continued_by"] = openwhisk.continue_backup(config, log)
    log.info("backup_checkpointed", **result)
    return result


def _transformed(cp: Checkpoint) -> bool:
    """Stored bytes differ from the plain text (compressed or encrypted): the plain size is counted line by line."""
    return cp.compression != "none" or bool(cp.recipients)


def _delete_unverifiable(s3: Any, bucket: str, key: str, log: Log) -> bool:
    """Delete a completed object whose manifest was not written. False (logged) when that fails too."""
    try:
        with interrupt.deferred():
            cos.delete(s3, bucket, key)
        return True
    except BackupError as exc:
        log.error("unverifiable_object_left", key=key, error=str(exc),
                  detail="the backup has no manifest, so it counts as incomplete; delete it by hand")
        return False


def _finish(config: Config, s3: Any, store: CheckpointStore | None, cp: Checkpoint, upload: cos.MultipartUpload,
            reader: _Reader, log: Log, started_at: float, read_check: ReadCheck, facts: DatabaseFacts) -> dict[str, Any]:
    bucket = config.cos.bucket
    manifest = Manifest(
        key=cp.key, database=cp.database, docs=upload.docs, lines=upload.lines, bytes=upload.uploaded_bytes,
        sha256=combined_sha256([p["sha256"] for p in upload.parts]),
        parts=[{"size": p["size"], "sha256": p["sha256"]} for p in upload.parts],
        started=cp.started, finished=format_time(datetime.now(UTC)), update_seq=cp.update_seq,
        seq=reader.final_seq if cp.kind == "incremental" else cp.seq,
        last_id=upload.mark if cp.kind == "full" else None, kind=cp.kind, base=cp.base, since=cp.since,
        invocations=cp.invocations + 1, host=cp.host, instance=cp.instance, doc_count=cp.doc_count,
        attachments=cp.attachments, conflicts=True, conflict_leaves=upload.counts.get("leaves", 0),
        partitioned=facts.partitioned, security=facts.security,
        compression=cp.compression, compression_level=cp.compression_level,
        plain_bytes=upload.counts.get("plain_bytes", 0) if _transformed(cp) else upload.uploaded_bytes,
        segments=cp.segments, encryption={"format": "age", "recipients": cp.recipients} if cp.recipients else None,
    )
    try:
        if store is not None:
            store.delete(cp)  # the upload is complete: its checkpoint is stale whatever happens to the manifest
        cos.put_json(s3, bucket, manifest_key(cp.key), manifest.to_json())
    except BaseException as exc:  # a failure, or a signal: never an object without its manifest
        # Without its manifest the object cannot be verified: remove it rather than leave a doubtful backup.
        if not _delete_unverifiable(s3, bucket, cp.key, log) and isinstance(exc, BackupError):
            raise CosError(f"{exc}; and deleting the unverifiable object {cp.key} failed too") from None
        raise
    seconds = round(time.monotonic() - started_at, 3)
    result: dict[str, Any] = {
        "ok": True, "complete": True, "operation": "backup", "database": cp.database, "bucket": bucket,
        "key": cp.key, "kind": cp.kind, "docs": manifest.docs, "bytes": manifest.bytes, "parts": len(upload.parts),
        "invocations": manifest.invocations, "seconds": seconds, "sha256": manifest.sha256,
        "compression": cp.compression, "encrypted": bool(cp.recipients), "plain_bytes": manifest.plain_bytes,
    }
    result["attachments"] = cp.attachments
    if skipped := upload.counts.get("attachments_skipped", 0):
        result["attachments_skipped"] = skipped  # documents whose attachments this backup does not hold
        log.warning("attachments_not_backed_up", database=cp.database, docs=skipped,
                    detail="ATTACHMENTS is false: these documents are backed up without their attachments")
    if manifest.conflict_leaves:
        result["conflict_leaves"] = manifest.conflict_leaves
    result["security_saved"] = facts.security is not None
    if facts.security_error:
        result["security_error"] = facts.security_error
    if facts.partitioned:
        result["partitioned"] = True
    if cp.base:
        result["base"] = cp.base
    if cp.full_because:
        result["full_because"] = cp.full_because
    if cp.kind == "full" and cp.doc_count is not None:
        result["doc_count"] = cp.doc_count  # the database's, when the backup started
        if read_check.changed:
            result["database_changed"] = True  # so docs may differ from doc_count
        if read_check.missing:
            result["docs_missing"] = read_check.missing
            log.warning("documents_may_be_missing", database=cp.database, docs=upload.docs, doc_count=cp.doc_count,
                        missing=read_check.missing,
                        detail="fewer documents were read than the database held minus those deleted meanwhile")
    if cp.read_whole:
        result["read_whole"] = True
    if manifest.invocations == 1:
        result["docs_per_second"] = round(manifest.docs / seconds, 1) if seconds else None
    try:
        result.update(apply_retention(config, s3, log))
    except BackupError as exc:
        # The backup is complete and verified by its manifest: retention failing must not fail it (a retry
        # would make a second backup); the next run's retention catches up.
        log.warning("retention_failed", database=cp.database, error=str(exc))
        result["retention_error"] = str(exc)
    log.info("backup_finished", **result)
    return result
