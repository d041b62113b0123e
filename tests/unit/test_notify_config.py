"""NOTIFY_URL and NOTIFY_ON as load_config checks them (https, or http on a loopback host; the URL is a secret, never
echoed), and the notification's pure parts: what counts as a failure, and the one line of text."""

from __future__ import annotations

from typing import Any

import pytest

from backup.config import load_config, notify_of
from backup.errors import ConfigError
from backup.notify import failed, summary
from backup.redaction import redact

BASE: dict[str, Any] = {
    "CLOUDANT_URL": "https://acct.cloudant.example.com",
    "CLOUDANT_DB": "orders",
    "CLOUDANT_USERNAME": "backup-user",
    "CLOUDANT_PASSWORD": "cloudant-password-for-notify-config",
    "COS_ENDPOINT": "https://s3.eu-de.cloud-object-storage.example.com",
    "COS_BUCKET": "orders-backups",
    "COS_ACCESS_KEY_ID": "AKIDEXAMPLE",
    "COS_SECRET_ACCESS_KEY": "hmac-secret-for-notify-config",
}


def error_for(**changes: Any) -> str:
    with pytest.raises(ConfigError) as info:
        load_config({**BASE, **changes})
    return str(info.value)


def test_without_notify_url_there_is_no_notification() -> None:
    assert load_config(BASE).notify is None
    assert load_config({**BASE, "NOTIFY_ON": "always"}).notify is None


def test_an_https_url_is_accepted_and_notifies_on_failure_by_default() -> None:
    url = "https://hooks.example.com/x"
    config = load_config({**BASE, "NOTIFY_URL": url})
    assert config.notify is not None
    assert config.notify.url.reveal() == url and config.notify.always is False
    assert config.warnings == ()  # NOTIFY_URL is a parameter, not a typo


@pytest.mark.parametrize("url", ["http://127.0.0.1:8080/hook", "http://127.9.9.9/hook", "http://localhost/hook",
                                 "http://LOCALHOST:1/hook", "http://[::1]:9000/hook"])
def test_http_is_accepted_on_a_loopback_host(url: str) -> None:
    config = load_config({**BASE, "NOTIFY_URL": url})
    assert config.notify is not None and config.notify.url.reveal() == url


@pytest.mark.parametrize("url", ["http://example.com/x", "http://10.0.0.1/x", "http://127.0.0.1.example.com/x"])
def test_http_to_another_host_is_refused_naming_notify_url_and_https_without_the_url(url: str) -> None:
    message = error_for(NOTIFY_URL=url)
    assert "NOTIFY_URL" in message and "https://" in message, message
    assert url not in message and url.split("://")[1] not in message, message


@pytest.mark.parametrize("url", ["ftp://hooks.example.com/x", "hooks.example.com/x", "https://", "https:///x",
                                 "https://hooks.example.com:99999/x", "https://hooks.example.com:port/x"])
def test_a_url_that_is_not_an_http_url_is_refused_without_the_url(url: str) -> None:
    message = error_for(NOTIFY_URL=url)
    assert "NOTIFY_URL" in message, message
    assert "hooks.example.com" not in message, message


def test_a_notify_url_that_is_not_a_string_is_refused() -> None:
    assert "NOTIFY_URL must be a string" in error_for(NOTIFY_URL=5)


@pytest.mark.parametrize("value, always", [("always", True), ("ALWAYS", True), (" always ", True),
                                           ("failure", False), ("", False)])
def test_notify_on_is_failure_or_always(value: str, always: bool) -> None:
    config = load_config({**BASE, "NOTIFY_URL": "https://hooks.example.com/x", "NOTIFY_ON": value})
    assert config.notify is not None and config.notify.always is always


def test_notify_on_sometimes_is_refused() -> None:
    message = error_for(NOTIFY_URL="https://hooks.example.com/x", NOTIFY_ON="sometimes")
    assert "NOTIFY_ON must be failure or always" in message and "sometimes" in message, message


def test_the_url_is_a_secret_masked_everywhere_and_not_in_the_configuration_repr() -> None:
    url = "https://hooks.example.com/services/T000/B000/config-token-abc"
    config = load_config({**BASE, "NOTIFY_URL": url})
    assert url not in repr(config) and "config-token-abc" not in repr(config)
    assert redact(f"posting to {url} failed") == "posting to **** failed"


def test_notify_problems_come_with_the_others_at_once() -> None:
    message = error_for(NOTIFY_URL="http://example.com/x", NOTIFY_ON="sometimes", COS_BUCKET=None)
    assert "NOTIFY_URL must use https://" in message and "NOTIFY_ON must be" in message, message
    assert "COS_BUCKET is missing" in message, message


def test_notify_of_reads_a_valid_url_even_when_the_other_parameters_are_wrong() -> None:
    """What lets a run refused for its configuration still notify."""
    target = notify_of({"CLOUDANT_DB": "", "NOTIFY_URL": "https://hooks.example.com/x", "NOTIFY_ON": "always"})
    assert target is not None and target.url.reveal() == "https://hooks.example.com/x" and target.always
    assert notify_of({"NOTIFY_URL": "http://example.com/x"}) is None
    assert notify_of({"NOTIFY_URL": "https://hooks.example.com/x", "NOTIFY_ON": "sometimes"}) is None
    assert notify_of({}) is None


# what counts as a failure, and the one line of text


@pytest.mark.parametrize("result, expected", [
    ({"ok": True, "operation": "backup"}, False),
    ({"ok": True, "complete": False, "operation": "backup"}, False),  # checkpointed: not a failure
    ({"error": "boom", "kind": "cloudant"}, True),
    ({"ok": False, "operation": "drill", "equal": False}, True),
    ({"ok": False, "operation": "backup", "fanout": "sequential", "error": "1 of 2 database backups failed: b"}, True),
])
def test_failed(result: dict[str, Any], expected: bool) -> None:
    assert failed(result) is expected


def test_summary_of_a_failure_names_the_operation_the_database_and_the_error() -> None:
    assert summary({"error": "invalid parameters: COS_BUCKET is missing", "kind": "config"}, "restore") == \
        "cloudant-cos-backup: restore FAILED: invalid parameters: COS_BUCKET is missing"
    assert summary({"ok": False, "operation": "drill", "database": "orders", "error": "2 documents differ"},
                   "backup") == "cloudant-cos-backup: drill of orders FAILED: 2 documents differ"
    assert summary({"ok": False, "operation": "status"}, "status") == "cloudant-cos-backup: status FAILED: ok is false"


def test_summary_of_a_success_says_ok_with_its_counts() -> None:
    assert summary({"ok": True, "complete": True, "operation": "backup", "database": "orders", "docs": 1200},
                   "backup") == "cloudant-cos-backup: backup of orders ok (1200 docs)"
    assert summary({"ok": True, "complete": False, "operation": "restore", "database": "orders"}, "restore") == \
        "cloudant-cos-backup: restore of orders ok (checkpointed, continues in the next invocation)"
    assert summary({"ok": True, "operation": "verify"}, "verify") == "cloudant-cos-backup: verify ok"


def test_an_invalid_notify_url_is_not_made_a_secret() -> None:
    """Masking a refused value would mangle every message of the run: `https://` masked every URL's scheme."""
    from backup.redaction import redact

    error_for(NOTIFY_URL="https://")
    assert redact("see https://example.com/docs") == "see https://example.com/docs"
