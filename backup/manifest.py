"""The manifest: what a backup recorded at write time, stored beside the object for `verify`, `list`,
incremental chains and retention.

Kept out of the backup file itself because couchrestore rejects any non-array line after line 1.
The checksum is a hash of the parts' sha256s: each part's digest is computed as it is uploaded, so a
backup that spans several invocations (a checkpointed one) gets the same checksum as a one-shot one,
and verify can say which part is damaged.
"""

from __future__ import annotations

import hashlib
from dataclasses import asdict, dataclass, field
from typing import Any

FORMAT = "cloudant-cos-backup/manifest/1"


def combined_sha256(part_digests: list[str]) -> str:
    """sha256 over the concatenated hex digests of the parts, in order."""
    return hashlib.sha256("".join(part_digests).encode("ascii")).hexdigest()


@dataclass(frozen=True)
class Manifest:
    key: str
    database: str
    docs: int
    lines: int  # lines in the object, the metadata line included
    bytes: int
    sha256: str  # combined_sha256 of the parts
    parts: list[dict[str, Any]]  # [{"size": n, "sha256": hex}] in order
    started: str
    finished: str
    update_seq: Any  # the database's update_seq when the backup started
    seq: Any  # where the next incremental backup continues the changes feed (opaque)
    last_id: str | None = None
    kind: str = "full"  # "full" or "incremental"
    base: str | None = None  # incremental: key of the backup it follows
    since: Any = None  # incremental: the changes-feed sequence it started from
    invocations: int = 1
    format: str = field(default=FORMAT)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, value: Any) -> Manifest:
        if not isinstance(value, dict) or value.get("format") != FORMAT:
            raise ValueError("not a cloudant-cos-backup manifest")
        names = cls.__dataclass_fields__
        return cls(**{name: value[name] for name in names if name in value})
