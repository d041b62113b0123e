"""Drill: the proof that a database's backup restores. Its newest complete backup (the whole chain) is restored into
a new scratch database by the restore itself, every document compared with the backup (backup.compare), a sample
compared with the live source too, and the scratch database deleted whatever happened.

    COS chain --run_restore--> scratch database
    COS chain (read again, newest member first) --compare--> `_all_docs` keys of the scratch (and of the source)

Nothing is written to the source: it is only read (the sample). A drill that fails (a damaged object, a restore that
fails, a difference) is a result with `ok: false` and an `error` (the CLI exits 1, an activation is an application
error): what to alert on. Only a problem found before anything was made (parameters, no backup, a server out of
reach, a scratch database that exists) is raised as an error.
"""

from __future__ import annotations

import dataclasses
import functools
import os
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

from backup import cloudant, cos, interrupt
from backup.catalog import chain_for, latest_key
from backup.clients import make_clients
from backup.compare import KEPT, Comparison, Tally, check_sample, runs
from backup.config import Config, check_db_name
from backup.deadline import Deadline
from backup.encryption import Identities
from backup.errors import BackupError, CloudantError, ConfigError, CosError, FormatError, Interrupted
from backup.format import LineDecoder
from backup.log import Log
from backup.manifest import Manifest
from backup.reading import object_lines
from backup.restore import _prepare_target, check_identities, run_restore
from backup.resume import Position, RestorePoints

KEYS = "checking AGE_IDENTITY"
DB_NAME_MAX = 238  # CouchDB's longest database name
OUT_OF_TIME = ("did not finish in this invocation's time: run the drill where it has more time, e.g. the CLI or a "
               "Code Engine job")


class _Failed(Exception):
    """The drill failed for a reason of its own (no typed error of a step)."""


def scratch_name(db: str, now: datetime) -> str:
    """The default scratch database: `<db>-drill-20261207t103000z` (a valid name: a system database's loses its
    leading '_', a long one is cut to leave room for the time)."""
    suffix = now.astimezone(UTC).strftime("-drill-%Y%m%dt%H%M%Sz")
    return (db.lstrip("_") or "db")[:DB_NAME_MAX - len(suffix)] + suffix


def run_drill(config: Config, log: Log, now: datetime | None = None) -> dict[str, Any]:
    """`now` names the default scratch database (a test passes its own)."""
    assert config.db is not None and config.cloudant is not None
    started = time.monotonic()
    deadline = Deadline.from_environment(os.environ, config.tune("TIME_BUDGET") or None,
                                         config.tune("SAFETY_MARGIN") or None)
    db, bucket = config.db, config.cos.bucket
    scratch = config.drill_db or scratch_name(db, now or datetime.now(UTC))
    if problem := check_db_name(scratch, "DRILL_DB", system=False):
        raise ConfigError(problem)
    client, s3 = make_clients(config, log)
    key = _resolve(config, s3)
    points = RestorePoints(s3, bucket, config.cos.prefix, scratch, config.cloudant.host, log)
    _refuse_taken(config, client, s3, scratch, points)
    result: dict[str, Any] = {"ok": False, "operation": "drill", "database": db, "drill_db": scratch, "key": key,
                              "equal": False, "docs": 0, "differences": [], "difference_count": 0}
    log.info("drill_started", database=db, drill_db=scratch, key=key)
    created = restoring = False
    step = "the restore failed"  # a chain that cannot be read: the restore would fail for it
    try:
        chain = _chain(s3, bucket, key)
        step = KEYS
        check_identities(bucket, chain, config.identities)  # a missing or wrong key: before anything is made
        if len(chain) > 1:
            result["chain"] = [k for k, _ in chain]
        step = "creating the scratch database"
        created = _create(client, scratch, chain[-1][1], log)
        step, restoring = "the restore failed", True
        restored = _restore(config, scratch, key, log)
        if not restored.get("complete"):
            raise _Failed(f"the restore {OUT_OF_TIME}")
        if restored.get("attachments_dropped"):
            result["attachments_dropped"] = restored["attachments_dropped"]  # the backup holds only their stubs
        step = "comparing"
        result.update(_compare(config, client, s3, chain, scratch, deadline))
    except Interrupted:
        raise
    except _Failed as exc:
        result["error"] = f"drill failed: {exc}"
    except BackupError as exc:
        if step == KEYS:
            raise  # a configuration error (exit code 2), like any other
        result.update(error=f"drill failed: {step}: {exc}", kind=exc.kind)
    finally:
        with interrupt.deferred():  # a signal waits: the scratch database must not outlive the drill
            if restoring:
                _drop_restore_checkpoint(points, log)
            if created:
                result["scratch_deleted"] = _delete_scratch(client, scratch, log)
    return _finished(result, started, log)


