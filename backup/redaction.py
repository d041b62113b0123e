"""Secrets never leave: a value type that hides itself, and a redactor for every outgoing text.

Every secret value the configuration holds is registered here; `redact()` is applied to each log line,
result and error message, so even an SDK exception that quotes a URL or a header cannot leak one.
"""

from __future__ import annotations

import functools
import json
import re
import threading
from typing import Any
from urllib.parse import quote, quote_plus

MASK = "****"

# userinfo inside any URL: scheme://user:password@host -> scheme://****@host
# (greedy up to the last '@' before the path, so a password holding '@' is masked whole). The scheme starts
# a token and both lengths are bounded: unbounded, a long line of letters took time quadratic in its length.
_URL_USERINFO = re.compile(r"(?<![a-zA-Z0-9+.-])(?P<scheme>[a-zA-Z][a-zA-Z0-9+.-]{0,31}://)[^/\s\"'<>]{1,1024}@")
# user:password@host without a scheme (a URL typed without https://): a token that starts with a user name
# (no '/', ':' or '@' in it, not inside a word, a path, a number or another such token; lengths bounded so
# that a long line cannot make the search quadratic), then ':' not followed by '//' (that is a
# scheme), then anything without spaces or quotes up to the last '@' that a host name follows.
# "mailto:a@b" and "_users" document ids ("org.couchdb.user:a@b") are left alone; "label:someone@example.com"
# with no space after the colon is masked (an e-mail address cannot be told from a password there; masking
# too much is the safe side). A key before the value ("url=", "CLOUDANT_URL=") stays.
_BARE_USERINFO = re.compile(
    r"(?<![\w.+%/~:-])(?!mailto:|org\.couchdb\.user:)[A-Za-z0-9._~%!$*+-]{1,256}:(?!//)[^\s\"'<>]{0,1024}@"
    r"(?=[A-Za-z0-9\[])"
)
# bearer tokens and basic credentials in any quoted header
_AUTH_HEADER = re.compile(r"(?i)(authorization[\"']?\s*[:=]\s*[\"']?)(bearer|basic)\s+[A-Za-z0-9._~+/=-]+")
# an age private key, registered or not (AGE_IDENTITY's keys are registered too: this is defence in depth)
_AGE_SECRET_KEY = re.compile(r"(?i)AGE-SECRET-KEY-1[0-9A-Z]{20,}")

_lock = threading.Lock()
_known: set[str] = set()


