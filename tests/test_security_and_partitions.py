"""A backup keeps what the database is, not only what it holds (issue 15, points 3 and 4), against real servers.

* Permissions: a backup stores the database's `_security` object in its manifest; a restore gives it to a target
  the restore created (by default), or to any target with RESTORE_SECURITY=true, never with RESTORE_SECURITY=false.
  Credentials that may not read `_security` still make a complete backup, which says the permissions are missing.
* Partitioned databases: pouchdb-server ignores `?partitioned=true` (checked below), so the partitioned case runs
  through tests/fakes/partitioned_couch.py, a proxy that remembers which databases were created partitioned and
  reports it in their `GET /{db}` answer, as CouchDB 3 and Cloudant do.

pouchdb-server crashes on anonymous requests to a database whose `_security` has members: every request here
carries the admin credentials of the `couch` fixture.
"""

from __future__ import annotations

import json
import random
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
import requests

from devstack import Fault, FaultProxy
from tests.fakes.partitioned_couch import PartitionedCouch
from tests.helpers import cos_params, couch_params, live_docs, load_docs, run_main

pytestmark = pytest.mark.integration
SECURITY = {"admins": {"names": ["alice"], "roles": []}, "members": {"names": [], "roles": ["readers"]}}


@dataclass(frozen=True)
class Backup:
    db: str
    key: str
    result: dict[str, Any]
    manifest: dict[str, Any]


def _auth(couch: Any) -> Any:
    return tuple(couch.admin)


def _new_name() -> str:
    return f"t-{uuid.uuid4().hex[:16]}"


def _docs(n: int = 30, prefix: str = "doc") -> list[dict[str, Any]]:
    return [{"_id": f"{prefix}-{i:03d}", "n": i} for i in range(n)] + [
        {"_id": "_design/v", "views": {"n": {"map": "function (doc) { emit(doc.n); }"}}}]


def _security(couch: Any, db: str) -> dict[str, Any]:
    r = requests.get(f"{couch.url}/{db}/_security", auth=_auth(couch), timeout=30)
    r.raise_for_status()
    return r.json()


def _put_security(couch: Any, db: str, value: dict[str, Any]) -> None:
    r = requests.put(f"{couch.url}/{db}/_security", json=value, auth=_auth(couch), timeout=30)
    assert r.status_code in (200, 201), r.text
    assert _security(couch, db) == value


def _info(url: str, couch: Any, db: str) -> dict[str, Any]:
    r = requests.get(f"{url}/{db}", auth=_auth(couch), timeout=30)
    r.raise_for_status()
    return r.json()


def _create(url: str, couch: Any, db: str, query: str = "") -> None:
    r = requests.put(f"{url}/{db}{query}", auth=_auth(couch), timeout=30)
    assert r.status_code in (201, 202), r.text


def _manifest(s3: Any, bucket: str, key: str) -> dict[str, Any]:
    return json.loads(s3.get_object(Bucket=bucket, Key=f"{key}.manifest.json")["Body"].read())


def _backup(params: dict[str, Any], s3: Any, bucket: str) -> Backup:
    result, _ = run_main(params)
    assert result.get("ok") and result["complete"], result
    return Backup(params["CLOUDANT_DB"], result["key"], result, _manifest(s3, bucket, result["key"]))


def _restore(params: dict[str, Any], key: str, target: str, **extra: Any) -> dict[str, Any]:
    result, _ = run_main({**params, "OPERATION": "restore", "COS_KEY": key, "CLOUDANT_DB": target, **extra})
    return result


@pytest.fixture(scope="module")
def store(seaweed: Any) -> Iterator[tuple[Any, str]]:
    """One bucket for the module's backups (several tests restore one backup)."""
    s3 = seaweed.client()
    name = _new_name()
    s3.create_bucket(Bucket=name)
    yield s3, name
    try:
        s3.delete_bucket(Bucket=name)
    except Exception:  # noqa: BLE001 - clean-up only: SeaweedFS deletes non-empty buckets, a failure leaves a tmp dir
        pass


