"""JSON text scanned without recursion, for the rare values nested too deep to decode (pure, no I/O).

Python's json and msgspec recurse once per nesting level and raise RecursionError near 1,000 levels; CouchDB
stores documents nested 50,000 deep. Such a value is never decoded here: its text is checked token by token
(the grammar of RFC 8259, as strict as json.loads except that NaN and Infinity are refused), with an explicit
stack, and handed back raw, to be spliced. Only its shallow parts (a row's id, a document's _id and _rev) are
decoded, by json. Used only after json or msgspec gave up: ordinary values never come here.
"""

from __future__ import annotations

import json
import re
from typing import Any

import msgspec

# One token after optional whitespace: a string, a scalar (number or literal), or a structural character.
_TOKEN = re.compile(r"""[ \t\n\r]*(?:
    (?P<string>"[^"\\\x00-\x1f]*(?:\\(?:["\\/bfnrt]|u[0-9a-fA-F]{4})[^"\\\x00-\x1f]*)*")
  | (?P<scalar>-?(?:0|[1-9][0-9]*)(?:\.[0-9]+)?(?:[eE][-+]?[0-9]+)?|true|false|null)
  | (?P<punct>[\[\]{},:])
)""", re.VERBOSE)
# What the text may end with when it was cut inside a value: whitespace, or the start of a token.
_PARTIAL = re.compile(r"""[ \t\n\r]*(?:
    "[^"\\\x00-\x1f]*(?:\\(?:["\\/bfnrt]|u[0-9a-fA-F]{4})[^"\\\x00-\x1f]*)*(?:\\(?:u[0-9a-fA-F]{0,3})?)?
  | -?[0-9]*(?:\.[0-9]*)?(?:[eE][-+]?[0-9]*)?
  | t(?:ru?)? | f(?:a(?:ls?)?)? | n(?:ul?)?
)""", re.VERBOSE)
_WHITESPACE = re.compile(r"[ \t\n\r]*")
# What may follow a number up to the end of a text that is still growing, so the number may go on.
_NUMBER_TAIL = re.compile(r"[0-9.eE+-]*")
# Whitespace outside strings (what `compact` drops), or a whole string (kept).
_SPACE_OR_STRING = re.compile(r'("[^"\\]*(?:\\.[^"\\]*)*")|[ \t\n\r]+')

# What the scanner expects next.
_VALUE, _FIRST_VALUE, _KEY, _FIRST_KEY, _COLON, _NEXT = range(6)
_OPENS = {"]": "[", "}": "{"}


class ScanError(ValueError):
    """The text is not valid JSON."""


class Truncated(ScanError):
    """The text ends inside the value: it may be valid once more of it has arrived (see `Scan`)."""


class Scan:
    """Finds where the JSON value starting at `pos` ends, checking it on the way, without recursion.

    When the text ends inside the value (Truncated), the scan keeps its place: call `end` again once the text
    has grown (the same text with more appended) and it goes on from the last whole token, so a value that
    arrives in many chunks is scanned once.
    """

    def __init__(self, pos: int = 0) -> None:
        self.pos = pos
        self._stack: list[str] = []  # the open "[" and "{"
        self._expect = _VALUE

    def end(self, text: str, final: bool = True) -> int:
        """The index just after the value. Not `final`: more text may follow (a number may go on)."""
        pos, stack, expect = self.pos, self._stack, self._expect
        while True:
            match = _TOKEN.match(text, pos)
            if match is None or (not final and _may_go_on(text, match)):
                self.pos, self._expect = pos, expect  # where to go on from once the text has grown
                raise _stopped(text, pos)
            kind = match.lastgroup or ""
            expect = _step(stack, expect, kind, match.group(kind), match.start(kind))
            pos = match.end()
            if expect == _NEXT and not stack:
                return pos


def _may_go_on(text: str, match: re.Match[str]) -> bool:
    """The token is a number that more text could make longer ("12" may be "123", "1" followed by "." "1.5")."""
    number = match.group("scalar")
    return number is not None and number[0] in "-0123456789" and _NUMBER_TAIL.fullmatch(text, match.end()) is not None


def _step(stack: list[str], expect: int, kind: str, token: str, at: int) -> int:
    """What is expected after `token` (of `kind`, at index `at`), the stack of open containers updated."""
    if kind == "punct" and token in "[{":
        if expect not in (_VALUE, _FIRST_VALUE):
            raise ScanError(f"unexpected {token!r} at {at}")
        stack.append(token)
        return _FIRST_VALUE if token == "[" else _FIRST_KEY
    if kind == "punct" and token in "]}":
        empty = _FIRST_VALUE if token == "]" else _FIRST_KEY
        if not stack or stack[-1] != _OPENS[token] or expect not in (_NEXT, empty):
            raise ScanError(f"unexpected {token!r} at {at}")
        stack.pop()
        return _NEXT
    if token == ",":
        if expect != _NEXT or not stack:
            raise ScanError(f"unexpected ',' at {at}")
        return _VALUE if stack[-1] == "[" else _KEY
    if token == ":":
        if expect != _COLON:
            raise ScanError(f"unexpected ':' at {at}")
        return _VALUE
    if expect == _COLON:
        raise ScanError(f"expected ':' at {at}")
    if expect in (_KEY, _FIRST_KEY):
        if kind != "string":
            raise ScanError(f"expected a key at {at}")
        return _COLON
    if expect in (_VALUE, _FIRST_VALUE):
        return _NEXT
    raise ScanError(f"expected ',' or the end of a container at {at}")


