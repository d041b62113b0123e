"""The couchbackup line format: what we write, and how we read with couchrestore's rules."""

from __future__ import annotations

import itertools
import json
import random
from typing import Any

import pytest

from backup.errors import FormatError
from backup.format import (
    LineDecoder,
    ascii_json,
    bulk_docs_json,
    encode,
    is_metadata,
    metadata_line,
    raw_docs_line,
    split_lines,
)

NON_ASCII_DOCS: list[dict[str, Any]] = [
    {"_id": "caf\u00e9", "_rev": "1-a", "name": "Fran\u00e7ois", "city": "\u6771\u4eac"},
    {"_id": "emoji", "_rev": "1-b", "mood": "\U0001f600", "sep": "line\u2028para\u2029end", "nl": "a\nb\r\n"},
    {"_id": "ctl", "_rev": "1-c", "tab": "\t", "nul": "\u0000", "quote": "\"\\"},
]


# --- writing ---------------------------------------------------------------------------------------------

def test_metadata_line_is_what_couchrestore_accepts_as_metadata() -> None:
    line = metadata_line()
    assert line.endswith(b"\n")
    assert line.count(b"\n") == 1
    meta = json.loads(line)
    assert isinstance(meta, dict)
    assert meta["name"] and meta["version"] and meta["mode"]
    assert meta["mode"] == "shallow"
    assert meta["attachments"] is False
    assert is_metadata(meta)


def test_metadata_line_carries_extra_facts() -> None:
    meta = json.loads(metadata_line(database="orders", update_seq="12-abc", doc_count=3))
    assert (meta["database"], meta["update_seq"], meta["doc_count"]) == ("orders", "12-abc", 3)
    assert meta["mode"] == "shallow"


def test_metadata_line_is_ascii_even_with_non_ascii_facts() -> None:
    line = metadata_line(database="caf\u00e9", note="\U0001f600")
    assert all(b < 0x80 for b in line)
    assert json.loads(line)["database"] == "caf\u00e9"


def test_docs_line_is_ascii_only_and_round_trips_exactly() -> None:
    line = encode(NON_ASCII_DOCS)
    assert all(b < 0x80 for b in line)
    assert line.endswith(b"\n")
    assert line.count(b"\n") == 1  # newlines inside strings are escaped
    assert b"\r" not in line
    assert json.loads(line) == NON_ASCII_DOCS


def test_encode_is_compact_json() -> None:
    assert encode([{"_id": "a", "n": 1}]) == b'[{"_id":"a","n":1}]\n'


# --- reading ---------------------------------------------------------------------------------------------

def test_decoder_reads_metadata_then_docs() -> None:
    decoder = LineDecoder()
    first = decoder.decode(metadata_line(database="orders").rstrip(b"\n"))
    assert first is not None
    assert first.number == 1 and first.docs == [] and first.metadata is not None
    assert first.metadata["database"] == "orders"
    assert decoder.metadata == first.metadata
    second = decoder.decode(encode(NON_ASCII_DOCS))
    assert second is not None
    assert second.number == 2 and second.docs == NON_ASCII_DOCS and second.metadata is None


def test_decoder_reads_couchbackup_own_metadata() -> None:
    decoder = LineDecoder()
    line = decoder.decode(b'{"name":"@cloudant/couchbackup","version":"2.11.12","mode":"full","attachments":false}')
    assert line is not None and line.metadata is not None and line.metadata["mode"] == "full"


def test_decoder_skips_resume_marker_and_blank_lines() -> None:
    decoder = LineDecoder()
    decoder.decode(metadata_line())
    assert decoder.decode(b'{"marker":"@cloudant/couchbackup:resume"}') is None
    assert decoder.decode(b"") is None
    assert decoder.decode(b"   \r") is None
    line = decoder.decode(b'[{"_id":"a"}]\r')
    assert line is not None and line.number == 5 and line.docs == [{"_id": "a"}]


