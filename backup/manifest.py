"""The manifest: what a backup recorded at write time, stored beside the object for `verify`, `list`,
incremental chains and retention.

Kept out of the backup file itself because couchrestore rejects any non-array line after line 1.
The checksum is a hash of the parts' sha256s: each part's digest is computed as it is uploaded, so a
backup that spans several invocations (a checkpointed one) gets the same checksum as a one-shot one,
and verify can say which part is damaged.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
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
    # The source, so the catalog never takes another server's (or another instance's) backup for this one's.
    # None in manifests of earlier versions.
    host: str | None = None  # host[:port] of CLOUDANT_URL, never credentials
    instance: str | None = None  # the database's instance_start_time: it changes when the database is re-created
    doc_count: int | None = None  # the database's doc_count when the backup started
    # What the object holds beyond winning revisions (False/0/None in manifests of earlier versions):
    attachments: bool = False  # attachments inline (couchbackup's --attachments format); False: stubs at most
    conflicts: bool = False  # every live leaf of each document with conflicts, with its `_revisions`
    conflict_leaves: int = 0  # of `docs`, the conflicting leaves beyond each document's winner
    # The database itself, for a restore to give the target:
    partitioned: bool | None = None  # props.partitioned
    security: dict[str, Any] | None = None  # its `_security` object; None: not read (no permission, or earlier versions)
    # The stream stages (see stages.py). `bytes`, `sha256` and `parts` are of the stored bytes, so verify checks an
    # object without decompressing or decrypting it; earlier versions: "none", no segments, not encrypted.
    compression: str = "none"  # "gzip" | "zstd" | "none"
    compression_level: int | None = None
    plain_bytes: int | None = None  # the plain text's size (the couchbackup file); None in earlier versions: `bytes`
    segments: list[dict[str, int]] = field(default_factory=list)  # [{"stored", "plain"}]: where each invocation began
    encryption: dict[str, Any] | None = None  # {"format": "age", "recipients": [public keys]}: one age stream a segment
    format: str = field(default=FORMAT)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, value: Any) -> Manifest:
        """A manifest as stored; ValueError when it is not one, or not consistent with itself (the parts are
        what verify and restore check the object against: they must add up to the size and the sha256)."""
        if not isinstance(value, dict) or value.get("format") != FORMAT:
            raise ValueError("not a cloudant-cos-backup manifest")
        names = cls.__dataclass_fields__
        manifest = cls(**{name: value[name] for name in names if name in value})
        if problem := manifest._inconsistency():
            raise ValueError(f"inconsistent manifest: {problem}")
        return manifest

    def _inconsistency(self) -> str | None:
        for name in ("docs", "lines", "bytes"):
            if not isinstance(getattr(self, name), int) or getattr(self, name) < 0:
                return f"{name} is not a count"
        if not isinstance(self.key, str) or not isinstance(self.sha256, str) or not isinstance(self.parts, list):
            return "key, sha256 or parts has the wrong type"
        if not all(isinstance(p, dict) and isinstance(p.get("size"), int) and p["size"] >= 0
                   and isinstance(p.get("sha256"), str) for p in self.parts):
            return "a part is not {size, sha256}"
        if sum(p["size"] for p in self.parts) != self.bytes:
            return f"its parts add up to {sum(p['size'] for p in self.parts)} bytes, not {self.bytes}"
        if combined_sha256([p["sha256"] for p in self.parts]) != self.sha256:
            return "its parts' sha256s do not make its sha256"
        return self._stages_inconsistency()

    def _stages_inconsistency(self) -> str | None:
        if self.compression not in ("gzip", "zstd", "none"):
            return f"compression {self.compression!r} is unknown to this version"
        if self.plain_bytes is not None and (not isinstance(self.plain_bytes, int) or self.plain_bytes < 0):
            return "plain_bytes is not a count"
        if not isinstance(self.segments, list) or not all(
                isinstance(s, dict) and isinstance(s.get("stored"), int) and isinstance(s.get("plain"), int)
                for s in self.segments):
            return "a segment is not {stored, plain}"
        stored = [s["stored"] for s in self.segments]
        plain = [s["plain"] for s in self.segments]
        if stored and (stored[0] != 0 or plain[0] != 0 or stored != sorted(set(stored)) or plain != sorted(set(plain))
                       or stored[-1] >= max(self.bytes, 1) or plain[-1] > self.plain_size):
            return "its segments do not start at 0 and grow within the object"
        if self.encryption is not None:
            recipients = self.encryption.get("recipients") if isinstance(self.encryption, dict) else None
            if (self.encryption.get("format") != "age" or not isinstance(recipients, list) or not recipients
                    or not all(isinstance(r, str) for r in recipients)):
                return "its encryption is not {format: age, recipients: [...]}"
            if not self.segments and self.bytes:
                return "it is encrypted but records no segment (where its age streams start)"
        return None

    @property
    def plain_size(self) -> int:
        """Bytes of the plain text (the couchbackup file the object decodes to)."""
        return self.plain_bytes if self.plain_bytes is not None else self.bytes

    @property
    def recipients(self) -> list[str] | None:
        """The age public keys it is encrypted to; None: not encrypted."""
        return list(self.encryption["recipients"]) if self.encryption else None

    @property
    def transformed(self) -> bool:
        """Stored bytes are not the plain text: compressed, or encrypted."""
        return self.compression != "none" or self.encryption is not None


class PartHasher:
    """Hashes a stream part by part, at the part sizes the backup recorded, as the bytes pass through."""

    def __init__(self, sizes: list[int]) -> None:
        self.sizes = sizes
        self.digests: list[str] = []
        self.size = 0
        self._current = hashlib.sha256()
        self._left = sizes[0] if sizes else 0

    def through(self, chunks: Iterator[bytes]) -> Iterator[bytes]:
        for chunk in chunks:
            self.size += len(chunk)
            view = memoryview(chunk)
            while view:
                if len(self.digests) >= len(self.sizes):  # more bytes than the parts recorded
                    self._current.update(view)
                    break
                take = view[: self._left]
                self._current.update(take)
                self._left -= len(take)
                view = view[len(take):]
                if self._left == 0:
                    self.digests.append(self._current.hexdigest())
                    self._current = hashlib.sha256()
                    if len(self.digests) < len(self.sizes):
                        self._left = self.sizes[len(self.digests)]
            yield chunk

    def mismatches(self, manifest: Manifest) -> list[str]:
        """What differs between the bytes seen and what the backup recorded (empty: they match)."""
        problems = []
        if self.size != manifest.bytes:
            problems.append(f"size is {self.size} bytes, the backup wrote {manifest.bytes}")
        damaged = [str(i + 1) for i, (seen, wrote) in enumerate(zip(self.digests, manifest.parts, strict=False))
                   if seen != wrote["sha256"]]
        if damaged:
            problems.append(f"sha256 differs from the one recorded at backup time in part(s) {', '.join(damaged[:10])}: "
                            "the content changed")
        elif combined_sha256(self.digests) != manifest.sha256 and self.size == manifest.bytes:
            problems.append("its sha256 differs from the one recorded at backup time: the content changed")
        return problems
