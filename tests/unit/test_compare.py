"""A drill's comparison (backup.compare), with plain dicts as the backup's entries and as the database's rows."""

from __future__ import annotations

import base64
import random
from typing import Any

import msgspec
import pytest

from backup.compare import (
    CHANGED,
    Comparison,
    Reservoir,
    Tally,
    body_hash,
    check_sample,
    difference,
    expected_of,
    runs,
    source_difference,
)

DATA = b"attachment bytes"
INLINE = {"contentType": "text/plain", "data": base64.b64encode(DATA).decode(), "digest": "md5-abc", "revpos": 2}
STUB = {"content_type": "text/plain", "digest": "md5-abc", "length": len(DATA), "revpos": 3, "stub": True}


def row(doc: dict[str, Any]) -> dict[str, Any]:
    """A database's `_all_docs` row (keys, include_docs, conflicts) for its winner `doc`."""
    return {"id": doc["_id"], "key": doc["_id"], "value": {"rev": doc["_rev"]}, "doc": doc}


def deleted_row(doc_id: str, rev: str = "3-dead") -> dict[str, Any]:
    return {"id": doc_id, "key": doc_id, "value": {"rev": rev, "deleted": True}, "doc": None}


def missing_row(doc_id: str) -> dict[str, Any]:
    return {"key": doc_id, "error": "not_found"}


class Database:
    """What a restored database answers, by id (a row each), and the lookups it was asked."""

    def __init__(self, rows: dict[str, dict[str, Any]]) -> None:
        self.rows = rows
        self.asked: list[list[str]] = []

    def lookup(self, ids: list[str]) -> list[dict[str, Any]]:
        self.asked.append(ids)
        return [self.rows.get(doc_id, missing_row(doc_id)) for doc_id in ids]


def doc(doc_id: str, rev: str = "1-a", **body: Any) -> dict[str, Any]:
    return {"_id": doc_id, "_rev": rev, **body}


def compare_one(backup: list[dict[str, Any]], found: dict[str, Any]) -> dict[str, Any] | None:
    return difference(expected_of(backup), found)


# -- one document


def test_an_equal_document_has_no_difference_whatever_its_members_order_and_history():
    backup = {"_id": "a", "_rev": "2-b", "_revisions": {"start": 2, "ids": ["b", "a"]}, "x": 1, "y": {"p": [1, 2]}}
    assert compare_one([backup], row({"y": {"p": [1, 2]}, "_rev": "2-b", "x": 1, "_id": "a"})) is None


@pytest.mark.parametrize(("found", "differs"), [
    pytest.param(missing_row("a"), "missing", id="missing"),
    pytest.param(deleted_row("a"), "missing", id="deleted-in-the-restore"),
    pytest.param(row(doc("a", "2-z", x=1)), "rev", id="another-rev"),
    pytest.param(row(doc("a", x=2)), "body", id="another-value"),
    pytest.param(row(doc("a", x=1, extra=True)), "body", id="an-extra-member"),
    pytest.param(row(doc("a")), "body", id="a-member-missing"),
])
def test_a_document_that_differs_says_how(found, differs):
    assert compare_one([doc("a", x=1)], found) == {"id": "a", "differs": differs, **(
        {"backup": "1-a", "restored": "2-z"} if differs == "rev" else {})}


def test_a_deletion_must_not_come_back_live():
    tombstone = {"_id": "a", "_rev": "3-c", "_deleted": True, "_revisions": {"start": 3, "ids": ["c", "b", "a"]}}
    assert compare_one([tombstone], deleted_row("a", "3-c")) is None
    assert compare_one([tombstone], missing_row("a")) is None
    assert compare_one([tombstone], row(doc("a", "2-b"))) == {"id": "a", "differs": "deleted", "restored": "2-b"}


