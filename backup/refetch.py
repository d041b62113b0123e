"""Documents `_all_docs` gives only in part, read again whole (pure: the read is passed in).

A full backup reads winning revisions from `_all_docs` with `conflicts=true`. A document there may carry
attachment stubs (with ATTACHMENTS their data belongs in the backup) or `_conflicts` (every conflicting leaf
belongs in it, with its `_revisions`, so a restore has the same winner and the same conflicts). Only those
documents are read again, with a streamed `_bulk_get` per page (revs, attachments, latest), and come out in
their place among the others, each as the list of its entries in the backup format: its winner and its
conflicting leaves, in the order the server answers them (pouchdb-server's varies; a restore's winner does not
depend on it). Answers are decoded one at a time as they stream, so memory holds one document's leaves,
whatever its attachments weigh; every other document costs nothing more. A document with large attachments
(INLINE_BYTES) is read with stubs in a second `_bulk_get`, and each attachment then as bytes.

`latest` makes a document changed since the page was read come back as its newest leaf of that branch (a
tombstone if it was deleted), not as an error for a revision compaction removed.
"""

from __future__ import annotations

import base64
import uuid
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any

from backup.attachments import attachments_of, stub_bytes, to_backup
from backup.errors import CloudantError
from backup.format import ascii_json, doc_json, encode_value, loads

# Reads these revisions ([{"id", "rev"}], with their attachments' data or as stubs) -> every answer (a document, or
# its JSON when too deep to decode), in the order asked.
Fetch = Callable[[list[dict[str, str]], bool], Iterator[dict[str, Any] | bytes]]
# Reads one attachment's bytes: (doc id, rev, name) -> bytes.
FetchAttachment = Callable[[str, str, str], bytes]

# Cheap tests on a document's JSON: only a document that holds one of these is decoded to look closer.
_MARKS = (b'"_attachments"', b'"_conflicts"')
# A document whose attachments weigh this much or more has them read one by one as bytes (GET /db/doc/att) and
# base64-encoded here: a server's base64 in JSON is far slower (pouchdb-server: 1.1 s for 20 MB, 0.04 s as bytes),
# and the JSON of a large document is never decoded and encoded again. Smaller ones come inline in the `_bulk_get`
# answer: one request for many documents, not one per attachment.
INLINE_BYTES = 1024 * 1024


@dataclass(frozen=True)
class Needs:
    """What a document of a page lacks: the revisions to read again (winner first), and whether its attachments
    are read as bytes, one by one (`large`)."""

    revs: list[str]
    large: bool = False


class Refetch:
    """Completes the pages of a full backup, reading again what `_all_docs` left out (`fetch`); attachments'
    data only with `attachments` (large ones with `fetch_attachment`)."""

    def __init__(self, fetch: Fetch, attachments: bool, fetch_attachment: FetchAttachment | None = None,
                 inline_bytes: int = INLINE_BYTES) -> None:
        self.fetch = fetch
        self.attachments = attachments
        self.fetch_attachment = fetch_attachment
        self.inline_bytes = inline_bytes

    def look(self, raw: bytes) -> tuple[Needs | None, bool]:
        """What the document (its JSON from `_all_docs`) lacks, or None; and whether it has attachments left out
        (stubs, without `attachments`)."""
        if not any(mark in raw for mark in _MARKS):
            return None, False
        doc = loads(raw)
        if not isinstance(doc, dict) or not isinstance(doc.get("_rev"), str):
            return None, False
        conflicts = [rev for rev in doc.get("_conflicts") or [] if isinstance(rev, str)]
        stubs = stub_bytes(doc)
        wanted = stubs is not None and self.attachments
        if not conflicts and not wanted:
            return None, stubs is not None
        # A design document's attachments always come inline: the SDK refuses a `_design/` id in `GET /db/doc/att`.
        large = (wanted and self.fetch_attachment is not None and (stubs or 0) >= self.inline_bytes
                 and not doc["_id"].startswith("_design/"))
        return Needs([doc["_rev"], *conflicts], large), stubs is not None and not self.attachments

    def page(self, docs: Iterable[tuple[str, bytes]]) -> Iterator[tuple[str, list[bytes], bool]]:
        """The page's documents in order, as (id, entries, attachments left out); those that lack something
        read again (at most two requests for the page, streamed: attachments inline, and as stubs)."""
        docs = list(docs)
        looks = [self.look(raw) for _, raw in docs]

        def answers(large: bool) -> _Answers:
            items = [{"id": doc_id, "rev": rev} for (doc_id, _), (needs, _) in zip(docs, looks, strict=True)
                     if needs is not None and needs.large == large for rev in needs.revs]
            return _Answers(self.fetch(items, self.attachments and not large) if items else iter(()))

        inline, stubbed = answers(False), answers(True)
        for (doc_id, raw), (needs, skipped) in zip(docs, looks, strict=True):
            if needs is None:
                yield doc_id, [raw], skipped
            elif needs.large:
                yield doc_id, [self._with_data(doc) for doc in stubbed.of(doc_id)], skipped
            else:
                yield doc_id, [entry(doc) for doc in inline.of(doc_id)], skipped
        inline.finish()
        stubbed.finish()

    def _with_data(self, doc: dict[str, Any]) -> bytes:
        """A revision read with stubs, in the backup format with each attachment's bytes read and base64-encoded:
        spliced into its JSON, never decoded or encoded as a JSON string."""
        assert self.fetch_attachment is not None
        attachments = attachments_of(doc)
        if attachments is None:
            return entry(doc)
        datas: list[bytes] = []
        place = f"\x00cloudant-cos-backup-attachment-{uuid.uuid4().hex}\x00"  # in no document
        for name, attachment in attachments.items():
            if not isinstance(attachment, dict) or not attachment.get("stub"):
                continue
            data = self.fetch_attachment(doc["_id"], doc["_rev"], name)
            if isinstance(attachment.get("length"), int) and len(data) != attachment["length"]:
                raise CloudantError(f"reading attachment {name!r} of document {doc['_id']!r}: {len(data)} bytes "
                                    f"arrived, its stub says {attachment['length']}; retry the backup")
            attachment.pop("stub")
            attachment["data"] = place  # stands for the data in the JSON until its base64 is spliced in
            datas.append(base64.b64encode(data))
            del data
        # The encoder writes the placeholder's NULs as \u0000; base64 needs no escape inside a JSON string.
        pieces = entry(doc).split(encode_value(place))
        if len(pieces) != len(datas) + 1:
            raise CloudantError(f"document {doc['_id']!r}: its attachments could not be placed in its JSON")
        out = [pieces[0]]
        for data, piece in zip(datas, pieces[1:], strict=True):
            out += [b'"', data, b'"', piece]
        return b"".join(out)


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

    def of(self, doc_id: str) -> list[dict[str, Any]]:
        """Every answer for `doc_id` (next in the stream), each revision once."""
        entries: dict[Any, dict[str, Any]] = {}
        while (answer := self._peek()) is not None and answer.get("_id") == doc_id:
            self._next = None
            entries.setdefault(answer.get("_rev"), answer)
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
