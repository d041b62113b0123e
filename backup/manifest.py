"""The manifest: what a backup recorded at write time, stored beside the object for `verify`.

Kept out of the backup file itself because couchrestore rejects any non-array line after line 1.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

FORMAT = "cloudant-cos-backup/manifest/1"


@dataclass(frozen=True)
class Manifest:
    key: str
    database: str
    docs: int
    lines: int  # lines in the object, the metadata line included
    bytes: int
    sha256: str
    started: str
    finished: str
    update_seq: Any
    last_id: str | None
    mode: str = "shallow"
    format: str = FORMAT

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, value: Any) -> Manifest:
        if not isinstance(value, dict) or value.get("format") != FORMAT:
            raise ValueError("not a cloudant-cos-backup manifest")
        fields = {name: value.get(name) for name in cls.__dataclass_fields__}
        return cls(**fields)
