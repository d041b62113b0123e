"""A restore drill's comparison (pure, no I/O: the reads are passed in): a backup chain's documents against the
database it was restored into, and a sample of them against the live source.

The backup's final state of a document is its entries in the newest chain member that holds it: one entry, or
every leaf of a document with conflicts (consecutive entries of one id, each with `_revisions`). Members are fed
newest first, so an older member's entry of an id already seen is superseded and skipped. Only the ids of members
with an older one after them (the incrementals) are remembered, as 8-byte hashes, never the full backup's (read
last): memory is the incrementals' ids, one batch of small summaries, and the sample.

A document is compared by its winning revision, the set of its live leaves (winner and `_conflicts`), a hash of
its body (its own members, not `_id`, `_rev`, `_revisions`...) and its attachments' names, content types, lengths
and digests; a deletion must not be live. Bodies are hashed, never held: both sides are JSON of one server's
writing, decoded alike, so equal documents give equal canonical bytes.
"""

from __future__ import annotations

import hashlib
import json
import random
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any

import msgspec

from backup import jsonscan
from backup.attachments import attachments_of
from backup.format import ascii_json

BATCH = 500  # ids per `_all_docs` lookup
KEPT = 10  # differences kept in the result (all are counted)
ID_HASH_BYTES = 8  # a collision (odds about 1 in 30 million for 10^6 incremental ids) skips one check
# What is not the document's content: its identity and history, and what a read adds. `_attachments` is compared
# on its own (inline data in a backup, stubs in a database).
_META = frozenset({"_id", "_rev", "_revisions", "_conflicts", "_deleted_conflicts", "_deleted", "_attachments",
                   "_revs_info", "_local_seq"})
CHANGED = "changed"  # a sampled source document changed or deleted since the backup

# Reads the `_all_docs` rows (keys, include_docs, conflicts) of these ids, in their order.
Lookup = Callable[[list[str]], Iterable[dict[str, Any]]]
# An attachment as compared: (content type, length, digest, a stub without data).
Attachment = tuple[str | None, int | None, str | None, bool]


@dataclass(slots=True)
class Expected:
    """What the backup says one document is (its final state in the chain)."""

    id: str
    rev: str | None  # the winner's; None when deleted, or written without one (couchbackup before 2.4.2)
    live: bool
    leaves: frozenset[str]  # the live leaf revisions
    body: bytes  # hash of the winner's body
    attachments: dict[str, Attachment] | None  # the winner's


def runs(entries: Iterable[dict[str, Any]]) -> Iterator[list[dict[str, Any]]]:
    """A member's entries as runs of consecutive entries of one id: a document's leaves."""
    run: list[dict[str, Any]] = []
    for doc in entries:
        if run and doc.get("_id") != run[0].get("_id"):
            yield run
            run = []
        run.append(doc)
    if run:
        yield run


def _rank(doc: dict[str, Any]) -> tuple[int, str]:
    """CouchDB's order of live leaves: the winner has the highest generation, then the highest revision id."""
    rev = doc.get("_rev")
    if not isinstance(rev, str):
        return (0, "")
    generation, _, rev_id = rev.partition("-")
    return (int(generation), rev_id) if generation.isdigit() else (0, rev)


def expected_of(run: list[dict[str, Any]]) -> Expected:
    """The final state of a document from its run of entries (a backup's leaves of it)."""
    doc_id = str(run[0].get("_id"))
    live = [doc for doc in run if not doc.get("_deleted")]
    if not live:
        return Expected(doc_id, None, False, frozenset(), b"", None)
    winner = max(live, key=_rank)
    rev = winner.get("_rev")
    leaves = frozenset(doc["_rev"] for doc in live if isinstance(doc.get("_rev"), str))
    return Expected(doc_id, rev if isinstance(rev, str) else None, True, leaves, body_hash(winner),
                    attachment_summary(winner))


def body_hash(doc: dict[str, Any]) -> bytes:
    """A hash of the document's own members, in a canonical form (keys sorted; members too deep to decode, kept raw,
    as this format writes them)."""
    body = {key: ascii_raw(value) for key, value in doc.items() if key not in _META}
    try:
        canonical = msgspec.json.encode(body, order="sorted")
    except (UnicodeEncodeError, TypeError, OverflowError):  # a lone surrogate, an integer beyond 64 bits
        canonical = json.dumps(body, sort_keys=True, default=lambda raw: bytes(raw).decode()).encode()
    return hashlib.blake2b(canonical, digest_size=16).digest()


def ascii_raw(value: Any) -> Any:
    """A member kept raw (too deep to decode) in this format's form, whichever side sent it."""
    return msgspec.Raw(ascii_json(bytes(value))) if isinstance(value, msgspec.Raw) else value


def _base64_length(data: str) -> int:
    return len(data) * 3 // 4 - (len(data) - len(data.rstrip("=")))


