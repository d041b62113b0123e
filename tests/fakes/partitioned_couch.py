"""A CouchDB stand-in for one thing pouchdb-server cannot do: partitioned databases. pouchdb-server accepts
`PUT /db?partitioned=true` but ignores the flag (`GET /db` has no `props`), so this proxy, in front of it, keeps
the set of databases created partitioned and says so in their `GET /{db}` answer.

* `PUT /{db}?partitioned=true`: forwarded without its query; when the upstream created the database (201/202),
  the database is partitioned from then on. `DELETE /{db}` that succeeds forgets it.
* `GET /{db}` of a partitioned database: the upstream's JSON with `"props": {"partitioned": true}` added.
* Everything else is forwarded as it came (method, path and query, headers with Authorization, body bytes) and
  answered as the upstream answered (status, headers, body bytes); only the framing is the proxy's own
  (`Content-Length`, never chunked; hop-by-hop headers dropped; Host names the upstream).

Every request is recorded in `requests` as it arrived: `(method, path with query)`; `bodies` holds the request
bodies in the same order. On 127.0.0.1, one thread per connection. Tests only.
"""

from __future__ import annotations

import http.client
import http.server
import json
import threading
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

# Hop-by-hop headers and the framing the proxy sets itself.
_NOT_FORWARDED = {"connection", "keep-alive", "proxy-connection", "te", "trailer", "transfer-encoding", "upgrade",
                  "content-length", "expect", "host"}


def _database(path: str) -> str | None:
    """The database a `/{db}` path names (its `%2F` decoded), or None for any other path (`/`, `/_all_dbs`,
    `/db/doc`...)."""
    segment = path.strip("/")
    if not segment or "/" in segment or segment.startswith("_"):
        return None
    return unquote(segment)


class PartitionedCouch:
    def __init__(self, upstream: str, timeout: float = 120) -> None:
        parts = urlsplit(upstream)
        self.upstream_host = parts.hostname or "127.0.0.1"
        self.upstream_port = parts.port or 80
        self.timeout = timeout
        self.partitioned: set[str] = set()
        self.requests: list[tuple[str, str]] = []
        self.bodies: list[bytes] = []
        self._lock = threading.Lock()
        proxy = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:
                pass

            def _body(self) -> bytes | None:
                if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
                    chunks = []
                    while size := int(self.rfile.readline().split(b";")[0].strip() or b"0", 16):
                        chunks.append(self.rfile.read(size))
                        self.rfile.readline()
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass  # trailers
                    return b"".join(chunks)
                length = self.headers.get("Content-Length")
                return None if length is None else self.rfile.read(int(length))

            def _handle(self) -> None:
                body = self._body()
                with proxy._lock:
                    proxy.requests.append((self.command, self.path))
                    proxy.bodies.append(body or b"")
                path, _, query = self.path.partition("?")
                db = _database(path)
                headers = [(k, v) for k, v in self.headers.items() if k.lower() not in _NOT_FORWARDED]
                target = self.path
                make_partitioned = (self.command == "PUT" and db is not None
                                    and parse_qs(query).get("partitioned") == ["true"])
                if make_partitioned:
                    target = path  # pouchdb-server would ignore it anyway
                report_partitioned = self.command == "GET" and db is not None and db in proxy.partitioned
                if report_partitioned:
                    headers = [(k, v) for k, v in headers if k.lower() != "accept-encoding"]  # a plain JSON answer
                try:
                    status, reason, answer_headers, answer = proxy._forward(self.command, target, headers, body)
                except (OSError, http.client.HTTPException) as exc:
                    status, reason, answer = 502, "Bad Gateway", json.dumps({"error": "bad_gateway",
                                                                             "reason": str(exc)}).encode()
                    answer_headers = [("Content-Type", "application/json")]
                if db is not None and status in (200, 201, 202):
                    with proxy._lock:
                        if make_partitioned:
                            proxy.partitioned.add(db)
                        elif self.command == "DELETE":
                            proxy.partitioned.discard(db)
                if report_partitioned and status == 200:
                    info = json.loads(answer)
                    info["props"] = {**(info.get("props") or {}), "partitioned": True}
                    answer = json.dumps(info).encode()
                self.send_response_only(status, reason)
                for key, value in answer_headers:
                    if key.lower() not in _NOT_FORWARDED:
                        self.send_header(key, value)
                length = dict((k.lower(), v) for k, v in answer_headers).get("content-length", "0")
                self.send_header("Content-Length", length if self.command == "HEAD" else str(len(answer)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(answer)

            do_GET = do_HEAD = do_POST = do_PUT = do_DELETE = do_COPY = _handle

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def _forward(self, method: str, target: str, headers: list[tuple[str, str]],
                 body: bytes | None) -> tuple[int, str, list[tuple[str, str]], bytes]:
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
            resp = conn.getresponse()
            return resp.status, resp.reason, resp.getheaders(), resp.read()
        finally:
            conn.close()

    def sent(self, method: str, path: str) -> list[str]:
        """The targets (path with query) of the requests with this method whose path (before `?`) is `path`."""
        with self._lock:
            return [target for m, target in self.requests if m == method and target.partition("?")[0] == path]

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def __enter__(self) -> PartitionedCouch:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