def _finished(result: dict[str, Any], started: float, log: Log) -> dict[str, Any]:
    doc_differences, source_differences = result.pop("doc_differences", 0), result.pop("source_differences", 0)
    if "error" not in result and (why := _why(result, doc_differences, source_differences)):
        result["error"] = f"drill failed: {why}"
    elif "error" in result and result.get("scratch_deleted") is False:
        result["error"] += f"; and the scratch database '{result['drill_db']}' could not be deleted: delete it by hand"
    result["ok"] = "error" not in result
    result["seconds"] = round(time.monotonic() - started, 3)
    log.info("drill_finished", **{k: v for k, v in result.items() if k != "differences"})
    return result


def _why(result: dict[str, Any], doc_differences: int, source_differences: int) -> str | None:
    """Why a drill that ran to its end failed (None: it did not)."""
    found = result["differences"]
    reasons = []
    if doc_differences:
        first = next((f" (first: {d['id']!r}: {d['differs']})" for d in found if "id" in d), "")
        reasons.append(f"{doc_differences} documents differ from the backup{first}")
    if count := next((d for d in found if d["differs"] == "count"), None):
        reasons.append(f"the restored database holds {count['restored']} documents, the backup {count['backup']}")
    if source_differences:
        first = next((f" (first: {d['id']!r})" for d in found if d["differs"] == "source"), "")
        reasons.append(f"{source_differences} sampled documents differ from the live source at the same revision"
                       f"{first}: the backup does not hold what the source wrote")
    if result.get("scratch_deleted") is False:
        reasons.append(f"the scratch database '{result['drill_db']}' could not be deleted: delete it by hand")
    return "; ".join(reasons) or None


def _resolve(config: Config, s3: Any) -> str:
    """The backup to drill: COS_KEY, or the newest complete backup of the database from this server."""
    assert config.db is not None
    bucket = config.cos.bucket
    if config.key in (None, "latest"):
        return latest_key(s3, bucket, config.cos.prefix, config.db, config.source_host)
    assert config.key is not None
    if not cos.exists(s3, bucket, config.key):
        raise CosError(f"drilling {cos.where(bucket, config.key)}: no such object; see `cloudant-cos-backup list`")
    return config.key


def _refuse_taken(config: Config, client: Any, s3: Any, scratch: str, points: RestorePoints) -> None:
    """Before anything is made: the drill deletes its scratch database afterwards, so it must be a new one, with no
    checkpointed restore into it (which the restore would continue)."""
    try:
        cloudant.database_info(client, scratch)
    except CloudantError as exc:
        if exc.status != 404:
            raise
    else:
        hint = ("set DRILL_DB to a database that does not exist, or leave it unset" if config.drill_db
                else "run the drill again (the name holds the time)")
        raise ConfigError(f"the scratch database '{scratch}' exists: a drill restores into a new database and deletes "
                          f"it afterwards, so it never takes one it did not create; {hint}")
    if cos.exists(s3, config.cos.bucket, points.key):
        raise ConfigError(f"a restore into the scratch database '{scratch}' is checkpointed in "
                          f"{cos.where(config.cos.bucket, points.key)}: delete that checkpoint, or set DRILL_DB to "
                          "another database")