def attachment_summary(doc: dict[str, Any]) -> dict[str, Attachment] | None:
    """The document's attachments as compared, inline (a backup's: `contentType`, base64 `data`) or stubs (a
    server's). A digest of an attachment stored `encoding` (compressed) is of that form: left out."""
    attachments = attachments_of(doc)
    if attachments is None:
        return None
    summary: dict[str, Attachment] = {}
    for name, attachment in attachments.items():
        if not isinstance(attachment, dict):
            summary[name] = (None, None, None, False)
            continue
        data = attachment.get("data")
        length = _base64_length(data) if isinstance(data, str) else attachment.get("length")
        content_type = attachment.get("content_type", attachment.get("contentType"))
        digest = None if attachment.get("encoding") else attachment.get("digest")
        summary[name] = (content_type if isinstance(content_type, str) else None,
                         length if isinstance(length, int) else None,
                         digest if isinstance(digest, str) else None, data is None and bool(attachment.get("stub")))
    return summary


def attachments_differ(expected: dict[str, Attachment] | None, found: dict[str, Attachment] | None,
                       stubs: bool) -> list[str]:
    """The names of the attachments that differ (missing, extra, or another type, length or digest). Without
    `stubs`, the backup's stubs are not expected (a restore cannot write them: see attachments.to_server)."""
    want = {name: a for name, a in (expected or {}).items() if stubs or not a[3]}
    got = found or {}
    names = sorted(set(want) ^ set(got))
    for name in sorted(set(want) & set(got)):
        (want_type, want_length, want_digest, _), (got_type, got_length, got_digest, _) = want[name], got[name]
        if ((want_type is not None and want_type != got_type)
                or (None not in (want_length, got_length) and want_length != got_length)
                or (None not in (want_digest, got_digest) and want_digest != got_digest)):
            names.append(name)
    return names


def doc_of(row: dict[str, Any]) -> dict[str, Any] | None:
    """The live winner in an `_all_docs` row, or None (missing, deleted). A document too deep to decode comes raw: its
    top-level members are read (see jsonscan.loads_shallow)."""
    doc = row.get("doc")
    if isinstance(doc, msgspec.Raw):
        doc = jsonscan.loads_shallow(bytes(doc).decode("utf-8", "surrogatepass"))
    value = row.get("value")
    if not isinstance(doc, dict) or (isinstance(value, dict) and value.get("deleted")) or doc.get("_deleted"):
        return None
    return doc


def _leaves(doc: dict[str, Any]) -> frozenset[str]:
    conflicts = doc.get("_conflicts")
    revs = [doc.get("_rev"), *(conflicts if isinstance(conflicts, list) else [])]
    return frozenset(rev for rev in revs if isinstance(rev, str))


def difference(expected: Expected, row: dict[str, Any]) -> dict[str, Any] | None:
    """How the restored document (its `_all_docs` row) differs from the backup's, or None. One difference per
    document, the first found: missing, deleted (a deletion came back live), rev, conflicts, body, attachments."""
    doc = doc_of(row)
    found = {"id": expected.id}
    if not expected.live:
        return None if doc is None else {**found, "differs": "deleted", "restored": doc.get("_rev")}
    if doc is None:
        return {**found, "differs": "missing"}
    if expected.rev is not None:  # a backup without revisions is written as new edits: new ones
        if doc.get("_rev") != expected.rev:
            return {**found, "differs": "rev", "backup": expected.rev, "restored": doc.get("_rev")}
        if _leaves(doc) != expected.leaves:
            return {**found, "differs": "conflicts", "backup": sorted(expected.leaves)[:KEPT],
                    "restored": sorted(_leaves(doc))[:KEPT]}
    if body_hash(doc) != expected.body:
        return {**found, "differs": "body"}
    if names := attachments_differ(expected.attachments, attachment_summary(doc), stubs=False):
        return {**found, "differs": "attachments", "names": names[:KEPT]}
    return None


def source_difference(expected: Expected, row: dict[str, Any]) -> dict[str, Any] | str | None:
    """A sampled document against the live source: CHANGED when its winner is not the backup's any more (changed or
    deleted since: never a failure), a difference when it is the same revision with another body, else None."""
    doc = doc_of(row)
    if doc is None or doc.get("_rev") != expected.rev:
        return CHANGED
    if (body_hash(doc) != expected.body
            or attachments_differ(expected.attachments, attachment_summary(doc), stubs=True)):
        return {"id": expected.id, "differs": "source", "rev": expected.rev}
    return None


class Tally:
    """Every difference counted, the first `kept` held."""

    def __init__(self, kept: int = KEPT) -> None:
        self.kept = kept
        self.first: list[dict[str, Any]] = []
        self.count = 0

    def add(self, found: dict[str, Any]) -> None:
        self.count += 1
        if len(self.first) < self.kept:
            self.first.append(found)

    def retract(self, doc_id: str) -> None:
        """A document's difference no longer holds (a later entry of it replaces the one compared)."""
        self.count -= 1
        self.first = [found for found in self.first if found.get("id") != doc_id]