def test_conflicts_the_winner_is_couchdbs_and_every_live_leaf_must_be_there():
    leaves = [doc("c", "2-aaa", v="a"), doc("c", "3-bbb", v="b"), doc("c", "3-ccc", v="c"),
              {"_id": "c", "_rev": "4-ddd", "_deleted": True}]  # a deleted leaf never wins, nor is a conflict
    expected = expected_of(leaves)
    assert (expected.rev, expected.leaves) == ("3-ccc", frozenset({"2-aaa", "3-bbb", "3-ccc"}))
    winner = doc("c", "3-ccc", v="c", _conflicts=["3-bbb", "2-aaa"])
    assert difference(expected, row(winner)) is None
    assert difference(expected, row({**winner, "_conflicts": ["3-bbb"]}))["differs"] == "conflicts"
    assert difference(expected, row({**winner, "_conflicts": ["3-bbb", "2-aaa", "2-zzz"]}))["differs"] == "conflicts"
    assert difference(expected, row(doc("c", "3-bbb", v="b", _conflicts=["3-ccc", "2-aaa"])))["differs"] == "rev"
    assert difference(expected, row({**winner, "v": "b"}))["differs"] == "body"  # the winner's body, not another leaf's


def test_a_higher_generation_wins_over_a_higher_revision_id():
    assert expected_of([doc("c", "10-a"), doc("c", "9-z")]).rev == "10-a"  # numerically, not as text


def test_attachments_inline_in_the_backup_equal_their_stubs_in_the_database():
    backup = doc("f", _attachments={"a.txt": INLINE})
    assert compare_one([backup], row(doc("f", _attachments={"a.txt": STUB}))) is None
    # a compressed one's digest is of its compressed form: not compared (its length is the bytes')
    encoded = {**STUB, "digest": "md5-gzipped", "encoding": "gzip", "encoded_length": 9}
    assert compare_one([backup], row(doc("f", _attachments={"a.txt": encoded}))) is None


@pytest.mark.parametrize("stub", [
    pytest.param({**STUB, "length": len(DATA) - 1}, id="length"),
    pytest.param({**STUB, "digest": "md5-other"}, id="digest"),
    pytest.param({**STUB, "content_type": "application/octet-stream"}, id="content-type"),
])
def test_an_attachment_that_differs_is_named(stub):
    backup = doc("f", _attachments={"a.txt": INLINE, "b.txt": INLINE})
    found = compare_one([backup], row(doc("f", _attachments={"a.txt": stub, "b.txt": STUB})))
    assert found == {"id": "f", "differs": "attachments", "names": ["a.txt"]}


def test_a_missing_or_extra_attachment_differs():
    backup = doc("f", _attachments={"a.txt": INLINE})
    assert compare_one([backup], row(doc("f")))["names"] == ["a.txt"]
    assert compare_one([backup], row(doc("f", _attachments={"a.txt": STUB, "b": STUB})))["names"] == ["b"]


def test_a_backups_stubs_are_not_expected_in_the_restore_but_are_in_the_source():
    """A backup made without attachments holds stubs, which a restore cannot write: the restored document has none.
    The source has them: the sample compares them."""
    backup = doc("f", x=1, _attachments={"a.txt": STUB})
    assert compare_one([backup], row(doc("f", x=1))) is None
    assert source_difference(expected_of([backup]), row(doc("f", x=1, _attachments={"a.txt": STUB}))) is None
    assert source_difference(expected_of([backup]), row(doc("f", x=1)))["differs"] == "source"


def test_members_too_deep_to_decode_compare_by_their_json():
    deep = "[" * 3000 + "]" * 3000
    backup = {"_id": "d", "_rev": "1-a", "deep": msgspec.Raw(deep.encode()), "n": 1}
    sent = '{"_id":"d","_rev":"1-a","n":1,"deep":' + deep + "}"  # a row too deep comes with its doc raw
    assert compare_one([backup], {"id": "d", "key": "d", "value": {"rev": "1-a"}, "doc": msgspec.Raw(sent.encode())}) is None
    other = sent.replace("[]", "[1]")
    assert compare_one([backup], {"id": "d", "key": "d", "value": {"rev": "1-a"},
                                  "doc": msgspec.Raw(other.encode())})["differs"] == "body"