def test_decoder_skips_a_line_cut_by_a_resumed_couchbackup_full_run_as_couchrestore_does() -> None:
    decoder = LineDecoder()
    decoder.decode(b'{"name":"@cloudant/couchbackup","version":"2.11.12","mode":"full","attachments":false}')
    assert decoder.decode(b'[{"_id":"a","_rev":"1-x"},{"_id":"b{"marker":"@cloudant/couchbackup:resume"}') is None
    line = decoder.decode(b'[{"_id":"b","_rev":"1-y"}]')
    assert line is not None and line.docs == [{"_id": "b", "_rev": "1-y"}]
    with pytest.raises(FormatError, match="line 4 of backup file - cannot parse as JSON"):  # only at the end
        decoder.decode(b'[{"_id":"c"{"marker":"@cloudant/couchbackup:resume"} x')

    shallow = LineDecoder()  # couchrestore forgives this only in full mode
    shallow.decode(b'{"name":"@cloudant/couchbackup","version":"2.11.12","mode":"shallow"}')
    with pytest.raises(FormatError, match="line 2 of backup file - cannot parse as JSON"):
        shallow.decode(b'[{"_id":"a"{"marker":"@cloudant/couchbackup:resume"}')


def test_decoder_accepts_empty_array_line() -> None:
    decoder = LineDecoder()
    decoder.decode(metadata_line())
    line = decoder.decode(b"[]")
    assert line is not None and line.docs == []


@pytest.mark.parametrize("broken_at", [2, 3, 7])
def test_broken_json_after_metadata_names_its_line(broken_at: int) -> None:
    decoder = LineDecoder()
    # every line counts, blank ones included
    lines = [metadata_line().rstrip(b"\n")] + [b"" if n % 2 else b'[{"_id":"d%d"}]' % n for n in range(2, broken_at)]
    assert len(lines) == broken_at - 1
    for raw in lines:
        decoder.decode(raw)
    with pytest.raises(FormatError) as info:
        decoder.decode(b'[{"_id":"truncat')
    assert str(info.value) == f"Error on line {broken_at} of backup file - cannot parse as JSON"


def test_invalid_utf8_after_metadata_is_a_parse_error() -> None:
    decoder = LineDecoder()
    decoder.decode(metadata_line())
    with pytest.raises(FormatError, match="Error on line 2 of backup file - cannot parse as JSON"):
        decoder.decode(b'[{"_id":"\xff\xfe"}]')


@pytest.mark.parametrize("raw", [b'{"_id":"a"}', b"42", b'"text"', b"null",
                                 b'{"name":"x","version":"1","mode":"full"}'],
                         ids=["object", "number", "string", "null", "metadata-not-on-line-1"])
def test_non_array_line_after_metadata_is_an_error(raw: bytes) -> None:
    decoder = LineDecoder()
    decoder.decode(metadata_line())
    with pytest.raises(FormatError, match="Error on line 2 of backup file - not an array of documents"):
        decoder.decode(raw)


@pytest.mark.parametrize("raw", [b"[1]", b'[{"no_id":1}]', b'[{"_id":5}]', b'[{"_id":"a"}, []]'],
                         ids=["number", "no-id", "numeric-id", "nested-array"])
def test_array_of_non_documents_after_metadata_is_an_error(raw: bytes) -> None:
    decoder = LineDecoder()
    decoder.decode(metadata_line())
    with pytest.raises(FormatError, match="line 2 of backup file - an element is not a document"):
        decoder.decode(raw)


def test_file_without_metadata_skips_unparsable_lines() -> None:
    decoder = LineDecoder()
    raw_lines = [b'[{"_id":"a"}]', b"garbage{", b'{"not":"array"}', b'[{"_id":"b"}]', b'[{"_id":"c"']
    docs = []
    for raw in raw_lines:
        line = decoder.decode(raw)
        if line is not None:
            docs.extend(line.docs)
    assert docs == [{"_id": "a"}, {"_id": "b"}]
    assert decoder.skipped == [2, 3, 5]
    assert decoder.metadata is None