@pytest.fixture(scope="module")
def secured(couch: Any, seaweed: Any, store: tuple[Any, str]) -> Backup:
    """A database with admins and members, backed up once."""
    s3, bucket = store
    db = _new_name()
    load_docs(couch, db, _docs())
    _put_security(couch, db, SECURITY)
    return _backup({**couch_params(couch, db), **cos_params(seaweed, bucket)}, s3, bucket)


@pytest.fixture
def restore_params(couch: Any, seaweed: Any, store: tuple[Any, str]) -> dict[str, Any]:
    return {**couch_params(couch, "unset"), **cos_params(seaweed, store[1])}


@pytest.fixture(scope="module")
def fresh_security(couch: Any) -> dict[str, Any]:
    """What `_security` a database the server just created has (pouchdb-server: `{}`; CouchDB 3: `_admin` only)."""
    db = _new_name()
    _create(couch.url, couch, db)
    return _security(couch, db)


# -- permissions


def test_a_backup_saves_the_databases_security_in_its_manifest(secured):
    assert secured.result["security_saved"] is True, secured.result
    assert "security_error" not in secured.result, secured.result
    assert secured.manifest["security"] == SECURITY


def test_a_restore_into_a_database_it_creates_gives_it_the_sources_security(couch, secured, restore_params):
    target = _new_name()
    result = _restore(restore_params, secured.key, target, CREATE_TARGET=True)
    assert result.get("ok") and result["docs"] == 31, result
    assert result.get("security_restored") is True, result
    assert _security(couch, target) == SECURITY
    assert live_docs(couch, target) == live_docs(couch, secured.db)


def test_restore_security_false_leaves_a_created_target_with_the_servers_default(couch, secured, restore_params,
                                                                                 fresh_security):
    assert fresh_security != SECURITY  # the premise: the check below can tell them apart
    target = _new_name()
    result = _restore(restore_params, secured.key, target, CREATE_TARGET=True, RESTORE_SECURITY=False)
    assert result.get("ok") and result["docs"] == 31, result
    assert not result.get("security_restored"), result
    assert _security(couch, target) == fresh_security


def test_a_restore_into_an_existing_target_leaves_its_security_by_default(couch, secured, restore_params,
                                                                          fresh_security):
    target = _new_name()
    _create(couch.url, couch, target)
    result = _restore(restore_params, secured.key, target)
    assert result.get("ok") and result["docs"] == 31, result
    assert not result.get("security_restored"), result
    assert _security(couch, target) == fresh_security


def test_restore_security_true_gives_an_existing_target_the_sources_security(couch, secured, restore_params):
    target = _new_name()
    _create(couch.url, couch, target)
    result = _restore(restore_params, secured.key, target, RESTORE_SECURITY=True)
    assert result.get("ok") and result["docs"] == 31, result
    assert result.get("security_restored") is True, result
    assert _security(couch, target) == SECURITY
    assert live_docs(couch, target) == live_docs(couch, secured.db)


def test_a_backup_whose_credentials_may_not_read_security_is_complete_without_it(couch, seaweed, store,
                                                                                  restore_params, fresh_security):
    """CouchDB answers 403 to `GET /db/_security` for a reader's credentials: the backup is whole, says why the
    permissions are missing, and its restore gives the target none."""
    s3, bucket = store
    db = _new_name()
    load_docs(couch, db, _docs(10))
    _put_security(couch, db, SECURITY)
    forbidden = json.dumps({"error": "forbidden", "reason": "You are not allowed to access this db."}).encode()
    with FaultProxy(couch.url, upstream_timeout=60) as proxy:
        rule = proxy.add_rule(lambda method, path: method == "GET" and "/_security" in path.split("?")[0],
                              Fault.status(403, times=None, body=forbidden))
        backup = _backup({**couch_params(couch, db), **cos_params(seaweed, bucket), "CLOUDANT_URL": proxy.url},
                         s3, bucket)
    assert rule.hits >= 1  # the backup did ask, and was refused
    assert backup.result["docs"] == 11, backup.result
    assert backup.result["security_saved"] is False, backup.result
    error = backup.result.get("security_error")
    assert isinstance(error, str) and ("403" in error or "permission" in error.lower()), backup.result
    assert "security" in backup.manifest and backup.manifest["security"] is None, backup.manifest

    target = _new_name()
    result = _restore(restore_params, backup.key, target, CREATE_TARGET=True)
    assert result.get("ok") and result["docs"] == 11, result
    assert not result.get("security_restored"), result
    assert _security(couch, target) == fresh_security
    assert live_docs(couch, target) == live_docs(couch, db)