class Reservoir:
    """A uniform sample of `size` documents of a stream (reservoir sampling): memory `size` summaries."""

    def __init__(self, size: int, rng: random.Random | None = None) -> None:
        self.size = size
        self.items: list[Expected] = []
        self.offered = 0
        self._at: dict[str, int] = {}
        self._rng = rng or random.Random()

    def offer(self, item: Expected) -> None:
        self.offered += 1
        if len(self.items) < self.size:
            self._at[item.id] = len(self.items)
            self.items.append(item)
        elif (index := self._rng.randrange(self.offered)) < self.size:
            del self._at[self.items[index].id]
            self._at[item.id] = index
            self.items[index] = item

    def discard(self, doc_id: str) -> None:
        index = self._at.pop(doc_id, None)
        if index is None:
            return
        last = self.items.pop()
        if index < len(self.items):
            self.items[index] = last
            self._at[last.id] = index


def id_hash(doc_id: str) -> int:
    return int.from_bytes(hashlib.blake2b(doc_id.encode("utf-8", "surrogatepass"), digest_size=ID_HASH_BYTES).digest())


class Comparison:
    """The chain's final state against the restored database (`lookup` reads its rows), batch by batch.

    Feed `member(index)` for each chain member, newest first (index: its place in the chain, oldest 0), then `add`
    each run of its entries; `finish()` at the end, then `count(doc_count)`. A member may hold an id twice (a change
    read again by a resumed incremental): its later run is the final one, and replaces what the earlier one said.
    """

    def __init__(self, lookup: Lookup, sample: int = 0, rng: random.Random | None = None, batch: int = BATCH,
                 kept: int = KEPT) -> None:
        self.lookup, self.batch = lookup, batch
        self.tally = Tally(kept)
        self.reservoir = Reservoir(sample, rng)
        self.docs = 0  # documents compared (deleted ones too)
        self.live = 0  # of them, live: what the restored database must hold
        # id hash -> member << 2 | live << 1 | differed, for members with an older one after them
        self._seen: dict[int, int] = {}
        self._pending: dict[str, Expected] = {}
        self._member = 0
        self._record = False

    def member(self, index: int) -> None:
        self.flush()
        self._member, self._record = index, index > 0

    def add(self, run: list[dict[str, Any]]) -> None:
        expected = expected_of(run)
        key = id_hash(expected.id)
        state = self._seen.get(key)
        if state is not None:
            if state >> 2 != self._member:
                return  # superseded: a newer member holds this document
            if expected.id not in self._pending:
                self._retract(expected.id, state)
        if self._record:
            self._seen[key] = self._member << 2
        self._pending[expected.id] = expected
        if len(self._pending) >= self.batch:
            self.flush()

    def _retract(self, doc_id: str, state: int) -> None:
        """Forget what an earlier run of this id in the same member was counted as."""
        self.docs -= 1
        self.live -= state >> 1 & 1
        if state & 1:
            self.tally.retract(doc_id)
        self.reservoir.discard(doc_id)

    def flush(self) -> None:
        """Compare the documents gathered so far."""
        if not self._pending:
            return
        batch, self._pending = list(self._pending.values()), {}
        for expected, row in zip(batch, self.lookup([e.id for e in batch]), strict=True):
            found = difference(expected, row)
            self.docs += 1
            self.live += expected.live
            if found is not None:
                self.tally.add(found)
            if self._record:
                self._seen[id_hash(expected.id)] = self._member << 2 | expected.live << 1 | (found is not None)
            if expected.live and expected.rev is not None:
                self.reservoir.offer(expected)

    finish = flush

    def count(self, doc_count: Any) -> dict[str, Any] | None:
        """The restored database's document count must be the backup's live documents (catches extra ones). The
        difference, if any, is counted, and returned rather than kept with the documents' (it is the one to show)."""
        if doc_count == self.live:
            return None
        self.tally.count += 1
        return {"differs": "count", "backup": self.live, "restored": doc_count}


@dataclass
class SampleResult:
    checked: int = 0
    unchanged_equal: int = 0
    changed_since_backup: int = 0

    def to_json(self) -> dict[str, int]:
        return {"checked": self.checked, "unchanged_equal": self.unchanged_equal,
                "changed_since_backup": self.changed_since_backup}


def check_sample(items: list[Expected], lookup: Lookup, tally: Tally, batch: int = BATCH) -> SampleResult:
    """The sampled documents against the live source (`lookup` reads its rows): those unchanged since the backup must
    be equal to it (else a "source" difference in `tally`); changed or deleted ones are only counted."""
    result = SampleResult()
    for start in range(0, len(items), batch):
        chunk = items[start:start + batch]
        for expected, row in zip(chunk, lookup([e.id for e in chunk]), strict=True):
            result.checked += 1
            found = source_difference(expected, row)
            if found == CHANGED:
                result.changed_since_backup += 1
            elif isinstance(found, dict):
                tally.add(found)
            else:
                result.unchanged_equal += 1
    return result
