"""A loopback HTTP proxy that emulates network conditions in front of a CouchDB stand-in.

    python -m bench.netproxy --upstream http://127.0.0.1:5984 --port 6000 [--latency-ms 20]
                             [--all-docs-rate 5] [--reads-rate 100]

Benchmark infrastructure, stdlib only, bound to 127.0.0.1. Every client connection is kept alive and
gets its own kept-alive upstream connection, so the proxy adds no TCP handshakes of its own.

* ``--latency-ms``: every request waits this long before it is forwarded (one emulated round trip per
  request; answers that the proxy makes itself, such as a 429, wait too).
* ``--all-docs-rate``: a token bucket (burst = one second's worth) for ``GET|POST /{db}/_all_docs``,
  Cloudant's scarce "global query" class; each request costs 1.
* ``--reads-rate``: a token bucket for document reads: ``POST /{db}/_bulk_get`` costs the number of docs in
  its body, ``GET /{db}/{docid}`` (design docs included) costs 1. A request bigger than the burst is let
  through when the bucket is full and leaves it in debt, so the long-run rate still holds.
* Above a limit the proxy answers like Cloudant: ``429`` with ``Retry-After`` in whole seconds (the time
  until the request would be admitted, rounded up, at least 1: always 1 for ``_all_docs`` at 5/s) and
  ``{"error": "too_many_requests", "reason": "..."}``. Writes, ``_changes`` and db info are not limited.

Control endpoints (never forwarded; CouchDB names cannot start with ``_netproxy``):
``GET /_netproxy/stats`` returns the counters as JSON, ``POST /_netproxy/reset`` zeroes them and refills
the buckets.
"""

from __future__ import annotations

import argparse
import gzip
import http.client
import http.server
import json
import math
import socket
import sys
import threading
import time
import zlib
from typing import Any
from urllib.parse import unquote, urlsplit

HOST = "127.0.0.1"
# hop-by-hop headers (RFC 9110 7.6.1) and the ones the proxy sets itself
HOP_BY_HOP = {
    "connection", "keep-alive", "proxy-connection", "te", "trailer", "transfer-encoding", "upgrade",
    "content-length", "host",
}  # fmt: skip
CHUNK = 64 * 1024


class TokenBucket:
    """``rate`` tokens per second, at most ``burst`` stored; thread-safe."""

    def __init__(self, rate: float, burst: float | None = None) -> None:
        self.rate = rate
        self.burst = burst if burst is not None else max(rate, 1.0)
        self._lock = threading.Lock()
        self.reset()

    def reset(self) -> None:
        with self._lock:
            self._tokens = self.burst
            self._stamp = time.monotonic()

    def take(self, cost: float) -> float:
        """Admit a request of ``cost`` (returns 0.0) or return the seconds until it would be admitted.

        A cost above the burst is admitted once the bucket is full and drives it negative (debt).
        """
        with self._lock:
            now = time.monotonic()
            self._tokens = min(self.burst, self._tokens + (now - self._stamp) * self.rate)
            self._stamp = now
            need = min(cost, self.burst)
            if self._tokens >= need:
                self._tokens -= cost
                return 0.0
            return (need - self._tokens) / self.rate


class Conditions:
    """What the proxy emulates, plus its counters (shared by all handler threads)."""

    def __init__(self, latency_s: float = 0.0, all_docs_rate: float | None = None, reads_rate: float | None = None) -> None:
        self.latency_s = latency_s
        self.buckets: dict[str, TokenBucket] = {}
        if all_docs_rate:
            self.buckets["all_docs"] = TokenBucket(all_docs_rate)
        if reads_rate:
            self.buckets["reads"] = TokenBucket(reads_rate)
        self._lock = threading.Lock()
        self.reset()

    def reset(self) -> None:
        with self._lock:
            self.stats: dict[str, Any] = {
                "requests": 0, "forwarded": 0, "admitted_cost": 0, "too_many_requests": 0, "upstream_errors": 0,
                "connections": 0, "bytes_to_client": 0,
                "by_class": {name: {"requests": 0, "admitted_cost": 0, "too_many_requests": 0}
                             for name in ("all_docs", "reads", "other")},
            }  # fmt: skip
        for bucket in self.buckets.values():
            bucket.reset()

    def count(self, key: str, amount: int = 1, klass: str | None = None, sub: str | None = None) -> None:
        with self._lock:
            self.stats[key] = self.stats.get(key, 0) + amount
            if klass is not None and sub is not None:
                self.stats["by_class"][klass][sub] += amount

    def snapshot(self) -> dict[str, Any]:
        with self._lock:
            return json.loads(json.dumps(self.stats))

    def describe(self) -> dict[str, Any]:
        return {"latency_ms": round(self.latency_s * 1000, 3),
                "rates": {name: bucket.rate for name, bucket in self.buckets.items()}}