# -- partitioned databases


@pytest.fixture(scope="module")
def partitions(couch: Any) -> Iterator[PartitionedCouch]:
    with PartitionedCouch(couch.url) as proxy:
        yield proxy


def _partitioned(info: dict[str, Any]) -> bool:
    return bool((info.get("props") or {}).get("partitioned"))


def _puts_of(proxy: PartitionedCouch, db: str) -> list[dict[str, list[str]]]:
    """The query of each `PUT /{db}` the proxy received."""
    return [parse_qs(urlsplit(target).query) for target in proxy.sent("PUT", f"/{db}")]


def test_the_partitioned_stand_in_reports_partitions_and_passes_everything_else_through(couch, partitions):
    """The stand-in itself (no backup involved): pouchdb-server ignores `?partitioned=true`, the proxy remembers
    it; attachments' bytes, credentials, statuses and chunked request bodies go through unchanged."""
    auth = _auth(couch)
    db = _new_name()
    _create(partitions.url, couch, db, "?partitioned=true")
    assert partitions.sent("PUT", f"/{db}") == [f"/{db}?partitioned=true"]
    assert not _partitioned(_info(couch.url, couch, db))  # pouchdb-server: no partitions of its own
    info = _info(partitions.url, couch, db)
    assert _partitioned(info) and info["db_name"] == db

    plain = _new_name()
    _create(partitions.url, couch, plain)
    assert not _partitioned(_info(partitions.url, couch, plain))

    data = random.Random(7).randbytes(300_000)
    r = requests.put(f"{partitions.url}/{db}/p1:doc", json={"v": 1}, auth=auth, timeout=30)
    assert r.status_code == 201, r.text
    r = requests.put(f"{partitions.url}/{db}/p1:doc/a.bin", params={"rev": r.json()["rev"]}, data=data,
                     headers={"Content-Type": "application/x-test"}, auth=auth, timeout=30)
    assert r.status_code == 201, r.text
    direct = requests.get(f"{couch.url}/{db}/p1:doc/a.bin", auth=auth, timeout=30)
    assert direct.content == data  # it reached the server whole
    through = requests.get(f"{partitions.url}/{db}/p1:doc/a.bin", auth=auth, timeout=30)
    assert through.status_code == 200 and through.content == data
    assert through.headers["Content-Type"] == direct.headers["Content-Type"] == "application/x-test"

    chunked = requests.post(f"{partitions.url}/{db}/_bulk_docs", data=iter([b'{"docs": [{"_id": "p2:a"}', b"]}"]),
                            headers={"Content-Type": "application/json"}, auth=auth, timeout=30)
    assert chunked.status_code == 201, chunked.text
    assert partitions.bodies[partitions.requests.index(("POST", f"/{db}/_bulk_docs"))] == b'{"docs": [{"_id": "p2:a"}]}'
    assert [d["_id"] for d in live_docs(couch, db)] == ["p1:doc", "p2:a"]

    assert requests.get(f"{partitions.url}/{db}/missing", auth=auth, timeout=30).status_code == 404
    assert requests.get(f"{partitions.url}/{db}", auth=("admin", "wrong"), timeout=30).status_code == 401

    r = requests.delete(f"{partitions.url}/{db}", auth=auth, timeout=30)
    assert r.status_code == 200, r.text
    assert db not in partitions.partitioned


