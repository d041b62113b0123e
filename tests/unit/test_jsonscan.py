"""JSON scanned without recursion (backup.jsonscan), and its callers with values nested too deep to decode:
rows of `_all_docs` and `_bulk_get` responses, backup lines, `_bulk_docs` bodies."""

from __future__ import annotations

import json
import random

import msgspec
import pytest

from backup import jsonscan
from backup.errors import FormatError
from backup.format import LineDecoder, ascii_json, bulk_docs_json, raw_docs_line
from backup.rows import RowsFormatError, bulk_get_answers, iter_docs, iter_rows, page_docs

DEEP = 50_000
# Strings that look like structure: brackets, quotes, backslashes, an escaped quote right before the end.
TRICKY = ['"]"', '"[{"', '"\\""', '"a\\\\"', '"\\\\\\""', '"}\\"]"', '"\\u005d\\n\\/"', '"é日本\U0001f600"', '""']


def _ascii(text: str) -> bytes:
    """`text` with non-ASCII as JSON escapes, as the backup format writes it."""
    return "".join(c if c.isascii() else json.dumps(c)[1:-1] for c in text).encode()


def _deep(depth: int = DEEP, inner: str = '"x"') -> str:
    """Arrays and objects in turn, `depth` levels, with a tricky string beside each level's value."""
    opens = "".join(f'{{"k{TRICKY[i % len(TRICKY)][1:-1]}":' if i % 2 else f"[{TRICKY[i % len(TRICKY)]}, "
                    for i in range(depth))
    closes = "".join("}" if i % 2 else "]" for i in reversed(range(depth)))
    return opens + inner + closes


# -- the scanner

def test_value_end_of_a_value_nested_50000_deep() -> None:
    text = _deep()
    assert jsonscan.value_end(text) == len(text)
    assert jsonscan.value_end(" \t\r\n" + text + " ,1", 0) == len(text) + 4


@pytest.mark.parametrize("token", TRICKY + ["0", "-1.5e+10", "true", "false", "null", "[]", "{}"])
def test_value_end_is_where_json_ends_the_value(token: str) -> None:
    text = f'{{"a" : [ {token} , {token} ] ,"k":{token}}} tail'
    _, end = json.JSONDecoder().raw_decode(text)
    assert jsonscan.value_end(text) == end


@pytest.mark.parametrize("bad", [
    "[1 2]", '{"a" 1}', '{"a":}', "[1,]", "{,}", "[}", '{"a":1,}', "{1:2}", "NaN", "[Infinity]", "[01]", "[.5]",
    '"\x01"', '"\\x"', '"\\u12g4"', "[tru]", "]",
])
def test_invalid_json_is_refused(bad: str) -> None:
    with pytest.raises(jsonscan.ScanError):
        jsonscan.value_end(bad)
    with pytest.raises(msgspec.DecodeError):  # a strict JSON parser agrees (json.loads takes NaN and Infinity)
        msgspec.json.decode(bad)


@pytest.mark.parametrize("cut", [1, 2, 10, 1000, -1, -2])
def test_a_truncated_value_is_refused_never_taken_for_a_shorter_one(cut: int) -> None:
    text = _deep(2000)
    with pytest.raises(jsonscan.Truncated):
        jsonscan.value_end(text[:cut])
    for part in ('["ab', '["ab\\', '["ab\\u00', "[1", "[-", "[1.", "[1e", '{"a"', '{"a":', '{"a":tr', "", "  "):
        with pytest.raises(jsonscan.Truncated):
            jsonscan.value_end(part)


def test_a_scan_goes_on_where_it_stopped_as_the_text_grows() -> None:
    text = _deep(3000, inner='[12345,true, false,null ,"s",-0.5e3,0,1E+2,{"t":true}]')
    for size in (1, 7, 1000):
        scan, end, grown = jsonscan.Scan(0), None, ""
        for start in range(0, len(text), size):
            grown += text[start:start + size]
            try:
                end = scan.end(grown, final=False)
                break
            except jsonscan.Truncated:
                assert start + size < len(text)
        assert end == len(text)
    assert jsonscan.Scan(0).end("12", final=True) == 2
    with pytest.raises(jsonscan.Truncated):  # "12" may go on: "123"
        jsonscan.Scan(0).end("12", final=False)


