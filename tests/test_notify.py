"""NOTIFY_URL: a run's result POSTed to a webhook, against a real local receiver and the real servers.

A failed run (or every run, NOTIFY_ON=always) POSTs `{"text": ..., "result": ...}` once; the notification never
changes the run's outcome (a receiver that refuses, is not there, or never answers is a logged warning); a redirect
is not followed; the URL (its path is a token) and the stack's secrets appear in no body, log line or result.
"""

from __future__ import annotations

import contextlib
import http.server
import json
import os
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest

from tests.helpers import (
    OUTPUTS,
    SECRET_SOURCES,
    CapturedLog,
    cos_params,
    couch_params,
    keys_in,
    live_docs,
    load_docs,
    run_main,
)

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parent.parent
TOKEN = "T000-secret-token-xyz"  # a webhook's token is in its path (Slack's are): a secret like a password
SECRET_SOURCES.append(lambda: [TOKEN])  # the session's final scan looks for it in every output too
HOOK = f"/hooks/{TOKEN}"


class Receiver:
    """A webhook receiver on 127.0.0.1: records each POST (path, headers, raw and JSON body), answers `status`
    (with a Location header when `location` is set)."""

    def __init__(self, status: int = 200, location: str | None = None) -> None:
        self.posts: list[dict[str, Any]] = []
        receiver = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def do_POST(self) -> None:  # noqa: N802 - http.server's naming
                raw = self.rfile.read(int(self.headers.get("Content-Length", 0))).decode()
                OUTPUTS.append(raw)  # a body leaves the run: the session's secret scan reads it
                receiver.posts.append({"path": self.path, "headers": dict(self.headers), "raw": raw,
                                       "body": json.loads(raw)})
                self.send_response(status)
                if location:
                    self.send_header("Location", location)
                self.send_header("Content-Length", "0")
                self.end_headers()

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}{HOOK}"
        # A short poll: shutdown() waits for it, at every test's end.
        threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


class Hanging:
    """Accepts connections and never answers (a receiver stuck behind its proxy)."""

    def __init__(self) -> None:
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.accepted: list[socket.socket] = []
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}{HOOK}"
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        with contextlib.suppress(OSError):
            while True:
                self.accepted.append(self.sock.accept()[0])

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.sock.shutdown(socket.SHUT_RDWR)  # wakes the blocked accept
        self.sock.close()
        for conn in self.accepted:
            conn.close()


def closed_port_url() -> str:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}{HOOK}"  # nothing listens there now: connection refused


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver()
    yield r
    r.close()


@pytest.fixture
def cos(seaweed, bucket) -> dict[str, str]:
    return cos_params(seaweed, bucket)


def assert_no_secret(texts: list[str], secrets: list[str]) -> None:
    for text in texts:
        for secret in secrets:
            for form in {secret, quote(secret, safe=""), json.dumps(secret)[1:-1]}:
                assert form not in text, f"a secret leaked: {form[:6]}..."


def the_notification(receiver: Receiver, result: dict[str, Any], log: CapturedLog) -> dict[str, Any]:
    """The one POST the run made, checked for what every notification has; its body."""
    assert len(receiver.posts) == 1, receiver.posts
    post = receiver.posts[0]
    assert post["path"] == HOOK
    assert post["headers"]["Content-Type"] == "application/json"
    body = post["body"]
    assert isinstance(body["text"], str) and "\n" not in body["text"]  # Slack-compatible: one line of text
    assert body["result"] == result
    assert [e["status"] for e in log.events("notified")] == [200]
    assert log.events("notify_failed") == []
    return body


# (a) a failed run POSTs once


def test_a_backup_of_a_database_that_does_not_exist_posts_its_failure(couch, db_name, cos, bucket, s3_client,
                                                                      receiver) -> None:
    result, log = run_main({**couch_params(couch, db_name), **cos, "NOTIFY_URL": receiver.url})
    assert result["kind"] == "cloudant" and "ok" not in result, result
    assert keys_in(s3_client, bucket) == []
    body = the_notification(receiver, result, log)
    assert body["text"].startswith("cloudant-cos-backup: backup"), body["text"]
    assert "FAILED" in body["text"] and result["error"] in body["text"], body["text"]


