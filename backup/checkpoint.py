"""Checkpoints: how a backup bigger than one invocation continues in the next one.

A backup that reaches its deadline stores, in the bucket: the checkpoint (upload id, the parts uploaded
so far with their ETags and resume marks, counts, when the backup started) and a *tail* object with the
lines written since the last part (COS parts must be >= 5 MiB except the last, so a short remainder
cannot be a part yet). The next invocation with the same parameters picks both up and continues the
same multipart upload; the final object is the same bytes a one-shot backup would have written.

A lease (owner + expiry) in the checkpoint keeps two invocations from writing one upload at once.
"""

from __future__ import annotations

import hashlib
import time
from dataclasses import asdict, dataclass, field
from typing import Any

from backup import cos
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
    host: str | None = None  # the source server (see Manifest.host)
    instance: str | None = None  # the database's instance_start_time when the backup started
    full_because: str | None = None  # why an incremental run makes a full backup
    read_whole: bool = False  # read in one `_all_docs` request: paging lost documents on this server
    parts: list[dict[str, Any]] = field(default_factory=list)
    next_part: int = 0  # the next part's number; 0: after the last part (numbers given up are not reused)
    tail: dict[str, Any] | None = None  # {"key", "size", "sha256", "mark", "docs", "lines"} of the tail object
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


class CheckpointStore:
    """The checkpoint and tail objects of one database's backup, in the bucket."""

    def __init__(self, s3: Any, bucket: str, prefix: str, db: str, host: str, log: Log) -> None:
        self.s3, self.bucket, self.log = s3, bucket, log
        self.prefix, self.db, self.host = prefix, db, host
        self.key = checkpoint_key(prefix, db, host)

    def load(self) -> Checkpoint | None:
        if not cos.exists(self.s3, self.bucket, self.key):
            return None
        try:
            return Checkpoint.from_json(cos.get_json(self.s3, self.bucket, self.key))
        except (ValueError, TypeError):
            raise CosError(
                f"{cos.where(self.bucket, self.key)} is not a readable checkpoint; delete it to start a fresh backup"
            ) from None

    def save(self, cp: Checkpoint, tail: bytes = b"", previous_tail: str | None = None) -> None:
        """A new tail object, then the checkpoint pointing at it, then the previous tail goes: a crash at
        any point leaves a consistent pair (the old one, or the new one)."""
        if tail:
            key = tail_key(self.prefix, self.db, self.host, cp.invocations)
            cos.put_bytes(self.s3, self.bucket, key, tail)
            cp.tail = {**(cp.tail or {}), "key": key, "size": len(tail), "sha256": hashlib.sha256(tail).hexdigest()}
        cos.put_json(self.s3, self.bucket, self.key, cp.to_json())
        if previous_tail and previous_tail != (cp.tail or {}).get("key"):
            self._delete(previous_tail)

    def load_tail(self, cp: Checkpoint) -> bytes:
        if not cp.tail:
            return b""
        body = cos.get_bytes(self.s3, self.bucket, cp.tail["key"])
        if len(body) != cp.tail["size"] or hashlib.sha256(body).hexdigest() != cp.tail["sha256"]:
            raise CosError(f"{cos.where(self.bucket, cp.tail['key'])} does not match the checkpoint (size or sha256); "
                           f"delete {cos.where(self.bucket, self.key)} to start a fresh backup")
        return body

    def acquire(self, cp: Checkpoint, owner: str, until: float) -> None:
        """Take the lease, then read it back: of two invocations racing, at most one sees itself."""
        cp.lease_owner, cp.lease_until = owner, until
        cos.put_json(self.s3, self.bucket, self.key, cp.to_json())
        time.sleep(0.2)  # let a racing writer's PUT land before we look
        current = self.load()
        if current is None or current.lease_owner != owner:
            raise CosError(f"another invocation took over the backup of '{cp.database}' (lease in "
                           f"{cos.where(self.bucket, self.key)}); not writing the same upload twice")

    def release(self, cp: Checkpoint) -> None:
        """Give the lease back (after a failure that leaves the checkpoint usable)."""
        if self.holds(cp):
            cp.lease_owner, cp.lease_until = None, 0.0
            cos.put_json(self.s3, self.bucket, self.key, cp.to_json())

    def holds(self, cp: Checkpoint) -> bool:
        """True when the stored checkpoint is still this backup's (another may have replaced it)."""
        try:
            current = self.load()
        except CosError:
            return False
        return current is not None and current.upload_id == cp.upload_id

    def delete(self, cp: Checkpoint) -> None:
        """Remove this backup's checkpoint and tail, never another backup's that replaced them."""
        if not self.holds(cp):
            return
        self.delete_tails((cp.tail or {}).get("key"))
        self._delete(self.key)

    def delete_tails(self, *keys: str | None) -> None:
        for key in dict.fromkeys(k for k in keys if k):
            self._delete(key)

    def _delete(self, key: str) -> None:
        try:
            cos.delete(self.s3, self.bucket, key)
        except CosError as exc:
            self.log.warning("checkpoint_cleanup_failed", key=key, error=str(exc))

    def abandon(self, cp: Checkpoint) -> None:
        """Give up a stale checkpoint: abort its upload (no billed leftover), delete checkpoint and tail."""
        cos.abort_upload(self.s3, self.bucket, cp.key, cp.upload_id, self.log)
        self.delete(cp)
        self.log.warning("checkpoint_abandoned", database=cp.database, key=cp.key, created=cp.created)