def test_members_and_elements_hand_back_the_raw_text_of_each() -> None:
    deep = _deep(5000)
    obj = f' {{ "_id" : "a\\"b" , "v" :{deep} , "n":1.50 ,"s":"]}}" }}\n'
    assert jsonscan.members(obj) == [("_id", '"a\\"b"'), ("v", deep), ("n", "1.50"), ("s", '"]}"')]
    assert jsonscan.elements(f"[ {obj} ,2,[ ] ]") == [obj.strip(), "2", "[ ]"]
    assert jsonscan.members("{}") == [] and jsonscan.elements(" [ ] ") == []
    assert jsonscan.members('{"\\u00e9":1}') == [("é", "1")]
    for bad in ('{"a":1} x', '{"a":1,}', "[1]", '{"a":1'):
        with pytest.raises(jsonscan.ScanError):
            jsonscan.members(bad)
    with pytest.raises(jsonscan.ScanError):
        jsonscan.elements("{}")


def test_compact_drops_whitespace_outside_strings_only() -> None:
    text = '{ "a b" : [ 1 ,\n "x \\" ] y" ] ,\r\n\t"c":{ } }'
    assert jsonscan.compact(text) == json.dumps(json.loads(text), separators=(",", ":"), ensure_ascii=False)
    deep = _deep(DEEP)
    assert jsonscan.compact(deep.replace(", ", " ,\n ")) == deep.replace(", ", ",")


def test_loads_shallow_decodes_what_json_can_and_keeps_the_rest_raw() -> None:
    deep = _deep(3000)
    doc = jsonscan.loads_shallow(f'{{"_id":"d","_rev":"1-a","v":{deep},"n":[1]}}')
    assert doc == {"_id": "d", "_rev": "1-a", "v": msgspec.Raw(deep.encode()), "n": [1]}
    assert jsonscan.loads_shallow('{"a":1}') == {"a": 1}
    assert jsonscan.loads_shallow(f" {deep} ") == msgspec.Raw(deep.encode())
    with pytest.raises(ValueError):
        jsonscan.loads_shallow(deep[:-1])


# -- rows: `_all_docs` and `_bulk_get` responses with a row too deep to decode

def _page(deep: str, indent: bool = False) -> bytes:
    sep = ",\r\n" if indent else ","
    rows = [json.dumps({"id": "a", "key": "a", "value": {"rev": "1-a"}, "doc": {"_id": "a", "t": "é"}}),
            f'{{"id":"deep","key":"deep","value":{{"rev":"1-b"}},"doc":{{"_id":"deep","v":{deep},"t":"é"}}}}',
            json.dumps({"id": "z", "key": "z", "value": {"rev": "1-c"}, "doc": {"_id": "z"}})]
    return f'{{"total_rows":3,"offset":0,"rows":[{sep.join(rows)}]}}'.encode()


def test_a_page_with_a_deep_row_is_left_to_iter_docs_which_splices_its_document() -> None:
    deep = _deep(DEEP)
    body = _page(deep)
    assert page_docs(body) is None
    expected = [("a", b'{"_id":"a","t":"\\u00e9"}'), ("deep", _ascii(f'{{"_id":"deep","v":{deep},"t":"é"}}')),
                ("z", b'{"_id":"z"}')]
    assert list(iter_docs([body])) == expected
    rng = random.Random(3)
    cuts = sorted(rng.sample(range(1, len(body)), 300))
    chunks = [body[a:b] for a, b in zip([0, *cuts], [*cuts, len(body)], strict=True)]
    assert list(iter_docs(chunks)) == expected
    small = _deep(3000, inner="[1.5e3,-0,true,null,12]")
    body = _page(small, indent=True)
    assert [doc for _, doc in iter_docs(body[i:i + 1] for i in range(len(body)))][1] == _ascii(
        f'{{"_id":"deep","v":{small},"t":"é"}}')


def test_a_pretty_printed_deep_document_comes_out_on_one_line() -> None:
    deep = _deep(3000)
    spaced = deep.replace(", ", " ,\n  ")
    out = ascii_json(f'{{\n  "_id": "deep",\n  "v": {spaced}\n}}'.encode())
    assert b"\n" not in out and out.isascii()
    assert jsonscan.members(out.decode())[1] == ("v", _ascii(deep.replace(", ", ",")).decode())