def test_a_restore_of_a_missing_key_posts_its_failure(couch, db_name, cos, receiver) -> None:
    load_docs(couch, db_name, [])  # an empty target: the restore fails on the key, not on the target
    key = f"{db_name}_20240101T000000Z_full.jsonl.gz"
    result, log = run_main({**couch_params(couch, db_name), **cos, "OPERATION": "restore", "COS_KEY": key,
                            "NOTIFY_URL": receiver.url})
    assert result["kind"] == "cos" and "no such object" in result["error"], result
    assert live_docs(couch, db_name) == []
    body = the_notification(receiver, result, log)
    assert body["text"].startswith("cloudant-cos-backup: restore") and "FAILED" in body["text"], body["text"]


# (b) a successful run: nothing by default, once with NOTIFY_ON=always


def test_a_successful_backup_posts_nothing_by_default_and_once_with_notify_on_always(couch, db_name, cos, bucket,
                                                                                     s3_client, receiver) -> None:
    load_docs(couch, db_name, [{"_id": f"doc-{i}", "n": i} for i in range(5)])
    params = {**couch_params(couch, db_name), **cos, "NOTIFY_URL": receiver.url}
    result, log = run_main(params)
    assert result["ok"] and result["complete"] and result["key"] in keys_in(s3_client, bucket), result
    assert receiver.posts == []
    assert log.events("notified") == [] and log.events("notify_failed") == []

    result, log = run_main({**params, "NOTIFY_ON": "always"})
    assert result["ok"] and result["docs"] == 5 and result["key"] in keys_in(s3_client, bucket), result
    body = the_notification(receiver, result, log)
    assert body["text"] == f"cloudant-cos-backup: backup of {db_name} ok (5 docs)", body["text"]


# (c) a configuration error still notifies, when NOTIFY_URL itself is valid


def test_a_configuration_error_posts_when_notify_url_is_valid(couch, db_name, cos, receiver) -> None:
    params = {k: v for k, v in {**couch_params(couch, db_name), **cos}.items() if k != "COS_BUCKET"}
    result, log = run_main({**params, "NOTIFY_URL": receiver.url})
    assert result["kind"] == "config" and "COS_BUCKET is missing" in result["error"], result
    body = the_notification(receiver, result, log)
    assert "FAILED" in body["text"] and "COS_BUCKET is missing" in body["text"], body["text"]


def test_an_invalid_notify_url_is_a_configuration_error_and_posts_nothing(couch, db_name, cos, receiver) -> None:
    ftp = receiver.url.replace("http://", "ftp://")  # the receiver, but by a scheme that is refused
    result, log = run_main({**couch_params(couch, db_name), **cos, "NOTIFY_URL": ftp})
    assert result["kind"] == "config" and "NOTIFY_URL" in result["error"], result
    assert receiver.posts == []
    assert TOKEN not in result["error"] and TOKEN not in log.text


# (d) secrets masked: in the body, the log and the result


def test_secrets_in_a_failure_message_are_masked_in_the_body_the_log_and_the_result(couch, seaweed, db_name, cos,
                                                                                    receiver) -> None:
    """A restore of a missing key whose name holds the stack's password, its COS secret and the webhook URL: the
    error names the key, so each would be in the message unmasked."""
    load_docs(couch, db_name, [])
    password, cos_secret = couch.admin[1], seaweed.secret_key
    key = f"{db_name}/{password}/{cos_secret}/{receiver.url}_20240101T000000Z_full.jsonl.gz"
    result, log = run_main({**couch_params(couch, db_name), **cos, "OPERATION": "restore", "COS_KEY": key,
                            "NOTIFY_URL": receiver.url})
    assert result["kind"] == "cos" and "no such object" in result["error"] and "****" in result["error"], result
    body = the_notification(receiver, result, log)
    assert "****" in body["text"]
    assert_no_secret([receiver.posts[0]["raw"], log.text, json.dumps(result)],
                     [password, cos_secret, receiver.url, TOKEN])


