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
    ({"compression": "brotli"}, "compression 'brotli' is unknown"),
    ({"compression": "gzip", "segments": [{"stored": 5, "plain": 0}]}, "its segments do not start at 0"),
    ({"compression": "gzip", "plain_bytes": 100, "segments": [{"stored": 0, "plain": 0}, {"stored": 9, "plain": 200}]},
     "its segments do not start at 0 and grow within the object"),
    ({"compression": "gzip", "segments": [{"stored": 0, "plain": 0}, {"stored": 0, "plain": 10}]},
     "its segments do not start at 0 and grow"),
    ({"compression": "gzip", "segments": [{"stored": 0}]}, "a segment is not {stored, plain}"),
    ({"plain_bytes": -1}, "plain_bytes is not a count"),
    ({"encryption": {"format": "age", "recipients": []}, "segments": [{"stored": 0, "plain": 0}]},
     "its encryption is not {format: age, recipients: [...]}"),
    ({"encryption": {"format": "pgp", "recipients": ["age1x"]}, "segments": [{"stored": 0, "plain": 0}]},
     "its encryption is not"),
    ({"encryption": {"format": "age", "recipients": ["age1x"]}}, "it is encrypted but records no segment"),
], ids=["bytes-beyond-the-parts", "no-parts", "sha256-not-of-the-parts", "size-a-string", "size-missing",
        "docs-a-string", "negative-lines", "unknown-codec", "first-segment-not-at-0", "segment-past-the-plain-text",
        "segments-not-growing", "segment-without-plain", "negative-plain-bytes", "no-recipients", "not-age",
        "encrypted-without-segments"])
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


def test_a_manifest_of_an_earlier_version_is_plain_text_of_one_segment() -> None:
    old = {k: v for k, v in MANIFEST.to_json().items()
           if k not in ("compression", "compression_level", "plain_bytes", "segments", "encryption")}
    manifest = Manifest.from_json(old)
    assert (manifest.compression, manifest.plain_size, manifest.recipients, manifest.transformed) == (
        "none", MANIFEST.bytes, None, False)


def test_a_compressed_encrypted_manifest_round_trips_and_names_only_public_keys() -> None:
    manifest = Manifest.from_json(MANIFEST.to_json() | {
        "compression": "zstd", "compression_level": 3, "plain_bytes": 40_000_000,
        "segments": [{"stored": 0, "plain": 0}, {"stored": 6_000_000, "plain": 25_000_000}],
        "encryption": {"format": "age", "recipients": ["age1one", "age1two"]}})
    assert manifest.transformed and manifest.plain_size == 40_000_000
    assert manifest.recipients == ["age1one", "age1two"]
    assert Manifest.from_json(json.loads(json.dumps(manifest.to_json()))) == manifest
