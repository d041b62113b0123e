"""The benchmark's local stack and network paths.

    pouchdb-server (in memory or on disk, no admin)      <- every client reads/writes here
      ^ CouchCompatProxy (devstack, in this process)     <- couchbackup full mode and both restores need it
    SeaweedFS S3 (devstack), bucket "bench"              <- our backup's target, our restore's source
    bench.netproxy (one child process per upstream)      <- the emulated network conditions

A condition maps each upstream ("couch" = pouchdb-server, "compat" = the compat proxy) to the URL that
clients use: the upstream itself (plain), or a netproxy in front of it (latency, ratelimit).
"""

from __future__ import annotations

import compileall
import contextlib
import hashlib
import itertools
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import requests

from bench.data import attachment_batches, doc_batches
from devstack import REPO_ROOT, CouchCompatProxy, PouchServer, SeaweedS3, free_port

BUCKET = "bench"


@dataclass(frozen=True)
class Condition:
    name: str
    description: str
    latency_ms: float = 0.0
    all_docs_rate: float = 0.0
    reads_rate: float = 0.0

    @property
    def proxied(self) -> bool:
        return bool(self.latency_ms or self.all_docs_rate or self.reads_rate)


CONDITIONS = {
    "plain": Condition("plain", "loopback, no proxy (restores and couchbackup full via the compat proxy)"),
    "latency": Condition("latency", "+20 ms per request (netproxy)", latency_ms=20),
    "ratelimit": Condition(
        "ratelimit", "Cloudant-like: 5 _all_docs/s, 100 doc reads/s (_bulk_get docs, GET doc); 429 + Retry-After above",
        all_docs_rate=5, reads_rate=100,
    ),
}


def http_session() -> requests.Session:
    session = requests.Session()
    session.trust_env = False  # never route 127.0.0.1 through an HTTP(S)_PROXY
    return session


class NetProxyProcess:
    """``python -m bench.netproxy`` as a child process in its own session (so it has its own GIL)."""

    def __init__(self, upstream: str, condition: Condition, logdir: Path) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = logdir / f"netproxy-{condition.name}-{self.port}.log"
        self.cmd = [
            sys.executable, "-m", "bench.netproxy", "--upstream", upstream, "--port", str(self.port),
            "--latency-ms", str(condition.latency_ms), "--all-docs-rate", str(condition.all_docs_rate),
            "--reads-rate", str(condition.reads_rate),
        ]  # fmt: skip
        self.proc: subprocess.Popen | None = None
        self.http = http_session()

    def start(self) -> NetProxyProcess:
        prefix = []
        setpriv = shutil.which("setpriv")
        if setpriv and threading.current_thread() is threading.main_thread():
            prefix = [setpriv, "--pdeathsig", "KILL", "--"]  # dies with us even on SIGKILL
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(prefix + self.cmd, cwd=REPO_ROOT, stdin=subprocess.DEVNULL, stdout=log,
                                         stderr=subprocess.STDOUT, start_new_session=True, env=python_env())
        deadline = time.monotonic() + 15
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(f"netproxy exited with {self.proc.returncode}: see {self.log_path}")
            with contextlib.suppress(requests.RequestException):
                if self.http.get(self.url + "/_netproxy/stats", timeout=1).status_code == 200:
                    return self
            if time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"netproxy did not start: see {self.log_path}")
            time.sleep(0.05)

    def reset(self) -> None:
        self.http.post(self.url + "/_netproxy/reset", timeout=10).raise_for_status()

    def stats(self) -> dict[str, Any]:
        resp = self.http.get(self.url + "/_netproxy/stats", timeout=10)
        resp.raise_for_status()
        return resp.json()

    def stop(self) -> None:
        if self.proc is None:
            return
        if self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGKILL)  # its own session: pgid == its pid
        self.proc.wait(timeout=10)
        self.proc = None


# Where `python -m backup` is imported from: a snapshot of backup/ taken when the benchmark starts (see
# snapshot_code), so that edits to the working tree during a long run do not mix two versions in one table.
_code_dir: Path | None = None