def test_a_body_hash_is_of_the_documents_own_members():
    assert body_hash(doc("a", x=1)) == body_hash({"x": 1, "_id": "b", "_rev": "9-z", "_conflicts": ["1-q"]})
    assert body_hash(doc("a", x="\ud800")) != body_hash(doc("a", x="\udc00"))  # lone surrogates still hash
    assert body_hash(doc("a", x=2**70)) != body_hash(doc("a", x=2**70 + 1))


def test_runs_are_the_consecutive_entries_of_one_id():
    entries = [doc("a"), doc("b", "1-x"), doc("b", "1-y"), doc("c"), doc("a", "2-a")]
    assert [[e["_rev"] for e in run] for run in runs(entries)] == [["1-a"], ["1-x", "1-y"], ["1-a"], ["2-a"]]
    assert list(runs([])) == []


# -- a chain


def chain_compare(members: list[list[dict[str, Any]]], database: Database, **options: Any) -> Comparison:
    """Feed the members (oldest first, as a chain lists them) newest first, as the drill does."""
    comparison = Comparison(database.lookup, **options)
    for index in range(len(members) - 1, -1, -1):
        comparison.member(index)
        for run in runs(members[index]):
            comparison.add(run)
    comparison.finish()
    return comparison


def test_a_chains_newest_entry_of_each_document_is_the_one_compared():
    full = [doc("a", "1-a", v=1), doc("b", "1-b", v=1), doc("c", "1-c", v=1)]
    incremental = [doc("a", "2-a", v=2), {"_id": "b", "_rev": "2-b", "_deleted": True}, doc("d", "1-d", v=1)]
    database = Database({"a": row(doc("a", "2-a", v=2)), "b": deleted_row("b", "2-b"), "c": row(doc("c", "1-c", v=1)),
                         "d": row(doc("d", "1-d", v=1))})
    comparison = chain_compare([full, incremental], database)
    assert comparison.tally.count == 0, comparison.tally.first
    assert (comparison.docs, comparison.live) == (4, 3)
    assert comparison.count(3) is None
    assert len(comparison._seen) == 3  # only the incremental's ids are remembered, never the full backup's


def test_an_older_entry_is_never_compared_against_a_newer_state():
    """Without superseding, the full backup's a@1 would be compared with the restored a@2 (a 'rev' difference)."""
    database = Database({"a": row(doc("a", "2-a"))})
    assert chain_compare([[doc("a", "1-a")], [doc("a", "2-a")]], database).tally.count == 0
    assert database.asked == [["a"]]  # read once


def test_differences_are_found_across_a_chain_and_the_first_few_kept():
    full = [doc(f"d{i:02d}", v=i) for i in range(30)]
    database = Database({f"d{i:02d}": row(doc(f"d{i:02d}", v=i + (i % 2))) for i in range(30)})  # odd ones changed
    comparison = chain_compare([full], database, kept=4)
    assert comparison.tally.count == 15
    assert [d["id"] for d in comparison.tally.first] == ["d01", "d03", "d05", "d07"]


def test_an_extra_or_missing_document_changes_the_count():
    database = Database({"a": row(doc("a"))})
    comparison = chain_compare([[doc("a")]], database)
    assert comparison.count(2) == {"differs": "count", "backup": 1, "restored": 2}  # one the backup does not hold
    assert comparison.tally.count == 1


def test_a_document_held_twice_by_one_incremental_is_its_later_entry():
    """A change read again (a resumed incremental) comes later in the same object: the earlier entry is not final,
    whether it was compared already (another batch) or not (the same batch)."""
    full = [doc("a", "1-a", v=1), doc("b", "1-b", v=1)]
    incremental = [doc("a", "2-a", v=2), doc("b", "2-b", v=2), *(doc(f"pad{i}") for i in range(5)),
                   doc("a", "3-a", v=3), doc("b", "3-b", v=3)]
    rows = {"a": row(doc("a", "3-a", v=3)), "b": row(doc("b", "3-b", v=3)), **{f"pad{i}": row(doc(f"pad{i}")) for i in range(5)}}
    for batch in (2, 500):
        comparison = chain_compare([full, incremental], Database(rows), batch=batch, sample=100)
        assert comparison.tally.count == 0 and comparison.tally.first == [], (batch, comparison.tally.first)
        assert (comparison.docs, comparison.live) == (7, 7), batch
        assert sorted(e.rev for e in comparison.reservoir.items if e.id in "ab") == ["3-a", "3-b"], batch