def _chain(s3: Any, bucket: str, key: str) -> list[tuple[str, Manifest | None]]:
    try:
        return chain_for(s3, bucket, key)
    except FormatError as exc:
        raise FormatError(f"reading its chain: {exc}") from None


def _create(client: Any, scratch: str, manifest: Manifest | None, log: Log) -> bool:
    """Create the scratch database (partitioned like the backup's database). One that appears meanwhile is someone
    else's: refused, never deleted."""
    if not _prepare_target(client, scratch, True, False, None if manifest is None else manifest.partitioned, log):
        raise ConfigError(f"the scratch database '{scratch}' was created meanwhile by someone else: it is not the "
                          "drill's to delete; set DRILL_DB to another database")
    return True


def _restore(config: Config, scratch: str, key: str, log: Log) -> dict[str, Any]:
    """The restore itself, of this very backup into the scratch database: without its permissions (they could lock
    the drill's own credentials out of it) and without continuing itself in another activation."""
    target = dataclasses.replace(config, operation="restore", db=scratch, key=key, source_db=config.db,
                                 create_target=False, allow_non_empty=False, restore_security=False,
                                 continue_async=False)
    return run_restore(target, log)


def _entries(s3: Any, bucket: str, key: str, manifest: Manifest | None, deadline: Deadline,
             identities: Identities | None) -> Iterator[dict[str, Any]]:
    """The documents of one chain member, read again from COS as the restore read them (each part verified)."""
    decoder = LineDecoder()
    for raw, _ in object_lines(s3, bucket, key, manifest, Position(), identities):
        if deadline.reached():
            raise _Failed(f"the comparison {OUT_OF_TIME}")
        line = decoder.decode(raw)
        if line is not None:
            yield from line.docs


def _compare(config: Config, client: Any, s3: Any, chain: list[tuple[str, Manifest | None]], scratch: str,
             deadline: Deadline) -> dict[str, Any]:
    """Every document of the chain's final state against the scratch database, its count, then the sample against
    the live source."""
    assert config.db is not None
    scratch_rows = functools.partial(cloudant.rows_of, client, scratch, what=f"comparing '{scratch}' with the backup")
    comparison = Comparison(scratch_rows, config.tune("DRILL_SAMPLE"))
    for index in range(len(chain) - 1, -1, -1):  # newest first: its entry of a document is the final one
        key, manifest = chain[index]
        comparison.member(index)
        for run in runs(_entries(s3, config.cos.bucket, key, manifest, deadline, config.identities)):
            comparison.add(run)
    comparison.finish()
    restored = cloudant.database_info(client, scratch).get("doc_count")
    counted = comparison.count(restored)
    source_rows = functools.partial(cloudant.rows_of, client, config.db,
                                    what=f"reading a sample of '{config.db}' (read only)")
    source = Tally()
    sample = check_sample(comparison.reservoir.items, source_rows, source)
    found = comparison.tally
    return {"equal": found.count == 0, "docs": comparison.docs, "live_docs": comparison.live,
            "restored_docs": restored, "differences": (([counted] if counted else []) + found.first + source.first)[:KEPT],
            "difference_count": found.count + source.count, "doc_differences": found.count - bool(counted),
            "source_differences": source.count, "sample": sample.to_json()}


def _drop_restore_checkpoint(points: RestorePoints, log: Log) -> None:
    """The checkpoint a restore stopped at its deadline left (the drill never continues one)."""
    try:
        point = points.load()
        if point is not None:
            points.delete(point)
    except BackupError as exc:
        log.warning("drill_checkpoint_not_deleted", key=points.key, error=str(exc))


def _delete_scratch(client: Any, scratch: str, log: Log) -> bool:
    try:
        cloudant.delete_database(client, scratch)
    except CloudantError as exc:
        if exc.status != 404:  # 404: gone already (a retried delete whose first answer was lost)
            log.warning("drill_scratch_not_deleted", database=scratch, error=str(exc))
            return False
    log.info("drill_scratch_deleted", database=scratch)
    return True
