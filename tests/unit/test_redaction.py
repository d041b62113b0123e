"""Secrets never leave: Secret hides itself, redact() masks every form, and Log lines go through it."""

from __future__ import annotations

import io
import json
from collections.abc import Callable
from dataclasses import dataclass
from urllib.parse import quote, quote_plus

import pytest

from backup.log import Log
from backup.redaction import MASK, Secret, redact, register

# Each test registers its own values: the registry is global, so they must not overlap.


def test_secret_hides_in_repr_str_and_format() -> None:
    secret = Secret("hide-me-0001")
    shown = [repr(secret), str(secret), f"{secret}", f"{secret!r}", format(secret), f"{secret:}"]
    for text in shown:
        assert "hide-me-0001" not in text
        assert "****" in text


def test_secret_hides_inside_containers_and_dataclasses() -> None:
    @dataclass
    class Holder:
        token: Secret

    secret = Secret("hide-me-0002")
    assert "hide-me-0002" not in repr([secret, {"k": secret}])
    assert "hide-me-0002" not in repr(Holder(secret))


def test_secret_reveal_gives_the_value() -> None:
    assert Secret("hide-me-0003").reveal() == "hide-me-0003"
    assert Secret("hide-me-0003") == Secret("hide-me-0003")
    assert Secret("hide-me-0003") != Secret("hide-me-0004")


def test_creating_a_secret_registers_it_for_redaction() -> None:
    Secret("hide-me-0005")
    assert redact("token=hide-me-0005; again hide-me-0005.") == f"token={MASK}; again {MASK}."


def test_registered_value_is_masked_raw() -> None:
    register("raw-value-0006")
    assert redact("error: raw-value-0006 rejected") == f"error: {MASK} rejected"


def test_register_ignores_empty_values() -> None:
    register(None)
    register("")
    assert redact("nothing to hide") == "nothing to hide"


def test_short_values_are_not_masked() -> None:
    Secret("q7")
    register("z")
    assert redact("q7 is a short value; z too") == "q7 is a short value; z too"


def test_longer_secret_is_masked_before_one_it_contains() -> None:
    register("nest-0007")
    register("nest-0007-outer")
    text = redact("a=nest-0007-outer b=nest-0007")
    assert "nest" not in text and "outer" not in text


ENCODED_SECRET = "p+a/s=s&w@rd 0008"


@pytest.mark.parametrize("encode", [
    pytest.param(lambda s: quote(s, safe=""), id="quote-safe-empty"),
    pytest.param(quote_plus, id="quote-plus"),
    pytest.param(quote, id="quote-default-keeps-slash"),
])
def test_url_encoded_secret_is_masked(encode: Callable[[str], str]) -> None:
    Secret(ENCODED_SECRET)
    encoded = encode(ENCODED_SECRET)
    assert encoded != ENCODED_SECRET
    text = redact(f"POST /token body=apikey={encoded}&grant=x")
    assert encoded not in text
    assert MASK in text


def test_url_userinfo_is_masked_without_registration() -> None:
    text = redact("connecting to https://user:pa%40ss-0009@acct.example.com/orders failed")
    assert text == f"connecting to https://{MASK}@acct.example.com/orders failed"


def test_url_userinfo_is_masked_in_quoted_text() -> None:
    text = redact("{'url': 'http://admin:zzz-0010@127.0.0.1:5984'}")
    assert "zzz-0010" not in text and "admin" not in text


def test_url_without_userinfo_is_untouched() -> None:
    text = "GET https://acct.example.com/orders/_all_docs?limit=10 -> 200"
    assert redact(text) == text


def test_url_password_with_raw_at_sign_is_fully_masked() -> None:
    Secret("zq@xv9k-0011")
    text = redact("https://user:zq@xv9k-0011@acct.example.com")
    assert "xv9k" not in text


