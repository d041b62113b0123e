"""A loopback fault-injection reverse proxy for tests: put it in front of pouchdb-server or an S3 server
and program what goes wrong, request by request. Test infrastructure, never shipped in the action.

    proxy = FaultProxy(couch.url).start()          # or: with FaultProxy(seaweed.endpoint, flavor="s3") as proxy:
    proxy.add_rule("POST /db/_all_docs", Fault.status(503, times=3), skip=1)   # regex on "METHOD path?query"
    proxy.add_rule(lambda method, path: method == "PUT", Fault.cut_mid_body(1000))
    ... point the client at proxy.url ...
    proxy.clear()                                   # back to a clean pass-through

A rule applies from the ``skip``+1-th matching request on (every matching request counts, whichever rule
served it); the first rule, in order added, that matches, is past its skip and has budget left wins.
Faults (each with a budget ``times``: how many requests it hits; ``None`` = every matching request):

* ``Fault.status(code, retry_after=None, body=None)``: answer ``code`` at once (a JSON body, an S3 XML error
  with ``flavor="s3"`` (503 -> SlowDown...), or ``body``), optionally with ``Retry-After``. The upstream
  never sees the request.
* ``Fault.stall(seconds, where="request"|"response")``: hold the request before forwarding it (the
  upstream sees it only if the client is still waiting), or forward it and hold the *response* (the
  upstream did the work, the client does not hear of it in time: the "lost response" case).
* ``Fault.cut_mid_body(after_bytes)``: forward, relay the status line, headers (with the real
  Content-Length) and the first ``after_bytes`` of the body (at most half of it), then drop the
  connection. An empty body is not sent at all: the connection drops right after the upstream answered.
* ``Fault.cut_request(after_bytes)``: read only the first ``after_bytes`` of the request body, then drop
  the connection (an upload cut on its way in; the upstream never sees it).
* ``Fault.slow(bytes_per_sec)``: forward, then relay the response body at that rate.
* ``Fault.refuse()``: drop the connection as soon as the request line and headers are read.
* ``Fault.call(fn)``: run ``fn(method, path)`` (e.g. kill a server), then pass the request through.

Pass-through is byte-exact: method, target, every header (Authorization, the S3 ``x-amz-*`` signature
headers and **Host as the client sent it**: SigV4 signs it and SeaweedFS checks it, so rewriting it to the
upstream's address fails every HMAC request with SignatureDoesNotMatch; only hop-by-hop headers are dropped),
request bodies as bytes (gzip ``Content-Encoding`` untouched; chunked bodies are forwarded chunked),
status, headers and body of the response (streamed; chunked upstream bodies are re-chunked).
Client connections are kept alive (the SDKs pool them); each request uses a fresh upstream connection.
``Expect: 100-continue`` (botocore's uploads) is answered by the proxy. An unreachable upstream gives 502.

Counters: ``requests`` (seen), ``faults`` (served), ``rule.hits``; ``events`` keeps
``(monotonic time, method, path, what)`` for the last 5000 requests, ``what`` being ``"pass"`` or the fault.
"""

from __future__ import annotations

import http.client
import http.server
import re
import select
import socket
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Self
from urllib.parse import urlsplit

from devstack.servers import HOST, _register, _Server, _unregister, free_port

__all__ = ["Fault", "FaultProxy", "Rule"]

# Hop-by-hop headers (RFC 9110 7.6.1) and the framing headers the proxy recomputes. Host is NOT here:
# it is forwarded as the client sent it (SigV4 signs it).
_HOP_BY_HOP = {
    "connection", "keep-alive", "proxy-connection", "te", "trailer", "transfer-encoding", "upgrade",
    "content-length", "expect",
}  # fmt: skip

_S3_CODES = {429: "TooManyRequests", 500: "InternalError", 502: "BadGateway", 503: "SlowDown", 504: "GatewayTimeout"}

Match = Callable[[str, str], bool]


