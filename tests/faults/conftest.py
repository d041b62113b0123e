"""Fixtures of the fault-injection suite: fault proxies (devstack.FaultProxy) in front of the session's
pouchdb-server and SeaweedFS, per test and cheap, and source databases loaded once per module (the
scenarios only read them). The outcome checks live in tests/faults/outcomes.py.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from devstack import FaultProxy
from tests.faults.outcomes import backup_of, unique
from tests.helpers import incompressible_docs, load_docs, sample_docs


@pytest.fixture
def couch_proxy(couch: Any) -> Iterator[FaultProxy]:
    """A fault proxy in front of the session's pouchdb-server."""
    with FaultProxy(couch.url, upstream_timeout=60) as proxy:
        yield proxy


@pytest.fixture
def s3_proxy(seaweed: Any) -> Iterator[FaultProxy]:
    """A fault proxy (S3 XML errors) in front of the session's SeaweedFS."""
    with FaultProxy(seaweed.endpoint, flavor="s3", upstream_timeout=60) as proxy:
        yield proxy


@pytest.fixture(scope="module")
def small_db(couch: Any) -> str:
    """~700 KB, 305 docs incl. a 500 KB one: several `_all_docs` pages with PAGE_SIZE=50, one part."""
    name = unique("small")
    load_docs(couch, name, sample_docs(filler=300, filler_bytes=300))
    return name


@pytest.fixture(scope="module")
def big_db(couch: Any) -> str:
    """~7 MB, 3005 docs: two multipart parts of 5 MiB uncompressed (one with gzip: see bulky_db)."""
    name = unique("big")
    load_docs(couch, name, sample_docs(filler=3000, filler_bytes=2000))
    return name


@pytest.fixture(scope="module")
def bulky_db(couch: Any) -> str:
    """~9 MB, 4005 docs whose pads hardly compress: two multipart parts of 5 MiB with the default codec (gzip)."""
    name = unique("bulky")
    load_docs(couch, name, incompressible_docs(filler=4000, filler_bytes=2000))
    return name


@pytest.fixture(scope="module")
def module_bucket(seaweed: Any) -> Iterator[str]:
    """A bucket shared by one module's tests that only read from it (the source of restores)."""
    s3 = seaweed.client()
    name = unique("mb")
    s3.create_bucket(Bucket=name)
    yield name
    try:
        s3.delete_bucket(Bucket=name)
    except Exception:  # noqa: BLE001 - best-effort cleanup; SeaweedFS drops non-empty buckets too
        pass


@pytest.fixture(scope="module")
def small_backup(couch: Any, seaweed: Any, small_db: str, module_bucket: str) -> dict[str, Any]:
    """A good backup of small_db (DOCS_PER_LINE=40: 9 lines) in module_bucket, to restore and verify."""
    return backup_of(couch, small_db, seaweed, module_bucket, DOCS_PER_LINE=40)
