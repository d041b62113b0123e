"""The fault proxy itself, against a tiny in-process echo server: byte-exact pass-through (headers, Host,
gzip and chunked bodies), keep-alive, and every fault kind with its budget, skip and counters."""

from __future__ import annotations

import base64
import gzip
import http.client
import http.server
import json
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest

from devstack import Fault, FaultProxy, free_port

pytestmark = [pytest.mark.faults, pytest.mark.integration, pytest.mark.timeout(60)]


class _Echo(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    seen: list[str] = []

    def log_message(self, *args: Any) -> None:
        pass

    def _any(self) -> None:
        if "chunked" in self.headers.get("Transfer-Encoding", ""):
            body = b""
            while (size := int(self.rfile.readline().strip() or b"0", 16)) > 0:
                body += self.rfile.read(size)
                self.rfile.readline()
            self.rfile.readline()
        else:
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        _Echo.seen.append(f"{self.command} {self.path}")
        if self.path.startswith("/big"):
            payload = b"x" * int(self.path.split("=")[1])
        else:
            payload = json.dumps({"method": self.command, "path": self.path, "headers": self.headers.items(),
                                  "body": base64.b64encode(body).decode()}).encode()
        self.send_response(200)
        if "chunked" in self.path:
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            for i in range(0, len(payload), 1000):
                piece = payload[i:i + 1000]
                self.wfile.write(b"%x\r\n%s\r\n" % (len(piece), piece))
            self.wfile.write(b"0\r\n\r\n")
        else:
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

    do_GET = do_POST = do_PUT = do_DELETE = do_HEAD = _any


@pytest.fixture(scope="module")
def echo() -> Iterator[str]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", free_port()), _Echo)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


@pytest.fixture
def proxy(echo) -> Iterator[FaultProxy]:
    _Echo.seen.clear()
    with FaultProxy(echo) as p:
        yield p


def _conn(proxy: FaultProxy, timeout: float = 10) -> http.client.HTTPConnection:
    return http.client.HTTPConnection("127.0.0.1", proxy.port, timeout=timeout)


def _call(conn, method="GET", path="/", body=None, headers=None, encode_chunked=False) -> tuple[int, dict, bytes]:
    conn.request(method, path, body=body, headers=headers or {}, encode_chunked=encode_chunked)
    resp = conn.getresponse()
    return resp.status, dict(resp.getheaders()), resp.read()


def test_requests_pass_through_byte_exact_on_one_kept_alive_connection(proxy):
    conn = _conn(proxy)
    zipped = gzip.compress(b'{"docs": []}')
    headers = {"Content-Encoding": "gzip", "Authorization": "AWS4-HMAC-SHA256 Credential=AK/x, Signature=abc",
               "x-amz-content-sha256": "UNSIGNED-PAYLOAD", "Content-Type": "application/json"}
    status, _, data = _call(conn, "POST", "/db/_bulk_docs?x=1&y=%2F", zipped, headers)
    echoed = json.loads(data)
    sent = {k.lower(): v for k, v in echoed["headers"]}
    assert status == 200 and echoed["path"] == "/db/_bulk_docs?x=1&y=%2F"
    assert base64.b64decode(echoed["body"]) == zipped
    assert sent["host"] == f"127.0.0.1:{proxy.port}"  # as the client sent it: SigV4 signs it
    assert all(sent[k.lower()] == v for k, v in headers.items())
    sock = conn.sock
    status, _, data = _call(conn, "PUT", "/chunked-upload", iter([b"part one,", b"part two"]), encode_chunked=True)
    echoed = json.loads(data)
    assert base64.b64decode(echoed["body"]) == b"part one,part two"
    assert ("Transfer-Encoding", "chunked") in [tuple(h) for h in echoed["headers"]]
    status, headers_back, data = _call(conn, "GET", "/chunked-answer")
    assert status == 200 and json.loads(data)["path"] == "/chunked-answer"
    status, headers_back, data = _call(conn, "HEAD", "/big?n=5000")
    assert status == 200 and data == b"" and headers_back["Content-Length"] == "5000"
    assert conn.sock is sock  # one connection for all four requests
    assert proxy.requests == 4 and proxy.faults == 0


def test_status_faults_answer_at_once_with_retry_after_and_budget(proxy):
    rule = proxy.add_rule("GET /a", Fault.status(429, retry_after=2, times=2))
    conn = _conn(proxy)
    answers = [_call(conn, "GET", "/a") for _ in range(3)]
    assert [a[0] for a in answers] == [429, 429, 200]
    assert answers[0][1]["Retry-After"] == "2" and json.loads(answers[0][2])["error"] == "injected_fault"
    assert rule.hits == 2 and _Echo.seen == ["GET /a"]  # the upstream saw only the third


def test_skip_counts_every_matching_request_and_clear_removes_the_rules(proxy):
    proxy.add_rule(None, Fault.status(500), skip=1)
    proxy.add_rule(None, Fault.status(503, times=None), skip=3)
    conn = _conn(proxy)
    statuses = [_call(conn, "GET", f"/{i}")[0] for i in range(5)]
    assert statuses == [200, 500, 200, 503, 503]
    proxy.clear()
    assert _call(conn, "GET", "/after")[0] == 200 and proxy.faults == 3


def test_s3_flavor_answers_xml_errors(echo):
    with FaultProxy(echo, flavor="s3") as proxy:
        proxy.add_rule(None, Fault.status(503))
        status, headers, body = _call(_conn(proxy), "PUT", "/bucket/key", b"data")
    assert status == 503 and headers["Content-Type"] == "application/xml" and b"<Code>SlowDown</Code>" in body


def test_refuse_and_cut_request_drop_the_connection_before_the_upstream_sees_anything(proxy):
    proxy.add_rule("GET /refused", Fault.refuse())
    proxy.add_rule("PUT /upload", Fault.cut_request(1000))
    with pytest.raises((http.client.RemoteDisconnected, ConnectionError)):
        _call(_conn(proxy), "GET", "/refused")
    with pytest.raises((http.client.RemoteDisconnected, ConnectionError)):
        _call(_conn(proxy), "PUT", "/upload", b"y" * 100_000)
    assert _Echo.seen == []
    assert _call(_conn(proxy), "GET", "/refused")[0] == 200  # times=1: the next one passes


@pytest.mark.parametrize("path", ["/big?n=100000", "/big-chunked?n=100000"])
def test_cut_mid_body_sends_part_of_the_body_then_drops(proxy, path):
    proxy.add_rule(None, Fault.cut_mid_body(30_000))
    conn = _conn(proxy)
    conn.request("GET", path)
    resp = conn.getresponse()
    assert resp.status == 200
    with pytest.raises(http.client.IncompleteRead) as info:
        resp.read()
    assert len(info.value.partial) == 30_000
    assert _Echo.seen == [f"GET {path}"]


def test_stalls_hold_the_request_or_the_answer(proxy):
    proxy.add_rule("GET /before", Fault.stall(1.5))
    proxy.add_rule("GET /after", Fault.stall(1.5, where="response"))
    with pytest.raises(TimeoutError):
        _call(_conn(proxy, timeout=0.5), "GET", "/before")  # the client gives up: never forwarded
    with pytest.raises(TimeoutError):
        _call(_conn(proxy, timeout=0.5), "GET", "/after")  # forwarded at once, the answer held
    time.sleep(1.3)
    assert _Echo.seen == ["GET /after"]
    started = time.monotonic()
    proxy.add_rule("GET /patient", Fault.stall(0.5))
    assert _call(_conn(proxy), "GET", "/patient")[0] == 200 and time.monotonic() - started >= 0.5


def test_slow_streams_the_body_at_the_given_rate(proxy):
    proxy.add_rule(None, Fault.slow(40_000))
    started = time.monotonic()
    status, _, body = _call(_conn(proxy), "GET", "/big?n=40000")
    assert status == 200 and len(body) == 40_000 and time.monotonic() - started >= 0.9


def test_call_runs_a_hook_then_passes_and_a_dead_upstream_is_a_502(proxy):
    called = []
    proxy.add_rule("GET /hook", Fault.call(lambda method, path: called.append((method, path))))
    assert _call(_conn(proxy), "GET", "/hook")[0] == 200 and called == [("GET", "/hook")]
    with FaultProxy(f"http://127.0.0.1:{free_port()}") as dead:
        status, _, body = _call(_conn(dead), "GET", "/x")
    assert status == 502 and b"upstream unreachable" in body