def test_skipped_lines_keep_only_the_first_numbers_but_count_them_all() -> None:
    decoder = LineDecoder()
    for _ in range(250):
        assert decoder.decode(b"not json") is None
    assert decoder.skipped == list(range(1, 101)) and decoder.skipped_count == 250


def test_file_with_metadata_records_nothing_as_skipped() -> None:
    decoder = LineDecoder()
    decoder.decode(metadata_line())
    decoder.decode(b'[{"_id":"a"}]')
    assert decoder.skipped == []


def test_metadata_with_attachments_is_read_as_any_other() -> None:
    decoder = LineDecoder()
    line = decoder.decode(b'{"name":"@cloudant/couchbackup","version":"2.11.12","mode":"full","attachments":true}')
    assert line is not None and line.metadata is not None and line.metadata["attachments"] is True


@pytest.mark.parametrize("value", [{"name": "x", "version": "1"}, {"name": "", "version": "1", "mode": "full"},
                                   {"name": "x", "version": "1", "mode": None}, [], "x"],
                         ids=["no-mode", "empty-name", "null-mode", "array", "string"])
def test_is_metadata_needs_truthy_name_version_mode(value: Any) -> None:
    assert not is_metadata(value)


# --- splitting -------------------------------------------------------------------------------------------

def expected_split(data: bytes) -> list[tuple[bytes, bool]]:
    parts = data.split(b"\n")
    result = [(part, True) for part in parts[:-1]]
    if parts[-1]:
        result.append((parts[-1], False))
    return result


def test_split_lines_does_not_split_on_unicode_separators_or_cr() -> None:
    data = '["a\u2028b\u2029c"]\r\n["d"]\n'.encode("utf-8") + b"x\ry\x85z\x0b\x0c\n"
    assert list(split_lines([data])) == [('["a\u2028b\u2029c"]\r'.encode(), True), (b'["d"]', True),
                                         (b"x\ry\x85z\x0b\x0c", True)]


def test_split_lines_flags_a_final_unterminated_line() -> None:
    assert list(split_lines([b"[1]\n[2]"])) == [(b"[1]", True), (b"[2]", False)]


def test_split_lines_of_nothing_is_nothing() -> None:
    assert list(split_lines([])) == []
    assert list(split_lines([b"", b""])) == []


def test_split_lines_keeps_empty_lines() -> None:
    assert list(split_lines([b"\n\na\n"])) == [(b"", True), (b"", True), (b"a", True)]


def test_split_lines_every_chunking_of_small_inputs() -> None:
    rng = random.Random(7)
    alphabet = [b"\n", b"a", b"\r", b"\xe2", b"\x80", b"\xa8", b"["]
    for _ in range(200):
        data = b"".join(rng.choice(alphabet) for _ in range(rng.randrange(0, 9)))
        expected = expected_split(data)
        for cuts in itertools.product([False, True], repeat=max(len(data) - 1, 0)):
            chunks, start = [], 0
            for i, cut in enumerate(cuts, start=1):
                if cut:
                    chunks.append(data[start:i])
                    start = i
            chunks.append(data[start:])
            assert list(split_lines(chunks)) == expected, (data, chunks)


def test_split_lines_random_chunkings_of_larger_inputs() -> None:
    rng = random.Random(11)
    for _ in range(300):
        data = bytes(rng.choice(b"\nab\r\xe2\x80\xa8") for _ in range(rng.randrange(0, 400)))
        cut_points = sorted(rng.sample(range(len(data) + 1), k=min(len(data) + 1, rng.randrange(0, 30))))
        bounds = [0, *cut_points, len(data)]
        chunks = [data[a:b] for a, b in itertools.pairwise(bounds)]  # includes empty chunks
        assert b"".join(chunks) == data
        assert list(split_lines(chunks)) == expected_split(data)
        assert list(split_lines(iter([bytes([b]) for b in data]))) == expected_split(data)


