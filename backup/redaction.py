"""Secrets never leave: a value type that hides itself, and a redactor for every outgoing text.

Every secret value the configuration holds is registered here; `redact()` is applied to each log line,
result and error message, so even an SDK exception that quotes a URL or a header cannot leak one.
"""

from __future__ import annotations

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


def _forms(value: str) -> set[str]:
    """The ways a secret can appear in text: raw, URL-encoded (both hex cases), JSON-escaped."""
    encoded = {quote(value, safe=""), quote(value), quote_plus(value)}
    encoded |= {re.sub(r"%[0-9A-F]{2}", lambda m: m.group(0).lower(), form) for form in encoded}
    return {value, json.dumps(value)[1:-1]} | encoded


def redact(text: str) -> str:
    """Mask every registered secret (in all its forms), URL userinfo and auth headers in text."""
    with _lock:
        values = sorted(_known, key=len, reverse=True)
    for value in values:
        for form in sorted(_forms(value), key=len, reverse=True):
            if form in text:
                text = text.replace(form, MASK)
    text = _URL_USERINFO.sub(lambda m: m.group("scheme") + MASK + "@", text)
    text = _BARE_USERINFO.sub(MASK + "@", text)
    text = _AUTH_HEADER.sub(lambda m: m.group(1) + m.group(2) + " " + MASK, text)
    return text


# Fields of a result that name objects (built from the prefix, database names and times, never from a secret):
# kept as they are, so that a short password that happens to occur in a key cannot break the key a script reuses.
IDENTIFIERS = frozenset({"key", "base", "chain", "bucket", "database", "host", "deleted_old_backups", "retention_skipped"})


def redact_all(value: Any, keep: frozenset[str] = frozenset()) -> Any:
    """`redact` every string inside a JSON-like value (before encoding it, which would escape a secret out
    of recognition), except under the field names in `keep`: results carry error texts too (a fan-out's
    failed databases, a retention error)."""
    if isinstance(value, str):
        return redact(value)
    if isinstance(value, dict):
        return {k: v if k in keep else redact_all(v, keep) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [redact_all(v, keep) for v in value]
    return value
