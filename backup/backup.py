"""Backup: stream one database into one COS object, all or nothing.

    Cloudant `_all_docs` pages --(reader thread)--> lines --> bounded Pipe --> MultipartUpload --> COS

The reader and the uploader run concurrently; memory is about one page + the pipe + one part.
On any failure the upload is aborted, so no object appears at the key. On success a manifest
(doc count, bytes, sha256) is written beside the object; if that fails the object is deleted again.
"""

from __future__ import annotations

import hashlib
import threading
import time
from datetime import UTC, datetime
from typing import Any

from backup import cloudant, cos
from backup.config import MIB, Config
from backup.errors import BackupError, CosError
from backup.format import docs_line, metadata_line
from backup.keys import backup_key, format_time, manifest_key
from backup.log import Log
from backup.manifest import Manifest
from backup.pipe import Pipe, PipeCancelled

# Bytes the reader may run ahead of the uploader: enough to keep both busy, small enough to stay flat.
PIPE_BYTES = 16 * MIB
# Target size of one `_all_docs` page: PAGE_SIZE rows of tiny docs is cheap, of 1 MB docs it is not,
# so the row limit shrinks as the average document grows (memory stays flat, requests stay few).
PAGE_BYTES = 8 * MIB


class _Reader:
    """Reads the database into the pipe on its own thread; counts what it wrote."""

    def __init__(self, client: Any, db: str, pipe: Pipe, config: Config, first_line: bytes, log: Log) -> None:
        self.client, self.db, self.pipe, self.log = client, db, pipe, log
        self.page_size = config.tune("PAGE_SIZE")
        self.per_line = config.tune("DOCS_PER_LINE")
        self.progress_every = config.tune("PROGRESS_EVERY")
        self.first_line = first_line
        self.docs = 0
        self.lines = 0
        self.bytes = 0
        self.last_id: str | None = None
        self.thread = threading.Thread(target=self._run, name=f"reader-{db}", daemon=True)

    def _run(self) -> None:
        try:
            self._emit(self.first_line)
            pending: list[dict[str, Any]] = []
            next_progress = self.progress_every
            for page in cloudant.iter_pages(self.client, self.db, self._next_page_size):
                pending.extend(page)
                while len(pending) >= self.per_line:
                    self._emit_docs(pending[: self.per_line])
                    del pending[: self.per_line]
                if self.docs + len(pending) >= next_progress:
                    self.log.info("progress", database=self.db, docs=self.docs + len(pending))
                    next_progress += self.progress_every
            if pending:
                self._emit_docs(pending)
            self.pipe.close()
        except PipeCancelled:
            pass  # the uploader failed and reports why
        except BaseException as exc:  # noqa: BLE001 - handed to the uploader, which raises it
            self.pipe.close(error=exc)

    def _next_page_size(self) -> int:
        if not self.docs:
            return min(self.page_size, 500)  # first page: doc sizes still unknown
        average = max(self.bytes // self.docs, 1)
        return max(1, min(self.page_size, PAGE_BYTES // average))

    def _emit_docs(self, docs: list[dict[str, Any]]) -> None:
        self._emit(docs_line(docs))
        self.docs += len(docs)
        self.last_id = docs[-1]["_id"]

    def _emit(self, line: bytes) -> None:
        self.pipe.write(line)
        self.lines += 1
        if self.lines > 1:
            self.bytes += len(line)


def run_backup(config: Config, log: Log, now: datetime | None = None) -> dict[str, Any]:
    assert config.cloudant is not None and config.db is not None
    started_at = time.monotonic()
    started = now or datetime.now(UTC)
    db, bucket = config.db, config.cos.bucket
    timeout, retries = config.tune("REQUEST_TIMEOUT"), config.tune("MAX_RETRIES")
    client = cloudant.make_client(config.cloudant, timeout, retries)
    s3 = cos.make_client(config.cos, timeout, retries)

    info = cloudant.database_info(client, db)
    cos.check_bucket(s3, bucket)
    key = backup_key(config.cos.prefix, db, started)
    if cos.exists(s3, bucket, key):
        raise CosError(f"backing up '{db}': {cos.where(bucket, key)} already exists; refusing to overwrite it")
    log.info("backup_started", database=db, bucket=bucket, key=key, doc_count=info.get("doc_count"),
             update_seq=info.get("update_seq"))

    first = metadata_line(database=db, started=format_time(started), update_seq=info.get("update_seq"),
                          doc_count=info.get("doc_count"))
    pipe = Pipe(PIPE_BYTES)
    reader = _Reader(client, db, pipe, config, first, log)
    digest = hashlib.sha256()
    upload = cos.MultipartUpload(s3, bucket, key, config.tune("PART_SIZE_MB") * MIB, log,
                                 metadata={"database": db, "tool": "cloudant-cos-backup"})
    try:
        with upload:
            reader.thread.start()
            while chunk := pipe.read():
                digest.update(chunk)
                upload.write(chunk)
            upload.complete()
    except BaseException:
        pipe.cancel()
        raise
    finally:
        if reader.thread.ident is not None:
            reader.thread.join()

    manifest = Manifest(
        key=key, database=db, docs=reader.docs, lines=reader.lines, bytes=upload.bytes, sha256=digest.hexdigest(),
        started=format_time(started), finished=format_time(datetime.now(UTC)),
        update_seq=info.get("update_seq"), last_id=reader.last_id,
    )
    try:
        cos.put_json(s3, bucket, manifest_key(key), manifest.to_json())
    except BackupError as exc:
        # Without its manifest the object cannot be verified: remove it rather than leave a doubtful backup.
        try:
            cos.delete(s3, bucket, key)
        except BackupError as cleanup:
            raise CosError(f"{exc}; and deleting the unverifiable object failed too: {cleanup}") from None
        raise
    seconds = round(time.monotonic() - started_at, 3)
    result = {
        "ok": True, "operation": "backup", "database": db, "bucket": bucket, "key": key, "docs": reader.docs,
        "bytes": upload.bytes, "parts": len(upload.parts), "seconds": seconds,
        "docs_per_second": round(reader.docs / seconds, 1) if seconds else None, "sha256": manifest.sha256,
    }
    log.info("backup_finished", **result)
    return result