def test_split_then_decode_round_trips_a_whole_backup() -> None:
    body = metadata_line() + encode(NON_ASCII_DOCS) + encode([{"_id": "z"}])
    decoder = LineDecoder()
    docs: list[dict[str, Any]] = []
    for raw, ended in split_lines([body[i:i + 5] for i in range(0, len(body), 5)]):
        assert ended
        line = decoder.decode(raw)
        if line is not None:
            docs.extend(line.docs)
    assert docs == NON_ASCII_DOCS + [{"_id": "z"}]


# -- documents spliced as the server sent them (backup without re-encoding)

@pytest.mark.parametrize("value", [
    {"_id": "plain", "n": [1, 2.5, None, True], "s": "ascii only"},
    {"_id": "café", "text": "日本語 \u2028 \u2029 ß", "e": "\U0001f600\U0010ffff"},
    {"_id": "quotes", "s": "\"\\/\b\f\r\t é"},
], ids=["ascii", "non-ascii", "escapes"])
def test_ascii_json_of_compact_utf8_is_what_json_dumps_writes(value: dict) -> None:
    raw = json.dumps(value, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
    out = ascii_json(raw)
    assert out.isascii() and b"\n" not in out
    assert out == json.dumps(value, separators=(",", ":")).encode("ascii")  # byte for byte, escapes included
    assert json.loads(out) == value


def test_ascii_json_keeps_ascii_input_as_it_is() -> None:
    raw = b'{"_id":"a", "n": 123456789012345678901234567890, "f": 1e400, "g": 1.0}'
    assert ascii_json(raw) is raw  # spliced: big integers keep every digit, numbers keep their spelling


def test_ascii_json_reencodes_a_pretty_printed_value_onto_one_line() -> None:
    raw = json.dumps({"_id": "a", "v": ["é", {"b": 1}]}, indent=2, ensure_ascii=False).encode()
    assert ascii_json(raw) == b'{"_id":"a","v":["\\u00e9",{"b":1}]}'


def test_ascii_json_refuses_invalid_utf8() -> None:
    with pytest.raises(UnicodeDecodeError):
        ascii_json(b'{"s":"\xff\xfe"}')


def test_raw_docs_line_is_a_json_array_line() -> None:
    docs = [b'{"_id":"a"}', b'{"_id":"b","x":[1]}']
    line = raw_docs_line(docs)
    assert line.endswith(b"\n") and line.count(b"\n") == 1
    assert json.loads(line) == [{"_id": "a"}, {"_id": "b", "x": [1]}]
    assert line == encode([{"_id": "a"}, {"_id": "b", "x": [1]}])


def test_a_line_longer_than_the_limit_is_refused_before_it_is_held() -> None:
    chunks = iter([b'{"a":1}\n', b"x" * 600, b"y" * 600, b"z" * 600])
    lines = split_lines(chunks, max_line=1000)
    assert next(lines) == (b'{"a":1}', True)
    with pytest.raises(FormatError, match="line 2 is longer than 0 MiB"):
        next(lines)
    assert list(split_lines(iter([b"x" * 1000 + b"\n"]), max_line=1000)) == [(b"x" * 1000, True)]


def test_bulk_docs_json_writes_new_edits_as_asked() -> None:
    """Docs without `_rev` (couchbackup before 2.4.2) go as new edits; a lone surrogate still as its escape."""
    docs = [{"_id": "s", "v": "\ud800"}]
    assert json.loads(bulk_docs_json(docs)) == {"docs": docs, "new_edits": False}
    assert bulk_docs_json(docs, new_edits=True) == b'{"docs":[{"_id":"s","v":"\\ud800"}],"new_edits":true}'