def test_a_row_cut_inside_a_deep_document_is_an_error() -> None:
    body = _page(_deep(3000))
    with pytest.raises(RowsFormatError):
        list(iter_docs([body[: len(body) // 2]]))
    with pytest.raises(RowsFormatError):
        list(iter_docs([body.replace(b'"x"', b'"x" "y"')]))


def test_a_deep_bulk_get_answer_brings_its_document_as_spliced_bytes() -> None:
    deep = _deep(3000)
    results = [
        '{"id":"a","docs":[{"ok":{"_id":"a","_rev":"1-a","_revisions":{"start":1,"ids":["a"]}}}]}',
        f'{{"id":"deep","docs":[{{"ok":{{"_id":"deep","_rev":"2-b","v":{deep}}}}},'
        '{"error":{"id":"deep","rev":"1-x","error":"not_found","reason":"missing"}}]}',
    ]
    body = ('{"results":[' + ",".join(results) + "]}").encode()
    entries = list(iter_rows((body[i:i + 100] for i in range(0, len(body), 100)), array="results"))
    assert bulk_get_answers(entries[0]) == [{"ok": {"_id": "a", "_rev": "1-a", "_revisions": {"start": 1, "ids": ["a"]}}}]
    ok, error = bulk_get_answers(entries[1])
    assert ok == {"ok": _ascii(f'{{"_id":"deep","_rev":"2-b","v":{deep}}}')}
    assert error == {"error": {"id": "deep", "rev": "1-x", "error": "not_found", "reason": "missing"}}
    assert bulk_get_answers({"id": "x"}) == [{}]
    assert bulk_get_answers({"id": "x", "docs": msgspec.Raw(b"{}")}) == [msgspec.Raw(b"{}")]


# -- backup lines and `_bulk_docs` bodies

def test_a_line_holding_a_deep_document_decodes_its_top_level_members() -> None:
    deep = _deep(DEEP)
    line = raw_docs_line([b'{"_id":"a","n":1}', f'{{"_id":"deep","_rev":"1-a","v":{deep},"_attachments":{{}}}}'.encode()])
    decoder = LineDecoder()
    decoded = decoder.decode(line)
    assert decoded is not None
    assert decoded.docs == [{"_id": "a", "n": 1},
                            {"_id": "deep", "_rev": "1-a", "v": msgspec.Raw(deep.encode()), "_attachments": {}}]
    body = msgspec.json.encode({"docs": decoded.docs, "new_edits": False})
    assert body == f'{{"docs":[{{"_id":"a","n":1}},{{"_id":"deep","_rev":"1-a","v":{deep},"_attachments":{{}}}}],' \
                   f'"new_edits":false}}'.encode()


def test_a_broken_line_holding_a_deep_document_is_still_an_error() -> None:
    decoder = LineDecoder()
    decoder.decode(b'{"name":"cloudant-cos-backup","version":"1","mode":"shallow"}')
    deep = _deep(3000)
    for broken in (f'[{{"_id":"d","v":{deep}}}', f'[{{"_id":"d","v":{deep}}},]', f'[{{"v":{deep}}}]', f"[{deep}]"):
        with pytest.raises(FormatError, match="line 2"):
            decoder.number = 1
            decoder.decode(broken.encode())


def test_nan_and_infinity_are_not_json() -> None:
    decoder = LineDecoder()
    decoder.decode(b'{"name":"cloudant-cos-backup","version":"1","mode":"shallow"}')
    for constant in (b"NaN", b"Infinity", b"-Infinity"):
        with pytest.raises(FormatError, match="cannot parse as JSON"):
            decoder.decode(b'[{"_id":"a","v":' + constant + b"}]")


VALUES = [2**64, -(2**63) - 1, 10**300, 0.1, 1e16, 1e-7, -0.0, 5e-324, 1.7976931348623157e308, "é日本\U0001f600",
          "\u2028\x00\x1f\x7f\"\\/", True, None, {"nested": [1, {"a": []}]}]


@pytest.mark.parametrize("value", VALUES, ids=repr)
def test_msgspec_writes_what_json_loads_gives_as_the_same_value(value: object) -> None:
    """The restore's bodies are written by msgspec: every value a backup line can hold must mean the same as
    json.dumps writes it (floats may be spelled 1e16 for 1e+16; non-ASCII comes as UTF-8, not escaped)."""
    doc = {"_id": "x", "v": value}
    assert json.loads(msgspec.json.encode(doc)) == json.loads(json.dumps(doc)) == doc
    assert repr(json.loads(msgspec.json.encode(doc))["v"]) == repr(value)


def test_msgspec_cannot_write_a_lone_surrogate_so_json_escapes_do() -> None:
    deep = _deep(3000)
    docs = [{"_id": "s", "v": "\ud800 lone", "\udc00": 1}, {"_id": "deep", "v": msgspec.Raw(deep.encode())}]
    with pytest.raises(UnicodeEncodeError):
        msgspec.json.encode({"docs": docs, "new_edits": False})
    assert bulk_docs_json(docs) == (
        b'{"docs":[{"_id":"s","v":"\\ud800 lone","\\udc00":1},{"_id":"deep","v":' + deep.encode()  # raw: verbatim
        + b'}],"new_edits":false}')
    plain = [{"_id": "s", "v": "\ud800", "n": [1.5, None]}]
    assert bulk_docs_json(plain) == json.dumps({"docs": plain, "new_edits": False}, separators=(",", ":")).encode()
