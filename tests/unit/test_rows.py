"""Rows of an _all_docs response decoded as the bytes arrive, whatever the chunking."""

from __future__ import annotations

import json
import random

import pytest

from backup.rows import FIRST_PAGE, RowsFormatError, iter_docs, iter_rows, page_docs, page_limit, size_hint

ROWS = [
    {"id": f"d{i}", "key": f"d{i}", "value": {"rev": "1-a"},
     "doc": {"_id": f"d{i}", "text": "é日本\u2028\"]},{" * (i % 7), "n": [1, {"a": "]"}], "e": None}}
    for i in range(200)
]


def _body(indent: int | None) -> bytes:
    return json.dumps({"total_rows": 200, "offset": 0, "rows": ROWS}, ensure_ascii=False, indent=indent).encode()


@pytest.mark.parametrize("indent", [None, 1], ids=["compact", "one-row-per-line"])
def test_every_chunking_gives_the_same_rows(indent: int | None) -> None:
    body = _body(indent)
    rng = random.Random(7)
    for _ in range(100):
        cuts = sorted(rng.sample(range(1, len(body)), rng.randint(0, 60)))
        chunks = [body[a:b] for a, b in zip([0, *cuts], [*cuts, len(body)], strict=True)]
        assert list(iter_rows(chunks)) == ROWS


def test_byte_by_byte() -> None:
    body = json.dumps({"total_rows": 20, "offset": 0, "rows": ROWS[:20]}, ensure_ascii=False).encode()
    assert list(iter_rows(body[i:i + 1] for i in range(len(body)))) == ROWS[:20]


def test_empty_rows_and_couchdb_line_layout() -> None:
    assert list(iter_rows([b'{"total_rows":0,"offset":0,"rows":[\r\n\r\n]}'])) == []
    couch = b'{"total_rows":2,"offset":0,"rows":[\r\n{"id":"a","key":"a"},\r\n{"id":"b","key":"b"}\r\n]}\n'
    assert [r["id"] for r in iter_rows([couch])] == ["a", "b"]


@pytest.mark.parametrize("cut", [10, 0.5, -3], ids=["in-header", "mid-row", "before-array-end"])
def test_a_response_cut_short_is_an_error_not_a_short_page(cut: float) -> None:
    body = _body(None)
    end = int(len(body) * cut) if isinstance(cut, float) else (cut if cut > 0 else len(body) + cut)
    with pytest.raises(RowsFormatError):
        list(iter_rows([body[:end]]))


def test_not_an_all_docs_response() -> None:
    with pytest.raises(RowsFormatError, match="no \"rows\" array"):
        list(iter_rows([b'{"error":"x"}']))


def test_a_bulk_get_response_streams_its_results_array() -> None:
    results = [{"id": f"d{i}", "docs": [{"ok": {"_id": f"d{i}", "_rev": "1-a", "x": "\u00e9" * i}}]} for i in range(30)]
    body = json.dumps({"results": results}).encode()
    assert list(iter_rows((body[i:i + 7] for i in range(0, len(body), 7)), array="results")) == results
    with pytest.raises(RowsFormatError, match="no \"results\" array"):
        list(iter_rows([b'{"rows":[]}'], array="results"))
    with pytest.raises(RowsFormatError, match="ended inside the \"results\" array"):
        list(iter_rows([body[:-2]], array="results"))


# -- whole pages, spliced (page_docs), and the same rows streamed (iter_docs)

def _as_values(docs: list) -> list:
    return [(doc_id, None if doc is None else json.loads(doc)) for doc_id, doc in docs]


@pytest.mark.parametrize("indent", [None, 1], ids=["compact", "one-row-per-line"])
def test_page_docs_and_iter_docs_give_the_same_documents(indent: int | None) -> None:
    body = _body(indent)
    spliced = page_docs(body)
    assert spliced is not None
    spliced = list(spliced)
    streamed = list(iter_docs([body]))
    expected = [(row["id"], row["doc"]) for row in ROWS]
    assert _as_values(spliced) == _as_values(streamed) == expected
    assert all(doc.isascii() and b"\n" not in doc for _, doc in spliced + streamed)


def test_page_docs_of_rows_without_documents() -> None:
    body = b'{"total_rows":2,"offset":0,"rows":[{"id":"a","key":"a","value":{"rev":"1-x"},"doc":null},' \
           b'{"id":"b","key":"b","value":{"rev":"1-y"}}]}'
    assert list(page_docs(body) or []) == [("a", None), ("b", None)]
    assert list(iter_docs([body])) == [("a", None), ("b", None)]


def test_page_docs_keeps_the_exact_digits_of_big_numbers() -> None:
    body = b'{"rows":[{"id":"n","doc":{"_id":"n","big":123456789012345678901234567890,"f":0.1000000000000000055511}}]}'
    assert list(page_docs(body) or []) == [("n", b'{"_id":"n","big":123456789012345678901234567890,"f":0.1000000000000000055511}')]


def test_page_docs_leaves_what_msgspec_refuses_to_the_stream_decoder() -> None:
    lone = b'{"rows":[{"id":"s","doc":{"_id":"s","v":"\\ud800"}}]}'  # an escaped lone surrogate: valid for CouchDB
    assert page_docs(lone) is None
    assert _as_values(list(iter_docs([lone]))) == [("s", {"_id": "s", "v": "\ud800"})]
    assert page_docs(b'{"rows":[{"id":"a","doc":{"x":1,}}]}') is None  # broken JSON
    assert page_docs(b'{"error":"not_found"}') is None


def test_page_docs_refuses_invalid_utf8_and_rows_without_id() -> None:
    with pytest.raises(RowsFormatError, match="UTF-8"):
        list(page_docs(b'{"rows":[{"id":"a","doc":{"s":"\xff"}}]}') or [])
    with pytest.raises(RowsFormatError, match="no id"):
        list(page_docs(b'{"rows":[{"key":"a","error":"not_found"}]}') or [])
    with pytest.raises(RowsFormatError, match="no id"):
        list(iter_docs([b'{"rows":[{"key":"a","error":"not_found"}]}']))


@pytest.mark.parametrize(("max_rows", "page_bytes", "seen_docs", "seen_bytes", "expected"), [
    (10_000, 8 << 20, 0, 0, FIRST_PAGE),  # nothing seen yet: a small first page
    (200, 8 << 20, 0, 0, 200),
    (10_000, 8 << 20, 1000, 300_000, 10_000),  # small docs: the row cap
    (10_000, 8 << 20, 100, 10_000_000, 83),  # ~100 KB docs: ~8 MiB of them
    (10_000, 8 << 20, 1, 50 << 20, 1),  # never zero
])
def test_page_limit_follows_the_average_document(max_rows: int, page_bytes: int, seen_docs: int, seen_bytes: int,
                                                 expected: int) -> None:
    assert page_limit(max_rows, page_bytes, seen_docs, seen_bytes) == expected


def test_size_hint_comes_from_the_database_info_when_it_reports_sizes() -> None:
    assert size_hint({"doc_count": 1000, "sizes": {"external": 300_000, "file": 1}}) == (1000, 300_000)
    assert size_hint({"doc_count": 1000}) is None  # pouchdb-server: no sizes
    assert size_hint({"doc_count": 0, "sizes": {"external": 10}}) is None  # empty: nothing to average
    assert size_hint({"doc_count": 5, "sizes": {"external": None}}) is None