def test_a_delivered_notification_leaves_no_url_in_the_log_or_result(cos, receiver) -> None:
    result, log = run_main({**cos, "OPERATION": "list", "NOTIFY_URL": receiver.url, "NOTIFY_ON": "always"})
    assert result["ok"] and result["count"] == 0, result
    the_notification(receiver, result, log)
    assert_no_secret([receiver.posts[0]["raw"], log.text, json.dumps(result)], [receiver.url, TOKEN])


# (e) a notification that fails never changes the outcome


@contextlib.contextmanager
def failing_receiver(how: str) -> Iterator[tuple[str, Any]]:
    """The URL of a receiver that refuses (500), is not there, or never answers; and a check of its warning."""
    if how == "refuses":
        refusing = Receiver(status=500)
        try:
            yield refusing.url, lambda w: w["status"] == 500 and len(refusing.posts) == 1  # tried once
        finally:
            refusing.close()
    elif how == "not-listening":
        yield closed_port_url(), lambda w: "ConnectionError" in w["error"]
    else:
        hanging = Hanging()
        try:
            yield hanging.url, lambda w: "Timeout" in w["error"] and len(hanging.accepted) == 1
        finally:
            hanging.close()


@pytest.mark.parametrize("how", ["refuses", "not-listening", "hangs"])
@pytest.mark.parametrize("outcome", ["ok", "error"])
def test_a_failed_notification_leaves_the_outcome_as_without_notify_url(cos, bucket, monkeypatch, how: str,
                                                                        outcome: str) -> None:
    monkeypatch.setattr("backup.notify.TIMEOUT", (1, 1))  # the hanging receiver: a second, not ten
    params = {**cos, "OPERATION": "list", "NOTIFY_ON": "always"}
    if outcome == "error":
        params["COS_BUCKET"] = f"{bucket}-missing"
    without, _ = run_main(params)
    assert ("error" in without) == (outcome == "error"), without
    with failing_receiver(how) as (url, warned_as_expected):
        result, log = run_main({**params, "NOTIFY_URL": url})
    assert result == without
    [warning] = log.events("notify_failed")
    assert warning["level"] == "warning" and warned_as_expected(warning), warning
    assert log.events("notified") == []
    assert_no_secret([log.text, json.dumps(result)], [url, TOKEN])


# (f) a redirect is not followed


def test_a_redirect_is_not_followed(cos, bucket, receiver) -> None:
    params = {**cos, "OPERATION": "list", "COS_BUCKET": f"{bucket}-missing"}
    without, _ = run_main(params)
    redirecting = Receiver(status=302, location=receiver.url)
    try:
        result, log = run_main({**params, "NOTIFY_URL": redirecting.url})
    finally:
        redirecting.close()
    assert result == without and result["kind"] == "cos", result
    assert len(redirecting.posts) == 1 and receiver.posts == []
    [warning] = log.events("notify_failed")
    assert warning["status"] == 302, warning


# the command line notifies too


def test_the_command_posts_its_result_with_notify_on_always(cos, receiver) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CLOUDANT_", "COS_", "NOTIFY_"))}
    env.update({**cos, "NOTIFY_URL": receiver.url, "NOTIFY_ON": "always"})
    run = subprocess.run([sys.executable, "-m", "backup", "list", "--json"], env=env, cwd=ROOT,
                         capture_output=True, text=True, timeout=60)
    OUTPUTS.extend([run.stdout, run.stderr])
    assert run.returncode == 0, run.stderr
    result = json.loads(run.stdout)
    assert result["ok"] and result["operation"] == "list", result
    assert len(receiver.posts) == 1 and receiver.posts[0]["body"]["result"] == result, receiver.posts
    assert receiver.posts[0]["body"]["text"].startswith("cloudant-cos-backup: list ok"), receiver.posts
    assert '"event": "notified"' in run.stderr
    assert_no_secret([run.stdout, run.stderr], [receiver.url, TOKEN])
