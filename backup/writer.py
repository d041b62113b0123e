"""Restore's write side, without I/O of its own (the requests are passed in): documents -> `_bulk_docs` batches
with several in flight, the stale-leaf checks of an incremental (backup.leaves), and the design documents held
back until every other document is written.
"""

from __future__ import annotations

import json
from collections import deque
from collections.abc import Callable, Iterable
from concurrent.futures import Executor, Future
from dataclasses import dataclass, field
from typing import Any

from backup.format import doc_json, loads
from backup.leaves import LeafSets
from backup.log import Log, percent
from backup.manifest import Manifest

DESIGN_PREFIX = "_design/"

# One `_bulk_docs` request: (docs, batch number, (first line, last line)) -> documents written.
WriteBatch = Callable[[list[dict[str, Any]], int, tuple[int, int]], int]
# The leaf sets of some docs, by id (all written) -> how many stale target leaves were closed.
CloseStale = Callable[[dict[str, frozenset[str]]], int]


def is_design(doc: dict[str, Any]) -> bool:
    return str(doc.get("_id", "")).startswith(DESIGN_PREFIX)


def chain_total(manifests: Iterable[Manifest | None]) -> int | None:
    """The documents a restore of these objects writes: the sum of their manifests' `docs` (None when one has
    no manifest: unknown)."""
    total = 0
    for manifest in manifests:
        if manifest is None:
            return None
        total += manifest.docs
    return total


@dataclass
class Target:
    """Where and how a restore writes, and its running totals (docs, batches, stale_leaves_closed...).

    With a `log` and `progress_every`, a progress line is logged every `progress_every` documents written (and
    once when `total`, the documents of the chain, is reached): `{"event": "progress", "operation": "restore",
    "docs": ..., "total": ..., "percent": ...}` (total and percent null when unknown)."""

    pool: Executor
    write: WriteBatch
    close_stale: CloseStale
    batch_size: int
    batch_bytes: int
    parallelism: int
    totals: dict[str, Any]
    log: Log | None = None
    progress_every: int = 0
    total: int | None = None
    database: str | None = None
    _next_progress: int = field(default=0, init=False, repr=False)
    _logged: int = field(default=0, init=False, repr=False)

    def written(self, docs: int) -> None:
        """`docs` more documents are in the target (a batch's answer came back): counted, and progress logged."""
        self.totals["docs"] += docs
        if self.log is None or self.progress_every <= 0:
            return
        done = self.totals["docs"]
        if self._next_progress <= 0:
            self._next_progress = self.progress_every
        at_total = self.total is not None and done >= self.total > self._logged
        if done >= self._next_progress or at_total:
            fields: dict[str, Any] = {"database": self.database} if self.database is not None else {}
            self.log.info("progress", operation="restore", **fields, docs=done, total=self.total,
                          percent=percent(done, self.total))
            self._logged = done
            while self._next_progress <= done:
                self._next_progress += self.progress_every