def test_a_difference_of_an_earlier_entry_is_taken_back_but_the_final_ones_stay():
    incremental = [doc("a", "2-a"), doc("pad"), doc("a", "3-a")]
    database = Database({"a": row(doc("a", "4-a")), "pad": row(doc("pad"))})
    comparison = chain_compare([[doc("a", "1-a")], incremental], database, batch=1)
    assert comparison.tally.count == 1 and comparison.tally.first == [
        {"id": "a", "differs": "rev", "backup": "3-a", "restored": "4-a"}]


def test_lookups_are_batches_of_at_most_batch_ids():
    database = Database({f"d{i}": row(doc(f"d{i}")) for i in range(7)})
    chain_compare([[doc(f"d{i}") for i in range(7)]], database, batch=3)
    assert [len(ids) for ids in database.asked] == [3, 3, 1]


# -- the sample


def test_the_sample_holds_at_most_its_size_of_live_documents_with_a_revision():
    docs = [doc(f"d{i:03d}") for i in range(200)] + [{"_id": "gone", "_rev": "2-x", "_deleted": True}]
    database = Database({d["_id"]: row(d) for d in docs[:200]})
    comparison = chain_compare([docs], database, sample=10, rng=random.Random(1))
    items = comparison.reservoir.items
    assert len(items) == 10 and len({e.id for e in items}) == 10 and "gone" not in {e.id for e in items}
    assert len(chain_compare([docs], database, sample=0).reservoir.items) == 0


def test_the_reservoir_is_a_uniform_sample():
    hits = dict.fromkeys(range(10), 0)
    for seed in range(2000):
        reservoir = Reservoir(2, random.Random(seed))
        for i in range(10):
            reservoir.offer(expected_of([doc(str(i))]))
        for item in reservoir.items:
            hits[int(item.id)] += 1
    assert all(300 < count < 500 for count in hits.values()), hits  # 400 expected for each


def test_a_discarded_item_leaves_the_reservoir():
    reservoir = Reservoir(3, random.Random(0))
    for name in "abc":
        reservoir.offer(expected_of([doc(name)]))
    reservoir.discard("a")
    reservoir.discard("zzz")
    assert sorted(e.id for e in reservoir.items) == ["b", "c"]
    reservoir.discard("c")
    assert [e.id for e in reservoir.items] == ["b"]


def test_sampled_documents_unchanged_in_the_source_must_be_equal_and_changed_ones_are_only_counted():
    backup = [doc("same", x=1), doc("edited", x=1), doc("deleted", x=1), doc("purged", x=1), doc("forged", x=1),
              doc("att", _attachments={"a.txt": INLINE})]
    source = Database({"same": row(doc("same", x=1)), "edited": row(doc("edited", "2-b", x=2)),
                       "deleted": deleted_row("deleted", "2-d"), "forged": row(doc("forged", x="not what was backed up")),
                       "att": row(doc("att", _attachments={"a.txt": STUB}))})
    tally = Tally()
    result = check_sample([expected_of([d]) for d in backup], source.lookup, tally, batch=4)
    assert result.to_json() == {"checked": 6, "unchanged_equal": 2, "changed_since_backup": 3}
    assert tally.first == [{"id": "forged", "differs": "source", "rev": "1-a"}] and tally.count == 1
    assert [len(ids) for ids in source.asked] == [4, 2]
    assert source_difference(expected_of([doc("e")]), deleted_row("e")) == CHANGED