@pytest.mark.parametrize(("text", "hidden"), [
    ("Authorization: Bearer eyJhbGc.eyJzdWIi.SflKx-_0012", "eyJhbGc"),
    ('"Authorization": "Basic YWRtaW46cGFzcw=="', "YWRtaW46cGFzcw"),
    ("{'authorization': 'bearer tok.en/0013+='}", "tok.en"),
    ("AUTHORIZATION=Bearer abcdef0014", "abcdef0014"),
], ids=["bearer-header", "basic-json", "lowercase-dict-repr", "equals-sign"])
def test_authorization_headers_are_masked(text: str, hidden: str) -> None:
    masked = redact(text)
    assert hidden not in masked
    assert MASK in masked


def test_log_lines_are_json_with_event_and_fields() -> None:
    stream = io.StringIO()
    log = Log(stream)
    log.info("backup_started", database="orders", docs=3)
    log.warning("retry", attempt=2)
    log.error("failed", reason="caf\u00e9")
    records = [json.loads(line) for line in stream.getvalue().splitlines()]
    assert [(r["level"], r["event"]) for r in records] == [("info", "backup_started"), ("warning", "retry"),
                                                           ("error", "failed")]
    assert records[0]["database"] == "orders" and records[0]["docs"] == 3
    assert records[2]["reason"] == "caf\u00e9"
    assert all(r["ts"].endswith("Z") for r in records)
    assert stream.getvalue().endswith("\n")


def test_log_lines_are_redacted() -> None:
    secret = Secret("log-secret-0015")
    stream = io.StringIO()
    Log(stream).error("failed", error=f"401 with key {secret.reveal()}", url="https://u:pw-0016@host.example.com",
                      headers={"Authorization": "Bearer tok-0017"}, obj=secret)
    out = stream.getvalue()
    for hidden in ("log-secret-0015", "pw-0016", "tok-0017"):
        assert hidden not in out
    record = json.loads(out)
    assert record["event"] == "failed"


def test_quiet_log_drops_info_only() -> None:
    stream = io.StringIO()
    log = Log(stream, quiet=True)
    log.info("progress", docs=1)
    log.warning("slow")
    log.error("failed")
    assert [json.loads(line)["event"] for line in stream.getvalue().splitlines()] == ["slow", "failed"]


def test_log_redacts_secret_with_quote_and_backslash() -> None:
    secret = Secret('pa"ss\\w0rd-0018')
    stream = io.StringIO()
    Log(stream).error("failed", error=f"rejected {secret.reveal()}")
    assert json.loads(stream.getvalue())["error"] == f"rejected {MASK}"


def test_log_redacts_authorization_header_inside_a_string_field() -> None:
    stream = io.StringIO()
    Log(stream).error("failed", error='request headers: {"Authorization": "Bearer tok-0019"}')
    assert "tok-0019" not in stream.getvalue()


@pytest.mark.parametrize(("text", "hidden", "expected"), [
    ("got 'admin:pa/ss-0020@acct.example.com'", "ss-0020", f"got '{MASK}@acct.example.com'"),
    ("CLOUDANT_URL=admin:pw-0021@127.0.0.1:5984", "pw-0021", f"CLOUDANT_URL={MASK}@127.0.0.1:5984"),
    ('{"url": "admin:p@ss-0022@acct.example.com/orders"}', "ss-0022", f'{{"url": "{MASK}@acct.example.com/orders"}}'),
    ("{'url': 'admin:qu?e#ry-0023@host'}", "ry-0023", f"{{'url': '{MASK}@host'}}"),
    ("connect to admin:pw-0024@[::1]:5984 failed", "pw-0024", f"connect to {MASK}@[::1]:5984 failed"),
    ("(bob@example.com:pw-0025@host)", "pw-0025", f"(bob@{MASK}@host)"),
    ("x=admin:%2Fpw-0026@host", "pw-0026", f"x={MASK}@host"),
], ids=["quoted-slash", "after-equals", "json-at-in-password", "dict-repr-query-hash", "ipv6-host",
        "email-as-user-name", "percent-encoded"])
def test_userinfo_without_a_scheme_is_masked_without_registration(text: str, hidden: str, expected: str) -> None:
    masked = redact(text)
    assert hidden not in masked
    assert masked == expected