@dataclass
class Fault:
    """What to do to a matching request; build with the class methods below."""

    kind: str
    times: int | None = 1
    code: int = 0
    retry_after: float | None = None
    seconds: float = 0.0
    where: str = "request"
    after_bytes: int = 0
    rate: int = 0
    fn: Callable[[str, str], Any] | None = None
    body: bytes | None = None

    @classmethod
    def status(cls, code: int, *, times: int | None = 1, retry_after: float | None = None,
               body: bytes | None = None) -> Fault:
        """``body`` replaces the default error body (JSON, or S3 XML with ``flavor="s3"``)."""
        return cls("status", times, code=code, retry_after=retry_after, body=body)

    @classmethod
    def stall(cls, seconds: float, *, times: int | None = 1, where: str = "request") -> Fault:
        if where not in ("request", "response"):
            raise ValueError("where must be 'request' or 'response'")
        return cls("stall", times, seconds=seconds, where=where)

    @classmethod
    def cut_mid_body(cls, after_bytes: int = 1024, *, times: int | None = 1) -> Fault:
        return cls("cut", times, after_bytes=after_bytes)

    @classmethod
    def cut_request(cls, after_bytes: int = 1024, *, times: int | None = 1) -> Fault:
        return cls("cut_request", times, after_bytes=after_bytes)

    @classmethod
    def slow(cls, bytes_per_sec: int, *, times: int | None = None) -> Fault:
        return cls("slow", times, rate=max(1, bytes_per_sec))

    @classmethod
    def refuse(cls, *, times: int | None = 1) -> Fault:
        return cls("refuse", times)

    @classmethod
    def call(cls, fn: Callable[[str, str], Any], *, times: int | None = 1) -> Fault:
        return cls("call", times, fn=fn)

    def describe(self) -> str:
        detail = {
            "status": f"{self.code}", "stall": f"{self.seconds}s@{self.where}", "cut": f"@{self.after_bytes}B",
            "cut_request": f"@{self.after_bytes}B", "slow": f"{self.rate}B/s", "refuse": "", "call": "",
        }[self.kind]
        return f"{self.kind}({detail})"


@dataclass
class Rule:
    """``fault`` for requests that ``match``, once the first ``skip`` matching requests went by (every matching
    request counts, whichever rule served it: ``skip=3`` means "from the 4th matching request on")."""

    match: Match
    fault: Fault
    skip: int = 0
    seen: int = 0  # matching requests so far
    hits: int = 0  # requests the fault was applied to

    @property
    def exhausted(self) -> bool:
        return self.fault.times is not None and self.hits >= self.fault.times


def _matcher(match: Match | str | None) -> Match:
    if match is None:
        return lambda method, path: True
    if isinstance(match, str):
        pattern = re.compile(match)
        return lambda method, path: pattern.search(f"{method} {path}") is not None
    return match


class _Dropped(Exception):
    """The fault ended the client connection on purpose."""