def _bulk_get_count(body: bytes | None, encoding: str) -> int:
    """Documents asked for in a ``_bulk_get`` body (1 if it cannot be read)."""
    if not body:
        return 1
    try:
        if encoding == "gzip":
            body = gzip.decompress(body)
        elif encoding == "deflate":
            body = zlib.decompress(body)
        docs = json.loads(body).get("docs")
    except (OSError, ValueError, zlib.error, EOFError, AttributeError):
        return 1
    return max(len(docs), 1) if isinstance(docs, list) else 1


def classify(method: str, path: str, body: bytes | None, encoding: str) -> tuple[str, int]:
    """The rate class of a request and its cost: ("all_docs", 1), ("reads", docs) or ("other", 0)."""
    segments = [unquote(s) for s in urlsplit(path).path.split("/") if s]
    if len(segments) == 2 and segments[1] == "_all_docs" and method in ("GET", "POST"):
        return "all_docs", 1
    if len(segments) == 2 and segments[1] == "_bulk_get" and method == "POST":
        return "reads", _bulk_get_count(body, encoding)
    if method in ("GET", "HEAD") and segments and not segments[0].startswith("_"):
        if len(segments) == 2 and not segments[1].startswith("_"):
            return "reads", 1
        if len(segments) == 3 and segments[1] == "_design":
            return "reads", 1
    return "other", 0