class Secret:
    """A string that prints as **** in reprs, f-strings and logs; `.reveal()` is the only way in."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value
        register(value)

    def reveal(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return f"Secret({MASK})"

    __str__ = __repr__

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(self._value)


def register(value: str | None) -> None:
    """Remember a secret value so that `redact` masks it wherever it appears."""
    if value and len(value) >= 3:  # masking 1-2 chars would mangle every message
        with _lock:
            _known.add(value)


@functools.lru_cache(maxsize=4096)
def _forms(value: str) -> tuple[str, ...]:
    """The ways a secret can appear in text: raw, URL-encoded (both hex cases), JSON-escaped; longest first.
    Cached: every field of every log line and result is checked against every secret."""
    encoded = {quote(value, safe=""), quote(value), quote_plus(value)}
    encoded |= {re.sub(r"%[0-9A-F]{2}", lambda m: m.group(0).lower(), form) for form in encoded}
    return tuple(sorted({value, json.dumps(value)[1:-1]} | encoded, key=len, reverse=True))


# A registered secret this long is masked in every field, identifiers and hash-like values included: it cannot
# occur in a key or a hash by chance (a short one can: "full", "2026"), and an HMAC secret looks like a hash.
LONG_SECRET = 12


def _holds_long_secret(text: str) -> bool:
    with _lock:
        values = [v for v in _known if len(v) >= LONG_SECRET]
    return any(form in text for value in values for form in _forms(value))


def redact(text: str) -> str:
    """Mask every registered secret (in all its forms), URL userinfo and auth headers in text."""
    with _lock:
        values = sorted(_known, key=len, reverse=True)
    for value in values:
        for form in _forms(value):
            if form in text:
                text = text.replace(form, MASK)
    text = _URL_USERINFO.sub(lambda m: m.group("scheme") + MASK + "@", text)
    text = _BARE_USERINFO.sub(MASK + "@", text)
    text = _AUTH_HEADER.sub(lambda m: m.group(1) + m.group(2) + " " + MASK, text)
    return _AGE_SECRET_KEY.sub(MASK, text)


# Fields of a result or a log line whose values name things (built from the prefix, database names and times, never
# from a secret), classify them, hash, time or count them: kept exactly, so that a short password that happens to
# occur in one ("full", "2026", a few hex digits) cannot break the key a script reuses, a kind or a sha256.
IDENTIFIERS = frozenset({
    # objects, places, ids
    "key", "base", "chain", "bucket", "database", "databases", "host", "prefix", "deleted_old_backups",
    "retention_skipped", "unreadable_manifests", "deleted", "failed", "source_db", "activation_id", "upload_id", "id",
    "request", "aborted_uploads", "mark", "last_id", "written",
    # kinds
    "kind", "operation", "mode", "fanout", "level", "event", "service", "backup", "compression",
    # hashes and sequences
    "sha256", "etag", "update_seq", "seq", "since", "instance",
    # times and counts
    "ts", "time", "started", "finished", "created", "seconds", "docs", "bytes", "parts", "part", "lines", "count",
    "invocations", "invocation", "hop", "hops", "batches", "doc_count", "total_bytes", "docs_per_second", "plain_bytes",
    "stale_leaves_closed", "skipped_lines", "skipped_line_count", "attachments_dropped", "status", "attempt", "wait",
})
# Fields that hold free text (messages, SDK error texts): every secret in them is masked, whatever the text looks like.
FREE_TEXT = frozenset({
    "error", "detail", "message", "reason", "hint", "warning", "warnings", "traceback", "because", "full_because",
    "stopped", "retention_error", "manifest_error", "manifest_invalid",
})
# Fields named like a credential (a header dict an SDK error carried, say): the value is masked whole.
_CREDENTIAL_FIELD = re.compile(r"(?i)authorization|passw|secret|token|api_?key|cookie|credential")
# Values that are a number, a hash or ETag, a UUID or an ISO-8601 time: under an unknown field, kept as they are.
_COUNT_HASH_OR_TIME = re.compile(
    r"[+-]?\d+(\.\d+)?([eE][+-]?\d+)?"
    r"|\"?[0-9a-fA-F]{32,}(-\d+)?\"?"
    r"|[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}"
    r"|\d{4}-\d{2}-\d{2}([T ]\d{2}:\d{2}(:\d{2}(\.\d+)?)?)?(Z|[+-]\d{2}:?\d{2})?"
)
# A field name as the code writes them: kept. Any other dict key is text like the rest.
_FIELD_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_.$-]{0,127}")


def redact_all(value: Any, keep: frozenset[str] = frozenset()) -> Any:
    """`redact` the free text inside a JSON-like value (before encoding it, which would escape a secret out of
    recognition), and nothing else: strings under IDENTIFIERS (and `keep`) stay exact, so do numbers, hashes, UUIDs and
    times under a field this module does not know; under FREE_TEXT fields, and any other text, every secret is masked
    (results carry error texts too: a fan-out's failed databases, a retention error). A value under a field named like
    a credential is masked whole. Anything not JSON (an exception, a Secret) becomes its redacted text."""
    return _redact_value(value, None, IDENTIFIERS | keep)


def _redact_value(value: Any, field: Any, verbatim: frozenset[str]) -> Any:
    if isinstance(value, dict):
        return {_redact_key(k): _redact_value(v, k, verbatim) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_redact_value(v, field, verbatim) for v in value]  # items are of their field's kind
    if isinstance(value, (set, frozenset)):
        return sorted((_redact_value(v, field, verbatim) for v in value), key=str)
    if value is None or isinstance(value, (bool, int, float)):
        return value
    text = value if isinstance(value, str) else str(value)
    if isinstance(field, str) and field not in FREE_TEXT and not _holds_long_secret(text):
        if field in verbatim:
            return text
        if _CREDENTIAL_FIELD.search(field):
            return MASK if text else text
        if _COUNT_HASH_OR_TIME.fullmatch(text):
            return text
    return redact(text)


def _redact_key(key: Any) -> Any:
    if not isinstance(key, str) or _FIELD_NAME.fullmatch(key):
        return key
    return redact(key)