@pytest.mark.parametrize("text", [
    "error: user@example.com is not allowed",
    '{"email":"someone@example.com"}',
    "{'email': 'someone@example.com'}",
    "git@github.com:owner/repo.git",
    "mailto:someone@example.com",
    "doc org.couchdb.user:someone@example.com conflicted",
    "GET https://acct.example.com/orders/doc:1@v2 -> 404",
    "orders_20240101T000000Z_backup.txt at 12:30:45 by a@b",
    "[::1]:5984 and 127.0.0.1:5984",
    "ratio 3:1, then @mention",
], ids=["email-after-label-and-space", "json-email", "dict-email", "scp-style-git", "mailto", "users-doc-id",
        "colon-and-at-in-a-url-path", "times-and-email", "ipv6-and-ports", "ratio-and-mention"])
def test_text_that_only_looks_like_userinfo_is_untouched(text: str) -> None:
    assert redact(text) == text


def test_userinfo_search_stays_linear_on_long_lines() -> None:
    # A long run of letters (base64 in an error body) took the scheme search ~30 s for 200 KB.
    import time

    for text in ["b" * 200_000, "a://" * 50_000, "http://" + "a" * 200_000, "a:" * 100_000, "a:b@" * 50_000,
                 "@a:" * 100_000, " a" * 100_000 + ":" + "b" * 100_000]:
        started = time.monotonic()
        redact(text)
        assert time.monotonic() - started < 2, text[:20]


def test_a_result_keeps_the_keys_it_names_even_when_a_short_secret_occurs_in_them(monkeypatch) -> None:
    from backup import redaction
    from backup.redaction import IDENTIFIERS, redact_all

    monkeypatch.setattr(redaction, "_known", set(redaction._known))  # this one must not outlive the test
    register("ackup")  # a (poor) password that occurs inside every backup key
    result = {"key": "orders_2026-11-26T01:00:00.000000Z_backup.txt", "error": "login with ackup failed",
              "backups": [{"key": "a_backup.txt", "note": "ackup"}], "chain": ["x_backup.txt"]}
    redacted = redact_all(result, IDENTIFIERS)
    assert redacted["key"] == result["key"] and redacted["backups"][0]["key"] == "a_backup.txt"
    assert redacted["chain"] == ["x_backup.txt"]
    assert redacted["error"] == "login with **** failed" and redacted["backups"][0]["note"] == "****"


# ---- issue 14: secrets are masked in free text only -------------------------------------------------------------

SHA = "3f9c1e0a2b7d4c5e8f60718293a4b5c6d7e8f90112233445566778899aabbccd"


def _finished_backup(password: str) -> dict[str, object]:
    """A backup's result (as backup.py builds it) and its error texts, for a database named after nothing secret."""
    return {
        "ok": True, "complete": True, "operation": "backup", "database": "orders", "bucket": "orders-backups",
        "key": "orders_2026-11-21T01:00:00.000000Z_backup.txt", "kind": "full", "docs": 1, "bytes": 1041, "parts": 1,
        "invocations": 1, "seconds": 0.51, "sha256": SHA, "doc_count": 1, "docs_per_second": 1.9,
        "full_because": "there is no complete backup of the database yet", "deleted_old_backups": [],
        "continued_by": {"hop": 1, "activation_id": "0f1e2d3c4b5a69788796a5b4c3d2e1f0"},
        "databases": [{"database": "orders", "key": "orders_2026-11-21T01:00:00.000000Z_backup.txt", "kind": "full",
                       "docs": 1, "time": "2026-11-21T01:00:00.000000Z"}],
    }


@pytest.mark.parametrize("password", ["full", "ok", "1", SHA[20:25], "2026", "orders"])
def test_a_short_password_never_changes_identifiers_kinds_hashes_times_or_counts(monkeypatch, password: str) -> None:
    from backup import redaction
    from backup.redaction import IDENTIFIERS, redact_all

    monkeypatch.setattr(redaction, "_known", set(redaction._known))  # this one must not outlive the test
    register(password)
    result = _finished_backup(password)
    assert redact_all(result, IDENTIFIERS) == result
    assert redact_all(result) == result  # the log's call, without extra names


