"""Notification: a run's result POSTed to a webhook (NOTIFY_URL) when it failed, or always (NOTIFY_ON=always).

A notification is a side effect, never part of the outcome: it has a timeout, is tried once, and a failure is
logged and swallowed. The body is `{"text": "<one line>", "result": {...}}`: `text` is what Slack-compatible
receivers show; the result is nested, not merged in, because a backup result's `attachments` field would mean
something else to Slack (and be refused).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import requests

from backup.config import Notify, notify_of
from backup.log import Log
from backup.redaction import IDENTIFIERS, redact, redact_all

# Seconds to connect, and to wait for the answer: a slow receiver must not hold the run (or its activation) long.
TIMEOUT = (5, 10)


def failed(result: Mapping[str, Any]) -> bool:
    """A run that failed, or found a problem (a stale backup, a drill that differs): what is worth a message."""
    return "error" in result or result.get("ok") is False


def summary(result: Mapping[str, Any], operation: str) -> str:
    """The result in one line, for a person reading a chat channel."""
    operation = str(result.get("operation") or operation)
    database = result.get("database")
    what = f"{operation} of {database}" if database else operation
    if failed(result):
        return f"cloudant-cos-backup: {what} FAILED: {result.get('error') or 'ok is false'}"
    facts = [f"{result['docs']} docs"] if isinstance(result.get("docs"), int) else []
    if isinstance(result.get("count"), int):
        facts.append(f"{result['count']} " + ("backups" if operation == "list" else "databases"))
    if result.get("complete") is False:
        facts.append("checkpointed, continues in the next invocation")
    return f"cloudant-cos-backup: {what} ok" + (f" ({', '.join(facts)})" if facts else "")


def after_run(args: Mapping[str, Any], result: Mapping[str, Any], log: Log) -> bool:
    """Send the result if NOTIFY_URL asks for it (read from the raw arguments: a run whose other parameters are
    wrong still says so). True when a notification was delivered."""
    try:
        target = notify_of(args) if isinstance(args, Mapping) else None
    except Exception:  # noqa: BLE001 - whatever is wrong with it, load_config has already said
        return False
    if target is None or not (target.always or failed(result)):
        return False
    return send(target, result, str(args.get("OPERATION") or "backup"), log)


def send(target: Notify, result: Mapping[str, Any], operation: str, log: Log) -> bool:
    body = {"text": redact(summary(result, operation)), "result": redact_all(dict(result), IDENTIFIERS)}
    try:
        # No redirects: a receiver must not send the result (or the URL's token) somewhere else.
        response = requests.post(target.url.reveal(), json=body, timeout=TIMEOUT, allow_redirects=False)
    except requests.RequestException as exc:
        # Not the exception's text: urllib3's quotes the request's path ("... with url: /hooks/<token>"), and
        # only the whole URL is a registered secret.
        log.warning("notify_failed", error=type(exc).__name__, detail="the run's outcome is unchanged")
        return False
    if not 200 <= response.status_code < 300:
        log.warning("notify_failed", status=response.status_code, detail="the receiver refused the notification; "
                    "the run's outcome is unchanged")
        return False
    log.info("notified", status=response.status_code)
    return True
