"""Restore's write side with fake requests: batches, when stale leaves are checked, design docs held back."""

from __future__ import annotations

import dataclasses
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest

from backup.writer import BatchWriter, HeldDesignDocs, Target, is_design


def _doc(doc_id: str, gen: int = 1, stemmed: bool = False) -> dict[str, Any]:
    ids = [f"{doc_id}-{g}" for g in range(gen, max(0, gen - 2) if stemmed else 0, -1)]
    return {"_id": doc_id, "_rev": f"{gen}-{ids[0]}", "_revisions": {"start": gen, "ids": ids}}


class Server:
    """Records every write and check, in order; a check also records the docs written so far."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.batches: list[tuple[list[str], int, tuple[int, int]]] = []
        self.checks: list[tuple[dict[str, frozenset[str]], set[str]]] = []

    def write(self, docs: list[dict[str, Any]], number: int, lines: tuple[int, int]) -> int:
        with self.lock:
            self.batches.append(([d["_id"] for d in docs], number, lines))
        return len(docs)

    def close_stale(self, leaf_sets: dict[str, frozenset[str]]) -> int:
        with self.lock:
            self.checks.append((leaf_sets, {i for ids, _, _ in self.batches for i in ids}))
        return len(leaf_sets)

    def written(self) -> list[str]:
        return [i for ids, _, _ in sorted(self.batches, key=lambda b: b[1]) for i in ids]


@pytest.fixture
def server() -> Server:
    return Server()


@pytest.fixture
def target(server: Server):
    with ThreadPoolExecutor(max_workers=3) as pool:
        yield Target(pool, server.write, server.close_stale, batch_size=3, batch_bytes=100, parallelism=3,
                     totals={"docs": 0, "batches": 0, "stale_leaves_closed": 0})


def test_batches_end_at_their_doc_count_or_bytes_and_name_their_lines(server, target):
    writer = BatchWriter(target)
    for i, (size, line) in enumerate([(10, 2), (10, 2), (10, 3), (90, 4), (20, 5), (1, 6)]):
        writer.add(_doc(f"d{i}"), size, line)
    writer.flush()
    writer.finish()
    assert sorted(server.batches, key=lambda b: b[1]) == [
        (["d0", "d1", "d2"], 1, (2, 3)), (["d3", "d4"], 2, (4, 5)), (["d5"], 3, (6, 6))]
    assert target.totals["docs"] == 6 and target.totals["batches"] == 3
    assert server.checks == []  # not an incremental: no leaves are read


def test_unstemmed_docs_of_an_incremental_cost_no_check(server, target):
    writer = BatchWriter(target, check_every=2)
    for i in range(20):
        writer.add(_doc(f"d{i}", gen=5), 1, 2)
    writer.finish()
    assert server.checks == [] and target.totals["docs"] == 20


def test_stemmed_docs_are_checked_every_few_once_written_and_at_the_end(server, target):
    writer = BatchWriter(target, check_every=2)
    docs = [_doc("a", 1500, stemmed=True), _doc("b", 3), _doc("c", 1200, stemmed=True), _doc("c", 2),
            _doc("d", 1), _doc("e", 1100, stemmed=True)]
    for doc in docs:
        writer.add(doc, 1, 2)
    writer.finish()
    assert [set(sets) for sets, _ in server.checks] == [{"a", "c"}, {"e"}]
    assert server.checks[0][0]["c"] == {docs[2]["_rev"], docs[3]["_rev"]}
    for sets, written in server.checks:
        assert set(sets) <= written  # every revision of a doc is in the target before its leaves are read
    assert target.totals["stale_leaves_closed"] == 3 and server.written() == ["a", "b", "c", "c", "d", "e"]


def test_design_docs_are_held_within_the_cap_and_written_member_after_member(server, target):
    held = HeldDesignDocs(cap=10_000)
    held.hold(0, False, 2, {"_id": "_design/a", "_rev": "1-x"})
    held.hold(1, True, 3, _doc("_design/a", 1500, stemmed=True))
    held.hold(1, True, 3, _doc("_design/b", 2))
    assert not held.overflowed and held.bytes > 0
    target = dataclasses.replace(target, batch_bytes=10_000)
    assert held.write(target, check_every=1000) == 3
    assert server.written() == ["_design/a", "_design/a", "_design/b"]
    assert [b[1] for b in sorted(server.batches, key=lambda b: b[1])] == [1, 2]  # a batch never spans members
    assert [set(sets) for sets, _ in server.checks] == [{"_design/a"}]  # the incremental member's, once written


def test_past_the_cap_design_docs_are_dropped_and_overflowed_is_set(server, target):
    held = HeldDesignDocs(cap=60)
    held.hold(0, False, 2, {"_id": "_design/a", "_rev": "1-x"})
    held.hold(0, False, 2, {"_id": "_design/b", "_rev": "1-x", "views": {"v": {"map": "function (doc) {}"}}})
    held.hold(0, False, 3, {"_id": "_design/c", "_rev": "1-x"})
    assert held.overflowed and held.held == [] and held.bytes == 0
    assert held.write(target, check_every=1000) == 0 and server.batches == []


def test_is_design():
    assert is_design({"_id": "_design/x"}) and not is_design({"_id": "design/x"}) and not is_design({"_id": "_local/x"})
