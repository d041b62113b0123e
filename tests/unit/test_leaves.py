"""Stale leaves after a chain restore: which docs need a check, which target leaves are stale, their tombstones."""

from __future__ import annotations

import re
from typing import Any

import pytest

from backup.leaves import LeafSets, is_stemmed, live_leaves, stale_leaves, tombstone


def _doc(doc_id: str, gen: int, kept: int | None = None, tag: str = "a", **body: Any) -> dict[str, Any]:
    """A revision at `gen` whose `_revisions` keep `kept` ids (all of them by default)."""
    ids = [f"{tag}{g:031d}" for g in range(gen, max(0, gen - (kept or gen)), -1)]
    return {"_id": doc_id, "_rev": f"{gen}-{ids[0]}", "_revisions": {"start": gen, "ids": ids}, **body}


@pytest.mark.parametrize(("doc", "stemmed"), [
    (_doc("x", 1), False),
    (_doc("x", 1000), False),
    (_doc("x", 1001, kept=1000), True),
    (_doc("x", 5, kept=4), True),
    ({"_id": "x", "_rev": "3-abc"}, False),  # a full backup's doc: no history at all
    ({"_id": "x", "_rev": "3-abc", "_revisions": {"start": "3", "ids": ["abc"]}}, False),
    ({"_id": "x", "_rev": "3-abc", "_revisions": ["abc"]}, False),
])
def test_a_history_is_stemmed_when_it_stops_short_of_the_first_revision(doc, stemmed):
    assert is_stemmed(doc) is stemmed


def test_only_runs_with_a_stemmed_revision_are_gathered_with_every_leaf_of_the_run():
    sets = LeafSets()
    conflict_first = _doc("c", 2, tag="b")  # the run's unstemmed leaf comes before its stemmed one
    stemmed = _doc("c", 1005, kept=1000)
    for doc in (_doc("plain", 3), _doc("plain2", 7), conflict_first, stemmed, _doc("after", 1)):
        sets.add(doc)
    assert len(sets) == 1  # "after" is still a run in progress, and not stemmed
    sets.finish()
    assert sets.take() == {"c": frozenset({conflict_first["_rev"], stemmed["_rev"]})}
    assert len(sets) == 0 and sets.take() == {}


def test_the_last_run_counts_once_the_object_ends():
    sets = LeafSets()
    sets.add(_doc("x", 1001, kept=1000))
    assert len(sets) == 0
    sets.finish()
    assert set(sets.take()) == {"x"}


def test_a_later_run_of_the_same_id_replaces_the_earlier_one_even_unstemmed():
    sets = LeafSets()
    early, late, unstemmed_later = _doc("x", 1001, kept=1000), _doc("x", 1003, kept=1000), _doc("x", 4, tag="z")
    for doc in (early, _doc("y", 1), late, _doc("y", 2)):
        sets.add(doc)
    assert sets.take() == {"x": frozenset({late["_rev"]})}
    # once checked, an unstemmed later run needs no check (its whole history reaches every revision before it)
    sets.add(unstemmed_later)
    sets.finish()
    assert sets.take() == {}
    sets.add(early)
    sets.add(_doc("y", 3))
    sets.add(unstemmed_later)
    sets.finish()
    assert sets.take() == {"x": frozenset({unstemmed_later["_rev"]})}


@pytest.mark.parametrize(("row", "leaves"), [
    ({"id": "x", "key": "x", "value": {"rev": "5-a"}, "doc": {"_id": "x", "_rev": "5-a", "_conflicts": ["2-b", "3-c"]}},
     ["5-a", "2-b", "3-c"]),
    ({"id": "x", "key": "x", "value": {"rev": "5-a"}, "doc": {"_id": "x", "_rev": "5-a"}}, ["5-a"]),
    ({"id": "x", "key": "x", "value": {"rev": "6-d", "deleted": True}, "doc": None}, []),
    ({"key": "x", "error": "not_found"}, []),
])
def test_the_live_leaves_of_an_all_docs_row(row, leaves):
    assert live_leaves(row) == leaves


def test_stale_leaves_are_the_live_ones_the_source_did_not_have():
    assert stale_leaves(frozenset({"1005-a", "2-b"}), ["1005-a", "3-old", "2-b"]) == ["3-old"]
    assert stale_leaves(frozenset({"1005-a"}), ["1005-a"]) == []
    assert stale_leaves(frozenset(), ["3-old"]) == []  # no leaf set known: nothing is closed


def test_a_tombstone_is_a_deterministic_deleted_child_of_the_stale_leaf():
    leaf = "3-" + "c" * 32
    stone = tombstone("doc", leaf)
    assert stone == tombstone("doc", leaf)  # a rerun writes the same revision
    assert stone != tombstone("other", leaf) and stone != tombstone("doc", "3-" + "d" * 32)
    digest = stone["_rev"].split("-", 1)[1]
    assert re.fullmatch(r"[0-9a-f]{32}", digest)
    assert stone == {"_id": "doc", "_rev": f"4-{digest}", "_deleted": True,
                     "_revisions": {"start": 4, "ids": [digest, "c" * 32]}}
