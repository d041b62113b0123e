"""Documents `_all_docs` gives only in part, read again whole (pure: the read is passed in).

A full backup reads winning revisions from `_all_docs` with `conflicts=true`. A document there may carry
attachment stubs (with ATTACHMENTS their data belongs in the backup) or `_conflicts` (every conflicting leaf
belongs in it, with its `_revisions`, so a restore has the same winner and the same conflicts). Only those
documents are read again, with one streamed `_bulk_get` per page (revs, attachments, latest), and come out in
their place among the others, each as the list of its entries in the backup format: winner first, then its
conflicting leaves. Answers are decoded one at a time as they stream, so memory holds one document's leaves,
whatever its attachments weigh; every other document costs nothing more.

`latest` makes a document changed since the page was read come back as its newest leaf of that branch (a
tombstone if it was deleted), not as an error for a revision compaction removed.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any

from backup.attachments import stub_bytes, to_backup
from backup.errors import CloudantError
from backup.format import ascii_json, doc_json, encode_value, loads

# Reads these revisions: [{"id", "rev"}] -> every answer (a document, or its JSON when too deep to decode), in the
# order asked.
Fetch = Callable[[list[dict[str, str]]], Iterator[dict[str, Any] | bytes]]

# Cheap tests on a document's JSON: only a document that holds one of these is decoded to look closer.
_MARKS = (b'"_attachments"', b'"_conflicts"')


@dataclass(frozen=True)
class Needs:
    """What a document of a page lacks: the revisions to read again (winner first)."""

    revs: list[str]


class Refetch:
    """Completes the pages of a full backup, reading again what `_all_docs` left out (`fetch`); attachments'
    data only with `attachments`."""

    def __init__(self, fetch: Fetch, attachments: bool) -> None:
        self.fetch = fetch
        self.attachments = attachments

    def look(self, raw: bytes) -> tuple[Needs | None, bool]:
        """What the document (its JSON from `_all_docs`) lacks, or None; and whether it has attachments left out
        (stubs, without `attachments`)."""
        if not any(mark in raw for mark in _MARKS):
            return None, False
        doc = loads(raw)
        if not isinstance(doc, dict) or not isinstance(doc.get("_rev"), str):
            return None, False
        conflicts = [rev for rev in doc.get("_conflicts") or [] if isinstance(rev, str)]
        stubs = stub_bytes(doc) is not None
        if not conflicts and not (stubs and self.attachments):
            return None, stubs
        return Needs([doc["_rev"], *conflicts]), stubs and not self.attachments

    def page(self, docs: Iterable[tuple[str, bytes]]) -> Iterator[tuple[str, list[bytes], bool]]:
        """The page's documents in order, as (id, entries, attachments left out); those that lack something
        read again (one request for the page, streamed)."""
        docs = list(docs)
        looks = [self.look(raw) for _, raw in docs]
        items = [{"id": doc_id, "rev": rev} for (doc_id, _), (needs, _) in zip(docs, looks, strict=True)
                 if needs is not None for rev in needs.revs]
        answers = _Answers(self.fetch(items) if items else iter(()))
        for (doc_id, raw), (needs, skipped) in zip(docs, looks, strict=True):
            yield doc_id, ([raw] if needs is None else answers.of(doc_id)), skipped
        answers.finish()


class _Answers:
    """The answers of one `_bulk_get`, taken document by document (they come in the order asked; with `latest`
    a revision may answer as another one, or two revisions asked as one leaf)."""

    def __init__(self, answers: Iterator[dict[str, Any] | bytes]) -> None:
        self._answers = answers
        self._next: dict[str, Any] | None = None

    def _peek(self) -> dict[str, Any] | None:
        if self._next is None:
            answer = next(self._answers, None)
            if answer is not None:
                self._next = loads(answer) if isinstance(answer, bytes) else answer
        return self._next

    def of(self, doc_id: str) -> list[bytes]:
        """Every answer for `doc_id` (next in the stream), in the backup format, each revision once."""
        entries: dict[Any, bytes] = {}
        while (answer := self._peek()) is not None and answer.get("_id") == doc_id:
            self._next = None
            entries.setdefault(answer.get("_rev"), entry(answer))
        if not entries:
            raise CloudantError(f"reading documents again: the server did not answer the revisions asked for of document {doc_id!r}")
        return list(entries.values())

    def finish(self) -> None:
        answer = self._peek()
        if answer is not None:
            raise CloudantError(f"reading documents again: the server answered revisions of document "
                                f"{answer.get('_id')!r}, which were not asked for")


def entry(doc: dict[str, Any]) -> bytes:
    """One answer in the backup format: its attachments as couchbackup writes them."""
    doc = to_backup(doc)
    try:
        return encode_value(doc)
    except (TypeError, RecursionError):  # members kept raw (too deep to decode): msgspec writes them verbatim
        return ascii_json(doc_json(doc))
