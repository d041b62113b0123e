"""The manifest survives a JSON round trip, and anything else is refused."""

from __future__ import annotations

import json
from typing import Any

import pytest

from backup.manifest import FORMAT, Manifest, combined_sha256

MANIFEST = Manifest(
    key="backups/orders_2024-02-29T23:59:58.123456Z_backup.txt",
    database="orders",
    docs=12345,
    lines=26,
    bytes=9_876_543,
    sha256=combined_sha256(["cd" * 32, "ef" * 32]),
    parts=[{"size": 5 * 1024 * 1024, "sha256": "cd" * 32}, {"size": 4_633_663, "sha256": "ef" * 32}],
    started="2024-02-29T23:59:58.123456Z",
    finished="2024-03-01T00:10:00.000000Z",
    update_seq="12345-g1AAAAB\u00e9",
    seq="12345-g1AAAAB\u00e9",
    last_id="zz\u2028last",
)


def test_round_trip_through_json_text() -> None:
    text = json.dumps(MANIFEST.to_json())
    assert Manifest.from_json(json.loads(text)) == MANIFEST


def test_to_json_carries_the_format_marker_and_every_field() -> None:
    value = MANIFEST.to_json()
    assert value["format"] == FORMAT
    assert value["kind"] == "full" and value["base"] is None
    assert value["docs"] == 12345 and value["last_id"] == "zz\u2028last"


def test_round_trip_with_empty_database() -> None:
    empty = Manifest(key="k", database="d", docs=0, lines=1, bytes=80, sha256=combined_sha256(["11" * 32]),
                     parts=[{"size": 80, "sha256": "11" * 32}],
                     started="s", finished="f", update_seq=0, seq=0, last_id=None)
    assert Manifest.from_json(json.loads(json.dumps(empty.to_json()))) == empty


def test_unknown_fields_are_ignored() -> None:
    value = MANIFEST.to_json() | {"added_later": True}
    assert Manifest.from_json(value) == MANIFEST


@pytest.mark.parametrize("value", [
    {k: v for k, v in MANIFEST.to_json().items() if k != "format"},
    MANIFEST.to_json() | {"format": "cloudant-cos-backup/manifest/999"},
    MANIFEST.to_json() | {"format": None},
    [MANIFEST.to_json()],
    None,
    "cloudant-cos-backup/manifest/1",
], ids=["no-format", "other-format", "null-format", "list", "none", "string"])
def test_anything_without_the_format_marker_is_refused(value: Any) -> None:
    with pytest.raises(ValueError, match="not a cloudant-cos-backup manifest"):
        Manifest.from_json(value)


@pytest.mark.parametrize(("changes", "problem"), [
    ({"bytes": 9_876_544}, "its parts add up to 9876543 bytes, not 9876544"),
    ({"parts": []}, "its parts add up to 0 bytes"),
    ({"sha256": "ab" * 32}, "its parts' sha256s do not make its sha256"),
    ({"parts": [{"size": "5242880", "sha256": "cd" * 32}]}, "a part is not {size, sha256}"),
    ({"parts": [{"sha256": "cd" * 32}]}, "a part is not {size, sha256}"),
    ({"docs": "12345"}, "docs is not a count"),
    ({"lines": -1}, "lines is not a count"),
], ids=["bytes-beyond-the-parts", "no-parts", "sha256-not-of-the-parts", "size-a-string", "size-missing",
        "docs-a-string", "negative-lines"])
def test_a_manifest_inconsistent_with_itself_is_refused(changes: dict[str, Any], problem: str) -> None:
    """Verify and restore check the object part by part against it: parts that do not cover the object
    would leave bytes unchecked."""
    with pytest.raises(ValueError, match="inconsistent manifest") as raised:
        Manifest.from_json(MANIFEST.to_json() | changes)
    assert problem in str(raised.value)


def test_combined_sha256_depends_on_every_part_and_their_order() -> None:
    a, b = "aa" * 32, "bb" * 32
    assert combined_sha256([a, b]) != combined_sha256([b, a]) != combined_sha256([a])
    assert combined_sha256([a, b]) == combined_sha256([a, b])
