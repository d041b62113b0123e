"""Stale leaves after a chain restore (pure): which target leaves the source no longer has, and how to close them.

A doc edited more times between two backups than the source's `_revs_limit` comes in the incremental with a
stemmed `_revisions` that no longer reaches the revision the target already holds, so writing it with
`new_edits: false` grafts a second, disconnected branch: the old revision stays a live leaf (a deletion comes
back undone, since a live leaf beats a deleted one; an update gains a conflict the source never had).

An incremental holds, for each changed doc, every leaf the source had (the leaves of one changes-feed result,
contiguous in the object). After they are written, a live target leaf outside that set is stale: it gets a
deleted child (`tombstone`), so the doc's winner, deleted state and `_conflicts` are the source's again.
"""

from __future__ import annotations

import hashlib
from typing import Any

# Seeds the tombstones' revision ids: fixed, so a restore run again writes the same revisions (no new leaves).
_TOMBSTONE_SEED = "cloudant-cos-backup stale leaf"


def is_stemmed(doc: dict[str, Any]) -> bool:
    """True when the doc's `_revisions` stop short of its first revision (the history was stemmed)."""
    revisions = doc.get("_revisions")
    if not isinstance(revisions, dict):
        return False
    start, ids = revisions.get("start"), revisions.get("ids")
    return isinstance(start, int) and isinstance(ids, list) and start - len(ids) + 1 > 1


class LeafSets:
    """The source's leaf set of each doc that needs a check, gathered as an incremental's docs stream by.

    A doc's leaves are one run of docs with the same id; the run needs a check when one of them is stemmed
    (any other doc costs a comparison of ids). The same id may come again later in the object (a change read
    twice across a resumed backup): the later run replaces the earlier one, stemmed or not.
    """

    def __init__(self) -> None:
        self._pending: dict[str, frozenset[str]] = {}
        self._id: str | None = None
        self._revs: list[str] = []
        self._stemmed = False

    def __len__(self) -> int:
        return len(self._pending)

    def add(self, doc: dict[str, Any]) -> None:
        doc_id = doc.get("_id")
        if doc_id != self._id:
            self._end_run()
            self._id = doc_id if isinstance(doc_id, str) else None
        rev = doc.get("_rev")
        if isinstance(rev, str):
            self._revs.append(rev)
        self._stemmed = self._stemmed or is_stemmed(doc)

    def finish(self) -> None:
        """The object ended: its last run is complete."""
        self._end_run()

    def run_state(self) -> dict[str, Any] | None:
        """The run in progress, for a restore checkpoint (its leaves may go on after the stop)."""
        return {"id": self._id, "revs": self._revs, "stemmed": self._stemmed} if self._id is not None else None

    def resume_run(self, state: dict[str, Any] | None) -> None:
        if state:
            self._id, self._revs, self._stemmed = state["id"], list(state["revs"]), bool(state["stemmed"])

    def take(self) -> dict[str, frozenset[str]]:
        """The complete runs gathered so far (by id), forgotten here."""
        pending, self._pending = self._pending, {}
        return pending

    def _end_run(self) -> None:
        if self._id is not None and self._revs and (self._stemmed or self._id in self._pending):
            self._pending[self._id] = frozenset(self._revs)
        self._id, self._revs, self._stemmed = None, [], False


def live_leaves(row: dict[str, Any]) -> list[str]:
    """The live leaves of a doc from its `_all_docs` row (keys, include_docs, conflicts): the winner and its
    `_conflicts`; none when the doc is missing or deleted (then every leaf is deleted)."""
    doc = row.get("doc")
    value = row.get("value")
    if not isinstance(doc, dict) or (isinstance(value, dict) and value.get("deleted")) or doc.get("_deleted"):
        return []
    conflicts = doc.get("_conflicts")
    return [rev for rev in [doc.get("_rev"), *(conflicts if isinstance(conflicts, list) else [])] if isinstance(rev, str)]


def stale_leaves(source: frozenset[str], live: list[str]) -> list[str]:
    """The live target leaves the source did not have. An empty leaf set says nothing: nothing is stale."""
    return [rev for rev in live if source and rev not in source]


def tombstone(doc_id: str, rev: str) -> dict[str, Any]:
    """A deleted child of leaf `rev`, to write with `new_edits: false`: the leaf becomes an inner revision.

    Its revision id is an md5 of the leaf (deterministic: a rerun writes the same revision). Its generation is
    the leaf's + 1, at most that of the source leaf descending from the stale one (whose stemmed history starts
    above it; equal only with `_revs_limit` 1), so it does not outrank the source's winner of a deleted doc.
    """
    gen, leaf_hash = rev.split("-", 1)
    child = int(gen) + 1
    digest = hashlib.md5(f"{_TOMBSTONE_SEED}\n{doc_id}\n{rev}".encode(), usedforsecurity=False).hexdigest()
    return {"_id": doc_id, "_rev": f"{child}-{digest}", "_deleted": True,
            "_revisions": {"start": child, "ids": [digest, leaf_hash]}}
