"""Checkpoints: how a backup bigger than one invocation continues in the next one.

A backup that reaches its deadline stores, in the bucket: the checkpoint (upload id, the parts uploaded
so far with their ETags and resume marks, counts, when the backup started) and a *tail* object with the
lines written since the last part (COS parts must be >= 5 MiB except the last, so a short remainder
cannot be a part yet). The next invocation with the same parameters picks both up and continues the
same multipart upload; the final object is the same bytes a one-shot backup would have written.

A lease (owner + expiry) in the checkpoint keeps two invocations from writing one upload at once. It is taken with a
conditional write: a fresh backup creates its checkpoint with `If-None-Match: *`, a continuing one replaces the
version it read with `If-Match: <its ETag>`. Of two invocations racing, the store lets exactly one write; the other
gets 412 and stops before it writes anything. Every later write of the checkpoint is conditional on the ETag this
invocation last wrote, so one whose lease was taken over (it outlived its deadline) fails instead of writing.

Where the store ignores these headers, what still holds: the checkpoint is read back right after the lease is
written, and before every act that could harm another invocation (completing, checkpointing, aborting the upload,
deleting the checkpoint or a tail) the checkpoint must still be the very version this invocation wrote (its ETag).
A loser never aborts or deletes the winner's upload, checkpoint or tail. The window left: two invocations whose
lease writes both land before either reads back both believe they hold the lease and both upload parts into the
same upload (the same part numbers, each replacing the other's) until the first of those checks, which only the
one whose write landed last passes. That one's completion lists its own parts' ETags, so a part the other replaced
with different bytes fails the completion (S3 checks every ETag) rather than the object; the tail object of an
invocation number is shared the same way, and a mismatch is caught by its sha256 in the checkpoint.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

from backup import cos, interrupt
from backup.errors import CosError
from backup.keys import checkpoint_key, tail_key
from backup.log import Log

FORMAT = "cloudant-cos-backup/checkpoint/1"


@dataclass
class Checkpoint:
    database: str
    key: str  # the final object's key
    upload_id: str
    kind: str  # "full" | "incremental"
    started: str  # ISO time the backup started (its key and metadata line use it)
    created: float  # epoch seconds of the first invocation: for abandoning stale checkpoints
    update_seq: Any
    seq: Any  # full: update_seq at start; incremental: the feed position to record when done
    base: str | None = None
    since: Any = None
    doc_count: int | None = None
    doc_del_count: int | None = None  # the database's deleted documents when the backup started (not on pouchdb)
    host: str | None = None  # the source server (see Manifest.host)
    instance: str | None = None  # the database's instance_start_time when the backup started
    full_because: str | None = None  # why an incremental run makes a full backup
    read_whole: bool = False  # read in one `_all_docs` request: paging lost documents on this server
    attachments: bool = False  # ATTACHMENTS when the backup started (earlier versions: none), for all its invocations
    # The stream stages, fixed when the backup started (a continuing invocation uses these, never its own
    # COMPRESSION / ENCRYPT_TO: one object must not mix them); earlier versions: "none", not encrypted.
    compression: str = "none"
    compression_level: int | None = None
    recipients: list[str] = field(default_factory=list)
    segments: list[dict[str, int]] = field(default_factory=list)  # {"stored", "plain"}: where each invocation began
    parts: list[dict[str, Any]] = field(default_factory=list)
    next_part: int = 0  # the next part's number; 0: after the last part (numbers given up are not reused)
    tail: dict[str, Any] | None = None  # {"key", "size", "sha256", "mark", "docs", "lines", "counts"} of the tail object
    lease_owner: str | None = None
    lease_until: float = 0.0
    invocations: int = 0
    format: str = FORMAT

    def resume_mark(self) -> Any:
        """Where reading continues: after the last line stored (in the tail, else in the parts)."""
        if self.tail:
            return self.tail["mark"]
        return self.parts[-1]["mark"] if self.parts else None

    def leased_by_other(self, owner: str, now: float) -> bool:
        return self.lease_owner not in (None, owner) and self.lease_until > now

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, value: Any) -> Checkpoint:
        if not isinstance(value, dict) or value.get("format") != FORMAT:
            raise ValueError("not a cloudant-cos-backup checkpoint")
        return cls(**{name: value[name] for name in cls.__dataclass_fields__ if name in value})


class LeaseLost(CosError):
    """Another invocation holds this backup's checkpoint (or another backup's checkpoint is there): this one stops
    without writing, aborting or deleting anything of it."""


def _encode(cp: Checkpoint) -> bytes:
    return json.dumps(cp.to_json(), indent=1, sort_keys=True).encode()


def _same(etag: str | None, other: str | None) -> bool:
    """Two ETags name one version (quotes aside: a PUT's answer and a HEAD may spell them differently)."""
    return etag is not None and other is not None and etag.strip('"') == other.strip('"')


def _decode(body: bytes, where: str) -> Checkpoint:
    try:
        return Checkpoint.from_json(json.loads(body))
    except (ValueError, TypeError):
        raise CosError(f"{where} is not a readable checkpoint; delete it to start a fresh backup") from None


class CheckpointStore:
    """The checkpoint and tail objects of one database's backup, in the bucket.

    `etag` is the version of the checkpoint this invocation last read (load) or wrote: the lease is its own while the
    stored checkpoint is still that version."""

    def __init__(self, s3: Any, bucket: str, prefix: str, db: str, host: str, log: Log) -> None:
        self.s3, self.bucket, self.log = s3, bucket, log
        self.prefix, self.db, self.host = prefix, db, host
        self.key = checkpoint_key(prefix, db, host)
        self.etag: str | None = None

    def read(self) -> tuple[Checkpoint | None, str | None]:
        """The stored checkpoint and its ETag, (None, None) when there is none; changes nothing here."""
        got = cos.read_versioned(self.s3, self.bucket, self.key)
        if got is None:
            return None, None
        body, etag = got
        return _decode(body, cos.where(self.bucket, self.key)), etag

    def load(self) -> Checkpoint | None:
        """Read the checkpoint at the start of a run: its version is the one a lease write replaces."""
        cp, self.etag = self.read()
        if cp is not None and cp.database != self.db:
            # COS_PREFIX "nightly-" + database "app" and no prefix + database "nightly-app" make one key: never
            # continue (or abandon) another database's backup.
            raise CosError(f"{cos.where(self.bucket, self.key)} is the checkpoint of a backup of '{cp.database}', not "
                           f"of '{self.db}': the COS_PREFIX and database names make the same key; use a COS_PREFIX "
                           "that ends with '/'")
        return cp

    def _write(self, cp: Checkpoint, create: bool, lost: Callable[[], str]) -> None:
        """Write cp over the version held (or, with `create`, where there is none); LeaseLost(lost()) when another
        write came first. A 412 to the SDK's retry of our own write (its answer lost) is told apart by reading back:
        the stored checkpoint is then exactly what we sent."""
        body = _encode(cp)
        if not create and self.etag is None:
            raise LeaseLost(lost())
        etag = cos.put_if(self.s3, self.bucket, self.key, body, etag=None if create else self.etag, create=create,
                          log=self.log)
        if etag is None:
            got = cos.read_versioned(self.s3, self.bucket, self.key)
            if got is None or got[0] != body:
                raise LeaseLost(lost())
            etag = got[1]
            self.log.warning("checkpoint_write_confirmed", key=self.key,
                             detail="the write's answer was lost; the checkpoint stored is this one's")
        self.etag = etag

    def create(self, cp: Checkpoint) -> None:
        """A fresh backup's first checkpoint, only where there is none: two fresh backups of the database started at
        once never share one checkpoint."""
        self._write(cp, True, lambda: (
            f"backing up '{cp.database}': another backup of it started meanwhile and keeps its state in "
            f"{cos.where(self.bucket, self.key)}; this one stops so the two never mix"))

    def save(self, cp: Checkpoint, tail: bytes = b"", previous_tail: str | None = None) -> None:
        """A new tail object, then the checkpoint pointing at it, then the previous tail goes: a crash at
        any point leaves a consistent pair (the old one, or the new one). Only while the lease is ours: else
        LeaseLost, and nothing is written (but a tail, when the lease was taken over between the check and the
        checkpoint's conditional write)."""
        self.confirm(cp)
        if tail:
            key = tail_key(self.prefix, self.db, self.host, cp.invocations)
            cos.put_bytes(self.s3, self.bucket, key, tail)
            cp.tail = {**(cp.tail or {}), "key": key, "size": len(tail), "sha256": hashlib.sha256(tail).hexdigest()}
        self._write(cp, False, lambda: self._taken_over(cp))
        if previous_tail and previous_tail != (cp.tail or {}).get("key"):
            self._delete(previous_tail)

    def _taken_over(self, cp: Checkpoint) -> str:
        return (f"another invocation took over the backup of '{cp.database}' (lease in "
                f"{cos.where(self.bucket, self.key)}); not writing the same upload twice")

    def owns(self) -> bool:
        """True while the stored checkpoint is the version this invocation last read or wrote."""
        return self.etag is not None and _same(cos.etag_of(self.s3, self.bucket, self.key), self.etag)

    def confirm(self, cp: Checkpoint) -> None:
        """LeaseLost unless the lease is still ours (before completing the upload or checkpointing it)."""
        if not self.owns():
            raise LeaseLost(self._taken_over(cp))

    def may_abort(self, cp: Checkpoint) -> bool:
        """Whether this invocation may abort cp's upload after a failure: not when the stored checkpoint refers to it
        but is not our version (another invocation took the lease over and continues it), nor when that cannot be
        read (then the checkpoint, still referring to it, lets a later run continue or abandon it). Never raises."""
        try:
            current, etag = self.read()
        except CosError as exc:
            self.log.warning("checkpoint_unreadable", key=self.key, error=str(exc),
                             detail="the upload is not aborted: the checkpoint may still refer to it")
            return False
        return current is None or _same(etag, self.etag) or current.upload_id != cp.upload_id

    def load_tail(self, cp: Checkpoint) -> bytes:
        if not cp.tail:
            return b""
        body = cos.get_bytes(self.s3, self.bucket, cp.tail["key"])
        if len(body) != cp.tail["size"] or hashlib.sha256(body).hexdigest() != cp.tail["sha256"]:
            raise CosError(f"{cos.where(self.bucket, cp.tail['key'])} does not match the checkpoint (size or sha256); "
                           f"delete {cos.where(self.bucket, self.key)} to start a fresh backup")
        return body

    def acquire(self, cp: Checkpoint, owner: str, until: float) -> None:
        """Take the lease: replace the version loaded, only if it is still there (If-Match). Then read it back (for
        a store that ignores conditions: of two invocations racing there, a loser whose write landed first sees the
        other's)."""
        cp.lease_owner, cp.lease_until = owner, until
        self._write(cp, False, lambda: self._taken_over(cp))
        if not self.owns():
            raise LeaseLost(self._taken_over(cp))

    def delete(self, cp: Checkpoint) -> None:
        """Remove this backup's checkpoint and tail, never another invocation's or backup's that replaced them."""
        with interrupt.deferred():
            try:
                ours = self.owns()
            except CosError as exc:
                self.log.warning("checkpoint_cleanup_failed", key=self.key, error=str(exc))
                return
            if not ours:
                return
            self.delete_tails((cp.tail or {}).get("key"))
            self._delete(self.key)
            self.etag = None

    def delete_tails(self, *keys: str | None) -> None:
        for key in dict.fromkeys(k for k in keys if k):
            self._delete(key)

    def _delete(self, key: str) -> None:
        try:
            cos.delete(self.s3, self.bucket, key)
        except CosError as exc:
            self.log.warning("checkpoint_cleanup_failed", key=key, error=str(exc))

    def abandon(self, cp: Checkpoint) -> None:
        """Give up a stale checkpoint: abort its upload (no billed leftover), delete checkpoint and tail. Not when the
        checkpoint changed since it was loaded (another invocation acted on it first: it is theirs now)."""
        with interrupt.deferred():
            if not self.owns():
                raise LeaseLost(f"backing up '{cp.database}': another invocation acted on its stale checkpoint "
                                f"{cos.where(self.bucket, self.key)} meanwhile; leaving it to that one")
            cos.abort_upload(self.s3, self.bucket, cp.key, cp.upload_id, self.log)
            self.delete(cp)
        self.log.warning("checkpoint_abandoned", database=cp.database, key=cp.key, created=cp.created)