class _Server(http.server.ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 128

    def __init__(self, address: tuple[str, int], conditions: Conditions, upstream: str) -> None:
        parts = urlsplit(upstream)
        self.conditions = conditions
        self.upstream_host = parts.hostname or HOST
        self.upstream_port = parts.port or 80
        super().__init__(address, _Handler)

    def handle_error(self, request: Any, client_address: Any) -> None:
        pass  # a client that hung up mid-response is not news; the counters say what matters


class _Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "bench-netproxy/1"
    timeout = 300  # idle keep-alive client connections
    server: _Server

    def setup(self) -> None:
        super().setup()
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.upstream: http.client.HTTPConnection | None = None
        self.server.conditions.count("connections")

    def finish(self) -> None:
        if self.upstream is not None:
            self.upstream.close()
        super().finish()

    def log_message(self, format: str, *args: Any) -> None:
        pass

    # -- request body and our own answers
    def _read_body(self) -> bytes | None:
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            parts = []
            while True:
                size = int(self.rfile.readline(65537).split(b";", 1)[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline(65537) not in (b"\r\n", b"\n", b""):
                        pass  # trailers
                    break
                parts.append(self.rfile.read(size))
                self.rfile.readline(3)
            return b"".join(parts)
        length = self.headers.get("Content-Length")
        return self.rfile.read(int(length)) if length else None

    def _send_json(self, status: int, payload: Any, headers: dict[str, str] | None = None) -> None:
        data = json.dumps(payload).encode()
        self.send_response_only(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)

    def _control(self) -> None:
        conditions = self.server.conditions
        self._read_body()
        if self.path.startswith("/_netproxy/reset") and self.command == "POST":
            conditions.reset()
            self._send_json(200, {"ok": True})
        elif self.path.startswith("/_netproxy/stats"):
            self._send_json(200, {**conditions.snapshot(), **conditions.describe()})
        else:
            self._send_json(404, {"error": "not_found", "reason": "GET /_netproxy/stats or POST /_netproxy/reset"})

    # -- proxying
    def _handle(self) -> None:
        if self.path.startswith("/_netproxy/"):
            self._control()
            return
        conditions = self.server.conditions
        body = self._read_body()
        encoding = self.headers.get("Content-Encoding", "").lower().strip()
        klass, cost = classify(self.command, self.path, body, encoding)
        conditions.count("requests", klass=klass, sub="requests")
        if conditions.latency_s:
            time.sleep(conditions.latency_s)
        bucket = conditions.buckets.get(klass)
        if bucket is not None:
            wait = bucket.take(cost)
            if wait > 0:
                conditions.count("too_many_requests", klass=klass, sub="too_many_requests")
                self._send_json(429, {"error": "too_many_requests",
                                      "reason": "You've exceeded your rate limit allowance. Please try again later."},
                                {"Retry-After": str(max(1, math.ceil(wait)))})
                return
        conditions.count("forwarded")
        conditions.count("admitted_cost", cost, klass=klass, sub="admitted_cost")
        try:
            resp = self._forward(body)
        except (OSError, http.client.HTTPException) as exc:
            conditions.count("upstream_errors")
            self._drop_upstream()
            self._send_json(502, {"error": "bad_gateway", "reason": f"upstream: {exc!r}"})
            return
        try:
            self._relay(resp)
        finally:
            if resp.will_close or not resp.isclosed():
                self._drop_upstream()

    do_GET = do_HEAD = do_POST = do_PUT = do_DELETE = do_COPY = do_OPTIONS = do_PATCH = _handle

    def _drop_upstream(self) -> None:
        if self.upstream is not None:
            self.upstream.close()
            self.upstream = None

    def _forward(self, body: bytes | None) -> http.client.HTTPResponse:
        """Send the request on the kept-alive upstream connection (one retry if that went stale)."""
        for attempt in (1, 2):
            reused = self.upstream is not None
            if self.upstream is None:
                self.upstream = http.client.HTTPConnection(self.server.upstream_host, self.server.upstream_port, timeout=600)
            conn = self.upstream
            try:
                conn.putrequest(self.command, self.path, skip_host=True, skip_accept_encoding=True)
                conn.putheader("Host", f"{self.server.upstream_host}:{self.server.upstream_port}")
                for key, value in self.headers.items():
                    if key.lower() not in HOP_BY_HOP and key.lower() != "expect":
                        conn.putheader(key, value)
                if body is not None:
                    conn.putheader("Content-Length", str(len(body)))
                conn.endheaders(body)
                return conn.getresponse()
            except (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError):
                self._drop_upstream()
                if not reused or attempt == 2:  # a fresh connection failing is a real error
                    raise
        raise AssertionError("unreachable")

    def _relay(self, resp: http.client.HTTPResponse) -> None:
        no_body = self.command == "HEAD" or resp.status in (204, 304) or resp.status < 200
        self.send_response_only(resp.status, resp.reason)
        for key, value in resp.getheaders():
            if key.lower() not in HOP_BY_HOP:
                self.send_header(key, value)
        length = resp.getheader("Content-Length")
        sent = 0
        if no_body:
            if length is not None:
                self.send_header("Content-Length", length)
            self.end_headers()
            resp.read()
        elif length is not None:
            self.send_header("Content-Length", length)
            self.end_headers()
            remaining = int(length)
            while remaining > 0:
                chunk = resp.read(min(CHUNK, remaining))
                if not chunk:
                    self.close_connection = True  # upstream cut the body short: so do we
                    break
                self.wfile.write(chunk)
                remaining -= len(chunk)
                sent += len(chunk)
        elif self.request_version != "HTTP/1.1":
            self.send_header("Connection", "close")
            self.end_headers()
            self.close_connection = True
            while chunk := resp.read1(CHUNK):
                self.wfile.write(chunk)
                sent += len(chunk)
        else:
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            while chunk := resp.read1(CHUNK):
                self.wfile.write(b"%x\r\n%s\r\n" % (len(chunk), chunk))
                sent += len(chunk)
            self.wfile.write(b"0\r\n\r\n")
        self.server.conditions.count("bytes_to_client", sent)


class NetProxy:
    """The proxy on a daemon thread of this process (``start()``/``stop()``); the CLI runs one in a process."""

    def __init__(self, upstream: str, port: int, conditions: Conditions) -> None:
        self.conditions = conditions
        self.server = _Server((HOST, port), conditions, upstream)
        self.thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.2},
                                       name=f"netproxy-{port}", daemon=True)

    @property
    def url(self) -> str:
        return f"http://{HOST}:{self.server.server_address[1]}"

    def start(self) -> NetProxy:
        self.thread.start()
        return self

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.netproxy", description=__doc__.split("\n\n")[0])
    parser.add_argument("--upstream", required=True, help="http://127.0.0.1:PORT of the server behind the proxy")
    parser.add_argument("--port", type=int, default=0, help="port to listen on (127.0.0.1); 0 picks a free one")
    parser.add_argument("--latency-ms", type=float, default=0.0, help="delay added to every request")
    parser.add_argument("--all-docs-rate", type=float, default=0.0, help="_all_docs requests per second (0: unlimited)")
    parser.add_argument("--reads-rate", type=float, default=0.0, help="document reads per second (0: unlimited)")
    ns = parser.parse_args(argv)
    conditions = Conditions(ns.latency_ms / 1000.0, ns.all_docs_rate or None, ns.reads_rate or None)
    proxy = NetProxy(ns.upstream, ns.port, conditions)
    print(json.dumps({"listening": proxy.url, **conditions.describe()}), flush=True)
    try:
        proxy.server.serve_forever(poll_interval=0.2)
    except KeyboardInterrupt:
        pass
    finally:
        proxy.server.server_close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
