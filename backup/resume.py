"""Restore checkpoints: how a restore bigger than one invocation continues in the next one.

Near the deadline a restore stops between two lines, once every document before the stop is written, and
stores its position in the bucket: which backup (the key asked for and the chain it resolved to), which
chain member, the byte offset and line number reached in it, and the running totals. Design documents held
back until the end go into a sidecar object beside it. The next invocation with the same parameters finds
the checkpoint by its target (database and server) and continues from there; writing a document twice is
harmless (`new_edits: false` keeps its revision).
"""

from __future__ import annotations

import uuid
from dataclasses import asdict, dataclass, field
from typing import Any

from backup import cos
from backup.errors import CosError
from backup.keys import restore_checkpoint_key
from backup.log import Log

FORMAT = "cloudant-cos-backup/restore-checkpoint/1"


@dataclass
class Position:
    """Where reading one object continues: the next line starts at `offset` (of the object's bytes, after
    decompression for a gzip file) and is line `line` + 1."""

    offset: int = 0
    line: int = 0
    metadata: dict[str, Any] | None = None  # the object's metadata line, once read
    docs_seen: int = 0  # documents read from it so far (checked against its manifest at its end)
    gzip: bool | None = None  # a gzip file (decided by its first bytes): read again from the start to go on
    skipped: int = 0  # broken lines skipped in it so far (a file without a metadata line)
    run: dict[str, Any] | None = None  # the leaf run of an incremental in progress (see leaves.LeafSets)


@dataclass
class RestorePoint:
    database: str  # the target
    host: str  # the target's server
    requested: str  # COS_KEY as given: "latest" or a key
    source_db: str | None
    key: str  # the backup restored (what "latest" meant when the restore began)
    chain: list[str]
    created: bool  # the first invocation created the target
    started: float  # epoch seconds
    member: int = 0  # the chain member in progress
    phase: str = "docs"  # "docs"; "design": the design documents, read again (too many to hold)
    position: Position = field(default_factory=Position)
    totals: dict[str, Any] = field(default_factory=dict)
    designs_key: str | None = None  # the sidecar object holding the design documents held so far
    target_instance: str | None = None  # the target's instance_start_time when the restore began
    designs_overflowed: bool = False
    invocations: int = 0
    format: str = FORMAT

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, value: Any) -> RestorePoint:
        if not isinstance(value, dict) or value.get("format") != FORMAT:
            raise ValueError("not a cloudant-cos-backup restore checkpoint")
        fields = {name: value[name] for name in cls.__dataclass_fields__ if name in value}
        fields["position"] = Position(**fields.get("position", {}))
        return cls(**fields)

    def continues(self, requested: str, source_db: str | None) -> bool:
        """True when a restore asked for with these parameters is this one (not another into the same target)."""
        if requested == "latest":
            return self.requested == "latest" and self.source_db == source_db
        return requested in (self.key, self.requested)


class RestorePoints:
    """The restore checkpoint (and its design-documents sidecar) of one target, in the bucket."""

    def __init__(self, s3: Any, bucket: str, prefix: str, db: str, host: str, log: Log) -> None:
        self.s3, self.bucket, self.log, self.db = s3, bucket, log, db
        self.key = restore_checkpoint_key(prefix, db, host)

    def load(self) -> RestorePoint | None:
        if not cos.exists(self.s3, self.bucket, self.key):
            return None
        try:
            point = RestorePoint.from_json(cos.get_json(self.s3, self.bucket, self.key))
        except (ValueError, TypeError):
            raise CosError(f"{cos.where(self.bucket, self.key)} is not a readable restore checkpoint; delete it and "
                           "the target database to start the restore afresh") from None
        if point.database != self.db:  # a COS_PREFIX without a final '/' can make two targets' keys one
            raise CosError(f"{cos.where(self.bucket, self.key)} is the checkpoint of a restore into "
                           f"'{point.database}', not '{self.db}': use a COS_PREFIX that ends with '/'")
        return point

    def save(self, point: RestorePoint, designs: bytes) -> None:
        """A new sidecar (a name of its own: two invocations continuing one restore at once never pair one's
        checkpoint with the other's sidecar), then the checkpoint naming it, then the previous sidecar goes."""
        previous = point.designs_key
        point.designs_key = f"{self.key}.design.{uuid.uuid4().hex[:12]}" if designs else None
        if point.designs_key is not None:
            cos.put_bytes(self.s3, self.bucket, point.designs_key, designs)
        cos.put_json(self.s3, self.bucket, self.key, point.to_json())
        if previous:
            self._delete(previous)

    def load_designs(self, point: RestorePoint) -> bytes:
        return cos.get_bytes(self.s3, self.bucket, point.designs_key) if point.designs_key else b""

    def delete(self, point: RestorePoint) -> None:
        for key in (point.designs_key, self.key):
            if key:
                self._delete(key)

    def _delete(self, key: str) -> None:
        try:
            cos.delete(self.s3, self.bucket, key)
        except CosError as exc:
            self.log.warning("restore_checkpoint_cleanup_failed", key=key, error=str(exc))