class _Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "devstack-faultproxy/1"
    timeout = 120  # an idle keep-alive client connection

    def log_message(self, format: str, *args: Any) -> None:
        pass

    # -- reading the request
    def _read_body(self, limit: int | None = None) -> tuple[bytes | None, bool]:
        """(body, chunked). With ``limit``, read at most that many body bytes (cut_request)."""
        chunked = "chunked" in self.headers.get("Transfer-Encoding", "").lower()
        if chunked:
            parts, got = [], 0
            while True:
                line = self.rfile.readline(65537)
                if not line:
                    raise _Dropped("client closed mid-body")
                size = int(line.split(b";", 1)[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline(65537) not in (b"\r\n", b"\n", b""):
                        pass  # trailers
                    break
                if limit is not None and got + size >= limit:
                    parts.append(self.rfile.read(limit - got))
                    return b"".join(parts), True
                parts.append(self.rfile.read(size))
                got += size
                self.rfile.readline(3)
            return b"".join(parts), True
        length = self.headers.get("Content-Length")
        if length is None:
            return None, False
        n = int(length)
        return self.rfile.read(n if limit is None else min(n, limit)), False

    def _client_gone(self) -> bool:
        """True when the client hung up (e.g. timed out) while the proxy held its request."""
        try:
            readable, _, _ = select.select([self.connection], [], [], 0)
            return bool(readable) and self.connection.recv(1, socket.MSG_PEEK) == b""
        except OSError:
            return True

    # -- the one handler for every method
    def _proxy(self) -> None:
        proxy: FaultProxy = self.server.service  # type: ignore[attr-defined]
        method, target = self.command, self.path
        fault = proxy._choose(method, target)
        proxy._record(method, target, fault.describe() if fault else "pass")
        try:
            self._serve(proxy, method, target, fault)
        except _Dropped:
            self._drop()

    def _serve(self, proxy: FaultProxy, method: str, target: str, fault: Fault | None) -> None:
        kind = fault.kind if fault else "pass"
        if kind == "refuse":
            raise _Dropped("refused")
        if kind == "cut_request":
            assert fault is not None
            self._read_body(limit=fault.after_bytes)
            raise _Dropped("request cut")
        body, chunked = self._read_body()
        if kind == "status":
            assert fault is not None
            self._send_fault_status(proxy, fault)
            return
        if kind == "call":
            assert fault is not None and fault.fn is not None
            fault.fn(method, target)
        if kind == "stall" and fault is not None and fault.where == "request":
            proxy._sleep(fault.seconds)
            if self._client_gone():
                raise _Dropped("client gave up during the stall")

        headers = [(k, v) for k, v in self.headers.items() if k.lower() not in _HOP_BY_HOP]
        if not proxy.preserve_host:
            headers = [(k, v) for k, v in headers if k.lower() != "host"] + [("Host", proxy.upstream_netloc)]
        try:
            conn, resp = proxy._forward(method, target, headers, body, chunked)
        except (OSError, http.client.HTTPException) as exc:
            self._send_simple(502, proxy, "BadGateway", f"upstream unreachable: {exc}")
            return
        try:
            if kind == "stall" and fault is not None and fault.where == "response":
                data = resp.read()  # the upstream finished; the client waits for nothing
                proxy._sleep(fault.seconds)
                if self._client_gone():
                    raise _Dropped("client gave up during the stall")
                self._relay(resp, None, preloaded=data)
            else:
                self._relay(resp, fault if kind in ("cut", "slow") else None)
        finally:
            conn.close()

    do_GET = do_HEAD = do_POST = do_PUT = do_DELETE = do_COPY = do_OPTIONS = do_PATCH = _proxy

    # -- answering
    def _drop(self) -> None:
        self.close_connection = True
        try:
            self.wfile.flush()
        except OSError:
            pass
        try:
            self.connection.shutdown(socket.SHUT_RDWR)  # FIN after what was sent: the peer reads it, then EOF
        except OSError:
            pass

    def _send_simple(self, status: int, proxy: FaultProxy, code: str, message: str,
                     extra: list[tuple[str, str]] | None = None, body: bytes | None = None) -> None:
        if body is not None:
            ctype = "application/xml" if body.startswith(b"<") else "application/json"
        elif proxy.flavor == "s3":
            body = (f'<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>{code}</Code><Message>{message}</Message>'
                    f"<Resource>{self.path.split('?')[0]}</Resource><RequestId>faultproxy</RequestId></Error>").encode()
            ctype = "application/xml"
        else:
            body = f'{{"error":"{code}","reason":"{message}"}}'.encode()
            ctype = "application/json"
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        for key, value in extra or []:
            self.send_header(key, value)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _send_fault_status(self, proxy: FaultProxy, fault: Fault) -> None:
        extra = []
        if fault.retry_after is not None:
            ra = fault.retry_after
            extra.append(("Retry-After", str(int(ra)) if float(ra).is_integer() else str(ra)))
        code = _S3_CODES.get(fault.code, "Injected") if proxy.flavor == "s3" else "injected_fault"
        self._send_simple(fault.code, proxy, code, f"injected by faultproxy ({fault.code})", extra, fault.body)

    def _relay(self, resp: http.client.HTTPResponse, fault: Fault | None, preloaded: bytes | None = None) -> None:
        no_body = self.command == "HEAD" or resp.status in (204, 304) or resp.status < 200
        length = resp.getheader("Content-Length")
        if preloaded is not None:
            length = str(len(preloaded))
        self.send_response_only(resp.status, resp.reason)
        for key, value in resp.getheaders():
            if key.lower() not in _HOP_BY_HOP:
                self.send_header(key, value)
        if no_body:
            if length is not None:
                self.send_header("Content-Length", length)
            self.end_headers()
            return
        if length is not None:
            self.send_header("Content-Length", length)
        else:
            self.send_header("Transfer-Encoding", "chunked")
        cut_at = None
        if fault is not None and fault.kind == "cut":
            total = int(length) if length is not None else None
            cut_at = fault.after_bytes if total is None else min(fault.after_bytes, total // 2)
            if total == 0:
                raise _Dropped("response lost")  # nothing to cut: lose the whole answer instead
        self.end_headers()
        chunks = iter([preloaded]) if preloaded is not None else _read_chunks(resp)
        sent = 0
        for chunk in chunks:
            if not chunk:
                continue
            if cut_at is not None and sent + len(chunk) >= cut_at:
                self._write(chunk[: cut_at - sent], length is None, fault)
                raise _Dropped("cut mid-body")
            self._write(chunk, length is None, fault)
            sent += len(chunk)
        if cut_at is not None:
            raise _Dropped("cut at the end of the body")
        if length is None:
            self.wfile.write(b"0\r\n\r\n")
        if length is not None and sent != int(length):
            self.close_connection = True  # the upstream itself fell short

    def _write(self, data: bytes, chunked: bool, fault: Fault | None) -> None:
        if not data:
            return
        if fault is not None and fault.kind == "slow":
            proxy: FaultProxy = self.server.service  # type: ignore[attr-defined]
            step = max(1, fault.rate // 20)  # ~20 writes a second
            for i in range(0, len(data), step):
                piece = data[i:i + step]
                self.wfile.write(b"%x\r\n%s\r\n" % (len(piece), piece) if chunked else piece)
                self.wfile.flush()
                proxy._sleep(len(piece) / fault.rate)
            return
        self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data) if chunked else data)


def _read_chunks(resp: http.client.HTTPResponse) -> Any:
    while chunk := resp.read1(65536):
        yield chunk


class FaultProxy:
    """Reverse proxy on 127.0.0.1 in front of ``upstream`` (a base URL) with a programmable rule list.

    ``flavor`` ("couch" or "s3") only shapes the body of injected errors (JSON, or S3 XML with a code).
    ``preserve_host`` (default True) forwards Host as the client sent it; False rewrites it to the
    upstream's host:port (which breaks S3 SigV4 signatures, see tests/faults).
    """

    def __init__(self, upstream: str, *, flavor: str = "couch", port: int | None = None,
                 upstream_timeout: float = 300, preserve_host: bool = True) -> None:
        parts = urlsplit(upstream)
        if parts.scheme != "http" or not parts.hostname:
            raise ValueError(f"upstream must be an http:// URL, got {upstream!r}")
        self.upstream = upstream.rstrip("/")
        self.upstream_host = parts.hostname
        self.upstream_port = parts.port or 80
        self.upstream_netloc = f"{self.upstream_host}:{self.upstream_port}"
        self.flavor = flavor
        self.port = port or free_port()
        self.upstream_timeout = upstream_timeout
        self.preserve_host = preserve_host
        self.rules: list[Rule] = []
        self.requests = 0
        self.faults = 0
        self.events: deque[tuple[float, str, str, str]] = deque(maxlen=5000)
        self.errors: deque[str] = deque(maxlen=100)  # handler exceptions (never printed)
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        return f"http://{HOST}:{self.port}"

    endpoint = url

    # -- rules
    def add_rule(self, match: Match | str | None, action: Fault, *, skip: int = 0) -> Rule:
        """Apply ``action`` to requests for which ``match(method, path)`` is true (``path`` includes the
        query), from the ``skip``+1-th matching request on. A string is a regex searched in
        ``"METHOD path"``; None matches everything. The first rule (in order added) that matches, is past
        its skip and has budget left wins."""
        rule = Rule(_matcher(match), action, skip=skip)
        with self._lock:
            self.rules.append(rule)
        return rule

    def clear(self) -> None:
        """Remove every rule: a clean pass-through from now on (counters are kept)."""
        with self._lock:
            self.rules.clear()

    def _choose(self, method: str, path: str) -> Fault | None:
        """The fault for this request, if any: the first rule (in order added) that matches, is past its
        ``skip`` and has budget left. Every matching rule counts the request as seen."""
        with self._lock:
            self.requests += 1
            chosen = None
            for rule in self.rules:
                if not rule.match(method, path):
                    continue
                rule.seen += 1
                if chosen is None and rule.seen > rule.skip and not rule.exhausted:
                    chosen = rule
            if chosen is None:
                return None
            chosen.hits += 1
            self.faults += 1
            return chosen.fault

    def _record(self, method: str, path: str, what: str) -> None:
        self.events.append((time.monotonic(), method, path, what))

    def _sleep(self, seconds: float) -> None:
        self._stopping.wait(seconds)

    # -- upstream
    def _forward(self, method: str, target: str, headers: list[tuple[str, str]], body: bytes | None,
                 chunked: bool) -> tuple[http.client.HTTPConnection, http.client.HTTPResponse]:
        conn = http.client.HTTPConnection(self.upstream_host, self.upstream_port, timeout=self.upstream_timeout)
        try:
            conn.putrequest(method, target, skip_host=True, skip_accept_encoding=True)
            for key, value in headers:
                conn.putheader(key, value)
            if body is not None:
                if chunked:
                    conn.putheader("Transfer-Encoding", "chunked")
                else:
                    conn.putheader("Content-Length", str(len(body)))
            conn.putheader("Connection", "close")
            conn.endheaders(body, encode_chunked=chunked)
            return conn, conn.getresponse()
        except BaseException:
            conn.close()
            raise

    # -- lifecycle
    @property
    def running(self) -> bool:
        return self._server is not None

    def start(self) -> Self:
        if self._server is not None:
            return self
        self._stopping.clear()
        self._server = _Server((HOST, self.port), _Handler, self)
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.1},
                                        name=f"devstack-FaultProxy-{self.port}", daemon=True)
        self._thread.start()
        _register(self)
        return self

    def stop(self) -> None:
        server, self._server = self._server, None
        if server is None:
            return
        self._stopping.set()  # wakes stalls and slow streams
        server.shutdown()
        server.server_close()
        server.close_connections()
        if self._thread is not None:
            self._thread.join(timeout=5)
        _unregister(self)

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