def _stopped(text: str, pos: int) -> ScanError:
    """No whole token at `pos`: the text was cut there (Truncated), or it is not JSON."""
    if _PARTIAL.fullmatch(text, pos):
        return Truncated(f"the text ends inside a JSON value (at {len(text)})")
    return ScanError(f"not JSON at {_skip(text, pos)}")


def _skip(text: str, pos: int) -> int:
    """The index of the first non-whitespace character from `pos`."""
    match = _WHITESPACE.match(text, pos)
    assert match is not None  # it matches the empty string too
    return match.end()


def value_end(text: str, pos: int = 0) -> int:
    """The index just after the JSON value starting at `pos` (after any whitespace) of a whole text."""
    return Scan(pos).end(text)


def _whole(text: str) -> None:
    """Checks that `text` is one JSON value, with nothing but whitespace around it."""
    end = _skip(text, value_end(text))
    if end != len(text):
        raise ScanError(f"extra data at {end}")


def _structural(text: str, pos: int, chars: str) -> tuple[str, int]:
    """The structural character at `pos` (after whitespace), one of `chars`, and the index after it."""
    pos = _skip(text, pos)
    if pos >= len(text):
        raise Truncated(f"the text ends where one of {chars!r} was expected")
    if text[pos] not in chars:
        raise ScanError(f"expected one of {chars!r} at {pos}")
    return text[pos], pos + 1


def _key(text: str, pos: int) -> tuple[str, int]:
    """The decoded member name at `pos` (after whitespace), and the index after its colon."""
    start = _skip(text, pos)
    match = _TOKEN.match(text, start)
    if match is None:
        raise _stopped(text, start)
    if match.lastgroup != "string":
        raise ScanError(f"expected a key at {start}")
    _, pos = _structural(text, match.end(), ":")
    return json.loads(match.group("string")), pos


def _parts(text: str, opener: str) -> list[tuple[str, str]]:
    """(key, raw JSON of the value) of each member of the object `text` (`opener` "{"), or ("", raw JSON of the
    element) of each element of the array (`opener` "["); whitespace around `text` aside, it must be all."""
    closer = "}" if opener == "{" else "]"
    _, pos = _structural(text, 0, opener)
    parts: list[tuple[str, str]] = []
    pos = _skip(text, pos)
    if text.startswith(closer, pos):
        pos += 1
    else:
        separator = ","
        while separator == ",":
            key, pos = _key(text, pos) if opener == "{" else ("", pos)
            start = _skip(text, pos)
            pos = value_end(text, start)
            parts.append((key, text[start:pos]))
            separator, pos = _structural(text, pos, "," + closer)
    if _skip(text, pos) != len(text):
        raise ScanError(f"extra data at {_skip(text, pos)}")
    return parts


def members(obj_text: str) -> list[tuple[str, str]]:
    """The top-level members of a JSON object, as (key, raw JSON text of the value), in order."""
    return _parts(obj_text, "{")


def elements(array_text: str) -> list[str]:
    """The raw JSON text of each top-level element of a JSON array, in order."""
    return [element for _, element in _parts(array_text, "[")]


def compact(text: str) -> str:
    """The JSON value that is `text` without whitespace outside its strings (so on one line)."""
    _whole(text)
    return _SPACE_OR_STRING.sub(lambda match: match.group(1) or "", text)


def as_raw(text: str) -> msgspec.Raw:
    """JSON text kept undecoded: msgspec writes it back verbatim."""
    return msgspec.Raw(text.encode("utf-8", "surrogatepass"))


def loads_shallow(text: str) -> Any:
    """json.loads(text), for a value that may be nested too deep for it: then an object comes back as a dict of
    its members, each decoded or, itself too deep, kept `as_raw`; any other value as raw. A dict, so that the
    shallow members of a document (_id, _rev, _attachments...) are read and changed as in any other."""
    try:
        return json.loads(text)
    except RecursionError:
        pass
    if text.startswith("{", _skip(text, 0)):
        return {key: _loads_or_raw(value) for key, value in members(text)}
    _whole(text)
    return as_raw(text.strip(" \t\n\r"))


def _loads_or_raw(text: str) -> Any:
    """A member's value, already checked by the scanner: decoded, or kept raw when too deep."""
    try:
        return json.loads(text)
    except RecursionError:
        return as_raw(text)