class BatchWriter:
    """The documents of one object, in order, as batches of at most `batch_size` docs or about `batch_bytes`,
    `parallelism` of them in flight.

    For an incremental (`check_every` > 0), the docs whose history is stemmed are gathered with their leaf sets;
    every `check_every` such docs, and at `finish`, all batches sent are waited for, then their stale target
    leaves are closed. That bounds the leaf sets held; a doc without a stemmed history costs nothing more.
    """

    def __init__(self, target: Target, check_every: int = 0, run: dict[str, Any] | None = None) -> None:
        self.target = target
        self.leaf_sets = LeafSets() if check_every > 0 else None
        if self.leaf_sets is not None:
            self.leaf_sets.resume_run(run)  # a restore continued from a checkpoint taken inside a run
        self.check_every = check_every
        self.in_flight: deque[tuple[Future[int], int]] = deque()  # (batch, its bytes)
        self.in_flight_bytes = 0
        self.batch: list[dict[str, Any]] = []
        self.batch_bytes = 0
        self.lines = (0, 0)

    def add(self, doc: dict[str, Any], size: int, line: int) -> None:
        """One more document (`size`: its share of the bytes of its line, or its attachments' when more, `line`: the
        line's number). One of `batch_bytes` or more (attachments) goes in a request of its own: with others it
        would pass the server's request size limit (Cloudant: ~11 MB)."""
        if size >= self.target.batch_bytes and self.batch:
            self._submit()
        self.lines = (self.lines[0] if self.batch else line, line)
        self.batch.append(doc)
        self.batch_bytes += size
        if len(self.batch) >= self.target.batch_size or self.batch_bytes >= self.target.batch_bytes:
            self._submit()
        if self.leaf_sets is not None:
            self.leaf_sets.add(doc)
            if len(self.leaf_sets) >= self.check_every:
                self._check()

    def flush(self) -> None:
        """Send the last, partial batch and wait for every batch sent."""
        if self.batch:
            self._submit()
        self._drain(0)

    def finish(self) -> None:
        """The object ended: everything written, the stale leaves of its docs closed."""
        if self.leaf_sets is not None:
            self.leaf_sets.finish()
        self._check()

    def pause(self) -> dict[str, Any] | None:
        """Stopped by the deadline: everything so far written, the complete runs checked; the run in progress
        (its leaves may go on after the stop), for the checkpoint."""
        self._check()
        return self.leaf_sets.run_state() if self.leaf_sets is not None else None

    def cancel(self) -> None:
        """Stopped by a failure: the batches not yet started are not sent."""
        for future, _ in self.in_flight:
            future.cancel()

    def _submit(self) -> None:
        totals = self.target.totals
        totals["batches"] += 1
        future = self.target.pool.submit(self.target.write, self.batch, totals["batches"], self.lines)
        self.in_flight.append((future, self.batch_bytes))
        self.in_flight_bytes += self.batch_bytes
        self.batch, self.batch_bytes = [], 0
        self._drain(self.target.parallelism)

    def _drain(self, limit: int) -> None:
        """Wait for the oldest batches until at most `limit` are in flight, and (documents with large attachments)
        no more than `parallelism` full batches' bytes but for the newest: memory holds what is in flight."""
        cap = self.target.parallelism * self.target.batch_bytes
        while len(self.in_flight) > limit or (len(self.in_flight) > 1 and self.in_flight_bytes > cap):
            future, size = self.in_flight.popleft()
            self.in_flight_bytes -= size
            self.target.written(future.result())

    def _check(self) -> None:
        self.flush()  # the leaves are read once every revision of these docs is in the target
        if self.leaf_sets is not None and len(self.leaf_sets):
            self.target.totals["stale_leaves_closed"] += self.target.close_stale(self.leaf_sets.take())


class HeldDesignDocs:
    """Design documents set aside while the others are written, in the order met, as JSON (a decoded document
    takes several times its JSON's size), up to `cap` bytes. Past the cap every one is dropped and `overflowed`
    is set: the caller reads them from the objects again instead, so memory stays bounded whatever they weigh.
    """

    def __init__(self, cap: int) -> None:
        self.cap = cap
        self.overflowed = False
        self.held: list[tuple[int, bool, int, bytes]] = []  # (chain member, incremental, line, JSON)
        self.bytes = 0

    def hold(self, member: int, incremental: bool, line: int, doc: dict[str, Any]) -> None:
        if self.overflowed:
            return
        raw = doc_json(doc)
        if self.bytes + len(raw) > self.cap:
            self.overflowed, self.held, self.bytes = True, [], 0
            return
        self.held.append((member, incremental, line, raw))
        self.bytes += len(raw)

    def dump(self) -> bytes:
        """The held documents, for a restore checkpoint's sidecar: one line each, `[member, incremental, line]`
        then the document's JSON (which holds no raw newline)."""
        return b"".join(json.dumps([m, i, n], separators=(",", ":")).encode() + b" " + raw + b"\n"
                        for m, i, n, raw in self.held)

    def load(self, data: bytes) -> None:
        for line in data.split(b"\n"):
            if not line:
                continue
            head, _, raw = line.partition(b" ")
            member, incremental, number = json.loads(head)
            self.held.append((member, incremental, number, raw))
            self.bytes += len(raw)

    def write(self, target: Target, check_every: int) -> int:
        """Write the held documents, one chain member after the other (each member's stale leaves checked after
        it, as for its other documents). Returns how many."""
        writer: BatchWriter | None = None
        current = -1
        try:
            for member, incremental, line, raw in self.held:
                if writer is None or member != current:
                    if writer is not None:
                        writer.finish()
                    writer, current = BatchWriter(target, check_every if incremental else 0), member
                writer.add(loads(raw), len(raw), line)
            if writer is not None:
                writer.finish()
        finally:
            if writer is not None:
                writer.cancel()
        return len(self.held)
