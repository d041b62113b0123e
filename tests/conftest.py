"""Shared fixtures: real local servers from devstack, each started lazily (only when a test asks for it),
once per session, on free 127.0.0.1 ports, with work dirs and logs under the session's tmp dir."""

from __future__ import annotations

import contextlib
import json
import secrets
import shutil
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from devstack import CouchCompatProxy, IamTokenServer, MotoS3, PouchServer, SeaweedS3
from tests.helpers import API_KEY, OUTPUTS, SECRET_SOURCES, FakeOpenWhisk

IAM_API_KEYS = ("cloudant-iam-key-for-tests", "cos-iam-key-for-tests")


@pytest.fixture(scope="session")
def devstack_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Parent of every session server's work dir (data, configs, logs)."""
    return tmp_path_factory.mktemp("devstack")


@pytest.fixture(scope="session")
def couch(devstack_dir: Path) -> Iterator[PouchServer]:
    """pouchdb-server on disk with an admin (``couch.admin`` = ("admin", random password))."""
    with PouchServer(devstack_dir / "couch", admin=("admin", secrets.token_hex(12))) as server:
        SECRET_SOURCES.append(lambda: [server.admin[1]])
        yield server


@pytest.fixture(scope="session")
def couch_open(devstack_dir: Path) -> Iterator[PouchServer]:
    """pouchdb-server on disk without any admin: everything is allowed anonymously."""
    with PouchServer(devstack_dir / "couch-open") as server:
        yield server


@pytest.fixture(scope="session")
def seaweed(devstack_dir: Path) -> Iterator[SeaweedS3]:
    """SeaweedFS with an S3 gateway: a real S3 server with HMAC credentials (``access_key``/``secret_key``)."""
    with SeaweedS3(devstack_dir / "seaweed") as server:
        SECRET_SOURCES.append(lambda: [server.secret_key])
        yield server


@pytest.fixture(scope="session")
def moto(devstack_dir: Path) -> Iterator[MotoS3]:
    """moto_server: an S3 emulator accepting any credentials, including IAM/OAuth bearer tokens."""
    with MotoS3(devstack_dir / "moto") as server:
        yield server


@pytest.fixture(scope="session")
def iam() -> Iterator[IamTokenServer]:
    """Local IBM IAM token endpoint (``iam.url``) knowing the two test API keys."""
    with IamTokenServer(set(IAM_API_KEYS)) as server:
        SECRET_SOURCES.append(lambda: [*IAM_API_KEYS, *server.issued_tokens])
        yield server


@pytest.fixture(scope="session")
def compat_proxy(couch: PouchServer) -> Iterator[CouchCompatProxy]:
    """CouchDB 3 compatibility proxy in front of ``couch`` (for couchbackup/couchrestore)."""
    with CouchCompatProxy(couch) as proxy:
        yield proxy


@pytest.fixture
def db_name() -> str:
    """A fresh, valid CouchDB database name (not created)."""
    return f"t-{uuid.uuid4().hex[:16]}"


@pytest.fixture
def s3_client(seaweed: SeaweedS3) -> Any:
    """ibm_boto3 S3 client for ``seaweed`` with its HMAC credentials, region us-east-1."""
    return seaweed.client()


@pytest.fixture
def bucket(s3_client: Any) -> Iterator[str]:
    """A fresh, empty bucket on ``seaweed``; deleted (with its content) afterwards."""
    name = f"t-{uuid.uuid4().hex[:16]}"
    s3_client.create_bucket(Bucket=name)  # us-east-1: no LocationConstraint
    yield name
    # SeaweedFS deletes non-empty buckets (and frees their volumes); pending uploads go with them.
    with contextlib.suppress(Exception):
        s3_client.delete_bucket(Bucket=name)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """The session-wide secret scan must see every other test's output: run it last."""
    last = [item for item in items if item.name == "test_no_secret_in_any_output_of_the_session"]
    items[:] = [item for item in items if item not in last] + last


@pytest.fixture
def openwhisk(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeOpenWhisk]:
    """A fake OpenWhisk API on 127.0.0.1, with the activation environment pointing at it."""
    fake = FakeOpenWhisk()
    monkeypatch.setenv("__OW_API_HOST", fake.url)
    monkeypatch.setenv("__OW_API_KEY", API_KEY)
    monkeypatch.setenv("__OW_ACTION_NAME", "/NS/PKG/ACTION")
    monkeypatch.setenv("__OW_NAMESPACE", "NS")
    monkeypatch.delenv("__OW_DEADLINE", raising=False)
    yield fake
    fake.close()


# The session's secret scan (tests/test_secrets.py) must see every test's output. Under pytest-xdist each worker
# holds only its own: at its end each writes them (and the secrets in play) to a file, and the controller, once
# every worker is done, scans them all; a leak fails the session.
SCAN_DIR = "secret_scan_dir"


def pytest_configure(config: pytest.Config) -> None:
    if not hasattr(config, "workerinput"):
        config.stash[_SCAN_KEY] = tempfile.mkdtemp(prefix="secret-scan-")


@pytest.hookimpl(optionalhook=True)
def pytest_configure_node(node: Any) -> None:  # xdist: what a worker is told when it starts
    node.workerinput[SCAN_DIR] = node.config.stash[_SCAN_KEY]


def pytest_sessionfinish(session: pytest.Session) -> None:
    from tests import test_secrets

    workerinput = getattr(session.config, "workerinput", None)
    if workerinput is not None:
        record = {"outputs": OUTPUTS, "secrets": sorted(test_secrets.secrets_in_play())}
        Path(workerinput[SCAN_DIR], f"{workerinput['workerid']}.json").write_text(json.dumps(record))
        return
    folder = Path(session.config.stash[_SCAN_KEY])
    records = [json.loads(path.read_text()) for path in sorted(folder.glob("*.json"))]
    shutil.rmtree(folder, ignore_errors=True)
    if not records:
        return  # not under xdist: test_no_secret_in_any_output_of_the_session scanned in-process
    outputs = [text for record in records for text in record["outputs"]]
    try:
        test_secrets.assert_clean(*outputs, secrets={s for record in records for s in record["secrets"]})
    except AssertionError as exc:
        session.config.get_terminal_writer().line(f"\nSECRET SCAN FAILED over every worker's outputs: {exc}", red=True)
        session.exitstatus = pytest.ExitCode.TESTS_FAILED
    else:
        session.config.get_terminal_writer().line(f"\nsecret scan: {len(outputs)} outputs of {len(records)} workers, clean")


_SCAN_KEY = pytest.StashKey[str]()