@pytest.fixture(scope="module")
def partitioned_backup(couch: Any, seaweed: Any, store: tuple[Any, str], partitions: PartitionedCouch) -> Backup:
    """A database created partitioned (as the proxy reports it), backed up through the proxy."""
    s3, bucket = store
    db = _new_name()
    _create(partitions.url, couch, db, "?partitioned=true")
    load_docs(couch, db, _docs(20, "sensor-a:reading") + [{"_id": f"sensor-b:reading-{i}", "n": i} for i in range(5)])
    assert _partitioned(_info(partitions.url, couch, db))
    return _backup({**couch_params(couch, db), **cos_params(seaweed, bucket), "CLOUDANT_URL": partitions.url}, s3, bucket)


def test_a_backup_of_a_partitioned_database_records_it_in_its_manifest(partitioned_backup):
    assert partitioned_backup.result["docs"] == 26, partitioned_backup.result
    assert partitioned_backup.manifest["partitioned"] is True, partitioned_backup.manifest


def test_a_partitioned_backup_restores_into_a_new_partitioned_database(couch, partitioned_backup, partitions,
                                                                      restore_params):
    target = _new_name()
    result = _restore({**restore_params, "CLOUDANT_URL": partitions.url}, partitioned_backup.key, target,
                      CREATE_TARGET=True)
    assert result.get("ok") and result["docs"] == 26, result
    puts = _puts_of(partitions, target)
    assert puts and all(query.get("partitioned") == ["true"] for query in puts), partitions.sent("PUT", f"/{target}")
    assert _partitioned(_info(partitions.url, couch, target))
    assert live_docs(couch, target) == live_docs(couch, partitioned_backup.db)


def test_a_partitioned_backup_is_refused_by_an_existing_target_that_is_not_partitioned(couch, partitioned_backup,
                                                                                       partitions, restore_params):
    target = _new_name()
    _create(couch.url, couch, target)
    assert not _partitioned(_info(partitions.url, couch, target))
    result = _restore({**restore_params, "CLOUDANT_URL": partitions.url}, partitioned_backup.key, target)
    assert "error" in result and not result.get("ok"), result
    assert "partitioned" in result["error"], result
    assert _info(couch.url, couch, target)["doc_count"] == 0
    assert partitions.sent("POST", f"/{target}/_bulk_docs") == []  # nothing was even tried


def test_a_backup_of_a_database_that_is_not_partitioned_restores_into_one_that_is_not(couch, seaweed, store,
                                                                                      partitions, restore_params):
    s3, bucket = store
    db = _new_name()
    load_docs(couch, db, _docs(12))
    backup = _backup({**couch_params(couch, db), **cos_params(seaweed, bucket), "CLOUDANT_URL": partitions.url},
                     s3, bucket)
    assert backup.manifest["partitioned"] is False, backup.manifest

    target = _new_name()
    result = _restore({**restore_params, "CLOUDANT_URL": partitions.url}, backup.key, target, CREATE_TARGET=True)
    assert result.get("ok") and result["docs"] == 13, result
    puts = _puts_of(partitions, target)
    assert puts and all(query.get("partitioned") != ["true"] for query in puts), partitions.sent("PUT", f"/{target}")
    assert not _partitioned(_info(partitions.url, couch, target))
    assert live_docs(couch, target) == live_docs(couch, db)

    # Into an existing partitioned target: refused before anything is written (its ids need not be partition:id).
    partitioned_target = _new_name()
    _create(partitions.url, couch, partitioned_target, "?partitioned=true")
    assert _partitioned(_info(partitions.url, couch, partitioned_target))
    refused = _restore({**restore_params, "CLOUDANT_URL": partitions.url}, backup.key, partitioned_target)
    assert "error" in refused and "is partitioned and the backup is of a database that is not" in refused["error"]
    assert partitions.sent("POST", f"/{partitioned_target}/_bulk_docs") == []