@pytest.mark.parametrize("password", ["full", "ok", "1", SHA[20:25], "2026", "orders"])
def test_log_lines_stay_exact_with_a_short_password(monkeypatch, password: str) -> None:
    from backup import redaction

    monkeypatch.setattr(redaction, "_known", set(redaction._known))
    register(password)
    stream = io.StringIO()
    log = Log(stream)
    log.info("backup_started", database="orders", bucket="orders-backups", key="orders_2026_backup.txt", kind="full",
             base=None, update_seq="12-g1AAAAfullbackup")
    log.info("backup_finished", **_finished_backup(password))
    log.info("part_uploaded", key="orders_2026_backup.txt", part=1, bytes=5242880, total_bytes=5242880)
    started, finished, part = (json.loads(line) for line in stream.getvalue().splitlines())
    assert started["event"] == "backup_started" and started["level"] == "info" and started["kind"] == "full"
    assert started["update_seq"] == "12-g1AAAAfullbackup" and started["key"] == "orders_2026_backup.txt"
    assert {k: finished[k] for k in _finished_backup(password)} == _finished_backup(password)
    assert part == {"ts": part["ts"], "level": "info", "event": "part_uploaded", "key": "orders_2026_backup.txt",
                    "part": 1, "bytes": 5242880, "total_bytes": 5242880}
    assert MASK not in stream.getvalue()


@pytest.mark.parametrize("password", ["full", SHA[20:25], "2026"])
def test_error_texts_and_details_still_mask_the_password(monkeypatch, password: str) -> None:
    from backup import redaction
    from backup.redaction import IDENTIFIERS, redact_all

    monkeypatch.setattr(redaction, "_known", set(redaction._known))
    register(password)
    said = f"401: name or password {password} is incorrect"
    result = {"ok": False, "kind": "cloudant", "error": said, "detail": said, "warnings": [said],
              "retention_error": said, "databases": [{"database": "orders", "error": said, "kind": "cloudant"}],
              "continued_by": {"hop": 1, "error": said}, "something_new": said}
    redacted = redact_all(result, IDENTIFIERS)
    masked = f"401: name or password {MASK} is incorrect"
    assert redacted == {"ok": False, "kind": "cloudant", "error": masked, "detail": masked, "warnings": [masked],
                        "retention_error": masked, "databases": [{"database": "orders", "error": masked, "kind": "cloudant"}],
                        "continued_by": {"hop": 1, "error": masked}, "something_new": masked}
    stream = io.StringIO()
    Log(stream).error("failed", kind="cloudant", error=said, message=said, reason=said, hint=said, traceback=said)
    record = json.loads(stream.getvalue())
    assert record["kind"] == "cloudant" and record["event"] == "failed" and record["level"] == "error"
    assert all(record[k] == masked for k in ("error", "message", "reason", "hint", "traceback")), record


def test_an_unknown_field_keeps_hashes_times_and_numbers_and_masks_other_text(monkeypatch) -> None:
    from backup import redaction
    from backup.redaction import redact_all

    monkeypatch.setattr(redaction, "_known", set(redaction._known))
    register("abcd1")
    register("2026-1")
    value = {"etag_of_part": '"abcd1' + "0" * 27 + '"', "when": "2026-11-21T01:00:00.000000Z", "n": "12",
             "uuid": "abcd1234-0000-4000-8000-000000000000", "note": "signed with abcd1", "url": "https://x/abcd1"}
    redacted = redact_all(value)
    assert redacted["etag_of_part"] == value["etag_of_part"] and redacted["when"] == value["when"]
    assert redacted["n"] == "12" and redacted["uuid"] == value["uuid"]
    assert redacted["note"] == f"signed with {MASK}" and redacted["url"] == f"https://x/{MASK}"


def test_values_under_credential_names_are_masked_whole() -> None:
    stream = io.StringIO()
    Log(stream).warning("request", headers={"Authorization": "Bearer tok-issue14", "Cookie": "AuthSession=abc14"},
                        password="pw-issue14-unregistered")
    record = json.loads(stream.getvalue())
    assert record["headers"] == {"Authorization": MASK, "Cookie": MASK} and record["password"] == MASK