def snapshot_code(workdir: Path) -> dict[str, Any]:
    """Copy backup/ into workdir/code; our clients import it from there. Returns its digest and file count."""
    global _code_dir
    target = workdir / "code"
    shutil.rmtree(target, ignore_errors=True)
    shutil.copytree(REPO_ROOT / "backup", target / "backup", ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    digest = hashlib.sha256()
    files = sorted(p for p in (target / "backup").rglob("*.py"))
    for path in files:
        digest.update(path.relative_to(target).as_posix().encode() + b"\0" + path.read_bytes() + b"\0")
    # compiled now, as an installed copy would be: the clients (PYTHONDONTWRITEBYTECODE) must not pay for it
    compileall.compile_dir(target, quiet=1)
    _code_dir = target
    return {"backup_sha256": digest.hexdigest()[:16], "files": len(files)}


def code_dir() -> Path:
    """The working directory for `python -m backup` (with -m, the cwd comes first on sys.path)."""
    return _code_dir or REPO_ROOT


def python_env() -> dict[str, str]:
    """A clean environment for our Python children: no proxies, no inherited CLOUDANT_/COS_/tuning vars."""
    keep = ("PATH", "HOME", "LANG", "LC_ALL", "TMPDIR", "TZ")
    env = {k: v for k, v in os.environ.items() if k in keep}
    path = [str(_code_dir)] if _code_dir is not None else []
    env.update(PYTHONPATH=os.pathsep.join([*path, str(REPO_ROOT)]), NO_PROXY="127.0.0.1,localhost",
               PYTHONDONTWRITEBYTECODE="1")
    return env


@dataclass
class Routes:
    """The URLs clients use in one condition, and the netproxies behind them (none when plain)."""

    couch: str
    compat: str
    proxies: dict[str, NetProxyProcess] = field(default_factory=dict)

    def reset(self) -> None:
        for proxy in self.proxies.values():
            proxy.reset()

    def too_many_requests(self) -> int:
        return sum(proxy.stats()["too_many_requests"] for proxy in self.proxies.values())

    def stats(self) -> dict[str, Any]:
        return {name: proxy.stats() for name, proxy in self.proxies.items()}

    def stop(self) -> None:
        for proxy in self.proxies.values():
            proxy.stop()


class Stack:
    def __init__(self, workdir: Path, in_memory: bool) -> None:
        self.workdir = workdir
        self.in_memory = in_memory
        self.couch = PouchServer(workdir / "couch", in_memory=in_memory)
        self.s3 = SeaweedS3(workdir / "seaweed")
        self.compat = CouchCompatProxy(self.couch)
        self.http = http_session()
        self.bucket = BUCKET
        self._s3_client: Any = None

    def start(self) -> Stack:
        try:
            self.couch.start()
            self.s3.start()
            self.compat.start()
            self.s3_client.create_bucket(Bucket=self.bucket)
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        for service in (self.compat, self.s3, self.couch):
            with contextlib.suppress(Exception):  # best effort: stop the others too
                service.stop()

    @property
    def s3_client(self) -> Any:
        if self._s3_client is None:
            self._s3_client = self.s3.client()
        return self._s3_client

    def routes(self, condition: Condition) -> Routes:
        if not condition.proxied:
            return Routes(self.couch.url, self.compat.url)
        proxies: dict[str, NetProxyProcess] = {}
        try:
            for name, upstream in (("couch", self.couch.url), ("compat", self.compat.url)):
                proxies[name] = NetProxyProcess(upstream, condition, self.workdir).start()
        except BaseException:
            for proxy in proxies.values():
                proxy.stop()
            raise
        return Routes(proxies["couch"].url, proxies["compat"].url, proxies)

    # -- data
    def db_info(self, db: str) -> dict[str, Any] | None:
        resp = self.http.get(f"{self.couch.url}/{db}", timeout=60)
        return resp.json() if resp.status_code == 200 else None

    def create_db(self, db: str) -> None:
        self.couch.create_db(db)

    def delete_db(self, db: str) -> None:
        self.couch.delete_db(db, missing_ok=True)

    def load(self, db: str, count: int, mixed: bool, attachment_docs: int = 0, attachment_bytes: int = 0) -> dict[str, Any]:
        """Create ``db`` and fill it with ``count`` documents and ``attachment_docs`` documents with one attachment of
        ``attachment_bytes`` each (`_bulk_docs`, two requests in flight; attachments as base64, never gzip)."""
        started = time.monotonic()
        self.delete_db(db)
        self.create_db(db)
        local = threading.local()

        def post(body: bytes) -> int:
            if not hasattr(local, "http"):
                local.http = http_session()
            resp = local.http.post(f"{self.couch.url}/{db}/_bulk_docs", data=body, timeout=600,
                                   headers={"Content-Type": "application/json"})
            if resp.status_code not in (200, 201):
                raise RuntimeError(f"loading {db}: _bulk_docs -> {resp.status_code} {resp.text[:300]}")
            errors = [r for r in resp.json() if "error" in r]
            if errors:
                raise RuntimeError(f"loading {db}: {len(errors)} documents rejected, e.g. {errors[:2]}")
            return len(body)

        sent = 0
        bodies: Iterator[bytes] = doc_batches(count, mixed)
        if attachment_docs:
            bodies = itertools.chain(bodies, attachment_batches(attachment_docs, attachment_bytes))
        with ThreadPoolExecutor(max_workers=2) as pool:
            pending = []
            for body in bodies:
                pending.append(pool.submit(post, body))
                if len(pending) >= 4:
                    sent += pending.pop(0).result()
            for future in pending:
                sent += future.result()
        total = count + attachment_docs
        info = self.db_info(db) or {}
        if info.get("doc_count") != total:
            raise RuntimeError(f"loading {db}: doc_count is {info.get('doc_count')}, expected {total}")
        loaded: dict[str, Any] = {"docs": total, "request_bytes": sent, "seconds": round(time.monotonic() - started, 2)}
        if attachment_docs:
            loaded.update(attachment_docs=attachment_docs, attachment_bytes_each=attachment_bytes,
                          disk_size=info.get("disk_size"))
        return loaded

    def attachment(self, db: str, doc_id: str, name: str) -> bytes | None:
        """An attachment's bytes as the server holds them (None: no such document or attachment)."""
        resp = self.http.get(f"{self.couch.url}/{db}/{doc_id}/{name}", timeout=600)
        return resp.content if resp.status_code == 200 else None

    def delete_object(self, key: str) -> None:
        for k in (key, key + ".manifest.json"):
            with contextlib.suppress(Exception):  # cleanup only
                self.s3_client.delete_object(Bucket=self.bucket, Key=k)

    def download(self, key: str, path: Path) -> int:
        self.s3_client.download_file(self.bucket, key, str(path))
        return path.stat().st_size

    def describe(self) -> dict[str, Any]:
        return {"pouchdb": "in-memory" if self.in_memory else "on-disk (LevelDB)", "couch": self.couch.url,
                "compat": self.compat.url, "s3": self.s3.endpoint, "bucket": self.bucket}
