"""Rows of an _all_docs response decoded as the bytes arrive, whatever the chunking."""

from __future__ import annotations

import json
import random

import pytest

from backup.rows import RowsFormatError, iter_rows

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
